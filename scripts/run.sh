#!/usr/bin/env bash
# Builds presence with the pinned toolchain into bin/ and runs it with the
# given arguments. Run scripts/setup.sh once first.
#
#   bash scripts/run.sh demo            # the server plus simulated devices on loopback
#   bash scripts/run.sh serve --help
set -euo pipefail
SCRIPT_NAME=run
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
command -v go >/dev/null 2>&1 || die "no go on PATH: run scripts/setup.sh first"
mkdir -p bin
CGO_ENABLED=0 go build -tags nogui -trimpath -o bin/presence .
exec bin/presence "$@"
