package history

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAddFlushTimeline(t *testing.T) {
	s := newStore(t, Options{})
	a, b := guid(1), guid(2)
	// Added out of time order, interleaved across devices.
	in := []TunnelEvent{
		ev(a, KindUp, t0.Add(2*time.Minute)),
		ev(b, KindUp, t0.Add(1*time.Minute)),
		ev(a, KindDown, t0.Add(5*time.Minute)),
		ev(a, KindAuthFailed, t0),
		ev(b, KindDown, t0.Add(3*time.Minute)),
	}
	for _, e := range in {
		if !s.Add(e) {
			t.Fatalf("Add(%v) = false", e.Kind)
		}
	}
	flush(t, s)

	got, err := s.Timeline(a, time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []TunnelEvent{in[3], in[0], in[2]}
	if !sameEvents(got, want) {
		t.Fatalf("Timeline(a) = %+v; want %+v", got, want)
	}
	if got[0].User != "admin" || !reflect.DeepEqual(got[1].Ports, in[0].Ports) || got[1].TLSCipher != in[0].TLSCipher {
		t.Errorf("fields did not round-trip: %+v", got)
	}

	// Bounds: since inclusive, until exclusive.
	got, _ = s.Timeline(a, t0.Add(2*time.Minute), t0.Add(5*time.Minute), 0)
	if !sameEvents(got, []TunnelEvent{in[0]}) {
		t.Errorf("Timeline(a, 2m, 5m) = %+v; want the up at 2m", got)
	}
	// The limit keeps the newest, oldest first.
	got, _ = s.Timeline(a, time.Time{}, time.Time{}, 2)
	if !sameEvents(got, []TunnelEvent{in[0], in[2]}) {
		t.Errorf("Timeline(a, limit 2) = %+v; want the last two", got)
	}
	// Every device.
	got, _ = s.Timeline("", time.Time{}, time.Time{}, 0)
	if !sameEvents(got, []TunnelEvent{in[3], in[1], in[0], in[4], in[2]}) {
		t.Errorf("Timeline(all) = %+v", got)
	}
	got, _ = s.Last(2)
	if !sameEvents(got, []TunnelEvent{in[4], in[2]}) {
		t.Errorf("Last(2) = %+v", got)
	}
	if got, _ := s.Timeline(guid(3), time.Time{}, time.Time{}, 0); len(got) != 0 {
		t.Errorf("Timeline(unknown) = %+v; want none", got)
	}
	if st := s.Stats(); st.Committed != 5 || st.Dropped != 0 || st.Queued != 0 {
		t.Errorf("Stats = %+v; want 5 committed", st)
	}
}

func sameEvents(got, want []TunnelEvent) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !got[i].Time.Equal(want[i].Time) || got[i].Device != want[i].Device || got[i].Kind != want[i].Kind {
			return false
		}
	}
	return true
}

// Events with the same time keep the order they were added in.
func TestSameTimeOrder(t *testing.T) {
	s := newStore(t, Options{})
	for i := range 50 {
		e := ev(guid(1), KindUp, t0)
		e.Detail = strconv.Itoa(i)
		s.Add(e)
	}
	flush(t, s)
	got, _ := s.Timeline(guid(1), time.Time{}, time.Time{}, 0)
	if len(got) != 50 {
		t.Fatalf("Timeline = %d events; want 50", len(got))
	}
	for i, e := range got {
		if want := strconv.Itoa(i); e.Detail != want {
			t.Fatalf("event %d Detail = %q; want %q", i, e.Detail, want)
		}
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Add(ev(guid(1), KindUp, t0))
	s.AddSession(SessionRecord{ID: 1, Kind: "socks5", Device: guid(1), User: "alice", Start: t0, End: t0.Add(time.Minute), EndReason: "console-closed"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("file mode = %v; want 0600", m)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Add(ev(guid(1), KindDown, t0)) // same time: after the first
	flush(t, s)
	got, _ := s.Timeline(guid(1), time.Time{}, time.Time{}, 0)
	if len(got) != 2 || got[0].Kind != KindUp || got[1].Kind != KindDown {
		t.Errorf("after reopen Timeline = %+v; want up, down", got)
	}
	ss, _ := s.Sessions(Filter{User: "alice"})
	if len(ss) != 1 || ss[0].EndReason != "console-closed" || !ss[0].End.Equal(t0.Add(time.Minute)) {
		t.Errorf("after reopen Sessions = %+v", ss)
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt's flock is per open file description, so a second Open in
	// this process conflicts like another process would.
	start := time.Now()
	s2, err := Open(path, Options{})
	took := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded; want ErrLocked")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another Presence is using this data dir") {
		t.Errorf("second Open: %v; want ErrLocked", err)
	}
	if took < 500*time.Millisecond || took > 3*time.Second {
		t.Errorf("second Open failed after %v; want about the 1 s Timeout", took)
	}
	// The first store still works.
	if !s.Add(ev(guid(1), KindUp, t0)) {
		t.Error("Add after a failed second Open = false")
	}
	flush(t, s)
}

func TestDropped(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s := newStore(t, Options{QueueSize: 4, BatchSize: 1})
	// Only the first commit blocks, and it waits for the test to see it
	// (a non-blocking send could miss a test not yet receiving).
	var once sync.Once
	s.testHookCommit = func() {
		once.Do(func() {
			entered <- struct{}{}
			<-release
		})
	}
	// The writer takes the first record and blocks in the hook.
	s.Add(ev(guid(1), KindUp, t0))
	<-entered
	for i := range 7 {
		ok := s.Add(ev(guid(1), KindDown, t0.Add(time.Duration(i+1))))
		if want := i < 4; ok != want {
			t.Errorf("Add #%d = %v; want %v", i, ok, want)
		}
	}
	if st := s.Stats(); st.Dropped != 3 || st.Queued != 4 {
		t.Errorf("Stats = %+v; want 3 dropped, 4 queued", st)
	}
	close(release)
	flush(t, s)
	if st := s.Stats(); st.Committed != 5 || st.Dropped != 3 {
		t.Errorf("after Flush Stats = %+v; want 5 committed, 3 dropped", st)
	}
}

// Close is idempotent, leaves no goroutine behind (synctest fails the test
// if one remains in the bubble), and everything after it is refused.
func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			// Not the bubble's clock (year 2000): the default MaxAge would
			// prune that on reopen.
			s.Add(ev(guid(i), KindUp, t0))
		}
		// Close commits what is queued without waiting for the batch
		// interval.
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if s.Add(ev(guid(1), KindDown, t0)) {
			t.Error("Add after Close = true")
		}
		if st := s.Stats(); st.Committed != 10 || st.Dropped != 1 {
			t.Errorf("Stats = %+v; want 10 committed, 1 dropped", st)
		}
		if err := s.Flush(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Flush after Close: %v; want ErrClosed", err)
		}
		if _, err := s.Timeline("", time.Time{}, time.Time{}, 0); !errors.Is(err, ErrClosed) {
			t.Errorf("Timeline after Close: %v; want ErrClosed", err)
		}
	})
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := s.Last(100); len(got) != 10 {
		t.Errorf("after Close and reopen: %d events; want 10", len(got))
	}
}

// A batch commits when it is full or BatchInterval after its first record.
func TestBatching(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(path, Options{BatchSize: 10, BatchInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := range 25 {
			s.Add(ev(guid(i), KindUp, time.Now()))
		}
		synctest.Wait()
		if st := s.Stats(); st.Committed != 20 || st.Batches != 2 {
			t.Errorf("before the interval Stats = %+v; want 20 committed in 2 batches", st)
		}
		time.Sleep(99 * time.Millisecond)
		synctest.Wait()
		if st := s.Stats(); st.Committed != 20 {
			t.Errorf("just before the interval Stats = %+v; want 20 committed", st)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if st := s.Stats(); st.Committed != 25 || st.Batches != 3 {
			t.Errorf("after the interval Stats = %+v; want 25 committed in 3 batches", st)
		}
	})
}

// Hostile sizes are cut, not stored whole, and limits are capped.
func TestCaps(t *testing.T) {
	s := newStore(t, Options{})
	long := strings.Repeat("é", 2000) // 4000 bytes
	e := ev(strings.Repeat("d", 1000), KindDown, t0)
	e.Detail = long
	e.Ports = make([]uint32, 10_000)
	s.Add(e)
	flush(t, s)
	got, err := s.Timeline(e.Device, time.Time{}, time.Time{}, 1<<40)
	if err != nil || len(got) != 1 {
		t.Fatalf("Timeline(long device) = %d events, %v; want 1", len(got), err)
	}
	if g := got[0]; len(g.Device) != maxKeyString || len(g.Detail) > maxString || !strings.HasPrefix(long, g.Detail) || len(g.Ports) != maxPorts {
		t.Errorf("stored device %d bytes, detail %d bytes, %d ports; want %d, ≤ %d, %d",
			len(g.Device), len(g.Detail), len(g.Ports), maxKeyString, maxString, maxPorts)
	}
	for _, tc := range []struct{ in, want int }{{0, DefaultLimit}, {-5, DefaultLimit}, {7, 7}, {1 << 40, MaxLimit}} {
		if got := capLimit(tc.in); got != tc.want {
			t.Errorf("capLimit(%d) = %d; want %d", tc.in, got, tc.want)
		}
	}
}

func TestFormatTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, []byte{formatVersion + 1})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(path, Options{}); !errors.Is(err, ErrFormat) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open(newer format): %v; want ErrFormat", err)
	}
}
