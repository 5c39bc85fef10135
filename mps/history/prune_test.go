package history

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"
)

// events returns n events of 100 devices, one a second from start.
func events(n int, start time.Time) []TunnelEvent {
	out := make([]TunnelEvent, n)
	for i := range out {
		kind := KindUp
		if i/100%2 == 1 {
			kind = KindDown
		}
		out[i] = ev(guid(i%100), kind, start.Add(time.Duration(i)*time.Second))
	}
	return out
}

func TestRetentionByAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	now := t0.Add(100 * 24 * time.Hour)
	s, err := Open(path, Options{now: fixedClock(now), MaxAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	old, recent := t0, now.Add(-24*time.Hour)
	for i := range 10 {
		s.Add(ev(guid(i), KindUp, old.Add(time.Duration(i))))
		s.Add(ev(guid(i), KindDown, recent.Add(time.Duration(i))))
		s.AddSession(SessionRecord{ID: uint64(i), Device: guid(i), User: "alice", Start: old.Add(time.Duration(i))})
		s.AddSession(SessionRecord{ID: uint64(i), Device: guid(i), User: "alice", Start: recent.Add(time.Duration(i))})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Open prunes with the default 90 days.
	s = newStoreAt(t, path, Options{now: fixedClock(now)})
	if st := s.Stats(); st.Pruned != 20 {
		t.Errorf("Pruned = %d; want 20", st.Pruned)
	}
	for i := range 10 {
		got, _ := s.Timeline(guid(i), time.Time{}, time.Time{}, 0)
		if len(got) != 1 || got[0].Kind != KindDown {
			t.Errorf("device %d: %+v; want only the recent down", i, got)
		}
	}
	for _, f := range []Filter{{}, {User: "alice"}, {Device: guid(3)}} {
		got, _ := s.Sessions(f)
		for _, r := range got {
			if r.Start.Before(recent) {
				t.Errorf("Sessions(%+v) kept %v", f, r.Start)
			}
		}
	}
	assertIndexed(t, s)
}

// assertIndexed checks that every index entry has its record and every
// record its index entries.
func assertIndexed(t *testing.T, s *Store) {
	t.Helper()
	evs, _ := s.Timeline("", time.Time{}, time.Time{}, MaxLimit)
	var indexed int
	devs, _ := s.Devices()
	for _, d := range devs {
		got, _ := s.Timeline(d.Device, time.Time{}, time.Time{}, MaxLimit)
		indexed += len(got)
	}
	n := s.bucketLen(bucketEventsDevice)
	if indexed != len(evs) || n != len(evs) {
		t.Errorf("%d events, %d index entries, %d reachable through the index", len(evs), n, indexed)
	}
	all, _ := s.Sessions(Filter{Limit: MaxLimit})
	if n := s.bucketLen(bucketSessionDevice); n != len(all) {
		t.Errorf("%d sessions, %d device index entries", len(all), n)
	}
}

func newStoreAt(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		checkFile(t, path)
	})
	return s
}

// The writer prunes every PruneInterval.
func TestPeriodicPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(path, Options{MaxAge: 2 * time.Hour, PruneInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Add(ev(guid(1), KindUp, time.Now()))
		flush(t, s)
		time.Sleep(2*time.Hour + time.Minute)
		synctest.Wait()
		if got, _ := s.Last(10); len(got) != 1 {
			t.Errorf("after 2 h: %d events; want 1", len(got))
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if got, _ := s.Last(10); len(got) != 0 || s.Stats().Pruned != 1 {
			t.Errorf("after 3 h: %d events, %d pruned; want 0, 1", len(got), s.Stats().Pruned)
		}
	})
}

func TestRetentionBySize(t *testing.T) {
	const maxBytes = 1 << 20
	s := newStore(t, Options{MaxAge: -1, MaxBytes: -1})
	evs := events(30_000, t0)
	writeDirect(t, s, evs)
	_, before, err := s.Size()
	if err != nil {
		t.Fatal(err)
	}
	if before < 3*maxBytes {
		t.Fatalf("used %d bytes; the test wants well over %d", before, maxBytes)
	}
	s.opts.MaxBytes = maxBytes
	if err := s.prune(t0); err != nil {
		t.Fatal(err)
	}
	_, used, _ := s.Size()
	if used > maxBytes {
		t.Errorf("after prune: %d bytes used; want ≤ %d", used, maxBytes)
	}
	got, _ := s.Last(MaxLimit)
	if len(got) == 0 || len(got) > len(evs)/2 {
		t.Fatalf("after prune: %d events of %d", len(got), len(evs))
	}
	// The newest survive, the oldest went.
	if last := got[len(got)-1]; !last.Time.Equal(evs[len(evs)-1].Time) {
		t.Errorf("newest kept = %v; want %v", last.Time, evs[len(evs)-1].Time)
	}
	if first := got[0]; !first.Time.Equal(evs[len(evs)-len(got)].Time) {
		t.Errorf("oldest kept = %v; want %v (a contiguous newest range)", first.Time, evs[len(evs)-len(got)].Time)
	}
	t.Logf("%d bytes used for %d events (%.0f B/event); pruned to %d events, %d bytes",
		before, len(evs), float64(before)/float64(len(evs)), len(got), used)
	assertIndexed(t, s)
}

func TestCompactOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	now := t0.Add(48 * time.Hour)
	s, err := Open(path, Options{MaxAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	writeDirect(t, s, events(30_000, t0))
	writeDirect(t, s, events(200, now.Add(-time.Hour)))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	big := fi.Size()

	// Little is free: no compaction.
	s, err = Open(path, Options{MaxAge: -1, compactMinFree: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi2, _ := os.Stat(path); !os.SameFile(fi, fi2) {
		t.Error("compacted a file with little free space")
	}

	// Open prunes all but the last 200 events, then compacts.
	s = newStoreAt(t, path, Options{MaxAge: 24 * time.Hour, now: fixedClock(now), compactMinFree: 1 << 20})
	fi2, _ := os.Stat(path)
	if os.SameFile(fi, fi2) || fi2.Size() > big/4 {
		t.Errorf("file %d bytes before, %d after Open; want a compacted copy", big, fi2.Size())
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the temporary copy remains: %v", err)
	}
	got, _ := s.Last(MaxLimit)
	if len(got) != 200 {
		t.Errorf("after compaction: %d events; want 200", len(got))
	}
	assertIndexed(t, s)
	if seq := s.sequence(bucketEvents); seq != 30_200 {
		t.Errorf("events sequence after compaction = %d; want 30200", seq)
	}
	// The compacted file takes writes.
	s.Add(ev(guid(1), KindUp, now.Add(-time.Hour)))
	flush(t, s)
	if got, _ := s.Timeline(guid(1), now.Add(-time.Hour), now, 0); len(got) != 3 || got[2].Hostname != "host-"+guid(1) {
		t.Errorf("after compaction and Add: %+v", got)
	}
	t.Logf("file %d bytes → %d bytes", big, fi2.Size())
}
