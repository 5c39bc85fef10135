package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/internal/authlimit"
)

// DialFunc opens a connection to port on the device the console named host.
// host is opaque to the proxy (a GUID, host name, alias, or a literal IP
// address as the client sent it); the dial function resolves it. Refusals
// must wrap [ErrUnknownHost], [ErrPortNotAllowed] or [ErrDeviceBusy] so
// that they map to the protocols' own errors; any other error is reported
// as a dial failure.
type DialFunc func(ctx context.Context, host string, port uint32) (net.Conn, error)

var (
	// ErrUnknownHost means the host names no reachable device.
	ErrUnknownHost = errors.New("proxy: unknown host")
	// ErrPortNotAllowed means the device does not offer the port.
	ErrPortNotAllowed = errors.New("proxy: port not allowed")
	// ErrDeviceBusy means the device has no channel free for another
	// session right now.
	ErrDeviceBusy = errors.New("proxy: device busy")
)

// DefaultHandshakeTimeout bounds the greeting/request phase of a connection
// when Config.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// maxHandshakeBytes caps how much a client may send before the relay starts
// (HTTP request line plus headers, or a SOCKS greeting and request).
const maxHandshakeBytes = 64 << 10

// Defaults for zero Config fields.
const (
	DefaultIdleTimeout = 2 * time.Minute // between keep-alive HTTP requests
	DefaultMaxConns    = 10000           // concurrent console connections
)

// Config configures a [Server]. Zero fields take defaults; Dial is required.
type Config struct {
	// Dial reaches a device port. Required.
	Dial DialFunc
	// Auth checks console credentials (HTTP Proxy-Authorization Basic,
	// SOCKS5 username/password). Nil means no authentication is required;
	// only tests and explicit loopback-noauth setups should leave it nil.
	// With Auth set, SOCKS4a (which carries no password) is refused, except
	// from loopback when AllowLoopbackNoAuth is set.
	Auth func(user, pass string) bool
	// AllowLoopbackNoAuth lets consoles on the loopback interface in
	// without credentials (the admin's own tools on the workstation).
	AllowLoopbackNoAuth bool
	// MaxAuthFailures failed logins within AuthWindow block a source
	// address for AuthWindow (defaults authlimit.DefaultFailures,
	// authlimit.DefaultWindow). A blocked source gets HTTP 429 or a SOCKS
	// failure without its credentials being checked.
	MaxAuthFailures int
	AuthWindow      time.Duration
	// HandshakeTimeout bounds the whole greeting/request phase. Zero means
	// DefaultHandshakeTimeout. The deadline is cleared before relaying.
	HandshakeTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// HTTP connection. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxConns caps concurrent console connections (default
	// DefaultMaxConns); more are closed at once.
	MaxConns int
	// Sessions records console sessions. Nil gives the Server a table of
	// its own (see [Server.Sessions]).
	Sessions *Sessions
	// Logger receives per-connection logs. Nil discards them.
	Logger *slog.Logger
}

// Server is a combined HTTP/SOCKS proxy with port mappings. Create it with
// [New].
type Server struct {
	cfg    Config
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	limiter      *authlimit.Limiter
	sessions     *Sessions
	authFailures atomic.Uint64
	refused      atomic.Uint64 // dials refused or failed

	mu       sync.Mutex
	closed   bool
	lns      map[net.Listener]struct{}
	conns    map[net.Conn]struct{} // client and device conns
	clients  int
	mappings map[uint64]*mapping
	nextMap  uint64
	owned    map[*Session]struct{} // this Server's live sessions
	wg       sync.WaitGroup
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	sessions := cfg.Sessions
	if sessions == nil {
		sessions = NewSessions()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:    cfg,
		logger: logger,
		ctx:    ctx,
		cancel: cancel,
		lns:    make(map[net.Listener]struct{}),
		conns:  make(map[net.Conn]struct{}),

		limiter:  authlimit.New(cfg.MaxAuthFailures, cfg.AuthWindow),
		sessions: sessions,
		mappings: make(map[uint64]*mapping),
		owned:    make(map[*Session]struct{}),
	}
}

func (s *Server) own(sess *Session) {
	s.mu.Lock()
	s.owned[sess] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) forget(sess *Session) {
	s.mu.Lock()
	delete(s.owned, sess)
	s.mu.Unlock()
}

// killOwned kills this Server's live sessions.
func (s *Server) killOwned(reason string) {
	s.mu.Lock()
	victims := make([]*Session, 0, len(s.owned))
	for sess := range s.owned {
		victims = append(victims, sess)
	}
	s.mu.Unlock()
	for _, sess := range victims {
		sess.Kill(reason)
	}
}

// Sessions returns the table the Server records its sessions in.
func (s *Server) Sessions() *Sessions { return s.sessions }

// Stats are the proxy's counters.
type Stats struct {
	Conns        int    // console connections open now
	AuthFailures uint64 // failed console logins
	Refused      uint64 // dials refused (unknown device, port not allowed) or failed
	Mappings     int    // port mappings open now
}

// Stats returns the proxy's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Conns: s.clients, AuthFailures: s.authFailures.Load(), Refused: s.refused.Load(), Mappings: len(s.mappings)}
}

// Serve accepts connections on ln until ln fails or the Server is closed.
// After Close it returns net.ErrClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		switch s.trackClient(c) {
		case trackClosed:
			c.Close()
			return net.ErrClosed
		case trackFull:
			s.logger.Warn("proxy: too many console connections; closing a new one", "remote", c.RemoteAddr().String(), "max", s.cfg.MaxConns)
			c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			defer s.untrackClient(c)
			defer c.Close()
			s.handle(c)
		}()
	}
}

// Close stops every listener passed to Serve, closes every client and device
// connection (including established tunnels), and waits for all connection
// goroutines to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	maps := make([]*mapping, 0, len(s.mappings))
	for _, m := range s.mappings {
		maps = append(maps, m)
	}
	s.mu.Unlock()
	// Sessions first, so they end as "shutdown" rather than as closed by
	// one side.
	s.killOwned(EndShutdown)
	for _, m := range maps {
		m.close(EndShutdown)
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers c so Close can close it. It reports false once the
// server is closed; the caller must then close c itself.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

type trackResult int

const (
	tracked trackResult = iota
	trackClosed
	trackFull
)

// trackClient is track plus a wg.Add under the same lock, so Close never
// waits before a handler goroutine is counted.
func (s *Server) trackClient(c net.Conn) trackResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return trackClosed
	}
	if s.clients >= s.cfg.MaxConns {
		return trackFull
	}
	s.clients++
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return tracked
}

func (s *Server) untrackClient(c net.Conn) {
	s.mu.Lock()
	s.clients--
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// dial calls the configured DialFunc under ctx and tracks the result.
// Console is who a device connection is for, as the proxy saw them: the
// account the console logged in with ("" when it needed none) and its
// address. The DialFunc finds it in its context ([ConsoleFrom]), so a
// fleet can record who a forwarded connection is for.
type Console struct{ User, Addr string }

type consoleKey struct{}

// WithConsole returns ctx carrying c.
func WithConsole(ctx context.Context, c Console) context.Context {
	return context.WithValue(ctx, consoleKey{}, c)
}

// ConsoleFrom returns the console a dial is for (zero when ctx says none).
func ConsoleFrom(ctx context.Context) Console {
	c, _ := ctx.Value(consoleKey{}).(Console)
	return c
}

func (s *Server) dial(ctx context.Context, host string, port uint32, c Console) (net.Conn, error) {
	dc, err := s.cfg.Dial(WithConsole(ctx, c), host, port)
	if err != nil {
		s.refused.Add(1)
		return nil, err
	}
	if !s.track(dc) {
		dc.Close()
		return nil, net.ErrClosed
	}
	return dc, nil
}

// capReader fails reads once n bytes have been consumed; n < 0 lifts the cap.
// It is only touched by the connection's handler goroutine before the relay
// starts.
type capReader struct {
	r io.Reader
	n int64
}

var errHandshakeTooLarge = errors.New("proxy: handshake too large")

func (c *capReader) Read(p []byte) (int, error) {
	if c.n < 0 {
		return c.r.Read(p)
	}
	if c.n == 0 {
		return 0, errHandshakeTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// conn is one client connection during its handshake.
type conn struct {
	s      *Server
	c      net.Conn
	cr     *capReader
	br     *bufio.Reader
	logger *slog.Logger
	src    netip.Addr
	// noAuth is set when the console needs no credentials.
	noAuth bool
	// deadline ends the whole handshake phase, dial included.
	deadline time.Time
}

func (s *Server) handle(c net.Conn) {
	cr := &capReader{r: c, n: maxHandshakeBytes}
	pc := &conn{
		s:      s,
		c:      c,
		cr:     cr,
		br:     bufio.NewReaderSize(cr, 4096),
		logger: s.logger.With("remote", c.RemoteAddr().String()),
		src:    authlimit.SourceAddr(c.RemoteAddr()),
	}
	pc.noAuth = s.cfg.Auth == nil || (s.cfg.AllowLoopbackNoAuth && pc.src.IsLoopback())
	pc.deadline = time.Now().Add(s.cfg.HandshakeTimeout)
	c.SetDeadline(pc.deadline)
	first, err := pc.br.Peek(1)
	if err != nil {
		pc.logger.Debug("proxy: no greeting", "err", err)
		return
	}
	switch first[0] {
	case 0x05:
		pc.serveSOCKS5()
	case 0x04:
		pc.serveSOCKS4()
	default:
		pc.serveHTTP()
	}
}

// dialCtx returns a context bounded by the server's lifetime and the
// handshake deadline.
func (pc *conn) dialCtx() (context.Context, context.CancelFunc) {
	return context.WithDeadline(pc.s.ctx, pc.deadline)
}

// startRelay ends the handshake phase: it lifts the size cap and clears the
// deadline, records a session and relays between the client and dc until
// either side ends.
func (pc *conn) startRelay(dc net.Conn, kind, user, host string, port uint32) {
	pc.cr.n = -1
	pc.c.SetDeadline(time.Time{})
	defer pc.s.untrack(dc)
	sess := pc.s.beginSession(SessionInfo{
		Kind: kind, Console: pc.c.RemoteAddr().String(), User: user, Host: host, Port: port,
	}, dc, pc.c)
	if sess == nil {
		dc.Close()
		return
	}
	defer pc.s.forget(sess)
	info := Relay(sess, pc.c, pc.br, dc)
	pc.logger.Debug("proxy: session ended", "id", info.ID, "reason", info.EndReason,
		"to_device", info.BytesToDevice, "from_device", info.BytesFromDevice)
}

// beginSession records a session owned by this Server, naming the device by
// its identity when dc knows it.
func (s *Server) beginSession(info SessionInfo, dc net.Conn, conns ...net.Conn) *Session {
	info.Device = info.Host
	if id, ok := dc.(Identified); ok {
		info.Device = id.DeviceID()
	}
	sess := s.sessions.Begin(info, append(conns, dc)...)
	if sess == nil {
		return nil
	}
	s.own(sess)
	if s.isClosed() {
		sess.Kill(EndShutdown)
	}
	return sess
}

// copyBufs holds relay buffers: larger than io.Copy's 32 KiB, so a channel
// with a 128 KiB window moves in few writes.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// onlyReader and onlyWriter hide ReadFrom/WriteTo so copies use the pooled
// buffer rather than small internal ones.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

func copyPooled(dst io.Writer, src io.Reader) {
	bp := copyBufs.Get().(*[]byte)
	io.CopyBuffer(onlyWriter{dst}, onlyReader{src}, *bp)
	copyBufs.Put(bp)
}

// Relay copies between a console connection and a device connection for
// sess until either side ends, then closes both and ends the session: as
// closed by the console or by the device, whichever ended first, unless the
// session was killed. consoleR supplies the console's bytes (it may hold
// bytes buffered during a handshake); nil means console itself. Relay
// returns the ended session.
func Relay(sess *Session, console net.Conn, consoleR io.Reader, dev net.Conn) SessionInfo {
	if consoleR == nil {
		consoleR = console
	}
	done := make(chan string, 2)
	go relayToDevice(done, countingWriter{dev, &sess.toDev}, consoleR)
	go relayToConsole(done, console, countingReader{dev, &sess.fromDev})
	reason := <-done
	console.Close()
	dev.Close()
	<-done
	return sess.End(reason)
}

// relayToDevice and relayToConsole are named so relays show up in stack
// dumps.
func relayToDevice(done chan<- string, dst io.Writer, src io.Reader) {
	copyPooled(dst, src)
	done <- EndConsole
}

func relayToConsole(done chan<- string, dst io.Writer, src io.Reader) {
	copyPooled(dst, src)
	done <- EndDevice
}
