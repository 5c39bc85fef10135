package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DialFunc opens a connection to port on the device the console named host.
// host is opaque to the proxy (a GUID, host name, alias, or a literal IP
// address as the client sent it); the dial function resolves it. Refusals
// must wrap [ErrUnknownHost] or [ErrPortNotAllowed] so that they map to the
// protocols' own errors; any other error is reported as a dial failure.
type DialFunc func(ctx context.Context, host string, port uint32) (net.Conn, error)

var (
	// ErrUnknownHost means the host names no reachable device.
	ErrUnknownHost = errors.New("proxy: unknown host")
	// ErrPortNotAllowed means the device does not offer the port.
	ErrPortNotAllowed = errors.New("proxy: port not allowed")
)

// DefaultHandshakeTimeout bounds the greeting/request phase of a connection
// when Config.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// maxHandshakeBytes caps how much a client may send before the relay starts
// (HTTP request line plus headers, or a SOCKS greeting and request).
const maxHandshakeBytes = 64 << 10

// Config configures a [Server]. Zero fields take defaults; Dial is required.
type Config struct {
	// Dial reaches a device port. Required.
	Dial DialFunc
	// Auth checks console credentials (HTTP Proxy-Authorization Basic,
	// SOCKS5 username/password). Nil means no authentication is required;
	// only tests and explicit loopback-noauth setups should leave it nil.
	// With Auth set, SOCKS4a (which carries no password) is refused.
	Auth func(user, pass string) bool
	// HandshakeTimeout bounds the whole greeting/request phase. Zero means
	// DefaultHandshakeTimeout. The deadline is cleared before relaying.
	HandshakeTimeout time.Duration
	// Logger receives per-connection logs. Nil discards them.
	Logger *slog.Logger
}

// Server is a combined HTTP/SOCKS proxy. Create it with [New].
type Server struct {
	cfg    Config
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{} // client and device conns
	wg     sync.WaitGroup
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
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
	}
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
		if !s.trackClient(c) {
			c.Close()
			return net.ErrClosed
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
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

// trackClient is track plus a wg.Add under the same lock, so Close never
// waits before a handler goroutine is counted.
func (s *Server) trackClient(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// dial calls the configured DialFunc under ctx and tracks the result.
func (s *Server) dial(ctx context.Context, host string, port uint32) (net.Conn, error) {
	dc, err := s.cfg.Dial(ctx, host, port)
	if err != nil {
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
	}
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
// deadline, then relays between the client and dc until either side ends.
func (pc *conn) startRelay(dc net.Conn) {
	pc.cr.n = -1
	pc.c.SetDeadline(time.Time{})
	relay(pc.c, pc.br, dc)
	pc.s.untrack(dc)
}

// relay copies client→dev (reading from clientR, which holds any bytes the
// client pipelined after its handshake) and dev→client. When either
// direction ends, both connections are closed and relay waits for the other.
func relay(client net.Conn, clientR io.Reader, dev net.Conn) {
	done := make(chan struct{}, 2)
	go proxyCopy(done, dev, clientR)
	go proxyCopy(done, client, dev)
	<-done
	client.Close()
	dev.Close()
	<-done
}

// proxyCopy is a named function so relays show up in stack dumps.
func proxyCopy(done chan<- struct{}, dst io.Writer, src io.Reader) {
	io.Copy(dst, src)
	done <- struct{}{}
}
