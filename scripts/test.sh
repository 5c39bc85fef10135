#!/usr/bin/env bash
# THE test command (README and .ci/run use it). Run scripts/setup.sh first.
#
#   bash scripts/test.sh                 # everything, on ./...
#   bash scripts/test.sh -run TestX ./mps/apf/   # other go test args
#
# Steps: gofmt, go vet, staticcheck, the import rules (scripts/imports.sh),
# govulncheck (scripts/vulncheck.sh), the ui-toolkit bundle for the web
# console's browser test (scripts/uitoolkit.sh),
# `go test -race -count=1`, then (for the whole tree) the packages and the
# window: the Linux tar.xz and .deb (packaging/build.sh linux); the .deb and
# the tar.xz installed into temporary directories and the installed window
# started under Xvfb with simulated devices, its Devices screen saved to
# dist/screenshot-devices.png (packaging/install-test.sh, which runs
# packaging/screenshot.sh); the Windows cross-build and its NSIS installer
# (packaging/build.sh windows). Outside CI, a package step whose tools are
# missing (scripts/setup.sh installs them) is skipped, and the window is
# then built by packaging/screenshot.sh itself. Every step runs even if an
# earlier one failed; the script exits non-zero if any failed.
#
# go test runs inside a private network namespace (`unshare -n`, loopback
# up) when we are root: tests can open real sockets and multicast without
# reaching any outside network. The namespace has no network at all, so
# modules must already be downloaded (setup.sh does it) and GOPROXY=off there.
# Tests can check PRESENCE_NETNS=1 to know they are inside it. Outside CI a
# non-root run falls back to the host network with a warning; with CI=true
# or PRESENCE_REQUIRE_NETNS=1 a missing namespace is an error.
#
# GO_TEST_TIMEOUT (default 20m) is passed to go test -timeout.
set -uo pipefail
SCRIPT_NAME="test"
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT" || exit 1

test_args=("$@")
[ "${#test_args[@]}" -gt 0 ] || test_args=(./...)

GOROOT_SEL=$(go env GOROOT) || die "go is not usable (GOTOOLCHAIN=$GOTOOLCHAIN); run scripts/setup.sh"
echo "test: $(go env GOVERSION) at $GOROOT_SEL, repo $REPO_ROOT"

gofmt_check() {
	local files=() out
	mapfile -t files < <(find . \( -name .git -o -name testdata -o -name vendor -o -name '_*' -o -name '.?*' \) -prune \
		-o -type f -name '*.go' -print | sort)
	if [ "${#files[@]}" -eq 0 ]; then
		echo "no Go files"
		return 0
	fi
	# The selected toolchain's gofmt, not whatever is first on PATH.
	out=$("$GOROOT_SEL/bin/gofmt" -l "${files[@]}")
	if [ -n "$out" ]; then
		echo "gofmt: these files need formatting (run gofmt -w):" >&2
		# shellcheck disable=SC2001
		sed 's/^/  /' <<<"$out" >&2
		return 1
	fi
	echo "${#files[@]} files formatted"
}

staticcheck_run() {
	local bin="$PRESENCE_TOOLS_BIN/staticcheck"
	[ -x "$bin" ] || die "$bin missing: run scripts/setup.sh first"
	tool_is_pinned "$bin" honnef.co/go/tools "$STATICCHECK_VERSION" ||
		echo "WARNING: $bin is not staticcheck $STATICCHECK_VERSION built with $(go env GOVERSION); run scripts/setup.sh" >&2
	"$bin" -version
	"$bin" ./...
}

netns_mode() {
	# Prints "netns" or "host"; fails when a namespace is required but unusable.
	local required=false
	if [ "${CI:-}" = true ] || [ "${PRESENCE_REQUIRE_NETNS:-}" = 1 ]; then
		required=true
	fi
	local why=""
	if [ "$(id -u)" -ne 0 ]; then
		why="not root"
	elif ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
		why="unshare or ip missing (scripts/setup.sh installs util-linux and iproute2)"
	elif ! unshare -n ip link set lo up; then
		why="unshare -n does not work here"
	fi
	if [ -z "$why" ]; then
		echo netns
	elif $required; then
		echo "test: a private network namespace is required (CI=true or PRESENCE_REQUIRE_NETNS=1) but: $why" >&2
		return 1
	else
		echo "WARNING: go test runs on the host network: $why" >&2
		echo host
	fi
}

go_test() {
	local mode
	mode=$(netns_mode) || return 1
	[ "$(go env CGO_ENABLED)" = 1 ] ||
		die "go test -race needs cgo: CGO_ENABLED=$(go env CGO_ENABLED), CC=$(go env CC) (install gcc, unset CGO_ENABLED=0)"
	case " ${GOFLAGS:-} $(go env GOFLAGS) " in
	*" -mod=mod "*) echo "WARNING: GOFLAGS has -mod=mod; go test may try to reach the network" >&2 ;;
	esac
	local cmd=(go test -race -count=1 -timeout "${GO_TEST_TIMEOUT:-20m}" "${test_args[@]}")
	if [ "$mode" = netns ]; then
		echo "+ unshare -n: ip link set lo up && ${cmd[*]}   (GOPROXY=off)"
		# PATH starts with the selected toolchain, so `go` (and any `go` a
		# test runs) is that release itself and never tries to fetch one.
		unshare -n env PATH="$GOROOT_SEL/bin:$PATH" GOPROXY=off PRESENCE_NETNS=1 \
			sh -c 'ip link set lo up && exec "$@"' sh "${cmd[@]}"
	else
		echo "+ ${cmd[*]}"
		"${cmd[@]}"
	fi
}

failed=0
step "gofmt" gofmt_check || failed=1
step "go vet" go vet ./... || failed=1
step "staticcheck" staticcheck_run || failed=1
step "import rules" bash "$REPO_ROOT/scripts/imports.sh" || failed=1
step "govulncheck" bash "$REPO_ROOT/scripts/vulncheck.sh" || failed=1
# internal/webconsole runs Intel's ui-toolkit in Chromium; go test has no
# network to fetch it, so it is fetched here (a cached copy is reused) and
# its directory passed on. Without it the browser test skips; with CI=true
# or PRESENCE_REQUIRE_CHROMIUM=1 a failed fetch fails this step.
uitoolkit() {
	bash "$REPO_ROOT/scripts/uitoolkit.sh" && return 0
	[ "${CI:-}" != true ] && [ "${PRESENCE_REQUIRE_CHROMIUM:-}" != 1 ] || return 1
	echo "WARNING: no ui-toolkit bundle: the web console's browser test will skip" >&2
}
step "ui-toolkit bundle" uitoolkit || failed=1
export PRESENCE_UITOOLKIT="${PRESENCE_UITOOLKIT:-$(bash "$REPO_ROOT/scripts/uitoolkit.sh" --dir)}"
step "go test -race" go_test || failed=1
# packaging_missing TARGET prints what `packaging/build.sh TARGET` needs
# and this machine lacks (nothing when it has everything).
packaging_missing() {
	local c missing=()
	case $1 in
	linux) for c in tar xz file dpkg-deb dpkg-shlibdeps pkg-config; do command -v "$c" >/dev/null || missing+=("$c"); done
		[ -x "$PRESENCE_TOOLS_BIN/fyne" ] || missing+=("$PRESENCE_TOOLS_BIN/fyne") ;;
	windows) for c in x86_64-w64-mingw32-gcc x86_64-w64-mingw32-windres makensis convert file; do
			command -v "$c" >/dev/null || missing+=("$c")
		done ;;
	esac
	echo "${missing[*]}"
}

# package TARGET: packaging/build.sh TARGET, required when CI=true.
package() {
	local missing
	missing=$(packaging_missing "$1")
	if [ -n "$missing" ]; then
		if [ "${CI:-}" = true ]; then
			echo "packaging for $1 needs $missing (scripts/setup.sh installs it)" >&2
			return 1
		fi
		echo "skipped: needs $missing (scripts/setup.sh installs it)"
		return 0
	fi
	bash "$REPO_ROOT/packaging/build.sh" "$1"
}

# The desktop window under Xvfb with simulated devices: the installed .deb's
# when the Linux package step built one (so the window is compiled once),
# else packaging/screenshot.sh builds it.
gui_smoke() {
	if ! command -v xvfb-run >/dev/null || [ "$(id -u)" != 0 ]; then
		if [ "${CI:-}" = true ]; then
			echo "the window's smoke test needs root and xvfb (scripts/setup.sh installs it)" >&2
			return 1
		fi
		if $linux_packaged; then
			echo "window skipped (needs root and xvfb-run); checking the installed packages only"
			bash "$REPO_ROOT/packaging/install-test.sh" --no-screenshot
			return
		fi
		echo "skipped: needs root and xvfb-run"
		return 0
	fi
	if $linux_packaged; then
		bash "$REPO_ROOT/packaging/install-test.sh"
		return
	fi
	local shot="${TMPDIR:-/tmp}/presence-test-screenshot.png"
	bash "$REPO_ROOT/packaging/screenshot.sh" "$shot" && rm -f "$shot"
}
if [ "${#test_args[@]}" -eq 1 ] && [ "${test_args[0]}" = ./... ]; then
	linux_packaged=false
	if step "package (Linux)" package linux; then
		[ -n "$(packaging_missing linux)" ] || linux_packaged=true
	else
		failed=1
	fi
	step "window under Xvfb" gui_smoke || failed=1
	step "package (Windows)" package windows || failed=1
fi
step_summary
if [ "$failed" -ne 0 ]; then
	echo "test: FAILED (see the steps above)" >&2
	exit 1
fi
echo "test: all steps passed"
