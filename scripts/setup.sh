#!/usr/bin/env bash
# Installs everything the build and tests need. Idempotent: a second run only
# checks, and takes a few seconds.
#
#   bash scripts/setup.sh
#
# Steps: Go toolchain, Debian packages (apt, only when something is missing,
# only as root), pinned Go tools (staticcheck, govulncheck), module download,
# offline vulnerability database. Each step prints its time.
set -euo pipefail
SCRIPT_NAME=setup
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Debian packages needed by the build and the tests. To add packages (for
# example the Fyne/GLFW cgo headers later), add them to this list.
#   gcc libc6-dev: cgo, which `go test -race` needs
#   git:           scripts/vulncheck.sh snapshots the vulndb module in a repo
#   iproute2:      `ip` for network namespaces;  util-linux: `unshare`
#   curl:          real-client proxy tests
APT_PACKAGES=(gcc libc6-dev git iproute2 util-linux curl)

toolchain() {
	# With GOTOOLCHAIN=goX.Y.Z the go command downloads that toolchain through
	# the module proxy on first use; `go version` triggers and checks that.
	go version
	local want have
	want=${GOTOOLCHAIN%%+*}
	have=$(go env GOVERSION)
	case "$want" in
	go1.*) [ "$have" = "$want" ] || die "GOTOOLCHAIN=$GOTOOLCHAIN but go reports $have" ;;
	esac
	echo "GOROOT=$(go env GOROOT)"
}

apt_packages() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
			missing+=("$p")
		fi
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		echo "all present: ${APT_PACKAGES[*]}"
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "WARNING: no apt-get here; install these yourself: ${missing[*]}" >&2
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "WARNING: not root, skipping apt. Missing Debian packages: ${missing[*]}" >&2
		echo "WARNING: run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
		return 0
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
}

# go_tool NAME PACKAGE MODULE VERSION: installs PACKAGE@VERSION into
# $PRESENCE_TOOLS_BIN unless the binary there already matches.
go_tool() {
	local name=$1 pkg=$2 mod=$3 ver=$4
	if tool_is_pinned "$PRESENCE_TOOLS_BIN/$name" "$mod" "$ver"; then
		echo "$name $ver (built with $(go env GOVERSION)) already in $PRESENCE_TOOLS_BIN"
		return 0
	fi
	mkdir -p "$PRESENCE_TOOLS_BIN"
	# Outside the repo, so the project's go.mod does not take part.
	(cd / && GOBIN="$PRESENCE_TOOLS_BIN" GOFLAGS=-mod=mod go install "$pkg@$ver")
	tool_is_pinned "$PRESENCE_TOOLS_BIN/$name" "$mod" "$ver" ||
		die "$name was installed but does not match $mod@$ver"
	echo "installed $name $ver into $PRESENCE_TOOLS_BIN"
}

modules() {
	go mod download
	# Fails here (with network still available) rather than later in the
	# offline test namespace if go.mod/go.sum are incomplete.
	go list -buildvcs=false -deps -test ./... >/dev/null
}

step "go toolchain ($GOTOOLCHAIN)" toolchain
step "apt packages" apt_packages
step "staticcheck $STATICCHECK_VERSION" go_tool staticcheck honnef.co/go/tools/cmd/staticcheck honnef.co/go/tools "$STATICCHECK_VERSION"
step "govulncheck $GOVULNCHECK_VERSION" go_tool govulncheck golang.org/x/vuln/cmd/govulncheck golang.org/x/vuln "$GOVULNCHECK_VERSION"
step "go mod download" modules
step "vulnerability db" bash "$REPO_ROOT/scripts/vulncheck.sh" --db-only
step_summary
