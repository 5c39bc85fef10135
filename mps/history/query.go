package history

import (
	"cmp"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Query limits: a limit of zero or less means DefaultLimit, and no query
// returns more than MaxLimit records.
const (
	DefaultLimit = 1000
	MaxLimit     = 100_000
)

func capLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// view runs fn in a read transaction, or returns ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	return s.db.View(fn)
}

// scanBack calls fn for the keys of r in b, newest first, until fn returns
// false.
func scanBack(b *bolt.Bucket, r keyRange, fn func(k []byte) bool) {
	c := b.Cursor()
	k, _ := c.Seek(r.hi)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	for ; r.contains(k); k, _ = c.Prev() {
		if !fn(k) {
			return
		}
	}
}

// scanForward calls fn for the keys of r in b, oldest first, until fn
// returns false.
func scanForward(b *bolt.Bucket, r keyRange, fn func(k []byte) bool) {
	c := b.Cursor()
	for k, _ := c.Seek(r.lo); r.contains(k); k, _ = c.Next() {
		if !fn(k) {
			return
		}
	}
}

// event reads the event with identity id, or reports false.
func event(events *bolt.Bucket, id []byte) (TunnelEvent, bool) {
	v := events.Get(id)
	if v == nil {
		return TunnelEvent{}, false
	}
	ev, err := decodeEvent(v)
	if err != nil {
		return TunnelEvent{}, false
	}
	n, _ := splitID(id)
	ev.Time = fromNanos(n)
	return ev, true
}

// Timeline returns a device's events with Time in [since, until), oldest
// first. A zero since or until leaves that end open; an empty device means
// every device. When more than limit events match, the newest limit are
// returned (see [DefaultLimit] and [MaxLimit]).
func (s *Store) Timeline(device string, since, until time.Time, limit int) ([]TunnelEvent, error) {
	limit = capLimit(limit)
	var out []TunnelEvent
	err := s.view(func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		add := func(id []byte) bool {
			if ev, ok := event(events, id); ok {
				out = append(out, ev)
			}
			return len(out) < limit
		}
		if device == "" {
			scanBack(events, newRange(nil, since, until), add)
			return nil
		}
		pre := prefix(device)
		scanBack(tx.Bucket(bucketEventsDevice), newRange(pre, since, until), func(k []byte) bool {
			return add(k[len(pre):])
		})
		return nil
	})
	slices.Reverse(out)
	return out, err
}

// Last returns the newest n events of every device, oldest first.
func (s *Store) Last(n int) ([]TunnelEvent, error) {
	return s.Timeline("", time.Time{}, time.Time{}, n)
}

// FindDevice returns the GUID that name stands for among devs (the
// newest event of each device, as Devices returns them): a GUID in any
// case, or the host name (with or without ".amt") the device was last seen
// with; the newest wins when several devices had that name.
func FindDevice(devs []TunnelEvent, name string) (string, bool) {
	host := strings.TrimSuffix(name, ".amt")
	var best TunnelEvent
	for _, d := range devs {
		if strings.EqualFold(d.Device, name) {
			return d.Device, true
		}
		if strings.EqualFold(d.Hostname, host) && d.Time.After(best.Time) {
			best = d
		}
	}
	return best.Device, best.Device != ""
}

// Devices returns the newest event of every device in the file, ordered by
// device (at most MaxLimit devices).
func (s *Store) Devices() ([]TunnelEvent, error) {
	var out []TunnelEvent
	err := s.view(func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEventsDevice)
		primary := tx.Bucket(bucketEvents)
		c := events.Cursor()
		k, _ := c.First()
		for k != nil && len(out) < MaxLimit {
			name, _, ok := indexName(k)
			if !ok {
				k, _ = c.Next()
				continue
			}
			// Seek past this device's keys, step back to its newest.
			r := newRange(prefix(name), time.Time{}, time.Time{})
			next, _ := c.Seek(r.hi)
			var last []byte
			if next == nil {
				last, _ = c.Last()
			} else {
				last, _ = c.Prev()
			}
			if r.contains(last) {
				if ev, ok := event(primary, last[len(r.pre):]); ok {
					out = append(out, ev)
				}
			}
			k, _ = c.Seek(r.hi)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b TunnelEvent) int { return cmp.Compare(a.Device, b.Device) })
	return out, err
}

// Interval is a span of time, [Start, End).
type Interval struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Availability is how long a device's tunnel was up in a window.
type Availability struct {
	Up        time.Duration `json:"up_ns"`
	Fraction  float64       `json:"fraction"`  // Up over the window's length (the window ends at now if to is later)
	Intervals []Interval    `json:"intervals"` // the spans the tunnel was up, oldest first (at most MaxLimit)
}

// Availability computes how long device's tunnel was up in [from, to) from
// its up and down events. The state at from is that of the last up or down
// before it; an up with no later down lasts until to, or now if to is
// later: the window is cut at now. A zero from means the device's first
// event, a zero to means now.
func (s *Store) Availability(device string, from, to time.Time) (Availability, error) {
	var a Availability
	end := to
	if now := s.opts.now(); end.IsZero() || now.Before(end) {
		end = now
	}
	if from.IsZero() {
		if err := s.view(func(tx *bolt.Tx) error {
			pre := prefix(device)
			scanForward(tx.Bucket(bucketEventsDevice), newRange(pre, time.Time{}, time.Time{}), func(k []byte) bool {
				n, _ := splitID(k[len(pre):])
				from = fromNanos(n)
				return false
			})
			return nil
		}); err != nil || from.IsZero() {
			return a, err
		}
	}
	if !end.After(from) {
		return a, nil
	}
	var upSince time.Time // zero while down
	up := func(t time.Time) {
		if upSince.IsZero() {
			upSince = t
		}
	}
	down := func(t time.Time) {
		if upSince.IsZero() {
			return
		}
		if t.After(upSince) {
			a.Up += t.Sub(upSince)
			if len(a.Intervals) < MaxLimit {
				a.Intervals = append(a.Intervals, Interval{Start: upSince, End: t})
			}
		}
		upSince = time.Time{}
	}
	err := s.view(func(tx *bolt.Tx) error {
		index := tx.Bucket(bucketEventsDevice)
		events := tx.Bucket(bucketEvents)
		pre := prefix(device)
		// The state at from: the last up or down before it.
		scanBack(index, newRange(pre, time.Time{}, from), func(k []byte) bool {
			ev, ok := event(events, k[len(pre):])
			if !ok {
				return true
			}
			switch ev.Kind {
			case KindUp:
				up(from)
			case KindDown:
			default:
				return true // look further back
			}
			return false
		})
		scanForward(index, newRange(pre, from, end), func(k []byte) bool {
			ev, ok := event(events, k[len(pre):])
			if !ok {
				return true
			}
			switch ev.Kind {
			case KindUp:
				up(ev.Time)
			case KindDown:
				down(ev.Time)
			}
			return true
		})
		return nil
	})
	down(end)
	a.Fraction = float64(a.Up) / float64(end.Sub(from))
	return a, err
}

// Filter selects sessions. Zero fields select everything.
type Filter struct {
	Device string
	User   string
	Since  time.Time // sessions that started at or after Since
	Until  time.Time // and before Until
	Limit  int       // see DefaultLimit and MaxLimit
}

// Sessions returns the sessions that match f, ordered by Start, oldest
// first. When more than f.Limit match, the newest are returned.
func (s *Store) Sessions(f Filter) ([]SessionRecord, error) {
	limit := capLimit(f.Limit)
	var out []SessionRecord
	err := s.view(func(tx *bolt.Tx) error {
		sessions := tx.Bucket(bucketSessions)
		add := func(id []byte) bool {
			v := sessions.Get(id)
			if v == nil {
				return true
			}
			rec, err := decodeSession(v)
			if err != nil || (f.Device != "" && rec.Device != clip(f.Device, maxKeyString)) ||
				(f.User != "" && rec.User != clip(f.User, maxKeyString)) {
				return true
			}
			n, seq := splitID(id)
			rec.Start, rec.ID = fromNanos(n), seq
			out = append(out, rec)
			return len(out) < limit
		}
		var index *bolt.Bucket
		var pre []byte
		switch {
		case f.Device != "":
			index, pre = tx.Bucket(bucketSessionDevice), prefix(f.Device)
		case f.User != "":
			index, pre = tx.Bucket(bucketSessionUser), prefix(f.User)
		default:
			scanBack(sessions, newRange(nil, f.Since, f.Until), add)
			return nil
		}
		scanBack(index, newRange(pre, f.Since, f.Until), func(k []byte) bool {
			return add(k[len(pre):])
		})
		return nil
	})
	slices.Reverse(out)
	return out, err
}
