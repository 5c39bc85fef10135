package wsman

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [Config].
const (
	DefaultTimeout     = 15 * time.Second
	DefaultLongTimeout = 60 * time.Second
	DefaultQueueLen    = 16
	DefaultMaxDevices  = 64
	DefaultIdleTimeout = 30 * time.Second
)

// Config configures a [Client]. Dial and Credentials are required; zero
// values of the other fields take defaults.
type Config struct {
	// Dial opens a connection to the named device's WS-Man port (16992).
	// In Presence it opens an APF channel through the server.
	Dial func(ctx context.Context, device string) (net.Conn, error)
	// Credentials returns the AMT account for the device. It is called
	// once for every call, from the device's turn on the queue, so it
	// should be quick (a vault with a cache).
	Credentials func(ctx context.Context, device string) (Credentials, error)
	// Timeout is the deadline of a call whose context has none (waiting
	// for its turn included). Default [DefaultTimeout].
	Timeout time.Duration
	// LongTimeout replaces Timeout for the Client methods that make many
	// requests: Boot, Version, Hardware, EventLog, AuditLog, Features and
	// SetFeatures. Default [DefaultLongTimeout].
	LongTimeout time.Duration
	// QueueLen caps the calls waiting for one device; one more fails with
	// [ErrQueueFull]. Default [DefaultQueueLen].
	QueueLen int
	// MaxDevices caps the devices served at once by the client; the
	// calls of other devices wait for a slot within their deadline.
	// Default [DefaultMaxDevices].
	MaxDevices int
	// IdleTimeout closes a device's connection after it has been idle that
	// long (AMT and the simulator close idle connections after about 60
	// s). Default [DefaultIdleTimeout].
	IdleTimeout time.Duration
	// Limits caps what a device's answers may hold; zero fields take
	// [DefaultLimits].
	Limits Limits
	// Logger receives debug logs of redials and re-authentications; nil
	// discards them.
	Logger *slog.Logger
}

// Limits caps what a device's answers may hold. Answers beyond a limit fail
// with [ErrMalformed].
type Limits struct {
	MaxBody    int64 // bytes of an HTTP body
	MaxDepth   int   // XML element nesting
	MaxTokens  int   // XML tokens in one answer
	MaxPulls   int   // requests of one Enumerate/Pull or log-reading loop
	MaxItems   int   // instances one enumeration may return
	MaxRecords int   // records of the event log or the audit log
	MaxRecord  int   // bytes of one decoded log record
}

// DefaultLimits are the limits of a zero [Limits] field.
var DefaultLimits = Limits{
	MaxBody:    4 << 20,
	MaxDepth:   32,
	MaxTokens:  500_000,
	MaxPulls:   1024,
	MaxItems:   4096,
	MaxRecords: 10_000,
	MaxRecord:  4096,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxBody > 0 {
		d.MaxBody = l.MaxBody
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.MaxTokens > 0 {
		d.MaxTokens = l.MaxTokens
	}
	if l.MaxPulls > 0 {
		d.MaxPulls = l.MaxPulls
	}
	if l.MaxItems > 0 {
		d.MaxItems = l.MaxItems
	}
	if l.MaxRecords > 0 {
		d.MaxRecords = l.MaxRecords
	}
	if l.MaxRecord > 0 {
		d.MaxRecord = l.MaxRecord
	}
	return d
}

// Client is a WS-Man client for many devices, each named by the string its
// Dial function understands (in Presence a GUID). Its methods are safe for
// concurrent use. Close it to end its connections.
type Client struct {
	cfg Config
	lim Limits
	log *slog.Logger
	sem chan struct{} // a slot per device served at once

	ctx    context.Context // cancelled by Close; ends every call
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // the device workers

	key   [32]byte      // keys the fingerprints of rejected credentials
	msgID atomic.Uint64 // the last MessageID number
	idPfx string

	mu      sync.Mutex // guards devs and the scheduling fields of each device
	devs    map[string]*device
	closing bool

	enqueued func() // a test hook: called after a call is queued
}

// device is the client's state for one device.
type device struct {
	name string

	// Guarded by Client.mu.
	queue    []*job
	running  bool        // a worker is serving the queue
	idle     *time.Timer // closes conn after IdleTimeout
	idleGen  uint64      // which arming of idle may close conn
	rejected [][32]byte  // fingerprints of credentials the device rejected

	// Owned by the running worker (and, while none runs, by the idle
	// timer under Client.mu).
	conn   *conn
	auth   digest
	server string // the last Server header
}

// maxRejected caps the rejected credentials remembered per device.
const maxRejected = 8

// job is one call on a device's queue.
type job struct {
	ctx   context.Context
	f     func(ctx context.Context, s *Session) error
	state atomic.Int32 // jobQueued, then jobRunning or jobAbandoned
	done  chan error   // buffered; receives the result of a run job
}

const (
	jobQueued int32 = iota
	jobRunning
	jobAbandoned
)

// New returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Dial == nil || cfg.Credentials == nil {
		return nil, errors.New("wsman: Config.Dial and Config.Credentials are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.LongTimeout <= 0 {
		cfg.LongTimeout = DefaultLongTimeout
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.MaxDevices <= 0 {
		cfg.MaxDevices = DefaultMaxDevices
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	c := &Client{
		cfg:  cfg,
		lim:  cfg.Limits.withDefaults(),
		log:  cfg.Logger,
		sem:  make(chan struct{}, cfg.MaxDevices),
		devs: map[string]*device{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.WithGroup("wsman")
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	rand.Read(c.key[:])
	var p [6]byte
	rand.Read(p[:])
	c.idPfx = "uuid:" + hex.EncodeToString(p[:4]) + "-8086-4d50-" + hex.EncodeToString(p[4:]) + "-"
	return c, nil
}

// Close ends every call (they fail with [ErrClosed]), closes the
// connections and waits for the device workers. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.cancel(ErrClosed)
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, d := range c.devs {
		if d.idle != nil {
			d.idle.Stop()
		}
		if d.conn != nil {
			d.conn.close()
			d.conn = nil
		}
		for _, j := range d.queue {
			if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
				j.done <- ErrClosed
			}
		}
		delete(c.devs, name)
	}
	return nil
}

// Forget drops what the client holds for the device: its connection, its
// digest nonce and the credentials it rejected (so a call with them asks the
// device again, as after unlocking the account on the device).
func (c *Client) Forget(device string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.devs[device]
	if d == nil {
		return
	}
	d.rejected = nil
	if !d.running {
		if d.conn != nil {
			d.conn.close()
			d.conn = nil
		}
		d.auth = digest{}
		c.drop(d)
	}
}

// Stats is a snapshot of a client's load.
type Stats struct {
	Devices int // devices the client holds state for
	Running int // devices whose calls are being served or waiting for a slot
	Queued  int // calls waiting on device queues
	Conns   int // open connections
}

// Stats returns a snapshot of the client's load.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{Devices: len(c.devs)}
	for _, d := range c.devs {
		if d.running {
			st.Running++
		} else if d.conn != nil {
			st.Conns++ // a running device's conn belongs to its worker
		}
		st.Queued += len(d.queue)
	}
	return st
}

// Do runs f on the device's queue: after the calls queued before it, and
// with the device to itself until f returns. The context bounds the wait
// for the turn and everything f does; without a deadline it gets
// [Config].Timeout. f must not keep s after it returns.
func (c *Client) Do(ctx context.Context, device string, f func(ctx context.Context, s *Session) error) error {
	return c.do(ctx, device, c.cfg.Timeout, f)
}

// do is Do with the timeout for a context without a deadline.
func (c *Client) do(ctx context.Context, device string, timeout time.Duration, f func(ctx context.Context, s *Session) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(c.ctx, func() { cancel(ErrClosed) })
	defer stop()

	j := &job{ctx: ctx, f: f, done: make(chan error, 1)}
	if err := c.enqueue(device, j); err != nil {
		return err
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			return ctxErr(ctx, "wait", nil)
		}
		return <-j.done // it runs under ctx and ends promptly
	}
}

// enqueue puts j on the device's queue and starts its worker if none runs.
func (c *Client) enqueue(name string, j *job) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return ErrClosed
	}
	d := c.devs[name]
	if d == nil {
		d = &device{name: name}
		c.devs[name] = d
	}
	if len(d.queue) >= c.cfg.QueueLen {
		return fmt.Errorf("%w (%d queued)", ErrQueueFull, len(d.queue))
	}
	d.queue = append(d.queue, j)
	if !d.running {
		d.running = true
		d.idleGen++ // disarm a pending idle close
		if d.idle != nil {
			d.idle.Stop()
		}
		c.wg.Add(1)
		go c.work(d)
	}
	if c.enqueued != nil {
		c.enqueued()
	}
	return nil
}

// work serves the device's queue until it is empty. The device's state is
// settled before the last result is handed over, so a caller that sees its
// call return sees the device idle.
func (c *Client) work(d *device) {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if len(d.queue) == 0 {
			c.idleLocked(d)
			c.mu.Unlock()
			return
		}
		j := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		c.mu.Unlock()
		if !j.state.CompareAndSwap(jobQueued, jobRunning) {
			continue // abandoned while queued
		}
		err := c.run(d, j)
		c.mu.Lock()
		last := len(d.queue) == 0
		if last {
			c.idleLocked(d)
		}
		c.mu.Unlock()
		j.done <- err
		if last {
			return
		}
	}
}

// idleLocked ends the worker's hold on the device: it keeps the connection
// and the nonce for IdleTimeout, or forgets the device. c.mu is held.
func (c *Client) idleLocked(d *device) {
	d.running = false
	if !c.closing && (d.conn != nil || d.auth.ch.nonce != "") {
		d.idleGen++
		gen := d.idleGen
		d.idle = time.AfterFunc(c.cfg.IdleTimeout, func() { c.closeIdle(d, gen) })
		return
	}
	c.drop(d)
}

// drop forgets an idle device that holds nothing worth keeping (its nonce
// is not). c.mu is held.
func (c *Client) drop(d *device) {
	if !d.running && len(d.queue) == 0 && d.conn == nil && len(d.rejected) == 0 && c.devs[d.name] == d {
		delete(c.devs, d.name)
	}
}

// closeIdle closes the device's connection and forgets its nonce if it has
// stayed idle since the arming gen.
func (c *Client) closeIdle(d *device, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.running || d.idleGen != gen {
		return
	}
	if d.conn != nil {
		d.conn.close()
		d.conn = nil
	}
	d.auth = digest{}
	c.drop(d)
}

// run runs one job: it waits for a client-wide slot, gets the credentials,
// refuses credentials the device rejected before, and calls the job.
func (c *Client) run(d *device, j *job) error {
	ctx := j.ctx
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctxErr(ctx, "wait", nil)
	}
	defer func() { <-c.sem }()
	if err := ctx.Err(); err != nil {
		return ctxErr(ctx, "wait", nil)
	}
	cr, err := c.cfg.Credentials(ctx, d.name)
	if err != nil {
		return fmt.Errorf("wsman: the AMT credentials of %q: %w", d.name, err)
	}
	fp := c.fingerprint(cr)
	c.mu.Lock()
	refused := d.isRejected(fp)
	c.mu.Unlock()
	if refused {
		return &CredentialsError{User: cr.User, Refused: true}
	}
	s := &Session{c: c, d: d, cr: cr, fp: fp}
	err = j.f(ctx, s)
	s.cr = Credentials{}
	s.d = nil // a Session kept beyond its job fails instead of racing
	return err
}

// fingerprint keys credentials without keeping the password.
func (c *Client) fingerprint(cr Credentials) [32]byte {
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(cr.User))
	m.Write([]byte{0})
	m.Write([]byte(cr.Password))
	var fp [32]byte
	copy(fp[:], m.Sum(nil))
	return fp
}

func (d *device) isRejected(fp [32]byte) bool {
	for _, r := range d.rejected {
		if hmac.Equal(r[:], fp[:]) {
			return true
		}
	}
	return false
}

// reject remembers credentials the device rejected. c.mu is held.
func (d *device) reject(fp [32]byte) {
	if d.isRejected(fp) {
		return
	}
	if len(d.rejected) == maxRejected {
		d.rejected = d.rejected[1:]
	}
	d.rejected = append(d.rejected, fp)
}

// ctxErr returns the error for a call whose context ended during op: the
// client's closing, the caller's cancellation, or a [*TunnelError] for the
// deadline. cause is the I/O error, if any.
func ctxErr(ctx context.Context, op string, cause error) error {
	switch c := context.Cause(ctx); {
	case errors.Is(c, ErrClosed):
		return ErrClosed
	case errors.Is(ctx.Err(), context.Canceled):
		return ctx.Err()
	case cause == nil:
		return &TunnelError{Op: op, Err: context.DeadlineExceeded}
	}
	return &TunnelError{Op: op, Err: fmt.Errorf("%w: %v", context.DeadlineExceeded, cause)}
}
