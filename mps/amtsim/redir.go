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
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Redirection message codes (redirection.md §2).
const (
	redirStartSession      = 0x10 // StartRedirectionSession, 8 bytes
	redirStartSessionReply = 0x11 // 13 + OEM data
	redirEndSession        = 0x12 // 4 bytes
	redirAuthenticate      = 0x13 // 9 + L
	redirAuthenticateReply = 0x14 // 9 + L

	solStart         = 0x20 // StartSOLRedirection, 24 bytes
	solStartReply    = 0x21 // 23 bytes
	solEnd           = 0x22 // 8 bytes
	solEndReply      = 0x23 // 8 bytes
	solPing          = 0x24 // KeepAlivePing, 8 bytes; never answered with 0x25 (see console)
	solOpen          = 0x27 // unnamed, 14 bytes, sent by web consoles after 0x21
	solDataToHost    = 0x28 // 10 + n
	solControls      = 0x29 // SOLControlsFromHost, 10 bytes; never sent by the device
	solDataFromHost  = 0x2A // 10 + n
	solHeartbeat     = 0x2B // 8 bytes, both directions
	solHeaderLen     = 8
	solStartLen      = 24
	solStartReplyLen = 23
)

// Status of 0x11 (redirection.md §2).
const (
	sessionOK          = 0
	sessionUnknownType = 1
	sessionBusy        = 2
	sessionUnsupported = 3
)

// Authentication types and statuses of 0x13/0x14 (redirection.md §2).
const (
	authQuery    = 0
	authClear    = 1 // [ulen][user][plen][pass]
	authDigest69 = 3 // RFC 2069: no cnonce, no qop
	authDigest   = 4 // RFC 2617, qop=auth

	authOK          = 0
	authFailed      = 1 // also the status of a digest challenge
	authUnsupported = 2
)

// redirDigestURI is the uri of the redirection digest; HA2 is always the
// MD5 of "POST:" and it (redirection.md §2, type 4 step 3).
const redirDigestURI = "/RedirectionService"

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

	maxAuthData      = 1 << 10          // longest 0x13 data accepted
	maxAuthRounds    = 8                // 0x13 messages per session
	maxSOLData       = 8 << 10          // longest 0x28 accepted
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
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// RedirServer is the redirection service of one simulated AMT (port 16994,
// redirection.md): it serves Serial-over-LAN sessions to amtterm, web
// consoles and [DialSOL]. IDE-R and KVM are refused with 0x11 status 3.
//
// The host behind the serial port prints a banner containing
// "Presence simulated AMT" and the prompt "<hostname>$ ", echoes printable
// characters, handles backspace, and answers every line with
// "you typed: <line>\r\n" and a new prompt. Keystrokes are recorded for
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
	if len(cfg.Realm) > 255 {
		cfg.Realm = cfg.Realm[:255] // its length is one byte on the wire
	}
	if cfg.FWMajor == 0 && cfg.FWMinor == 0 {
		cfg.FWMajor, cfg.FWMinor = 11, 8
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

	nonce    string // the digest nonce issued in this session, "" if none
	nonceFor byte   // its auth type

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
	if ss.holdsSOL {
		ss.s.releaseSOL()
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
	if err := ss.output(ss.s.bann); err != nil {
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

// readFull reads exactly n bytes; n is bounded by every caller.
func (ss *redirSession) readFull(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(ss.br, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("amtsim: redirection read: %w", err)
	}
	return b, nil
}

// readRest reads the rest of a message of n bytes whose first byte, code,
// has been read.
func (ss *redirSession) readRest(code byte, n int) ([]byte, error) {
	b, err := ss.readFull(n - 1)
	if err != nil {
		return nil, err
	}
	return append([]byte{code}, b...), nil
}

// send writes one message in its own Write. With settle, the next message
// waits solSettle.
func (ss *redirSession) send(msg []byte, settle bool) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	return ss.sendLocked(msg, settle)
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

// sendSOL writes a SOL message with the next sequence number: code, three
// zero bytes, the number, then body. It does nothing after 0x23.
func (ss *redirSession) sendSOL(code byte, body []byte, settle bool) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if ss.ended {
		return nil
	}
	ss.seq++
	msg := make([]byte, solHeaderLen, solHeaderLen+len(body))
	msg[0] = code
	binary.LittleEndian.PutUint32(msg[4:], ss.seq)
	msg = append(msg, body...)
	if code == solEndReply {
		ss.ended = true
	}
	return ss.sendLocked(msg, settle)
}

// startSession handles 0x10 (redirection.md §2): "SOL " starts a session
// unless one is active; IDE-R and KVM are not supported.
func (ss *redirSession) startSession() error {
	code, err := ss.br.ReadByte()
	if err != nil {
		return fmt.Errorf("amtsim: redirection read: %w", err)
	}
	if code != redirStartSession {
		return fmt.Errorf("%w: message 0x%02x before StartRedirectionSession", ErrRedirProtocol, code)
	}
	m, err := ss.readRest(code, 8)
	if err != nil {
		return err
	}
	status, fail := byte(sessionOK), error(nil)
	switch kind := string(m[4:8]); kind {
	case "SOL ":
		if ss.s.claimSOL() {
			ss.holdsSOL = true
		} else {
			status, fail = sessionBusy, ErrRedirBusy
		}
	case "IDER", "KVMR":
		status, fail = sessionUnsupported, fmt.Errorf("%w: %q", ErrRedirUnsupported, kind)
	default:
		status, fail = sessionUnknownType, fmt.Errorf("%w: %q", ErrRedirUnsupported, kind)
	}
	// OEM data length 0: amtterm 1.4 reads exactly 13 bytes.
	cfg := &ss.s.cfg
	reply := []byte{redirStartSessionReply, status, 0, 0, 1, 0, cfg.FWMajor, cfg.FWMinor, 0x57, 0x01, 0, 0, 0}
	if err := ss.send(reply, false); err != nil {
		return err
	}
	return fail
}

// authReply writes a 0x14 with data.
func (ss *redirSession) authReply(status, typ byte, data []byte) error {
	msg := make([]byte, 9, 9+len(data))
	msg[0], msg[1], msg[4] = redirAuthenticateReply, status, typ
	binary.LittleEndian.PutUint32(msg[5:], uint32(len(data)))
	return ss.send(append(msg, data...), false)
}

// authenticate runs 0x13 exchanges until one succeeds. Every failure is
// answered with its status before the session closes.
func (ss *redirSession) authenticate() error {
	for range maxAuthRounds {
		code, err := ss.br.ReadByte()
		if err != nil {
			return fmt.Errorf("amtsim: redirection read: %w", err)
		}
		if code != redirAuthenticate {
			return fmt.Errorf("%w: message 0x%02x during authentication", ErrRedirProtocol, code)
		}
		h, err := ss.readRest(code, 9)
		if err != nil {
			return err
		}
		typ, n := h[4], binary.LittleEndian.Uint32(h[5:9])
		if n > maxAuthData {
			ss.authReply(authFailed, typ, nil)
			return fmt.Errorf("%w: %d bytes of authentication data", ErrRedirProtocol, n)
		}
		data, err := ss.readFull(int(n))
		if err != nil {
			return err
		}
		done, err := ss.authStep(typ, data)
		if err != nil || done {
			return err
		}
	}
	ss.authReply(authFailed, 0, nil)
	return fmt.Errorf("%w: more than %d authentication messages", ErrRedirProtocol, maxAuthRounds)
}

// authStep handles one 0x13 and reports whether the console is now
// authenticated.
func (ss *redirSession) authStep(typ byte, data []byte) (bool, error) {
	cfg := &ss.s.cfg
	switch typ {
	case authQuery:
		// Digest first: the browsers behind a relay need 4 (redirection.md
		// §4), and amtterm 1.8 picks 4, then 3, then 1.
		offer := []byte{authDigest, authDigest69, authClear}
		if cfg.NoClearText {
			offer = offer[:2]
		}
		return false, ss.authReply(authOK, authQuery, offer)
	case authClear:
		if cfg.NoClearText {
			ss.authReply(authUnsupported, typ, nil)
			return false, fmt.Errorf("%w: clear-text authentication is disabled", ErrRedirAuth)
		}
		user, pass, ok := parseClearAuth(data)
		if !ok || !ss.credentialsOK(user, pass) {
			ss.authReply(authFailed, typ, nil)
			return false, fmt.Errorf("%w: wrong user name or password", ErrRedirAuth)
		}
		return true, ss.authReply(authOK, typ, nil)
	case authDigest, authDigest69:
		return ss.digest(typ, data)
	default: // Kerberos and unknown types
		ss.authReply(authUnsupported, typ, nil)
		return false, fmt.Errorf("%w: authentication type %d not supported", ErrRedirAuth, typ)
	}
}

// parseClearAuth splits type 1 data: [ulen][user][plen][pass], nothing
// after.
func parseClearAuth(b []byte) (user, pass []byte, ok bool) {
	if len(b) < 1 || len(b) < 1+int(b[0])+1 {
		return nil, nil, false
	}
	user, b = b[1:1+int(b[0])], b[1+int(b[0]):]
	if len(b) != 1+int(b[0]) {
		return nil, nil, false
	}
	return user, b[1:], true
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

// digestFields holds the fields of a type 3 or 4 request (redirection.md
// §2): user, realm, nonce, uri, cnonce, nc, response and, for type 4, qop.
type digestFields struct {
	user, realm, nonce, uri, cnonce, nc, response, qop string
}

// parseDigestAuth splits type 3/4 data into its length-prefixed fields:
// eight for type 4; seven or eight (an empty qop) for type 3.
func parseDigestAuth(typ byte, b []byte) (digestFields, bool) {
	var f []string
	for len(b) > 0 {
		n := int(b[0])
		if len(b) < 1+n || len(f) == 8 {
			return digestFields{}, false
		}
		f = append(f, string(b[1:1+n]))
		b = b[1+n:]
	}
	switch {
	case len(f) == 8:
	case len(f) == 7 && typ == authDigest69:
		f = append(f, "")
	default:
		return digestFields{}, false
	}
	return digestFields{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]}, true
}

// digest handles a type 3 or 4 message: an empty request (step 1) gets a
// challenge with status 1; a response (step 3) to this session's nonce is
// verified.
func (ss *redirSession) digest(typ byte, data []byte) (bool, error) {
	cfg := &ss.s.cfg
	f, ok := parseDigestAuth(typ, data)
	if !ok {
		ss.authReply(authFailed, typ, nil)
		return false, fmt.Errorf("%w: malformed digest data", ErrRedirProtocol)
	}
	if f.nonce == "" && f.response == "" {
		var b [16]byte
		rand.Read(b[:])
		ss.nonce, ss.nonceFor = hex.EncodeToString(b[:]), typ
		ch := appendLV(nil, cfg.Realm)
		ch = appendLV(ch, ss.nonce)
		if typ == authDigest {
			ch = appendLV(ch, "auth")
		}
		return false, ss.authReply(authFailed, typ, ch)
	}
	ok = ss.nonce != "" && ss.nonceFor == typ && f.nonce == ss.nonce && f.realm == cfg.Realm &&
		(typ == authDigest69 || f.qop == "auth") && len(cfg.Password) > 0
	ss.nonce = "" // one attempt per challenge
	if ok {
		want := redirDigestResponse(typ, cfg.User, cfg.Realm, cfg.Password, f.nonce, f.nc, f.cnonce, f.qop)
		u := subtle.ConstantTimeCompare([]byte(f.user), []byte(cfg.User))
		r := subtle.ConstantTimeCompare([]byte(strings.ToLower(f.response)), []byte(want))
		ok = u&r == 1
	}
	if !ok {
		ss.authReply(authFailed, typ, nil)
		return false, fmt.Errorf("%w: wrong digest response", ErrRedirAuth)
	}
	return true, ss.authReply(authOK, typ, nil)
}

// appendLV appends s with a one-byte length; s is at most 255 bytes.
func appendLV(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// redirDigestResponse computes the expected response (redirection.md §2):
// HA1 = MD5(user:realm:pass), HA2 = MD5("POST:/RedirectionService"), then
// MD5(HA1:nonce:nc:cnonce:qop:HA2) for type 4, MD5(HA1:nonce:HA2) for type 3.
// nc and cnonce are hashed as received.
func redirDigestResponse(typ byte, user, realm string, pass []byte, nonce, nc, cnonce, qop string) string {
	h := md5.New()
	io.WriteString(h, user+":"+realm+":")
	h.Write(pass)
	ha1 := hex.EncodeToString(h.Sum(nil))
	ha2 := md5hex("POST:" + redirDigestURI)
	if typ == authDigest69 {
		return md5hex(ha1 + ":" + nonce + ":" + ha2)
	}
	return md5hex(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + ha2)
}

// startSOL reads 0x20 and answers 0x21; it returns the heartbeat interval
// the device will keep.
func (ss *redirSession) startSOL() (time.Duration, error) {
	code, err := ss.br.ReadByte()
	if err != nil {
		return 0, fmt.Errorf("amtsim: redirection read: %w", err)
	}
	if code != solStart {
		return 0, fmt.Errorf("%w: message 0x%02x instead of StartSOLRedirection", ErrRedirProtocol, code)
	}
	m, err := ss.readRest(code, solStartLen)
	if err != nil {
		return 0, err
	}
	hb := time.Duration(binary.LittleEndian.Uint16(m[18:20])) * time.Millisecond
	if hb == 0 {
		hb = ss.s.cfg.Heartbeat
	}
	hb = min(max(hb, minSOLHeartbeat), maxSOLHeartbeat)
	// Status 0, the six settings echoed, three zero bytes. The sequence
	// number is 1, the 0x01 at [4] that 9front's client checks.
	body := make([]byte, 0, solStartReplyLen-solHeaderLen)
	body = append(body, m[8:20]...)
	body = append(body, 0, 0, 0)
	if err := ss.sendSOL(solStartReply, body, true); err != nil {
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
			if err := ss.sendSOL(solHeartbeat, nil, false); err != nil {
				return
			}
		}
	}
}

// output sends host output as 0x2A messages.
func (ss *redirSession) output(p []byte) error {
	for len(p) > 0 {
		k := min(len(p), maxSOLChunk)
		body := make([]byte, 2, 2+k)
		binary.LittleEndian.PutUint16(body, uint16(k))
		if err := ss.sendSOL(solDataFromHost, append(body, p[:k]...), false); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// console serves the running SOL session until the console ends it.
func (ss *redirSession) console() error {
	idle := ss.s.cfg.IdleTimeout
	for {
		ss.conn.SetReadDeadline(time.Now().Add(idle))
		code, err := ss.br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil // web consoles just close
			}
			return fmt.Errorf("amtsim: redirection read: %w", err)
		}
		switch code {
		case solDataToHost:
			h, err := ss.readRest(code, solHeaderLen+2)
			if err != nil {
				return err
			}
			n := binary.LittleEndian.Uint16(h[8:])
			if n > maxSOLData {
				return fmt.Errorf("%w: %d bytes of SOL data", ErrRedirProtocol, n)
			}
			data, err := ss.readFull(int(n))
			if err != nil {
				return err
			}
			if ss.isEnded() {
				continue // amtterm sends its ^] after 0x22
			}
			ss.s.recordInput(data)
			if err := ss.output(ss.host(data)); err != nil {
				return nil
			}
		case solHeartbeat, solPing:
			// Heartbeats and echoes of ours. A ping is not answered:
			// web consoles die on an unexpected 0x25 (redirection.md §4).
			if _, err := ss.readRest(code, solHeaderLen); err != nil {
				return err
			}
		case solOpen:
			if _, err := ss.readRest(code, 14); err != nil {
				return err
			}
		case solEnd:
			if _, err := ss.readRest(code, solHeaderLen); err != nil {
				return err
			}
			if err := ss.sendSOL(solEndReply, nil, true); err != nil {
				return nil
			}
		case redirEndSession:
			if _, err := ss.readRest(code, 4); err != nil {
				return err
			}
			return nil
		default:
			return fmt.Errorf("%w: message 0x%02x during SOL", ErrRedirProtocol, code)
		}
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
// and AMTPassword, the digest realm of its WS-Man service, and its host
// name in the console banner.
func (d *Device) Redirection() *RedirServer {
	d.redirOnce.Do(func() {
		d.redir = NewRedirServer(RedirConfig{
			User:     d.cfg.AMTUser,
			Password: d.cfg.AMTPassword,
			Hostname: d.cfg.Hostname,
			Realm:    "Digest:" + PlatformGUID(d.cfg.UUID),
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
