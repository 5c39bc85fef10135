package etcdstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/presence-mps/presence/mps/fleet"
)

// Defaults and limits.
const (
	// DefaultPrefix is where the keys live when Config.Prefix is empty.
	DefaultPrefix = "/presence/"
	// DefaultTTL is the instance lease's TTL when Config.TTL is zero.
	DefaultTTL = 10 * time.Second
	// MinTTL is the shortest TTL etcd grants with its default ticks.
	MinTTL = 2 * time.Second
	// DefaultQueueSize is how many devices may wait for a commit when
	// Config.QueueSize is zero.
	DefaultQueueSize = 1 << 16

	// maxOps is etcd's default --max-txn-ops: the most puts or deletes in
	// one Txn.
	maxOps = 128
	// maxDevices and maxMembers bound the local copy of the table.
	maxDevices = 1 << 20
	maxMembers = 1 << 10
	// listPage is how many keys one Get of the initial list reads.
	listPage = 1000
	// maxRecv bounds one response from etcd.
	maxRecv = 16 << 20
)

// Config configures a [Store].
type Config struct {
	// Endpoints are etcd's client URLs, http://HOST:PORT. Required.
	Endpoints []string
	// Prefix is where the keys live; DefaultPrefix when empty. A missing
	// trailing "/" is added.
	Prefix string
	// Self is this instance as the fleet sees it; Self.ID is required.
	Self fleet.Member
	// TTL is the lease's TTL, rounded up to whole seconds; DefaultTTL
	// when zero, at least MinTTL. A dead instance's keys go within about
	// TTL + 0.5 s.
	TTL time.Duration
	// QueueSize bounds how many devices may wait for a commit (while etcd
	// is unreachable, say); DefaultQueueSize when zero. Past it the store
	// still holds the devices and commits them once the queue drains.
	QueueSize int
	// Logger gets the state changes and bad values; nil means discard.
	Logger *slog.Logger
	// Moved is called when a device this instance holds was claimed by a
	// newer connection elsewhere: mine is our claim, newer the one that
	// won. The caller closes mine's tunnel with reason "moved". Optional.
	Moved func(mine, newer fleet.Owner)
	// Changed is called after the table ([Store.Lookup], [Store.Members])
	// or [Store.Status] changed. Optional.
	//
	// Moved and Changed are called from one goroutine, in order, never
	// under a lock of the Store's; they may call any method but Close. A
	// slow callback delays later callbacks, nothing else.
	Changed func()
}

// Store is this instance's view of the fleet's ownership table in etcd. It
// is safe for concurrent use. Make one with [Open]; the zero value is not
// usable.
type Store struct {
	log       *slog.Logger
	cli       *clientv3.Client
	k         keys
	self      fleet.Member
	selfVal   []byte
	ttl       time.Duration
	opTimeout time.Duration
	queueCap  int
	onMoved   func(mine, newer fleet.Owner)
	onChanged func()

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	workc  chan struct{}         // cap 1: the worker has something to do
	renewc chan clientv3.LeaseID // cap 1: that lease is gone, open a new session
	notec  chan struct{}         // cap 1: callbacks are waiting

	mu         sync.Mutex
	closed     bool
	held       map[string]*holding // the devices this instance holds
	pending    map[string]struct{} // GUIDs waiting for the worker
	order      []string            // pending, in arrival order
	releases   map[string]release  // GUIDs to delete, if still ours
	overflow   bool                // some held devices did not fit the queue
	lease      clientv3.LeaseID    // the current session's lease, or NoLease
	gen        uint64              // sessions opened so far
	memberGen  uint64              // the session whose member key is written
	oldLeases  []clientv3.LeaseID  // lost sessions' leases, to revoke
	connReady  bool                // the gRPC connection is up
	opErr      error               // the last etcd call failed with this
	st         status
	downLogged bool // this outage was logged

	tmu sync.RWMutex
	tab *table // the local copy of the table, nil until listed

	nmu     sync.Mutex
	moved   []movedEvent
	changed bool

	bad badValues

	txns    atomic.Uint64 // Txns committed (benchmarks, tests)
	commits atomic.Uint64 // device claims committed
}

// holding is a device this instance holds: the claim and the exact bytes
// it writes.
type holding struct {
	o         fleet.Owner
	val       []byte
	committed bool // etcd holds val for it (as far as we know)
}

// release is a guarded delete: of the key if it still holds val, or (for
// a key found ours in the table but no longer held) if it is unchanged
// since modRev.
type release struct {
	val    []byte
	modRev int64
}

type movedEvent struct{ mine, newer fleet.Owner }

// status is what Status reports, and the state last logged.
type status struct {
	connected bool
	since     time.Time
	lastErr   error
}

// Open starts a Store: it connects to etcd in the background and returns
// at once; while etcd is unreachable the store keeps the claims and
// [Store.Status] says so. It fails only on a bad Config.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no endpoints")
	}
	if err := checkMember(cfg.Self); err != nil {
		return nil, fmt.Errorf("etcdstore: self: %v", err)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if !validText(prefix, maxPrefix) {
		return nil, errors.New("etcdstore: bad prefix")
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	ttl = max(ttl, MinTTL)
	ttl = (ttl + time.Second - 1).Truncate(time.Second)
	queueCap := cfg.QueueSize
	if queueCap <= 0 {
		queueCap = DefaultQueueSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	selfVal, err := json.Marshal(cfg.Self)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: %v", err)
	}
	opTimeout := min(max(ttl/2, 2*time.Second), 5*time.Second)

	// New does not dial: the connection comes up in the background.
	// RejectOldCluster stays false: it refuses etcd 3.4.
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            slices.Clone(cfg.Endpoints),
		DialTimeout:          opTimeout,
		DialKeepAliveTime:    10 * time.Second, // gRPC's minimum
		DialKeepAliveTimeout: 3 * time.Second,
		PermitWithoutStream:  true,
		MaxCallRecvMsgSize:   maxRecv,
		Logger:               zap.NewNop(),
		DialOptions: []grpc.DialOption{
			// Back within a second or so of etcd's return, not gRPC's
			// default of up to two minutes.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: opTimeout,
			}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		log:       log,
		cli:       cli,
		k:         newKeys(prefix),
		self:      cfg.Self,
		selfVal:   selfVal,
		ttl:       ttl,
		opTimeout: opTimeout,
		queueCap:  queueCap,
		onMoved:   cfg.Moved,
		onChanged: cfg.Changed,
		cancel:    cancel,
		workc:     make(chan struct{}, 1),
		renewc:    make(chan clientv3.LeaseID, 1),
		notec:     make(chan struct{}, 1),
		held:      make(map[string]*holding),
		pending:   make(map[string]struct{}),
		releases:  make(map[string]release),
		st:        status{since: time.Now()},
	}
	s.bad.log = log
	s.wg.Add(5)
	go s.sessions(ctx)
	go s.work(ctx)
	go s.watch(ctx)
	go s.watchConn(ctx)
	go s.notifier(ctx)
	return s, nil
}

// Close revokes the lease, so this instance's keys go at once, and returns
// after every goroutine the Store started has ended (within about 2 s of
// the revoke). Claims not yet committed are dropped. While etcd is
// unreachable it skips the revoke, and the keys go when the lease expires.
// It is idempotent; later calls return the first call's error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(true) })
	return s.closeErr
}

// crashForTest stops the Store as kill -9 would leave it: no revoke, so
// its keys stay until the lease expires. It counts as Close.
func (s *Store) crashForTest() {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(false) })
}

// revokeTimeout bounds Close's revoke, so that a shutdown budget of a few
// seconds holds even when etcd does not answer.
const revokeTimeout = 2 * time.Second

func (s *Store) shutdown(revoke bool) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()

	// The goroutines have ended: lease, oldLeases and connReady are final.
	// Without a connection the revoke could only time out; the lease
	// expires instead.
	var err error
	if revoke && s.connReady {
		ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
		for _, id := range append([]clientv3.LeaseID{s.lease}, s.oldLeases...) {
			if id == clientv3.NoLease {
				continue
			}
			if _, rerr := s.cli.Revoke(ctx, id); rerr != nil && !isLeaseGone(rerr) && err == nil {
				err = fmt.Errorf("etcdstore: revoke lease: %v", rerr)
			}
		}
		cancel()
	}
	if cerr := s.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) && err == nil {
		err = fmt.Errorf("etcdstore: close client: %v", cerr)
	}
	return err
}

// Claim records that this instance holds o's device and commits that to
// etcd in the background; it never blocks on etcd. o.Instance must be this
// instance's id (or empty, meaning this instance). A claim older than one
// already held for the device is ignored. If etcd holds a newer connection
// of the device, [Config.Moved] is called with o.
func (s *Store) Claim(o fleet.Owner) {
	o, ok := s.own(o, "claim")
	if !ok {
		return
	}
	val, err := json.Marshal(o)
	if err != nil {
		s.log.Error("etcdstore: claim: encode", "device", o.GUID, "err", err)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if h := s.held[o.GUID]; h != nil && h.o.Newer(o) {
		s.mu.Unlock()
		return
	}
	s.held[o.GUID] = &holding{o: o, val: val}
	delete(s.releases, o.GUID)
	s.enqueueLocked(o.GUID)
	s.mu.Unlock()
	s.wake()
}

// Release records that o's tunnel is gone, and deletes the device's key in
// the background if it still holds o: a late release never deletes a newer
// owner's key. A release of a connection this instance has since replaced
// with a newer one is ignored.
func (s *Store) Release(o fleet.Owner) {
	o, ok := s.own(o, "release")
	if !ok {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var val []byte
	if h := s.held[o.GUID]; h != nil {
		if !h.o.Same(o) {
			s.mu.Unlock()
			return
		}
		delete(s.held, o.GUID)
		val = h.val // the exact bytes the claim wrote
	} else {
		var err error
		if val, err = json.Marshal(o); err != nil {
			s.mu.Unlock()
			return
		}
	}
	if s.enqueueLocked(o.GUID) {
		s.releases[o.GUID] = release{val: val}
	}
	s.mu.Unlock()
	s.wake()
}

// own checks an Owner handed to Claim or Release: normalized, ours, and
// within the limits. A bad host name is dropped rather than the claim.
func (s *Store) own(o fleet.Owner, op string) (fleet.Owner, bool) {
	o.GUID = fleet.NormalizeGUID(o.GUID)
	if o.Instance == "" {
		o.Instance = s.self.ID
	}
	if o.Instance != s.self.ID {
		s.log.Error("etcdstore: "+op+" for another instance ignored", "device", o.GUID, "instance", o.Instance)
		return o, false
	}
	if !validText(o.Host, maxField) {
		o.Host = ""
	}
	if err := checkOwner(o); err != nil {
		s.log.Warn("etcdstore: "+op+" ignored", "device", o.GUID, "err", err)
		return o, false
	}
	return o, true
}

// enqueueLocked adds guid to the worker's queue, and reports whether it is
// there. A full queue sets overflow: the worker comes back to the held
// devices it could not take, and reconcile to what it should delete.
func (s *Store) enqueueLocked(guid string) bool {
	if _, ok := s.pending[guid]; ok {
		return true
	}
	if len(s.pending) >= s.queueCap {
		s.overflow = true
		return false
	}
	s.pending[guid] = struct{}{}
	s.order = append(s.order, guid)
	return true
}

func (s *Store) wake() {
	select {
	case s.workc <- struct{}{}:
	default:
	}
}

// Lookup returns the instance holding guid's tunnel, as far as the local
// copy of the table knows; it does not ask etcd. A claim shows once it has
// committed, so callers check their own tunnels first.
func (s *Store) Lookup(guid string) (fleet.Owner, bool) {
	guid = fleet.NormalizeGUID(guid)
	s.tmu.RLock()
	defer s.tmu.RUnlock()
	if s.tab == nil {
		return fleet.Owner{}, false
	}
	e, ok := s.tab.devices[guid]
	return e.o, ok
}

// LookupHost is Lookup by the host name a device announced (case does not
// count). When two devices announce one name, the later one wins.
func (s *Store) LookupHost(name string) (fleet.Owner, bool) {
	s.tmu.RLock()
	defer s.tmu.RUnlock()
	if s.tab == nil {
		return fleet.Owner{}, false
	}
	guid, ok := s.tab.hosts[hostKey(name)]
	if !ok {
		return fleet.Owner{}, false
	}
	e, ok := s.tab.devices[guid]
	return e.o, ok
}

// Members returns the instances in the fleet, this one included once its
// key has committed, sorted by ID.
func (s *Store) Members() []fleet.Member {
	s.tmu.RLock()
	defer s.tmu.RUnlock()
	if s.tab == nil {
		return nil
	}
	out := make([]fleet.Member, 0, len(s.tab.members))
	for _, m := range s.tab.members {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b fleet.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Devices returns how many devices the local copy of the table holds.
func (s *Store) Devices() int {
	s.tmu.RLock()
	defer s.tmu.RUnlock()
	if s.tab == nil {
		return 0
	}
	return len(s.tab.devices)
}

// Status reports whether the store is connected to etcd with a live lease,
// since when that is so, and, while it is not, the last error. While it is
// not connected the instance serves its own devices only, and the others'
// entries are as last seen.
func (s *Store) Status() (connected bool, since time.Time, lastErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.connected, s.st.since, s.st.lastErr
}

// setStatusLocked recomputes the status after one of its inputs
// (connReady, lease, opErr) changed; cause, if not nil, is why it may be
// down. It returns a function that logs and reports a change, to be called
// after s.mu is released, or nil. "Unreachable" is logged once per outage,
// also when etcd was never reached.
func (s *Store) setStatusLocked(cause error) func() {
	up := s.connReady && s.lease != clientv3.NoLease && s.opErr == nil
	changed := up != s.st.connected
	if changed {
		s.st = status{connected: up, since: time.Now()}
	}
	if !up {
		s.st.lastErr = cmp.Or(cause, s.st.lastErr, s.opErr)
	}
	logDown := !up && !s.downLogged && s.st.lastErr != nil
	s.downLogged = !up && (s.downLogged || logDown)
	if !changed && !logDown {
		return nil
	}
	st := s.st
	return func() {
		if st.connected {
			s.log.Info("etcd: connected", "endpoints", s.cli.Endpoints())
		}
		if logDown {
			s.log.Warn("etcd: unreachable, serving this instance's devices only", "err", st.lastErr)
		}
		s.noteChanged()
	}
}

// opDone records that an etcd call succeeded (err == nil) or failed.
func (s *Store) opDone(err error) {
	s.mu.Lock()
	s.opErr = err
	report := s.setStatusLocked(err)
	s.mu.Unlock()
	if report != nil {
		report()
	}
}

// badValues logs values read from etcd that do not decode, at most once a
// second, with a count of those not logged.
type badValues struct {
	log     *slog.Logger
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (b *badValues) report(key string, err error) {
	b.mu.Lock()
	now := time.Now()
	if now.Sub(b.last) < time.Second {
		b.skipped++
		b.mu.Unlock()
		return
	}
	skipped := b.skipped
	b.last, b.skipped = now, 0
	b.mu.Unlock()
	if len(key) > maxLoggedKey {
		key = key[:maxLoggedKey] + "..."
	}
	b.log.Warn("etcd: ignoring a malformed value", "key", key, "err", err, "not_logged", skipped)
}

// maxLoggedKey bounds a key in a log line: keys are hostile input too.
const maxLoggedKey = 200

// pause is an exponential backoff from 100 ms to 1 s with jitter, kept
// short so that the store is whole again soon after etcd returns.
type pause struct{ d time.Duration }

func (p *pause) reset() { p.d = 0 }

// wait sleeps for the next interval and reports whether ctx is still
// alive.
func (p *pause) wait(ctx context.Context) bool {
	p.d = min(max(2*p.d, 100*time.Millisecond), time.Second)
	d := p.d/2 + rand.N(p.d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
