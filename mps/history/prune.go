package history

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// pruneChunk is the most records one retention transaction deletes, so a
// large prune does not build one huge transaction.
const pruneChunk = 20_000

// prune deletes records older than MaxAge, then the oldest records while
// the file's data exceeds MaxBytes, down to 90 % of it.
func (s *Store) prune(now time.Time) error {
	if s.opts.MaxAge > 0 {
		cutoff := nanos(now.Add(-s.opts.MaxAge))
		if _, err := s.deleteOldest(cutoff, math.MaxInt64); err != nil {
			return err
		}
	}
	if s.opts.MaxBytes <= 0 {
		return nil
	}
	used, err := s.usedBytes()
	if err != nil || used <= s.opts.MaxBytes {
		return err
	}
	target := s.opts.MaxBytes / 10 * 9
	// Deleting frees whole pages only once they empty or merge, so used
	// falls more slowly than the records' bytes: repeat, bounded.
	for range 100 {
		need := used - target
		if need <= 0 {
			return nil
		}
		n, err := s.deleteOldest(math.MaxInt64, max(need/2, 64<<10))
		if err != nil || n == 0 {
			return err
		}
		if used, err = s.usedBytes(); err != nil {
			return err
		}
	}
	return nil
}

// usedBytes returns the bytes of the file's pages that hold data: its
// high-water mark less its free pages.
func (s *Store) usedBytes() (int64, error) {
	var size int64
	if err := s.db.View(func(tx *bolt.Tx) error {
		size = tx.Size()
		return nil
	}); err != nil {
		return 0, err
	}
	st := s.db.Stats()
	return size - int64(st.FreePageN+st.PendingPageN)*int64(s.db.Info().PageSize), nil
}

// Size returns the file's size and the bytes in it that hold data. bbolt
// never shrinks a file; Open compacts it when most of it is free.
func (s *Store) Size() (file, used int64, err error) {
	if s.isClosed() {
		return 0, 0, ErrClosed
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0, 0, err
	}
	used, err = s.usedBytes()
	return fi.Size(), used, err
}

// victim is a record retention deletes, with its index keys.
type victim struct {
	bucket []byte
	id     []byte
	index  [][2][]byte // bucket, key
}

// deleteOldest deletes the oldest records, events and sessions merged by
// time, while their time is before cutoff and until about budget bytes
// (keys, values and their index entries) are gone. It returns how many it
// deleted.
func (s *Store) deleteOldest(cutoff int64, budget int64) (uint64, error) {
	var total uint64
	for budget > 0 {
		var n int
		err := s.db.Update(func(tx *bolt.Tx) error {
			var victims []victim
			n, budget = collectOldest(tx, cutoff, budget, &victims)
			for _, v := range victims {
				if err := tx.Bucket(v.bucket).Delete(v.id); err != nil {
					return err
				}
				for _, ix := range v.index {
					if err := tx.Bucket(ix[0]).Delete(ix[1]); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("delete old records: %w", err)
		}
		total += uint64(n)
		s.pruned.Add(uint64(n))
		if n < pruneChunk {
			break
		}
	}
	return total, nil
}

// recordOverhead approximates a bbolt leaf element's header.
const recordOverhead = 16

// collectOldest appends up to pruneChunk victims to vs and returns how
// many, and the budget left.
func collectOldest(tx *bolt.Tx, cutoff int64, budget int64, vs *[]victim) (int, int64) {
	ec := tx.Bucket(bucketEvents).Cursor()
	sc := tx.Bucket(bucketSessions).Cursor()
	ek, ev := ec.First()
	sk, sv := sc.First()
	before := func(k []byte) bool {
		if len(k) != idLen {
			return k != nil // a malformed key: delete it
		}
		n, _ := splitID(k)
		return n < cutoff
	}
	for len(*vs) < pruneChunk && budget > 0 {
		evOK, sOK := before(ek), before(sk)
		if !evOK && !sOK {
			break
		}
		var v victim
		if evOK && (!sOK || bytes.Compare(ek[:min(len(ek), 8)], sk[:min(len(sk), 8)]) <= 0) {
			v = victim{bucket: bucketEvents, id: bytes.Clone(ek)}
			budget -= int64(len(ek) + len(ev) + recordOverhead)
			if rec, err := decodeEvent(ev); err == nil && len(ek) == idLen {
				k := indexKey(rec.Device, v.id)
				v.index = append(v.index, [2][]byte{bucketEventsDevice, k})
				budget -= int64(len(k) + recordOverhead)
			}
			ek, ev = ec.Next()
		} else {
			v = victim{bucket: bucketSessions, id: bytes.Clone(sk)}
			budget -= int64(len(sk) + len(sv) + recordOverhead)
			if rec, err := decodeSession(sv); err == nil && len(sk) == idLen {
				k := indexKey(rec.Device, v.id)
				v.index = append(v.index, [2][]byte{bucketSessionDevice, k})
				budget -= int64(len(k) + recordOverhead)
				if rec.User != "" {
					k := indexKey(rec.User, v.id)
					v.index = append(v.index, [2][]byte{bucketSessionUser, k})
					budget -= int64(len(k) + recordOverhead)
				}
			}
			sk, sv = sc.Next()
		}
		*vs = append(*vs, v)
	}
	return len(*vs), budget
}

// maybeCompact copies the file into a new one and renames it over the old
// when more than half of the file, and more than compactMinFree, is free:
// bbolt reuses free pages but never gives them back. The copy holds its own
// lock before the rename, so the file is never unlocked; a crash leaves the
// old file intact and a stale copy that the next Open removes.
func (s *Store) maybeCompact() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	used, err := s.usedBytes()
	if err != nil {
		return err
	}
	free := fi.Size() - used
	if free <= fi.Size()/2 || free <= s.opts.compactMinFree {
		return nil
	}
	tmp := s.path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: s.opts.Timeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	fail := func(err error) error {
		dst.Close()
		os.Remove(tmp)
		return err
	}
	if err := bolt.Compact(dst, s.db, 64<<20); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fail(err)
	}
	// Make the rename durable; the data was synced by Compact's commits.
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	old := s.db
	s.db = dst
	return old.Close()
}
