package amtsim

// The device side of the AMT redirection protocol (redirection.md), for
// Serial-over-LAN only: the session manager (0x10–0x14) with clear-text and
// digest authentication, then SOL (0x20–0x2B) in front of a tiny simulated
// host that echoes lines back.
//
// Every message arrives whole or in pieces through a buffered reader, so the
// framing of the transport (TCP segments, APF CHANNEL_DATA, websocket frames
// of a relay) does not matter. Every message the device sends goes out in its
// own Write, and after 0x21 and 0x23 the next one waits [solSettle]: amtterm
// 1.4 throws away whatever follows those replies in the same read
// (redirection.md §3, pitfalls).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/redir"
)

// Defaults and limits of the redirection service.
const (
	// DefaultRedirHandshakeTimeout bounds a session's handshake, from the
	// connection to the 0x21 reply.
	DefaultRedirHandshakeTimeout = 10 * time.Second
	// DefaultRedirIdleTimeout ends a SOL session from which nothing has
	// arrived for that long. Consoles send or echo heartbeats every few
	// seconds.
	DefaultRedirIdleTimeout = 60 * time.Second
	// DefaultSOLHeartbeat is the interval of the device's 0x2B heartbeats
	// when the console asks for 0, as web consoles do.
	DefaultSOLHeartbeat = 2 * time.Second

	maxSOLChunk      = 1 << 10          // longest 0x2A sent
	maxSOLLine       = 256              // characters the simulated host keeps per line
	maxSOLInput      = 64 << 10         // keystrokes kept for SOLInput
	maxSOLHeartbeat  = 10 * time.Second // amtterm quits after 20 s of silence
	minSOLHeartbeat  = 50 * time.Millisecond
	redirWriteTimout = 10 * time.Second
	// solSettle is the pause after 0x21 and 0x23 before anything else is
	// sent: amtterm 1.4 drops the rest of a read that holds them.
	solSettle = 75 * time.Millisecond
)

// Errors a redirection session ends with. Branch on them with errors.Is.
var (
	// ErrRedirProtocol: the console sent a malformed, oversized or
	// unexpected message.
	ErrRedirProtocol = errors.New("amtsim: redirection protocol error")
	// ErrRedirAuth: the console's credentials were wrong, or it asked for
	// an authentication type the device does not support.
	ErrRedirAuth = errors.New("amtsim: redirection authentication failed")
	// ErrRedirBusy: a SOL session was already active (0x11 status 2).
	ErrRedirBusy = errors.New("amtsim: a SOL session is already active")
	// ErrRedirUnsupported: the console asked for IDE-R, KVM or an unknown
	// session type.
	ErrRedirUnsupported = errors.New("amtsim: redirection session type not supported")
)

// RedirConfig configures a [RedirServer]. The zero value of each optional
// field selects the default named in its comment.
type RedirConfig struct {
	// User and Password are the AMT admin credentials, checked by
	// clear-text (type 1) and digest (types 3 and 4) authentication. User
	// defaults to [DefaultAMTUser]; an empty Password refuses everyone.
	User     string
	Password []byte
	// Hostname names the simulated host in its banner and prompt. Default
	// "amtsim".
	Hostname string
	// Realm is the digest realm, at most 255 bytes (longer is cut).
	// Default: "Digest:" and 32 random upper-case hex digits, the form of
	// AMT's realm.
	Realm string
	// FWMajor and FWMinor are the firmware version in 0x11. Default 11.8.
	FWMajor, FWMinor uint8
	// NoClearText makes the device behave like AMT 12 and later: the answer
	// to a query offers only digest, and type 1 gets status 2 (not
	// supported). amtterm 1.4 cannot log in then.
	NoClearText bool
	// HandshakeTimeout bounds a session from the connection to the SOL
	// start reply. Default [DefaultRedirHandshakeTimeout].
	HandshakeTimeout time.Duration
	// IdleTimeout ends a SOL session when nothing arrives for that long.
	// Default [DefaultRedirIdleTimeout].
	IdleTimeout time.Duration
	// Heartbeat is how often the device sends 0x2B when the console asks
	// for a HeartbeatInterval of 0. Default [DefaultSOLHeartbeat]. A
	// console's own interval is used otherwise, within 50 ms and 10 s.
	Heartbeat time.Duration
	// Platform, if set, is the simulated platform whose switches and
	// consent gate the sessions: SOL must be enabled in
	// AMT_RedirectionService (else 0x11 status 3), and where the consent
	// policy asks for consent a SOL session needs it (else 0x21 status
	// 0xFF, [ErrConsentRequired]). Sessions and wrong logins go to its
	// audit log, and a host it booted into BIOS setup shows [SOLBIOS].
	// The firmware version defaults to the platform's.
	Platform *Platform
	// Screen is what the host behind the serial port shows: [SOLShell]
	// (default) or [SOLBIOS].
	Screen SOLScreen
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// RedirServer is the redirection service of one simulated AMT (port 16994,
// redirection.md): it serves Serial-over-LAN sessions to amtterm, web
// consoles and [DialSOL]. IDE-R and KVM are refused with 0x11 status 3.
//
// The host behind the serial port shows the configured [SOLScreen]. The
// shell prints a banner containing "Presence simulated AMT" and the prompt
// "<hostname>$ ", echoes printable characters, handles backspace, and
// answers every line with "you typed: <line>\r\n" and a new prompt. The
// BIOS screen is described in bios.go. Keystrokes are recorded for
// [RedirServer.SOLInput].
//
// At most one SOL session runs at a time; a second one gets 0x11 status 2
// (busy). A RedirServer is safe for concurrent use.
type RedirServer struct {
	cfg  RedirConfig
	log  *slog.Logger
	bann []byte

	mu        sync.Mutex
	solActive bool
	input     []byte        // keystrokes, the last maxSOLInput bytes
	inputCh   chan struct{} // closed and replaced when input grows
}

// NewRedirServer applies the defaults to cfg and returns a server. It
// copies the password.
func NewRedirServer(cfg RedirConfig) *RedirServer {
	cfg.Password = append([]byte(nil), cfg.Password...)
	if cfg.User == "" {
		cfg.User = DefaultAMTUser
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "amtsim"
	}
	if cfg.Realm == "" {
		var b [16]byte
		rand.Read(b[:])
		cfg.Realm = "Digest:" + strings.ToUpper(hex.EncodeToString(b[:]))
	}
	if len(cfg.Realm) > redir.MaxLV {
		cfg.Realm = cfg.Realm[:redir.MaxLV] // its length is one byte on the wire
	}
	if cfg.FWMajor == 0 && cfg.FWMinor == 0 {
		cfg.FWMajor, cfg.FWMinor = 11, 8
		if cfg.Platform != nil {
			v := cfg.Platform.version
			cfg.FWMajor, cfg.FWMinor = uint8(v.major), uint8(min(v.minor, 255))
		}
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultRedirHandshakeTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultRedirIdleTimeout
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultSOLHeartbeat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &RedirServer{
		cfg:     cfg,
		log:     cfg.Logger,
		bann:    []byte("\r\nPresence simulated AMT serial console on " + cfg.Hostname + "\r\n" + cfg.Hostname + "$ "),
		inputCh: make(chan struct{}),
	}
}

// ServeRedirection serves one redirection session on conn with a server of
// its own, and closes conn. See [RedirServer.Serve].
func ServeRedirection(conn net.Conn, cfg RedirConfig) error {
	return NewRedirServer(cfg).Serve(conn)
}

// Serve runs one redirection session on conn and closes it. It returns nil
// when the console ended a SOL session (0x12, or closing the connection),
// and otherwise why the session failed, e.g. [ErrRedirAuth],
// [ErrRedirBusy], [ErrRedirUnsupported] or [ErrRedirProtocol].
func (s *RedirServer) Serve(conn net.Conn) error {
	defer conn.Close()
	ss := &redirSession{s: s, conn: conn, br: bufio.NewReaderSize(conn, 1024)}
	defer ss.release()
	err := ss.run()
	s.log.Debug("amtsim: redirection session ended", "remote", conn.RemoteAddr().String(), "err", err)
	return err
}

// ServeListener serves redirection sessions on the connections ln accepts
// until ln is closed. It then closes the sessions still running, waits for
// them and returns nil; other Accept errors are returned the same way.
func (s *RedirServer) ServeListener(ln net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Serve(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

// SOLInput returns a copy of the keystrokes the simulated host has received
// over SOL (the last 64 KiB), in every session so far.
func (s *RedirServer) SOLInput() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.input...)
}

// WaitSOLInput blocks until the keystrokes received so far contain want, or
// ctx is done.
func (s *RedirServer) WaitSOLInput(ctx context.Context, want []byte) error {
	for {
		s.mu.Lock()
		ok, ch := bytes.Contains(s.input, want), s.inputCh
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *RedirServer) recordInput(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.input = append(s.input, p...)
	if over := len(s.input) - maxSOLInput; over > 0 {
		s.input = s.input[:copy(s.input, s.input[over:])]
	}
	close(s.inputCh)
	s.inputCh = make(chan struct{})
}

// claimSOL takes the device's only SOL slot; false if it is taken.
func (s *RedirServer) claimSOL() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.solActive {
		return false
	}
	s.solActive = true
	return true
}

func (s *RedirServer) releaseSOL() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.solActive = false
}

// redirSession is one connection. The goroutine in Serve reads and answers;
// the heartbeat goroutine only writes, through send.
type redirSession struct {
	s        *RedirServer
	conn     net.Conn
	br       *bufio.Reader
	holdsSOL bool

	nonce    string         // the digest nonce issued in this session, "" if none
	nonceFor redir.AuthType // its auth type
	user     string         // the user who logged in
	admitted bool           // the platform admitted the SOL session
	bios     *biosScreen    // the BIOS screen, nil for the shell

	// The simulated host's line editor (reader goroutine).
	line   []byte
	lastCR bool

	// wmu serializes writes and guards the fields below.
	wmu   sync.Mutex
	quiet time.Time // nothing is sent before this (solSettle)
	seq   uint32    // the last SOL sequence number used
	ended bool      // 0x23 was sent: no more SOL output
}

func (ss *redirSession) release() {
	if ss.admitted {
		ss.s.cfg.Platform.endRedirection(redirSOL, ss.user, ss.addr())
	}
	ss.releaseSOL()
}

// releaseSOL gives back the SOL slot this session holds, once.
func (ss *redirSession) releaseSOL() {
	if ss.holdsSOL {
		ss.holdsSOL = false
		ss.s.releaseSOL()
	}
}

func (ss *redirSession) addr() string { return ss.conn.RemoteAddr().String() }

// failedLogin records a wrong login on the platform.
func (ss *redirSession) failedLogin(user string) {
	if p := ss.s.cfg.Platform; p != nil {
		if user = sanitize(user); user == "" {
			user = "?"
		}
		p.loginFailed(user, ss.addr())
	}
}

func (ss *redirSession) run() error {
	cfg := &ss.s.cfg
	ss.conn.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
	if err := ss.startSession(); err != nil {
		return err
	}
	if err := ss.authenticate(); err != nil {
		return err
	}
	hb, err := ss.startSOL()
	if err != nil {
		return err
	}
	ss.s.log.Debug("amtsim: SOL session started", "remote", ss.conn.RemoteAddr().String(), "heartbeat", hb)
	first := ss.s.bann
	if ss.bios != nil {
		first = ss.bios.paint()
	}
	if err := ss.output(first); err != nil {
		return nil // the console left
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go ss.heartbeats(hb, done, &wg)
	defer wg.Wait()
	defer close(done)
	return ss.console()
}

// read reads the next message, which must have one of the codes want;
// phase says when, for the error. With an error it also returns what was
// read (see [redir.Limits.ReadMessage]).
func (ss *redirSession) read(phase string, want ...byte) (redir.Message, []byte, error) {
	m, b, err := redir.ReadMessage(ss.br, want...)
	if _, ok := errors.AsType[*redir.ParseError](err); ok {
		return m, b, fmt.Errorf("%w %s: %w", ErrRedirProtocol, phase, err)
	}
	if err != nil {
		return m, b, fmt.Errorf("amtsim: redirection read: %w", err)
	}
	return m, b, nil
}

// msgAs returns m as a T, the type its code was read for, or else a
// protocol error that says what came when.
func msgAs[T redir.Message](m redir.Message, when string) (T, error) {
	t, ok := m.(T)
	if !ok {
		return t, fmt.Errorf("%w: %s %s", ErrRedirProtocol, redir.Name(m.Code()), when)
	}
	return t, nil
}

// send writes one message in its own Write. With settle, the next message
// waits solSettle.
func (ss *redirSession) send(m redir.Message, settle bool) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	return ss.sendLocked(redir.Marshal(m), settle)
}

func (ss *redirSession) sendLocked(msg []byte, settle bool) error {
	if d := time.Until(ss.quiet); d > 0 {
		time.Sleep(d) // at most solSettle; the writer lock is meant to wait
	}
	ss.conn.SetWriteDeadline(time.Now().Add(redirWriteTimout))
	_, err := ss.conn.Write(msg)
	if settle {
		ss.quiet = time.Now().Add(solSettle)
	}
	return err
}

// sendSOL writes a SOL message with the next sequence number. It does
// nothing after 0x23.
func (ss *redirSession) sendSOL(m redir.SOLMessage, settle bool) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if ss.ended {
		return nil
	}
	ss.seq++
	m.Header().Seq = ss.seq
	if m.Code() == redir.MsgSOLEndReply {
		ss.ended = true
	}
	return ss.sendLocked(redir.Marshal(m), settle)
}

// startSession handles 0x10 (redirection.md §2): "SOL " starts a session
// unless one is active; IDE-R and KVM are not supported.
func (ss *redirSession) startSession() error {
	m, _, err := ss.read("before StartRedirectionSession", redir.MsgStartSession)
	if err != nil {
		return err
	}
	start, err := msgAs[*redir.StartSession](m, "before StartRedirectionSession")
	if err != nil {
		return err
	}
	status, fail := byte(redir.StatusOK), error(nil)
	switch kind := start.Kind; kind {
	case redir.KindSOL:
		if p := ss.s.cfg.Platform; p != nil && !p.redirEnabled(redirSOL) {
			status, fail = redir.StatusUnsupported, fmt.Errorf("%w: SOL is disabled in AMT_RedirectionService", ErrRedirDisabled)
		} else if ss.s.claimSOL() {
			ss.holdsSOL = true
		} else {
			status, fail = redir.StatusBusy, ErrRedirBusy
		}
	case redir.KindIDER, redir.KindKVM:
		status, fail = redir.StatusUnsupported, fmt.Errorf("%w: %q", ErrRedirUnsupported, kind)
	default:
		status, fail = redir.StatusUnknownType, fmt.Errorf("%w: %q", ErrRedirUnsupported, kind)
	}
	// OEM data length 0: amtterm 1.4 reads exactly 13 bytes.
	cfg := &ss.s.cfg
	reply := &redir.StartSessionReply{Status: status, ProtocolMajor: 1, FWMajor: cfg.FWMajor, FWMinor: cfg.FWMinor, OEM: intelIANA}
	if err := ss.send(reply, false); err != nil {
		return err
	}
	return fail
}

// intelIANA is Intel's IANA enterprise number, the OEM of real AMT's 0x11.
const intelIANA = 343

// authReply writes a 0x14 with data.
func (ss *redirSession) authReply(status byte, typ redir.AuthType, data []byte) error {
	return ss.send(&redir.AuthenticateReply{Status: status, Type: typ, Data: data}, false)
}

// authenticate runs 0x13 exchanges until one succeeds. Every failure is
// answered with its status before the session closes.
func (ss *redirSession) authenticate() error {
	for range redir.MaxAuthMessages {
		m, _, err := ss.read("during authentication", redir.MsgAuthenticate)
		if a, ok := m.(*redir.Authenticate); ok && err != nil {
			ss.authReply(redir.StatusAuthFailed, a.Type, nil) // too much data
		}
		if err != nil {
			return err
		}
		a, err := msgAs[*redir.Authenticate](m, "during authentication")
		if err != nil {
			return err
		}
		done, err := ss.authStep(a.Type, a.Data)
		if err != nil || done {
			return err
		}
	}
	ss.authReply(redir.StatusAuthFailed, redir.AuthQuery, nil)
	return fmt.Errorf("%w: more than %d authentication messages", ErrRedirProtocol, redir.MaxAuthMessages)
}

// authStep handles one 0x13 and reports whether the console is now
// authenticated.
func (ss *redirSession) authStep(typ redir.AuthType, data []byte) (bool, error) {
	cfg := &ss.s.cfg
	switch typ {
	case redir.AuthQuery:
		// Digest first: the browsers behind a relay need 4 (redirection.md
		// §4), and amtterm 1.8 picks 4, then 3, then 1.
		offer := []byte{byte(redir.AuthDigest), byte(redir.AuthDigestRFC2069), byte(redir.AuthPassword)}
		if cfg.NoClearText {
			offer = offer[:2]
		}
		return false, ss.authReply(redir.StatusOK, redir.AuthQuery, offer)
	case redir.AuthPassword:
		if cfg.NoClearText {
			ss.authReply(redir.StatusAuthUnsupported, typ, nil)
			return false, fmt.Errorf("%w: clear-text authentication is disabled", ErrRedirAuth)
		}
		a, err := redir.ParsePasswordAuth(data)
		if err != nil || !ss.credentialsOK([]byte(a.User), a.Password) {
			if err == nil {
				ss.failedLogin(a.User) // before the reply, which the console may act on
			}
			ss.authReply(redir.StatusAuthFailed, typ, nil)
			return false, fmt.Errorf("%w: wrong user name or password", ErrRedirAuth)
		}
		ss.user = a.User
		return true, ss.authReply(redir.StatusOK, typ, nil)
	case redir.AuthDigest, redir.AuthDigestRFC2069:
		return ss.digest(typ, data)
	default: // Kerberos and unknown types
		ss.authReply(redir.StatusAuthUnsupported, typ, nil)
		return false, fmt.Errorf("%w: authentication type %d not supported", ErrRedirAuth, typ)
	}
}

// credentialsOK compares in constant time (for equal lengths).
func (ss *redirSession) credentialsOK(user, pass []byte) bool {
	cfg := &ss.s.cfg
	if len(cfg.Password) == 0 {
		return false
	}
	u := subtle.ConstantTimeCompare(user, []byte(cfg.User))
	p := subtle.ConstantTimeCompare(pass, cfg.Password)
	return u&p == 1
}

// digest handles a type 3 or 4 message: an empty request (step 1) gets a
// challenge with status 1; a response (step 3) to this session's nonce is
// verified.
func (ss *redirSession) digest(typ redir.AuthType, data []byte) (bool, error) {
	cfg := &ss.s.cfg
	f, err := redir.ParseDigest(typ, data)
	if err != nil {
		ss.authReply(redir.StatusAuthFailed, typ, nil)
		return false, fmt.Errorf("%w: malformed digest data: %w", ErrRedirProtocol, err)
	}
	if f.Nonce == "" && f.Response == "" {
		ss.nonce, ss.nonceFor = redir.NewNonce(), typ
		ch := redir.Challenge{Realm: cfg.Realm, Nonce: ss.nonce}
		if typ == redir.AuthDigest {
			ch.QOP = redir.QOPAuth
		}
		return false, ss.authReply(redir.StatusAuthFailed, typ, ch.Append(nil))
	}
	ok := ss.nonce != "" && ss.nonceFor == typ && f.Nonce == ss.nonce && f.Realm == cfg.Realm &&
		(typ == redir.AuthDigestRFC2069 || f.QOP == redir.QOPAuth) && len(cfg.Password) > 0
	ss.nonce = "" // one attempt per challenge
	if ok {
		// Hashed with the console's user name: a wrong one fails u.
		want := f.ResponseFor(typ, cfg.Password)
		u := subtle.ConstantTimeCompare([]byte(f.User), []byte(cfg.User))
		r := subtle.ConstantTimeCompare([]byte(strings.ToLower(f.Response)), []byte(want))
		ok = u&r == 1
	}
	if !ok {
		ss.failedLogin(f.User) // before the reply, which the console may act on
		ss.authReply(redir.StatusAuthFailed, typ, nil)
		return false, fmt.Errorf("%w: wrong digest response", ErrRedirAuth)
	}
	ss.user = f.User
	return true, ss.authReply(redir.StatusOK, typ, nil)
}

// startSOL reads 0x20 and answers 0x21; it returns the heartbeat interval
// the device will keep.
func (ss *redirSession) startSOL() (time.Duration, error) {
	m, _, err := ss.read("instead of StartSOLRedirection", redir.MsgSOLStart)
	if err != nil {
		return 0, err
	}
	start, err := msgAs[*redir.SOLStart](m, "instead of StartSOLRedirection")
	if err != nil {
		return 0, err
	}
	hb := time.Duration(start.Settings.HeartbeatInterval) * time.Millisecond
	if hb == 0 {
		hb = ss.s.cfg.Heartbeat
	}
	hb = min(max(hb, minSOLHeartbeat), maxSOLHeartbeat)
	screen := ss.s.cfg.Screen
	if p := ss.s.cfg.Platform; p != nil {
		if err := p.startRedirection(redirSOL, ss.user, ss.addr()); err != nil {
			// Refused after the login: no consent (or SOL was switched
			// off meanwhile). What AMT sends here is not documented;
			// 0x21 with status 0xFF (error) stops every console.
			// The SOL slot is given back before the refusal, so a
			// console that retries at once (after sending the
			// consent code) is not told it is busy.
			ss.releaseSOL()
			ss.sendSOL(&redir.SOLStartReply{SOLHeader: redir.SOLHeader{Status: redir.StatusError}, Settings: start.Settings}, true)
			return 0, err
		}
		ss.admitted = true
		if p.solScreen() == SOLBIOS {
			screen = SOLBIOS
		}
	}
	if screen == SOLBIOS {
		hw := Hardware{BIOSVendor: "SimBIOS", Manufacturer: "Presence", Model: "simulated AMT"}
		if p := ss.s.cfg.Platform; p != nil {
			hw = p.hw
		}
		ss.bios = newBIOSScreen(ss.s.cfg.Hostname, hw)
	}
	// Status 0, the six settings echoed, three zero bytes. The sequence
	// number is 1, the 0x01 at [4] that 9front's client checks.
	if err := ss.sendSOL(&redir.SOLStartReply{Settings: start.Settings}, true); err != nil {
		return 0, err
	}
	return hb, nil
}

// heartbeats sends 0x2B every interval until done.
func (ss *redirSession) heartbeats(every time.Duration, done <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if err := ss.sendSOL(&redir.SOLHeartbeat{}, false); err != nil {
				return
			}
		}
	}
}

// output sends host output as 0x2A messages.
func (ss *redirSession) output(p []byte) error {
	for len(p) > 0 {
		k := min(len(p), maxSOLChunk)
		if err := ss.sendSOL(&redir.SOLDataFromHost{Data: p[:k]}, false); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// consoleCodes are the messages a console may send during SOL. A ping is
// not answered: web consoles die on an unexpected 0x25 (redirection.md §4).
var consoleCodes = []byte{redir.MsgSOLDataToHost, redir.MsgSOLHeartbeat, redir.MsgSOLPing, redir.MsgSOLOpen,
	redir.MsgSOLEnd, redir.MsgEndSession}

// console serves the running SOL session until the console ends it.
func (ss *redirSession) console() error {
	idle := ss.s.cfg.IdleTimeout
	for {
		ss.conn.SetReadDeadline(time.Now().Add(idle))
		m, b, err := ss.read("during SOL", consoleCodes...)
		if err != nil {
			if len(b) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)) {
				return nil // web consoles just close
			}
			return err
		}
		switch m := m.(type) {
		case *redir.SOLDataToHost:
			if ss.isEnded() {
				continue // amtterm sends its ^] after 0x22
			}
			ss.s.recordInput(m.Data)
			out := ss.host
			if ss.bios != nil {
				out = ss.bios.input
			}
			if err := ss.output(out(m.Data)); err != nil {
				return nil
			}
		case *redir.SOLEnd:
			if err := ss.sendSOL(&redir.SOLEndReply{}, true); err != nil {
				return nil
			}
		case *redir.EndSession:
			return nil
		}
		// Heartbeats, echoes of ours, pings and 0x27 need no answer.
	}
}

func (ss *redirSession) isEnded() bool {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	return ss.ended
}

// host is the simulated host's line discipline: it returns the output for
// keystrokes in.
func (ss *redirSession) host(in []byte) []byte {
	var out []byte
	prompt := ss.s.cfg.Hostname + "$ "
	for _, c := range in {
		switch {
		case c == '\n' && ss.lastCR:
			// The LF of a CR LF Enter (MeshCommander's terminal).
		case c == '\r' || c == '\n':
			out = append(out, "\r\n"...)
			if len(ss.line) > 0 {
				out = append(out, "you typed: "...)
				out = append(out, ss.line...)
				out = append(out, "\r\n"...)
			}
			out = append(out, prompt...)
			ss.line = ss.line[:0]
		case c == 0x7F || c == '\b':
			if len(ss.line) > 0 {
				ss.line = ss.line[:len(ss.line)-1]
				out = append(out, "\b \b"...)
			}
		case c == 0x03: // ^C
			out = append(out, "^C\r\n"...)
			out = append(out, prompt...)
			ss.line = ss.line[:0]
		case c >= 0x20 && c < 0x7F:
			if len(ss.line) < maxSOLLine {
				ss.line = append(ss.line, c)
				out = append(out, c)
			}
		}
		ss.lastCR = c == '\r'
	}
	return out
}

// Redirection returns the device's redirection service, which serves the
// channels the MPS opens to [PortRedirect]: SOL with the device's AMTUser
// and AMTPassword, the digest realm of its WS-Man service, its host name
// in the console banner, and its [Platform]'s switches, consent and SOL
// screen.
func (d *Device) Redirection() *RedirServer {
	d.redirOnce.Do(func() {
		p := d.Platform()
		d.redir = NewRedirServer(RedirConfig{
			User:     d.cfg.AMTUser,
			Password: d.cfg.AMTPassword,
			Hostname: d.cfg.Hostname,
			Realm:    "Digest:" + PlatformGUID(d.cfg.UUID),
			Platform: p,
			Screen:   p.screen,
			Logger:   d.log,
		})
	})
	return d.redir
}

// ServeRedirectionListener serves the device's redirection service on ln,
// e.g. a plain TCP listener, without a tunnel. It returns when ln is closed;
// see [RedirServer.ServeListener].
func (d *Device) ServeRedirectionListener(ln net.Listener) error {
	return d.Redirection().ServeListener(ln)
}

// SOLInput returns the keystrokes the device's simulated host has received
// over SOL; see [RedirServer.SOLInput].
func (d *Device) SOLInput() []byte { return d.Redirection().SOLInput() }

// serveRedirection serves one channel to PortRedirect.
func (c *conn) serveRedirection(ch *channel) {
	defer c.wg.Done()
	if err := c.d.Redirection().Serve(ch); err != nil {
		c.log.Debug("amtsim: redirection session failed", "err", err)
	}
}
