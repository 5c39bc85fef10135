# shellcheck shell=bash disable=SC2034  # the pins are used by the scripts that source this
# Shared settings and helpers for scripts/*.sh. Source it; do not run it.
#
# Every pinned version used by setup.sh, test.sh and vulncheck.sh lives here,
# so bumping a tool is a one-line change.

# --- pins ---------------------------------------------------------------------
# Go toolchain. go1.26.8 (the machine's /usr/local/go) has reachable crypto/tls
# and net/http vulnerabilities; the go command fetches this one through the
# module proxy. An explicit GOTOOLCHAIN in the environment wins (useful for
# comparisons, e.g. GOTOOLCHAIN=local).
PRESENCE_GOTOOLCHAIN=go1.27.3
STATICCHECK_VERSION=v0.8.2      # honnef.co/go/tools (staticcheck 2026.2.2)
GOVULNCHECK_VERSION=v1.9.0      # golang.org/x/vuln
FYNE_TOOLS_VERSION=v1.7.4       # fyne.io/tools (the `fyne package` command)
# Offline vulnerability database: the golang.org/x/vulndb module at this
# version is turned into a govulncheck database by its cmd/gendb.
# Override with VULNDB_VERSION=latest (or another version) to refresh.
VULNDB_VERSION_PIN=v0.0.0-20261105234957-e22db6528018

# --- environment --------------------------------------------------------------
export GOTOOLCHAIN="${GOTOOLCHAIN:-$PRESENCE_GOTOOLCHAIN}"

# Repository root (the parent of scripts/), whatever the caller's cwd.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Everything the scripts cache outside the repo (tools, vulnerability DB).
PRESENCE_CACHE="${PRESENCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/presence}"
# Pinned Go tools are installed here (not on PATH; scripts call them by path).
PRESENCE_TOOLS_BIN="${PRESENCE_TOOLS_BIN:-$PRESENCE_CACHE/bin}"
# On a machine whose go is missing or too old to honour GOTOOLCHAIN (Debian
# 12 ships Go 1.19), setup.sh bootstraps the pinned toolchain here.
PRESENCE_GO="$PRESENCE_CACHE/go"
if [ -x "$PRESENCE_GO/bin/go" ]; then
	export PATH="$PRESENCE_GO/bin:$PATH"
fi

# --- helpers ------------------------------------------------------------------
_now() { date +%s.%N; }

# STEP_LOG collects "name<TAB>seconds<TAB>status" lines for step_summary.
STEP_LOG=()

# step NAME CMD...: runs CMD, prints its wall-clock time, records it.
# CMD runs in a subshell with `set -e`. Returns CMD's exit status (the
# caller's `set -e` decides what happens next).
step() {
	local name=$1; shift
	local t0 t1 rc=0 secs errexit
	echo "==> ${SCRIPT_NAME:-script}: ${name}"
	t0=$(_now)
	# Run in a subshell with errexit on, and not as part of an `||` list:
	# bash ignores `set -e` inside functions called from such a list.
	case $- in *e*) errexit=true ;; *) errexit=false ;; esac
	set +e
	(set -e; "$@")
	rc=$?
	if $errexit; then set -e; fi
	t1=$(_now)
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	if [ "$rc" -eq 0 ]; then
		echo "<== ${SCRIPT_NAME:-script}: ${name}: ok (${secs}s)"
		STEP_LOG+=("${name}	${secs}s	ok")
	else
		echo "<== ${SCRIPT_NAME:-script}: ${name}: FAILED, exit ${rc} (${secs}s)" >&2
		STEP_LOG+=("${name}	${secs}s	FAILED (exit ${rc})")
	fi
	return "$rc"
}

step_summary() {
	local line
	echo "--- ${SCRIPT_NAME:-script}: step times ---"
	for line in "${STEP_LOG[@]}"; do
		printf '  %-28s %10s  %s\n' "$(cut -f1 <<<"$line")" "$(cut -f2 <<<"$line")" "$(cut -f3 <<<"$line")"
	done
}

# tool_is_pinned BIN MODULE VERSION: true when BIN exists, was built from
# MODULE@VERSION, and was built by the Go release now selected (a tool built
# by an older Go can refuse to analyse code that needs a newer one).
tool_is_pinned() {
	local bin=$1 mod=$2 ver=$3 info goversion
	[ -x "$bin" ] || return 1
	info=$(go version -m "$bin" 2>/dev/null) || return 1
	goversion=$(go env GOVERSION)
	head -n1 <<<"$info" | grep -q ": ${goversion}\$" || return 1
	grep -Eq "^[[:space:]]+mod[[:space:]]+${mod//./\\.}[[:space:]]+${ver//./\\.}([[:space:]]|\$)" <<<"$info"
}

die() { echo "error: $*" >&2; exit 1; }

# as_root CMD...: runs CMD as root, through sudo when we are not root.
# Fails when neither works.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		return 1
	fi
}
