#!/usr/bin/env bash
# Fetches the Intel toolkit's web component, npm
# @device-management-toolkit/ui-toolkit, for the browser test of the relay
# (internal/webconsole), and prints the directory it is unpacked in.
#
#   bash scripts/uitoolkit.sh          # fetch if needed; print the directory
#   bash scripts/uitoolkit.sh --dir    # only print where it goes
#
# The package is fetched with `npm pack` into
# $PRESENCE_CACHE/ui-toolkit/<version>/ (bundles/core.bundle.js and the
# rest of the tarball), never into the repository. Idempotent: once the
# directory is complete a run only prints it. The tarball's sha512 is
# pinned below, so a changed package is refused rather than tested.
# scripts/test.sh runs this before go test (which has no network) and passes
# the directory on as PRESENCE_UITOOLKIT.
set -euo pipefail
SCRIPT_NAME=uitoolkit
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# 3.3.12 is the newest under this name (amt-toolbox.md §3, "Package facts").
UITOOLKIT_PACKAGE=@device-management-toolkit/ui-toolkit
UITOOLKIT_VERSION=3.3.12
# npm's dist.integrity of the tarball (`npm view PACKAGE@VERSION dist.integrity`).
UITOOLKIT_INTEGRITY=sha512-lbg/kHwOxkJJjVNJj/tveuMggk7IHPTKz/YYr05i00KezJ/FAZ9q4f8l2s9Z0owfu0LAWa1SWhPERa6Ivleqaw==

dir="$PRESENCE_CACHE/ui-toolkit/$UITOOLKIT_VERSION"
if [ "${1:-}" = --dir ]; then
	echo "$dir"
	exit 0
fi
[ $# -eq 0 ] || die "usage: bash scripts/uitoolkit.sh [--dir]"

# .complete is written last: a directory without it is a fetch cut short.
if [ -f "$dir/.complete" ] && [ -f "$dir/bundles/core.bundle.js" ]; then
	echo "$dir"
	exit 0
fi
command -v npm >/dev/null || die "npm is not installed (it fetches $UITOOLKIT_PACKAGE@$UITOOLKIT_VERSION)"
command -v tar >/dev/null || die "tar is not installed"

mkdir -p "$PRESENCE_CACHE/ui-toolkit"
tmp=$(mktemp -d "$PRESENCE_CACHE/ui-toolkit/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "uitoolkit: npm pack $UITOOLKIT_PACKAGE@$UITOOLKIT_VERSION" >&2
# --ignore-scripts: nothing from the package runs here.
(cd "$tmp" && npm pack --silent --ignore-scripts "$UITOOLKIT_PACKAGE@$UITOOLKIT_VERSION" >"$tmp/name") ||
	die "npm pack $UITOOLKIT_PACKAGE@$UITOOLKIT_VERSION failed (no network? npm registry $(npm config get registry 2>/dev/null))"
tgz="$tmp/$(tail -n1 "$tmp/name")"
[ -f "$tgz" ] || die "npm pack did not leave a tarball (it printed: $(cat "$tmp/name"))"

# node comes with npm; it hashes the tarball as npm's integrity does.
got=$(node -e 'const c = require("crypto"), fs = require("fs");
process.stdout.write("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tgz")
if [ "$got" != "$UITOOLKIT_INTEGRITY" ]; then
	die "$UITOOLKIT_PACKAGE@$UITOOLKIT_VERSION has integrity $got, not the pinned $UITOOLKIT_INTEGRITY"
fi

mkdir "$tmp/unpack"
# The tarball holds package/...; no owners or modes from it.
tar -xzf "$tgz" -C "$tmp/unpack" --no-same-owner --no-same-permissions
[ -f "$tmp/unpack/package/bundles/core.bundle.js" ] || die "the tarball has no package/bundles/core.bundle.js"
echo "$UITOOLKIT_PACKAGE@$UITOOLKIT_VERSION $got" >"$tmp/unpack/package/.complete"

rm -rf "$dir"
mv "$tmp/unpack/package" "$dir"
echo "uitoolkit: unpacked into $dir" >&2
echo "$dir"
