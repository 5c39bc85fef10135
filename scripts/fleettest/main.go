// Command fleettest does the JSON arithmetic of scripts/fleet-etcd-test.sh:
// it reads what etcdctl prints (`get -w json`, `watch -w json --prev-kv`),
// what `presence devices --format json` prints, and the summaries of
// `presence simulate`, and checks or measures them. The shell script runs
// the processes and keeps the time; this keeps it free of jq and base64.
//
//	fleettest watch PREFIX LOG            etcdctl watch -w json --prev-kv on stdin: one line per event appended to LOG
//	fleettest whole PREFIX GET ID=DEVICES...
//	                                      etcd (GET: etcdctl get --prefix -w json) holds exactly the live devices (each
//	                                      instance's own rows in its DEVICES list) with the right owner, each on its
//	                                      owner's current lease (the lease of its instance key); keys naming another host
//	                                      name than the device's are counted (wrong_host) but do not make it not whole
//	fleettest owners PREFIX GET           device keys per owner, and the instance keys
//	fleettest listed DEVICES [--hosts-apart] SEED FIRST:N=ID...
//	                                      every simulated device of each range (by GUID) is listed with that instance and
//	                                      its host name (ID "-": not listed)
//	fleettest released LOG T0 ID          what became of ID's device keys after T0 (unix seconds): deleted or taken over, when
//	fleettest late LOG T0 NEWID HOST-PREFIX  keys of those hosts taken by NEWID after T0 are never deleted or taken back after
//	fleettest txns LOG REV1 REV2 SECONDS HOST-PREFIX
//	                                      puts and deletes of those hosts' keys in revisions REV1+1..REV2, per second of the
//	                                      SECONDS they took, and the write transactions (revisions) they came in
//	fleettest snap FILE...                the last --report summary of each simulator: file handshakes elapsed connected
//	fleettest rate SNAP1 SNAP2            handshakes per second between two snaps (summed over simulators)
//	fleettest sum FIELD FILE...           a numeric field of each simulator's last summary, summed
//	fleettest fleet FILE                  `presence fleet status --format json`: id, etcd state, peer links up
//	fleettest moved FILE HOST-PREFIX      `presence history --format json`: tunnels of those hosts closed with reason moved
//	fleettest guid SEED I...              "I GUID" for simulated devices (presence simulate --seed SEED, index I)
//	fleettest agree PREFIX GET HOST-PREFIX DEVICES...
//	                                      each device key of those hosts is listed once in every DEVICES list, with its owner
//
// Output is KEY=VALUE words, for the script to print and test.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	need := func(n int) {
		if len(args) < n {
			usage()
		}
	}
	var err error
	switch os.Args[1] {
	case "watch":
		need(2)
		err = watch(args[0], args[1], os.Stdin)
	case "whole":
		need(3)
		err = whole(args[0], args[1], args[2:])
	case "owners":
		need(2)
		err = owners(args[0], args[1])
	case "listed":
		need(3)
		err = listed(args[0], args[1:])
	case "released":
		need(3)
		err = released(args[0], args[1], args[2])
	case "late":
		need(4)
		err = late(args[0], args[1], args[2], args[3])
	case "txns":
		need(5)
		err = txns(args[0], args[1], args[2], args[3], args[4])
	case "snap":
		need(1)
		err = snap(args)
	case "rate":
		need(2)
		err = rate(args[0], args[1])
	case "sum":
		need(2)
		err = sum(args[0], args[1:])
	case "fleet":
		need(1)
		err = fleetStatus(args[0])
	case "moved":
		need(2)
		err = moved(args[0], args[1])
	case "guid":
		need(2)
		err = guids(args[0], args[1:])
	case "agree":
		need(4)
		err = agree(args[0], args[1], args[2], args[3:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleettest:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: fleettest watch|whole|owners|listed|released|late|txns|snap|rate|sum|fleet|moved|guid|agree ... (see the source)")
	os.Exit(2)
}

// --- etcd ------------------------------------------------------------------

// kv is a key-value pair as etcdctl's JSON prints it: key and value in
// base64 (encoding/json decodes []byte from base64).
type kv struct {
	Key         []byte `json:"key"`
	Value       []byte `json:"value"`
	ModRevision int64  `json:"mod_revision"`
	Lease       int64  `json:"lease"`
}

// owner is the part of a device key's value the checks use.
type owner struct {
	GUID     string `json:"guid"`
	Host     string `json:"host"`
	Instance string `json:"instance"`
}

// key is a parsed key under the prefix: a device (GUID) or an instance.
type key struct {
	device bool
	name   string
}

func parseKey(prefix string, k []byte) (key, bool) {
	s, ok := strings.CutPrefix(string(k), prefix+"v1/")
	if !ok {
		return key{}, false
	}
	if g, ok := strings.CutPrefix(s, "devices/"); ok {
		return key{true, g}, true
	}
	if id, ok := strings.CutPrefix(s, "instances/"); ok {
		return key{false, id}, true
	}
	return key{}, false
}

// table is what etcd holds under the prefix.
type table struct {
	devices   map[string]devKey
	instances map[string]int64 // id -> lease
}

type devKey struct {
	o     owner
	lease int64
}

func readGet(prefix, file string) (table, error) {
	t := table{devices: map[string]devKey{}, instances: map[string]int64{}}
	b, err := os.ReadFile(file)
	if err != nil {
		return t, err
	}
	var resp struct {
		Kvs []kv `json:"kvs"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return t, fmt.Errorf("%s: %v", file, err)
	}
	for _, e := range resp.Kvs {
		k, ok := parseKey(prefix, e.Key)
		if !ok {
			continue
		}
		if !k.device {
			t.instances[k.name] = e.Lease
			continue
		}
		var o owner
		if err := json.Unmarshal(e.Value, &o); err != nil {
			return t, fmt.Errorf("%s: key %s: %v", file, e.Key, err)
		}
		t.devices[k.name] = devKey{o, e.Lease}
	}
	return t, nil
}

func owners(prefix, file string) error {
	t, err := readGet(prefix, file)
	if err != nil {
		return err
	}
	n := map[string]int{}
	for _, d := range t.devices {
		n[d.o.Instance]++
	}
	fmt.Printf("keys=%d", len(t.devices))
	for _, id := range slices.Sorted(maps.Keys(n)) {
		fmt.Printf(" %s=%d", id, n[id])
	}
	fmt.Printf(" instances=%s\n", strings.Join(slices.Sorted(maps.Keys(t.instances)), ","))
	return nil
}

// device is a row of `presence devices --format json`.
type device struct {
	UUID     string `json:"uuid"`
	Instance string `json:"instance"`
	Hostname string `json:"hostname"`
}

func readDevices(file string) ([]device, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var ds []device
	if err := json.Unmarshal(b, &ds); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return ds, nil
}

// whole checks that etcd holds exactly the live devices: every device an
// instance lists as its own has a key naming that instance, on the lease
// of that instance's key; no other device key exists; no device is live
// on two instances.
func whole(prefix, getFile string, lives []string) error {
	t, err := readGet(prefix, getFile)
	if err != nil {
		return err
	}
	live := map[string]string{} // guid -> instance
	var problems []string
	note := func(format string, a ...any) {
		if len(problems) < 5 {
			problems = append(problems, fmt.Sprintf(format, a...))
		}
	}
	var twice, missing, wrong, badLease, stale, noMember, hostMismatch int
	for _, l := range lives {
		id, file, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("%q: want ID=DEVICES.json", l)
		}
		ds, err := readDevices(file)
		if err != nil {
			return err
		}
		lease, member := t.instances[id]
		if !member {
			noMember++
			note("no instance key for %s", id)
		}
		for _, d := range ds {
			if d.Instance != id {
				continue // a peer's row
			}
			if other, ok := live[d.UUID]; ok {
				twice++
				note("%s live on %s and %s", d.UUID, other, id)
				continue
			}
			live[d.UUID] = id
			k, ok := t.devices[d.UUID]
			switch {
			case !ok:
				missing++
				note("%s (%s, live on %s): no key", d.UUID, d.Hostname, id)
			case k.o.Instance != id:
				wrong++
				note("%s (%s, live on %s): key names %s", d.UUID, d.Hostname, id, k.o.Instance)
			case member && k.lease != lease:
				badLease++
				note("%s (%s): on lease %x, %s's is %x", d.UUID, d.Hostname, k.lease, id, lease)
			case k.o.Host != d.Hostname:
				// Owner and lease are right: whole, but etcd cannot
				// find the device by its host name.
				hostMismatch++
				note("%s (%s, live on %s): key names host %q", d.UUID, d.Hostname, id, k.o.Host)
			}
		}
	}
	for g, k := range t.devices {
		if _, ok := live[g]; !ok {
			stale++
			note("%s (%s): key names %s but no instance holds it", g, k.o.Host, k.o.Instance)
		}
	}
	ok := twice+missing+wrong+badLease+stale+noMember == 0
	fmt.Printf("whole=%t live=%d keys=%d missing=%d wrong_owner=%d wrong_lease=%d stale=%d live_twice=%d no_instance_key=%d wrong_host=%d\n",
		ok, len(live), len(t.devices), missing, wrong, badLease, stale, twice, noMember, hostMismatch)
	for _, p := range problems {
		fmt.Println("  e.g.", p)
	}
	if !ok {
		os.Exit(1)
	}
	return nil
}

// listed checks a device list against ranges of simulator indexes of one
// seed: every device FIRST..FIRST+N-1 (its GUID, from the seed as
// `presence simulate` derives it) is listed once, with instance ID (ID "-":
// not listed at all). Devices listed with the right instance but not under
// their host name sim-%06d are counted apart (wrong_host): a console on
// another instance cannot reach them by name. It exits 1 on any problem;
// with --hosts-apart, not on wrong_host alone.
func listed(file string, args []string) error {
	hostsApart := false
	if len(args) > 0 && args[0] == "--hosts-apart" {
		hostsApart, args = true, args[1:]
	}
	if len(args) < 2 {
		usage()
	}
	seed, ranges := args[0], args[1:]
	ds, err := readDevices(file)
	if err != nil {
		return err
	}
	type want struct {
		id   string
		host string
	}
	wants := map[string]want{} // guid -> instance, host
	expected := 0
	for _, r := range ranges {
		span, id, ok := strings.Cut(r, "=")
		a, b, ok2 := strings.Cut(span, ":")
		first, err1 := strconv.Atoi(a)
		n, err2 := strconv.Atoi(b)
		if !ok || !ok2 || err1 != nil || err2 != nil {
			return fmt.Errorf("%q: want FIRST:N=ID", r)
		}
		for i := first; i < first+n; i++ {
			wants[amtsim.DeviceUUID(seed, i).String()] = want{id, amtsim.DeviceHostname(i)}
		}
		if id != "-" {
			expected += n
		}
	}
	seen := map[string]int{}
	var right, wrong, dup, other, absentListed, wrongHost int
	var eg []string
	example := func(format string, a ...any) {
		if len(eg) < 3 {
			eg = append(eg, fmt.Sprintf(format, a...))
		}
	}
	for _, d := range ds {
		w, ok := wants[d.UUID]
		if !ok {
			other++
			continue
		}
		if w.id == "-" {
			absentListed++
			example("%s (%s) listed on %q, want it absent", w.host, d.UUID, d.Instance)
			continue
		}
		seen[d.UUID]++
		switch {
		case seen[d.UUID] > 1:
			dup++
		case d.Instance != w.id:
			wrong++
			example("%s (%s) on %q, want %s", w.host, d.UUID, d.Instance, w.id)
		case d.Hostname != w.host:
			wrongHost++
			example("%s (%s) on %s listed with host name %q", w.host, d.UUID, d.Instance, d.Hostname)
		default:
			right++
		}
	}
	missing := expected - len(seen)
	fmt.Printf("listed=%d expected=%d right=%d wrong_instance=%d wrong_host=%d missing=%d duplicates=%d listed_but_gone=%d others=%d\n",
		len(ds), expected, right, wrong, wrongHost, missing, dup, absentListed, other)
	for _, e := range eg {
		fmt.Println("  e.g.", e)
	}
	bad := missing + wrong + dup + absentListed
	if !hostsApart {
		bad += wrongHost
	}
	if bad > 0 {
		os.Exit(1)
	}
	return nil
}

// --- the watch log ---------------------------------------------------------

// A log line: ts_ns rev P|D d|i name owner lease prev_owner host
// (owner, prev_owner and host are "-" when empty).

// watch turns etcdctl's watch responses into log lines, stamped with the
// time each response was read.
func watch(prefix, logFile string, in io.Reader) error {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	type event struct {
		Type   int `json:"type"` // 0 put, 1 delete
		KV     kv  `json:"kv"`
		PrevKV *kv `json:"prev_kv"`
	}
	for sc.Scan() {
		now := time.Now().UnixNano()
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var resp struct {
			Events []event `json:"Events"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			fmt.Fprintln(os.Stderr, "fleettest watch: skipping a line:", err)
			continue
		}
		for _, e := range resp.Events {
			k, ok := parseKey(prefix, e.KV.Key)
			if !ok {
				continue
			}
			typ, kind := "P", "d"
			if e.Type == 1 {
				typ = "D"
			}
			if !k.device {
				kind = "i"
			}
			cur, prev, host := "-", "-", "-"
			if k.device {
				var o owner
				if e.Type == 0 && json.Unmarshal(e.KV.Value, &o) == nil {
					cur, host = dash(o.Instance), dash(o.Host)
				}
				if e.PrevKV != nil {
					var p owner
					if json.Unmarshal(e.PrevKV.Value, &p) == nil {
						prev = dash(p.Instance)
						if host == "-" {
							host = dash(p.Host)
						}
					}
				}
			} else if e.Type == 0 {
				cur = k.name
			}
			fmt.Fprintf(w, "%d %d %s %s %s %s %d %s %s\n", now, e.KV.ModRevision, typ, kind, k.name, cur, e.KV.Lease, prev, host)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return sc.Err()
}

func dash(s string) string {
	if s == "" || strings.ContainsAny(s, " \n") {
		return "-"
	}
	return s
}

type logEvent struct {
	ts     int64
	rev    int64
	del    bool
	device bool
	name   string
	owner  string
	lease  int64
	prev   string
	host   string
}

func readLog(file string) ([]logEvent, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []logEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 9 {
			continue // a line cut short by a kill
		}
		ts, err1 := strconv.ParseInt(fs[0], 10, 64)
		rev, err2 := strconv.ParseInt(fs[1], 10, 64)
		lease, err3 := strconv.ParseInt(fs[6], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			continue
		}
		out = append(out, logEvent{ts: ts, rev: rev, del: fs[2] == "D", device: fs[3] == "d", name: fs[4],
			owner: fs[5], lease: lease, prev: fs[7], host: fs[8]})
	}
	return out, sc.Err()
}

// unixNS parses unix seconds with a fraction (bash's EPOCHREALTIME).
func unixNS(s string) (int64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q: want unix seconds", s)
	}
	sec, frac := math.Modf(f)
	return int64(sec)*1e9 + int64(math.Round(frac*1e9)), nil
}

func secs(ns int64) string { return strconv.FormatFloat(float64(ns)/1e9, 'f', 2, 64) }

// released follows the device keys id held at t0: when each was deleted
// (its lease expired) or taken over by another instance, and when id's
// instance key went.
func released(logFile, t0s, id string) error {
	t0, err := unixNS(t0s)
	if err != nil {
		return err
	}
	evs, err := readLog(logFile)
	if err != nil {
		return err
	}
	held := map[string]bool{}
	i := 0
	for ; i < len(evs) && evs[i].ts <= t0; i++ {
		e := evs[i]
		if e.device {
			held[e.name] = !e.del && e.owner == id
		}
	}
	at0 := 0
	for _, h := range held {
		if h {
			at0++
		}
	}
	var deleted, taken int
	var lastGone, lastDel, lastTake, member int64 = -1, -1, -1, -1
	for ; i < len(evs); i++ {
		e := evs[i]
		if !e.device {
			if e.name == id && e.del && member < 0 {
				member = e.ts - t0
			}
			continue
		}
		if !held[e.name] {
			continue
		}
		switch {
		case e.del:
			deleted++
			lastDel = e.ts - t0
		case e.owner != id:
			taken++
			lastTake = e.ts - t0
		default:
			continue // rewritten by id itself
		}
		held[e.name] = false
		lastGone = max(lastGone, e.ts-t0)
	}
	remaining := 0
	for _, h := range held {
		if h {
			remaining++
		}
	}
	f := func(ns int64) string {
		if ns < 0 {
			return "-"
		}
		return secs(ns)
	}
	fmt.Printf("keys_at_kill=%d deleted=%d taken_over=%d remaining=%d last_gone_s=%s last_deleted_s=%s last_taken_s=%s instance_key_gone_s=%s\n",
		at0, deleted, taken, remaining, f(lastGone), f(lastDel), f(lastTake), f(member))
	return nil
}

// late checks the keys of hosts starting with hostPrefix that newID took
// after t0: once newID holds a key, it is never deleted nor written by
// another instance afterwards (a late release or a stale claim of the old
// owner would show here).
func late(logFile, t0s, newID, hostPrefix string) error {
	t0, err := unixNS(t0s)
	if err != nil {
		return err
	}
	evs, err := readLog(logFile)
	if err != nil {
		return err
	}
	takenBy := map[string]bool{}
	var takeovers, deletedAfter, otherAfter, reclaims int
	for _, e := range evs {
		if e.ts <= t0 || !e.device || !strings.HasPrefix(e.host, hostPrefix) {
			continue
		}
		switch {
		case !e.del && e.owner == newID:
			if !takenBy[e.name] {
				takenBy[e.name] = true
				if e.prev != "-" && e.prev != newID {
					takeovers++
				}
			} else {
				reclaims++
			}
		case takenBy[e.name] && e.del:
			deletedAfter++
		case takenBy[e.name]:
			otherAfter++
		}
	}
	ok := deletedAfter+otherAfter == 0
	fmt.Printf("late_ok=%t keys_of_%s=%d taken_over_from_another=%d deleted_after=%d written_by_another_after=%d rewritten_by_owner=%d\n",
		ok, newID, len(takenBy), takeovers, deletedAfter, otherAfter, reclaims)
	if !ok {
		os.Exit(1)
	}
	return nil
}

// txns counts writes of the keys of hosts starting with hostPrefix in the
// revisions after rev1 up to rev2, and the transactions (distinct
// revisions) they came in: a Txn is one revision. Counting by revision, not
// by arrival time, lets the watch be away while they happen (it replays
// them afterwards).
func txns(logFile, rev1s, rev2s, secs, hostPrefix string) error {
	rev1, err1 := strconv.ParseInt(rev1s, 10, 64)
	rev2, err2 := strconv.ParseInt(rev2s, 10, 64)
	d, err3 := strconv.ParseFloat(secs, 64)
	if err := errors.Join(err1, err2, err3); err != nil || d <= 0 {
		return fmt.Errorf("want REV1 REV2 SECONDS, not %s %s %s", rev1s, rev2s, secs)
	}
	evs, err := readLog(logFile)
	if err != nil {
		return err
	}
	puts, dels := 0, 0
	putRevs, delRevs, revs := map[int64]bool{}, map[int64]bool{}, map[int64]bool{}
	for _, e := range evs {
		if e.rev <= rev1 || e.rev > rev2 || !e.device || !strings.HasPrefix(e.host, hostPrefix) {
			continue
		}
		revs[e.rev] = true
		if e.del {
			dels++
			delRevs[e.rev] = true
		} else {
			puts++
			putRevs[e.rev] = true
		}
	}
	fmt.Printf("window_s=%.1f claims=%d claim_txns=%d claim_txns_per_s=%.1f claims_per_s=%.0f releases=%d release_txns=%d write_txns_per_s=%.1f claims_per_txn=%.1f\n",
		d, puts, len(putRevs), float64(len(putRevs))/d, float64(puts)/d, dels, len(delRevs), float64(len(revs))/d,
		float64(puts)/math.Max(1, float64(len(putRevs))))
	return nil
}

// --- simulators ------------------------------------------------------------

// lastSummary returns the last complete JSON object line of a simulator's
// output (its --report lines; the final summary is indented over many
// lines, and read whole when the file is nothing else).
func lastSummary(file string) (map[string]any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := bytes.Split(b, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		l := bytes.TrimSpace(lines[i])
		if len(l) > 0 && l[0] == '{' && l[len(l)-1] == '}' {
			var m map[string]any
			if json.Unmarshal(l, &m) == nil {
				return m, nil
			}
		}
	}
	var m map[string]any
	if start := bytes.IndexByte(b, '{'); start >= 0 && json.Unmarshal(b[start:], &m) == nil {
		return m, nil
	}
	return nil, fmt.Errorf("%s: no summary yet", file)
}

func num(m map[string]any, field string) float64 {
	f, _ := m[field].(float64)
	return f
}

func snap(files []string) error {
	for _, f := range files {
		m, err := lastSummary(f)
		if err != nil {
			return err
		}
		fmt.Printf("%s %.0f %.3f %.0f\n", f, num(m, "handshakes"), num(m, "elapsed_sec"), num(m, "connected_now"))
	}
	return nil
}

func readSnap(file string) (map[string][2]float64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	out := map[string][2]float64{}
	for l := range strings.Lines(string(b)) {
		fs := strings.Fields(l)
		if len(fs) != 4 {
			continue
		}
		h, err1 := strconv.ParseFloat(fs[1], 64)
		e, err2 := strconv.ParseFloat(fs[2], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out[fs[0]] = [2]float64{h, e}
	}
	return out, nil
}

func rate(a, b string) error {
	s1, err := readSnap(a)
	if err != nil {
		return err
	}
	s2, err := readSnap(b)
	if err != nil {
		return err
	}
	var total, hs, window float64
	for f, x := range s1 {
		y, ok := s2[f]
		if !ok || y[1] <= x[1] {
			return fmt.Errorf("%s: no later report in %s", f, b)
		}
		total += (y[0] - x[0]) / (y[1] - x[1])
		hs += y[0] - x[0]
		window = max(window, y[1]-x[1])
	}
	fmt.Printf("handshakes_per_s=%.0f handshakes=%.0f window_s=%.1f\n", total, hs, window)
	return nil
}

func sum(field string, files []string) error {
	var t float64
	for _, f := range files {
		m, err := lastSummary(f)
		if err != nil {
			return err
		}
		t += num(m, field)
	}
	fmt.Printf("%.0f\n", t)
	return nil
}

// --- the instances' API ------------------------------------------------------

func fleetStatus(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var info struct {
		Self struct {
			ID string `json:"id"`
		} `json:"self"`
		Peers []struct {
			Up bool `json:"up"`
		} `json:"peers"`
		Etcd *struct {
			Connected bool   `json:"connected"`
			Error     string `json:"error"`
		} `json:"etcd"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	etcd := "off"
	if info.Etcd != nil {
		etcd = "unreachable"
		if info.Etcd.Connected {
			etcd = "connected"
		}
	}
	up := 0
	for _, p := range info.Peers {
		if p.Up {
			up++
		}
	}
	fmt.Printf("id=%s etcd=%s peers_up=%d peers=%d\n", info.Self.ID, etcd, up, len(info.Peers))
	return nil
}

func moved(file, hostPrefix string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var evs []struct {
		Kind     string `json:"kind"`
		Reason   string `json:"reason"`
		Hostname string `json:"hostname"`
	}
	if err := json.Unmarshal(b, &evs); err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	n, downs := 0, 0
	for _, e := range evs {
		if e.Kind != "down" || !strings.HasPrefix(e.Hostname, hostPrefix) {
			continue
		}
		downs++
		if e.Reason == "moved" {
			n++
		}
	}
	fmt.Printf("moved=%d downs=%d\n", n, downs)
	return nil
}

// agree checks the device keys of hosts starting with hostPrefix against
// device lists: each is listed exactly once in every list, with the
// instance etcd names.
func agree(prefix, getFile, hostPrefix string, lists []string) error {
	t, err := readGet(prefix, getFile)
	if err != nil {
		return err
	}
	keys := map[string]string{}
	for g, k := range t.devices {
		if strings.HasPrefix(k.o.Host, hostPrefix) {
			keys[g] = k.o.Instance
		}
	}
	var wrong, missing, dup, extra int
	for _, l := range lists {
		ds, err := readDevices(l)
		if err != nil {
			return err
		}
		seen := map[string]int{}
		for _, d := range ds {
			if !strings.HasPrefix(d.Hostname, hostPrefix) {
				continue
			}
			seen[d.UUID]++
			switch owner, ok := keys[d.UUID]; {
			case !ok:
				extra++
			case seen[d.UUID] > 1:
				dup++
			case owner != d.Instance:
				wrong++
			}
		}
		for g := range keys {
			if seen[g] == 0 {
				missing++
			}
		}
	}
	ok := wrong+missing+dup+extra == 0
	fmt.Printf("agree=%t keys=%d lists=%d wrong_instance=%d missing=%d listed_twice=%d without_key=%d\n",
		ok, len(keys), len(lists), wrong, missing, dup, extra)
	if !ok {
		os.Exit(1)
	}
	return nil
}

func guids(seed string, idx []string) error {
	for _, a := range idx {
		i, err := strconv.Atoi(a)
		if err != nil || i < 0 {
			return fmt.Errorf("%q: want a device index", a)
		}
		fmt.Println(i, amtsim.DeviceUUID(seed, i))
	}
	return nil
}
