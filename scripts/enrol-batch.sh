#!/bin/sh
# The enrolment load run: N (default 200) unconfigured simulated devices on
# loopback enrolled in one batch by the installed program (presence enrol
# --file), then the same batch again (through the tunnels: harmless).
# Run it inside a private network namespace, as root:
#   unshare -n sh -c 'ip link set lo up && scripts/enrol-batch.sh 200'
# PRESENCE names the program (default: presence on PATH). Fails unless every
# device is enrolled and connected.
set -eu
N=${1:-200}
P=${PRESENCE:-presence}
D=$(mktemp -d)
trap 'kill $SIM $SP 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$D"' EXIT
export LANG=C
$P cert init --cn 127.0.0.1 --data-dir "$D/data" >/dev/null
$P serve --data-dir "$D/data" --cira-addr 127.0.0.1:4433 --proxy-addr 127.0.0.1:0 --api-addr 127.0.0.1:0 --mdns=false 2>"$D/serve.log" &
SP=$!
printf 'Lan-Amt-P@ss1\n' | $P simulate --lan 127.0.0.1 --devices "$N" --addresses "$D/addrs.txt" --duration 600s >"$D/sim.json" 2>"$D/sim.log" &
SIM=$!
for _ in $(seq 200); do
	[ -s "$D/addrs.txt" ] && grep -q "serving" "$D/serve.log" && break
	sleep 0.1
done
for pass in first re-run; do
	S=$(date +%s.%N)
	printf 'Lan-Amt-P@ss1\n' | $P enrol --data-dir "$D/data" --file "$D/addrs.txt" >"$D/enrol.out" || { tail -5 "$D/enrol.out"; exit 1; }
	E=$(date +%s.%N)
	grep -q "^$N of $N devices done" "$D/enrol.out" || { tail -5 "$D/enrol.out"; exit 1; }
	[ "$(grep -c 'tunnel up' "$D/enrol.out")" -eq "$N" ] || { echo "not every tunnel came up"; exit 1; }
	echo "enrol --file, $pass pass: $N devices, tunnels up, in $(echo "$E - $S" | bc) s (target 60 s)"
done
