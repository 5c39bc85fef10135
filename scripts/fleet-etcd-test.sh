#!/usr/bin/env bash
# Three instances of the installed program sharing one real etcd, with
# simulated devices, as a process-level test of the fleet's ownership table
# (README "More than one Presence"; shared/fleet.md §4):
#
#   bash scripts/fleet-etcd-test.sh --bin PATH [--devices N] [--etcd-outage kill|stop] [--keep]
#
# About 3.5 minutes at full scale on 2 cores (18,000 devices); --devices 300
# with --storm-rounds 1 about 1.5.
#
# --bin is the installed default build (the one the .deb ships), started as
# `presence serve` with no DISPLAY and LANG=C. The instances are set up as
# an admin would: cert init and accounts on A, `fleet invite` on A, `fleet
# join --cn` on B and C (passphrases and passwords on stdin). Each serves
# N simulated devices (default 6,000: 18,000 in all; at most --per-sim per
# simulator process). etcd is Debian's /usr/bin/etcd on fixed ports in a
# temporary directory; etcdctl (Debian's etcd-client) only inspects it.
#
# It shows, and fails unless:
#   1. every instance lists every device (by GUID) with the right instance
#      and its host name, etcd holds exactly the live devices, and a sample of
#      devices chosen across owners, addressed by GUID, answers WS-Man (digest)
#      through every instance's proxy, HTTP and SOCKS5, by the right device
#      (the HostName in the answer);
#   2. after kill -9 of B, its device keys go within TTL + 1 s (a watch on
#      etcd times it), the half of its devices with a backup MPS entry (A)
#      are owned by A once they reconnect, and consoles on the survivors reach
#      them; the other half (whose backup entry is down) are refused cleanly,
#      never routed to the dead instance; B comes back, takes its devices
#      again, and every peer link is up again;
#   3. the same GUIDs connecting to A and C at once end with one owner each,
#      the older tunnel closed with reason moved; and a device taken over by C
#      from A keeps C's key: A's late release never deletes it;
#   4. with etcd killed (or, with --etcd-outage stop, hung by SIGSTOP), every
#      instance serves its devices (own and, over the links, its peers'), says
#      etcd is not connected, and keeps the changes made meanwhile (devices
#      gone, devices new); ownership is whole again within 15 s of etcd's
#      return (a restart on the same data dir and ports, or SIGCONT);
#   5. C, in a network namespace of its own behind a veth pair, cut off (link
#      down): C and the others keep serving their own devices, C's keys go with
#      its lease, and ownership is whole again within 15 s of the link's return;
# and measures a reconnect storm on one instance with etcd on and off, in
# alternating rounds (handshakes/s, target with etcd ≥ 90% of without; claim
# transactions/s; the instance's CPU per handshake). "Whole" means: every live device has
# a key naming the instance that holds its tunnel, on that instance's current
# lease (the lease of its instance key), and no other device key exists.
#
# The lease TTL is not settable from the command line: the instances run with
# the product's 10 s (README), and the release is measured against it.
#
# Everything runs inside a private network namespace (root and unshare):
# nothing leaves the machine. Every wait is a poll with a deadline.
set -uo pipefail
# shellcheck disable=SC2034 # read by lib.sh
SCRIPT_NAME=fleet-etcd-test
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ETCD_OUTAGE=kill BIN='' DEVICES=6000 PER_SIM=3000 KEEP=0 SAMPLE=30 STORM_DEVICES=2000 STORM_WARMUP=5 STORM_WINDOW=15 STORM_ROUNDS=2 STORM_HOLD=1s RATE=100
usage() {
	cat <<EOF
usage: bash scripts/fleet-etcd-test.sh --bin PATH [options]
  --bin PATH            the installed presence (default build) to test (required)
  --devices N           simulated devices per instance (default $DEVICES: $((3 * DEVICES)) in all)
  --per-sim N           most devices per simulator process (default $PER_SIM; a process may open 20,000 files)
  --rate R              devices started per second by each simulator process (default $RATE)
  --sample N            devices each instance's proxy is asked for WS-Man, across owners (default $SAMPLE)
  --storm-devices N     devices of the reconnect storm (default $STORM_DEVICES)
  --storm-window S      seconds the storm is measured, after ${STORM_WARMUP} s of warm-up (default $STORM_WINDOW)
  --storm-rounds N      storms with etcd and without, alternating (default $STORM_ROUNDS)
  --storm-hold D        how long each storm tunnel stays up before the device drops it and reconnects (default $STORM_HOLD;
                        above 250 ms, since an instance claims a tunnel in etcd only once its forwards have settled)
  --etcd-outage kill|stop  how etcd goes away in step 4: kill -9 and a restart on the same data dir and ports
                        (default), or SIGSTOP and SIGCONT (a hung etcd)
  --keep                keep the work directory (logs, etcd data, device lists)
EOF
}
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
	case $1 in
	--bin) BIN=$(realpath -m "$2"); shift ;;
	--devices) DEVICES=$2; shift ;;
	--per-sim) PER_SIM=$2; shift ;;
	--rate) RATE=$2; shift ;;
	--sample) SAMPLE=$2; shift ;;
	--storm-devices) STORM_DEVICES=$2; shift ;;
	--storm-window) STORM_WINDOW=$2; shift ;;
	--storm-hold) STORM_HOLD=$2; shift ;;
	--storm-rounds) STORM_ROUNDS=$2; shift ;;
	--etcd-outage) ETCD_OUTAGE=$2; shift ;;
	--keep) KEEP=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option $1" ;;
	esac
	shift
done
for v in DEVICES PER_SIM RATE SAMPLE STORM_DEVICES STORM_WINDOW STORM_ROUNDS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive integer, not '${!v}'"
done
case $ETCD_OUTAGE in
kill) OUTAGE_WHAT="killed (kill -9)" ;;
stop) OUTAGE_WHAT="stopped (SIGSTOP)" ;;
*) die "--etcd-outage: want kill or stop, not '$ETCD_OUTAGE'" ;;
esac
[ "$DEVICES" -ge 2 ] || die "--devices must be at least 2 (B's devices are split in two halves)"
{ [ -n "$BIN" ] && [ -x "$BIN" ]; } || die "--bin PATH: the installed presence to test"

ETCD=/usr/bin/etcd
ETCDCTL=/usr/bin/etcdctl

# --- outside the namespace: check, build the helper, re-run inside it --------
if [ "${PRESENCE_FLEETTEST_INNER:-}" != 1 ]; then
	[ "$(id -u)" = 0 ] || die "needs root: the test runs in private network namespaces"
	for c in unshare nsenter ip curl; do
		command -v "$c" >/dev/null || die "$c is missing: scripts/setup.sh installs util-linux, iproute2 and curl"
	done
	[ -x "$ETCD" ] || die "$ETCD is missing: Debian's etcd-server (scripts/setup.sh installs it)"
	[ -x "$ETCDCTL" ] || die "$ETCDCTL is missing: apt-get install etcd-client (Debian's etcdctl, which this test inspects etcd with)"
	unshare -n true 2>/dev/null || die "unshare -n does not work here"
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/presence-fleet-etcd.XXXXXX") || die "mktemp failed"
	echo "fleet-etcd-test: work directory $WORK"
	echo "+ go build -o $WORK/fleettest ./scripts/fleettest"
	if ! (cd "$REPO_ROOT" && go build -o "$WORK/fleettest" ./scripts/fleettest); then
		rm -rf "$WORK"
		die "building scripts/fleettest failed"
	fi
	echo "+ unshare -n bash $0 ${ORIG_ARGS[*]}"
	exec unshare -n env PRESENCE_FLEETTEST_INNER=1 PRESENCE_FLEETTEST_WORK="$WORK" bash "${BASH_SOURCE[0]}" "${ORIG_ARGS[@]}"
fi

# --- inside the test namespace ------------------------------------------------
WORK=${PRESENCE_FLEETTEST_WORK:?internal to fleet-etcd-test.sh}
FT=$WORK/fleettest
cd "$WORK" || exit 1
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/.config
mkdir -p "$HOME"
unset DISPLAY WAYLAND_DISPLAY LANGUAGE LC_ALL LC_MESSAGES DBUS_SESSION_BUS_ADDRESS
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
unset ETCDCTL_ENDPOINTS ETCDCTL_API
export LANG=C
ip link set lo up || die "ip link set lo up failed"
# The storm reconnects thousands of times: reuse TIME_WAIT ports (this
# namespace only).
sysctl -qw net.ipv4.tcp_tw_reuse=1 2>/dev/null || true
sysctl -qw net.ipv4.ip_local_port_range="1024 65535" 2>/dev/null || true

T_START=$EPOCHREALTIME
FAILED=0
SUMMARY=()
CMDS=()
PIDS=()
log() { printf '[%6.1fs] %s\n' "$(elapsed "$T_START")" "$*"; }
fail() { log "FAIL: $*" >&2; FAILED=1; }
ok() { log "ok: $*"; }
fig() { SUMMARY+=("$1"); log "figure: $1"; }
cmd() { CMDS+=("$*"); }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.2f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n 1; }

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ]; then
		echo "fleet-etcd-test: logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# poll DEADLINE_S CMD...: runs CMD every 0.2 s until it succeeds or
# DEADLINE_S seconds pass; returns CMD's last status.
poll() {
	local deadline=$1 t0=$EPOCHREALTIME
	shift
	while true; do
		"$@" && return 0
		le "$deadline" "$(since "$t0")" && { "$@"; return; }
		sleep 0.2
	done
}

# --- the network ----------------------------------------------------------------
# This namespace (T): A and B on addresses of lo, etcd on 127.0.0.1 and on
# T's end of the veth pair. C's namespace: C and its simulators, reaching
# etcd, A and B over the veth pair.
T_IP=198.18.0.1 A_IP=198.18.0.11 B_IP=198.18.0.12 C_IP=198.18.0.13
unshare -n sleep infinity &
NS_HOLDER=$!
PIDS+=("$NS_HOLDER")
for _ in $(seq 50); do [ "$(readlink /proc/$NS_HOLDER/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.05; done
CNS=/proc/$NS_HOLDER/ns/net
inC() { nsenter --net="$CNS" "$@"; }
{ ip link add vt type veth peer name vc netns "$CNS" &&
	ip addr add "$T_IP/24" dev vt && ip link set vt up &&
	ip addr add "$A_IP/32" dev lo && ip addr add "$B_IP/32" dev lo &&
	inC ip link set lo up && inC ip addr add "$C_IP/24" dev vc && inC ip link set vc up; } ||
	die "network setup failed"
cmd "unshare -n (T); unshare -n sleep infinity (C's namespace); ip link add vt type veth peer name vc netns C"
cmd "ip addr add $T_IP/24 dev vt; ip addr add $A_IP/32 dev lo; ip addr add $B_IP/32 dev lo; (in C) ip addr add $C_IP/24 dev vc"

# --- etcd -----------------------------------------------------------------------
ETCD_PORT=23790 ETCD_PEER_PORT=23800
ETCD_URL=http://127.0.0.1:$ETCD_PORT
ETCD_URL_C=http://$T_IP:$ETCD_PORT
PREFIX=/presence-fleettest/
ETCD_DIR=$WORK/etcd
TTL=10 # the product's lease TTL (README: "Each instance has one lease (10 s TTL)")
ETCD_PID=
ectl() { "$ETCDCTL" --endpoints="$ETCD_URL" --command-timeout=5s "$@"; }
etcd_healthy() { "$ETCDCTL" --endpoints="$ETCD_URL" --dial-timeout=1s --command-timeout=1s endpoint health >/dev/null 2>&1; }
start_etcd() {
	"$ETCD" --name t --data-dir "$ETCD_DIR/data" \
		--listen-client-urls "$ETCD_URL,$ETCD_URL_C" --advertise-client-urls "$ETCD_URL" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "t=http://127.0.0.1:$ETCD_PEER_PORT" --logger zap --log-outputs stderr --log-level warn \
		>>"$ETCD_DIR/etcd.log" 2>&1 &
	ETCD_PID=$!
	PIDS+=("$ETCD_PID")
	poll 30 etcd_healthy
}

# The watch: every change under the prefix, stamped on arrival, in
# $WATCH_LOG (fleettest watch). It is restarted after the revision it
# last logged when etcd comes back.
WATCH_LOG=$WORK/watch.log
WATCH_PID=
WATCH_N=0
start_watch() {
	local rev=${1:-} fifo=$WORK/watch.$WATCH_N.fifo
	WATCH_N=$((WATCH_N + 1))
	mkfifo "$fifo" || return 1
	"$FT" watch "$PREFIX" "$WATCH_LOG" <"$fifo" 2>>"$WORK/watch.err" &
	PIDS+=($!)
	"$ETCDCTL" --endpoints="$ETCD_URL" watch --prefix "$PREFIX" --prev-kv -w json ${rev:+--rev "$rev"} >"$fifo" 2>>"$WORK/watch.err" &
	WATCH_PID=$!
	PIDS+=("$WATCH_PID")
}
stop_watch() {
	[ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null
	wait "$WATCH_PID" 2>/dev/null
	WATCH_PID=
}
last_rev() { awk 'NF == 9 { r = $2 } END { print r + 0 }' "$WATCH_LOG" 2>/dev/null; }

mkdir -p "$ETCD_DIR"
log "etcd $("$ETCD" --version | awk '/etcd Version/ { print $3 }') on $ETCD_URL and $ETCD_URL_C; $("$BIN" version); $DEVICES devices per instance"
start_etcd || die "etcd did not become healthy: $(tail -n 5 "$ETCD_DIR/etcd.log")"
cmd "$ETCD --name t --data-dir \$WORK/etcd/data --listen-client-urls $ETCD_URL,$ETCD_URL_C --advertise-client-urls $ETCD_URL --listen-peer-urls http://127.0.0.1:$ETCD_PEER_PORT ... --log-level warn"
start_watch
cmd "etcdctl --endpoints=$ETCD_URL watch --prefix $PREFIX --prev-kv -w json | fleettest watch $PREFIX watch.log"

# --- the instances, set up as an admin would --------------------------------------
rand() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
CIRA_PW=$(rand) CONSOLE_PW=$(rand) AMT_PW=$(rand)A1! PASSPHRASE=$(rand)
declare -A IP DATA API NS PID ID LOGF
for x in A B C; do DATA[$x]=$WORK/$x; done
IP[A]=$A_IP IP[B]=$B_IP IP[C]=$C_IP
API[A]=127.0.0.1:16900 API[B]=127.0.0.1:16901 API[C]=127.0.0.1:16902
NS[A]='' NS[B]='' NS[C]=c
# on X CMD...: CMD in X's network namespace. Background processes are
# started with "${PRE[@]}" after `pre X` instead, so that $! is the
# process itself.
on() {
	local x=$1
	shift
	if [ "${NS[$x]}" = c ]; then inC "$@"; else "$@"; fi
}
PRE=()
pre() { if [ "${NS[$1]}" = c ]; then PRE=(nsenter --net="$CNS"); else PRE=(); fi; }
ETCD_FOR() { if [ "${NS[$1]}" = c ]; then echo "$ETCD_URL_C"; else echo "$ETCD_URL"; fi; }

setup_fleet() {
	local da=${DATA[A]}
	"$BIN" cert init --cn "$A_IP" --data-dir "$da" --vault file >"$WORK/setup.log" 2>&1 || return 1
	printf %s "$CIRA_PW" | "$BIN" account add --kind cira --data-dir "$da" --vault file dev >>"$WORK/setup.log" 2>&1 || return 1
	printf %s "$CONSOLE_PW" | "$BIN" account add --kind console --data-dir "$da" --vault file console >>"$WORK/setup.log" 2>&1 || return 1
	printf %s "$PASSPHRASE" | "$BIN" fleet invite --out "$WORK/fleet.bundle" --data-dir "$da" --vault file >>"$WORK/setup.log" 2>&1 || return 1
	local x
	for x in B C; do
		printf %s "$PASSPHRASE" | "$BIN" fleet join --in "$WORK/fleet.bundle" --cn "${IP[$x]}" --data-dir "${DATA[$x]}" --vault file \
			>>"$WORK/setup.log" 2>&1 || return 1
	done
	rm -f "$WORK/fleet.bundle" # it holds the root's key
	"$BIN" cert export-root --data-dir "$da" --vault file >"$WORK/root.pem"
}
setup_fleet || die "fleet setup failed: $(tail -n 5 "$WORK/setup.log")"
ok "fleet set up: cert init --cn $A_IP, account add (cira dev, console console) and fleet invite on A; fleet join --cn $B_IP on B, --cn $C_IP on C"
cmd "presence cert init --cn $A_IP --data-dir A --vault file"
cmd "printf %s PW | presence account add --kind cira|console --data-dir A --vault file dev|console"
cmd "printf %s PASSPHRASE | presence fleet invite --out fleet.bundle --data-dir A --vault file"
cmd "printf %s PASSPHRASE | presence fleet join --in fleet.bundle --cn $B_IP|$C_IP --data-dir B|C --vault file"

# start_instance X [--no-etcd]: presence serve for X, in its namespace.
start_instance() {
	local x=$1 etcd=(--etcd "$(ETCD_FOR "$1")" --etcd-prefix "$PREFIX")
	[ "${2:-}" = --no-etcd ] && etcd=()
	SERVE_N=$((SERVE_N + 1))
	LOGF[$x]=$WORK/serve-$x.$SERVE_N.log
	pre "$x"
	"${PRE[@]}" env LANG=C "$BIN" serve --data-dir "${DATA[$x]}" --vault file --mdns=false \
		--cira-addr "${IP[$x]}:4433" --proxy-addr "${IP[$x]}:1080" --api-addr "${API[$x]}" --peer-addr "${IP[$x]}:16991" \
		"${etcd[@]}" 2>"${LOGF[$x]}" &
	PID[$x]=$!
	PIDS+=("${PID[$x]}")
	if ! poll 30 grep -q "Presence MPS serving" "${LOGF[$x]}"; then
		fail "$x did not start: $(tail -n 3 "${LOGF[$x]}")"
		return 1
	fi
}
SERVE_N=0

# status X: `fleet status --format json` of X, through fleettest fleet.
status() {
	on "$1" "$BIN" fleet status --data-dir "${DATA[$1]}" --format json >"$WORK/status.$1.json" 2>/dev/null &&
		"$FT" fleet "$WORK/status.$1.json"
}
fleet_ready() { # X PEERS: etcd connected and PEERS links up
	local s
	s=$(status "$1") || return 1
	[ "$(kv "$s" etcd)" = connected ] && [ "$(kv "$s" peers_up)" -ge "$2" ]
}
etcd_state() { kv "$(status "$1")" etcd; }
etcd_is() { [ "$(etcd_state "$1")" = "$2" ]; }

for x in A B C; do start_instance "$x" || die "instance $x did not start"; done
cmd "LANG=C presence serve --data-dir X --vault file --mdns=false --cira-addr IP:4433 --proxy-addr IP:1080 --api-addr 127.0.0.1:P --peer-addr IP:16991 --etcd http://ETCD:$ETCD_PORT --etcd-prefix $PREFIX   (C's in its namespace, etcd at $ETCD_URL_C)"
for x in A B C; do
	poll 30 fleet_ready "$x" 2 || die "$x: not linked to both peers with etcd connected: $(status "$x")"
	ID[$x]=$(kv "$(status "$x")" id)
done
ok "three instances up, each with etcd connected and linked to the other two (found through etcd): A=${ID[A]} B=${ID[B]} C=${ID[C]}"
cmd "presence fleet status --data-dir X --format json"

# --- the devices ------------------------------------------------------------------
N=$DEVICES
HALF=$((N / 2))
# Index ranges: A [0,N), B [N,2N) (the first half with A as backup MPS
# entry, the second half with a backup entry where no MPS runs), C [2N,3N).
A_FIRST=0 B_FIRST=$N BM_FIRST=$N BM_N=$HALF BS_FIRST=$((N + HALF)) BS_N=$((N - HALF)) C_FIRST=$((2 * N))
declare -A SIMS # group -> " pid:name ..."
# sim_files GROUP...: each simulator's latest summary: its --report lines
# while it runs, its final summary once it has ended.
sim_files() {
	local g s
	for g in "$@"; do
		for s in ${SIMS[$g]:-}; do
			if kill -0 "${s%%:*}" 2>/dev/null; then echo "$WORK/${s#*:}.err"; else echo "$WORK/${s#*:}.out"; fi
		done
	done
}
# report_files GROUP...: the --report lines of each simulator.
report_files() { local g s; for g in "$@"; do for s in ${SIMS[$g]:-}; do echo "$WORK/${s#*:}.err"; done; done; }
sim_pids() { local g s; for g in "$@"; do for s in ${SIMS[$g]:-}; do echo "${s%%:*}"; done; done; }

# start_sims GROUP X FIRST COUNT SEED ARGS...: simulators in X's namespace,
# split in processes of at most PER_SIM devices.
start_sims() {
	local g=$1 x=$2 first=$3 count=$4 seed=$5 n name
	shift 5
	while [ "$count" -gt 0 ]; do
		n=$((count < PER_SIM ? count : PER_SIM))
		name=sim-$g-$first
		pre "$x"
		"${PRE[@]}" "$BIN" simulate --ca "$WORK/root.pem" --user dev --amt-login \
			--devices "$n" --first "$first" --seed "$seed" --report 1s "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" \
			<<<"$CIRA_PW"$'\n'"$AMT_PW" &
		PIDS+=($!)
		SIMS[$g]+=" $!:$name"
		first=$((first + n)) count=$((count - n))
	done
}
stop_sims() {
	local p
	for p in $(sim_pids "$@"); do kill "$p" 2>/dev/null; done
	for p in $(sim_pids "$@"); do wait "$p" 2>/dev/null; done
	for p in "$@"; do SIMS[$p]=; done
}
connected() { # GROUP...: devices connected now, from their last reports
	local files
	mapfile -t files < <(sim_files "$@")
	[ "${#files[@]}" -gt 0 ] || { echo 0; return; }
	"$FT" sum connected_now "${files[@]}" 2>/dev/null || echo 0
}
all_connected() { # WANT GROUP...
	local want=$1
	shift
	[ "$(connected "$@")" -ge "$want" ]
}

SIM_ARGS=(--rate "$RATE" --max-handshakes 64 --retry-interval 5s)
# The backup entry of the other half of B's devices: no MPS listens there.
DEAD_MPS=127.0.0.1:4433
T_RAMP=$EPOCHREALTIME
start_sims a A "$A_FIRST" "$N" fleet --mps "$A_IP:4433" "${SIM_ARGS[@]}"
start_sims bm B "$BM_FIRST" "$BM_N" fleet --mps "$B_IP:4433,$A_IP:4433" "${SIM_ARGS[@]}"
start_sims bs B "$BS_FIRST" "$BS_N" fleet --mps "$B_IP:4433,$DEAD_MPS" "${SIM_ARGS[@]}"
start_sims c C "$C_FIRST" "$N" fleet --mps "$C_IP:4433" "${SIM_ARGS[@]}"
cmd "printf 'CIRAPW\\nAMTPW\\n' | presence simulate --ca root.pem --user dev --amt-login --devices <=$PER_SIM --first F --seed fleet --report 1s --rate $RATE --max-handshakes 64 --retry-interval 5s --mps A:4433 | B:4433,A:4433 (half of B's) | B:4433,$DEAD_MPS (the other half: a backup entry where nothing listens) | C:4433 (in C's namespace)"
TOTAL=$((3 * N))
budget=$((TOTAL / (RATE * 2) + 90))
if poll "$budget" all_connected "$TOTAL" a bm bs c; then
	ok "$TOTAL devices connected in $(since "$T_RAMP") s"
else
	die "only $(connected a bm bs c) of $TOTAL devices connected within $budget s"
fi

devices_of() { # X FILE: X's device list (the whole fleet's), as JSON
	on "$1" "$BIN" devices --data-dir "${DATA[$1]}" --format json >"$2" 2>"$2.err"
}
etcd_get() { ectl get --prefix "$PREFIX" -w json >"$1" 2>"$1.err"; }

# whole_now X...: etcd holds exactly the live devices of instances X...
# (each on its current lease). The last verdict is in $WORK/whole.txt.
whole_now() {
	local x lives=()
	for x in "$@"; do
		devices_of "$x" "$WORK/dev.$x.json" || { echo "devices $x failed" >"$WORK/whole.txt"; return 1; }
		lives+=("${ID[$x]}=$WORK/dev.$x.json")
	done
	etcd_get "$WORK/get.json" || { echo "etcdctl get failed" >"$WORK/whole.txt"; return 1; }
	"$FT" whole "$PREFIX" "$WORK/get.json" "${lives[@]}" >"$WORK/whole.txt" 2>&1
}
whole_text() { head -n 4 "$WORK/whole.txt" | tr '\n' ' '; }

# listed_ok X RANGES...: X lists every device of the ranges (by GUID) with
# the right instance; devices listed without their host name are counted
# apart (hosts_ok). The verdict is in $WORK/listed.X.txt.
listed_ok() {
	local x=$1
	shift
	devices_of "$x" "$WORK/list.$x.json" || return 1
	"$FT" listed "$WORK/list.$x.json" --hosts-apart fleet "$@" >"$WORK/listed.$x.txt" 2>&1
}
# hosts_ok X RANGES...: X's last list also names every device by its host
# name (consoles use it).
hosts_ok() {
	local x=$1
	shift
	"$FT" listed "$WORK/list.$x.json" fleet "$@" >"$WORK/hosts.$x.txt" 2>&1
}

# --- WS-Man through a proxy ---------------------------------------------------------
cat >"$WORK/get.xml" <<'XML'
<?xml version="1.0" encoding="utf-8"?><Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><Header><a:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</a:Action><a:To>/wsman</a:To><w:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings</w:ResourceURI><a:MessageID>uuid:fleet-etcd-test</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout></Header><Body></Body></Envelope>
XML
# wsman X HOST http|socks: HTTP code of a WS-Man Get of AMT_GeneralSettings
# of HOST through X's proxy, digest auth; credentials on stdin (-K -).
# The answer is in $WORK/resp.X.xml.
wsman() {
	local x=$1 host=$2 how=$3 via
	case $how in
	http) via=(-x "http://${IP[$x]}:1080") ;;
	socks) via=(--socks5-hostname "${IP[$x]}:1080") ;;
	esac
	printf 'user = "admin:%s"\nproxy-user = "console:%s"\n' "$AMT_PW" "$CONSOLE_PW" |
		on "$x" curl -sS --digest -K - --max-time 20 -H 'Content-Type: application/soap+xml;charset=UTF-8' \
			--data-binary @"$WORK/get.xml" -o "$WORK/resp.$x.xml" -w '%{http_code}' "${via[@]}" "http://$host:16992/wsman" 2>"$WORK/curl.$x.err"
}
# wsman_ok X NAME HOW [HOST]: HTTP 200 from the right device (the one whose
# host name is HOST, default NAME).
wsman_ok() {
	local code host=${4:-$2}
	code=$(wsman "$1" "$2" "$3")
	[ "$code" = 200 ] && grep -q "<g:HostName>$host</g:HostName>" "$WORK/resp.$1.xml" && return 0
	WSMAN_ERR="$1 -> $2 ($host, $3): HTTP $code $(head -c 200 "$WORK/resp.$1.xml" 2>/dev/null) $(head -c 200 "$WORK/curl.$1.err")"
	return 1
}
host_of() { printf 'sim-%06d' "$1"; }
# pick FIRST COUNT K: K indexes spread over FIRST..FIRST+COUNT-1.
pick() {
	local first=$1 count=$2 k=$3 j
	[ "$k" -gt "$count" ] && k=$count
	for ((j = 0; j < k; j++)); do echo $((first + (j * count + count / 2) / k)); done
}
# sample_wsman X "FIRST COUNT K"... : WS-Man through X's proxy to K devices
# of each range, addressed by GUID, alternating HTTP proxy and SOCKS5; the
# answer must carry the device's host name. Counts in WS_OK / WS_BAD.
sample_wsman() {
	local x=$1 r i g how n=0
	shift
	for r in "$@"; do
		# shellcheck disable=SC2086,SC2046 # "FIRST COUNT K", and indexes
		while read -r i g; do
			how=http
			[ $((n % 2)) = 1 ] && how=socks
			n=$((n + 1))
			if wsman_ok "$x" "$g" "$how" "$(host_of "$i")"; then
				WS_OK=$((WS_OK + 1))
			else
				WS_BAD=$((WS_BAD + 1))
				[ "$WS_BAD" -le 3 ] && log "   WS-Man failed: $WSMAN_ERR"
			fi
		done < <("$FT" guid fleet $(pick $r))
	done
}

# ======================================================================================
# 1. every device reachable from every instance
# ======================================================================================
log "== 1. every device listed by, and reachable through, every instance"
RANGES_ALL=("$A_FIRST:$N=${ID[A]}" "$B_FIRST:$N=${ID[B]}" "$C_FIRST:$N=${ID[C]}")
HOSTLESS=0
T1=$EPOCHREALTIME
for x in A B C; do
	if poll 60 listed_ok "$x" "${RANGES_ALL[@]}"; then
		ok "$x lists all $TOTAL devices with the right instance ($(since "$T1") s after all connected): $(head -n 1 "$WORK/listed.$x.txt")"
	else
		fail "$x's device list: $(tr '\n' ' ' <"$WORK/listed.$x.txt")"
	fi
	if ! hosts_ok "$x" "${RANGES_ALL[@]}"; then
		# A product bug, not the test's: see HOSTLESS below.
		fail "$x lists devices without their host name, so consoles cannot reach them by name: $(tr '\n' ' ' <"$WORK/hosts.$x.txt")"
		HOSTLESS=1
	fi
done
[ "$HOSTLESS" = 1 ] && log "   (a tunnel whose first tcpip-forward comes more than the 250 ms settle time after the port-forwarding service accept is made ready, and announced to the fleet and etcd, with no host name and no ports, and never announced again: mps/tunnel pfwdService starts the settle timer; here under CPU load, on real links whenever the round trip exceeds 250 ms)"
cmd "presence devices --data-dir X --format json   (fleettest listed: every sim-NNNNNN with its instance)"
if poll 30 whole_now A B C; then
	ok "etcd holds exactly the live devices, each on its owner's lease: $(whole_text)"
else
	fail "etcd is not whole: $(whole_text)"
fi
cmd "etcdctl get --prefix $PREFIX -w json   (fleettest whole: keys = live devices, owner and lease right)"
WS_OK=0 WS_BAD=0
K=$(((SAMPLE + 2) / 3))
T_WS=$EPOCHREALTIME
for x in A B C; do
	sample_wsman "$x" "$A_FIRST $N $K" "$B_FIRST $N $K" "$C_FIRST $N $K"
done
if [ "$WS_BAD" = 0 ]; then
	ok "WS-Man (digest, AMT_GeneralSettings) of $K devices of each owner, addressed by GUID, through each instance's proxy, HTTP and SOCKS5 alternating, each answered by the right device (HostName): $WS_OK of $WS_OK in $(since "$T_WS") s"
else
	fail "WS-Man through the proxies: $WS_BAD of $((WS_OK + WS_BAD)) failed"
fi
cmd "curl -sS --digest -K - (user admin:AMTPW, proxy-user console:PW) -x http://X:1080 | --socks5-hostname X:1080 --data-binary @get.xml http://GUID:16992/wsman   (HostName sim-NNNNNN in the answer)"

# ======================================================================================
# 2. kill -9 of B
# ======================================================================================
log "== 2. kill -9 of B (half its devices have A as backup entry, half a backup entry that is down)"
T_KILL=$EPOCHREALTIME
kill -9 "${PID[B]}"
wait "${PID[B]}" 2>/dev/null
cmd "kill -9 B"
released() { "$FT" released "$WATCH_LOG" "$T_KILL" "${ID[B]}"; }
b_gone() { local r; r=$(released) && [ "$(kv "$r" remaining)" = 0 ] && [ "$(kv "$r" instance_key_gone_s)" != - ]; }
if poll $((TTL + 20)) b_gone; then
	R=$(released)
	log "   $R"
	last=$(kv "$R" last_gone_s) member=$(kv "$R" instance_key_gone_s) lastdel=$(kv "$R" last_deleted_s)
	if le "$last" $((TTL + 1)) && le "$member" $((TTL + 1)); then
		ok "every key of B's is gone $last s after kill -9 (deleted with its lease: $(kv "$R" deleted), last at $lastdel s; taken over by A: $(kv "$R" taken_over)); B's instance key went at $member s (target ≤ TTL + 1 = $((TTL + 1)) s)"
	else
		fail "B's keys went too late: last at $last s, instance key at $member s (target ≤ $((TTL + 1)) s)"
	fi
	fig "kill -9 → B's last device key gone: $last s (lease expiry: instance key at $member s, last deleted key at $lastdel s; target ≤ TTL + 1 = $((TTL + 1)) s; TTL $TTL s, not settable)"
else
	fail "B's keys still in etcd $((TTL + 20)) s after kill -9: $(released)"
fi
cmd "fleettest released watch.log T_KILL B   (the watch's DELETE and PUT events after the kill)"
moved_to_a() { all_connected "$BM_N" bm; }
if poll 60 moved_to_a && poll 30 whole_now A C; then
	R=$(released)
	ok "B's $BM_N devices with a backup entry reconnected to A and are owned by A ($(since "$T_KILL") s after the kill; last takeover of a B key at $(kv "$R" last_taken_s) s); etcd whole for A and C: $(whole_text)"
	fig "kill -9 → all $BM_N of B's devices with a backup entry re-owned by A and etcd whole again: $(since "$T_KILL") s"
else
	fail "after the kill: $(connected bm) of $BM_N moved devices connected; etcd: $(whole_text)"
fi
RANGES_NOB=("$A_FIRST:$N=${ID[A]}" "$BM_FIRST:$BM_N=${ID[A]}" "$BS_FIRST:$BS_N=-" "$C_FIRST:$N=${ID[C]}")
for x in A C; do
	if poll 30 listed_ok "$x" "${RANGES_NOB[@]}"; then
		ok "$x lists B's moved devices on A and none of B's others: $(head -n 1 "$WORK/listed.$x.txt")"
	else
		fail "$x's list after the kill: $(tr '\n' ' ' <"$WORK/listed.$x.txt")"
	fi
done
WS_OK=0 WS_BAD=0
for x in A C; do sample_wsman "$x" "$BM_FIRST $BM_N $K"; done
if [ "$WS_BAD" = 0 ]; then
	ok "WS-Man through A's and C's proxies to $K of the moved devices each: $WS_OK of $WS_OK, by the right device"
else
	fail "WS-Man to moved devices through the survivors: $WS_BAD of $((WS_OK + WS_BAD)) failed"
fi
refused=0 notref=0
for x in A C; do
	# shellcheck disable=SC2046 # indexes
	while read -r i g; do
		t0=$EPOCHREALTIME
		code=$(wsman "$x" "$g" http)
		if [ "$code" = 404 ] && le "$(since "$t0")" 5; then refused=$((refused + 1)); else
			notref=$((notref + 1))
			log "   $(host_of "$i") ($g, B's, backup down) through $x: HTTP $code after $(since "$t0") s: $(head -c 200 "$WORK/resp.$x.xml")"
		fi
	done < <("$FT" guid fleet $(pick "$BS_FIRST" "$BS_N" 5))
done
if [ "$notref" = 0 ]; then
	ok "B's devices whose backup is down are refused at once by the survivors (HTTP 404, $refused of $refused): no console goes to the dead instance"
else
	fail "$notref console requests for B's stranded devices were not refused cleanly"
fi
# B comes back: its devices whose backup is down return to it.
T_BACK=$EPOCHREALTIME
start_instance B || die "B did not restart"
if poll 30 fleet_ready B 2 && poll 60 all_connected "$BS_N" bs && poll 30 whole_now A B C; then
	ok "B restarted: its $BS_N devices whose backup is down are back on it, and etcd is whole ($(since "$T_BACK") s): $(whole_text)"
else
	fail "after B's restart: $(connected bs) of $BS_N back; $(whole_text)"
fi
RANGES_2=("$A_FIRST:$N=${ID[A]}" "$BM_FIRST:$BM_N=${ID[A]}" "$BS_FIRST:$BS_N=${ID[B]}" "$C_FIRST:$N=${ID[C]}")
# A's and C's links to B redial with a backoff that grew while B was dead
# (1–4 s more per failure, up to 30 s): until they are up, A and C reach
# B's devices only through etcd.
links_up() { fleet_ready A 2 && fleet_ready B 2 && fleet_ready C 2; }
if poll 45 links_up; then
	ok "every peer link up again $(since "$T_BACK") s after B's restart"
	fig "B restarted → every peer link up again: $(since "$T_BACK") s (until then A and C reach B's devices only through etcd)"
else
	fail "peer links not all up $(since "$T_BACK") s after B's restart: A $(status A); B $(status B); C $(status C)"
fi

# ======================================================================================
# 3. one GUID claimed on two instances at once; a late release
# ======================================================================================
log "== 3. the same GUIDs on A and C at once; then a device taken over by C from A"
D3=$(((N + 29) / 30)) # 200 at full scale
[ "$D3" -gt 200 ] && D3=200
T_DUP=$EPOCHREALTIME
start_sims dupa A 900000 "$D3" dup --mps "$A_IP:4433" --no-retry
start_sims dupc C 900000 "$D3" dup --mps "$C_IP:4433" --no-retry
cmd "presence simulate --seed dup --first 900000 --devices $D3 --no-retry --mps A:4433   and at once the same with --mps C:4433 (in C's namespace)"
dup_settled() {
	local h
	[ "$(connected dupa dupc)" = "$D3" ] || return 1
	h=$(moved_count sim-900) || return 1
	[ "$(kv "$h" moved)" = "$D3" ]
}
moved_count() { # HOST-PREFIX: moved closes on A, B and C together
	local x total=0 r
	for x in A B C; do
		on "$x" "$BIN" history --data-dir "${DATA[$x]}" --format json --since 10m --limit 100000 >"$WORK/hist.$x.json" 2>/dev/null || return 1
		r=$("$FT" moved "$WORK/hist.$x.json" "$1") || return 1
		total=$((total + $(kv "$r" moved)))
	done
	echo "moved=$total"
}
if poll 30 dup_settled && poll 30 whole_now A B C; then
	etcd_get "$WORK/get.json"
	ag=ok
	for x in A B C; do devices_of "$x" "$WORK/agree.$x.json"; done
	if ! AG=$("$FT" agree "$PREFIX" "$WORK/get.json" sim-900 "$WORK/agree.A.json" "$WORK/agree.B.json" "$WORK/agree.C.json"); then ag=bad; fi
	if [ "$ag" = ok ]; then
		ok "$D3 GUIDs connected to A and C at once: each has exactly one owner, the tunnel that lives; the other closed with reason moved ($(moved_count sim-900)); all three instances agree with etcd ($AG) ($(since "$T_DUP") s)"
	else
		fail "the instances' lists disagree with etcd on the contested GUIDs: $AG"
	fi
	fig "contested GUIDs ($D3, A and C at once): one owner each, $(connected dupa) won by A, $(connected dupc) by C, $(kv "$(moved_count sim-900)" moved) older tunnels closed as moved, settled in $(since "$T_DUP") s"
else
	fail "contested GUIDs: $(connected dupa dupc) of $D3 connected, $(moved_count sim-900), etcd: $(whole_text)"
fi
cmd "presence history --data-dir X --format json --since 10m   (fleettest moved: downs with reason moved)"

# A late release: devices on A, then the same GUIDs on C (newer): A closes
# its tunnels as moved, and its release must leave C's keys alone.
start_sims latea A 910000 "$D3" late --mps "$A_IP:4433" --no-retry
late_on_a() { all_connected "$D3" latea && whole_now A B C; }
if poll 30 late_on_a; then
	T_LATE=$EPOCHREALTIME
	start_sims latec C 910000 "$D3" late --mps "$C_IP:4433" --no-retry
	late_moved() { [ "$(connected latea)" = 0 ] && [ "$(connected latec)" = "$D3" ] && [ "$(kv "$(moved_count sim-910)" moved)" = "$D3" ]; }
	if poll 30 late_moved; then
		# A's releases follow its moved closes within milliseconds; watch
		# a few seconds more for a delete that must not come.
		t_closed=$EPOCHREALTIME
		while le "$(since "$t_closed")" 3; do sleep 0.5; done
		if L=$("$FT" late "$WATCH_LOG" "$T_LATE" "${ID[C]}" sim-910) && poll 10 whole_now A B C; then
			ok "$D3 devices taken over by C from A: A closed its tunnels as moved, and its late releases left C's keys alone ($L); etcd whole"
		else
			fail "late release: $L; etcd: $(whole_text)"
		fi
	else
		fail "the takeover by C: A still holds $(connected latea), C $(connected latec) of $D3; $(moved_count sim-910)"
	fi
else
	fail "the late-release devices did not settle on A: $(connected latea) of $D3; $(whole_text)"
fi
cmd "fleettest late watch.log T C sim-910   (no DELETE or foreign PUT of C's keys after its takeover)"

# ======================================================================================
# 4. etcd down
# ======================================================================================
log "== 4. etcd $OUTAGE_WHAT: the instances serve on; ownership whole again after it returns"
poll 30 whole_now A B C || fail "not whole before the outage: $(whole_text)"
poll 45 links_up || fail "peer links not all up before the outage"
# The watch goes too, and comes back after the revision it last logged:
# etcdctl's own reconnect backs off for up to minutes.
stop_watch
T_EDOWN=$EPOCHREALTIME
if [ "$ETCD_OUTAGE" = stop ]; then
	kill -STOP "$ETCD_PID"
	cmd "kill -STOP etcd"
else
	kill -9 "$ETCD_PID"
	wait "$ETCD_PID" 2>/dev/null
	cmd "kill -9 etcd"
fi
for x in A B C; do
	if poll 30 etcd_is "$x" unreachable; then
		ok "$x says etcd is not connected ($(since "$T_EDOWN") s after etcd was $OUTAGE_WHAT; GET /api/v1/fleet)"
	else
		fail "$x still says etcd is $(etcd_state "$x") $(since "$T_EDOWN") s after etcd was $OUTAGE_WHAT"
	fi
done
WS_OK=0 WS_BAD=0
K4=$(((K + 2) / 3))
sample_wsman A "$A_FIRST $N $K" "$B_FIRST $N $K4" "$C_FIRST $N $K4"
sample_wsman B "$BS_FIRST $BS_N $K" "$A_FIRST $N $K4" "$C_FIRST $N $K4"
sample_wsman C "$C_FIRST $N $K" "$A_FIRST $N $K4" "$BS_FIRST $BS_N $K4"
if [ "$WS_BAD" = 0 ]; then
	ok "with etcd down, WS-Man through every instance's proxy: $K of its own devices and $K4 of each peer's each: $WS_OK of $WS_OK"
else
	fail "with etcd down: $WS_BAD of $((WS_OK + WS_BAD)) WS-Man requests failed"
fi
# Changes while etcd is away: the contested devices go, new ones come to B.
stop_sims dupa dupc
D4=$D3
start_sims outage B 920000 "$D4" outage --mps "$B_IP:4433"
poll 30 all_connected "$D4" outage || fail "new devices did not connect to B during the outage: $(connected outage) of $D4"
# Keep etcd away past the lease TTL, so that every session is lost.
while le "$(since "$T_EDOWN")" $((TTL + 3)); do sleep 0.5; done
DOWN_FOR=$(since "$T_EDOWN")
if [ "$ETCD_OUTAGE" = stop ]; then
	kill -CONT "$ETCD_PID"
	T_EUP=$EPOCHREALTIME
	start_watch $(($(last_rev) + 1))
	cmd "kill -CONT etcd after $DOWN_FOR s"
else
	start_etcd || die "etcd did not restart: $(tail -n 5 "$ETCD_DIR/etcd.log")"
	T_EUP=$EPOCHREALTIME
	start_watch $(($(last_rev) + 1))
	cmd "etcd restarted on the same data dir and ports after $DOWN_FOR s"
fi
if poll 45 whole_now A B C; then
	W=$(since "$T_EUP")
	if le "$W" 15; then
		ok "ownership whole again $W s after etcd's return (down $DOWN_FOR s; $D3 devices gone and $D4 new during the outage): $(whole_text)"
	else
		fail "ownership whole only $W s after etcd's return (target ≤ 15 s)"
	fi
	fig "etcd back (after $DOWN_FOR s $OUTAGE_WHAT) → ownership whole: $W s (target ≤ 15 s)"
else
	fail "ownership not whole 45 s after etcd's return: $(whole_text)"
fi
for x in A B C; do poll 15 etcd_is "$x" connected || fail "$x does not say etcd is connected again: $(status "$x")"; done

# ======================================================================================
# 5. C cut off from etcd (and from A and B)
# ======================================================================================
log "== 5. C's link down: C and the others serve their own devices; whole again after it returns"
T_CUT=$EPOCHREALTIME
ip link set vt down
cmd "ip link set vt down"
if poll 30 etcd_is C unreachable; then
	ok "C says etcd is not connected $(since "$T_CUT") s after the link went down"
else
	fail "C still says etcd is $(etcd_state C) $(since "$T_CUT") s after the link went down"
fi
c_keys_gone() { etcd_get "$WORK/get.json" && ! "$FT" owners "$PREFIX" "$WORK/get.json" | grep -q "${ID[C]}"; }
if poll $((TTL + 15)) c_keys_gone; then
	ok "C's keys went with its lease $(since "$T_CUT") s after the cut; etcd: $("$FT" owners "$PREFIX" "$WORK/get.json")"
else
	fail "C's keys still in etcd $(since "$T_CUT") s after the cut"
fi
WS_OK=0 WS_BAD=0
sample_wsman C "$C_FIRST $N $K"
sample_wsman A "$A_FIRST $N $K"
sample_wsman B "$BS_FIRST $BS_N $K"
if [ "$WS_BAD" = 0 ]; then
	ok "cut off, C serves its own devices (WS-Man through its proxy, from its side), and A and B theirs: $WS_OK of $WS_OK"
else
	fail "with C cut off: $WS_BAD of $((WS_OK + WS_BAD)) WS-Man requests failed"
fi
if poll 10 whole_now A B; then
	ok "etcd whole for A and B while C is away: $(whole_text)"
else
	fail "A and B not whole while C is away: $(whole_text)"
fi
CUT_FOR=$(since "$T_CUT")
ip link set vt up
T_LINK=$EPOCHREALTIME
cmd "ip link set vt up (after $CUT_FOR s)"
if poll 45 whole_now A B C; then
	W=$(since "$T_LINK")
	if le "$W" 15; then
		ok "ownership whole again $W s after C's link returned (down $CUT_FOR s): $(whole_text)"
	else
		fail "ownership whole only $W s after the link returned (target ≤ 15 s)"
	fi
	fig "C's link back (after $CUT_FOR s down) → ownership whole: $W s (target ≤ 15 s)"
else
	fail "ownership not whole 45 s after the link returned: $(whole_text)"
fi
RANGES_5=("${RANGES_2[@]}")
for x in A B C; do
	if poll 45 listed_ok "$x" "${RANGES_5[@]}"; then
		ok "$x lists every device again, with its instance ($(since "$T_LINK") s after the link returned)"
	else
		fail "$x's list after the link returned: $(tr '\n' ' ' <"$WORK/listed.$x.txt")"
	fi
done

# ======================================================================================
# the reconnect storm, one instance, etcd on and off
# ======================================================================================
log "== storm: $STORM_DEVICES devices in reconnect-loop against A alone, etcd on, then off"
stop_sims a bm bs c dupa dupc latea latec outage
for x in B C A; do
	kill "${PID[$x]}" 2>/dev/null
	wait "${PID[$x]}" 2>/dev/null
done
# A stopped instance revokes its lease: its keys go at once.
# device_keys: how many device keys etcd holds ("count" is left out when 0).
device_keys() {
	local out
	out=$(ectl get --prefix "${PREFIX}v1/devices/" --keys-only --limit 1 -w json) || { echo "?"; return; }
	sed -n 's/.*"count":\([0-9]*\).*/\1/p' <<<"$out" | grep . || echo 0
}
no_device_keys() { [ "$(device_keys)" = 0 ]; }
poll 30 no_device_keys || fail "$(device_keys) device keys left in etcd after every instance stopped"
current_rev() { ectl endpoint status -w json 2>/dev/null | sed -n 's/.*"revision":\([0-9]*\).*/\1/p' | head -n 1; }
CLK_TCK=$(getconf CLK_TCK)
ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
storm() { # LABEL [--no-etcd]
	local label=$1 r t1 t2 files pids c1 c2
	start_instance A "${2:-}" || return 1
	start_sims "storm$label" A 800000 "$STORM_DEVICES" storm --mps "$A_IP:4433" --fault reconnect-loop --hold "$STORM_HOLD"
	mapfile -t files < <(report_files "storm$label")
	mapfile -t pids < <(sim_pids "storm$label")
	local t0=$EPOCHREALTIME
	while le "$(since "$t0")" "$STORM_WARMUP"; do sleep 0.5; done
	"$FT" snap "${files[@]}" >"$WORK/storm$label.1" || return 1
	REV1[$label]=$(current_rev)
	c1="$(ticks "${PID[A]}") $(ticks "$ETCD_PID") $(ticks "${pids[@]}")"
	t1=$EPOCHREALTIME
	while le "$(since "$t1")" "$STORM_WINDOW"; do sleep 0.5; done
	sleep 1.2 # one more report line, so that the snap covers the window
	"$FT" snap "${files[@]}" >"$WORK/storm$label.2" || return 1
	t2=$EPOCHREALTIME
	c2="$(ticks "${PID[A]}") $(ticks "$ETCD_PID") $(ticks "${pids[@]}")"
	REV2[$label]=$(current_rev)
	SECS[$label]=$(since "$t1" "$t2")
	r=$("$FT" rate "$WORK/storm$label.1" "$WORK/storm$label.2")
	STORM_RATE[$label]=$(kv "$r" handshakes_per_s)
	# CPU over the window, % of one core: the instance, etcd, the simulators.
	CPU[$label]=$(awk -v a="$c1" -v b="$c2" -v s="${SECS[$label]}" -v hz="$CLK_TCK" -v hs="$(kv "$r" handshakes)" 'BEGIN {
		split(a, x); split(b, y)
		printf "instance %.0f%%, %.2f ms per handshake; etcd %.0f%%; simulators %.0f%%", 100 * (y[1] - x[1]) / hz / s, (hs > 0 ? 1000 * (y[1] - x[1]) / hz / hs : 0), 100 * (y[2] - x[2]) / hz / s, 100 * (y[3] - x[3]) / hz / s }')
	stop_sims "storm$label"
	kill "${PID[A]}"
	wait "${PID[A]}" 2>/dev/null
	poll 30 no_device_keys || fail "$(device_keys) device keys left after the storm's instance stopped"
	log "   $label: $r; CPU: ${CPU[$label]}"
}
declare -A STORM_RATE REV1 REV2 SECS CPU
# The watch is away during the storms (its JSON would cost the storm with
# etcd CPU the one without does not pay); it replays them afterwards, and
# the claims are counted by revision.
stop_watch
# Rounds alternate on and off, so that a change in the machine's load
# (other jobs share it) weighs on both alike.
for ((round = 1; round <= STORM_ROUNDS; round++)); do
	storm "on$round" || fail "the storm with etcd (round $round) failed"
	storm "off$round" --no-etcd || fail "the storm without etcd (round $round) failed"
done
start_watch $(($(last_rev) + 1))
last_rev_at_least() { [ "$(last_rev)" -ge "$1" ]; }
STORM_TXNS=()
for ((round = 1; round <= STORM_ROUNDS; round++)); do
	l=on$round
	[ -n "${REV2[$l]:-}" ] || continue
	poll 30 last_rev_at_least "${REV2[$l]}" || fail "the watch did not replay the storm's revisions"
	STORM_TXNS+=("$l: $("$FT" txns "$WATCH_LOG" "${REV1[$l]}" "${REV2[$l]}" "${SECS[$l]}" sim-80)")
done
cmd "presence simulate --seed storm --devices $STORM_DEVICES --fault reconnect-loop --hold $STORM_HOLD --mps A:4433 against A alone with --etcd, then without, $STORM_ROUNDS rounds; handshakes/s over ${STORM_WINDOW} s after ${STORM_WARMUP} s (fleettest snap/rate on the --report lines); claims from the watch (fleettest txns)"
on_rates="" off_rates=""
for ((round = 1; round <= STORM_ROUNDS; round++)); do
	on_rates+=" ${STORM_RATE[on$round]:-0}" off_rates+=" ${STORM_RATE[off$round]:-0}"
done
mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.0f", NF ? s / NF : 0 }' <<<"$1"; }
on_mean=$(mean "$on_rates") off_mean=$(mean "$off_rates")
ratio=$(awk -v a="$on_mean" -v b="$off_mean" 'BEGIN { printf "%.0f", (b > 0 ? 100 * a / b : 0) }')
fig "reconnect storm, one instance, $STORM_DEVICES devices (hold $STORM_HOLD): $on_mean handshakes/s with etcd (rounds:$on_rates), $off_mean without (rounds:$off_rates): $ratio% (target ≥ 90%)"
for x in "${STORM_TXNS[@]}"; do fig "etcd during the storm, $x"; done
for ((round = 1; round <= STORM_ROUNDS; round++)); do
	fig "storm CPU (% of one core over the window), on$round: ${CPU[on$round]:-?}; off$round: ${CPU[off$round]:-?}"
done
# A measurement, not a pass/fail check: on a shared 2-core machine one
# round can be slowed by other jobs (README has the figures of quiet runs).
if [ "$ratio" -ge 90 ]; then ok "storm with etcd at $ratio% of without"; else log "below target: storm with etcd at $ratio% of without (target ≥ 90%; a measurement, see README)"; fi

# --- the end ---------------------------------------------------------------------
for f in "$WORK"/serve-*.log; do
	if grep -qiE "panic|goroutine [0-9]+ \[|fyne|glfw" "$f"; then
		fail "$(basename "$f"): $(grep -hiE 'panic|goroutine [0-9]+ \[|fyne|glfw' "$f" | head -n 2)"
	fi
	if grep -qF -e "$CIRA_PW" -e "$CONSOLE_PW" -e "$AMT_PW" -e "$PASSPHRASE" "$f"; then
		fail "a secret reached $(basename "$f")"
	fi
done
echo
echo "## fleet-etcd-test: $TOTAL devices, three instances, one etcd ($(since "$T_START") s)"
echo
for s in "${SUMMARY[@]}"; do echo "- $s"; done
echo
echo "Commands:"
for c in "${CMDS[@]}"; do echo "  $c"; done
if [ "$FAILED" != 0 ]; then
	echo "fleet-etcd-test: FAILED"
	exit 1
fi
echo "fleet-etcd-test: passed"
