package discovery

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"time"
)

// Defaults of [WatchConfig].
const (
	DefaultWatchInterval = 30 * time.Second
	DefaultMaxMissed     = 3
)

// WatchConfig configures [Watch]. The zero value is usable.
type WatchConfig struct {
	// Browse configures each round. SkipID applies too.
	Browse BrowseConfig
	// Interval is the time from the start of one round to the start of the
	// next; zero means DefaultWatchInterval. A round is never shorter than
	// Browse.Timeout, so rounds run back to back if Interval is smaller.
	Interval time.Duration
	// MaxMissed is the number of rounds in a row without an answer after
	// which an instance is dropped; zero means DefaultMaxMissed. A failed round
	// (an interface gone, say) counts as missed for every instance.
	MaxMissed int
	// Logger receives failed rounds at debug level; nil discards them.
	Logger *slog.Logger
}

// Watch browses in rounds until ctx is done, keeping the set of instances
// that answered recently: an instance that disappears without a goodbye
// is noticed only when it stops answering.
// After every round that changes the set (an instance appears, disappears
// or changes), it calls update from the calling goroutine with the current
// set, sorted by name; update must not keep the slice beyond the call
// unless it copies it. Watch returns ctx.Err() once ctx is done, after the
// round in progress has released its sockets.
func Watch(ctx context.Context, cfg WatchConfig, update func([]Instance)) error {
	interval := cfg.Interval
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tb := newTable(cfg.MaxMissed)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		start := time.Now()
		found, err := Browse(ctx, cfg.Browse)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			log.Debug("mDNS browse round failed", "err", err)
		}
		if tb.round(found) {
			update(tb.list())
		}
		timer.Reset(max(0, interval-time.Since(start)))
	}
}

// table is the state of [Watch]: the instances seen, by name, and how many
// rounds each has missed since it last answered. It is not safe for
// concurrent use.
type table struct {
	maxMissed int
	m         map[string]*tableEntry
}

type tableEntry struct {
	inst   Instance
	missed int
}

func newTable(maxMissed int) *table {
	if maxMissed <= 0 {
		maxMissed = DefaultMaxMissed
	}
	return &table{maxMissed: maxMissed, m: make(map[string]*tableEntry)}
}

// round records the instances found in one round and reports whether the
// set changed.
func (t *table) round(found []Instance) bool {
	changed := false
	seen := make(map[string]bool, len(found))
	for _, inst := range found {
		seen[inst.Name] = true
		e, ok := t.m[inst.Name]
		switch {
		case ok:
			e.missed = 0
			if !sameInstance(e.inst, inst) {
				e.inst = inst
				changed = true
			}
		case len(t.m) < maxInstances:
			t.m[inst.Name] = &tableEntry{inst: inst}
			changed = true
		}
	}
	for name, e := range t.m {
		if seen[name] {
			continue
		}
		if e.missed++; e.missed >= t.maxMissed {
			delete(t.m, name)
			changed = true
		}
	}
	return changed
}

// list returns the current instances sorted by name.
func (t *table) list() []Instance {
	out := make([]Instance, 0, len(t.m))
	for _, e := range t.m {
		out = append(out, e.inst)
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func sameInstance(a, b Instance) bool {
	return a.Name == b.Name && a.Host == b.Host && a.ProxyPort == b.ProxyPort &&
		a.APIPort == b.APIPort && a.PeerPort == b.PeerPort && a.ID == b.ID && a.Version == b.Version &&
		a.Fingerprint == b.Fingerprint && slices.Equal(a.Addrs, b.Addrs) && slices.Equal(a.Text, b.Text)
}
