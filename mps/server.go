// Package mps is the Presence Management Presence Server engine: the CIRA
// listener, the registry of connected Intel AMT devices keyed by UUID, Dial
// to a device port, events for later consumers (history, GUI), and a graceful
// shutdown. It knows no GUI and no console protocol.
package mps

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/doctor"
	"github.com/presence-mps/presence/mps/internal/hub"
	"github.com/presence-mps/presence/mps/internal/timeheap"
	"github.com/presence-mps/presence/mps/tunnel"
)

// Config configures a [Server]. Zero fields take defaults; TLS and Tunnel.Auth
// are required.
type Config struct {
	// TLS is the CIRA listener's TLS configuration (see tunnel.TLSConfig).
	TLS *tls.Config
	// Tunnel holds the per-tunnel settings (auth, keepalive, idle timeout,
	// windows). Its TLS, OnReady, OnForwards and OnAuthFailure fields are set by the
	// server.
	Tunnel tunnel.Config
	// MaxTunnels caps concurrent tunnels, handshakes included (default 50,000).
	MaxTunnels int
	// MaxHandshakes caps concurrent TLS+APF handshakes (default 256); more
	// connections wait their turn, in order, for up to a minute
	// (maxSlotWait), and the handshake timeout runs from their turn.
	MaxHandshakes int
	// Tunnels, if set, is told of every tunnel that comes up (its ports
	// settled) and of its end, with the tunnel's number, which tells the
	// connections of one device apart. It is called synchronously from
	// the tunnel's goroutine and must not block (the fleet queues what it
	// does with it).
	Tunnels func(up bool, d Device, conn uint64)
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Doctor, if set, receives the server's findings about failed and
	// unhealthy connections; nil makes the server its own (see
	// [Server.Doctor]). New checks the certificate of TLS with it.
	Doctor *doctor.Doctor
}

// Errors returned by Dial and Disconnect.
var (
	ErrUnknownDevice = errors.New("mps: no connected device by that name")
	ErrServerClosed  = errors.New("mps: server closed")
)

// Server accepts CIRA tunnels and routes Dials to them. Its methods are safe
// for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	tcfg atomic.Pointer[tunnel.Config] // replaced whole by SetTunnelSettings
	sem  chan struct{}

	ctx    context.Context // cancelled by Shutdown; aborts handshakes
	cancel context.CancelFunc
	wg     sync.WaitGroup // every connection goroutine and accept loop

	mu        sync.Mutex // guards the fields below
	listeners []net.Listener
	devices   map[apf.UUID]*tunnel.Conn
	conns     map[*tunnel.Conn]uint64 // every accepted tunnel, registered or not, and its number
	raws      map[net.Conn]struct{}   // connections still in their handshake
	events    hub.Hub[Event]
	closing   bool
	aliases   map[string]apf.UUID // lower-case alias → device
	seq       uint64              // the number of the last accepted tunnel

	stats stats

	doctor    *doctor.Doctor
	legacy    tunnel.LegacyTLS          // devices allowed TLS 1.0/1.1 (SetLegacyDevices)
	suspects  map[*tunnel.Conn]struct{} // registered tunnels the sweep found silent; guarded by mu
	sweepOnce sync.Once
	silenceMu sync.Mutex // guards silences
	// silences are the sweep's checks (diagnosis.go): when each tunnel
	// would have been silent too long. The tunnels are held weakly, so
	// that one that ended is freed at once, not when its check comes
	// (after a storm, thousands of them).
	silences   timeheap.Heap[weak.Pointer[tunnel.Conn]]
	memory     memoryState    // the sweep's memory returns (memory.go)
	memReturns atomic.Int64   // how many there were
	poller     *tunnel.Poller // reads idle tunnels without a goroutine each; nil: none
}

// closed releases what the server holds once every tunnel has ended.
func (s *Server) closed() {
	s.events.Close()
	if s.poller != nil {
		s.poller.Close()
	}
}

// EnvReaders in the server's environment chooses how idle tunnels are
// read. By default (or "poll") they are parked in a poller, with no
// goroutine each, on Linux; "poll,coalesce=DURATION" sets the poller's
// coalescing pause (0: none), and "goroutine" serves each tunnel with a
// goroutine of its own, as on other systems. For comparing them; see
// README's Performance section.
const EnvReaders = "PRESENCE_TUNNEL_READERS"

// readersMode reads EnvReaders' value: "" and "poll" (the poller with its
// default pause), "poll,coalesce=DURATION" (0: no pause) and "goroutine".
// Anything else is an error, with the default's answer beside it, so that
// a typo in a comparison run is seen and not silently measured as the
// default.
func readersMode(v string) (poll bool, opt tunnel.PollerOptions, err error) {
	switch v {
	case "", "poll":
		return true, opt, nil
	case "goroutine":
		return false, opt, nil
	}
	d, ok := strings.CutPrefix(v, "poll,coalesce=")
	if !ok {
		return true, opt, fmt.Errorf("%q: want poll, poll,coalesce=DURATION or goroutine", v)
	}
	pause, perr := time.ParseDuration(d)
	if perr != nil || pause < 0 {
		return true, opt, fmt.Errorf("%q: coalesce wants a duration of 0 or more, such as 2ms", v)
	}
	opt.Coalesce = pause
	if pause == 0 {
		opt.Coalesce = -1 // PollerOptions: negative is none, 0 the default
	}
	return true, opt, nil
}

// New returns a server; start it with [Server.Serve] or [Server.Listen].
func New(cfg Config) (*Server, error) {
	if cfg.TLS == nil {
		return nil, errors.New("mps: Config.TLS is required")
	}
	if cfg.Tunnel.Auth == nil {
		return nil, errors.New("mps: Config.Tunnel.Auth is required")
	}
	if cfg.MaxTunnels <= 0 {
		cfg.MaxTunnels = 50000
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		sem:      make(chan struct{}, cfg.MaxHandshakes),
		devices:  make(map[apf.UUID]*tunnel.Conn),
		conns:    make(map[*tunnel.Conn]uint64),
		raws:     make(map[net.Conn]struct{}),
		aliases:  make(map[string]apf.UUID),
		doctor:   cfg.Doctor,
		suspects: make(map[*tunnel.Conn]struct{}),
	}
	if s.doctor == nil {
		s.doctor = doctor.New(doctor.Options{})
	}
	s.doctor.CheckCertificate(cfg.TLS)
	s.stats.failures = make(map[string]uint64)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	tc := cfg.Tunnel
	poll, opt, err := readersMode(os.Getenv(EnvReaders))
	if err != nil {
		s.log.Warn("ignoring "+EnvReaders+"; using the default", "err", err)
	}
	if poll {
		// Where the system has no poller (not Linux), NewPoller fails
		// and each tunnel gets a goroutine.
		if s.poller, err = tunnel.NewPoller(opt); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			s.log.Warn("tunnel poller unavailable; each tunnel gets a goroutine", "err", err)
		}
		tc.Poller = s.poller
	}
	tc.TLS = cfg.TLS
	if tc.Logger == nil {
		tc.Logger = cfg.Logger.WithGroup("tunnel")
	}
	tc.OnReady = s.onReady
	tc.OnForwards = s.onForwards
	tc.OnAuthFailure = s.onAuthFailure
	tc.Legacy = &s.legacy
	s.tcfg.Store(&tc)
	return s, nil
}

// SetTunnelSettings changes the keepalive interval, the idle timeout and
// the TLS configuration (nil: keep) for tunnels that connect from now on.
// Tunnels already up keep theirs: AMT is told the keepalive interval in
// the handshake, so a device takes a new one when it reconnects.
func (s *Server) SetTunnelSettings(keepalive, idle time.Duration, tlsConfig *tls.Config) {
	tc := *s.tcfg.Load()
	tc.KeepaliveInterval, tc.IdleTimeout = keepalive, idle
	if tlsConfig != nil {
		tc.TLS = tlsConfig
	}
	s.tcfg.Store(&tc)
}

// CloseListener stops accepting on the listener with address addr (as
// Listen returned it). Tunnels it accepted stay up. It reports whether
// there was such a listener.
func (s *Server) CloseListener(addr net.Addr) bool {
	s.mu.Lock()
	i := slices.IndexFunc(s.listeners, func(ln net.Listener) bool { return ln.Addr().String() == addr.String() })
	var ln net.Listener
	if i >= 0 {
		ln = s.listeners[i]
		s.listeners = slices.Delete(s.listeners, i, i+1)
	}
	s.mu.Unlock()
	if ln == nil {
		return false
	}
	ln.Close()
	s.log.Info("CIRA listener closed", "addr", addr.String())
	return true
}

// Listen listens on addr (":4433" style) and serves in the background. It
// returns the listener's address.
func (s *Server) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mps: CIRA listener: %w", err)
	}
	// Registered before Listen returns, so that CloseListener finds it.
	if err := s.register(ln); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serve(ln)
	}()
	return ln.Addr(), nil
}

// Serve accepts CIRA connections on ln until Shutdown. It returns
// [ErrServerClosed] after Shutdown, or the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.register(ln); err != nil {
		return err
	}
	return s.serve(ln)
}

// register adds ln to the listeners Shutdown and CloseListener close; after
// Shutdown it closes ln and returns ErrServerClosed.
func (s *Server) register(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		ln.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, ln)
	s.startSweep()
	return nil
}

// serve is Serve's accept loop on a registered listener.
func (s *Server) serve(ln net.Listener) error {
	s.log.Info("CIRA listener up", "addr", ln.Addr().String())
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: back off, as
				// net/http does, rather than spin or stop.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("CIRA accept failed; retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("mps: CIRA listener: %w", err)
		}
		backoff = 0
		if !s.track(raw) {
			raw.Close()
			continue
		}
		s.wg.Add(1)
		go s.handle(raw)
	}
}

// track records a connection in its handshake; false refuses it.
func (s *Server) track(raw net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if len(s.conns)+len(s.raws) >= s.cfg.MaxTunnels {
		s.stats.fail("too-many-tunnels")
		return false
	}
	s.raws[raw] = struct{}{}
	return true
}

// handle runs one connection: handshake, registration, serve.
func (s *Server) handle(raw net.Conn) {
	defer s.wg.Done()
	c, err := s.accept(raw)
	s.mu.Lock()
	delete(s.raws, raw)
	if err == nil && s.closing {
		err = &tunnel.CloseError{Reason: tunnel.ReasonShutdown}
		c.CloseWithReason(tunnel.ReasonShutdown, "")
	}
	if err != nil {
		s.mu.Unlock()
		raw.Close()
		reason := tunnel.ReasonOf(err)
		s.stats.fail(reason.String())
		s.diagnoseFailure(err, raw.RemoteAddr().String())
		if reason != tunnel.ReasonShutdown && reason != tunnel.ReasonAuthFailed {
			s.log.Debug("CIRA handshake failed", "remote", raw.RemoteAddr().String(), "reason", reason.String(), "err", err)
		}
		return
	}
	s.seq++
	seq := s.seq
	s.conns[c] = seq
	old := s.devices[c.UUID()]
	s.devices[c.UUID()] = c
	s.mu.Unlock()
	s.watchSilence(c)
	s.stats.accepted.Add(1)
	if old != nil {
		old.CloseWithReason(tunnel.ReasonReplaced, "a newer connection of the same device")
		s.diagnoseReplaced(old, raw.RemoteAddr().String(), c.UUID())
	}

	if s.poller != nil {
		s.wg.Add(1)
		if c.Park(s.poller, func(err error) { defer s.wg.Done(); s.ended(c, seq, err) }) == nil {
			return
		}
		s.wg.Done()
	}
	s.ended(c, seq, c.Serve())
}

// ended unregisters a tunnel that ended with err.
func (s *Server) ended(c *tunnel.Conn, seq uint64, err error) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.devices[c.UUID()] == c {
		delete(s.devices, c.UUID())
	}
	wasSuspect := s.unsuspectLocked(c)
	s.mu.Unlock()
	info := c.Info()
	if tunnel.ReasonOf(err) == tunnel.ReasonIdleTimeout && !wasSuspect {
		// Dropped before a sweep marked it (a sweep is coarse).
		s.doctor.Record(doctor.Finding{Class: doctor.KeepaliveMissed, Device: info.UUID.String(), User: info.User,
			Remote: info.Remote, Detail: errDetail(err)})
	}
	if s.cfg.Tunnels != nil {
		s.cfg.Tunnels(false, snapshot(info), seq)
	}
	s.publish(Event{Kind: EventDisconnected, Time: time.Now(), Device: snapshot(info), Reason: tunnel.ReasonOf(err).String(),
		Detail: errDetail(err)})
}

// maxSlotWait is how long a connection may wait for a handshake slot: a
// minute, or the handshake timeout if that is longer. In a storm the
// machine is CPU-bound and devices queue; each waits its turn, in order of
// arrival (a channel's waiting senders are served first in, first out),
// rather than be reset after the handshake timeout: AMT retries slowly,
// so a device reset in a storm may stay away for many minutes. A device
// that gave up meanwhile closed its socket, which its handshake then finds
// at once. The handshake timeout itself runs from the slot on.
const maxSlotWait = time.Minute

// accept runs the handshake, waiting for a handshake slot first.
func (s *Server) accept(raw net.Conn) (*tunnel.Conn, error) {
	tc := s.tcfg.Load()
	t := time.NewTimer(max(maxSlotWait, tc.HandshakeTimeout))
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
	case <-t.C:
		return nil, &tunnel.CloseError{Reason: tunnel.ReasonHandshakeTimeout, Detail: "waiting for a handshake slot"}
	case <-s.ctx.Done():
		return nil, &tunnel.CloseError{Reason: tunnel.ReasonShutdown}
	}
	defer func() { <-s.sem }()
	return tunnel.Accept(s.ctx, raw, tc)
}

func (s *Server) onReady(c *tunnel.Conn) {
	d := snapshot(c.Info())
	if s.cfg.Tunnels != nil {
		s.mu.Lock()
		seq, ok := s.conns[c]
		s.mu.Unlock()
		if ok {
			s.cfg.Tunnels(true, d, seq)
		}
	}
	s.publish(Event{Kind: EventConnected, Time: time.Now(), Device: d})
}

// onForwards reports a ready tunnel's changed forwards (its host name and
// ports) to Config.Tunnels again: the fleet's tables then name the device
// by its host name even when its first tcpip-forward came after the
// settle time.
func (s *Server) onForwards(c *tunnel.Conn) {
	if s.cfg.Tunnels == nil {
		return
	}
	s.mu.Lock()
	seq, ok := s.conns[c]
	s.mu.Unlock()
	if ok {
		s.cfg.Tunnels(true, snapshot(c.Info()), seq)
	}
}

// TunnelNumber returns the number of device's tunnel now (see
// Config.Tunnels).
func (s *Server) TunnelNumber(device string) (uint64, bool) {
	u, err := apf.ParseUUID(device)
	if err != nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.devices[u]
	if c == nil {
		return 0, false
	}
	return s.conns[c], true
}

// CloseTunnel closes the tunnel numbered conn (see Config.Tunnels) of
// device, if it is still up, with reason and detail, and reports whether
// it was.
func (s *Server) CloseTunnel(device string, conn uint64, reason tunnel.Reason, detail string) bool {
	u, err := apf.ParseUUID(device)
	if err != nil {
		return false
	}
	s.mu.Lock()
	c := s.devices[u]
	ok := c != nil && s.conns[c] == conn
	s.mu.Unlock()
	if ok {
		c.CloseWithReason(reason, detail)
	}
	return ok
}

func (s *Server) onAuthFailure(device apf.UUID, user, remote string) {
	s.publish(Event{Kind: EventAuthFailed, Time: time.Now(), User: user,
		Device: Device{UUID: device.String(), Remote: remote}, Reason: tunnel.ReasonAuthFailed.String()})
}

func errDetail(err error) string {
	var ce *tunnel.CloseError
	if errors.As(err, &ce) {
		return ce.Detail
	}
	return ""
}

// lookup finds a connected device by UUID text (any case, dashes optional),
// by an alias, or by the host name it announced (case-insensitive), each
// optionally with a trailing ".amt".
func (s *Server) lookup(name string) *tunnel.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	host := strings.TrimSuffix(strings.TrimSuffix(name, "."), ".amt")
	if u, err := apf.ParseUUID(host); err == nil {
		return s.devices[u]
	}
	if u, ok := s.aliases[strings.ToLower(host)]; ok {
		return s.devices[u]
	}
	var best *tunnel.Conn
	for _, c := range s.devices {
		if strings.EqualFold(c.Hostname(), host) && (best == nil || c.ConnectedAt().After(best.ConnectedAt())) {
			best = c
		}
	}
	return best
}

// Dial opens a channel to port on the named device (see lookup). The
// returned net.Conn is a *tunnel.Channel.
func (s *Server) Dial(ctx context.Context, device string, port uint32) (net.Conn, error) {
	c := s.lookup(device)
	if c == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDevice, device)
	}
	ch, err := c.Dial(ctx, port)
	if err != nil {
		return nil, err
	}
	return ch, nil
}

// Disconnect closes a device's tunnel.
func (s *Server) Disconnect(device string) error {
	c := s.lookup(device)
	if c == nil {
		return fmt.Errorf("%w: %q", ErrUnknownDevice, device)
	}
	c.CloseWithReason(tunnel.ReasonAdmin, "disconnected by an administrator")
	return nil
}

// Device is a snapshot of a connected device.
type Device struct {
	UUID     string // lower-case GUID text
	Hostname string // the address AMT put in its tcpip-forward requests
	Remote   string
	Info     tunnel.Info
	// Silent is how long nothing has arrived from the device.
	Silent time.Duration
	// Suspect is set once the device has been silent for more than its
	// keepalive interval and half of one: it missed a keepalive and will
	// be dropped at the idle timeout unless input comes (EventSuspect,
	// EventResumed). Only Devices, Device and EventSuspect set it.
	Suspect bool
	// LegacyTLS is set when the tunnel runs TLS 1.0 or 1.1.
	LegacyTLS bool
}

func snapshot(in tunnel.Info) Device {
	d := Device{UUID: in.UUID.String(), Hostname: tunnel.Hostname(in.Forwards), Remote: in.Remote, Info: in,
		LegacyTLS: legacyVersion(in.TLSVersion)}
	if !in.LastReceived.IsZero() {
		d.Silent = max(0, time.Since(in.LastReceived))
	}
	return d
}

// Devices returns a snapshot of every connected device, sorted by UUID.
func (s *Server) Devices() []Device {
	s.mu.Lock()
	conns := make([]*tunnel.Conn, 0, len(s.devices))
	for _, c := range s.devices {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	out := make([]Device, len(conns))
	for i, c := range conns {
		out[i] = snapshot(c.Info())
	}
	s.mu.Lock()
	for i, c := range conns {
		_, out[i].Suspect = s.suspects[c]
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.UUID, b.UUID) })
	return out
}

// Device returns one connected device by name (see Dial).
func (s *Server) Device(name string) (Device, bool) {
	c := s.lookup(name)
	if c == nil {
		return Device{}, false
	}
	return s.deviceOf(c), true
}

// Shutdown stops accepting, ends every tunnel with DISCONNECT and waits for
// every goroutine of the server. If ctx ends first, remaining connections
// are closed hard and Shutdown still waits for the goroutines, which then
// exit promptly, and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	lns := s.listeners
	s.listeners = nil
	conns := make([]*tunnel.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	s.cancel() // aborts handshakes in progress
	var wg sync.WaitGroup
	for chunk := range slices.Chunk(conns, 256) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range chunk {
				c.CloseWithReason(tunnel.ReasonShutdown, "")
			}
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.closed()
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for raw := range s.raws {
		raw.Close()
	}
	s.mu.Unlock()
	<-done
	s.closed()
	return ctx.Err()
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Tunnels    int               // authenticated tunnels now
	Handshakes int               // connections in their handshake now
	Accepted   uint64            // handshakes completed since start
	Failures   map[string]uint64 // failed or refused handshakes by reason
	Dropped    uint64            // events dropped for slow subscribers
	// MemoryReturns counts the times freed memory was given back to the
	// system at once after many tunnels ended (memory.go).
	MemoryReturns int64
}

type stats struct {
	accepted atomic.Uint64
	mu       sync.Mutex
	failures map[string]uint64
}

func (st *stats) fail(reason string) {
	st.mu.Lock()
	st.failures[reason]++
	st.mu.Unlock()
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	out := Stats{Tunnels: len(s.conns), Handshakes: len(s.raws)}
	s.mu.Unlock()
	out.Accepted = s.stats.accepted.Load()
	out.Dropped = s.events.Dropped()
	out.MemoryReturns = s.memReturns.Load()
	s.stats.mu.Lock()
	out.Failures = make(map[string]uint64, len(s.stats.failures))
	for k, v := range s.stats.failures {
		out.Failures[k] = v
	}
	s.stats.mu.Unlock()
	return out
}
