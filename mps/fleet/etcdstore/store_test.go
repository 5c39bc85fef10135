package etcdstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/fleet/etcdtest"
)

// node is a Store under test, with its callbacks turned into channels.
type node struct {
	*Store
	id      string
	changed chan struct{}
	moved   chan movedEvent
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func openNode(t testing.TB, ep, id string, edit func(*Config)) *node {
	t.Helper()
	n := &node{id: id, changed: make(chan struct{}, 1), moved: make(chan movedEvent, 1024), logs: &syncBuffer{}}
	cfg := Config{
		Endpoints: []string{ep},
		Prefix:    "/test/",
		Self:      fleet.Member{ID: id, Name: id + ".example", PeerAddr: "127.0.0.1:16991"},
		TTL:       2 * time.Second,
		Logger:    slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Moved: func(mine, newer fleet.Owner) {
			select {
			case n.moved <- movedEvent{mine, newer}:
			default:
				t.Errorf("%s: moved channel full", id)
			}
		},
		Changed: func() {
			select {
			case n.changed <- struct{}{}:
			default:
			}
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	n.Store = s
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Logf("%s: Close: %v", id, err)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", id, n.logs.String())
		}
	})
	return n
}

// waitFor waits until cond holds, woken by the node's Changed callbacks
// (and a slow tick, for conditions no callback announces), and fails the
// test after timeout. It returns how long it waited.
func (n *node) waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-n.changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: %s: not within %v", n.id, what, timeout)
		}
	}
	return time.Since(start)
}

func (n *node) connected() bool {
	ok, _, _ := n.Status()
	return ok
}

// idle reports whether the node's worker has nothing left to do.
func (n *node) idle() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lease != clientv3.NoLease && len(n.order) == 0 && !n.overflow && n.memberGen == n.gen && len(n.oldLeases) == 0
}

func (n *node) holds(guid string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.held[guid] != nil
}

// rawClient is a plain etcd client, to look behind the stores' backs.
func rawClient(t testing.TB, ep string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func stored(t testing.TB, cli *clientv3.Client, guid string) (fleet.Owner, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/test/v1/devices/"+guid)
	if err != nil {
		t.Fatalf("get %s: %v", guid, err)
	}
	if len(resp.Kvs) == 0 {
		return fleet.Owner{}, false
	}
	o, err := decodeOwner(guid, resp.Kvs[0].Value)
	if err != nil {
		t.Fatalf("stored %s: %v", guid, err)
	}
	return o, true
}

func guid(i int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", i) }

var t0 = time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)

func owner(inst string, i int, since time.Duration) fleet.Owner {
	return fleet.Owner{GUID: guid(i), Host: fmt.Sprintf("amt-%d.example", i), Instance: inst, Conn: uint64(i + 1), Since: t0.Add(since)}
}

// noStoreGoroutines fails if a goroutine of this package is still running
// a second after Close. It looks again for that second because Close's
// wg.Wait returns as soon as the deferred wg.Done runs, and the goroutine
// may still be on its way out (seen at watch's closing brace in a race
// run); one that never ends is still reported.
func noStoreGoroutines(t testing.TB) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		left = left[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "etcdstore.(*Store)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, g := range left {
		t.Errorf("goroutine left after Close:\n%s", g)
	}
}

// TestTable claims, looks up and releases devices between two instances,
// and checks that malformed values are ignored and taken over.
func TestTable(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openNode(t, srv.Endpoint(), "a", nil)
	b := openNode(t, srv.Endpoint(), "b", nil)
	raw := rawClient(t, srv.Endpoint())

	for i := range 3 {
		a.Claim(owner("", i, 0)) // Instance "" means a
	}
	b.waitFor(t, "a's devices and both members", 10*time.Second, func() bool {
		return b.Devices() == 3 && len(b.Members()) == 2
	})
	if got, ok := b.Lookup(strings.ToUpper(guid(1))); !ok || got.Instance != "a" || !got.Same(owner("a", 1, 0)) {
		t.Errorf("b.Lookup(%s) = %+v, %v; want a's", guid(1), got, ok)
	}
	if got, ok := b.LookupHost("AMT-2.example"); !ok || got.GUID != guid(2) {
		t.Errorf("b.LookupHost(AMT-2.example) = %+v, %v; want %s", got, ok, guid(2))
	}
	if ms := b.Members(); ms[0].ID != "a" || ms[1].ID != "b" || ms[0].Name != "a.example" {
		t.Errorf("b.Members() = %+v; want a, b", ms)
	}
	a.waitFor(t, "connected", 10*time.Second, a.connected)
	b.waitFor(t, "connected", 10*time.Second, b.connected)

	// A device that reconnects to a: the old connection's release comes
	// after the new claim and changes nothing.
	re := owner("a", 2, time.Minute)
	re.Conn = 100
	a.Claim(re)
	a.Release(owner("a", 2, 0))
	b.waitFor(t, "device 2's new connection", 10*time.Second, func() bool {
		o, ok := b.Lookup(guid(2))
		return ok && o.Same(re)
	})
	if o, ok := stored(t, raw, guid(2)); !ok || !o.Same(re) {
		t.Errorf("etcd holds %+v, %v for the reconnected device; want %+v", o, ok, re)
	}

	// Our member key deleted behind our back is written again.
	if _, err := raw.Delete(t.Context(), "/test/v1/instances/a"); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "a's member key back", 10*time.Second, func() bool {
		ms := b.Members()
		return len(ms) == 2 && ms[0].ID == "a"
	})

	a.Release(owner("a", 1, 0))
	b.waitFor(t, "release of device 1", 10*time.Second, func() bool {
		_, ok := b.Lookup(guid(1))
		return !ok
	})
	if _, ok := b.LookupHost("amt-1.example"); ok {
		t.Errorf("b.LookupHost(amt-1.example) found a released device")
	}

	// Hostile values: too large, not JSON, naming another GUID. Each is
	// ignored, and a claim takes its key over.
	ctx := t.Context()
	bad := map[int]string{
		10: strings.Repeat("x", maxValue+1),
		11: "{not json",
		12: fmt.Sprintf(`{"guid":%q,"instance":"evil","conn":1,"since":"2026-12-02T08:00:00Z"}`, guid(99)),
		13: `{"guid":"` + guid(13) + `","instance":"e\u0000vil","conn":1}`,
	}
	for i, v := range bad {
		if _, err := raw.Put(ctx, "/test/v1/devices/"+guid(i), v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.Put(ctx, "/test/v1/instances/evil", `{"id":"someone-else"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Put(ctx, "/test/v1/devices/"+guid(14), `{"guid":"`+guid(14)+`","instance":"c","conn":1}`); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, "the valid raw device", 10*time.Second, func() bool {
		_, ok := b.Lookup(guid(14))
		return ok
	})
	for i := range bad {
		if o, ok := b.Lookup(guid(i)); ok {
			t.Errorf("b.Lookup(%s) = %+v for a malformed value; want none", guid(i), o)
		}
	}
	if len(b.Members()) != 2 {
		t.Errorf("b.Members() = %+v; want the malformed member ignored", b.Members())
	}
	for i := range bad {
		b.Claim(owner("b", i, 0))
	}
	a.waitFor(t, "b's takeover of the malformed keys", 10*time.Second, func() bool {
		for i := range bad {
			if o, ok := a.Lookup(guid(i)); !ok || o.Instance != "b" {
				return false
			}
		}
		return true
	})
	if !strings.Contains(b.logs.String(), "malformed value") {
		t.Errorf("b logged no malformed value")
	}

	// Close revokes: a's keys are gone when it returns.
	if err := a.Close(); err != nil {
		t.Errorf("a.Close: %v", err)
	}
	for _, g := range []string{guid(0), guid(2)} {
		if o, ok := stored(t, raw, g); ok {
			t.Errorf("etcd holds %+v after a's Close; want it gone", o)
		}
	}
	b.waitFor(t, "a's keys gone from b's table", 10*time.Second, func() bool {
		for i := range 3 {
			if o, ok := b.Lookup(guid(i)); ok && o.Instance == "a" {
				return false
			}
		}
		return len(b.Members()) == 1
	})
	b.Close()
	noStoreGoroutines(t)
}

// TestClaimRace has two instances claim the same devices at once: each
// device ends with exactly one owner, the newer connection, in etcd and in
// both tables, and the older one is told it moved. A late release by the
// older owner deletes nothing.
func TestClaimRace(t *testing.T) {
	srv := etcdtest.Start(t)
	a := openNode(t, srv.Endpoint(), "a", nil)
	b := openNode(t, srv.Endpoint(), "b", nil)
	raw := rawClient(t, srv.Endpoint())
	a.waitFor(t, "connected", 10*time.Second, a.connected)
	b.waitFor(t, "connected", 10*time.Second, b.connected)

	const n = 40
	newer := make(map[string]fleet.Owner, n)
	older := make(map[string]fleet.Owner, n)
	var wg sync.WaitGroup
	for i := range n {
		// Even devices: b's connection is newer; odd: a's. Device 0 ties
		// on Since, and the higher instance id ("b") wins.
		oa, ob := owner("a", i, 0), owner("b", i, time.Millisecond)
		switch {
		case i == 0:
			ob.Since = oa.Since
		case i%2 == 1:
			ob.Since = oa.Since.Add(-time.Millisecond)
		}
		if oa.Newer(ob) {
			newer[oa.GUID], older[oa.GUID] = oa, ob
		} else {
			newer[oa.GUID], older[oa.GUID] = ob, oa
		}
		wg.Go(func() { a.Claim(oa) })
		wg.Go(func() { b.Claim(ob) })
	}
	wg.Wait()

	whole := func(s *node) func() bool {
		return func() bool {
			for g, want := range newer {
				if got, ok := s.Lookup(g); !ok || !got.Same(want) {
					return false
				}
			}
			return true
		}
	}
	a.waitFor(t, "every device on its newer owner", 15*time.Second, whole(a))
	b.waitFor(t, "every device on its newer owner", 15*time.Second, whole(b))
	for g, want := range newer {
		if got, ok := stored(t, raw, g); !ok || !got.Same(want) {
			t.Errorf("etcd holds %+v, %v for %s; want %+v", got, ok, g, want)
		}
	}

	// The older side of each device heard that it moved, exactly once.
	got := map[string]movedEvent{}
	collect := func(s *node) {
		for {
			select {
			case m := <-s.moved:
				if _, dup := got[m.mine.GUID]; dup {
					t.Errorf("%s: second Moved for %s", s.id, m.mine.GUID)
				}
				got[m.mine.GUID] = m
			default:
				return
			}
		}
	}
	a.waitFor(t, "a Moved for every device", 10*time.Second, func() bool { collect(a); collect(b); return len(got) == n })
	for g, m := range got {
		if !m.mine.Same(older[g]) || !m.newer.Same(newer[g]) {
			t.Errorf("Moved(%+v, %+v); want (%+v, %+v)", m.mine, m.newer, older[g], newer[g])
		}
		if s := map[string]*node{"a": a, "b": b}[m.mine.Instance]; s.holds(g) {
			t.Errorf("%s still holds %s after it moved", s.id, g)
		}
	}

	// A late release from each older owner: the newer key stays.
	txns := a.txns.Load() + b.txns.Load()
	for g, o := range older {
		map[string]*node{"a": a, "b": b}[o.Instance].Release(older[g])
	}
	a.waitFor(t, "releases done", 10*time.Second, func() bool {
		return a.idle() && b.idle() && a.txns.Load()+b.txns.Load() > txns
	})
	for g, want := range newer {
		if got, ok := stored(t, raw, g); !ok || !got.Same(want) {
			t.Errorf("after the late release etcd holds %+v, %v for %s; want %+v", got, ok, g, want)
		}
		if got, ok := a.Lookup(g); !ok || !got.Same(want) {
			t.Errorf("after the late release a.Lookup(%s) = %+v, %v; want %+v", g, got, ok, want)
		}
	}

	// And a takeover of a device held for a while: a newer connection on
	// a moves it from b.
	g := guid(0)
	take := owner("a", 0, time.Hour)
	take.Conn = 1000
	a.Claim(take)
	b.waitFor(t, "takeover seen", 10*time.Second, func() bool { o, ok := b.Lookup(g); return ok && o.Same(take) })
	select {
	case m := <-b.moved:
		if !m.mine.Same(newer[g]) || !m.newer.Same(take) {
			t.Errorf("b: Moved(%+v, %+v); want (%+v, %+v)", m.mine, m.newer, newer[g], take)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("b: no Moved for %s", g)
	}
	b.Release(newer[g]) // b closes its tunnel: a's key stays
	b.waitFor(t, "b idle", 10*time.Second, b.idle)
	if got, ok := stored(t, raw, g); !ok || !got.Same(take) {
		t.Errorf("after b's release etcd holds %+v, %v; want %+v", got, ok, take)
	}
}

// TestCrash stops an instance as kill -9 would (no revoke): its keys go
// with its lease within TTL + 1 s, and the other instance's table drops
// them.
func TestCrash(t *testing.T) {
	srv := etcdtest.Start(t)
	const ttl = 3 * time.Second
	a := openNode(t, srv.Endpoint(), "a", func(c *Config) { c.TTL = ttl })
	b := openNode(t, srv.Endpoint(), "b", func(c *Config) { c.TTL = ttl })
	const n = 200
	for i := range n {
		a.Claim(owner("a", i, 0))
	}
	b.Claim(owner("b", n, 0))
	b.waitFor(t, "a's devices", 15*time.Second, func() bool { return b.Devices() == n+1 && len(b.Members()) == 2 })

	start := time.Now()
	a.crashForTest()
	b.waitFor(t, "a's keys gone", ttl+2*time.Second, func() bool {
		return b.Devices() == 1 && len(b.Members()) == 1
	})
	took := time.Since(start)
	t.Logf("a's %d keys gone from b's table %v after the crash (TTL %v)", n, took, ttl)
	if took > ttl+time.Second {
		t.Errorf("a's keys went %v after the crash; want within TTL + 1 s = %v", took, ttl+time.Second)
	}
	if _, ok := b.Lookup(guid(n)); !ok {
		t.Errorf("b lost its own device")
	}
}

// TestEtcdRestart stops etcd for longer than the TTL, so both sessions are
// lost, changes the devices meanwhile, and restarts it: the tables are
// whole again within 15 s, with the changes made during the outage.
func TestEtcdRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	raw := rawClient(t, srv.Endpoint())
	// a's queue is smaller than what it claims during the outage, so
	// the overflow path writes some of them.
	a := openNode(t, srv.Endpoint(), "a", func(c *Config) { c.QueueSize = 8 })
	b := openNode(t, srv.Endpoint(), "b", nil)
	const n = 20
	for i := range n {
		a.Claim(owner("a", i, 0))
		b.Claim(owner("b", n+i, 0))
	}
	all := func(s *node) bool { return s.Devices() == 2*n && len(s.Members()) == 2 }
	a.waitFor(t, "all devices", 15*time.Second, func() bool { return all(a) })
	b.waitFor(t, "all devices", 15*time.Second, func() bool { return all(b) })

	srv.Stop()
	for _, s := range []*node{a, b} {
		s.waitFor(t, "unreachable", 10*time.Second, func() bool { return !s.connected() })
		// Past the TTL the client gives the lease up: the session is lost.
		s.waitFor(t, "session lost", 10*time.Second, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.lease == clientv3.NoLease
		})
		if _, _, err := s.Status(); err == nil {
			t.Errorf("%s: Status has no error while etcd is down", s.id)
		}
		if !strings.Contains(s.logs.String(), "etcd: unreachable") {
			t.Errorf("%s: no log line saying etcd is unreachable", s.id)
		}
	}
	// While etcd is down: the tables still answer, and devices come and go.
	if o, ok := a.Lookup(guid(n)); !ok || o.Instance != "b" {
		t.Errorf("a.Lookup(%s) = %+v, %v while etcd is down; want b's, as last seen", guid(n), o, ok)
	}
	for i := 2 * n; i < 3*n; i++ {
		a.Claim(owner("a", i, 0))
	}
	b.Release(owner("b", n, 0))
	a.Release(owner("a", 0, 0))

	srv.Restart()
	start := time.Now()
	want := map[string]string{}
	for i := 1; i < n; i++ {
		want[guid(i)] = "a"
		want[guid(n+i)] = "b"
	}
	for i := 2 * n; i < 3*n; i++ {
		want[guid(i)] = "a"
	}
	whole := func(s *node) func() bool {
		return func() bool {
			if s.Devices() != len(want) || len(s.Members()) != 2 || !s.connected() {
				return false
			}
			for g, inst := range want {
				if o, ok := s.Lookup(g); !ok || o.Instance != inst {
					return false
				}
			}
			return true
		}
	}
	a.waitFor(t, "whole again", 15*time.Second, whole(a))
	b.waitFor(t, "whole again", 15*time.Second-time.Since(start), whole(b))
	t.Logf("both tables whole %v after etcd's restart", time.Since(start))
	for g, inst := range want {
		if o, ok := stored(t, raw, g); !ok || o.Instance != inst {
			t.Errorf("etcd holds %+v, %v for %s; want %s's", o, ok, g, inst)
		}
	}
	for _, g := range []string{guid(0), guid(n)} {
		if o, ok := stored(t, raw, g); ok {
			t.Errorf("etcd still holds %+v, released during the outage", o)
		}
	}
	if !strings.Contains(a.logs.String(), "etcd: connected") {
		t.Errorf("a: no log line saying etcd is back")
	}
	// The lost sessions' leases are revoked: only the two current ones
	// are left.
	a.waitFor(t, "old leases revoked", 10*time.Second, func() bool { return a.idle() && b.idle() })
	ctx := t.Context()
	leases, err := raw.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 2 {
		t.Errorf("etcd has %d leases after the restart; want 2 (one per instance)", len(leases.Leases))
	}
}

// TestOpenBadConfig checks what Open refuses.
func TestOpenBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Self: fleet.Member{ID: "a"}},
		{Endpoints: []string{"http://127.0.0.1:1"}},
		{Endpoints: []string{"http://127.0.0.1:1"}, Self: fleet.Member{ID: "a/b"}},
		{Endpoints: []string{"http://127.0.0.1:1"}, Self: fleet.Member{ID: "a", Name: "x\n"}},
		{Endpoints: []string{"http://127.0.0.1:1"}, Self: fleet.Member{ID: "a"}, Prefix: "/p\x00/"},
	} {
		if s, err := Open(c); err == nil {
			s.Close()
			t.Errorf("Open(%+v) = nil error; want one", c)
		}
	}
}

// TestUnreachable opens a store on a port where no etcd listens: Claim
// and Release return at once, Status says why, and Close returns.
func TestUnreachable(t *testing.T) {
	n := openNode(t, "http://127.0.0.1:1", "a", nil)
	start := time.Now()
	for i := range 10 {
		n.Claim(owner("a", i, 0))
	}
	n.Release(owner("a", 0, 0))
	if d := time.Since(start); d > time.Second {
		t.Errorf("Claim and Release took %v with etcd unreachable", d)
	}
	n.waitFor(t, "an error in Status", 10*time.Second, func() bool {
		ok, _, err := n.Status()
		return !ok && err != nil
	})
	_, _, err := n.Status()
	t.Logf("Status error: %v", err)
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	noStoreGoroutines(t)
}
