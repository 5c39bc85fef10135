#!/usr/bin/env bash
# GUI smoke test and screenshot: builds Presence with its window, starts it
# under Xvfb with a fresh data dir (CA and CIRA account made with the CLI),
# connects simulated devices, opens the Devices screen and saves a
# screenshot. It checks that the window appeared, that the devices are
# connected (through the CLI's `presence devices`), and that the window
# stops cleanly on SIGINT.
#
#   bash packaging/screenshot.sh [OUT.png]     # default dist/screenshot-devices.png
#   bash packaging/screenshot.sh --bin PATH [OUT.png]
#
# --bin runs that binary (an installed package's, say: packaging/install-test.sh)
# instead of building one; with --desktop, the window is started the way
# that .desktop file's Exec line starts it (from the home directory, with
# the binary's directory on PATH, as a desktop would find it).
#
# Everything runs inside a private network namespace (root and unshare
# needed), so the window's mDNS advertisement never leaves the machine.
set -uo pipefail
SCRIPT_NAME=screenshot
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT" || exit 1

BIN_PATH= DESKTOP_FILE=
while [ "${1:-}" = --bin ] || [ "${1:-}" = --desktop ]; do
	[ -n "${2:-}" ] || die "usage: packaging/screenshot.sh [--bin PATH [--desktop FILE]] [OUT.png]"
	case $1 in
	--bin)
		BIN_PATH=$(realpath -m "$2")
		if [ ! -f "$BIN_PATH" ] || [ ! -x "$BIN_PATH" ]; then
			die "--bin $2: not an executable file"
		fi ;;
	--desktop)
		DESKTOP_FILE=$(realpath -m "$2")
		[ -f "$DESKTOP_FILE" ] || die "--desktop $2: no such file" ;;
	esac
	shift 2
done
OUT=$(realpath -m "${1:-dist/screenshot-devices.png}")
DEVICES=${SCREENSHOT_DEVICES:-25}
for tool in xvfb-run xdotool import; do
	command -v "$tool" >/dev/null || die "$tool is missing: scripts/setup.sh installs xvfb, xdotool and imagemagick"
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/presence-screenshot.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$WORK"' EXIT
if [ "${PRESENCE_SCREENSHOT_INNER:-}" != 1 ]; then
	# The window advertises over mDNS: it runs only in a private network
	# namespace, where multicast cannot leave the machine.
	[ "$(id -u)" = 0 ] && command -v unshare >/dev/null ||
		die "needs root and unshare: the window runs in a private network namespace"
	if [ -z "$BIN_PATH" ]; then
		BIN_PATH=$WORK/presence
		echo "+ go build -o $BIN_PATH .   (with the window: cgo, GL)"
		go build -o "$BIN_PATH" . || die "build failed"
	fi
	echo "screenshot: running $BIN_PATH ($("$BIN_PATH" version))"
	unshare -n env PRESENCE_SCREENSHOT_INNER=1 PRESENCE_SCREENSHOT_BIN="$BIN_PATH" PRESENCE_SCREENSHOT_DESKTOP="$DESKTOP_FILE" \
		sh -c 'ip link set lo up && exec bash "$0" "$@"' "${BASH_SOURCE[0]}" "$OUT"
	exit
fi
BIN=$PRESENCE_SCREENSHOT_BIN
DATA=$WORK/cfg/presence
mkdir -p "$DATA" "$(dirname "$OUT")"
# The usual locale of a fresh server or container: the window must not
# print Fyne's locale noise under it.
export XDG_CONFIG_HOME=$WORK/cfg LANG=C.UTF-8
unset LANGUAGE LC_ALL LC_MESSAGES
# How the window starts: as its .desktop file says, or the binary itself.
START="exec \"\$BIN\""
if [ -n "${PRESENCE_SCREENSHOT_DESKTOP:-}" ]; then
	exec_line=$(sed -n 's/^Exec=//p' "$PRESENCE_SCREENSHOT_DESKTOP" | head -n1 | sed 's/ *%[fFuUdDnNickvm]//g')
	[ -n "$exec_line" ] || die "$PRESENCE_SCREENSHOT_DESKTOP has no Exec line"
	START="cd \"\$HOME\" && export PATH=\"$(dirname "$BIN"):\$PATH\" && exec $exec_line"
	echo "screenshot: starting the window as $(basename "$PRESENCE_SCREENSHOT_DESKTOP") does: Exec=$exec_line"
fi
"$BIN" cert init --cn 127.0.0.1 --data-dir "$DATA" >/dev/null || die "cert init failed"
PW=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf %s "$PW" | "$BIN" account add --kind cira --data-dir "$DATA" dev >/dev/null || die "account add failed"
# A console account too, as an admin has one: the window shows no banner
# asking for it, and the screens sit where the clicks below expect them.
printf %s "$PW" | "$BIN" account add --kind console --data-dir "$DATA" admin >/dev/null || die "account add failed"
"$BIN" cert export-root --data-dir "$DATA" >"$WORK/root.pem"

export BIN DATA PW DEVICES OUT WORK START
xvfb-run -a -s "-screen 0 1100x720x24" bash -c '
	set -u
	sh -c "$START" >"$WORK/gui.log" 2>&1 &
	P=$!
	for i in $(seq 100); do xdotool search --name "^Presence$" >/dev/null 2>&1 && break; sleep 0.1; done
	W=$(xdotool search --name "^Presence$" | head -n1)
	[ -n "$W" ] || { echo "screenshot: the window did not appear" >&2; cat "$WORK/gui.log" >&2; kill $P; exit 1; }
	printf %s "$PW" | "$BIN" simulate --mps 127.0.0.1:4433 --ca "$WORK/root.pem" --user dev --devices "$DEVICES" --duration 30s >"$WORK/sim.json" 2>&1 &
	S=$!
	n=0
	for i in $(seq 100); do
		n=$("$BIN" devices --data-dir "$DATA" --format csv 2>/dev/null | tail -n +2 | wc -l)
		[ "$n" -ge "$DEVICES" ] && break
		sleep 0.2
	done
	[ "$n" -ge "$DEVICES" ] || { echo "screenshot: only $n of $DEVICES devices connected" >&2; kill $P $S; exit 1; }
	xdotool mousemove --window "$W" 45 60 click 1   # the Devices tab
	sleep 2                                         # a refresh (1 s) and a frame
	xdotool mousemove --window "$W" 150 96 click 1  # the first device: its pane
	sleep 1
	import -window "$W" "$OUT" || { kill $P $S; exit 1; }
	kill -INT $P
	wait $P; rc=$?
	kill $S 2>/dev/null; wait $S 2>/dev/null
	[ $rc = 0 ] || { echo "screenshot: the window exited with $rc" >&2; cat "$WORK/gui.log" >&2; exit 1; }
	if grep -q "parsing user locale" "$WORK/gui.log"; then
		echo "screenshot: the window printed Fyne locale noise under LANG=$LANG:" >&2
		grep "parsing user locale" "$WORK/gui.log" >&2
		exit 1
	fi
	echo "screenshot: $n devices connected; window stopped cleanly; $OUT"
'
