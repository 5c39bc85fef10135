package history

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors callers branch on.
var (
	// ErrLocked means another process (or another Store in this one) holds
	// the file. The caller adds which data dir.
	ErrLocked = errors.New("history: another Presence is using this data dir")
	// ErrClosed is returned by calls on a closed Store.
	ErrClosed = errors.New("history: store closed")
	// ErrFormat means the file was written by a newer Presence with a
	// layout this one does not know.
	ErrFormat = errors.New("history: file written by a newer Presence")
)

// Defaults of [Options].
const (
	DefaultTimeout       = time.Second
	DefaultMaxAge        = 90 * 24 * time.Hour
	DefaultMaxBytes      = 256 << 20
	DefaultQueueSize     = 64 << 10
	DefaultBatchSize     = 1000
	DefaultBatchInterval = 100 * time.Millisecond
	DefaultPruneInterval = time.Hour
)

// Options configure a [Store]. The zero value means the defaults.
type Options struct {
	// Timeout is how long Open waits for the file lock before it returns
	// ErrLocked (default 1 s).
	Timeout time.Duration
	// MaxAge is how long records are kept (default 90 days; negative: no
	// age limit).
	MaxAge time.Duration
	// MaxBytes caps the data in the file (default 256 MiB; negative: no
	// cap). When it is exceeded the oldest records go, down to 90 % of it.
	MaxBytes int64
	// QueueSize is how many records wait for the writer before Add drops
	// (default 65,536: 10,000 devices reconnecting at once queue about
	// 20,000).
	QueueSize int
	// BatchSize and BatchInterval bound a batch: the writer commits once it
	// holds BatchSize records or BatchInterval after the batch's first one
	// (defaults 1,000 and 100 ms).
	BatchSize     int
	BatchInterval time.Duration
	// PruneInterval is how often the writer applies MaxAge and MaxBytes
	// after Open did (default 1 h; negative: only on Open).
	PruneInterval time.Duration
	// Logger receives write and prune failures; nil discards them.
	Logger *slog.Logger

	// compactMinFree is the free space the file must have before Open
	// compacts it (tests lower it).
	compactMinFree int64
	// now is the clock (tests replace it).
	now func() time.Time
}

// compactMinFree is the default of Options.compactMinFree: Open compacts
// the file when more than half of it, and more than this, is free.
const compactMinFree = 16 << 20

func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Timeout, DefaultTimeout)
	def(&o.MaxAge, DefaultMaxAge)
	def(&o.BatchInterval, DefaultBatchInterval)
	def(&o.PruneInterval, DefaultPruneInterval)
	if o.Timeout < 0 {
		// bbolt waits forever without a timeout; never do that.
		o.Timeout = DefaultTimeout
	}
	if o.BatchInterval < 0 {
		o.BatchInterval = DefaultBatchInterval
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.compactMinFree == 0 {
		o.compactMinFree = compactMinFree
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// Stats are a Store's counters.
type Stats struct {
	Queued    int    // records waiting for the writer
	Committed uint64 // records written
	Dropped   uint64 // records Add or AddSession dropped: the queue was full, or the store closed
	Failed    uint64 // records lost because their batch failed to commit
	Batches   uint64 // transactions committed by the writer
	Pruned    uint64 // records deleted by retention
}

// Store is the history file. Its methods are safe for concurrent use. Add
// and AddSession never wait for the disk; queries read the file directly
// and see what the writer has committed. Make one with [Open]; the zero
// value is not usable.
type Store struct {
	db   *bolt.DB
	path string
	opts Options

	q    chan item
	stop chan struct{} // closed by Close: the writer drains q and exits
	done chan struct{} // closed by the writer when it exits

	// mu guards closed. Add holds it (shared) only around a non-blocking
	// send, so Close never waits long and Add never waits for Close.
	mu     sync.RWMutex
	closed bool

	closeOnce sync.Once
	closeErr  error

	committed, dropped, failed, batches, pruned atomic.Uint64

	// testHookCommit, when set, runs in the writer before each batch's
	// transaction.
	testHookCommit func()
}

// item is one queue entry: an event, a session or a flush marker.
type item struct {
	ev    *TunnelEvent
	s     *SessionRecord
	flush chan error
}

// Open opens (creating it if needed) the history file at path with mode
// 0600, applies retention, compacts the file when most of it is free, and
// starts the writer. If another process holds the file for longer than
// opts.Timeout, the error wraps ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	db, err := openDB(path, opts.Timeout)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:   db,
		path: path,
		opts: opts,
		q:    make(chan item, opts.QueueSize),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if err := s.init(); err != nil {
		s.db.Close()
		if errors.Is(err, ErrFormat) {
			return nil, err
		}
		return nil, fmt.Errorf("history: open %s: %w", path, err)
	}
	if err := s.prune(opts.now()); err != nil {
		// Old records stay until the next prune; the history still works.
		opts.Logger.Warn("history: prune", "path", path, "err", err)
	}
	if err := s.maybeCompact(); err != nil {
		// The file is intact, only larger than it needs to be.
		opts.Logger.Warn("history: compact", "path", path, "err", err)
	}
	go s.run()
	return s, nil
}

// openDB opens path and takes its lock. If the file was replaced while we
// waited for the lock (another process compacted it and renamed the copy
// over it), the lock we hold is on the old file: try again.
func openDB(path string, timeout time.Duration) (*bolt.DB, error) {
	for range 3 {
		before, statErr := os.Stat(path)
		db, err := bolt.Open(path, 0o600, &bolt.Options{
			Timeout:      timeout,
			FreelistType: bolt.FreelistMapType,
		})
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w (%s)", ErrLocked, path)
		}
		if err != nil {
			return nil, fmt.Errorf("history: open %s: %w", path, err)
		}
		after, err := os.Stat(path)
		if err == nil && (statErr != nil || os.SameFile(before, after)) {
			return db, nil
		}
		db.Close()
	}
	return nil, fmt.Errorf("history: open %s: the file keeps being replaced", path)
}

// init creates the buckets and checks the format.
func (s *Store) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keyFormat); len(v) == 1 && v[0] > formatVersion {
			return fmt.Errorf("%w: %s has format %d, this one knows %d", ErrFormat, s.path, v[0], formatVersion)
		} else if v == nil {
			if err := meta.Put(keyFormat, []byte{formatVersion}); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketEvents, bucketEventsDevice, bucketSessions, bucketSessionDevice, bucketSessionUser} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Add queues ev for the writer and reports whether it was queued. It never
// blocks: when the queue is full, or the store is closed, ev is dropped and
// counted in Stats().Dropped. A zero Time means now. Strings are cut to
// 1 KiB (the device name to 255 bytes) and Ports to 256 entries.
func (s *Store) Add(ev TunnelEvent) bool {
	return s.enqueue(item{ev: ev.normalize(s.opts.now)})
}

// AddSession queues a session record like Add. A zero Start means End, or
// now.
func (s *Store) AddSession(rec SessionRecord) bool {
	return s.enqueue(item{s: rec.normalize(s.opts.now)})
}

func (s *Store) enqueue(it item) bool {
	s.mu.RLock()
	ok := false
	if !s.closed {
		select {
		case s.q <- it:
			ok = true
		default:
		}
	}
	s.mu.RUnlock()
	if !ok {
		s.dropped.Add(1)
	}
	return ok
}

// Flush waits until every record queued before the call is committed, and
// returns the error of the batch that held the last of them, if any.
func (s *Store) Flush(ctx context.Context) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	m := make(chan error, 1)
	select {
	case s.q <- item{flush: m}:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-m:
		return err
	case <-s.done:
		// The writer drained the queue before it exited, marker included;
		// look once more in case it answered just before.
		select {
		case err := <-m:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Queued:    len(s.q),
		Committed: s.committed.Load(),
		Dropped:   s.dropped.Load(),
		Failed:    s.failed.Load(),
		Batches:   s.batches.Load(),
		Pruned:    s.pruned.Load(),
	}
}

// Close commits what is queued, stops the writer and closes the file. It
// is idempotent: later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		<-s.done
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// isClosed reports whether Close has begun; queries then return ErrClosed.
func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// run is the writer: the only goroutine that writes to the file after
// Open. It commits batches, answers flush markers after the batch before
// them committed, prunes on a ticker, and on stop drains the queue.
func (s *Store) run() {
	defer close(s.done)
	var pruneC <-chan time.Time
	if s.opts.PruneInterval > 0 {
		t := time.NewTicker(s.opts.PruneInterval)
		defer t.Stop()
		pruneC = t.C
	}
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()

	var b batch
	for {
		select {
		case it := <-s.q:
			if b.add(it) {
				linger.Reset(s.opts.BatchInterval)
			}
		case <-linger.C:
			s.commit(&b)
		case <-pruneC:
			s.commit(&b)
			if err := s.prune(s.opts.now()); err != nil {
				s.opts.Logger.Warn("history: prune", "path", s.path, "err", err)
			}
		case <-s.stop:
			// Close set closed before stop: nothing new arrives but
			// flush markers, which wait on done.
			for {
				select {
				case it := <-s.q:
					b.add(it)
					if b.full(s.opts.BatchSize) {
						s.commit(&b)
					}
				default:
					s.commit(&b)
					return
				}
			}
		}
		if b.full(s.opts.BatchSize) || len(b.flushes) > 0 {
			s.commit(&b)
			linger.Stop()
		}
	}
}

// batch is what the writer holds between commits.
type batch struct {
	evs     []*TunnelEvent
	ss      []*SessionRecord
	flushes []chan error
}

// add adds it and reports whether it is the batch's first record.
func (b *batch) add(it item) (first bool) {
	first = len(b.evs)+len(b.ss) == 0
	switch {
	case it.ev != nil:
		b.evs = append(b.evs, it.ev)
	case it.s != nil:
		b.ss = append(b.ss, it.s)
	default:
		b.flushes = append(b.flushes, it.flush)
		return false
	}
	return first
}

func (b *batch) full(n int) bool { return len(b.evs)+len(b.ss) >= n }

// commit writes the batch in one transaction and answers its flush
// markers.
func (s *Store) commit(b *batch) {
	var err error
	if n := len(b.evs) + len(b.ss); n > 0 {
		if s.testHookCommit != nil {
			s.testHookCommit()
		}
		err = s.db.Update(func(tx *bolt.Tx) error { return writeBatch(tx, b.evs, b.ss) })
		if err != nil {
			s.failed.Add(uint64(n))
			s.opts.Logger.Warn("history: write", "path", s.path, "records", n, "err", err)
			err = fmt.Errorf("history: write %d records: %w", n, err)
		} else {
			s.committed.Add(uint64(n))
			s.batches.Add(1)
		}
	}
	for _, m := range b.flushes {
		m <- err
	}
	clear(b.evs)
	clear(b.ss)
	clear(b.flushes)
	b.evs, b.ss, b.flushes = b.evs[:0], b.ss[:0], b.flushes[:0]
}

// writeBatch puts events and sessions with their index entries. Index
// keys are put in order: bbolt then walks each leaf page once.
func writeBatch(tx *bolt.Tx, evs []*TunnelEvent, ss []*SessionRecord) error {
	var index [][]byte
	if len(evs) > 0 {
		events := tx.Bucket(bucketEvents)
		// Events arrive nearly in time order: pack the pages they fill.
		events.FillPercent = 0.9
		seq := events.Sequence()
		for _, ev := range evs {
			seq++
			id := appendID(make([]byte, 0, idLen), nanos(ev.Time), seq)
			// A fresh value each time: bbolt keeps the slices it is given
			// until the transaction ends.
			if err := events.Put(id, appendEvent(nil, ev)); err != nil {
				return err
			}
			index = append(index, indexKey(ev.Device, id))
		}
		if err := events.SetSequence(seq); err != nil {
			return err
		}
		if err := putSorted(tx.Bucket(bucketEventsDevice), index); err != nil {
			return err
		}
	}
	if len(ss) > 0 {
		sessions := tx.Bucket(bucketSessions)
		sessions.FillPercent = 0.9
		byDevice, byUser := tx.Bucket(bucketSessionDevice), tx.Bucket(bucketSessionUser)
		var devIndex, userIndex [][]byte
		for _, rec := range ss {
			id := appendID(make([]byte, 0, idLen), nanos(rec.Start), rec.ID)
			if old := sessions.Get(id); old != nil {
				// A replaced record: drop its index entries (they may
				// name another device or user).
				if o, err := decodeSession(old); err == nil {
					if err := deleteSessionIndex(byDevice, byUser, &o, id); err != nil {
						return err
					}
				}
			}
			if err := sessions.Put(id, appendSession(nil, rec)); err != nil {
				return err
			}
			devIndex = append(devIndex, indexKey(rec.Device, id))
			if rec.User != "" {
				userIndex = append(userIndex, indexKey(rec.User, id))
			}
		}
		if err := putSorted(byDevice, devIndex); err != nil {
			return err
		}
		if err := putSorted(byUser, userIndex); err != nil {
			return err
		}
	}
	return nil
}

func putSorted(b *bolt.Bucket, keys [][]byte) error {
	slices.SortFunc(keys, bytes.Compare)
	for _, k := range keys {
		// An empty value, not nil: bbolt.Compact takes a nil value for a
		// bucket.
		if err := b.Put(k, []byte{}); err != nil {
			return err
		}
	}
	return nil
}

func deleteSessionIndex(byDevice, byUser *bolt.Bucket, rec *SessionRecord, id []byte) error {
	if err := byDevice.Delete(indexKey(rec.Device, id)); err != nil {
		return err
	}
	if rec.User != "" {
		return byUser.Delete(indexKey(rec.User, id))
	}
	return nil
}
