#!/usr/bin/env bash
# Builds presence with the pinned toolchain into bin/ and runs it with the
# given arguments. Run scripts/setup.sh once first.
#
#   bash scripts/run.sh                 # the window where there is a display, else `presence demo`
#   bash scripts/run.sh demo            # the server plus simulated devices on loopback
#   bash scripts/run.sh serve --help
#
# With no arguments and a display (DISPLAY or WAYLAND_DISPLAY), it builds
# the desktop window (cgo and GL: the first build takes a few minutes) and
# opens it; without a display it runs the demo. Commands get the
# server-only build (-tags nogui, no cgo), which builds in seconds.
set -euo pipefail
SCRIPT_NAME=run
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
command -v go >/dev/null 2>&1 || die "no go on PATH: run scripts/setup.sh first"
mkdir -p bin
if [ "$#" -eq 0 ]; then
	if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
		echo "building the window (the first cgo build of Fyne takes a few minutes)…" >&2
		go build -trimpath -o bin/presence-window .
		exec bin/presence-window
	fi
	echo "no display: running \`presence demo\` (the server plus simulated devices on loopback; Ctrl-C stops it)" >&2
	set -- demo
fi
CGO_ENABLED=0 go build -tags nogui -trimpath -o bin/presence .
exec bin/presence "$@"
