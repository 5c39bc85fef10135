package tunnel

import (
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

// Accept runs the server side of a CIRA handshake on raw: TLS, then APF up to
// successful authentication, all under Config.HandshakeTimeout and ctx. On
// success the deadline is cleared and the caller must call [Conn.Serve]. On
// failure raw is closed and the error is a [*CloseError].
func Accept(ctx context.Context, raw net.Conn, cfg *Config) (*Conn, error) {
	c := newConn(cfg, raw.RemoteAddr().String(), raw.LocalAddr())
	conn := raw
	if c.cfg.Poller != nil {
		if s := newSock(raw, c.cfg.WriteTimeout); s != nil {
			conn = s
		}
	}
	c.stream = streamConn{conn: conn, recv: &c.received, lim: c.cfg.limits(), rbuf: make([]byte, smallReadBuf)}
	c.pc = &c.stream
	if err := raw.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout)); err != nil {
		return nil, c.abort(&CloseError{Reason: ReasonNetworkError, Err: err}, 0)
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	// hf is filled as the handshake goes, and attached to its error.
	hf := new(HandshakeFailure)
	if c.cfg.TLS != nil {
		helloSlots.Store(conn, &hf.Hello)
		tc := tls.Server(conn, c.cfg.Legacy.config(c.cfg.TLS))
		err := tc.HandshakeContext(ctx)
		helloSlots.Delete(conn)
		if err != nil {
			return nil, c.failed(hf, c.abort(c.handshakeError(ctx, err, ReasonTLSError), 0))
		}
		st := tc.ConnectionState()
		c.stream.conn, c.tlsVersion, c.tlsCipher = tc, st.Version, st.CipherSuite
	}
	if err := c.handshake(ctx, hf); err != nil {
		return nil, c.failed(hf, err)
	}
	if !stop() || raw.SetDeadline(time.Time{}) != nil {
		return nil, c.abort(c.handshakeError(ctx, context.Cause(ctx), ReasonShutdown), 0)
	}
	c.lastRecv.Store(time.Now().UnixNano())
	return c, nil
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

// failed attaches what the handshake had shown to its error (a
// *CloseError from abort).
func (c *Conn) failed(hf *HandshakeFailure, err error) error {
	ce, ok := err.(*CloseError)
	if !ok {
		return err
	}
	hf.TLSVersion, hf.Device = c.tlsVersion, c.uuid
	hf.Trickling = ce.Reason == ReasonHandshakeTimeout && c.trickling()
	ce.Handshake = hf
	return ce
}

// abort ends a tunnel that never reached Serve and returns err.
func (c *Conn) abort(err *CloseError, disc apf.DisconnectReason) *CloseError {
	c.closeWith(err, disc)
	return err
}

// handshake runs APF from PROTOCOL_VERSION to USERAUTH_SUCCESS, writing
// synchronously (the writer goroutine starts in Serve).
func (c *Conn) handshake(ctx context.Context, hf *HandshakeFailure) error {
	fail := func(err error) error { return c.abort(c.handshakeError(ctx, err, ReasonNetworkError), 0) }
	attempts := 0
	for c.state != stPfwdService {
		m, err := c.pc.readPacket(0)
		if err != nil {
			if err == errHTTPProbe {
				// A browser or scanner probing the port: answer in its own
				// protocol, as other MPS implementations do.
				c.pc.writePacket([]byte(httpProbeReply), 0)
				return c.abort(&CloseError{Reason: ReasonProtocolError, Detail: "HTTP request on the CIRA port"}, 0)
			}
			var pe *apf.ParseError
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
			if c.tlsVersion != 0 && c.tlsVersion < tls.VersionTLS12 && !GlobalLegacy(c.cfg.TLS) && !c.cfg.Legacy.allowed(pv.UUID) {
				// Accepted in TLS only because some device is on the legacy
				// list (LegacyTLS); this one is not.
				return c.abort(&CloseError{Reason: ReasonLegacyTLS,
					Detail: fmt.Sprintf("a %s session, and the device is not allowed legacy TLS", tls.VersionName(c.tlsVersion))},
					apf.DisconnectHostNotAllowed)
			}
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
			clear(ua.Password) // it lies in the transport's buffer; do not keep it around
			if okAuth {
				c.user = ua.Username
				if err := c.writeNow(&apf.UserauthSuccess{}); err != nil {
					return fail(err)
				}
				c.state = stPfwdService
				break
			}
			attempts++
			hf.User, hf.Auth = ua.Username, AuthOtherMethod
			if ua.Method == apf.MethodPassword && !ua.ChangePassword {
				hf.Auth = AuthWrongPassword
				if c.cfg.UserExists != nil && !c.cfg.UserExists(ctx, ua.Username) {
					hf.Auth = AuthUnknownUser
				}
			}
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

// pfwdService accepts the port-forwarding service after authentication
// (apf.md §3 step 5) and starts the settle timer after which the tunnel is
// ready.
func (c *Conn) pfwdService(m *apf.ServiceRequest) error {
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

// forward records or withdraws an announced port (apf.md §2.5).
func (c *Conn) forward(m *apf.TCPIPForward) error {
	c.mu.Lock()
	i := c.forwardIndex(m.Port)
	var reply apf.Message = &apf.RequestSuccess{Port: m.Port}
	changed := false
	switch {
	case m.Cancel:
		if i >= 0 {
			c.forwards = slices.Delete(c.forwards, i, i+1)
			changed = true
		}
		reply = &apf.RequestSuccess{NoPort: true}
	case i >= 0:
		changed = c.forwards[i].Address != m.Address
		c.forwards[i].Address = m.Address
	case len(c.forwards) >= c.cfg.MaxForwards:
		reply = &apf.RequestFailure{}
	default:
		c.forwards = append(c.forwards, Forward{Port: m.Port, Address: m.Address})
		changed = true
	}
	if !c.ready && c.settle != nil {
		c.settle.Reset(c.cfg.ForwardSettle)
	}
	late := c.ready && changed
	c.mu.Unlock()
	if late && c.cfg.OnForwards != nil {
		c.cfg.OnForwards(c)
	}
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
