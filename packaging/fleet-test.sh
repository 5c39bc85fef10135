#!/usr/bin/env bash
# Two installed Presence instances as one fleet, process by process: the
# default build (the one the .deb ships) started with no display and
# LANG=C, set up and run only through its documented command line
# (shared/DESIGN.md) and its REST API, with simulated AMT devices.
#
#   bash packaging/fleet-test.sh --bin PATH [--devices N] [--mode peer|mdns|both] [--keep]
#
# Each mode runs the same story, and the script fails unless
#   1. A is set up (cert init, a CIRA and a console account), `fleet
#      invite` on A and `fleet join --cn` on B (passwords and passphrase on
#      stdin), both `presence serve` with their own data dir, vault file
#      and ports, and their peer link comes up:
#        peer  one namespace, every server on 127.0.0.1, mDNS off, B given
#              `--peer A` (the join also keeps A's peer address);
#        mdns  A and B in network namespaces of their own (and host names
#              of their own) joined by a veth pair on 10.231.7.0/24,
#              multicast on, no --peer; their MPS entries are public
#              addresses (192.0.2.0/24, unreachable here) that NAT to the
#              LAN ones, so the peer address the join keeps goes nowhere
#              and only mDNS finds A;
#   2. N devices whose AMT entries are B then A (`simulate --mps B,A
#      --server-name --retry-interval`) and 2 devices that know only B,
#      all on B, answer WS-Man (AMT_GeneralSettings Get, digest) through
#      A's proxy, by HTTP proxy and by SOCKS5 (curl --socks5-hostname),
#      by host name, NAME.amt and GUID (with and without dashes, any case),
#      each answer from the device asked for (its HostName); amtterm
#      (Serial-over-LAN) reaches a device through a port mapping on A
#      (`presence map`), and WS-Man and amtterm reach devices through A's
#      websocket relay (packaging/fleettest, a small websocket client);
#   3. both histories record the forwarded sessions (`presence history
#      --sessions`): B's as kind fleet, via A; A's as its console's own;
#   4. a console account added on A (`presence account add` while A runs)
#      logs in to B's proxy within 5 s (measured);
#   5. after kill -9 of B, the N devices come up on A and answer WS-Man
#      through A's proxy, the 2 without a backup entry are refused cleanly
#      (HTTP 404), and `presence devices`, `presence fleet status` and
#      GET /api/v1/fleet on A show B down (times measured from the kill);
#   6. SIGINT stops A cleanly, and no password reached a log.
# `presence fleet status` of both instances is printed, and a summary of
# the figures (link-up, curl times, account sync, failover) ends the run.
#
# Everything runs inside a private network and mount namespace (root and
# unshare -n -m): nothing leaves the machine, and the namespaces made with
# `ip netns add` live on a private /run that goes with it. Every wait is a
# poll with a deadline. --keep keeps the work directory (logs, data dirs).
set -uo pipefail
SCRIPT_NAME=fleet-test
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$REPO_ROOT" || exit 1

BIN='' DEVICES=4 MODE=both KEEP=0
usage() { die "usage: packaging/fleet-test.sh --bin PATH [--devices N] [--mode peer|mdns|both] [--keep]"; }
while [ $# -gt 0 ]; do
	case $1 in
	--bin) BIN=$(realpath -m "$2"); shift ;;
	--devices) DEVICES=$2; shift ;;
	--mode) MODE=$2; shift ;;
	--keep) KEEP=1 ;;
	*) usage ;;
	esac
	shift
done
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then die "--bin PATH: the installed presence to test"; fi
[[ "$DEVICES" =~ ^[1-9][0-9]?$ ]] || die "--devices N: 1 to 99"
case $MODE in peer | mdns | both) ;; *) usage ;; esac
for c in curl amtterm ip unshare mount; do
	command -v "$c" >/dev/null || die "$c is missing: scripts/setup.sh installs it"
done

if [ "${PRESENCE_FLEET_INNER:-}" != 1 ]; then
	[ "$(id -u)" = 0 ] || die "needs root: the instances run in private network namespaces (unshare, ip netns)"
	unshare -n -m true 2>/dev/null || die "unshare -n -m does not work here"
	HELPER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/presence-fleettest.XXXXXX") || die "mktemp failed"
	trap 'rm -rf "$HELPER_DIR"' EXIT
	echo "+ go build -o $HELPER_DIR/fleettest ./packaging/fleettest   (the websocket relay client, a JSON reader)"
	go build -o "$HELPER_DIR/fleettest" ./packaging/fleettest || die "building packaging/fleettest failed"
	args=(--bin "$BIN" --devices "$DEVICES" --mode "$MODE")
	[ "$KEEP" = 1 ] && args+=(--keep)
	# /run is private to the namespace: `ip netns add` keeps its names
	# there, and they go when the namespace does.
	# shellcheck disable=SC2016 # $0 and $@ are the inner sh's
	unshare -n -m env PRESENCE_FLEET_INNER=1 PRESENCE_FLEET_HELPER="$HELPER_DIR/fleettest" \
		sh -c 'ip link set lo up && mount -t tmpfs -o mode=0755 tmpfs /run && exec bash "$0" "$@"' \
		"${BASH_SOURCE[0]}" "${args[@]}"
	exit
fi

HELPER=${PRESENCE_FLEET_HELPER:?}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/presence-fleet.XXXXXX") || die "mktemp failed"
PIDS=() NETNS=()
T_START=${EPOCHREALTIME//[!0-9]/}

# mine PID: PID is a child of this script (not a stranger that reused
# the number of one that has ended).
mine() { [ "$(awk '/^PPid:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" = "$$" ]; }

# stop_pids PID...: SIGTERM, then SIGKILL for whatever is still there
# after 10 s; each is waited for.
stop_pids() {
	local p end
	for p in "$@"; do mine "$p" && kill "$p" 2>/dev/null; done
	end=$(($(ms_now) + 10000))
	for p in "$@"; do
		while mine "$p" && kill -0 "$p" 2>/dev/null && [ "$(ms_now)" -lt $end ]; do sleep 0.05; done
		mine "$p" && kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}
cleanup() {
	[ ${#PIDS[@]} -gt 0 ] && stop_pids "${PIDS[@]}"
	local ns
	for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	if [ "$KEEP" = 1 ]; then echo "fleet-test: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/.config
mkdir -p "$HOME"
unset DISPLAY WAYLAND_DISPLAY LANGUAGE LC_ALL LC_MESSAGES DBUS_SESSION_BUS_ADDRESS
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
export LANG=C
failed=0
fail() { echo "fleet-test: FAIL: $*" >&2; failed=1; }
ok() { echo "ok: $*"; }

# ms_now prints the time in milliseconds.
ms_now() {
	local t=${EPOCHREALTIME//[!0-9]/}
	echo $((t / 1000))
}

# poll SECONDS CMD...: runs CMD every 0.1 s until it succeeds; fails after
# SECONDS.
poll() {
	local end=$(($(ms_now) + $1 * 1000))
	shift
	while ! "$@"; do
		[ "$(ms_now)" -lt $end ] || return 1
		sleep 0.1
	done
}

# secret [SUFFIX] prints a random password: 24 hex digits and SUFFIX.
secret() { printf '%s%s' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" "${1:-}"; }

# FIG holds the figures for the summary: "MODE KEY" -> value.
declare -A FIG
FIG_KEYS=()
fig() {
	FIG["$MODE_NOW $1"]=$2
	FIG_KEYS+=("$MODE_NOW $1")
}
# TIMES collects curl's time_total per kind of request ("MODE KIND").
declare -A TIMES

cat >"$WORK/get.xml" <<'XML'
<?xml version="1.0" encoding="utf-8"?><Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action><a:To>/wsman</a:To><w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings</w:ResourceURI><a:MessageID>uuid:fleet-test</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout></Header><Body></Body></Envelope>
XML

# The secrets of the run: they go to the programs on stdin (or amtterm's
# AMT_PASSWORD), never in argv.
CIRA_PW=$(secret)
CONSOLE_PW=$(secret)
BOB_PW=$(secret)
AMT_PW=$(secret A1!)
PASSPHRASE="fleet $(secret)"

# Ports: each mode has namespaces of its own, so nothing else listens on
# them. In mode peer both instances share 127.0.0.1.
A_CIRA_PORT=14433 A_PROXY_PORT=11080 A_API_PORT=16990 A_PEER_PORT=16991
B_CIRA_PORT=24433 B_PROXY_PORT=21080 B_API_PORT=26990 B_PEER_PORT=26991

# Per mode: where each instance runs (RA, RB: the command prefix of its
# namespace), its address for devices and peers (HA, HB), its data dir.
RA=() RB=()
on() {
	local side=$1
	shift
	if [ "$side" = a ]; then "${RA[@]}" "$@"; else "${RB[@]}" "$@"; fi
}

# wait_log FILE TEXT SECONDS: TEXT appears in FILE.
wait_log() { poll "$3" grep -qs -- "$2" "$1"; }

# devices_tsv SIDE DIR: the running instance's devices, one a line:
# hostname, instance, uuid, ports.
devices_tsv() {
	on "$1" "$BIN" devices --data-dir "$2" --format json 2>/dev/null | "$HELPER" tsv hostname instance uuid ports
}

# listed SIDE DIR INSTANCE HOST...: every HOST is listed with INSTANCE
# (and, on its own instance, with its redirection port announced).
listed() {
	local side=$1 dir=$2 inst=$3 tsv h
	shift 3
	tsv=$(devices_tsv "$side" "$dir") || return 1
	for h in "$@"; do
		grep -q "^$h	$inst	" <<<"$tsv" || return 1
		if [ "$dir" = "$DB" ] && [ "$inst" = "$B_ID" ]; then
			grep "^$h	" <<<"$tsv" | grep -q 16994 || return 1
		fi
	done
}

# wsman SIDE URL PROXYUSER CURLOPT...: curl's "CODE TIME" for a WS-Man Get
# of AMT_GeneralSettings (digest, admin), the answer in $WORK/resp.xml.
# The credentials go on curl's stdin (-K -).
wsman() {
	local side=$1 url=$2 puser=$3
	shift 3
	rm -f "$WORK/resp.xml"
	{
		printf 'user = "admin:%s"\n' "$AMT_PW"
		[ -z "$puser" ] || printf 'proxy-user = "%s"\n' "$puser"
	} | on "$side" curl -sS --digest -K - --max-time 20 -H 'Content-Type: application/soap+xml;charset=UTF-8' \
		--data-binary @"$WORK/get.xml" -o "$WORK/resp.xml" -w '%{http_code} %{time_total}' "$@" "$url" 2>"$WORK/curl.err"
}

# check_wsman SIDE KIND WANT TARGET PROXYUSER CURLOPT...: WS-Man at
# TARGET (a device's NAME:16992, through a proxy, or a relay client's
# address) answers 200 with WANT as its HostName; the time goes to
# TIMES[KIND].
check_wsman() {
	local side=$1 kind=$2 want=$3 target=$4 puser=$5 r code
	shift 5
	r=$(wsman "$side" "http://$target/wsman" "$puser" "$@")
	code=${r%% *}
	if [ "$code" = 200 ] && grep -Eq "<([[:alnum:]_]+:)?HostName>$want</([[:alnum:]_]+:)?HostName>" "$WORK/resp.xml"; then
		TIMES["$MODE_NOW $kind"]+="${r##* } "
		return 0
	fi
	LAST_WSMAN="$kind to $target (want $want): HTTP $code: $(head -c 200 "$WORK/resp.xml" 2>/dev/null)$(head -c 200 "$WORK/curl.err")"
	return 1
}

# guid_of SIDE DIR HOST: the GUID of the device named HOST, from that
# instance's list.
guid_of() { devices_tsv "$1" "$2" | awk -F'\t' -v h="$3" '$1 == h { print $3; exit }'; }

# sol HOST PORT WANT LABEL: amtterm (admin, AMT_PASSWORD), run on A's
# side, to HOST:PORT shows WANT's serial console, echoes a line typed into
# it, and ends with ^]. Sets SOL_MS, the time to the banner.
sol() {
	local host=$1 port=$2 want=$3 label=$4 fifo=$WORK/sol.in pid t0 rc
	rm -f "$fifo" "$WORK/sol.out"
	mkfifo "$fifo" || return 1
	exec 3<>"$fifo" # read-write: never blocks, and amtterm sees EOF when it closes
	t0=$(ms_now)
	AMT_PASSWORD=$AMT_PW "${RA[@]}" amtterm -u admin "$host" "$port" <"$fifo" >"$WORK/sol.out" 2>"$WORK/sol.err" &
	pid=$!
	PIDS+=("$pid")
	if ! poll 20 grep -aq "serial console on $want" "$WORK/sol.out"; then
		exec 3>&-
		stop_pids "$pid"
		fail "$label: amtterm never showed $want's console: $(tr -cd '[:print:]\n' <"$WORK/sol.out" | tail -n 3) $(tail -n 3 "$WORK/sol.err")"
		return 1
	fi
	SOL_MS=$(($(ms_now) - t0))
	printf 'hello presence\n' >&3
	if ! poll 10 grep -aq "you typed: hello presence" "$WORK/sol.out"; then
		exec 3>&-
		stop_pids "$pid"
		fail "$label: the line typed into amtterm never came back from $want"
		return 1
	fi
	printf '\035' >&3 # ^]: amtterm ends the session
	exec 3>&-
	poll 10 eval "! kill -0 $pid 2>/dev/null" || { stop_pids "$pid"; fail "$label: amtterm did not end on ^]"; return 1; }
	wait "$pid"
	rc=$?
	[ $rc -eq 0 ] || { fail "$label: amtterm exited $rc: $(tail -n 3 "$WORK/sol.err")"; return 1; }
}

# relay_start HOST PORT: the relay client on A's side, for device HOST's
# PORT through A's /relay/webrelay.ashx, logged in as the console account;
# sets RELAY_PID and RELAY_ADDR (where it accepts connections).
relay_start() {
	rm -f "$WORK/relay.out"
	"${RA[@]}" "$HELPER" relay -url "ws://127.0.0.1:$A_API_PORT/relay/webrelay.ashx?host=$1&port=$2" \
		<<<"console:$CONSOLE_PW" >"$WORK/relay.out" 2>"$WORK/relay.err" &
	RELAY_PID=$!
	PIDS+=("$RELAY_PID")
	if ! poll 10 grep -qs '^listening ' "$WORK/relay.out"; then
		fail "the relay client did not start: $(cat "$WORK/relay.err")"
		stop_pids "$RELAY_PID"
		return 1
	fi
	RELAY_ADDR=$(sed -n 's/^listening //p' "$WORK/relay.out")
}

# serve SIDE DIR LOG ARGS...: starts presence serve; sets SERVE_PID.
serve() {
	local side=$1 dir=$2 log=$3 pre
	shift 3
	if [ "$side" = a ]; then pre=("${RA[@]}"); else pre=("${RB[@]}"); fi
	# In mode mdns each instance is a machine of its own, with a host name
	# of its own (mDNS names the service "Presence on HOSTNAME", which
	# must be unique on the LAN): a UTS namespace. unshare and sh exec, so
	# the pid is the program's.
	# shellcheck disable=SC2016 # $0 and $@ are the inner sh's
	[ "$MODE_NOW" = mdns ] && pre+=(unshare -u sh -c 'echo "$0" >/proc/sys/kernel/hostname && exec "$@"' "presence-$side")
	"${pre[@]}" "$BIN" serve --data-dir "$dir" --vault file "$@" 2>"$log" &
	SERVE_PID=$!
	PIDS+=("$SERVE_PID")
}

# status_text SIDE DIR: presence fleet status, indented, for the log.
status_text() { on "$1" "$BIN" fleet status --data-dir "$2" 2>&1 | sed 's/^/    /'; }

# stats_ms SECONDS...: "min / median / max ms (n)" of curl times.
stats_ms() {
	[ $# -gt 0 ] || { echo "-"; return; }
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 * 1000 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.1f / %.1f / %.1f ms (n=%d)", v[1], m, v[NR], NR }'
}

# dump_logs: the instances' logs' tails, when something failed.
dump_logs() {
	local f
	for f in "$WORK/$MODE_NOW"-*.log; do
		[ -f "$f" ] || continue
		echo "--- $f (last 15 lines)" >&2
		tail -n 15 "$f" >&2
	done
}

# netns_pair: A and B in namespaces of their own, joined by a veth pair.
netns_pair() {
	local na=pft-a-$$ nb=pft-b-$$
	ip netns add "$na" && NETNS+=("$na") && ip netns add "$nb" && NETNS+=("$nb") &&
		ip link add vfa netns "$na" type veth peer name vfb netns "$nb" &&
		ip -n "$na" addr add 10.231.7.1/24 dev vfa && ip -n "$nb" addr add 10.231.7.2/24 dev vfb &&
		ip -n "$na" link set lo up && ip -n "$nb" link set lo up &&
		ip -n "$na" link set vfa multicast on up && ip -n "$nb" link set vfb multicast on up || return 1
	RA=(ip netns exec "$na") RB=(ip netns exec "$nb")
	HA=10.231.7.1 HB=10.231.7.2
	# Each instance's MPS entry, the address its AMT devices are given, is
	# a public one (TEST-NET-1, no route here) that NATs to its LAN
	# address: the devices dial the LAN address and check the certificate
	# for the entry (simulate --server-name). The join bundle names A's
	# entry and peer port, so B's link to it from the join goes nowhere:
	# only mDNS finds A on the LAN.
	NA=192.0.2.10 NB=192.0.2.20
	# The veth pair's carrier comes up a moment later.
	poll 10 sh -c "ip -n $na -br link show vfa | grep -q ' UP '" || return 1
	ok "namespaces $na (A, $HA) and $nb (B, $HB) joined by a veth pair, multicast on"
}

scenario() {
	MODE_NOW=$1
	local t0 t1 h i n code r
	DA=$WORK/$MODE_NOW/a DB=$WORK/$MODE_NOW/b
	mkdir -p "$WORK/$MODE_NOW"
	local LA=$WORK/$MODE_NOW-a.log LB=$WORK/$MODE_NOW-b.log
	echo "== mode $MODE_NOW"
	if [ "$MODE_NOW" = peer ]; then
		RA=() RB=() HA=127.0.0.1 HB=127.0.0.1 NA=127.0.0.1 NB=127.0.0.1
	else
		netns_pair || { fail "could not make the network namespaces"; return 1; }
	fi

	# -- 1. set up A, invite, join B ------------------------------------------
	on a "$BIN" cert init --cn "$NA" --data-dir "$DA" --vault file >"$WORK/$MODE_NOW/init.out" 2>&1 ||
		{ fail "cert init on A: $(cat "$WORK/$MODE_NOW/init.out")"; return 1; }
	if ! printf '%s\n' "$CIRA_PW" | on a "$BIN" account add --kind cira --data-dir "$DA" --vault file dev >/dev/null ||
		! printf '%s\n' "$CONSOLE_PW" | on a "$BIN" account add --kind console --data-dir "$DA" --vault file console >/dev/null; then
		fail "account add on A"
		return 1
	fi
	printf '%s\n' "$PASSPHRASE" | on a "$BIN" fleet invite --out "$WORK/$MODE_NOW/fleet.bundle" --data-dir "$DA" --vault file \
		>"$WORK/$MODE_NOW/invite.out" 2>&1 || { fail "fleet invite on A: $(cat "$WORK/$MODE_NOW/invite.out")"; return 1; }
	printf '%s\n' "$PASSPHRASE" | on b "$BIN" fleet join --in "$WORK/$MODE_NOW/fleet.bundle" --cn "$NB" --port "$B_CIRA_PORT" \
		--data-dir "$DB" --vault file >"$WORK/$MODE_NOW/join.out" 2>&1 ||
		{ fail "fleet join on B: $(cat "$WORK/$MODE_NOW/join.out")"; return 1; }
	ok "A set up (cert init --cn $NA, CIRA and console accounts), $(head -n1 "$WORK/$MODE_NOW/invite.out" | sed 's/, encrypted.*//'); B: $(head -n1 "$WORK/$MODE_NOW/join.out" | cut -c1-60)…"
	on a "$BIN" cert export-root --data-dir "$DA" --vault file >"$WORK/$MODE_NOW/root.pem" || { fail "export-root"; return 1; }

	local aflags=(--cira-addr "$HA:$A_CIRA_PORT" --proxy-addr "127.0.0.1:$A_PROXY_PORT" --api-addr "127.0.0.1:$A_API_PORT"
		--peer-addr "$HA:$A_PEER_PORT")
	local bflags=(--cira-addr "$HB:$B_CIRA_PORT" --proxy-addr "127.0.0.1:$B_PROXY_PORT" --api-addr "127.0.0.1:$B_API_PORT"
		--peer-addr "$HB:$B_PEER_PORT")
	if [ "$MODE_NOW" = peer ]; then
		aflags+=(--mdns=false) bflags+=(--mdns=false --peer "$HA:$A_PEER_PORT")
	fi
	serve a "$DA" "$LA" "${aflags[@]}"
	local PA=$SERVE_PID
	wait_log "$LA" "Presence MPS serving" 30 || { fail "A's serve did not start"; return 1; }
	t0=$(ms_now)
	serve b "$DB" "$LB" "${bflags[@]}"
	local PB=$SERVE_PID
	wait_log "$LB" "Presence MPS serving" 30 || { fail "B's serve did not start"; return 1; }
	if ! wait_log "$LB" "peer link up" 40 || ! wait_log "$LA" "peer link up" 10; then
		fail "the peer link between A and B never came up"
		return 1
	fi
	t1=$(ms_now)
	fig "link up after B started" "$((t1 - t0)) ms"
	A_ID=$(on a "$BIN" fleet status --data-dir "$DA" --format json | "$HELPER" tsv -path self id)
	B_ID=$(on b "$BIN" fleet status --data-dir "$DB" --format json | "$HELPER" tsv -path self id)
	if [ "$MODE_NOW" = mdns ]; then
		grep -q "peer found over mDNS; linking" "$LA" "$LB" || fail "the link did not come from mDNS (no 'peer found over mDNS' in either log)"
		ok "A ($A_ID) and B ($B_ID) serve, and found each other over mDNS: link up $((t1 - t0)) ms after B started"
	else
		ok "A ($A_ID) and B ($B_ID, --peer $HA:$A_PEER_PORT) serve on 127.0.0.1, link up $((t1 - t0)) ms after B started"
	fi

	# -- 2. devices on B, consoles on A ---------------------------------------
	local fhosts=() bhosts=(sim-000100 sim-000101)
	for ((i = 0; i < DEVICES; i++)); do fhosts+=("$(printf 'sim-%06d' "$i")"); done
	printf '%s\n%s\n' "$CIRA_PW" "$AMT_PW" >"$WORK/sim.in"
	"${RB[@]}" "$BIN" simulate --mps "$HB:$B_CIRA_PORT,$HA:$A_CIRA_PORT" --server-name "$NB,$NA" --retry-interval 2s \
		--ca "$WORK/$MODE_NOW/root.pem" --user dev --amt-login --devices "$DEVICES" --duration 10m \
		<"$WORK/sim.in" >"$WORK/$MODE_NOW/sim-ba.json" 2>&1 &
	PIDS+=($!)
	local SIM1=$!
	"${RB[@]}" "$BIN" simulate --mps "$HB:$B_CIRA_PORT" --server-name "$NB" --ca "$WORK/$MODE_NOW/root.pem" --user dev --amt-login \
		--devices 2 --first 100 --duration 10m <"$WORK/sim.in" >"$WORK/$MODE_NOW/sim-b.json" 2>&1 &
	PIDS+=($!)
	local SIM2=$!
	if ! poll 30 listed b "$DB" "$B_ID" "${fhosts[@]}" "${bhosts[@]}"; then
		fail "B does not list its $((DEVICES + 2)) devices: $(devices_tsv b "$DB" | tr '\n' ' ')"
		return 1
	fi
	rm -f "$WORK/sim.in" # the simulators have read it: B lists their devices
	if ! poll 15 listed a "$DA" "$B_ID" "${fhosts[@]}" "${bhosts[@]}"; then
		fail "A does not list B's devices as B's: $(devices_tsv a "$DA" | tr '\n' ' ')"
		return 1
	fi
	ok "$((DEVICES + 2)) devices on B ($DEVICES with entries B then A, 2 with B only), and A lists them as B's"
	local PU="console:$CONSOLE_PW" AP=127.0.0.1:$A_PROXY_PORT BP=127.0.0.1:$B_PROXY_PORT
	# A hears of a device's ports from B's event stream a moment after B.
	if ! poll 10 check_wsman a warmup "${fhosts[0]}" "${fhosts[0]}:16992" "$PU" -x "http://$AP"; then
		fail "WS-Man of ${fhosts[0]} (on B) through A's HTTP proxy: $LAST_WSMAN"
		return 1
	fi
	n=0
	for h in "${fhosts[@]}" "${bhosts[@]}"; do
		check_wsman a "A http" "$h" "$h:16992" "$PU" -x "http://$AP" || { fail "through A's HTTP proxy: $LAST_WSMAN"; continue; }
		check_wsman a "A socks5" "$h" "$h:16992" "$PU" --socks5-hostname "$AP" || { fail "through A's SOCKS5: $LAST_WSMAN"; continue; }
		check_wsman b "B http" "$h" "$h:16992" "$PU" -x "http://$BP" || { fail "through B's own HTTP proxy: $LAST_WSMAN"; continue; }
		check_wsman b "B socks5" "$h" "$h:16992" "$PU" --socks5-hostname "$BP" || { fail "through B's own SOCKS5: $LAST_WSMAN"; continue; }
		n=$((n + 1))
	done
	[ $n -eq $((DEVICES + 2)) ] && ok "WS-Man (AMT_GeneralSettings, digest) of all $n devices on B through A's proxy, HTTP and SOCKS5 (and through B's own): each answered with its own HostName"
	# By GUID in each form DESIGN.md names (with or without dashes, any
	# case) and by NAME.amt, through A: the device is B's.
	local g0 g1 form want target opt okforms=() badforms=()
	g0=$(guid_of b "$DB" "${fhosts[0]}") g1=$(guid_of b "$DB" "${bhosts[0]}")
	local nodash=${g1//-/}
	for form in "$g0 ${fhosts[0]} -x" "${g1^^} ${bhosts[0]} --socks5-hostname" "${g0//-/} ${fhosts[0]} --socks5-hostname" \
		"${nodash^^} ${bhosts[0]} -x" "${fhosts[0]}.amt ${fhosts[0]} -x"; do
		read -r target want opt <<<"$form"
		[ "$opt" = -x ] && opt="-x http://$AP" || opt="--socks5-hostname $AP"
		# shellcheck disable=SC2086 # opt is an option and its value
		if check_wsman a "A by GUID" "$want" "$target:16992" "$PU" $opt; then
			okforms+=("$target")
		else
			badforms+=("$LAST_WSMAN")
		fi
	done
	[ ${#okforms[@]} -gt 0 ] && ok "by GUID and NAME.amt through A's proxy: ${okforms[*]} (each answered by its own device)"
	local bad
	for bad in "${badforms[@]}"; do fail "by GUID through A: $bad"; done
	# Serial-over-LAN through a port mapping on A.
	local sol_host=${fhosts[$((DEVICES > 1 ? 1 : 0))]} mj listen
	if mj=$(on a "$BIN" map "$sol_host" 16994 --data-dir "$DA" --format json 2>"$WORK/map.err"); then
		listen=$("$HELPER" tsv listen <<<"$mj")
		if sol "${listen%:*}" "${listen##*:}" "$sol_host" "amtterm through A's mapping $listen"; then
			ok "amtterm through A's port mapping $listen (presence map $sol_host 16994): $sol_host's console, a line echoed, ^] ended it (banner after $SOL_MS ms)"
			fig "amtterm via A's mapping, to the banner" "$SOL_MS ms"
		fi
	else
		fail "presence map $sol_host 16994 on A: $(cat "$WORK/map.err")"
	fi

	# A's websocket relay: WS-Man (curl) and SOL (amtterm) over it.
	local rh=${fhosts[$((DEVICES - 1))]} rok=0
	for h in "$rh" "${bhosts[1]}"; do
		relay_start "$h" 16992 || continue
		if check_wsman a "A relay" "$h" "$RELAY_ADDR" ""; then
			rok=$((rok + 1))
		else
			fail "WS-Man through A's websocket relay: $LAST_WSMAN $(cat "$WORK/relay.err")"
		fi
		stop_pids "$RELAY_PID"
	done
	[ $rok -eq 2 ] && ok "WS-Man through A's websocket relay (/relay/webrelay.ashx?host=NAME&port=16992, Basic auth, binary frames) answered by $rh and ${bhosts[1]}"
	if relay_start "$rh" 16994; then
		if sol "${RELAY_ADDR%:*}" "${RELAY_ADDR##*:}" "$rh" "amtterm through A's websocket relay"; then
			ok "amtterm through A's websocket relay (port=16994): $rh's console, a line echoed (banner after $SOL_MS ms)"
			fig "amtterm via A's relay, to the banner" "$SOL_MS ms"
		fi
		stop_pids "$RELAY_PID"
	fi

	# -- 3. the forwarded sessions in both histories ---------------------------
	# B records a session forwarded to it as kind fleet, via the instance it
	# came through; A records its console's own session (mapping, relay).
	local gsol grel
	gsol=$(guid_of b "$DB" "$sol_host") grel=$(guid_of b "$DB" "$rh")
	hist() { # SIDE DIR OUT PATTERN...: every PATTERN matches a line of the history
		local side=$1 dir=$2 out=$3 p
		shift 3
		on "$side" "$BIN" history --sessions --data-dir "$dir" --format json 2>/dev/null |
			"$HELPER" tsv kind user device port via end_reason >"$out" || return 1
		for p in "$@"; do grep -q "$p" "$out" || return 1; done
	}
	# kind, account, device, port, via, end reason
	local hb1="^fleet	[^	]*	$gsol	16994	$A_ID	[a-z]" hb2="^fleet	console	$grel	16994	$A_ID	[a-z]"
	local ha1="^mapping	[^	]*	$gsol	16994	-	[a-z]" ha2="^relay	console	$grel	16994	-	[a-z]"
	if poll 15 hist b "$DB" "$WORK/hist-b.tsv" "$hb1" "$hb2"; then
		ok "B's history (presence history --sessions): the SOL sessions forwarded by A, kind fleet via $A_ID:"
		grep -e "$hb1" -e "$hb2" "$WORK/hist-b.tsv" | sed 's/^/    /'
		fig "B's sessions recorded via A" "$(awk -F'\t' -v a="$A_ID" '$5 == a' "$WORK/hist-b.tsv" | wc -l) of $(wc -l <"$WORK/hist-b.tsv")"
	else
		fail "B's history lacks the sessions of kind fleet via $A_ID to $sol_host ($gsol) and $rh ($grel), port 16994:"
		sed 's/^/    /' "$WORK/hist-b.tsv" >&2
	fi
	if poll 15 hist a "$DA" "$WORK/hist-a.tsv" "$ha1" "$ha2"; then
		ok "A's history: the same sessions as its consoles' own (kind, account, device, port, via, end):"
		grep -e "$ha1" -e "$ha2" "$WORK/hist-a.tsv" | sed 's/^/    /'
	else
		fail "A's history lacks the mapping session to $gsol and the relay session to $grel, port 16994:"
		sed 's/^/    /' "$WORK/hist-a.tsv" >&2
	fi
	echo "  presence fleet status on A:"
	status_text a "$DA"
	echo "  presence fleet status on B:"
	status_text b "$DB"

	# -- 4. an account added on A logs in to B ---------------------------------
	# B's proxy blocks an address after five failed logins in a minute, so
	# each try comes from a loopback address of its own.
	bob_try() {
		local src=127.0.$((BOB_N / 250)).$((BOB_N % 250 + 2))
		BOB_N=$((BOB_N + 1))
		check_wsman b "bob" "${bhosts[0]}" "${bhosts[0]}:16992" "bob:$BOB_PW" --interface "$src" -x "http://$BP"
	}
	BOB_N=0
	r=$(wsman b "http://${bhosts[0]}:16992/wsman" "bob:$BOB_PW" --interface 127.0.200.1 -x "http://$BP")
	[ "${r%% *}" = 407 ] || fail "bob logged in to B's proxy before the account existed: HTTP ${r%% *}"
	printf '%s\n' "$BOB_PW" | on a "$BIN" account add --kind console --data-dir "$DA" --vault file bob >/dev/null ||
		{ fail "account add bob on A"; return 1; }
	t0=$(ms_now)
	if poll 10 bob_try; then
		t1=$(ms_now)
		fig "console account added on A logs in to B after" "$((t1 - t0)) ms ($BOB_N tries)"
		if [ $((t1 - t0)) -le 5000 ]; then
			ok "console account bob, added on A while it runs, logs in to B's proxy after $((t1 - t0)) ms (WS-Man 200)"
		else
			fail "console account bob reached B after $((t1 - t0)) ms, more than 5 s"
		fi
	else
		fail "console account bob, added on A, never logged in to B's proxy (10 s): $LAST_WSMAN"
	fi

	# -- 5. kill -9 B: its devices with a backup entry move to A --------------
	kill -9 "$PB"
	t0=$(ms_now)
	wait "$PB" 2>/dev/null
	if poll 30 listed a "$DA" "$A_ID" "${fhosts[@]}"; then
		t1=$(ms_now)
		fig "kill -9 B -> all $DEVICES devices listed on A" "$((t1 - t0)) ms"
		ok "kill -9 B: A holds all $DEVICES devices with entries B, A after $((t1 - t0)) ms"
	else
		fail "after kill -9 B, A does not hold the devices with a backup entry: $(devices_tsv a "$DA" | tr '\n' ' ')"
		dump_logs
	fi
	n=0
	for h in "${fhosts[@]}"; do
		if poll 10 check_wsman a "A http after failover" "$h" "$h:16992" "$PU" -x "http://$AP" &&
			check_wsman a "A socks5 after failover" "$h" "$h:16992" "$PU" --socks5-hostname "$AP"; then
			[ $n -eq 0 ] && fig "kill -9 B -> first console answer via A" "$(($(ms_now) - t0)) ms"
			n=$((n + 1))
		else
			fail "after the failover, through A's proxy: $LAST_WSMAN"
		fi
	done
	[ $n -eq "$DEVICES" ] && ok "consoles on A reach all $n moved devices (WS-Man through A's HTTP proxy and SOCKS5, right HostName)"
	# The two without a backup are gone: refused, not routed to dead B.
	r=$(wsman a "http://${bhosts[0]}:16992/wsman" "$PU" -x "http://$AP")
	code=${r%% *}
	if [ "$code" = 404 ]; then
		ok "${bhosts[0]} (B only) is refused by A's proxy with HTTP 404 in $(awk -v t="${r##* }" 'BEGIN { printf "%.0f", t * 1000 }') ms"
	else
		fail "${bhosts[0]} (B only) through A after B died: HTTP $code, want 404"
	fi
	local dtsv
	dtsv=$(devices_tsv a "$DA")
	if grep -q "	$B_ID	" <<<"$dtsv"; then
		fail "presence devices on A still lists devices of dead B: $(grep "	$B_ID	" <<<"$dtsv" | cut -f1 | tr '\n' ' ')"
	else
		ok "presence devices --format json on A: $(wc -l <<<"$dtsv") devices, all held by A; none of B's"
	fi
	peer_down() {
		on a "$BIN" fleet status --data-dir "$DA" --format json 2>/dev/null | "$HELPER" tsv -path peers member.id up >"$WORK/peers.tsv" &&
			grep -q "^$B_ID	false$" "$WORK/peers.tsv"
	}
	if poll 10 peer_down; then
		ok "presence fleet status --format json on A: B ($B_ID) up=false"
	else
		fail "A's fleet status does not show B down: $(tr '\n' ' ' <"$WORK/peers.tsv")"
	fi
	printf 'user = "console:%s"\n' "$CONSOLE_PW" | on a curl -sS -K - --max-time 10 "http://127.0.0.1:$A_API_PORT/api/v1/fleet" \
		>"$WORK/fleet.json" 2>"$WORK/curl.err"
	if "$HELPER" tsv -path peers member.id up error <"$WORK/fleet.json" >"$WORK/peers.tsv" 2>/dev/null &&
		grep -q "^$B_ID	false" "$WORK/peers.tsv"; then
		ok "GET /api/v1/fleet on A: B up=false ($(grep "^$B_ID" "$WORK/peers.tsv" | cut -f3))"
	else
		fail "GET /api/v1/fleet on A does not show B down: $(head -c 300 "$WORK/fleet.json")"
	fi
	echo "  presence fleet status on A after kill -9 B:"
	status_text a "$DA"

	# -- 6. stop A ---------------------------------------------------------------
	kill -INT "$PA"
	if poll 15 eval "! kill -0 $PA 2>/dev/null"; then
		wait "$PA"
		r=$?
		[ "$r" -eq 0 ] || fail "A's serve exited $r on SIGINT"
	else
		fail "A's serve did not stop within 15 s of SIGINT"
	fi
	stop_pids "$SIM1" "$SIM2"
	if grep -qiE "panic|goroutine [0-9]|fyne|glfw" "$LA" "$LB"; then
		fail "the logs: $(grep -hiE 'panic|goroutine [0-9]|fyne|glfw' "$LA" "$LB" | head -n 3)"
	fi
	if grep -qF -e "$CIRA_PW" -e "$CONSOLE_PW" -e "$BOB_PW" -e "$AMT_PW" -e "$PASSPHRASE" "$LA" "$LB" "$WORK/$MODE_NOW"/*.out "$WORK/$MODE_NOW"/*.json; then
		fail "a password reached a log or an output"
	fi
	ok "SIGINT stopped A; no password in the logs"
}

modes=(peer mdns)
[ "$MODE" = both ] || modes=("$MODE")
echo "fleet-test: $BIN ($("$BIN" version)), $DEVICES devices with a backup entry, modes ${modes[*]}, no DISPLAY, LANG=C"
for m in "${modes[@]}"; do
	scenario "$m" || dump_logs
	# Whatever the mode left running (all of it, after a failure).
	[ ${#PIDS[@]} -eq 0 ] || stop_pids "${PIDS[@]}"
	PIDS=()
	for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	NETNS=()
done

T_END=${EPOCHREALTIME//[!0-9]/}
echo "--- fleet-test: figures ---"
for m in "${modes[@]}"; do
	for k in "A http" "A socks5" "B http" "B socks5" "A relay" "A http after failover"; do
		# shellcheck disable=SC2086
		[ -n "${TIMES["$m $k"]:-}" ] && printf '  %-5s %-48s %s\n' "$m" "WS-Man via ${k/A /A\'s }" "$(stats_ms ${TIMES["$m $k"]})"
	done
	for k in "${FIG_KEYS[@]}"; do
		[ "${k%% *}" = "$m" ] && printf '  %-5s %-48s %s\n' "$m" "${k#* }" "${FIG[$k]}"
	done
done
printf '  %-54s %s\n' "run time" "$(((T_END - T_START) / 1000000)) s"
[ $failed -eq 0 ] || die "the fleet failed the checks above"
echo "fleet-test: passed"
