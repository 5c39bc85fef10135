package amtsim

// A Serial-over-LAN console: the client side of the redirection protocol
// (redirection.md), written from the spec apart from the device side in
// redir.go (they share only the codec, mps/redir, whose vectors are checked
// against the spec's), so that each checks the other's logic. It behaves
// like MeshCommander and ui-toolkit (§4): a query, digest authentication,
// 0x20 with their settings, 0x27, its own heartbeats, and a parser that
// accepts messages split at any byte.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/redir"
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
	clientNC           = "00000002"      // MeshCommander's and amtterm 1.8's nc
)

// RedirStatusError reports a reply of the device with a non-zero status.
// errors.Is maps it to [ErrRedirBusy] (0x11 status 2),
// [ErrRedirUnsupported] (0x11 status 1 or 3), [ErrRedirAuth] (0x14) and
// [ErrConsentRequired] (0x21 status 0xFF, the simulator's refusal of a
// session without consent).
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
		return e.Code == redir.MsgStartSessionReply && e.Status == redir.StatusBusy
	case ErrRedirUnsupported:
		return e.Code == redir.MsgStartSessionReply && (e.Status == redir.StatusUnknownType || e.Status == redir.StatusUnsupported)
	case ErrRedirAuth:
		return e.Code == redir.MsgAuthenticateReply
	case ErrConsentRequired:
		return e.Code == redir.MsgSOLStartReply && e.Status == redir.StatusError
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
	if len(user) > redir.MaxLV || len(password) > redir.MaxLV {
		return errors.New("amtsim: sol client: user name or password longer than 255 bytes")
	}
	if err := c.write(&redir.StartSession{Kind: redir.KindSOL}); err != nil {
		return err
	}
	start, err := expectAs[*redir.StartSessionReply](c, redir.MsgStartSessionReply)
	if err != nil {
		return err
	}
	if start.Status != redir.StatusOK {
		return &RedirStatusError{Code: redir.MsgStartSessionReply, Status: start.Status}
	}
	if start.ProtocolMajor != 1 {
		return fmt.Errorf("%w: redirection protocol version %d.%d", ErrRedirProtocol, start.ProtocolMajor, start.ProtocolMinor)
	}

	typ := redir.AuthPassword
	if auth == SOLAuthDigest {
		if typ, err = c.query(); err != nil {
			return err
		}
	}
	switch typ {
	case redir.AuthPassword:
		_, err = c.authenticate(typ, redir.PasswordAuth{User: user, Password: []byte(password)}.Append(nil), false)
	default:
		err = c.digest(typ, user, password)
	}
	if err != nil {
		return err
	}

	// 0x20: seq 1 and the web consoles' settings.
	settings := redir.SOLSettings{MaxTxBuffer: 10000, TxBufferTimeout: 100, HostSessionRxTimeout: 10000, HostFifoRxFlushTimeout: 100}
	if err := c.writeSOL(&redir.SOLStart{Settings: settings}); err != nil {
		return err
	}
	reply, err := expectAs[*redir.SOLStartReply](c, redir.MsgSOLStartReply)
	if err != nil {
		return err
	}
	if reply.Status != 0 {
		return &RedirStatusError{Code: redir.MsgSOLStartReply, Status: reply.Status}
	}
	return c.writeSOL(&redir.SOLOpen{Data: [6]byte{2: 0x1b}})
}

// query asks for the supported authentication types and picks one.
func (c *SOLClient) query() (redir.AuthType, error) {
	r, err := c.exchange(redir.AuthQuery, nil)
	if err != nil {
		return 0, err
	}
	if r.Status != redir.StatusOK {
		return 0, &RedirStatusError{Code: redir.MsgAuthenticateReply, Status: r.Status}
	}
	offered := r.Data
	for _, want := range []redir.AuthType{redir.AuthDigest, redir.AuthDigestRFC2069, redir.AuthPassword} {
		for _, t := range offered {
			if redir.AuthType(t) == want {
				return want, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: the device offers no usable authentication type (% x)", ErrRedirAuth, offered)
}

// exchange sends one 0x13 and returns the 0x14 that answers it.
func (c *SOLClient) exchange(typ redir.AuthType, data []byte) (*redir.AuthenticateReply, error) {
	if err := c.write(&redir.Authenticate{Type: typ, Data: data}); err != nil {
		return nil, err
	}
	return expectAs[*redir.AuthenticateReply](c, redir.MsgAuthenticateReply)
}

// authenticate sends one 0x13 of type typ and returns the 0x14 data; with
// challenge a status 1 is the expected answer, otherwise only 0 is.
func (c *SOLClient) authenticate(typ redir.AuthType, data []byte, challenge bool) ([]byte, error) {
	r, err := c.exchange(typ, data)
	if err != nil {
		return nil, err
	}
	want := byte(redir.StatusOK)
	if challenge {
		want = redir.StatusAuthFailed
	}
	if r.Status != want || r.Type != typ {
		return nil, &RedirStatusError{Code: redir.MsgAuthenticateReply, Status: r.Status}
	}
	return r.Data, nil
}

// digest runs the three steps of type 3 or 4 (redirection.md §2).
func (c *SOLClient) digest(typ redir.AuthType, user, password string) error {
	// Step 1: user and uri; the device answers with its challenge.
	data, err := c.authenticate(typ, redir.Digest{User: user, URI: redir.DigestURI}.Append(nil, typ), true)
	if err != nil {
		return err
	}
	ch, err := redir.ParseChallenge(data)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRedirProtocol, err)
	}
	// Step 3.
	d := redir.Digest{User: user, Realm: ch.Realm, Nonce: ch.Nonce, URI: redir.DigestURI}
	if typ == redir.AuthDigest {
		d.CNonce, d.NC, d.QOP = redir.NewNonce(), clientNC, redir.QOPAuth
	}
	d.Response = d.ResponseFor(typ, []byte(password))
	_, err = c.authenticate(typ, d.Append(nil, typ), false)
	return err
}

// write sends one message in one Write.
func (c *SOLClient) write(m redir.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(redir.Marshal(m))
	return err
}

// writeSOL numbers and sends a SOL message.
func (c *SOLClient) writeSOL(m redir.SOLMessage) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	m.Header().Seq = c.seq
	_, err := c.conn.Write(redir.Marshal(m))
	return err
}

// expect returns the next message, which must be code; heartbeats and
// control messages in between are skipped.
func (c *SOLClient) expect(code byte) (redir.Message, error) {
	for {
		m, err := c.readMsg()
		if err != nil {
			return nil, err
		}
		switch m.Code() {
		case code:
			return m, nil
		case redir.MsgSOLHeartbeat, redir.MsgSOLControls, redir.MsgRecording:
		default:
			return nil, fmt.Errorf("%w: got %s, want %s", ErrRedirProtocol, redir.Name(m.Code()), redir.Name(code))
		}
	}
}

// expectAs returns the next message, which must be code, as its type T;
// see [SOLClient.expect].
func expectAs[T redir.Message](c *SOLClient, code byte) (T, error) {
	m, err := c.expect(code)
	if err != nil {
		var zero T
		return zero, err
	}
	return msgAs[T](m, "from the device")
}

// deviceCodes are the messages a device may send to a console.
var deviceCodes = []byte{redir.MsgRecording, redir.MsgStartSessionReply, redir.MsgAuthenticateReply,
	redir.MsgSOLStartReply, redir.MsgSOLEndReply, redir.MsgSOLHeartbeat, redir.MsgSOLPing,
	redir.MsgSOLControls, redir.MsgSOLDataFromHost}

// readMsg reads one whole message from the device.
func (c *SOLClient) readMsg() (redir.Message, error) {
	m, _, err := redir.ReadMessage(c.br, deviceCodes...)
	if _, ok := errors.AsType[*redir.ParseError](err); ok {
		return nil, fmt.Errorf("%w: %w", ErrRedirProtocol, err)
	}
	return m, err
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
			if c.writeSOL(&redir.SOLHeartbeat{}) != nil {
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
		switch m := m.(type) {
		case *redir.SOLDataFromHost:
			c.pending = m.Data
		case *redir.SOLEndReply:
			return 0, io.EOF
		case *redir.SOLHeartbeat, *redir.SOLControls, *redir.SOLPing, *redir.Recording:
		default:
			return 0, fmt.Errorf("%w: %s during SOL", ErrRedirProtocol, redir.Name(m.Code()))
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
		if err := c.writeSOL(&redir.SOLDataToHost{Data: p[:k]}); err != nil {
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
	err := c.writeSOL(&redir.SOLEnd{})
	if err == nil {
		c.conn.SetReadDeadline(time.Now().Add(DefaultRedirHandshakeTimeout))
		for {
			var m redir.Message
			if m, err = c.readMsg(); err != nil || m.Code() == redir.MsgSOLEndReply {
				break
			}
		}
	}
	if err == nil {
		err = c.write(&redir.EndSession{})
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
