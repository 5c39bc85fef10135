package etcdstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/presence-mps/presence/mps/fleet"
)

// table is the local copy of the keys under the prefix. It is guarded by
// Store.tmu.
type table struct {
	devices map[string]entry        // GUID → owner
	hosts   map[string]string       // hostKey(host) → GUID
	members map[string]fleet.Member // id → member
	full    bool                    // a cap was hit (logged once)
}

type entry struct {
	o      fleet.Owner
	modRev int64
}

func newTable() *table {
	return &table{
		devices: make(map[string]entry),
		hosts:   make(map[string]string),
		members: make(map[string]fleet.Member),
	}
}

// change is what one event did to a device key: o is its new owner, or
// absent (deleted, or a value that does not decode).
type change struct {
	guid   string
	o      fleet.Owner
	absent bool
}

// apply applies one key's new value (nil for a delete) to the table. It
// reports the device change, if the key is a device's, and whether the
// table changed.
func (s *Store) apply(t *table, key string, val []byte, modRev int64, del bool) (change, bool, bool) {
	switch {
	case strings.HasPrefix(key, s.k.devices):
		g := key[len(s.k.devices):]
		c := change{guid: g, absent: true}
		if !del {
			o, err := decodeOwner(g, val)
			if err == nil {
				c = change{guid: g, o: o}
			} else {
				s.bad.report(key, err)
			}
		}
		if c.absent {
			return c, true, t.dropDevice(g)
		}
		if !t.setDevice(g, c.o, modRev) {
			s.tableFull(t)
		}
		return c, true, true
	case strings.HasPrefix(key, s.k.instances):
		id := key[len(s.k.instances):]
		if del {
			_, had := t.members[id]
			delete(t.members, id)
			return change{}, false, had
		}
		m, err := decodeMember(id, val)
		if err != nil {
			s.bad.report(key, err)
			_, had := t.members[id]
			delete(t.members, id)
			return change{}, false, had
		}
		if _, had := t.members[id]; !had && len(t.members) >= maxMembers {
			s.tableFull(t)
			return change{}, false, false
		}
		t.members[id] = m
		return change{}, false, true
	}
	return change{}, false, false
}

func (t *table) setDevice(g string, o fleet.Owner, modRev int64) bool {
	old, had := t.devices[g]
	if !had && len(t.devices) >= maxDevices {
		return false
	}
	if had {
		t.dropHost(g, old.o.Host)
	}
	t.devices[g] = entry{o, modRev}
	if o.Host != "" {
		t.hosts[hostKey(o.Host)] = g
	}
	return true
}

func (t *table) dropDevice(g string) bool {
	old, had := t.devices[g]
	if !had {
		return false
	}
	t.dropHost(g, old.o.Host)
	delete(t.devices, g)
	return true
}

func (t *table) dropHost(g, host string) {
	if host == "" {
		return
	}
	if hk := hostKey(host); t.hosts[hk] == g {
		delete(t.hosts, hk)
	}
}

func (s *Store) tableFull(t *table) {
	if t.full {
		return
	}
	t.full = true
	s.log.Warn("etcd: too many keys under the prefix; ignoring the rest",
		"prefix", s.k.root, "max_devices", maxDevices, "max_members", maxMembers)
}

// watch keeps the table: it lists the prefix, then watches it from the
// listed revision; it lists again when the watch fails (a compaction, say).
func (s *Store) watch(ctx context.Context) {
	defer s.wg.Done()
	var p pause
	for {
		rev, err := s.list(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.opDone(err)
			if !p.wait(ctx) {
				return
			}
			continue
		}
		p.reset()
		s.follow(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		if !p.wait(ctx) {
			return
		}
	}
}

// follow applies watch events after rev until the watch ends.
func (s *Store) follow(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := s.cli.Watch(wctx, s.k.root, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	defer func() {
		cancel()
		for range wch { // the watcher closes it once cancelled
		}
	}()
	for wr := range wch {
		if err := wr.Err(); err != nil {
			s.log.Debug("etcd: watch ended, listing again", "err", err)
			return
		}
		var changes []change
		changed, selfGone := false, false
		selfKey := s.k.instance(s.self.ID)
		s.tmu.Lock()
		for _, ev := range wr.Events {
			key, del := string(ev.Kv.Key), ev.Type == mvccpb.DELETE
			c, dev, ch := s.apply(s.tab, key, ev.Kv.Value, ev.Kv.ModRevision, del)
			if dev {
				changes = append(changes, c)
			}
			changed = changed || ch
			if key == selfKey {
				selfGone = del || !bytes.Equal(ev.Kv.Value, s.selfVal)
			}
		}
		s.tmu.Unlock()
		if selfGone {
			// Our member key was deleted or overwritten: write it again.
			s.mu.Lock()
			s.memberGen = 0
			s.mu.Unlock()
			s.wake()
		}
		s.react(changes)
		if changed {
			s.noteChanged()
		}
	}
}

// list reads the whole prefix at one revision, in pages, into a new table,
// and returns that revision.
func (s *Store) list(ctx context.Context) (int64, error) {
	t := newTable()
	end := clientv3.GetPrefixRangeEnd(s.k.root)
	from := s.k.root
	var rev int64
	var changes []change
	for range (maxDevices+maxMembers)/listPage + 2 {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		gctx, cancel := context.WithTimeout(ctx, s.opTimeout)
		resp, err := s.cli.Get(gctx, from, opts...)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("list %s: %w", s.k.root, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if c, dev, _ := s.apply(t, string(kv.Key), kv.Value, kv.ModRevision, false); dev {
				changes = append(changes, c)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	s.tmu.Lock()
	s.tab = t
	s.tmu.Unlock()
	s.opDone(nil)

	// Held devices missing from the list are absent.
	seen := make(map[string]bool, len(changes))
	for _, c := range changes {
		seen[c.guid] = true
	}
	s.mu.Lock()
	for g := range s.held {
		if !seen[g] {
			changes = append(changes, change{guid: g, absent: true})
		}
	}
	s.mu.Unlock()
	s.react(changes)
	s.noteChanged()
	return rev, nil
}

// react holds the table's changes against the devices this instance
// holds: a newer connection elsewhere means ours moved; our key gone or
// overwritten by an older one means it is written again.
func (s *Store) react(changes []change) {
	var moved []movedEvent
	work := false
	s.mu.Lock()
	for _, c := range changes {
		h := s.held[c.guid]
		if h == nil {
			continue
		}
		switch {
		case !c.absent && c.o.Same(h.o):
			// Ours as written (the lease may be an old session's; a new
			// session rewrites everything anyway).
		case !c.absent && c.o.Newer(h.o):
			delete(s.held, c.guid)
			moved = append(moved, movedEvent{h.o, c.o})
		default:
			h.committed = false
			s.enqueueLocked(c.guid)
			work = true
		}
	}
	s.mu.Unlock()
	if work {
		s.wake()
	}
	for _, m := range moved {
		s.noteMoved(m.mine, m.newer)
	}
}
