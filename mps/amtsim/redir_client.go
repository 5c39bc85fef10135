package amtsim

// A Serial-over-LAN console: the client side of the redirection protocol
// (redirection.md), written from the spec apart from the device side in
// redir.go (they share only the message codes), so that each checks the
// other. It behaves like MeshCommander and ui-toolkit (§4): a query, digest
// authentication, 0x20 with their settings, 0x27, its own heartbeats, and
// a parser that accepts messages split at any byte.

import (
	"bufio"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// SOLAuth selects how [DialSOL] authenticates.
type SOLAuth int

const (
	// SOLAuthDigest asks the device for its authentication types (query),
	// then picks RFC 2617 digest (type 4), else RFC 2069 digest (type 3),
	// else clear text (type 1), like web consoles and amtterm 1.8.
	SOLAuthDigest SOLAuth = iota
	// SOLAuthClear sends the user name and password in clear (type 1)
	// without a query, like amtterm 1.4.
	SOLAuthClear
)

const (
	solClientHeartbeat = 2 * time.Second // as MeshCommander
	solClientChunk     = 512             // keystrokes per 0x28, as amtterm
	maxClientAuthData  = 4 << 10
	clientNC           = "00000002" // MeshCommander's and amtterm 1.8's nc
)

// RedirStatusError reports a reply of the device with a non-zero status.
// errors.Is maps it to [ErrRedirBusy] (0x11 status 2),
// [ErrRedirUnsupported] (0x11 status 1 or 3) and [ErrRedirAuth] (0x14).
type RedirStatusError struct {
	Code   byte // the reply: 0x11, 0x14 or 0x21
	Status byte
}

func (e *RedirStatusError) Error() string {
	return fmt.Sprintf("amtsim: redirection reply 0x%02x with status %d", e.Code, e.Status)
}

// Is matches the sentinel errors of the redirection service.
func (e *RedirStatusError) Is(target error) bool {
	switch target {
	case ErrRedirBusy:
		return e.Code == redirStartSessionReply && e.Status == sessionBusy
	case ErrRedirUnsupported:
		return e.Code == redirStartSessionReply && (e.Status == sessionUnknownType || e.Status == sessionUnsupported)
	case ErrRedirAuth:
		return e.Code == redirAuthenticateReply
	}
	return false
}

// SOLClient is a running Serial-over-LAN session. Read returns the host's
// output and Write sends keystrokes; a heartbeat goroutine sends 0x2B every
// 2 s until Close. Read and Write may be called concurrently with each
// other, but not each with itself.
type SOLClient struct {
	conn net.Conn
	br   *bufio.Reader

	pending []byte // output not yet returned by Read (Read's goroutine)

	wmu sync.Mutex // serializes writes; guards seq
	seq uint32

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// DialSOL starts a SOL session on conn, a connection to a redirection port
// (16994, or an APF channel to it): 0x10 "SOL ", authentication as auth
// selects, 0x20 with the web consoles' settings (10000/100/0/10000/100/0)
// and 0x27. The handshake must complete within
// [DefaultRedirHandshakeTimeout]. DialSOL owns conn: it closes it on error
// and when the client is closed. A non-zero status in a reply is returned
// as a [*RedirStatusError].
func DialSOL(conn net.Conn, user, password string, auth SOLAuth) (*SOLClient, error) {
	c := &SOLClient{conn: conn, br: bufio.NewReaderSize(conn, 4096), done: make(chan struct{})}
	conn.SetDeadline(time.Now().Add(DefaultRedirHandshakeTimeout))
	if err := c.handshake(user, password, auth); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	c.wg.Add(1)
	go c.heartbeats()
	return c, nil
}

func (c *SOLClient) handshake(user, password string, auth SOLAuth) error {
	if len(user) > 255 || len(password) > 255 {
		return errors.New("amtsim: sol client: user name or password longer than 255 bytes")
	}
	if err := c.write([]byte{redirStartSession, 0, 0, 0, 'S', 'O', 'L', ' '}); err != nil {
		return err
	}
	m, err := c.expect(redirStartSessionReply)
	if err != nil {
		return err
	}
	if m[1] != sessionOK {
		return &RedirStatusError{Code: redirStartSessionReply, Status: m[1]}
	}
	if m[4] != 1 {
		return fmt.Errorf("%w: redirection protocol version %d.%d", ErrRedirProtocol, m[4], m[5])
	}

	typ := byte(authClear)
	if auth == SOLAuthDigest {
		if typ, err = c.query(); err != nil {
			return err
		}
	}
	switch typ {
	case authClear:
		data := append(append(append([]byte{byte(len(user))}, user...), byte(len(password))), password...)
		err = c.authenticate(authClear, data, nil)
	default:
		err = c.digest(typ, user, password)
	}
	if err != nil {
		return err
	}

	// 0x20: seq 1, MaxTxBuffer 10000, TxBufferTimeout 100,
	// TxOverflowTimeout 0, HostSessionRxTimeout 10000,
	// HostFifoRxFlushTimeout 100, HeartbeatInterval 0, four zero bytes.
	var start []byte
	for _, v := range []uint16{10000, 100, 0, 10000, 100, 0} {
		start = binary.LittleEndian.AppendUint16(start, v)
	}
	if err := c.writeSOL(solStart, append(start, 0, 0, 0, 0)); err != nil {
		return err
	}
	if m, err = c.expect(solStartReply); err != nil {
		return err
	}
	if m[1] != 0 {
		return &RedirStatusError{Code: solStartReply, Status: m[1]}
	}
	return c.writeSOL(solOpen, []byte{0, 0, 0x1b, 0, 0, 0})
}

// query asks for the supported authentication types and picks one.
func (c *SOLClient) query() (byte, error) {
	if err := c.write([]byte{redirAuthenticate, 0, 0, 0, authQuery, 0, 0, 0, 0}); err != nil {
		return 0, err
	}
	m, err := c.expect(redirAuthenticateReply)
	if err != nil {
		return 0, err
	}
	if m[1] != authOK {
		return 0, &RedirStatusError{Code: redirAuthenticateReply, Status: m[1]}
	}
	offered := m[9:]
	for _, want := range []byte{authDigest, authDigest69, authClear} {
		for _, t := range offered {
			if t == want {
				return want, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: the device offers no usable authentication type (% x)", ErrRedirAuth, offered)
}

// authenticate sends one 0x13 and returns the 0x14 data; with challenge
// set a status 1 is the expected answer, otherwise only 0 is.
func (c *SOLClient) authenticate(typ byte, data []byte, challenge *[]byte) error {
	msg := []byte{redirAuthenticate, 0, 0, 0, typ}
	msg = binary.LittleEndian.AppendUint32(msg, uint32(len(data)))
	if err := c.write(append(msg, data...)); err != nil {
		return err
	}
	m, err := c.expect(redirAuthenticateReply)
	if err != nil {
		return err
	}
	want := byte(authOK)
	if challenge != nil {
		want = authFailed
	}
	if m[1] != want || m[4] != typ {
		return &RedirStatusError{Code: redirAuthenticateReply, Status: m[1]}
	}
	if challenge != nil {
		*challenge = m[9:]
	}
	return nil
}

// digest runs the three steps of type 3 or 4 (redirection.md §2).
func (c *SOLClient) digest(typ byte, user, password string) error {
	lv := func(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }
	// Step 1: user, empty realm and nonce, the uri, and empty cnonce, nc,
	// response (and qop).
	req := lv(nil, user)
	req = append(req, 0, 0)
	req = lv(req, redirDigestURI)
	req = append(req, 0, 0, 0)
	if typ == authDigest {
		req = append(req, 0)
	}
	var ch []byte
	if err := c.authenticate(typ, req, &ch); err != nil {
		return err
	}
	// Step 2: [realm][nonce], then [qop] for type 4.
	var fields []string
	for len(ch) > 0 {
		n := int(ch[0])
		if len(ch) < 1+n {
			return fmt.Errorf("%w: truncated digest challenge", ErrRedirProtocol)
		}
		fields = append(fields, string(ch[1:1+n]))
		ch = ch[1+n:]
	}
	if len(fields) < 2 || len(fields) > 3 {
		return fmt.Errorf("%w: digest challenge with %d fields", ErrRedirProtocol, len(fields))
	}
	realm, nonce, qop := fields[0], fields[1], ""
	if typ == authDigest {
		qop = "auth"
	}
	// Step 3.
	var cn [16]byte
	rand.Read(cn[:])
	cnonce, nc := hex.EncodeToString(cn[:]), clientNC
	if typ == authDigest69 {
		cnonce, nc = "", ""
	}
	resp := clientDigest(typ, user, realm, password, nonce, nc, cnonce)
	req = nil
	for _, f := range []string{user, realm, nonce, redirDigestURI, cnonce, nc, resp} {
		req = lv(req, f)
	}
	if typ == authDigest {
		req = lv(req, qop)
	}
	return c.authenticate(typ, req, nil)
}

// clientDigest computes a digest response: RFC 2617 with qop=auth for type
// 4, RFC 2069 for type 3, with HA2 = MD5("POST:/RedirectionService").
func clientDigest(typ byte, user, realm, password, nonce, nc, cnonce string) string {
	hash := func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	ha1 := hash(user + ":" + realm + ":" + password)
	ha2 := hash("POST:" + redirDigestURI)
	if typ == authDigest69 {
		return hash(ha1 + ":" + nonce + ":" + ha2)
	}
	return hash(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
}

// write sends one message in one Write.
func (c *SOLClient) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(b)
	return err
}

// writeSOL numbers and sends a SOL message.
func (c *SOLClient) writeSOL(code byte, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	b := binary.LittleEndian.AppendUint32([]byte{code, 0, 0, 0}, c.seq)
	_, err := c.conn.Write(append(b, body...))
	return err
}

// expect returns the next message, which must be code; heartbeats and
// control messages in between are skipped.
func (c *SOLClient) expect(code byte) ([]byte, error) {
	for {
		m, err := c.readMsg()
		if err != nil {
			return nil, err
		}
		switch m[0] {
		case code:
			return m, nil
		case solHeartbeat, solControls, 0xF0:
		default:
			return nil, fmt.Errorf("%w: got message 0x%02x, want 0x%02x", ErrRedirProtocol, m[0], code)
		}
	}
}

// readMsg reads one whole message from the device.
func (c *SOLClient) readMsg() ([]byte, error) {
	code, err := c.br.ReadByte()
	if err != nil {
		return nil, err
	}
	var n int // the length of the fixed part
	switch code {
	case 0xF0:
		// MeshCentral's relay: "this session is recorded".
		return []byte{code}, nil
	case redirStartSessionReply:
		n = 13
	case redirAuthenticateReply:
		n = 9
	case solStartReply:
		n = solStartReplyLen
	case solEndReply, solHeartbeat, solPing:
		n = solHeaderLen
	case solControls:
		n = 10
	case solDataFromHost:
		n = solHeaderLen + 2
	default:
		return nil, fmt.Errorf("%w: unknown message 0x%02x from the device", ErrRedirProtocol, code)
	}
	m := make([]byte, n)
	m[0] = code
	if err := c.readFull(m[1:]); err != nil {
		return nil, err
	}
	var extra int
	switch code {
	case redirStartSessionReply:
		extra = int(m[12])
	case redirAuthenticateReply:
		l := binary.LittleEndian.Uint32(m[5:9])
		if l > maxClientAuthData {
			return nil, fmt.Errorf("%w: 0x14 with %d bytes of data", ErrRedirProtocol, l)
		}
		extra = int(l)
	case solDataFromHost:
		extra = int(binary.LittleEndian.Uint16(m[8:10]))
	}
	if extra > 0 {
		m = append(m, make([]byte, extra)...)
		if err := c.readFull(m[n:]); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (c *SOLClient) readFull(b []byte) error {
	_, err := io.ReadFull(c.br, b)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (c *SOLClient) heartbeats() {
	defer c.wg.Done()
	t := time.NewTicker(solClientHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if c.writeSOL(solHeartbeat, nil) != nil {
				return
			}
		}
	}
}

// Read reads the host's output (the data of 0x2A messages). It returns
// io.EOF when the device closes the connection or ends the session.
func (c *SOLClient) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		m, err := c.readMsg()
		if err != nil {
			return 0, err
		}
		switch m[0] {
		case solDataFromHost:
			c.pending = m[solHeaderLen+2:]
		case solEndReply:
			return 0, io.EOF
		case solHeartbeat, solControls, solPing, 0xF0:
		default:
			return 0, fmt.Errorf("%w: message 0x%02x during SOL", ErrRedirProtocol, m[0])
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write sends p to the host as keystrokes, in 0x28 messages of at most 512
// bytes.
func (c *SOLClient) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), solClientChunk)
		body := binary.LittleEndian.AppendUint16(nil, uint16(k))
		if err := c.writeSOL(solDataToHost, append(body, p[:k]...)); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// SetReadDeadline sets the deadline of Read, as on the connection.
func (c *SOLClient) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// End ends the session the way amtterm does: 0x22, then 0x12 once 0x23
// has arrived; host output still arriving is discarded. It then closes the
// client. It must not run concurrently with Read.
func (c *SOLClient) End() error {
	err := c.writeSOL(solEnd, nil)
	if err == nil {
		c.conn.SetReadDeadline(time.Now().Add(DefaultRedirHandshakeTimeout))
		for {
			var m []byte
			if m, err = c.readMsg(); err != nil || m[0] == solEndReply {
				break
			}
		}
	}
	if err == nil {
		err = c.write([]byte{redirEndSession, 0, 0, 0})
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the heartbeats and closes the connection; web consoles end a
// session this way.
func (c *SOLClient) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		err = c.conn.Close()
		c.wg.Wait()
	})
	return err
}
