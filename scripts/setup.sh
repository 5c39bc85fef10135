#!/usr/bin/env bash
# Installs everything the build and tests need. Idempotent: a second run only
# checks, and takes a few seconds.
#
#   bash scripts/setup.sh
#
# Steps: Go toolchain, Debian packages (apt, only when something is missing,
# only as root), no etcd service left running, pinned Go tools (staticcheck, govulncheck, fyne), module download,
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
#   squid:         proxy chaining test (squid with Presence as its parent)
#   amtterm:       Serial-over-LAN test with Debian's own redirection client
#   gnome-keyring dbus: a real Secret Service for the keychain vault's tests
#   pkg-config and the GL/X11 headers: the desktop window (Fyne's GLFW driver, cgo)
#   xvfb xauth xdotool imagemagick: the window's smoke test and screenshot under Xvfb
#   gcc-mingw-w64-x86-64: the Windows cross-build (cgo for Fyne's GLFW driver)
#   nsis:          makensis, the Windows installer (packaging/windows/presence.nsi)
#   xz-utils file: packaging/build.sh packs (fyne package runs tar -J) and checks what it built
#   dpkg-dev:      dpkg-shlibdeps, the .deb's Depends;  make: installing the tar.xz in the test
#   etcd-server:   /usr/bin/etcd (3.4.23), which the fleet's etcd tests start on
#                  free loopback ports (mps/fleet/etcdtest); the service the
#                  package installs is stopped and disabled (etcd_service_off)
#   etcd-client:   etcdctl, with which scripts/fleet-etcd-test.sh watches and reads the fleet's keys
#   chromium:      the headless browser in which internal/webconsole runs Intel's ui-toolkit
#                  over the relay (scripts/uitoolkit.sh fetches the toolkit itself)
APT_PACKAGES=(gcc libc6-dev git iproute2 util-linux curl squid amtterm gnome-keyring dbus
	pkg-config libgl1-mesa-dev libx11-dev libxcursor-dev libxrandr-dev libxinerama-dev libxi-dev libxxf86vm-dev
	xvfb xauth xdotool imagemagick
	gcc-mingw-w64-x86-64 nsis xz-utils file dpkg-dev make
	etcd-server etcd-client
	chromium)

# go_minor prints the minor version of the go on PATH (21 for go1.21.x),
# or 0 when there is none.
go_minor() {
	local v
	v=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null) || { echo 0; return; }
	v=${v#go1.}
	echo "${v%%[.a-z]*}"
}

# bootstrap_go installs the pinned toolchain when the machine's go is missing
# or older than 1.21 (which ignores GOTOOLCHAIN): it takes Debian's golang-go
# if there is no go at all, and with it downloads the toolchain module
# golang.org/toolchain from the module proxy into $PRESENCE_GO.
bootstrap_go() {
	if [ "$(go_minor)" -ge 21 ]; then
		echo "go $(GOTOOLCHAIN=local go env GOVERSION) can fetch $GOTOOLCHAIN itself"
		return 0
	fi
	if ! command -v go >/dev/null 2>&1; then
		echo "no go on PATH: installing Debian's golang-go to bootstrap"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go ca-certificates ||
			die "cannot install golang-go (run as root or with sudo), or install Go 1.21 or newer yourself"
	fi
	local arch ver dir
	arch=$(GOTOOLCHAIN=local go env GOARCH)
	ver="v0.0.1-${PRESENCE_GOTOOLCHAIN}.linux-${arch}"
	dir=$(cd / && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "golang.org/toolchain@${ver}" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -f "$dir/bin/go" ] || die "could not download golang.org/toolchain@${ver} from the module proxy"
	# Module zips carry no file modes: mark the binaries executable, as the
	# go command does when it switches toolchains itself.
	chmod a+x "$dir"/bin/* "$dir"/pkg/tool/*/*
	mkdir -p "$PRESENCE_CACHE"
	ln -sfn "$dir" "$PRESENCE_GO"
	export PATH="$PRESENCE_GO/bin:$PATH"
	echo "bootstrapped $PRESENCE_GOTOOLCHAIN into $PRESENCE_GO (scripts/*.sh put it on PATH)"
}

toolchain() {
	bootstrap_go
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
	echo "installing: ${missing[*]}"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
		! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"; then
		echo "WARNING: could not install Debian packages (not root and no sudo?): ${missing[*]}" >&2
		echo "WARNING: as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
	fi
	# The tests run their own squid on a private port; the system service
	# the package starts is not needed.
	if [[ " ${missing[*]} " == *" squid "* ]] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		as_root systemctl disable --now squid >/dev/null 2>&1 || true
	fi
}

# any_alive PID...: true while one of the processes exists.
any_alive() {
	local p
	for p in "$@"; do
		[ -d "/proc/$p" ] && return 0
	done
	return 1
}

# etcd_service_off leaves no etcd of the package's running: the tests start
# their own on free ports, and one on etcd's default ports (2379, 2380) would
# answer a Presence started with --etcd by mistake. etcd-server's postinst
# enables etcd.service and, where systemd is not PID 1, starts /etc/init.d/etcd
# through invoke-rc.d (unless policy-rc.d forbids it), which backgrounds
# /usr/bin/etcd with the pidfile /run/etcd.pid. Only that etcd is stopped:
# the pidfile's, or an /usr/bin/etcd whose environment names the package's
# data dir; throwaway test etcds are left alone. Quick when there is nothing
# to do.
etcd_service_off() {
	[ -x /usr/bin/etcd ] || { echo "no /usr/bin/etcd: nothing to stop"; return 0; }
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		if systemctl is-enabled --quiet etcd.service 2>/dev/null || systemctl is-active --quiet etcd.service 2>/dev/null; then
			as_root systemctl disable --now etcd.service >/dev/null 2>&1 ||
				echo "WARNING: could not stop and disable etcd.service" >&2
		fi
	elif [ -x /etc/init.d/etcd ] && { ls /etc/rc[2-5].d/S*etcd >/dev/null 2>&1 ||
		systemctl is-enabled --quiet etcd.service 2>/dev/null; }; then
		# No start at boot: update-rc.d turns the init script's links off,
		# and the unit's too (it calls systemctl --root=/).
		as_root update-rc.d etcd disable >/dev/null 2>&1 ||
			echo "WARNING: could not disable /etc/init.d/etcd" >&2
	fi
	local pids=() pid
	if [ -r /run/etcd.pid ]; then
		pid=$(tr -dc 0-9 </run/etcd.pid)
		if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/bin/etcd ]; then
			pids+=("$pid")
		fi
	fi
	for pid in $(pgrep -x etcd 2>/dev/null || true); do
		[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = /usr/bin/etcd ] || continue
		if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'ETCD_DATA_DIR=/var/lib/etcd/default'; then
			[[ " ${pids[*]} " == *" $pid "* ]] || pids+=("$pid")
		fi
	done
	if [ "${#pids[@]}" -gt 0 ]; then
		echo "stopping the package's etcd: pid ${pids[*]}"
		as_root kill -TERM "${pids[@]}" 2>/dev/null || true
		local _
		for _ in $(seq 1 50); do
			any_alive "${pids[@]}" || break
			sleep 0.1
		done
		for pid in "${pids[@]}"; do
			if [ -d "/proc/$pid" ]; then as_root kill -KILL "$pid" 2>/dev/null || true; fi
		done
		as_root rm -f /run/etcd.pid
	fi
	if command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :2379 or sport = :2380' 2>/dev/null | grep -q .; then
		echo "WARNING: something still listens on 2379 or 2380 (not the package's etcd):" >&2
		ss -Hltnp 'sport = :2379 or sport = :2380' >&2 || true
	else
		echo "no etcd service running; nothing listens on 2379 or 2380"
	fi
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
step "etcd service off" etcd_service_off
step "staticcheck $STATICCHECK_VERSION" go_tool staticcheck honnef.co/go/tools/cmd/staticcheck honnef.co/go/tools "$STATICCHECK_VERSION"
step "govulncheck $GOVULNCHECK_VERSION" go_tool govulncheck golang.org/x/vuln/cmd/govulncheck golang.org/x/vuln "$GOVULNCHECK_VERSION"
step "fyne $FYNE_TOOLS_VERSION" go_tool fyne fyne.io/tools/cmd/fyne fyne.io/tools "$FYNE_TOOLS_VERSION"
step "go mod download" modules
step "vulnerability db" bash "$REPO_ROOT/scripts/vulncheck.sh" --db-only
step_summary
