package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/presence-mps/presence/mps/fleet"
)

// claimRounds bounds the read-and-retry rounds of one batch of claims;
// what is left goes back in the queue.
const claimRounds = 3

// job is one unit of the worker's: write the member key, commit a batch
// of claims and releases, or revoke a lost session's lease.
type job struct {
	lease    clientv3.LeaseID
	gen      uint64
	member   bool
	claims   []*holding
	releases []guarded
	revoke   clientv3.LeaseID
}

type guarded struct {
	guid string
	r    release
}

// work is the one goroutine that writes device keys. It takes the queue in
// batches of at most maxOps, and backs off while etcd fails.
func (s *Store) work(ctx context.Context) {
	defer s.wg.Done()
	tick := time.NewTicker(s.ttl)
	defer tick.Stop()
	batch := maxOps
	var p pause
	for {
		j, ok := s.next(batch)
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-s.workc:
			case <-tick.C:
				s.reconcile()
			}
			continue
		}
		err := s.run(ctx, j)
		if err == nil {
			p.reset()
			s.opDone(nil)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		s.requeue(j)
		switch {
		case isLeaseGone(err):
			// The session is gone though its keepalive has not said so
			// yet: have a new one opened, then write everything again.
			s.renew(j.lease)
		case errors.Is(err, rpctypes.ErrTooManyOps) && batch > 1:
			// An etcd with a lower --max-txn-ops: smaller batches.
			batch /= 2
			continue
		}
		s.opDone(err)
		if !p.wait(ctx) {
			return
		}
	}
}

// next takes the worker's next job, or reports that there is none (or no
// session to write under).
func (s *Store) next(batch int) (job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := job{lease: s.lease, gen: s.gen}
	if j.lease == clientv3.NoLease {
		return j, false
	}
	if s.memberGen != s.gen {
		j.member = true
		return j, true
	}
	if len(s.order) == 0 && s.overflow {
		s.refillLocked()
	}
	if len(s.order) > 0 {
		n := min(batch, len(s.order))
		for _, g := range s.order[:n] {
			delete(s.pending, g)
			if h := s.held[g]; h != nil {
				j.claims = append(j.claims, h)
			} else if r, ok := s.releases[g]; ok {
				delete(s.releases, g)
				j.releases = append(j.releases, guarded{g, r})
			}
		}
		s.order = s.order[n:]
		if len(s.order) == 0 {
			s.order = nil // let the backing array go
		}
		return j, true
	}
	if len(s.oldLeases) > 0 {
		j.revoke = s.oldLeases[0]
		return j, true
	}
	return j, false
}

// refillLocked queues the held devices that did not fit the queue.
func (s *Store) refillLocked() {
	s.overflow = false
	for g, h := range s.held {
		if h.committed {
			continue
		}
		if !s.enqueueLocked(g) {
			return // overflow is set again
		}
	}
}

// requeue puts a failed job's devices back in the queue.
func (s *Store) requeue(j job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range j.claims {
		if s.held[h.o.GUID] == h {
			s.enqueueLocked(h.o.GUID)
		}
	}
	for _, r := range j.releases {
		if s.held[r.guid] != nil {
			continue // claimed again since
		}
		if _, ok := s.releases[r.guid]; ok {
			continue // a newer release is queued
		}
		if s.enqueueLocked(r.guid) {
			s.releases[r.guid] = r.r
		}
	}
}

func (s *Store) run(ctx context.Context, j job) error {
	switch {
	case j.member:
		return s.putMember(ctx, j)
	case j.revoke != clientv3.NoLease:
		return s.revokeOld(ctx, j.revoke)
	}
	if err := s.commitClaims(ctx, j.lease, j.claims); err != nil {
		return err
	}
	return s.commitReleases(ctx, j.releases)
}

// putMember writes this instance's key under the session's lease. It is
// the one plain Put: no other instance writes that key.
func (s *Store) putMember(ctx context.Context, j job) error {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	_, err := s.cli.Put(ctx, s.k.instance(s.self.ID), string(s.selfVal), clientv3.WithLease(j.lease))
	if err != nil {
		return fmt.Errorf("put member key: %w", err)
	}
	s.mu.Lock()
	if s.gen == j.gen {
		s.memberGen = j.gen
	}
	s.mu.Unlock()
	return nil
}

// revokeOld revokes a lost session's lease, once everything held is
// written under the current one: what is still on it is stale.
func (s *Store) revokeOld(ctx context.Context, id clientv3.LeaseID) error {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, id); err != nil && !isLeaseGone(err) {
		return fmt.Errorf("revoke old lease: %w", err)
	}
	s.mu.Lock()
	if len(s.oldLeases) > 0 && s.oldLeases[0] == id {
		s.oldLeases = s.oldLeases[1:]
	}
	s.mu.Unlock()
	return nil
}

// plan is one claim of a batch and the compare that guards its Put.
type plan struct {
	h   *holding
	cmp clientv3.Cmp
}

// commitClaims writes a batch of claims under lease. The first Txn
// assumes every key is absent (CreateRevision == 0), which is the common
// case of a reconnect storm; if one is not, the Txn reads them all, and
// the next round guards each key by what it holds: absent, or unchanged
// since read (ModRevision) and holding an older connection or our own.
// A key holding a newer connection is left alone and reported as moved.
func (s *Store) commitClaims(ctx context.Context, lease clientv3.LeaseID, claims []*holding) error {
	if len(claims) == 0 {
		return nil
	}
	plans := make([]plan, len(claims))
	for i, h := range claims {
		plans[i] = plan{h, clientv3.Compare(clientv3.CreateRevision(s.k.device(h.o.GUID)), "=", 0)}
	}
	for round := 0; round < claimRounds && len(plans) > 0; round++ {
		cmps := make([]clientv3.Cmp, len(plans))
		puts := make([]clientv3.Op, len(plans))
		gets := make([]clientv3.Op, len(plans))
		for i, p := range plans {
			key := s.k.device(p.h.o.GUID)
			cmps[i] = p.cmp
			puts[i] = clientv3.OpPut(key, string(p.h.val), clientv3.WithLease(lease))
			gets[i] = clientv3.OpGet(key)
		}
		tctx, cancel := context.WithTimeout(ctx, s.opTimeout)
		resp, err := s.cli.Txn(tctx).If(cmps...).Then(puts...).Else(gets...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		s.txns.Add(1)
		if resp.Succeeded {
			s.committed(plans)
			return nil
		}
		if len(resp.Responses) != len(plans) {
			return fmt.Errorf("claim: %d responses to %d reads", len(resp.Responses), len(plans))
		}
		next := plans[:0:0]
		var done []plan
		for i, p := range plans {
			var kv *mvccpb.KeyValue
			if rr := resp.Responses[i].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
				kv = rr.Kvs[0]
			}
			guard, cur, verdict := s.decide(p.h, kv, lease)
			switch verdict {
			case keep:
				done = append(done, p)
			case yield:
				s.lose(p.h, cur)
			case take:
				next = append(next, plan{p.h, guard})
			}
		}
		s.committed(done)
		plans = next
	}
	// Contended keys: back in the queue, to be read afresh.
	if len(plans) > 0 {
		s.mu.Lock()
		for _, p := range plans {
			if s.held[p.h.o.GUID] == p.h {
				s.enqueueLocked(p.h.o.GUID)
			}
		}
		s.mu.Unlock()
		s.wake()
	}
	return nil
}

type verdict int

const (
	take  verdict = iota // write ours, guarded
	keep                 // etcd already holds ours under this lease
	yield                // etcd holds a newer connection
)

// decide says what to do about a claim given the key's current value kv
// (nil when absent).
func (s *Store) decide(h *holding, kv *mvccpb.KeyValue, lease clientv3.LeaseID) (clientv3.Cmp, fleet.Owner, verdict) {
	key := s.k.device(h.o.GUID)
	if kv == nil {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0), fleet.Owner{}, take
	}
	guard := clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
	cur, err := decodeOwner(h.o.GUID, kv.Value)
	switch {
	case err != nil:
		// Not a valid owner: ours replaces it.
		s.bad.report(key, err)
		return guard, fleet.Owner{}, take
	case cur.Same(h.o):
		if kv.Lease == int64(lease) && bytes.Equal(kv.Value, h.val) {
			return guard, cur, keep
		}
		return guard, cur, take // ours, under a lost session's lease
	case cur.Newer(h.o):
		return guard, cur, yield
	}
	return guard, cur, take
}

// committed marks claims as written.
func (s *Store) committed(plans []plan) {
	if len(plans) == 0 {
		return
	}
	s.mu.Lock()
	for _, p := range plans {
		if s.held[p.h.o.GUID] == p.h {
			p.h.committed = true
		}
	}
	s.mu.Unlock()
	s.commits.Add(uint64(len(plans)))
}

// lose gives up a held device that a newer connection holds elsewhere,
// and reports it through Moved. A claim that has been replaced locally
// since is not reported: its tunnel is already gone.
func (s *Store) lose(h *holding, newer fleet.Owner) {
	s.mu.Lock()
	live := s.held[h.o.GUID] == h
	if live {
		delete(s.held, h.o.GUID)
	}
	s.mu.Unlock()
	if live {
		s.noteMoved(h.o, newer)
	}
}

// commitReleases deletes keys that still hold our value (or, for stale
// keys found by reconcile, are unchanged since read). The first Txn
// deletes the whole batch if every key matches; if one does not, its Else
// branch reads them all, and the next round deletes, guarded again, only
// those that still matched. So a batch costs two Txns however many of its
// keys have moved on, not one per key: in a reconnect storm many releases
// are of claims that never reached etcd, and a Txn per key would stall the
// worker and every claim queued behind it.
func (s *Store) commitReleases(ctx context.Context, rs []guarded) error {
	for round := 0; round < claimRounds && len(rs) > 0; round++ {
		resp, err := s.deleteGuarded(ctx, rs)
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		if len(resp.Responses) != len(rs) {
			return fmt.Errorf("release: %d responses to %d reads", len(resp.Responses), len(rs))
		}
		next := rs[:0:0]
		for i, r := range rs {
			var kv *mvccpb.KeyValue
			if rr := resp.Responses[i].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
				kv = rr.Kvs[0]
			}
			if r.still(kv) {
				next = append(next, r)
			}
		}
		rs = next
	}
	// What is left changed between every read and delete: it is no
	// longer ours to delete.
	return nil
}

// still reports whether the key, now kv (nil when absent), is still the
// one r may delete.
func (r guarded) still(kv *mvccpb.KeyValue) bool {
	switch {
	case kv == nil:
		return false
	case r.r.val != nil:
		return bytes.Equal(kv.Value, r.r.val)
	default:
		return kv.ModRevision == r.r.modRev
	}
}

// deleteGuarded deletes every key of rs if each still matches its guard,
// and otherwise reads them all.
func (s *Store) deleteGuarded(ctx context.Context, rs []guarded) (*clientv3.TxnResponse, error) {
	cmps := make([]clientv3.Cmp, len(rs))
	dels := make([]clientv3.Op, len(rs))
	gets := make([]clientv3.Op, len(rs))
	for i, r := range rs {
		key := s.k.device(r.guid)
		if r.r.val != nil {
			cmps[i] = clientv3.Compare(clientv3.Value(key), "=", string(r.r.val))
		} else {
			cmps[i] = clientv3.Compare(clientv3.ModRevision(key), "=", r.r.modRev)
		}
		dels[i] = clientv3.OpDelete(key)
		gets[i] = clientv3.OpGet(key)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(dels...).Else(gets...).Commit()
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	s.txns.Add(1)
	return resp, nil
}

// reconcile runs every TTL while the worker is idle. It queues held
// devices that are not written yet, and deletes keys the table shows as
// ours that we no longer hold (a release that did not fit the queue, or
// keys left by an earlier process with our id), each guarded by its
// ModRevision.
func (s *Store) reconcile() {
	type stale struct {
		guid   string
		modRev int64
	}
	var own []stale
	s.tmu.RLock()
	if s.tab != nil {
		for g, e := range s.tab.devices {
			if e.o.Instance == s.self.ID {
				own = append(own, stale{g, e.modRev})
			}
		}
	}
	s.tmu.RUnlock()

	s.mu.Lock()
	if s.lease == clientv3.NoLease {
		s.mu.Unlock()
		return
	}
	for _, o := range own {
		if s.held[o.guid] != nil {
			continue
		}
		if _, ok := s.pending[o.guid]; ok {
			continue
		}
		if s.enqueueLocked(o.guid) {
			s.releases[o.guid] = release{modRev: o.modRev}
		}
	}
	for g, h := range s.held {
		if !h.committed {
			s.enqueueLocked(g)
		}
	}
	work := len(s.order) > 0
	s.mu.Unlock()
	if work {
		s.wake()
	}
}
