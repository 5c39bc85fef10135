#!/usr/bin/env bash
# Load test of the CIRA side of `presence serve`, with `presence simulate` as
# the devices, on this machine:
#
#   1. tunnels held: for each count N, a fresh server, N devices connected
#      (split over simulator processes of at most --per-sim devices, with
#      disjoint --first ranges), settled; then the server's RSS (VmRSS) and
#      RSS per tunnel = (RSS at N - RSS of the same server at 0 tunnels) / N,
#      and the server's CPU while it only answers keepalives (utime+stime
#      over --idle-window seconds, % of one core).
#   2. reconnect storm: for each TLS version, a fresh server and
#      --storm-devices devices in `--fault reconnect-loop --hold 0s` (each
#      drops its tunnel as soon as it is up and reconnects at once);
#      handshakes/s over --storm-window seconds after --storm-warmup, with
#      the CPU share of the server and of the simulators (they share the
#      machine). Then TLS 1.2 again with the server pinned to CPU 0 and the
#      simulators to the others (--storm-pinned: the server's capacity on
#      one core, measured rather than projected), and with the devices
#      resuming their TLS sessions (--storm-resume; whether AMT firmware
#      does is not known).
#
#   3. arrival of new devices, as after an office network outage: a fresh
#      server, then --arrival-devices devices that have never connected
#      started at --arrival-rate devices/s in all (split over simulators as
#      in phase 1, the rate divided between them), TLS 1.2, with no
#      handshake cap of their own: what the server does when offered more
#      handshakes than it can take at once. Run "first" (--no-retry): each
#      device's first attempt counts, a failed one is a device that did not
#      come up; then run "retry" (--arrival-retry, default on): the same
#      with the simulator's reconnect backoff (1 s doubling, +-50%).
#      Reported: devices up out of N; the time from the first device start
#      until all were up (from the simulators' --report 200ms lines; or
#      until every first attempt was over, or the --arrival-window ended);
#      handshake p50 / p99 / max (p50 the handshake-weighted mean of the
#      simulators' own, p99 and max the maximum over them: exact with one
#      simulator, i.e. up to --per-sim devices); failed attempts by the
#      simulator's reason: resets ("reset": TCP/TLS reset), dial timeouts
#      ("timeout" + "dial"), other; the CPU (utime+stime) of the server and
#      of the simulators from their start until all were up (or the window
#      ended), as % of one core and as ms per completed handshake.
#      Memory: the server's RSS before the arrival, with the devices up (and
#      VmHWM), then the simulators are stopped (the devices leave) and RSS
#      is read every 5 s for --arrival-linger seconds; reported are RSS 0 s
#      and --arrival-linger s after they left, and "growth halved after":
#      the first of those readings at which RSS - RSS before was at most
#      half of (RSS with N up - RSS before), or "no" within the linger.
#   4. console sessions: a fresh server, --sessions-devices devices, and
#      --sessions SOCKS5 sessions through the proxy to their echo ports,
#      opened by one console process (ltsum consoles) and held; the server's
#      RSS per session, then every session echoing at once.
#
#   bash scripts/loadtest.sh --quick          # 1,000 tunnels, short windows, 1,000 arriving at 500/s: ~3 minutes
#   bash scripts/loadtest.sh                  # 1,000 / 10,000 / 19,000 tunnels, 4 storms, 2 arrivals: ~16 minutes
#   bash scripts/loadtest.sh --only arrival --arrival-devices 500 --arrival-rate 250   # one small arrival: ~3 minutes
#   bash scripts/loadtest.sh --help           # every option
#
# As root it runs inside a private network namespace (`unshare -n`, loopback
# only), where it may raise net.ipv4.tcp_tw_reuse and widen the ephemeral
# port range without touching the host; otherwise on the host's loopback,
# with a warning. Every process it starts is stopped on exit (trap), every
# wait is bounded. It prints a markdown results table (also written to
# --out FILE) and the exact commands it ran. Logs and summaries stay in the
# work directory when --keep is given or a phase failed.
#
# scripts/loadtest/ (package main) adds up the simulators' JSON summaries.
set -uo pipefail
SCRIPT_NAME=loadtest
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- options ------------------------------------------------------------------
TUNNELS="1000 10000 19000"
SETTLE=45          # s after connected_now == N before RSS is read
BASE_WINDOW=10     # s of server CPU at 0 tunnels
IDLE_WINDOW=60     # s over which idle CPU is measured
RAMP_RATE=400      # devices started per second, all simulators together
RAMP_INFLIGHT=64   # --max-handshakes of each simulator while ramping up
PER_SIM=5000       # most devices per simulator process
STORM_DEVICES=2000
STORM_WARMUP=10
STORM_WINDOW=60
STORM_TLS="1.2 1.3"
STORM_PINNED=1     # also a TLS 1.2 storm with the server on CPU 0 alone
STORM_RESUME=1     # also a TLS 1.2 storm with session resumption
SERVER_ENV=""      # VAR=VALUE ... for the server only (e.g. GOGC=50)
PROFILE_DIR=""     # where CPU profiles of the idle server go (--profile DIR)
PROFILE_SECS=30
KEEPALIVE=30s
IDLE_TIMEOUT=90s
SERVER_LOG_LEVEL=warn
SESSIONS=1000
SESSIONS_DEVICES=100
ARRIVAL_DEVICES=4000
ARRIVAL_RATE=1500  # devices started per second, all simulators together
ARRIVAL_WINDOW=60  # s from the simulators' start to wait for all to be up
ARRIVAL_LINGER=60  # s the server's RSS is followed after the devices left
ARRIVAL_RETRY=1    # also an arrival whose devices retry (backoff)
PHASES="tunnels storm arrival sessions"
OUT=""
KEEP=0
NETNS=auto
QUICK=0

usage() {
	cat <<EOF
usage: bash scripts/loadtest.sh [options]
  --quick                1,000 tunnels, settle 10 s, idle window 20 s, storms of 15 s, no pinned or resumed storm,
                         1,000 devices arriving at 500/s, window 40 s, linger 30 s, no retry arrival (~3 min)
  --tunnels "N ..."      tunnel counts to hold (default "$TUNNELS"; the server needs N + ~10 fds, limit $(ulimit -Hn))
  --settle S             seconds to wait after all are connected before reading RSS (default $SETTLE)
  --idle-window S        seconds of the idle CPU measurement (default $IDLE_WINDOW)
  --ramp-rate R          devices started per second while building up the tunnels (default $RAMP_RATE)
  --per-sim N            most devices per simulator process (default $PER_SIM)
  --storm-devices N      devices in the reconnect storm (default $STORM_DEVICES)
  --storm-warmup S       seconds of storm before the window opens (default $STORM_WARMUP)
  --storm-window S       seconds of the storm measurement (default $STORM_WINDOW)
  --storm-tls "V ..."    TLS versions the storm devices offer at most (default "$STORM_TLS")
  --storm-pinned | --no-storm-pinned   one more TLS 1.2 storm with the server pinned to CPU 0 (default on)
  --storm-resume | --no-storm-resume   one more TLS 1.2 storm whose devices resume their TLS sessions (default on)
  --server-env "V=X ..." environment for the server only, e.g. "GOGC=50" or "GOMEMLIMIT=200MiB"
                         ("PRESENCE_TUNNEL_READERS=goroutine": a goroutine per tunnel instead of the poller)
  --profile DIR          after each idle window, a ${PROFILE_SECS} s CPU profile of the server into DIR/NAME.cpu.pprof
  --keepalive D          server keepalive interval (default $KEEPALIVE; keep 30s for meaningful keepalive CPU)
  --idle-timeout D       server idle timeout (default $IDLE_TIMEOUT)
  --server-log-level L   debug logs every failed handshake with its reason (default $SERVER_LOG_LEVEL)
  --sessions N           console sessions held in the sessions phase (default $SESSIONS)
  --sessions-devices N   devices they are spread over (default $SESSIONS_DEVICES)
  --arrival-devices N    new devices in the arrival phase (default $ARRIVAL_DEVICES)
  --arrival-rate R       devices started per second in the arrival, all simulators together (default $ARRIVAL_RATE)
  --arrival-window S     most seconds to wait for every arriving device to be up (default $ARRIVAL_WINDOW;
                         the devices' handshake timeout is 30 s)
  --arrival-linger S     seconds the server's RSS is followed (every 5 s) after the devices left (default $ARRIVAL_LINGER)
  --arrival-retry | --no-arrival-retry   after the first-attempt (--no-retry) arrival, one whose devices retry (default on)
  --only "PHASE ..."     run these phases: tunnels, storm, arrival, sessions (default "$PHASES")
  --out FILE             also write the results (markdown) to FILE
  --keep                 keep the work directory (logs, summaries)
  --no-netns             run on the host network even as root
EOF
}

ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
	case $1 in
	--quick)
		QUICK=1 TUNNELS=1000 SETTLE=10 BASE_WINDOW=5 IDLE_WINDOW=20 STORM_WARMUP=5 STORM_WINDOW=15 STORM_PINNED=0 STORM_RESUME=0
		ARRIVAL_DEVICES=1000 ARRIVAL_RATE=500 ARRIVAL_WINDOW=40 ARRIVAL_LINGER=30 ARRIVAL_RETRY=0
		;;
	--tunnels) TUNNELS=$2; shift ;;
	--settle) SETTLE=$2; shift ;;
	--idle-window) IDLE_WINDOW=$2; shift ;;
	--ramp-rate) RAMP_RATE=$2; shift ;;
	--per-sim) PER_SIM=$2; shift ;;
	--storm-devices) STORM_DEVICES=$2; shift ;;
	--storm-warmup) STORM_WARMUP=$2; shift ;;
	--storm-window) STORM_WINDOW=$2; shift ;;
	--storm-tls) STORM_TLS=$2; shift ;;
	--storm-pinned) STORM_PINNED=1 ;;
	--no-storm-pinned) STORM_PINNED=0 ;;
	--storm-resume) STORM_RESUME=1 ;;
	--no-storm-resume) STORM_RESUME=0 ;;
	--server-env) SERVER_ENV=$2; shift ;;
	--profile) PROFILE_DIR=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
	--keepalive) KEEPALIVE=$2; shift ;;
	--idle-timeout) IDLE_TIMEOUT=$2; shift ;;
	--server-log-level) SERVER_LOG_LEVEL=$2; shift ;;
	--only) PHASES=$2; shift ;;
	--sessions) SESSIONS=$2; shift ;;
	--sessions-devices) SESSIONS_DEVICES=$2; shift ;;
	--arrival-devices) ARRIVAL_DEVICES=$2; shift ;;
	--arrival-rate) ARRIVAL_RATE=$2; shift ;;
	--arrival-window) ARRIVAL_WINDOW=$2; shift ;;
	--arrival-linger) ARRIVAL_LINGER=$2; shift ;;
	--arrival-retry) ARRIVAL_RETRY=1 ;;
	--no-arrival-retry) ARRIVAL_RETRY=0 ;;
	--out) OUT=$2; shift ;;
	--keep) KEEP=1 ;;
	--no-netns) NETNS=no ;;
	--inner) NETNS=inner ;; # internal: already inside the namespace
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option $1" ;;
	esac
	shift
done
for v in SETTLE IDLE_WINDOW RAMP_RATE PER_SIM STORM_DEVICES STORM_WARMUP STORM_WINDOW SESSIONS SESSIONS_DEVICES ARRIVAL_DEVICES ARRIVAL_WINDOW ARRIVAL_LINGER; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive integer, not '${!v}'"
done
[[ $ARRIVAL_RATE =~ ^[0-9]*\.?[0-9]+$ ]] && [ "$(awk "BEGIN { print ($ARRIVAL_RATE > 0) }")" = 1 ] ||
	die "--arrival-rate must be a positive number, not '$ARRIVAL_RATE'"
for p in $PHASES; do
	case $p in tunnels | storm | arrival | sessions) ;; *) die "--only: unknown phase '$p' (want tunnels, storm, arrival or sessions)" ;; esac
done
for n in $TUNNELS; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "--tunnels: '$n' is not a positive integer"; done
[ -z "$OUT" ] || OUT=$(realpath -m "$OUT")

# --- outside the namespace: build, then re-run inside it ----------------------
if [ "$NETNS" != inner ]; then
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/presence-loadtest.XXXXXX") || die "mktemp failed"
	echo "loadtest: work directory $WORK"
	cd "$REPO_ROOT" || exit 1
	echo "+ CGO_ENABLED=0 go build -tags nogui -o $WORK/presence . && go build -o $WORK/ltsum ./scripts/loadtest"
	if ! CGO_ENABLED=0 go build -tags nogui -o "$WORK/presence" . || ! go build -o "$WORK/ltsum" ./scripts/loadtest; then
		rm -rf "$WORK"
		die "build failed (GOTOOLCHAIN=$GOTOOLCHAIN)"
	fi
	# Facts the namespace cannot (or should not) find out itself.
	export LT_WORK=$WORK
	LT_GO=$(go version) LT_BINGO=$(go version "$WORK/presence" | sed 's/^[^:]*: //')
	LT_COMMIT=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo unknown)
	export LT_GO LT_BINGO LT_COMMIT
	why=""
	if [ "$NETNS" = no ]; then
		why="--no-netns"
	elif [ "$(id -u)" -ne 0 ]; then
		why="not root"
	elif ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
		why="unshare or ip missing (scripts/setup.sh installs util-linux and iproute2)"
	elif ! unshare -n ip link set lo up 2>/dev/null; then
		why="unshare -n does not work here"
	fi
	if [ -z "$why" ]; then
		echo "+ unshare -n bash $0 --inner ${ORIG_ARGS[*]}"
		exec unshare -n -- bash "$0" "${ORIG_ARGS[@]}" --inner
	fi
	echo "WARNING: running on the host's loopback ($why): other traffic shares it, and a reconnect storm may run out of ephemeral ports" >&2
	LT_NETNS="host ($why)"
else
	WORK=${LT_WORK:?--inner is internal to loadtest.sh}
	LT_NETNS="private (unshare -n)"
	ip link set lo up || die "ip link set lo up failed"
	# TIME_WAIT sockets of the storm: reuse them for new outgoing
	# connections, and give the clients every port there is.
	sysctl -qw net.ipv4.tcp_tw_reuse=1 || true
	sysctl -qw net.ipv4.ip_local_port_range="1024 65535" || true
fi

# --- from here on, in the namespace (or on the host) --------------------------
cd "$WORK" || exit 1
BIN=$WORK/presence
LTSUM=$WORK/ltsum
DATA=$WORK/data
ROOT_PEM=$WORK/root.pem
PORT=4433
ADDR=127.0.0.1:$PORT
PROXY_ADDR=127.0.0.1:$((PORT + 1))
CIRA_USER=loadtest
CIRA_PW=loadtest-Pw-0 # a throwaway account in a throwaway vault
SEED=loadtest
RESULTS=$WORK/results.md
# Go memory statistics of the server, when this version has --debug-addr.
DEBUG_ADDR=127.0.0.1:6061
if ! "$BIN" serve -h 2>&1 | grep -q -- -debug-addr || ! command -v curl >/dev/null; then
	DEBUG_ADDR=""
fi
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
FAILED=0
PIDS=() # every process started and not yet reaped, for cleanup
SIM_PIDS=()
SERVER_PID=0

# --- helpers ------------------------------------------------------------------
now() { date +%s.%N; }
# calc EXPR: awk arithmetic, e.g. calc 'sprintf("%.1f", 1/3)'; max0(x) is max(x, 0)
calc() { awk "function max0(x) { return x > 0 ? x : 0 } BEGIN { x = ($*); printf \"%s\", x }"; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

alive() { # PID: running and not a zombie
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st:0:1}" != Z ]
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
ticks() { # PID...: utime+stime, summed
	local p t=0 x
	for p in "$@"; do
		x=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
		t=$((t + ${x:-0}))
	done
	echo "$t"
}
machine_ticks() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat; }
passive_opens() {
	awk '/^Tcp:/ { if (!h) { h = 1; for (i = 1; i <= NF; i++) if ($i == "PassiveOpens") c = i; next } print $c }' /proc/net/snmp
}
server_sockets() { ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l; }

# stop PID SECS: SIGTERM, wait up to SECS, then SIGKILL; reaps it and sets
# STOP_RC (its exit status, or "killed") and STOP_SECS.
stop() {
	local pid=$1 secs=$2 t0 i=0
	t0=$(now)
	kill -TERM "$pid" 2>/dev/null
	while alive "$pid" && [ "$i" -lt $((secs * 10)) ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if alive "$pid"; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		STOP_RC=killed
	else
		wait "$pid" 2>/dev/null
		STOP_RC=$?
	fi
	STOP_SECS=$(calc "sprintf(\"%.1f\", $(now) - $t0)")
	forget "$pid"
}

# forget PID: it was reaped; never signal that number again.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do stop "$pid" 10; done
	if [ "$KEEP" = 1 ] || [ "$FAILED" = 1 ] || [ "$rc" -ne 0 ]; then
		echo "loadtest: logs and summaries kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

CMDS=() # one example of every kind of command, for the report
note_cmd() { # KEY CMD...: records CMD once per KEY
	local k=$1 c
	shift
	for c in "${CMDS[@]}"; do [[ $c == "$k"$'\t'* ]] && return; done
	CMDS+=("$k"$'\t'"$*")
}

# start_server NAME [taskset-cpus]: a fresh server; sets SERVER_PID, SERVER_LOG.
start_server() {
	local name=$1 cpus=${2:-} pin=() i
	SERVER_LOG=$WORK/$name.server.log
	[ -z "$cpus" ] || pin=(taskset -c "$cpus")
	# The proxy and API on loopback, and no mDNS: nothing leaves the machine.
	local cmd=("${pin[@]}" "$BIN" serve --data-dir "$DATA" --cira-addr "$ADDR" --keepalive "$KEEPALIVE"
		--idle-timeout "$IDLE_TIMEOUT" --log-level "$SERVER_LOG_LEVEL"
		--proxy-addr "$PROXY_ADDR" --api-addr 127.0.0.1:0 --mdns=false)
	[ -z "$DEBUG_ADDR" ] || cmd+=(--debug-addr "$DEBUG_ADDR")
	# gctrace: one line per GC on stderr, with the live heap and the
	# goroutine stacks; cheap, and it tells what the RSS is made of.
	local envs=(GODEBUG=gctrace=1)
	# shellcheck disable=SC2206 # VAR=VALUE words
	envs+=($SERVER_ENV)
	note_cmd "serve${cpus:+ pinned}" "env ${envs[*]} ${cmd[*]}"
	env "${envs[@]}" "${cmd[@]}" >"$SERVER_LOG" 2>&1 &
	SERVER_PID=$! SERVER_T0=$(now)
	PIDS+=("$SERVER_PID")
	for ((i = 0; i < 150; i++)); do
		ss -Hltn "( sport = :$PORT )" | grep -q . && return 0
		alive "$SERVER_PID" || break
		sleep 0.1
	done
	log "server did not start listening on $ADDR within 15 s:"
	tail -n 20 "$SERVER_LOG" >&2
	return 1
}

# stop_server: graceful stop, bounded; sets SERVER_STOP ("rc 0 in 1.2 s")
# and SERVER_WARN (warnings and errors in its log).
stop_server() {
	stop "$SERVER_PID" 30
	SERVER_STOP="exit $STOP_RC after ${STOP_SECS} s"
	SERVER_WARN=$(grep -cE 'level=(WARN|ERROR)' "$SERVER_LOG")
	if [ "$SERVER_WARN" -gt 0 ]; then
		log "server log $(basename "$SERVER_LOG"): $SERVER_WARN warnings/errors, e.g.:"
		grep -E 'level=(WARN|ERROR)' "$SERVER_LOG" | sed -E 's/^time=[^ ]+ //; s/remote=[^ ]+ //' | sort | uniq -c | sort -rn | head -n 5 >&2
	fi
}

# gc_last: the server's last GC line (GODEBUG=gctrace=1) as the words
# "N T LIVE STACKS BEFORE GOAL": GC number, seconds since start, live heap,
# goroutine stacks, heap before the GC, heap goal (MB); empty if none.
gc_last() {
	grep '^gc [0-9]' "$SERVER_LOG" | tail -n 1 | sed -nE \
		's/^gc ([0-9]+) @([0-9.]+)s .* ([0-9]+)->([0-9]+)->([0-9]+) MB, ([0-9]+) MB goal, ([0-9]+) MB stacks.*/\1 \2 \5 \7 \3 \6/p'
}

# go_mem: the server's Go memory statistics (serve --debug-addr) as the
# words "HEAP_INUSE STACK_INUSE HEAP_FREE HEAP_ALLOC NUMGC GOROUTINES" (bytes,
# free = idle but not released to the OS); empty when unavailable. Reading
# them stops the world for a moment: call it outside the CPU windows.
go_mem() {
	[ -n "$DEBUG_ADDR" ] || return 0
	local g
	g=$(curl -sf --max-time 10 "http://$DEBUG_ADDR/debug/pprof/goroutine?debug=1" | sed -n '1s/^goroutine profile: total //p')
	curl -sf --max-time 10 "http://$DEBUG_ADDR/debug/pprof/heap?debug=1" | awk -v g="${g:-0}" '
		$1 == "#" && $3 == "=" { v[$2] = $4 }
		END { if ("HeapInuse" in v) print v["HeapInuse"], v["Stack"], v["HeapIdle"] - v["HeapReleased"], v["HeapAlloc"], v["NumGC"], g }'
}

per_tunnel() { calc "sprintf(\"%.1f MiB (%.1f KiB/tunnel)\", $1 / 1048576, $1 / 1024 / $2)"; } # BYTES N

# start_sims NAME TOTAL DURATION [CPUS] -- EXTRA...: TOTAL devices over
# ceil(TOTAL/PER_SIM) simulators with disjoint --first ranges, each ending
# after DURATION at the latest. Sets SIM_PIDS, SIM_ERR (--report lines),
# SIM_OUT (final summaries). EXTRA are more simulate flags; the literal
# word RATE in them becomes this simulator's share of SIM_RATE (default
# RAMP_RATE; e.g. SIM_RATE=100 start_sims ...).
start_sims() {
	local name=$1 total=$2 dur=$3 cpus=${4:-} pin=() first=0 i=0 n cmd extra a
	shift 4
	[ "${1:-}" = -- ] && shift
	[ -z "$cpus" ] || pin=(taskset -c "$cpus")
	SIM_PIDS=() SIM_ERR=() SIM_OUT=()
	local procs=$(((total + PER_SIM - 1) / PER_SIM))
	while [ "$first" -lt "$total" ]; do
		n=$(((total - first + procs - i - 1) / (procs - i))) # even split
		extra=()
		for a in "$@"; do
			[ "$a" = RATE ] && a=$(calc "sprintf(\"%.1f\", ${SIM_RATE:-$RAMP_RATE} * $n / $total)")
			extra+=("$a")
		done
		cmd=("${pin[@]}" "$BIN" simulate --mps "$ADDR" --ca "$ROOT_PEM" --user "$CIRA_USER" --devices "$n" --first "$first"
			--seed "$SEED" --duration "$dur" "${extra[@]}")
		note_cmd "simulate $name $i" "printf %s PW | ${cmd[*]}"
		printf %s "$CIRA_PW" | "${cmd[@]}" >"$WORK/$name.sim$i.out" 2>"$WORK/$name.sim$i.err" &
		SIM_PIDS+=("$!")
		PIDS+=("$!")
		SIM_ERR+=("$WORK/$name.sim$i.err")
		SIM_OUT+=("$WORK/$name.sim$i.out")
		first=$((first + n))
		i=$((i + 1))
	done
}

# stop_sims: SIGTERM, bounded; their final summaries land in SIM_OUT.
stop_sims() {
	local p
	for p in "${SIM_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${SIM_PIDS[@]}"; do stop "$p" 30; done
}

sims_alive() {
	local p
	for p in "${SIM_PIDS[@]}"; do alive "$p" || return 1; done
}

# snapshot DIR: copies every simulator's --report file to DIR.
snapshot() {
	local i
	mkdir -p "$1"
	for i in "${!SIM_ERR[@]}"; do cp "${SIM_ERR[$i]}" "$1/$i"; done
}
delta_args() { # A B: "A/0 B/0 A/1 B/1 ..."
	local i
	for i in "${!SIM_ERR[@]}"; do printf '%s %s ' "$1/$i" "$2/$i"; done
}
# kv FILE KEY: the value of KEY=... in FILE
kv() { sed -n "s/^$2=//p" "$1" | head -n1; }

# --- setup: a vault with the CA and one CIRA account -----------------------------
setup_vault() {
	log "making the CA (RSA 3072 root, RSA 2048 server certificate) and a CIRA account"
	note_cmd "cert init" "$BIN cert init --cn 127.0.0.1 --data-dir $DATA"
	"$BIN" cert init --cn 127.0.0.1 --data-dir "$DATA" >"$WORK/cert-init.log" 2>&1 || { cat "$WORK/cert-init.log" >&2; return 1; }
	note_cmd "export-root" "$BIN cert export-root --data-dir $DATA > $ROOT_PEM"
	"$BIN" cert export-root --data-dir "$DATA" >"$ROOT_PEM" || return 1
	note_cmd "account add" "printf %s PW | $BIN account add --kind cira --data-dir $DATA $CIRA_USER"
	printf %s "$CIRA_PW" | "$BIN" account add --kind cira --data-dir "$DATA" "$CIRA_USER" >/dev/null || return 1
	note_cmd "console account" "printf %s PW | $BIN account add --kind console --data-dir $DATA load"
	printf %s "$CIRA_PW" | "$BIN" account add --kind console --data-dir "$DATA" load >/dev/null || return 1
}

# hold_sessions: console sessions through the proxy (phase 4).
hold_sessions() {
	local n=$SESSIONS devs=$SESSIONS_DEVICES name=sessions c=0 deadline rss0 rss held_secs=15 i
	log "== $n console sessions over $devs devices: fresh server"
	start_server "$name" || return 1
	start_sims "$name" "$devs" "600s" "" -- --echo-port 7 --rate RATE --report 2s --tls-max 1.2
	deadline=$(($(date +%s) + 120))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		sleep 2
		c=$("$LTSUM" sum connected_now "${SIM_ERR[@]}" 2>/dev/null || echo 0)
		[ "$c" -ge "$devs" ] && break
		sims_alive || { log "   a simulator exited early"; return 1; }
	done
	[ "$c" -ge "$devs" ] || { log "   only $c of $devs devices connected"; return 1; }
	sleep 5
	rss0=$(rss_kb "$SERVER_PID")
	local ready=$WORK/$name.ready
	local cmd=("$LTSUM" consoles --proxy "$PROXY_ADDR" --user load --devices "$devs" --sessions "$n"
		--hold "${held_secs}s" --ready "$ready")
	note_cmd "consoles" "printf %s PW | ${cmd[*]}"
	printf '%s\n' "$CIRA_PW" | "${cmd[@]}" >"$WORK/$name.consoles.json" 2>"$WORK/$name.consoles.err" &
	local cpid=$!
	PIDS+=("$cpid")
	for ((i = 0; i < 600; i++)); do
		[ -f "$ready" ] && break
		alive "$cpid" || break
		sleep 0.1
	done
	[ -f "$ready" ] || { log "   the console process did not open its sessions:"; cat "$WORK/$name.consoles.err" >&2; return 1; }
	sleep 5
	rss=$(rss_kb "$SERVER_PID")
	local fdn s0 s1 w0 w1
	fdn=$(fds "$SERVER_PID")
	s0=$(ticks "$SERVER_PID") w0=$(now)
	wait "$cpid" || { log "   the console process failed:"; cat "$WORK/$name.consoles.err" >&2; return 1; }
	s1=$(ticks "$SERVER_PID") w1=$(now)
	local j open_s opened echo_s echoes p50 p99
	j=$WORK/$name.consoles.json
	opened=$(sed -n 's/.*"opened":\([0-9]*\).*/\1/p' "$j")
	open_s=$(sed -n 's/.*"open_seconds":\([0-9.e+-]*\).*/\1/p' "$j")
	echoes=$(sed -n 's/.*"echoes":\([0-9]*\).*/\1/p' "$j")
	echo_s=$(sed -n 's/.*"echo_seconds":\([0-9.e+-]*\).*/\1/p' "$j")
	p50=$(sed -n 's/.*"p50":\([0-9.e+-]*\).*/\1/p' "$j")
	p99=$(sed -n 's/.*"p99":\([0-9.e+-]*\).*/\1/p' "$j")
	SESSION_ROWS+=("| $n | $devs | ${opened:-0} | $(calc "sprintf(\"%.0f\", 1000 * ${open_s:-0})") | $(calc "sprintf(\"%.1f / %.1f\", $rss0 / 1024, $rss / 1024)") | **$(calc "sprintf(\"%.1f\", ($rss - $rss0) / ${opened:-1})")** | $fdn | ${echoes:-0} in $(calc "sprintf(\"%.2f\", ${echo_s:-0})") s | $(calc "sprintf(\"%.0f\", 1e6 * ($s1 - $s0) / $CLK_TCK / max0(${echoes:-0} - 0.5 + 1))") | ${p50:-?} / ${p99:-?} |")
	[ "${opened:-0}" -eq "$n" ] || { SESSION_NOTES+=("only ${opened:-0} of $n sessions opened: $(cat "$j")"); FAILED=1; }
	log "   $opened sessions: server RSS ${rss0} → ${rss} kB"
	stop_sims
	stop_server
}

# --- phase 1: tunnels held ------------------------------------------------------
TUNNEL_ROWS=()
TUNNEL_NOTES=()

hold_tunnels() {
	local n=$1 name="hold$1" rss0 t_ramp deadline c=0 srv_sock rss hwm fdn
	log "== $n tunnels: fresh server"
	start_server "$name" || return 1
	sleep 2
	# The server's own CPU with no tunnel, as a baseline.
	local b0 bw0 b1 bw1 base_cpu
	b0=$(ticks "$SERVER_PID") bw0=$(now)
	sleep "$BASE_WINDOW"
	b1=$(ticks "$SERVER_PID") bw1=$(now)
	base_cpu=$(calc "sprintf(\"%.2f\", 100 * ($b1 - $b0) / $CLK_TCK / ($bw1 - $bw0))")
	rss0=$(rss_kb "$SERVER_PID")
	t_ramp=$(calc "int($n / $RAMP_RATE) + 1")
	local budget=$((2 * t_ramp + 60)) # to get everything connected
	local dur=$((budget + SETTLE + IDLE_WINDOW + 120))
	log "   server pid $SERVER_PID, RSS at 0 tunnels ${rss0} kB, CPU ${base_cpu}%; starting $n devices at $RAMP_RATE/s (~${t_ramp} s)"
	start_sims "$name" "$n" "${dur}s" "" -- --rate RATE --max-handshakes "$RAMP_INFLIGHT" --report 2s --tls-max 1.2
	local t0 t1
	t0=$(now)
	deadline=$(($(date +%s) + budget))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		sleep 2
		c=$("$LTSUM" sum connected_now "${SIM_ERR[@]}" 2>/dev/null || echo 0)
		[ "$c" -ge "$n" ] && break
		sims_alive || { log "   a simulator exited early:"; tail -n 5 "${SIM_ERR[@]}" >&2; break; }
	done
	t1=$(now)
	local ramp_secs
	ramp_secs=$(calc "sprintf(\"%.0f\", $t1 - $t0)")
	if [ "$c" -lt "$n" ]; then
		log "   only $c of $n connected after ${ramp_secs} s: measuring what is held"
		TUNNEL_NOTES+=("$n tunnels: only $c connected within ${budget} s")
		FAILED=1
	else
		log "   all $n connected after ~${ramp_secs} s; settling ${SETTLE} s"
	fi
	sleep "$SETTLE"
	rss=$(rss_kb "$SERVER_PID")
	# The idle window: CPU of the server (and of the simulators) while the
	# tunnels only exchange keepalives.
	snapshot "$WORK/$name.A"
	local s0 m0 w0 s1 m1 w1 mb0 mt0 mb1 mt1
	s0=$(ticks "$SERVER_PID") m0=$(ticks "${SIM_PIDS[@]}") w0=$(now)
	read -r mb0 mt0 < <(machine_ticks)
	log "   RSS ${rss} kB; idle CPU window ${IDLE_WINDOW} s"
	sleep "$IDLE_WINDOW"
	sleep 2.5 # one more --report line, so the snapshot covers the window
	s1=$(ticks "$SERVER_PID") m1=$(ticks "${SIM_PIDS[@]}") w1=$(now)
	read -r mb1 mt1 < <(machine_ticks)
	snapshot "$WORK/$name.B"
	if [ -n "$PROFILE_DIR" ] && [ -n "$DEBUG_ADDR" ]; then
		# After the window, so that profiling does not count in it.
		log "   CPU profile of the idle server, ${PROFILE_SECS} s -> $PROFILE_DIR/$name.cpu.pprof"
		note_cmd "profile $name" "curl -sf http://$DEBUG_ADDR/debug/pprof/profile?seconds=$PROFILE_SECS -o $PROFILE_DIR/$name.cpu.pprof"
		curl -sf --max-time $((PROFILE_SECS + 20)) "http://$DEBUG_ADDR/debug/pprof/profile?seconds=$PROFILE_SECS" \
			-o "$PROFILE_DIR/$name.cpu.pprof" || log "   the profile could not be fetched"
	fi
	local rss_end
	rss_end=$(rss_kb "$SERVER_PID") hwm=$(hwm_kb "$SERVER_PID") fdn=$(fds "$SERVER_PID") srv_sock=$(server_sockets)
	# shellcheck disable=SC2046 # word splitting wanted
	"$LTSUM" delta $(delta_args "$WORK/$name.A" "$WORK/$name.B") >"$WORK/$name.delta" || return 1
	c=$(kv "$WORK/$name.delta" connected_now)
	local srv_cpu sim_cpu rest held per per_end ka kab reconnects us_per_ka
	srv_cpu=$(calc "sprintf(\"%.2f\", 100 * ($s1 - $s0) / $CLK_TCK / ($w1 - $w0))")
	sim_cpu=$(calc "sprintf(\"%.2f\", 100 * ($m1 - $m0) / $CLK_TCK / ($w1 - $w0))")
	rest=$(calc "sprintf(\"%.1f\", max0($NCPU * 100 * ($mb1 - $mb0) / ($mt1 - $mt0) - $srv_cpu - $sim_cpu))")
	held=$c
	local threads gcn gct gclive gcbefore gcgoal gc mem=()
	threads=$(awk '/^Threads:/ { print $2 }' "/proc/$SERVER_PID/status")
	read -r gcn gct gclive _ gcbefore gcgoal < <(gc_last)
	if [ -z "${gcn:-}" ]; then
		gc="no GC yet"
	else
		gc="last GC #$gcn at ${gct} s"
		if [ "$(calc "$gct >= $t1 - $SERVER_T0")" = 1 ]; then
			gc+=" (after all were connected)"
		else
			gc+=" (during the ramp-up)"
		fi
		gc+=": live heap $gclive MiB (heap before it $gcbefore MiB, next goal $gcgoal MiB)"
	fi
	read -r -a mem < <(go_mem)
	if [ "${#mem[@]}" -eq 6 ] && [ "$held" -gt 0 ]; then
		gc="after the idle window: heap in use $(per_tunnel "${mem[0]}" "$held"), goroutine stacks $(per_tunnel "${mem[1]}" "$held"), heap free but not returned to the OS $(per_tunnel "${mem[2]}" "$held"); $(calc "sprintf(\"%.2f\", ${mem[5]} / $held)") goroutines per tunnel (${mem[5]} in all); $gc"
	fi
	per=$(calc "$held > 0 ? sprintf(\"%.1f\", ($rss - $rss0) / $held) : \"-\"")
	per_end=$(calc "$held > 0 ? sprintf(\"%.1f\", ($rss_end - $rss0) / $held) : \"-\"")
	ka=$(kv "$WORK/$name.delta" keepalives_per_sec)
	kab=$(kv "$WORK/$name.delta" keepalive_bad)
	reconnects=$(kv "$WORK/$name.delta" attempts)
	us_per_ka=$(calc "$ka > 0 ? sprintf(\"%.0f\", 1e4 * ($srv_cpu - $base_cpu) / $ka) : \"-\"")
	local cpu_s
	cpu_s=$(calc "sprintf(\"%.2f\", ($s1 - $s0) / $CLK_TCK)")
	log "   held $held (server sockets $srv_sock, fds $fdn); RSS $rss -> $rss_end kB; server CPU ${srv_cpu}% ($cpu_s s over $(calc "sprintf(\"%.1f\", $w1 - $w0)") s); keepalives ${ka}/s; simulators ${sim_cpu}%, rest ${rest}%"
	stop_sims
	"$LTSUM" final "${SIM_OUT[@]}" >"$WORK/$name.final" 2>/dev/null || echo "failed=? ended=?" >"$WORK/$name.final"
	stop_server
	local failed ended
	failed=$(kv "$WORK/$name.final" failed) ended=$(kv "$WORK/$name.final" ended)
	[ "$failed" = - ] || TUNNEL_NOTES+=("$n tunnels: failed handshakes during the ramp-up: $failed")
	[ "$ended" = - ] || TUNNEL_NOTES+=("$n tunnels: tunnels that ended while held: $ended")
	[ "$reconnects" = 0 ] || TUNNEL_NOTES+=("$n tunnels: $reconnects connection attempts during the idle window (expected 0)")
	[ "${kab:-0}" = 0 ] || TUNNEL_NOTES+=("$n tunnels: $kab bad keepalive replies")
	[ "$SERVER_WARN" = 0 ] || TUNNEL_NOTES+=("$n tunnels: $SERVER_WARN warnings/errors in the server log")
	TUNNEL_NOTES+=("$n tunnels: ramp-up took ~${ramp_secs} s; handshake p50/p99 $(kv "$WORK/$name.final" hs_p50_ms)/$(kv "$WORK/$name.final" hs_p99_ms) ms; RSS at the end of the idle window ${rss_end} kB (${per_end} KiB/tunnel); graceful stop: $SERVER_STOP")
	TUNNEL_NOTES+=("$n tunnels: Go runtime $gc; $threads threads")
	TUNNEL_ROWS+=("| $n | $held / $srv_sock | $fdn | $(calc "sprintf(\"%.1f / %.1f\", $rss0 / 1024, $rss / 1024)") | **$per** | $(calc "sprintf(\"%.1f\", $hwm / 1024)") | $base_cpu | **$srv_cpu** | $ka | $us_per_ka | $sim_cpu | $rest |")
}

# --- phase 2: reconnect storm ---------------------------------------------------
STORM_ROWS=()
STORM_NOTES=()
SESSION_ROWS=()
SESSION_NOTES=()

# storm TLS-VERSION [pinned|resume]: pinned puts the server on CPU 0 and the
# simulators on the others; resume makes the devices resume their TLS
# sessions (simulate --resume), which skips the server's RSA signature.
storm() {
	local tls=$1 variant=${2:-} name="storm-tls$1${2:+-$2}" scpu="" mcpu="" label="$1" extra=()
	case $variant in
	pinned)
		scpu=0 mcpu=1
		[ "$NCPU" -gt 2 ] && mcpu=1-$((NCPU - 1))
		label="$tls, server pinned to CPU 0 (GOMAXPROCS 1), sims to CPU $mcpu"
		;;
	resume) extra=(--resume) label="$tls, sessions resumed (--resume)" ;;
	esac
	log "== reconnect storm, TLS $label: $STORM_DEVICES devices"
	start_server "$name" "$scpu" || return 1
	local dur=$((STORM_WARMUP + STORM_WINDOW + 60))
	start_sims "$name" "$STORM_DEVICES" "${dur}s" "$mcpu" -- --fault reconnect-loop --hold 0s --report 1s --tls-max "$tls" "${extra[@]}"
	sleep "$STORM_WARMUP"
	sims_alive || { log "   a simulator exited early:"; tail -n 5 "${SIM_ERR[@]}" >&2; return 1; }
	local s0 m0 w0 p0 s1 m1 w1 p1 mb0 mt0 mb1 mt1
	snapshot "$WORK/$name.A"
	s0=$(ticks "$SERVER_PID") m0=$(ticks "${SIM_PIDS[@]}") p0=$(passive_opens) w0=$(now)
	read -r mb0 mt0 < <(machine_ticks)
	sleep "$STORM_WINDOW"
	s1=$(ticks "$SERVER_PID") m1=$(ticks "${SIM_PIDS[@]}") p1=$(passive_opens) w1=$(now)
	read -r mb1 mt1 < <(machine_ticks)
	snapshot "$WORK/$name.B"
	local fdn hwm
	fdn=$(fds "$SERVER_PID") hwm=$(hwm_kb "$SERVER_PID")
	# shellcheck disable=SC2046 # word splitting wanted
	"$LTSUM" delta $(delta_args "$WORK/$name.A" "$WORK/$name.B") >"$WORK/$name.delta" || return 1
	stop_sims
	"$LTSUM" final "${SIM_OUT[@]}" >"$WORK/$name.final" 2>/dev/null || echo "failed=? ended=?" >"$WORK/$name.final"
	stop_server
	local secs hs rate accepts srv_cpu sim_cpu rest ms_per cap failed
	secs=$(calc "$w1 - $w0")
	hs=$(kv "$WORK/$name.delta" handshakes)
	rate=$(kv "$WORK/$name.delta" handshakes_per_sec)
	accepts=$(calc "sprintf(\"%.0f\", ($p1 - $p0) / $secs)")
	srv_cpu=$(calc "sprintf(\"%.0f\", 100 * ($s1 - $s0) / $CLK_TCK / $secs)")
	sim_cpu=$(calc "sprintf(\"%.0f\", 100 * ($m1 - $m0) / $CLK_TCK / $secs)")
	rest=$(calc "sprintf(\"%.0f\", max0($NCPU * 100 * ($mb1 - $mb0) / ($mt1 - $mt0) - $srv_cpu - $sim_cpu))")
	ms_per=$(calc "$hs > 0 ? sprintf(\"%.2f\", 1000 * ($s1 - $s0) / $CLK_TCK / $hs) : \"-\"")
	local cores=$NCPU
	[ "$variant" = pinned ] && cores=1
	cap=$(calc "$hs > 0 ? sprintf(\"%.0f\", $cores * $hs * $CLK_TCK / ($s1 - $s0)) : \"-\"")
	failed=$(kv "$WORK/$name.delta" failed)
	log "   ${rate} handshakes/s, ${accepts} TCP accepts/s; server CPU ${srv_cpu}%, simulators ${sim_cpu}%, rest ${rest}%"
	STORM_ROWS+=("| $label | $STORM_DEVICES (${#SIM_PIDS[@]}) | $(calc "sprintf(\"%.0f\", $secs)") | **$rate** | $accepts | $srv_cpu | $sim_cpu | $rest | $ms_per | $cap | $(kv "$WORK/$name.final" hs_p50_ms) / $(kv "$WORK/$name.final" hs_p99_ms) | $failed |")
	STORM_NOTES+=("storm TLS $label: window $hs handshakes, $(kv "$WORK/$name.delta" attempts) attempts; whole run: failed $(kv "$WORK/$name.final" failed), ended $(kv "$WORK/$name.final" ended); server fds at the end $fdn, peak RSS $(calc "sprintf(\"%.1f\", $hwm / 1024)") MiB; graceful stop: $SERVER_STOP; server log warnings/errors: $SERVER_WARN")
}

# --- phase 3: arrival of new devices ---------------------------------------------
ARRIVAL_ROWS=()
ARRIVAL_MEM_ROWS=()
ARRIVAL_NOTES=()

# arrival_sum FILE: `ltsum arrival` over the simulators' --report lines and
# final summaries (KEY=VALUE lines) to FILE.
arrival_sum() {
	local i args=()
	for i in "${!SIM_ERR[@]}"; do args+=("${SIM_ERR[$i]}" "${SIM_OUT[$i]}"); done
	"$LTSUM" arrival "${args[@]}" >"$1.tmp" 2>"$1.err" && mv "$1.tmp" "$1"
}

mib() { calc "sprintf(\"%.1f\", $1 / 1024)"; } # KB

# go_mem_words LABEL WORDS...: go_mem's six words as "; LABEL: heap in use ...",
# nothing when there are not six.
go_mem_words() {
	[ "$#" -eq 7 ] || return 0
	printf '; %s: heap in use %s MiB, stacks %s MiB, free not returned %s MiB, %s goroutines' "$1" \
		"$(calc "sprintf(\"%.1f\", $2 / 1048576)")" "$(calc "sprintf(\"%.1f\", $3 / 1048576)")" "$(calc "sprintf(\"%.1f\", $4 / 1048576)")" "$7"
}

# arrival first|retry: ARRIVAL_DEVICES new devices started at ARRIVAL_RATE/s
# against a fresh server; "first" with --no-retry (a failed first attempt
# is a device that did not come up), "retry" with the simulator's backoff.
# Then the devices leave and the server's RSS is followed.
arrival() {
	local variant=$1 n=$ARRIVAL_DEVICES name="arrival-$1" extra=() label
	case $variant in
	first) extra=(--no-retry) label="first attempt (--no-retry)" ;;
	retry) label="with retries (backoff)" ;;
	esac
	log "== arrival of $n new devices at $ARRIVAL_RATE/s, $label: fresh server"
	start_server "$name" || return 1
	sleep 2
	local rss0 mem0=()
	read -r -a mem0 < <(go_mem)
	rss0=$(rss_kb "$SERVER_PID")
	log "   server pid $SERVER_PID, RSS ${rss0} kB; starting the devices"
	# The devices' handshake timeout is 30 s: the simulators outlive the
	# window by more, and are stopped by stop_sims (or the trap) anyway.
	local s0 w0 mb0 mt0
	s0=$(ticks "$SERVER_PID") w0=$(now)
	read -r mb0 mt0 < <(machine_ticks)
	SIM_RATE=$ARRIVAL_RATE start_sims "$name" "$n" "$((ARRIVAL_WINDOW + 60))s" "" -- \
		--rate RATE --report 200ms --tls-max 1.2 --max-handshakes 0 "${extra[@]}"
	# Wait, bounded by the window, for every device up (or, with
	# --no-retry, every first attempt over). The simulators are fresh
	# processes: their CPU is counted from 0.
	local poll=$WORK/$name.poll end c=0 why="window"
	# An absolute time: %.3f, as awk would print it in %.6g (1.76476e+09)
	end=$(calc "sprintf(\"%.3f\", $w0 + $ARRIVAL_WINDOW)")
	while [ "$(calc "$(now) < $end")" = 1 ]; do
		sleep 0.2
		arrival_sum "$poll" || continue
		c=$(kv "$poll" connected_now)
		[ "${c:-0}" -ge "$n" ] && { why="up"; break; }
		if [ "$variant" = first ] && [ "$(kv "$poll" done_sec)" != - ]; then
			why="done"
			break
		fi
		if ! sims_alive && [ "$variant" = retry ]; then
			log "   a simulator exited early:"
			tail -n 5 "${SIM_ERR[@]}" >&2
			why="exited"
			break
		fi
	done
	local s1 m1 w1 mb1 mt1
	s1=$(ticks "$SERVER_PID") m1=$(ticks "${SIM_PIDS[@]}") w1=$(now)
	read -r mb1 mt1 < <(machine_ticks)
	local sum=$WORK/$name.sum
	arrival_sum "$sum" || { log "   ltsum arrival failed:"; cat "$sum.err" >&2; return 1; }
	local rss_up hwm fdn srv_sock mem_up=()
	rss_up=$(rss_kb "$SERVER_PID") hwm=$(hwm_kb "$SERVER_PID") fdn=$(fds "$SERVER_PID") srv_sock=$(server_sockets)
	read -r -a mem_up < <(go_mem)
	local up hs secs up_sec done_sec t_all
	up=$(kv "$sum" connected_now) hs=$(kv "$sum" handshakes)
	up_sec=$(kv "$sum" up_sec) done_sec=$(kv "$sum" done_sec)
	secs=$(calc "$w1 - $w0")
	case $why in
	up) t_all=$(calc "sprintf(\"%.1f\", $up_sec)") ;;
	done) t_all="not all up (every first attempt over after $(calc "sprintf(\"%.1f\", $done_sec)") s)" ;;
	*) t_all="not all up (window of $(calc "sprintf(\"%.0f\", $secs)") s ended)" ;;
	esac
	log "   $up of $n up; $t_all; failed $(kv "$sum" failed); server RSS ${rss0} -> ${rss_up} kB"
	# The devices leave; the server's RSS every 5 s for ARRIVAL_LINGER s.
	stop_sims
	local t_left t rss series=() halved=no growth
	t_left=$(now)
	growth=$((rss_up - rss0))
	for ((t = 0; t <= ARRIVAL_LINGER; t += 5)); do
		sleep "$(calc "max0($t_left + $t - $(now))")"
		rss=$(rss_kb "$SERVER_PID")
		series+=("${t}s:$(calc "sprintf(\"%.1f\", $rss / 1024)")")
		if [ "$halved" = no ] && [ "$growth" -gt 0 ] && [ $((2 * (rss - rss0))) -le "$growth" ]; then
			halved=$t
		fi
	done
	local rss_left=${series[0]#*:} rss_end=$rss fd_end sock_end mem_end=()
	fd_end=$(fds "$SERVER_PID") sock_end=$(server_sockets)
	read -r -a mem_end < <(go_mem)
	[ "$growth" -gt 0 ] || halved="- (no growth)"
	stop_server

	local srv_ticks=$((s1 - s0)) sim_ticks=$m1 srv_cpu sim_cpu rest srv_ms sim_ms
	srv_cpu=$(calc "sprintf(\"%.0f\", 100 * $srv_ticks / $CLK_TCK / $secs)")
	sim_cpu=$(calc "sprintf(\"%.0f\", 100 * $sim_ticks / $CLK_TCK / $secs)")
	rest=$(calc "sprintf(\"%.0f\", max0($NCPU * 100 * ($mb1 - $mb0) / ($mt1 - $mt0) - $srv_cpu - $sim_cpu))")
	srv_ms=$(calc "$hs > 0 ? sprintf(\"%.2f\", 1000 * $srv_ticks / $CLK_TCK / $hs) : \"-\"")
	sim_ms=$(calc "$hs > 0 ? sprintf(\"%.2f\", 1000 * $sim_ticks / $CLK_TCK / $hs) : \"-\"")
	local resets timeouts other canceled
	resets=$(kv "$sum" failed_reset) timeouts=$(kv "$sum" failed_timeout)
	other=$(kv "$sum" failed_other) canceled=$(kv "$sum" failed_canceled)
	ARRIVAL_ROWS+=("| $label | $n (${#SIM_PIDS[@]}) | $ARRIVAL_RATE | **$up** / $n | $t_all | $(kv "$sum" hs_p50_ms) / $(kv "$sum" hs_p99_ms) / $(kv "$sum" hs_max_ms) | **$resets** | **$timeouts** | $other | $srv_cpu | **$srv_ms** | $sim_cpu | $sim_ms | $rest |")
	local per
	per=$(calc "$up > 0 ? sprintf(\"%.1f\", $growth / $up) : \"-\"")
	ARRIVAL_MEM_ROWS+=("| $label | $(mib "$rss0") | $(mib "$rss_up") ($per KiB/device) | $(mib "$hwm") | $rss_left | $(mib "$rss_end") | **$halved** | $sock_end / $fd_end |")
	ARRIVAL_NOTES+=("arrival, $label: failed attempts by reason: $(kv "$sum" failed) (${canceled} still in their handshake when the simulators were stopped, counted in none of the columns); $(kv "$sum" attempts) attempts, $hs handshakes, $(kv "$sum" started) of $n devices started; CPU window $(calc "sprintf(\"%.1f\", $secs)") s (server $(calc "sprintf(\"%.2f\", $srv_ticks / $CLK_TCK)") s, simulators $(calc "sprintf(\"%.2f\", $sim_ticks / $CLK_TCK)") s); when it closed: server sockets $srv_sock, fds $fdn")
	ARRIVAL_NOTES+=("arrival, $label: server RSS after the devices left, MiB: ${series[*]}; graceful stop: $SERVER_STOP; server log warnings/errors: $SERVER_WARN")
	local gm
	gm="$(go_mem_words before "${mem0[@]}")$(go_mem_words "with the devices up" "${mem_up[@]}")$(go_mem_words "${ARRIVAL_LINGER} s after they left" "${mem_end[@]}")"
	[ -z "$gm" ] || ARRIVAL_NOTES+=("arrival, $label: Go runtime${gm#;}")
	[ "$up" -eq "$n" ] || [ "$variant" = first ] || FAILED=1
}

# --- run --------------------------------------------------------------------------
machine() {
	local model
	model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	echo "- machine: $NCPU CPUs ($model), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r), open files $(ulimit -n) (hard $(ulimit -Hn))"
	echo "- Go: ${LT_GO:-?}; binary built with ${LT_BINGO:-?}; commit ${LT_COMMIT:-?}"
	echo "- network: $LT_NETNS; tcp_tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse), ephemeral ports $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range)"
	echo "- server: keepalive $KEEPALIVE, idle timeout $IDLE_TIMEOUT, log level $SERVER_LOG_LEVEL, environment: GODEBUG=gctrace=1${SERVER_ENV:+ $SERVER_ENV}; simulators: at most $PER_SIM devices each, TLS 1.2 for the tunnels"
}

# stop_leftovers: after a failed phase, whatever it left running.
stop_leftovers() {
	local p
	for p in "${PIDS[@]}"; do stop "$p" 30; done
}

T_START=$(now)
setup_vault || die "vault setup failed"
for phase in $PHASES; do
	case $phase in
	tunnels)
		for n in $TUNNELS; do
			hold_tunnels "$n" || { FAILED=1; log "the $n-tunnel run failed"; TUNNEL_NOTES+=("$n tunnels: FAILED, see $WORK"); }
			stop_leftovers
		done
		;;
	storm)
		for v in $STORM_TLS; do
			storm "$v" || { FAILED=1; STORM_NOTES+=("storm TLS $v: FAILED, see $WORK"); }
			stop_leftovers
		done
		if [ "$STORM_PINNED" = 1 ]; then
			if [ "$NCPU" -ge 2 ]; then
				storm 1.2 pinned || { FAILED=1; STORM_NOTES+=("pinned storm: FAILED, see $WORK"); }
				stop_leftovers
			else
				STORM_NOTES+=("pinned storm skipped: one CPU")
			fi
		fi
		if [ "$STORM_RESUME" = 1 ]; then
			storm 1.2 resume || { FAILED=1; STORM_NOTES+=("resumed storm: FAILED, see $WORK"); }
			stop_leftovers
		fi
		;;
	sessions)
		hold_sessions || { FAILED=1; SESSION_NOTES+=("sessions: FAILED, see $WORK"); }
		stop_leftovers
		;;
	arrival)
		arrival first || { FAILED=1; ARRIVAL_NOTES+=("arrival, first attempt: FAILED, see $WORK"); }
		stop_leftovers
		if [ "$ARRIVAL_RETRY" = 1 ]; then
			arrival retry || { FAILED=1; ARRIVAL_NOTES+=("arrival with retries: FAILED, see $WORK"); }
			stop_leftovers
		fi
		;;
	*) die "--only: unknown phase '$phase' (want tunnels, storm, arrival or sessions)" ;;
	esac
done

{
	echo "## Presence load test ($(date -u +%Y-%m-%dT%H:%MZ), $(calc "sprintf(\"%.0f\", ($(now) - $T_START) / 60)") min$([ "$QUICK" = 1 ] && echo ", --quick"))"
	echo
	machine
	if [ "${#TUNNEL_ROWS[@]}" -gt 0 ]; then
		echo
		echo "### Tunnels held (targets at 19,000: ≤ 15 KB RSS per tunnel, < 3% of a core; MeshCentral MPS: 45 KB, 12%)"
		echo
		echo "| tunnels | held (sims / server sockets) | server fds | RSS at 0 / at N, MiB | **RSS/tunnel, KiB** | peak RSS, MiB | server CPU at 0 tunnels, % of a core | **server CPU holding N, % of a core** | keepalives/s | server CPU µs per keepalive | sims CPU, % | rest of machine, % |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		printf '%s\n' "${TUNNEL_ROWS[@]}"
		echo
		echo "RSS at N is read ${SETTLE} s after the simulators report every device connected; RSS/tunnel = (RSS at N − RSS at 0) / held."
		echo "CPU is utime+stime from /proc/PID/stat over ${IDLE_WINDOW} s of idle holding (keepalives only; ${BASE_WINDOW} s at 0 tunnels), in % of one core."
		echo "µs per keepalive = (CPU holding N − CPU at 0) / keepalives per second. Rest of machine = all CPU time in /proc/stat (softirq of the loopback"
		echo "traffic, other processes) minus server and simulators, in % of one core."
	fi
	if [ "${#STORM_ROWS[@]}" -gt 0 ]; then
		echo
		echo "### Reconnect storm: TLS + APF handshakes (target ≥ 1,500/s)"
		echo
		echo "| TLS | devices (sim procs) | window, s | **handshakes/s** | TCP accepts/s (server netns) | server CPU, % of a core | sims CPU, % | rest of machine, % | server CPU ms / handshake | hs/s if the server had its CPUs alone | handshake p50 / p99, ms | failed in window |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
		printf '%s\n' "${STORM_ROWS[@]}"
		echo
		echo "handshakes/s: completed TLS + APF handshakes (dial to last tcpip-forward reply) summed from the simulators' --report lines over the window,"
		echo "after ${STORM_WARMUP} s of warm-up; TCP accepts/s: the kernel's Tcp PassiveOpens in the namespace. \"If alone\" = CPUs × handshakes per server CPU-second"
		echo "(a projection: it assumes the server scales to every CPU the simulators use now). Latencies are over the whole storm and are mostly queueing (devices / rate)."
	fi
	if [ "${#SESSION_ROWS[@]}" -gt 0 ]; then
		echo
		echo "### Console sessions through the proxy (SOCKS5, one console process, simulated devices' echo port)"
		echo
		echo "| sessions | devices | opened | open all, ms | server RSS before / holding, MiB | **server RSS per session, KiB** | server fds | echoes (512 B, all sessions at once) | server CPU, µs per echo | echo p50 / p99, ms |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		printf '%s\n' "${SESSION_ROWS[@]}"
		echo
		echo "RSS is read 5 s after every session is open; per session = (holding − before) / opened. Each session is a console TCP connection and an APF channel."
		echo "Server CPU per echo: utime+stime from the RSS reading to the end of the echoes (10 s of holding included) / echoes."
	fi
	if [ "${#ARRIVAL_ROWS[@]}" -gt 0 ]; then
		echo
		echo "### Arrival of new devices (as after a network outage; TLS 1.2, no handshake cap in the devices)"
		echo
		echo "| run | devices (sim procs) | offered, devices/s | **came up** | time until all up, s | handshake p50 / p99 / max, ms | **resets** | **dial timeouts** | other failures | server CPU, % of a core | **server CPU ms / handshake** | sims CPU, % | sims CPU ms / handshake | rest of machine, % |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		printf '%s\n' "${ARRIVAL_ROWS[@]}"
		echo
		echo "came up: connected_now summed over the simulators when all were up (or every first attempt was over, or the ${ARRIVAL_WINDOW} s window ended)."
		echo "Time until all up: from each simulator's first device start to its first --report (200 ms) summary with all its devices up, the latest of them."
		echo "Failures are failed attempts by the simulator's reason: resets = \"reset\" (TCP/TLS reset), dial timeouts = \"timeout\" + \"dial\", other = the rest;"
		echo "with --no-retry an attempt is a device, with retries a device may fail several times. Handshake latency: p50 is the handshake-weighted mean"
		echo "of the simulators' p50s, p99 and max the maximum of theirs (exact with one simulator). CPU: utime+stime from the simulators' start to the"
		echo "end of the wait, as % of one core and per completed handshake (failed handshakes cost the server CPU too); the simulators share the machine."
		echo
		echo "| run | server RSS before, MiB | with the devices up, MiB | peak (VmHWM), MiB | 0 s after they left, MiB | ${ARRIVAL_LINGER} s after, MiB | **growth halved after, s** | server sockets / fds ${ARRIVAL_LINGER} s after |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|"
		printf '%s\n' "${ARRIVAL_MEM_ROWS[@]}"
		echo
		echo "RSS with the devices up is read as the wait ends (KiB/device = its growth over before / came up). The simulators are then stopped (the devices"
		echo "close their tunnels) and the server's RSS read every 5 s for ${ARRIVAL_LINGER} s; growth halved after = the first reading at which RSS − before was at"
		echo "most half of (RSS with the devices up − before); \"no\" when none within ${ARRIVAL_LINGER} s."
	fi
	if [ "$((${#TUNNEL_NOTES[@]} + ${#STORM_NOTES[@]} + ${#ARRIVAL_NOTES[@]} + ${#SESSION_NOTES[@]}))" -gt 0 ]; then
		echo
		echo "### Notes"
		echo
		for x in "${TUNNEL_NOTES[@]}" "${STORM_NOTES[@]}" "${ARRIVAL_NOTES[@]}" "${SESSION_NOTES[@]}"; do echo "- $x"; done
	fi
	echo
	echo "### Commands"
	echo
	echo '```'
	for x in "${CMDS[@]}"; do printf '%s\n' "${x#*$'\t'}"; done
	echo '```'
} >"$RESULTS"
cat "$RESULTS"
[ -z "$OUT" ] || cp "$RESULTS" "$OUT"
[ "$FAILED" = 0 ] || exit 1
