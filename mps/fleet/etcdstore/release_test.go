package etcdstore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/fleet/etcdtest"
)

// TestReleaseBatch releases a full batch of which a few keys are no longer
// ours: one holds a newer claim of another instance, one was never
// written (a claim released before it committed, common in a reconnect
// storm), one stale key changed since it was read. Every key that still
// matches goes, the others stay, and the batch costs a few Txns, not one
// per key: the worker is single-threaded, and in scripts/fleet-etcd-test.sh's
// storm the per-key fallback held claims back for seconds.
func TestReleaseBatch(t *testing.T) {
	srv := etcdtest.Start(t)
	raw := rawClient(t, srv.Endpoint())
	a := openNode(t, srv.Endpoint(), "a", nil)
	a.waitFor(t, "connected and idle", 10*time.Second, func() bool { return a.connected() && a.idle() })
	ctx := t.Context()

	// Keys of instance "x": a's reconcile leaves them alone, so the only
	// Txns a makes are the ones under test.
	put := func(i int, o any) int64 {
		t.Helper()
		v, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := raw.Put(ctx, "/test/v1/devices/"+guid(i), string(v))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	const n = maxOps - 3 // and three more: a full batch
	var rs []guarded
	for i := range n {
		o := owner("x", i, 0)
		put(i, o)
		val, _ := json.Marshal(o)
		rs = append(rs, guarded{guid(i), release{val: val}})
	}
	put(0, owner("y", 0, time.Minute)) // a newer owner took device 0
	never, _ := json.Marshal(owner("x", 1000, 0))
	rs = append(rs, guarded{guid(1000), release{val: never}})
	// Stale keys found by reconcile are guarded by their ModRevision: one
	// unchanged, one written again since.
	rs = append(rs, guarded{guid(2000), release{modRev: put(2000, owner("x", 2000, 0))}})
	changed := put(2001, owner("x", 2001, 0))
	put(2001, owner("y", 2001, time.Minute))
	rs = append(rs, guarded{guid(2001), release{modRev: changed}})

	before := a.txns.Load()
	if err := a.commitReleases(ctx, rs); err != nil {
		t.Fatalf("commitReleases: %v", err)
	}
	if got := a.txns.Load() - before; got > 3 {
		t.Errorf("releasing %d keys, %d of them no longer ours, took %d Txns; want at most 3", len(rs), 3, got)
	}
	for i := 1; i < n; i++ {
		if o, ok := stored(t, raw, guid(i)); ok {
			t.Fatalf("device %d still stored (%+v); want it released", i, o)
		}
	}
	if _, ok := stored(t, raw, guid(2000)); ok {
		t.Errorf("the unchanged stale key is still stored; want it released")
	}
	for _, i := range []int{0, 2001} {
		if o, ok := stored(t, raw, guid(i)); !ok || o.Instance != "y" {
			t.Errorf("device %d: etcd holds %+v, %v; want y's newer claim kept", i, o, ok)
		}
	}
}
