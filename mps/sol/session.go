package sol

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/redir"
)

// Defaults of the options.
const (
	// DefaultHandshakeTimeout bounds [Open] from the first message to the
	// 0x21 reply when the context has no earlier deadline.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultKeepalive is the interval of the session's 0x2B heartbeats,
	// that of MeshCommander and the ui-toolkit (redirection.md §4).
	DefaultKeepalive = 2 * time.Second
	// DefaultEndTimeout is how long [Session.Close] waits for the
	// device's 0x23 before it closes the connection anyway.
	DefaultEndTimeout = 2 * time.Second
	// WriteTimeout bounds each write to the device: a device (or tunnel)
	// that takes nothing for that long is gone.
	WriteTimeout = 10 * time.Second
)

const (
	// maxSkipped is how many heartbeats, pings, control messages and
	// recording notices the handshake skips while it waits for a reply.
	maxSkipped = 32
	// maxQueued is how many 0x2A messages wait for Read (each at most
	// redir.DefaultLimits.MaxSOLData bytes).
	maxQueued = 32
	// maxChunk is the most keystroke bytes per 0x28, as amtterm sends.
	maxChunk = 512
	// clientNC is the nc of a type 4 response: MeshCommander's and
	// amtterm 1.8's (redirection.md §2).
	clientNC = "00000002"
)

// settings are the web consoles' 0x20 values (redirection.md §2, §4):
// HeartbeatInterval 0, as they ask; the session sends its own heartbeats.
var settings = redir.SOLSettings{MaxTxBuffer: 10000, TxBufferTimeout: 100, HostSessionRxTimeout: 10000, HostFifoRxFlushTimeout: 100}

// defaultAuth is the order of preference among the offered types: the
// order of the ui-toolkit, MeshCentral and amtterm 1.8.
var defaultAuth = []redir.AuthType{redir.AuthDigest, redir.AuthDigestRFC2069, redir.AuthPassword}

// Option changes how [Open] opens a session.
type Option func(*options)

type options struct {
	auth      []redir.AuthType
	noQuery   bool
	handshake time.Duration
	keepalive time.Duration
	end       time.Duration
	log       *slog.Logger
}

// WithAuth sets the authentication types [Open] accepts, most preferred
// first, among [redir.AuthDigest], [redir.AuthDigestRFC2069] and
// [redir.AuthPassword] (others are ignored). Default: 4, 3, 1. Leaving
// out [redir.AuthPassword] refuses to send the password in clear.
func WithAuth(types ...redir.AuthType) Option {
	return func(o *options) {
		o.auth = o.auth[:0]
		for _, t := range types {
			if slices.Contains(defaultAuth, t) && !slices.Contains(o.auth, t) {
				o.auth = append(o.auth, t)
			}
		}
	}
}

// WithoutQuery skips the authentication query and uses the first type of
// [WithAuth] straight away, as amtterm 1.4 does with clear text.
func WithoutQuery() Option { return func(o *options) { o.noQuery = true } }

// WithHandshakeTimeout bounds the handshake (default
// [DefaultHandshakeTimeout]); the context's deadline applies too.
func WithHandshakeTimeout(d time.Duration) Option { return func(o *options) { o.handshake = d } }

// WithKeepalive sets the interval of the session's heartbeats (default
// [DefaultKeepalive]).
func WithKeepalive(d time.Duration) Option { return func(o *options) { o.keepalive = d } }

// WithEndTimeout sets how long Close waits for the device's 0x23 (default
// [DefaultEndTimeout]).
func WithEndTimeout(d time.Duration) Option { return func(o *options) { o.end = d } }

// WithLogger sends debug records of the session's start and end to l. They
// carry the user name and the authentication type, never the password.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Info describes an open session.
type Info struct {
	ProtocolMajor, ProtocolMinor byte           // of the redirection protocol (0x11)
	FWMajor, FWMinor             byte           // the AMT firmware version (0x11)
	OEM                          uint32         // IANA enterprise number (343 is Intel)
	Auth                         redir.AuthType // how the session authenticated
}

// Session is an open Serial-over-LAN session. Read returns the host's
// output, Write sends keystrokes, and Close ends the session. Read may run
// concurrently with Write and Close, and Write with Close; Read and Write
// are each for one goroutine at a time. The session's goroutines (the
// reader and the heartbeat) end by Close, which waits for them.
type Session struct {
	conn net.Conn
	br   *bufio.Reader
	log  *slog.Logger
	opts options
	info Info

	wmu sync.Mutex // serializes writes; guards seq
	seq uint32

	data     chan []byte   // host output for Read; closed when the reader ends
	pending  []byte        // output not yet returned (Read's goroutine)
	rdl      deadline      // Read's deadline
	closing  chan struct{} // closed by Close
	endReply chan struct{} // closed when 0x23 arrives during Close
	readDone chan struct{} // closed when the reader ends

	mu     sync.Mutex
	err    error // why the session ended; nil while it runs
	closed bool  // Close was called

	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Open starts a Serial-over-LAN session on conn, a connection to the
// device's redirection port (16994, or an APF channel to it), with the
// AMT credentials user and password (either may be empty, for a relay that
// puts in its own). It takes conn over: it closes it when the handshake
// fails and when the session ends. ctx bounds the handshake only.
//
// Open tries no second login: a [*CredentialsError] means the device
// rejected the credentials, and AMT locks an account out after repeated
// failures.
func Open(ctx context.Context, conn net.Conn, user, password string, opts ...Option) (*Session, error) {
	o := options{auth: slices.Clone(defaultAuth), handshake: DefaultHandshakeTimeout, keepalive: DefaultKeepalive, end: DefaultEndTimeout}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if len(o.auth) == 0 {
		conn.Close()
		return nil, &NoAuthError{}
	}
	s := &Session{
		conn: conn, br: bufio.NewReaderSize(conn, 4096), log: o.log, opts: o,
		data: make(chan []byte, maxQueued), closing: make(chan struct{}),
		endReply: make(chan struct{}), readDone: make(chan struct{}),
	}
	if len(user) > redir.MaxLV || len(password) > redir.MaxLV {
		conn.Close()
		return nil, errors.New("sol: the AMT user name or password is longer than 255 bytes")
	}

	dl := time.Now().Add(o.handshake)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	conn.SetDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	err := s.handshake(user, password)
	if !stop() {
		<-fired // ctx ended: the deadline has interrupted the handshake
		if err == nil || errors.Is(err, ErrDeviceGone) {
			err = fmt.Errorf("sol: the handshake was cancelled: %w", context.Cause(ctx))
		}
	}
	if err != nil {
		conn.Close()
		s.log.Debug("sol: session refused", "user", user, "err", err)
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	s.log.Debug("sol: session open", "user", user, "auth", s.info.Auth.String(),
		"fw", fmt.Sprintf("%d.%d", s.info.FWMajor, s.info.FWMinor))
	s.wg.Add(2)
	go s.reader()
	go s.heartbeats()
	return s, nil
}

// Info returns what the handshake learned.
func (s *Session) Info() Info { return s.info }

func (s *Session) handshake(user, password string) error {
	if err := s.write(&redir.StartSession{Kind: redir.KindSOL}); err != nil {
		return err
	}
	start, err := expect[*redir.StartSessionReply](s, redir.MsgStartSessionReply)
	if err != nil {
		return err
	}
	if start.Status != redir.StatusOK {
		return &ReplyError{Code: redir.MsgStartSessionReply, Status: start.Status}
	}
	if start.ProtocolMajor != 1 {
		return protocolError("redirection protocol %d.%d; want 1.x", start.ProtocolMajor, start.ProtocolMinor)
	}
	s.info = Info{ProtocolMajor: start.ProtocolMajor, ProtocolMinor: start.ProtocolMinor,
		FWMajor: start.FWMajor, FWMinor: start.FWMinor, OEM: start.OEM}

	typ := s.opts.auth[0]
	if !s.opts.noQuery {
		if typ, err = s.query(); err != nil {
			return err
		}
	}
	s.info.Auth = typ
	if typ == redir.AuthPassword {
		err = s.clearText(user, password)
	} else {
		err = s.digest(typ, user, password)
	}
	if err != nil {
		return err
	}

	if err := s.writeSOL(&redir.SOLStart{Settings: settings}); err != nil {
		return err
	}
	reply, err := expect[*redir.SOLStartReply](s, redir.MsgSOLStartReply)
	if err != nil {
		return err
	}
	if reply.Status != redir.StatusOK {
		return &ReplyError{Code: redir.MsgSOLStartReply, Status: reply.Status}
	}
	// 0x27 as the web consoles send it; its meaning is unknown (§2).
	return s.writeSOL(&redir.SOLOpen{Data: [6]byte{2: 0x1b}})
}

// NoAuthError reports that the device offers none of the authentication
// types the console accepts. It matches [ErrNoAuth] and [ErrRefused].
type NoAuthError struct {
	Offered []byte // the types the device listed in its answer to the query
}

func (e *NoAuthError) Error() string {
	return fmt.Sprintf("%v (it offers % x)", ErrNoAuth, e.Offered)
}

// Is matches [ErrNoAuth] and [ErrRefused].
func (e *NoAuthError) Is(target error) bool { return target == ErrNoAuth || target == ErrRefused }

// query asks which types the device supports and picks the most preferred
// one. A device that refuses the query gets the most preferred type.
func (s *Session) query() (redir.AuthType, error) {
	r, err := s.exchange(redir.AuthQuery, nil)
	if err != nil {
		return 0, err
	}
	if r.Status != redir.StatusOK {
		return s.opts.auth[0], nil
	}
	for _, want := range s.opts.auth {
		if slices.Contains(r.Data, byte(want)) {
			return want, nil
		}
	}
	return 0, &NoAuthError{Offered: slices.Clone(r.Data)}
}

// exchange sends one 0x13 and returns the 0x14 that answers it, which must
// be of the same type.
func (s *Session) exchange(typ redir.AuthType, data []byte) (*redir.AuthenticateReply, error) {
	if err := s.write(&redir.Authenticate{Type: typ, Data: data}); err != nil {
		return nil, err
	}
	r, err := expect[*redir.AuthenticateReply](s, redir.MsgAuthenticateReply)
	if err != nil {
		return nil, err
	}
	if r.Type != typ && r.Status == redir.StatusOK {
		return nil, protocolError("the answer to %s authentication is of type %s", typ, r.Type)
	}
	return r, nil
}

// result turns the answer to a login into an error: status 1 is wrong
// credentials, any other non-zero status a refusal.
func result(r *redir.AuthenticateReply, typ redir.AuthType, user string) error {
	switch r.Status {
	case redir.StatusOK:
		return nil
	case redir.StatusAuthFailed:
		return &CredentialsError{User: user, Auth: typ}
	}
	return &ReplyError{Code: redir.MsgAuthenticateReply, Status: r.Status, Auth: typ}
}

func (s *Session) clearText(user, password string) error {
	data := redir.PasswordAuth{User: user, Password: []byte(password)}.Append(nil)
	r, err := s.exchange(redir.AuthPassword, data)
	clear(data)
	if err != nil {
		return err
	}
	return result(r, redir.AuthPassword, user)
}

// digest runs the three steps of type 3 or 4 (redirection.md §2).
func (s *Session) digest(typ redir.AuthType, user, password string) error {
	// Step 1: user and uri; the device answers with its challenge
	// (status 1). Status 0 lets the console in without one.
	r, err := s.exchange(typ, redir.Digest{User: user, URI: redir.DigestURI}.Append(nil, typ))
	if err != nil {
		return err
	}
	switch r.Status {
	case redir.StatusOK:
		return nil
	case redir.StatusAuthFailed:
	default:
		return &ReplyError{Code: redir.MsgAuthenticateReply, Status: r.Status, Auth: typ}
	}
	if r.Type != typ {
		return protocolError("the challenge to %s authentication is of type %s", typ, r.Type)
	}
	ch, err := redir.ParseChallenge(r.Data)
	if err != nil {
		return protocolError("digest challenge: %w", err)
	}
	if ch.Nonce == "" {
		return protocolError("digest challenge without a nonce")
	}
	// Step 3: the response.
	d := redir.Digest{User: user, Realm: ch.Realm, Nonce: ch.Nonce, URI: redir.DigestURI}
	if typ == redir.AuthDigest {
		d.CNonce, d.NC, d.QOP = redir.NewNonce(), clientNC, redir.QOPAuth
	}
	pw := []byte(password)
	d.Response = d.ResponseFor(typ, pw)
	clear(pw)
	if r, err = s.exchange(typ, d.Append(nil, typ)); err != nil {
		return err
	}
	return result(r, typ, user)
}

// deviceCodes are the messages a device may send a console.
var deviceCodes = []byte{redir.MsgRecording, redir.MsgStartSessionReply, redir.MsgAuthenticateReply,
	redir.MsgSOLStartReply, redir.MsgSOLEndReply, redir.MsgSOLHeartbeat, redir.MsgSOLPing,
	redir.MsgSOLControls, redir.MsgSOLDataFromHost}

// readMsg reads one whole message from the device, within the limits.
func (s *Session) readMsg() (redir.Message, error) {
	m, _, err := redir.ReadMessage(s.br, deviceCodes...)
	if err != nil {
		return nil, readError(err)
	}
	return m, nil
}

// skippable are the messages that may arrive between a request and its
// reply and need no answer.
func skippable(code byte) bool {
	switch code {
	case redir.MsgSOLHeartbeat, redir.MsgSOLPing, redir.MsgSOLControls, redir.MsgRecording:
		return true
	}
	return false
}

// expect returns the next message, which must be code, as its type T;
// at most maxSkipped skippable messages before it are skipped.
func expect[T redir.Message](s *Session, code byte) (T, error) {
	var zero T
	for range maxSkipped + 1 {
		m, err := s.readMsg()
		if err != nil {
			return zero, err
		}
		if skippable(m.Code()) {
			continue
		}
		t, ok := m.(T)
		if !ok || m.Code() != code {
			return zero, protocolError("got %s, want %s", redir.Name(m.Code()), redir.Name(code))
		}
		return t, nil
	}
	return zero, protocolError("more than %d messages while waiting for %s", maxSkipped, redir.Name(code))
}

// write sends one message in one Write, within [WriteTimeout].
func (s *Session) write(m redir.Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(m)
}

func (s *Session) writeLocked(m redir.Message) error {
	s.conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
	b := redir.Marshal(m)
	_, err := s.conn.Write(b)
	if m.Code() == redir.MsgAuthenticate {
		clear(b) // it may hold the password
	}
	if err != nil {
		return &GoneError{Op: "write", Err: err}
	}
	return nil
}

// writeSOL numbers and sends a SOL message; MeshCommander counts one
// sequence from 1 for everything it sends.
func (s *Session) writeSOL(m redir.SOLMessage) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.seq++
	m.Header().Seq = s.seq
	return s.writeLocked(m)
}

// fail records why the session ended, if nothing did before, and returns
// what is recorded.
func (s *Session) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		if s.closed {
			err = ErrClosed
		}
		s.err = err
	}
	return s.err
}

func (s *Session) ended() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// reader reads the device's messages until the session ends and queues
// the host's output for Read.
func (s *Session) reader() {
	defer s.wg.Done()
	defer close(s.readDone)
	defer close(s.data)
	for {
		m, err := s.readMsg()
		if err != nil {
			s.fail(err)
			s.conn.Close()
			return
		}
		switch m := m.(type) {
		case *redir.SOLDataFromHost:
			if len(m.Data) == 0 {
				continue
			}
			select {
			case s.data <- m.Data: // ReadMessage allocated it for this message
			case <-s.closing:
			}
		case *redir.SOLEndReply:
			select {
			case <-s.closing:
				close(s.endReply) // Close's 0x22 is answered
				return
			default:
			}
			// The device ended the session by itself.
			s.fail(io.EOF)
			s.write(&redir.EndSession{})
			s.conn.Close()
			return
		case *redir.SOLHeartbeat, *redir.SOLPing, *redir.SOLControls, *redir.Recording:
			// No answer: web consoles consume them (§4).
		default:
			s.fail(protocolError("%s during SOL", redir.Name(m.Code())))
			s.conn.Close()
			return
		}
	}
}

// heartbeats sends 0x2B every keepalive interval until the session ends.
func (s *Session) heartbeats() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.keepalive)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-s.readDone:
			return
		case <-t.C:
			if err := s.writeSOL(&redir.SOLHeartbeat{}); err != nil {
				s.fail(err)
				s.conn.Close()
				return
			}
		}
	}
}

// Read reads the host's output. It returns io.EOF when the device ended
// the session, an error matching [ErrDeviceGone] when the connection
// ended or broke, [ErrProtocol] when the device broke the protocol,
// [ErrClosed] after Close, and os.ErrDeadlineExceeded past the deadline of
// [Session.SetReadDeadline]. Output that arrived before the end is
// returned first (except after Close).
func (s *Session) Read(p []byte) (int, error) {
	if s.isClosed() {
		return 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	for len(s.pending) == 0 {
		select {
		case b, ok := <-s.data:
			if !ok {
				return 0, s.ended()
			}
			s.pending = b
		case <-s.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// SetReadDeadline sets the deadline of Read (zero: none), as on a
// net.Conn; a Read waiting returns when it passes.
func (s *Session) SetReadDeadline(t time.Time) error {
	s.rdl.set(t)
	return nil
}

// Write sends p to the host as keystrokes, in 0x28 messages of at most 512
// bytes. It returns the session's error once it has ended.
func (s *Session) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := s.ended(); err != nil {
			return n, err
		}
		k := min(len(p), maxChunk)
		if err := s.writeSOL(&redir.SOLDataToHost{Data: p[:k]}); err != nil {
			return n, s.fail(err)
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Close ends the session as amtterm does: 0x22, then, once the device has
// answered 0x23 (within the end timeout), 0x12; host output still
// arriving is discarded. It then closes the connection and waits for the
// session's goroutines. A session that has already ended is only closed.
// Close always returns nil; a second Close does nothing.
func (s *Session) Close() error { return s.end(true) }

// Abort closes the connection without ending the session, as web consoles
// do, and waits for the session's goroutines.
func (s *Session) Abort() error { return s.end(false) }

func (s *Session) end(polite bool) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		alive := s.err == nil
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		if polite && alive && s.writeSOL(&redir.SOLEnd{}) == nil {
			t := time.NewTimer(s.opts.end)
			select {
			case <-s.readDone: // the reader closes endReply before it ends
			case <-t.C:
			}
			t.Stop()
			if isClosed(s.endReply) {
				s.write(&redir.EndSession{})
			}
		}
		s.conn.Close()
		s.wg.Wait()
		err := s.fail(ErrClosed)
		s.log.Debug("sol: session ended", "err", err)
	})
	return nil
}

// deadline is a deadline a waiting Read notices: wait returns a channel
// closed once it has passed.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	ch    chan struct{} // nil: no deadline set yet
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.ch == nil || isClosed(d.ch) {
		d.ch = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		return
	}
	ch := d.ch
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.ch == ch && !isClosed(ch) {
			close(ch)
		}
	})
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
