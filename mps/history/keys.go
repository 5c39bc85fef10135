package history

import (
	"bytes"
	"encoding/binary"
	"math"
	"time"
)

// Bucket names. See the package documentation for the key layout.
var (
	bucketMeta          = []byte("meta")
	bucketEvents        = []byte("events")
	bucketEventsDevice  = []byte("events-by-device")
	bucketSessions      = []byte("sessions")
	bucketSessionDevice = []byte("sessions-by-device")
	bucketSessionUser   = []byte("sessions-by-user")

	keyFormat = []byte("format")
)

// formatVersion is the layout of buckets and keys. Records carry their own
// version (see recordVersion).
const formatVersion = 1

// idLen is the length of a record's identity: a big-endian time (with the
// sign bit flipped so negative times sort first) and a big-endian sequence
// number (events) or session ID (sessions).
const idLen = 16

// The instants that UnixNano can represent; times outside are clamped.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// nanos returns t in Unix nanoseconds, clamped to the representable range
// (the zero Time clamps to the minimum).
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time { return time.Unix(0, n) }

// appendID appends the 16-byte identity of a record.
func appendID(b []byte, n int64, seq uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(n)^(1<<63))
	return binary.BigEndian.AppendUint64(b, seq)
}

// splitID returns the time and sequence of a 16-byte identity.
func splitID(id []byte) (int64, uint64) {
	return int64(binary.BigEndian.Uint64(id) ^ (1 << 63)), binary.BigEndian.Uint64(id[8:])
}

// prefix returns the index prefix of a device or user name: a length byte
// and the name (at most maxKeyString bytes; longer names were clipped on
// the way in).
func prefix(name string) []byte {
	name = clip(name, maxKeyString)
	b := make([]byte, 0, 1+len(name)+idLen)
	b = append(b, byte(len(name)))
	return append(b, name...)
}

// indexKey returns prefix(name) | id.
func indexKey(name string, id []byte) []byte { return append(prefix(name), id...) }

// indexName returns the name and the identity of an index key, or ok false
// for a malformed key.
func indexName(k []byte) (name string, id []byte, ok bool) {
	if len(k) < 1+idLen || int(k[0])+1+idLen != len(k) {
		return "", nil, false
	}
	return string(k[1 : 1+k[0]]), k[1+k[0]:], true
}

// keyRange is the half-open range [lo, hi) of keys a query scans: every key
// starts with pre, and its identity's time is in [since, until).
type keyRange struct {
	pre, lo, hi []byte
}

func newRange(pre []byte, since, until time.Time) keyRange {
	r := keyRange{pre: pre}
	r.lo = appendID(bytes.Clone(pre), nanos(since), 0)
	if until.IsZero() {
		// Past every identity with this prefix.
		r.hi = append(appendID(bytes.Clone(pre), math.MaxInt64, math.MaxUint64), 0)
	} else {
		r.hi = appendID(bytes.Clone(pre), nanos(until), 0)
	}
	return r
}

// contains reports whether k is in the range.
func (r keyRange) contains(k []byte) bool {
	return k != nil && bytes.HasPrefix(k, r.pre) && len(k) == len(r.pre)+idLen &&
		bytes.Compare(k, r.lo) >= 0 && bytes.Compare(k, r.hi) < 0
}
