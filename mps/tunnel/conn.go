package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// Protocol states of the reader (apf.md §3).
const (
	stVersion     = iota // awaiting PROTOCOL_VERSION
	stAuthService        // awaiting SERVICE_REQUEST auth@amt.intel.com
	stUserauth           // awaiting USERAUTH_REQUEST
	stPfwdService        // awaiting SERVICE_REQUEST pfwd@amt.intel.com
	stForwarding         // forwards, keepalives and channels
)

// Write queue bounds. Channel writers wait while more than highWater bytes
// are queued; control messages never wait, and a queue above hardCap means
// the device stopped reading: the tunnel is dropped.
const (
	highWater     = 256 << 10
	hardCap       = 4 << 20
	smallReadBuf  = 512
	maxPooled     = 64 << 10
	finalDeadline = time.Second
)

// Forward is a port the device announced with tcpip-forward.
type Forward struct {
	Port    uint32
	Address string // the address string AMT sent (usually its host name)
}

// Conn is one authenticated CIRA tunnel. Its methods are safe for concurrent
// use. The zero value is not usable; see [Accept].
type Conn struct {
	cfg  Config
	raw  net.Conn
	conn net.Conn // the TLS connection over raw (raw itself when Config.TLS is nil)
	lim  apf.Limits

	// Set during the handshake; read-only afterwards.
	uuid        apf.UUID
	user        string
	version     apf.ProtocolVersion
	names       infoNames // Info's strings, made once
	tlsVersion  uint16
	tlsCipher   uint16
	remote      string
	connectedAt time.Time

	// Owned by the reader goroutine.
	rbuf         []byte
	rstart, rend int
	lastRead     int // bytes returned by the latest Read
	state        int
	replied      bool // replies queued by the reader, not yet flushed

	mu          sync.Mutex // guards the fields below
	forwards    []Forward
	channels    map[uint32]*Channel
	nextID      uint32
	nextOrigin  uint32
	ready       bool
	settle      *time.Timer
	kaInterval  uint32 // from KEEPALIVE_OPTIONS_REPLY
	kaTimeout   uint32
	closed      bool
	openedTotal uint64

	writing      sync.Mutex // held while taking the queue and writing it, so writes keep queue order
	wmu          sync.Mutex // guards pending and writerActive; wcond waits on it
	wcond        sync.Cond
	pending      []byte // from bufPool; nil while empty
	writerActive bool
	writer       sync.WaitGroup // the writer goroutine, while it runs

	done      chan struct{} // closed when the tunnel ends
	closeOnce sync.Once
	err       *CloseError // set before done is closed

	lastRecv   atomic.Int64 // unix nanoseconds
	lastKA     atomic.Int64
	bytesIn    atomic.Uint64
	bytesOut   atomic.Uint64
	keepalives atomic.Uint64
}

// Accept runs the server side of a CIRA handshake on raw: TLS, then APF up to
// successful authentication, all under Config.HandshakeTimeout and ctx. On
// success the deadline is cleared and the caller must call [Conn.Serve]. On
// failure raw is closed and the error is a [*CloseError].
func Accept(ctx context.Context, raw net.Conn, cfg *Config) (*Conn, error) {
	d := cfg.withDefaults()
	c := &Conn{
		cfg:         d,
		raw:         raw,
		conn:        raw,
		lim:         apf.Limits{MaxString: apf.DefaultLimits.MaxString, MaxData: d.Window},
		remote:      raw.RemoteAddr().String(),
		channels:    make(map[uint32]*Channel),
		done:        make(chan struct{}),
		rbuf:        make([]byte, smallReadBuf),
		connectedAt: time.Now(),
	}
	c.wcond.L = &c.wmu
	if err := raw.SetDeadline(time.Now().Add(d.HandshakeTimeout)); err != nil {
		return nil, c.abort(&CloseError{Reason: ReasonNetworkError, Err: err}, 0)
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if d.TLS != nil {
		tc := tls.Server(raw, d.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, c.abort(c.handshakeError(ctx, err, ReasonTLSError), 0)
		}
		st := tc.ConnectionState()
		c.conn, c.tlsVersion, c.tlsCipher = tc, st.Version, st.CipherSuite
	}
	if err := c.handshake(ctx); err != nil {
		return nil, err
	}
	if !stop() || raw.SetDeadline(time.Time{}) != nil {
		return nil, c.abort(c.handshakeError(ctx, context.Cause(ctx), ReasonShutdown), 0)
	}
	c.lastRecv.Store(time.Now().UnixNano())
	return c, nil
}

// logAt logs with the tunnel's remote address and device UUID. The
// attributes are added per call rather than kept in a derived logger: a
// logger per tunnel costs memory on every idle tunnel, and logs are rare.
func (c *Conn) logAt(level slog.Level, msg string, args ...any) {
	l := c.cfg.Logger
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	args = append(args, "remote", c.remote)
	if !c.uuid.IsZero() {
		args = append(args, "device", c.uuid.String())
	}
	l.Log(ctx, level, msg, args...)
}

// handshakeError classifies a failure before authentication completed.
func (c *Conn) handshakeError(ctx context.Context, err error, fallback Reason) *CloseError {
	var ce *CloseError
	switch {
	case errors.As(err, &ce):
		return ce
	case ctx.Err() != nil:
		return &CloseError{Reason: ReasonShutdown, Err: context.Cause(ctx)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &CloseError{Reason: ReasonHandshakeTimeout, Detail: fmt.Sprintf("no authenticated tunnel within %s", c.cfg.HandshakeTimeout)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return &CloseError{Reason: ReasonDeviceClosed, Detail: "during the handshake"}
	}
	return &CloseError{Reason: fallback, Err: err}
}

// abort ends a tunnel that never reached Serve and returns err.
func (c *Conn) abort(err *CloseError, disc apf.DisconnectReason) *CloseError {
	c.closeWith(err, disc)
	return err
}

// handshake runs APF from PROTOCOL_VERSION to USERAUTH_SUCCESS, writing
// synchronously (the writer goroutine starts in Serve).
func (c *Conn) handshake(ctx context.Context) error {
	fail := func(err error) error { return c.abort(c.handshakeError(ctx, err, ReasonNetworkError), 0) }
	attempts := 0
	for c.state != stPfwdService {
		m, err := c.readMsg()
		if err != nil {
			var pe *apf.ParseError
			if errors.As(err, &pe) && c.state == stVersion && c.rend-c.rstart >= 4 && isHTTP(c.rbuf[c.rstart:c.rend]) {
				// A browser or scanner probing the port: answer in its own
				// protocol, as other MPS implementations do.
				c.conn.Write([]byte(httpProbeReply))
				return c.abort(&CloseError{Reason: ReasonProtocolError, Detail: "HTTP request on the CIRA port"}, 0)
			}
			if attempts > 0 && !errors.As(err, &pe) {
				// The device gave up after a refused password.
				return c.abort(&CloseError{Reason: ReasonAuthFailed,
					Detail: fmt.Sprintf("connection ended after %d failed attempts", attempts)}, 0)
			}
			return c.readFailed(ctx, err)
		}
		if ka, ok := m.(*apf.KeepaliveRequest); ok && c.state > stVersion {
			if err := c.writeNow(&apf.KeepaliveReply{Cookie: ka.Cookie}); err != nil {
				return fail(err)
			}
			continue
		}
		switch c.state {
		case stVersion:
			pv, ok := m.(*apf.ProtocolVersion)
			if !ok {
				return c.unexpected(m)
			}
			if pv.Major != 1 {
				return c.abort(&CloseError{Reason: ReasonProtocolError,
					Detail: fmt.Sprintf("unsupported APF version %d.%d", pv.Major, pv.Minor)}, apf.DisconnectVersionNotSupported)
			}
			c.version, c.uuid = *pv, pv.UUID
			c.state = stAuthService
		case stAuthService:
			sr, ok := m.(*apf.ServiceRequest)
			if !ok {
				return c.unexpected(m)
			}
			if sr.Service != apf.ServiceAuth {
				return c.badService(sr.Service)
			}
			if err := c.writeNow(&apf.ServiceAccept{Service: apf.ServiceAuth}); err != nil {
				return fail(err)
			}
			c.state = stUserauth
		case stUserauth:
			ua, ok := m.(*apf.UserauthRequest)
			if !ok {
				return c.unexpected(m)
			}
			okAuth := ua.Method == apf.MethodPassword && !ua.ChangePassword &&
				c.cfg.Auth != nil && c.cfg.Auth(ctx, c.uuid, ua.Username, ua.Password)
			clear(ua.Password) // it lies in rbuf; do not keep it around
			if okAuth {
				c.user = ua.Username
				if err := c.writeNow(&apf.UserauthSuccess{}); err != nil {
					return fail(err)
				}
				c.state = stPfwdService
				break
			}
			attempts++
			if ua.Method == apf.MethodPassword && c.cfg.OnAuthFailure != nil {
				c.cfg.OnAuthFailure(c.uuid, ua.Username, c.remote)
			}
			c.logAt(slog.LevelInfo, "CIRA authentication failed", "user", ua.Username, "method", ua.Method, "attempt", attempts)
			if err := c.writeNow(&apf.UserauthFailure{Methods: apf.MethodPassword}); err != nil {
				return fail(err)
			}
			if attempts >= c.cfg.MaxAuthAttempts {
				return c.abort(&CloseError{Reason: ReasonAuthFailed,
					Detail: fmt.Sprintf("user %q: %d failed attempts", ua.Username, attempts)}, apf.DisconnectNoMoreAuthMethods)
			}
		}
	}
	return nil
}

// ProbeAnswer is the sentence the CIRA port answers an HTTP request with
// (a browser or scanner that found the port). It also tells a second
// Presence on the machine that the port it wanted is held by Presence.
const ProbeAnswer = "This is the CIRA port of Presence, an Intel AMT MPS. It speaks APF."

var httpProbeReply = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
	strconv.Itoa(len(ProbeAnswer)+2) + "\r\n\r\n" + ProbeAnswer + "\r\n"

func isHTTP(b []byte) bool {
	return bytes.HasPrefix(b, []byte("GET ")) || bytes.HasPrefix(b, []byte("HEAD")) || bytes.HasPrefix(b, []byte("POST"))
}

// unexpected ends the tunnel for a message not allowed in the current state.
func (c *Conn) unexpected(m apf.Message) error {
	return c.abort(&CloseError{Reason: ReasonProtocolError,
		Detail: fmt.Sprintf("unexpected %s", apf.TypeName(m.Type()))}, apf.DisconnectProtocolError)
}

// badService refuses a service name other than the two APF defines, as Intel
// LMS does (apf.md §2.2).
func (c *Conn) badService(name string) error {
	return c.abort(&CloseError{Reason: ReasonProtocolError,
		Detail: fmt.Sprintf("unknown service %q", name)}, apf.DisconnectServiceNotAvailable)
}

// readFailed ends the tunnel after readMsg failed.
func (c *Conn) readFailed(ctx context.Context, err error) error {
	var pe *apf.ParseError
	if errors.As(err, &pe) {
		return c.abort(&CloseError{Reason: ReasonProtocolError, Err: err}, apf.DisconnectProtocolError)
	}
	if c.state >= stPfwdService {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return c.abort(&CloseError{Reason: ReasonIdleTimeout,
				Detail: fmt.Sprintf("nothing received for %s", c.cfg.IdleTimeout)}, apf.DisconnectConnectionTimedOut)
		case errors.Is(err, io.EOF):
			return c.abort(&CloseError{Reason: ReasonDeviceClosed}, 0)
		case errors.Is(err, syscall.ECONNRESET):
			return c.abort(&CloseError{Reason: ReasonDeviceClosed, Detail: "connection reset"}, 0)
		}
		return c.abort(&CloseError{Reason: ReasonNetworkError, Err: err}, 0)
	}
	return c.abort(c.handshakeError(ctx, err, ReasonNetworkError), 0)
}

// readMsg returns the next message. Its byte slices alias the read buffer
// and are valid until the next call.
func (c *Conn) readMsg() (apf.Message, error) {
	for {
		if c.rstart < c.rend {
			m, n, err := c.lim.Parse(c.rbuf[c.rstart:c.rend])
			if err == nil {
				c.rstart += n
				return m, nil
			}
			if err != apf.ErrIncomplete {
				return nil, err
			}
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// maxMessage is the largest message the limits allow: a udp-send-to with
// two maximal strings and maximal data.
func (c *Conn) maxMessage() int {
	return int(c.lim.MaxData) + 4*int(c.lim.MaxString) + 64
}

// fill reads more bytes into rbuf, compacting or growing it as needed.
func (c *Conn) fill() error {
	if c.rstart == c.rend {
		c.rstart, c.rend = 0, 0
		if len(c.rbuf) > smallReadBuf && c.lastRead < smallReadBuf && c.state >= stPfwdService {
			// Drop a big buffer once drained so idle tunnels stay small.
			c.rbuf = make([]byte, smallReadBuf)
		}
	}
	if c.rend == len(c.rbuf) {
		if c.rstart > 0 {
			c.rend = copy(c.rbuf, c.rbuf[c.rstart:c.rend])
			c.rstart = 0
		} else {
			if len(c.rbuf) >= c.maxMessage() {
				return &apf.ParseError{Type: c.rbuf[0], Msg: "message exceeds the size limit"}
			}
			nb := make([]byte, min(2*len(c.rbuf)+int(c.lim.MaxString), c.maxMessage()))
			c.rend = copy(nb, c.rbuf[:c.rend])
			c.rbuf = nb
		}
	}
	if c.state >= stPfwdService { // authenticated: the idle timeout applies
		if c.replied {
			c.replied = false
			c.flushFromReader()
		}
		if err := c.conn.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout)); err != nil {
			return err
		}
	}
	n, err := c.conn.Read(c.rbuf[c.rend:])
	c.lastRead = n
	if n > 0 {
		c.rend += n
		c.bytesIn.Add(uint64(n))
		c.lastRecv.Store(time.Now().UnixNano())
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// writeNow writes one message synchronously (handshake only).
func (c *Conn) writeNow(m apf.Message) error {
	b := m.Append(nil)
	_, err := c.conn.Write(b)
	c.bytesOut.Add(uint64(len(b)))
	return err
}

// Serve runs the tunnel until it ends and returns why, as a [*CloseError].
// The calling goroutine becomes the tunnel's reader. Serve returns only
// after the writer goroutine, if one runs, has stopped too.
func (c *Conn) Serve() error {
	for {
		m, err := c.readMsg()
		if err != nil {
			c.readFailed(context.Background(), err)
			break
		}
		if err := c.dispatch(m); err != nil {
			break
		}
	}
	c.writer.Wait() // no writer starts once the tunnel is done
	return c.err
}

// dispatch handles one message after authentication. It never blocks on a
// consumer. A non-nil error means the tunnel has been closed.
func (c *Conn) dispatch(m apf.Message) error {
	switch m := m.(type) {
	case *apf.KeepaliveRequest:
		c.keepalives.Add(1)
		c.lastKA.Store(time.Now().UnixNano())
		return c.reply(&apf.KeepaliveReply{Cookie: m.Cookie})
	case *apf.KeepaliveReply:
		return nil // we send no requests; a stray reply is harmless
	case *apf.KeepaliveOptionsReply:
		c.mu.Lock()
		c.kaInterval, c.kaTimeout = m.Interval, m.Timeout
		c.mu.Unlock()
		return nil
	case *apf.Disconnect:
		return c.abort(&CloseError{Reason: ReasonDisconnect, Disconnect: m.Reason,
			Detail: "device sent DISCONNECT: " + m.Reason.String()}, 0)
	case *apf.ServiceRequest:
		if c.state != stPfwdService {
			return c.unexpected(m)
		}
		if m.Service != apf.ServicePfwd {
			return c.badService(m.Service)
		}
		c.state = stForwarding
		c.mu.Lock()
		c.settle = time.AfterFunc(c.cfg.ForwardSettle, c.markReady)
		c.mu.Unlock()
		return c.reply(&apf.ServiceAccept{Service: apf.ServicePfwd})
	}
	if c.state != stForwarding {
		return c.unexpected(m)
	}
	switch m := m.(type) {
	case *apf.TCPIPForward:
		return c.forward(m)
	case *apf.UDPSendTo:
		return nil // no anchor answers it (apf.md §2.5)
	case *apf.GlobalRequest:
		c.logAt(slog.LevelDebug, "unknown global request", "name", m.Name)
		if m.WantReply {
			return c.reply(&apf.RequestFailure{})
		}
		return nil
	case *apf.ChannelOpen:
		// AMT-initiated channels are not offered by an MPS: refuse politely.
		reason := apf.OpenAdministrativelyProhibited
		if m.ChannelType != apf.ChannelForwardedTCPIP && m.ChannelType != apf.ChannelDirectTCPIP {
			reason = apf.OpenUnknownChannelType
		}
		return c.reply(&apf.ChannelOpenFailure{Recipient: m.Sender, Reason: reason})
	case *apf.ChannelOpenConfirmation:
		return c.onConfirm(m)
	case *apf.ChannelOpenFailure:
		if ch := c.channel(m.Recipient); ch != nil {
			ch.onOpenFailure(m.Reason)
		}
		return nil
	case *apf.WindowAdjust:
		if ch := c.channel(m.Recipient); ch != nil && !ch.onWindowAdjust(m.BytesToAdd) {
			return c.abort(&CloseError{Reason: ReasonProtocolError, Detail: "window adjust overflows the send window"}, apf.DisconnectProtocolError)
		}
		return nil
	case *apf.ChannelData:
		if ch := c.channel(m.Recipient); ch != nil && !ch.onData(m.Data) {
			return c.abort(&CloseError{Reason: ReasonProtocolError,
				Detail: fmt.Sprintf("device overran the window of channel %d", m.Recipient)}, apf.DisconnectProtocolError)
		}
		return nil
	case *apf.ChannelClose:
		if ch := c.channel(m.Recipient); ch != nil {
			ch.onClose()
		}
		return nil
	}
	return c.unexpected(m)
}

// forward records or withdraws an announced port (apf.md §2.5).
func (c *Conn) forward(m *apf.TCPIPForward) error {
	c.mu.Lock()
	i := slices.IndexFunc(c.forwards, func(f Forward) bool { return f.Port == m.Port })
	var reply apf.Message = &apf.RequestSuccess{Port: m.Port}
	switch {
	case m.Cancel:
		if i >= 0 {
			c.forwards = slices.Delete(c.forwards, i, i+1)
		}
		reply = &apf.RequestSuccess{NoPort: true}
	case i >= 0:
		c.forwards[i].Address = m.Address
	case len(c.forwards) >= c.cfg.MaxForwards:
		reply = &apf.RequestFailure{}
	default:
		c.forwards = append(c.forwards, Forward{Port: m.Port, Address: m.Address})
	}
	if !c.ready && c.settle != nil {
		c.settle.Reset(c.cfg.ForwardSettle)
	}
	c.mu.Unlock()
	if !m.WantReply {
		return nil
	}
	return c.reply(reply)
}

// markReady sends KEEPALIVE_OPTIONS_REQUEST once the forwards have settled
// and reports readiness.
func (c *Conn) markReady() {
	c.mu.Lock()
	if c.ready || c.closed {
		c.mu.Unlock()
		return
	}
	c.ready = true
	c.settle = nil
	c.mu.Unlock()
	// The timeout field's meaning is undocumented (apf.md §5, §11): send 0
	// as the device-management-toolkit MPS and MeshCentral do with real AMT.
	if c.send(&apf.KeepaliveOptionsRequest{Interval: keepaliveSeconds(c.cfg.KeepaliveInterval)}) != nil {
		return
	}
	if c.cfg.OnReady != nil {
		c.cfg.OnReady(c)
	}
}

// keepaliveSeconds is the interval in whole seconds, as APF carries it,
// rounded up and at least 1: 0 would leave AMT on its own default.
func keepaliveSeconds(d time.Duration) uint32 {
	return uint32(max(1, (d+time.Second-1)/time.Second))
}

// send queues a control message and wakes the writer; it never waits.
func (c *Conn) send(m apf.Message) error {
	if err := c.queue(m); err != nil {
		return err
	}
	c.signalWriter()
	return nil
}

// reply queues a control message from the reader goroutine, which writes
// it itself before it next blocks in Read, together with every other reply
// to the same read (see flushFromReader).
func (c *Conn) reply(m apf.Message) error {
	if err := c.queue(m); err != nil {
		return err
	}
	c.replied = true
	return nil
}

// queue appends a control message to the write queue.
func (c *Conn) queue(m apf.Message) error {
	c.wmu.Lock()
	if c.isDone() {
		c.wmu.Unlock()
		return ErrClosed
	}
	c.pending = m.Append(c.buffer())
	over := len(c.pending) > hardCap
	c.wmu.Unlock()
	if over {
		return c.abort(&CloseError{Reason: ReasonStalled, Detail: "the device stopped reading"}, 0)
	}
	return nil
}

// sendData queues one CHANNEL_DATA, waiting while the queue is above the
// high-water mark.
func (c *Conn) sendData(recipient uint32, p []byte) error {
	c.wmu.Lock()
	for len(c.pending) > highWater && !c.isDone() {
		c.wcond.Wait()
	}
	if c.isDone() {
		c.wmu.Unlock()
		return c.err
	}
	c.pending = apf.AppendChannelDataHeader(c.buffer(), recipient, len(p))
	c.pending = append(c.pending, p...)
	c.wmu.Unlock()
	c.signalWriter()
	return nil
}

// Write buffers are pooled, so an idle tunnel holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// buffer returns the queue to append to, taking a pooled buffer when the
// queue is empty. The caller holds wmu.
func (c *Conn) buffer() []byte {
	if c.pending == nil {
		c.pending = *bufPool.Get().(*[]byte)
	}
	return c.pending
}

// signalWriter makes sure a writer goroutine runs to drain the queue. The
// writer exits when the queue is empty, so an idle tunnel has only its
// reader goroutine; at most one writer runs at a time.
func (c *Conn) signalWriter() {
	c.wmu.Lock()
	if c.writerActive || c.isDone() {
		c.wmu.Unlock()
		return
	}
	c.writerActive = true
	c.writer.Add(1)
	c.wmu.Unlock()
	go c.writeLoop()
}

func (c *Conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// writeLoop is the tunnel's writer goroutine: it takes the whole queue and
// writes it in one call, so bursts of small messages share TLS records, and
// exits once the queue is empty.
func (c *Conn) writeLoop() {
	defer c.writer.Done()
	for {
		c.writing.Lock()
		for c.flushLocked() {
		}
		c.writing.Unlock()
		c.wmu.Lock()
		if len(c.pending) == 0 || c.isDone() {
			c.writerActive = false
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
	}
}

// inlineMax is the most the reader writes itself; more is left to the writer.
const inlineMax = 16 << 10

// flushFromReader writes the replies the reader queued, from the reader
// goroutine, when the writer is idle and the queue small: that saves waking
// the writer goroutine (a thread handoff) for each keepalive reply, which
// measured as most of an idle tunnel's CPU cost. A tiny write to a socket
// blocks only when the device has stopped reading, and then WriteTimeout
// ends the tunnel. Otherwise the writer goroutine is woken to do it.
func (c *Conn) flushFromReader() {
	c.wmu.Lock()
	small := len(c.pending) <= inlineMax
	c.wmu.Unlock()
	if !small || !c.writing.TryLock() {
		c.signalWriter()
		return
	}
	c.flushLocked()
	c.writing.Unlock()
}

// flushLocked writes the queue, if any, and reports whether it wrote
// something. The caller holds c.writing. A failed write ends the tunnel.
func (c *Conn) flushLocked() bool {
	c.wmu.Lock()
	buf := c.pending
	c.pending = nil
	c.wcond.Broadcast()
	c.wmu.Unlock()
	if buf == nil {
		return false
	}
	defer func() {
		if cap(buf) <= maxPooled {
			buf = buf[:0]
			bufPool.Put(&buf)
		}
	}()
	if c.isDone() {
		return false
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	if _, err := c.conn.Write(buf); err != nil {
		reason := ReasonNetworkError
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			reason = ReasonStalled
		case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
			reason = ReasonDeviceClosed
		}
		c.closeWith(&CloseError{Reason: reason, Err: err}, 0)
		return false
	}
	c.bytesOut.Add(uint64(len(buf)))
	return true
}

// Close ends the tunnel with [ReasonAdmin], sending DISCONNECT(BY_APPLICATION).
func (c *Conn) Close() error {
	c.CloseWithReason(ReasonAdmin, "")
	return nil
}

// CloseWithReason ends the tunnel, telling the device with a DISCONNECT
// (BY_APPLICATION). It is idempotent: only the first cause is kept. It does
// not wait for Serve to return.
func (c *Conn) CloseWithReason(r Reason, detail string) {
	c.closeWith(&CloseError{Reason: r, Detail: detail}, apf.DisconnectByApplication)
}

// closeWith records err as the cause, sends DISCONNECT(disc) unless disc is
// 0, closes the connection and fails every channel. Writes are bounded by a
// short deadline so a stalled device cannot hold the caller.
func (c *Conn) closeWith(err *CloseError, disc apf.DisconnectReason) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		if c.settle != nil {
			c.settle.Stop()
		}
		chans := c.channels
		c.channels = nil
		c.mu.Unlock()

		c.wmu.Lock()
		c.err = err
		close(c.done)
		c.wcond.Broadcast()
		c.wmu.Unlock()

		if disc != 0 {
			c.raw.SetWriteDeadline(time.Now().Add(finalDeadline))
			c.conn.Write((&apf.Disconnect{Reason: disc}).Append(nil))
		}
		c.raw.Close()
		for _, ch := range chans {
			ch.tunnelClosed(err)
		}
		level := slog.LevelInfo
		if err.Reason == ReasonShutdown {
			level = slog.LevelDebug
		}
		c.logAt(level, "tunnel closed", "reason", err.Reason.String(), "err", err)
	})
}

// Done is closed when the tunnel has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the tunnel ended, or nil while it is up.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// channel returns the channel with our id, or nil.
func (c *Conn) channel(id uint32) *Channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.channels[id]
}

func (c *Conn) removeChannel(id uint32) {
	c.mu.Lock()
	delete(c.channels, id)
	c.mu.Unlock()
}

// onConfirm completes a Dial.
func (c *Conn) onConfirm(m *apf.ChannelOpenConfirmation) error {
	ch := c.channel(m.Recipient)
	if ch == nil {
		return nil // a channel already given up; nothing to do
	}
	if closeNow := ch.onConfirm(m.Sender, m.Window); closeNow {
		return c.send(&apf.ChannelClose{Recipient: m.Sender})
	}
	return nil
}

// Dial opens a channel to an announced port of the device and waits for the
// device to confirm it. It fails with [ErrPortNotAnnounced],
// [ErrTooManyChannels], an [*OpenError] when the device refuses, ctx's error,
// or the tunnel's [*CloseError].
func (c *Conn) Dial(ctx context.Context, port uint32) (*Channel, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.Err()
	}
	i := slices.IndexFunc(c.forwards, func(f Forward) bool { return f.Port == port })
	if i < 0 {
		c.mu.Unlock()
		return nil, ErrPortNotAnnounced
	}
	if len(c.channels) >= c.cfg.MaxChannels {
		c.mu.Unlock()
		return nil, ErrTooManyChannels
	}
	addr := c.forwards[i].Address
	c.nextID++
	id := c.nextID
	c.nextOrigin++
	origin := 1024 + c.nextOrigin%30000
	ch := newChannel(c, id, port)
	c.channels[id] = ch
	c.openedTotal++
	c.mu.Unlock()

	err := c.send(&apf.ChannelOpen{ChannelType: apf.ChannelForwardedTCPIP, Sender: id, Window: c.cfg.Window,
		MaxPacket: 0xFFFFFFFF, ConnectedAddress: addr, ConnectedPort: port,
		OriginatorAddress: "127.0.0.1", OriginatorPort: origin})
	if err != nil {
		c.removeChannel(id)
		return nil, c.Err()
	}
	if err := ch.waitOpen(ctx); err != nil {
		return nil, err
	}
	return ch, nil
}

// Info is a snapshot of a tunnel.
type Info struct {
	UUID          apf.UUID
	User          string
	Remote        string
	TLSVersion    string
	TLSCipher     string
	Protocol      string // APF version, e.g. "1.0"
	Trigger       uint32
	ConnectedAt   time.Time
	LastReceived  time.Time
	LastKeepalive time.Time // zero until the first KEEPALIVE_REQUEST
	// KeepaliveAccepted is the interval and timeout AMT accepted, in
	// seconds (zero until KEEPALIVE_OPTIONS_REPLY).
	KeepaliveAccepted [2]uint32
	Forwards          []Forward
	Ready             bool
	Channels          int
	ChannelsOpened    uint64
	BytesIn, BytesOut uint64
	Keepalives        uint64
}

// ConnectedAt returns when the connection was accepted.
func (c *Conn) ConnectedAt() time.Time { return c.connectedAt }

// UUID returns the device UUID from PROTOCOL_VERSION.
func (c *Conn) UUID() apf.UUID { return c.uuid }

// Hostname returns the first printable, non-empty address among the
// device's tcpip-forward requests: the host name AMT announced.
func (c *Conn) Hostname() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Hostname(c.forwards)
}

// Hostname returns the first printable, non-empty address in fs.
func Hostname(fs []Forward) string {
	for _, f := range fs {
		if f.Address != "" && strings.IndexFunc(f.Address, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
			return f.Address
		}
	}
	return ""
}

// HasPort reports whether port is announced.
func (c *Conn) HasPort(port uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.forwards, func(f Forward) bool { return f.Port == port })
}

// Info returns a snapshot of the tunnel's state.
func (c *Conn) Info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := &c.names
	if !n.made || n.tls != c.tlsVersion || n.cipher != c.tlsCipher || n.major != c.version.Major || n.minor != c.version.Minor {
		// tls.CipherSuiteName builds the suite list on every call: Info
		// is called for every device on every snapshot, so name once.
		*n = infoNames{made: true, tls: c.tlsVersion, cipher: c.tlsCipher, major: c.version.Major, minor: c.version.Minor,
			tlsName: tlsVersionName(c.tlsVersion), cipherName: tls.CipherSuiteName(c.tlsCipher),
			protocol: fmt.Sprintf("%d.%d", c.version.Major, c.version.Minor)}
	}
	in := Info{
		UUID: c.uuid, User: c.user, Remote: c.remote,
		TLSVersion: n.tlsName, TLSCipher: n.cipherName,
		Protocol:          n.protocol,
		Trigger:           c.version.Trigger,
		ConnectedAt:       c.connectedAt,
		LastReceived:      time.Unix(0, c.lastRecv.Load()),
		KeepaliveAccepted: [2]uint32{c.kaInterval, c.kaTimeout},
		Forwards:          slices.Clone(c.forwards),
		Ready:             c.ready,
		Channels:          len(c.channels),
		ChannelsOpened:    c.openedTotal,
		BytesIn:           c.bytesIn.Load(),
		BytesOut:          c.bytesOut.Load(),
		Keepalives:        c.keepalives.Load(),
	}
	if ka := c.lastKA.Load(); ka != 0 {
		in.LastKeepalive = time.Unix(0, ka)
	}
	if c.tlsVersion == 0 {
		in.TLSVersion, in.TLSCipher = "none", ""
	}
	return in
}

// infoNames are the strings Info reports for a tunnel's TLS version,
// cipher suite and APF protocol version, with what they were made from.
type infoNames struct {
	made                          bool
	tls, cipher                   uint16
	major, minor                  uint32
	tlsName, cipherName, protocol string
}

func tlsVersionName(v uint16) string {
	if v == 0 {
		return "none"
	}
	return tls.VersionName(v)
}
