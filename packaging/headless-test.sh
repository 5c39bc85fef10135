#!/usr/bin/env bash
# The installed program, headless: the default build (the one the .deb and
# the Windows installer ship) started as a user on a server starts it, with
# no display and a C locale.
#
#   bash packaging/headless-test.sh --bin PATH [--nogui PATH] [--devices N]
#
# It checks that
#   - `presence` (the window) with no display exits 1 with one sentence that
#     names `presence serve`, and no stack trace;
#   - no command prints Fyne's locale noise under LANG=C, C.UTF-8 or POSIX,
#     or with no locale at all;
#   - the commands' output is byte-identical to the nogui build's (--nogui,
#     else built here with -tags nogui and the package's version);
#   - `presence serve` runs headless and holds N simulated devices (default
#     1000) beside devices in every fault mode, and a console gets WS-Man
#     through its proxy with curl (HTTP proxy and SOCKS5, digest auth);
#   - the AMT toolbox works on a simulated device: `presence amt power`
#     (state, offers, a refused power on with its sentence, a reset), `amt
#     info` and `amt log`, and the REST power state with curl;
#   - SIGINT stops it cleanly, leaving no run files.
#
# Everything runs inside a private network namespace (root and unshare):
# serve advertises over mDNS, which must not leave the machine.
set -uo pipefail
SCRIPT_NAME=headless-test
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=packaging/metadata.sh
. "$REPO_ROOT/packaging/metadata.sh"
cd "$REPO_ROOT" || exit 1

BIN= NOGUI= DEVICES=1000
while [ $# -gt 0 ]; do
	case $1 in
	--bin) BIN=$(realpath -m "$2"); shift ;;
	--nogui) NOGUI=$(realpath -m "$2"); shift ;;
	--devices) DEVICES=$2; shift ;;
	*) die "usage: packaging/headless-test.sh --bin PATH [--nogui PATH] [--devices N]" ;;
	esac
	shift
done
[ -n "$BIN" ] && [ -x "$BIN" ] || die "--bin PATH: the installed presence to test"
command -v curl >/dev/null || die "curl is missing: scripts/setup.sh installs it"

if [ "${PRESENCE_HEADLESS_INNER:-}" != 1 ]; then
	[ "$(id -u)" = 0 ] && command -v unshare >/dev/null ||
		die "needs root and unshare: serve runs in a private network namespace"
	if [ -z "$NOGUI" ]; then
		NOGUI=$(mktemp "${TMPDIR:-/tmp}/presence-nogui.XXXXXX")
		trap 'rm -f "$NOGUI"' EXIT
		echo "+ go build -tags nogui -ldflags -X ...cli.Version=$APP_VERSION -o $NOGUI ."
		go build -tags nogui -ldflags "-X github.com/presence-mps/presence/internal/cli.Version=$APP_VERSION" -o "$NOGUI" . ||
			die "nogui build failed"
	fi
	unshare -n env PRESENCE_HEADLESS_INNER=1 sh -c 'ip link set lo up && exec bash "$0" "$@"' \
		"${BASH_SOURCE[0]}" --bin "$BIN" --nogui "$NOGUI" --devices "$DEVICES"
	exit
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/presence-headless.XXXXXX") || die "mktemp failed"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/.config
mkdir -p "$HOME"
unset DISPLAY WAYLAND_DISPLAY LANGUAGE LC_ALL LC_MESSAGES DBUS_SESSION_BUS_ADDRESS
export LANG=C
DATA=$WORK/data
failed=0
fail() { echo "headless-test: FAIL: $*" >&2; failed=1; }

# -- the window without a display --------------------------------------------
window_without_display() {
	local args rc out
	for args in "" "--data-dir $DATA"; do
		# shellcheck disable=SC2086
		"$BIN" $args >"$WORK/w.out" 2>"$WORK/w.err"
		rc=$?
		out=$(cat "$WORK/w.err")
		if [ $rc -ne 1 ] || [ "$(wc -l <"$WORK/w.err")" -ne 1 ] || ! grep -q "presence serve" "$WORK/w.err" ||
			grep -qiE "panic|goroutine|fyne|glfw" "$WORK/w.err" "$WORK/w.out"; then
			fail "presence $args without a display: exit $rc, stderr: $out"
			return 1
		fi
		echo "ok: presence $args without a display: exit 1: $out"
	done
}

# -- no Fyne noise, the same output as the nogui build ------------------------
same_as_nogui() {
	local loc cmd n=0
	"$BIN" cert init --cn 127.0.0.1 --data-dir "$DATA" --vault file >/dev/null || { fail "cert init"; return 1; }
	local cmds=("version" "-h" "serve -h" "demo -h" "cert -h" "cert show --data-dir $DATA"
		"account list --kind cira --data-dir $DATA" "devices --data-dir $DATA" "frobnicate"
		"serve --keepalive 30s --idle-timeout 30s" "history --data-dir $DATA" "discover -h" "simulate -h")
	for loc in C C.UTF-8 POSIX ""; do
		for cmd in "${cmds[@]}"; do
			# shellcheck disable=SC2086
			LANG=$loc "$BIN" $cmd >"$WORK/a.out" 2>"$WORK/a.err"
			echo "exit $?" >>"$WORK/a.out"
			# shellcheck disable=SC2086
			LANG=$loc "$NOGUI" $cmd >"$WORK/b.out" 2>"$WORK/b.err"
			echo "exit $?" >>"$WORK/b.out"
			if grep -q "Fyne" "$WORK/a.out" "$WORK/a.err"; then
				fail "LANG=$loc presence $cmd prints Fyne's noise: $(grep -h Fyne "$WORK/a.out" "$WORK/a.err" | head -n1)"
			fi
			if ! cmp -s "$WORK/a.out" "$WORK/b.out" || ! cmp -s "$WORK/a.err" "$WORK/b.err"; then
				fail "LANG=$loc presence $cmd: the default build's output differs from the nogui build's"
				diff "$WORK/a.out" "$WORK/b.out" | head -n 5 >&2
				diff "$WORK/a.err" "$WORK/b.err" | head -n 5 >&2
			fi
			n=$((n + 1))
		done
	done
	[ $failed -eq 0 ] && echo "ok: $n command runs, no Fyne output, byte-identical to the nogui build"
}

# free_port prints a free loopback port.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

# count_devices prints how many devices the running instance lists.
count_devices() {
	"$BIN" devices --data-dir "$DATA" --format csv 2>/dev/null | tail -n +2 | wc -l
}

# wsman TARGET PROXYOPT...: curl's HTTP code for a WS-Man Get of
# AMT_GeneralSettings, credentials on stdin (-K -), never in argv.
wsman() {
	local target=$1
	shift
	printf 'user = "admin:%s"\nproxy-user = "console:%s"\n' "$AMT_PW" "$CONSOLE_PW" |
		curl -sS --digest -K - --max-time 20 -H 'Content-Type: application/soap+xml;charset=UTF-8' \
			--data-binary @"$WORK/get.xml" -o "$WORK/resp.xml" -w '%{http_code}' "$@" "$target"
}

serve_headless() {
	CIRA_PW=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
	CONSOLE_PW=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
	AMT_PW=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')A1!
	printf %s "$CIRA_PW" | "$BIN" account add --kind cira --data-dir "$DATA" --vault file dev >/dev/null || { fail "account add cira"; return 1; }
	printf %s "$CONSOLE_PW" | "$BIN" account add --kind console --data-dir "$DATA" --vault file console >/dev/null || { fail "account add console"; return 1; }
	printf %s "$AMT_PW" | "$BIN" account add --kind amt --data-dir "$DATA" --vault file admin >/dev/null || { fail "account add amt"; return 1; }
	"$BIN" cert export-root --data-dir "$DATA" --vault file >"$WORK/root.pem" || { fail "export-root"; return 1; }
	local cira proxy api
	cira=127.0.0.1:$(free_port) proxy=127.0.0.1:$(free_port) api=127.0.0.1:$(free_port)
	LANG=C.UTF-8 "$BIN" serve --data-dir "$DATA" --vault file --cira-addr "$cira" --proxy-addr "$proxy" --api-addr "$api" \
		2>"$WORK/serve.log" &
	local serve=$!
	PIDS+=("$serve")
	local i
	for i in $(seq 200); do grep -q "Presence MPS serving" "$WORK/serve.log" && break; sleep 0.1; done
	grep -q "Presence MPS serving" "$WORK/serve.log" || { fail "serve did not start"; cat "$WORK/serve.log" >&2; return 1; }
	echo "ok: serve is up headless: $(grep -o 'cira=[^ ]* proxy=[^ ]*' "$WORK/serve.log")"

	# The fleet, and beside it devices in every fault mode.
	local per=${PER_SIM:-5000} first=0 n
	while [ $first -lt "$DEVICES" ]; do
		n=$((DEVICES - first < per ? DEVICES - first : per))
		printf '%s\n%s\n' "$CIRA_PW" "$AMT_PW" | "$BIN" simulate --mps "$cira" --ca "$WORK/root.pem" --user dev --amt-login \
			--devices "$n" --first "$first" --rate 500 --duration 10m >"$WORK/sim-$first.json" 2>&1 &
		PIDS+=($!)
		first=$((first + n))
	done
	local f
	for f in wrong-password garbage trickle silent drop-after reconnect-loop; do
		printf %s "$CIRA_PW" | "$BIN" simulate --mps "$cira" --ca "$WORK/root.pem" --user dev --seed "fault-$f" \
			--devices 5 --first 900000 --fault "$f" --hold 500ms --duration 10m >"$WORK/fault-$f.json" 2>&1 &
		PIDS+=($!)
	done
	local up=0
	for i in $(seq 600); do
		up=$(count_devices)
		[ "$up" -ge "$DEVICES" ] && break
		sleep 0.2
	done
	[ "$up" -ge "$DEVICES" ] || { fail "only $up of $DEVICES devices connected"; return 1; }
	sleep 5 # the fault modes have their go
	up=$(count_devices)
	[ "$up" -ge "$DEVICES" ] || { fail "after 5 s beside the fault modes, $up of $DEVICES devices are up"; return 1; }
	kill -0 "$serve" 2>/dev/null || { fail "serve died"; cat "$WORK/serve.log" >&2; return 1; }
	echo "ok: $up devices up beside devices in 6 fault modes"

	cat >"$WORK/get.xml" <<'XML'
<?xml version="1.0" encoding="utf-8"?><Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action><a:To>/wsman</a:To><w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings</w:ResourceURI><a:MessageID>uuid:headless-test</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout></Header><Body></Body></Envelope>
XML
	local host
	host=$(printf 'sim-%06d' $((DEVICES / 2)))
	local code
	code=$(wsman "http://$host:16992/wsman" -x "http://$proxy")
	if [ "$code" != 200 ] || ! grep -q "<g:HostName>$host</g:HostName>" "$WORK/resp.xml"; then
		fail "WS-Man through the HTTP proxy to $host: HTTP $code: $(head -c 300 "$WORK/resp.xml")"
	else
		echo "ok: WS-Man AMT_GeneralSettings of $host through the HTTP proxy (curl, digest): HTTP 200"
	fi
	code=$(wsman "http://$host:16992/wsman" --socks5-hostname "$proxy")
	if [ "$code" != 200 ] || ! grep -q "<g:HostName>$host</g:HostName>" "$WORK/resp.xml"; then
		fail "WS-Man through SOCKS5 to $host: HTTP $code"
	else
		echo "ok: the same through SOCKS5 (curl --socks5-hostname): HTTP 200"
	fi
	amt_toolbox "$host" "$api"

	kill -INT "$serve"
	local rc
	wait "$serve"
	rc=$?
	[ $rc -eq 0 ] || fail "serve exited $rc on SIGINT"
	grep -q "stopping" "$WORK/serve.log" || fail "serve did not log its stop"
	if grep -qiE "fyne|glfw|panic|goroutine [0-9]" "$WORK/serve.log"; then
		fail "serve's log: $(grep -iE 'fyne|glfw|panic|goroutine [0-9]' "$WORK/serve.log" | head -n 3)"
	fi
	if grep -q "$CIRA_PW\|$CONSOLE_PW\|$AMT_PW" "$WORK/serve.log"; then
		fail "a password reached serve's log"
	fi
	[ ! -e "$DATA/run/instance.json" ] || fail "serve left its run files"
	[ $failed -eq 0 ] && echo "ok: SIGINT stopped serve cleanly (exit 0, no run files, no Fyne or GL output)"
}

# amt_toolbox HOST API: the AMT toolbox of the installed program, through
# its command line and its REST API (curl), on a simulated device.
amt_toolbox() {
	local host=$1 api=$2 out guid code
	out=$("$BIN" amt power --data-dir "$DATA" "$host" 2>&1) || { fail "presence amt power $host: $out"; return 1; }
	grep -qi "on" <<<"$out" && grep -q "Reset" <<<"$out" && ! grep -q "Power on$" <<<"$out" ||
		{ fail "presence amt power $host: the state and offers are wrong: $out"; return 1; }
	out=$("$BIN" amt power --data-dir "$DATA" "$host" on 2>&1) && { fail "power on of a device that is on was accepted: $out"; return 1; }
	grep -q "on already" <<<"$out" || { fail "power on while on: no sentence: $out"; return 1; }
	out=$("$BIN" amt power --data-dir "$DATA" "$host" reset 2>&1) || { fail "presence amt power $host reset: $out"; return 1; }
	out=$("$BIN" amt info --data-dir "$DATA" --format json "$host" 2>&1) || { fail "presence amt info: $out"; return 1; }
	grep -q '"ACM"' <<<"$out" || { fail "presence amt info: no control mode: $(head -c 300 <<<"$out")"; return 1; }
	out=$("$BIN" amt log --data-dir "$DATA" --format csv "$host" 2>&1) || { fail "presence amt log: $out"; return 1; }
	[ "$(wc -l <<<"$out")" -ge 2 ] || { fail "presence amt log: no records: $out"; return 1; }
	echo "ok: presence amt power (state, offers, a refusal with its sentence, reset), info and log on $host"
	guid=$("$BIN" devices --data-dir "$DATA" --format csv 2>/dev/null | grep ",$host," | cut -d, -f1 | head -n1)
	[ -n "$guid" ] || guid=$host
	code=$(printf 'user = "console:%s"\n' "$CONSOLE_PW" | curl -sS -K - --max-time 20 -o "$WORK/amt.json" -w '%{http_code}' \
		"http://$api/api/v1/amt/power/state/$guid")
	if [ "$code" != 200 ] || ! grep -q '"powerstate": *2' "$WORK/amt.json"; then
		fail "curl GET /api/v1/amt/power/state/$guid: HTTP $code: $(head -c 300 "$WORK/amt.json")"
		return 1
	fi
	echo "ok: curl GET /api/v1/amt/power/state/$guid: HTTP 200 $(tr -d ' \n' <"$WORK/amt.json")"
}

echo "headless-test: $BIN ($("$BIN" version)), nogui $NOGUI, $DEVICES devices, no DISPLAY"
window_without_display
same_as_nogui
serve_headless
[ $failed -eq 0 ] || die "the installed program failed headless"
echo "headless-test: passed"
