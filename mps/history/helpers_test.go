package history

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	code := m.Run()
	removeBenchDB()
	os.Exit(code)
}

// t0 is the base of the tests' times: recent, so that the default MaxAge
// keeps them.
var t0 = time.Now().UTC().Truncate(time.Hour).Add(-7 * 24 * time.Hour)

// newStore opens a store in a temporary directory; cleanup closes it and
// checks the file's consistency.
func newStore(t testing.TB, opts Options) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		checkFile(t, path)
	})
	return s
}

// checkFile runs bbolt's consistency check on a closed file.
func checkFile(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Errorf("open %s for Check: %v", path, err)
		return
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("Check: %v", err)
		}
		return nil
	}); err != nil {
		t.Errorf("View: %v", err)
	}
}

func flush(t testing.TB, s *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// event returns a realistic event of device d.
func ev(d string, kind string, at time.Time) TunnelEvent {
	e := TunnelEvent{
		Time:       at,
		Device:     d,
		Hostname:   "host-" + d,
		Kind:       kind,
		Remote:     "203.0.113.7:50123",
		TLSVersion: "TLS 1.3",
		TLSCipher:  "TLS_AES_128_GCM_SHA256",
		Ports:      []uint32{16992, 16993, 623, 664},
	}
	switch kind {
	case KindDown:
		e.Reason = "network-error"
	case KindAuthFailed:
		e.Reason, e.User = "auth-failed", "admin"
	}
	return e
}

func guid(i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
}

// writeDirect writes events straight into the file in one transaction,
// bypassing the queue (to build big files fast).
func writeDirect(t testing.TB, s *Store, evs []TunnelEvent) {
	t.Helper()
	ptrs := make([]*TunnelEvent, len(evs))
	for i := range evs {
		ptrs[i] = evs[i].normalize(time.Now)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return writeBatch(tx, ptrs, nil) }); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// fixedClock returns a clock stuck at at.
func fixedClock(at time.Time) func() time.Time { return func() time.Time { return at } }

// bucketLen returns how many keys a bucket holds.
func (s *Store) bucketLen(name []byte) int {
	var n int
	s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(name).Stats().KeyN
		return nil
	})
	return n
}

// sequence returns a bucket's sequence number.
func (s *Store) sequence(name []byte) uint64 {
	var n uint64
	s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(name).Sequence()
		return nil
	})
	return n
}
