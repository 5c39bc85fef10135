package amtsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/redir"
)

// The §5 digest vector (redirection.md); mps/redir checks the response.
const (
	vecRealm    = "Digest:F3EB554784E729164447A89F60B641C5"
	vecNonce    = "Ym9ndXNub25jZTAxMjM0NTY3ODlhYmNk"
	vecCnonce   = "232555f36a0bb24f621267ffeed5c06e"
	vecNC       = "00000002"
	vecResponse = "e925b529e0947751c5e97973f0b53b6d"
	redirHost   = "simhost"
)

func redirConfig() RedirConfig {
	return RedirConfig{
		User:             testUser,
		Password:         []byte(testPassword),
		Hostname:         redirHost,
		Realm:            vecRealm,
		HandshakeTimeout: testTimeout,
	}
}

// banner is what the simulated host prints when SOL starts.
func banner() []byte {
	return []byte("\r\nPresence simulated AMT serial console on " + redirHost + "\r\n" + redirHost + "$ ")
}

// solData builds a 0x2A or 0x28 message.
func solData(code byte, seq uint32, data []byte) []byte {
	h := redir.SOLHeader{Seq: seq}
	if code == redir.MsgSOLDataToHost {
		return redir.Marshal(&redir.SOLDataToHost{SOLHeader: h, Data: data})
	}
	return redir.Marshal(&redir.SOLDataFromHost{SOLHeader: h, Data: data})
}

// lv encodes length-value fields.
func lv(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = redir.AppendLV(b, f)
	}
	return b
}

// authMsg builds a 0x13.
func authMsg(typ redir.AuthType, data []byte) []byte {
	return redir.Marshal(&redir.Authenticate{Type: typ, Data: data})
}

// solDigestResponse is a console's type 4 response to nonce (with the vector's
// realm, nc and cnonce) for password.
func solDigestResponse(nonce, password string) string {
	d := redir.Digest{User: testUser, Realm: vecRealm, Nonce: nonce, NC: vecNC, CNonce: vecCnonce}
	return d.ResponseFor(redir.AuthDigest, []byte(password))
}

// --- a raw console and a served session ---

type rawConsole struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (r *rawConsole) send(b []byte) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("console write: %v", err)
	}
}

func (r *rawConsole) readN(what string, n int) []byte {
	r.t.Helper()
	b := make([]byte, n)
	r.c.SetReadDeadline(time.Now().Add(testTimeout))
	if k, err := io.ReadFull(r.br, b); err != nil {
		r.t.Fatalf("%s: read %d of %d bytes: %v (got % x)", what, k, n, err, b[:k])
	}
	return b
}

func (r *rawConsole) expect(what string, want []byte) {
	r.t.Helper()
	if got := r.readN(what, len(want)); !bytes.Equal(got, want) {
		r.t.Fatalf("%s:\n got % x\nwant % x", what, got, want)
	}
}

// msg reads one message of the device.
func (r *rawConsole) msg() []byte {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(testTimeout))
	_, b, err := redir.ReadMessage(r.br, redir.MsgSOLStartReply, redir.MsgSOLEndReply, redir.MsgSOLHeartbeat, redir.MsgSOLDataFromHost)
	if err != nil {
		r.t.Fatalf("reading a message: %v (got % x)", err, b)
	}
	return b
}

// output reads 0x2A messages, skipping heartbeats, until the text holds want.
func (r *rawConsole) output(want string) string {
	r.t.Helper()
	var text []byte
	for !bytes.Contains(text, []byte(want)) {
		m := r.msg()
		switch m[0] {
		case 0x2A:
			text = append(text, m[10:]...)
		case 0x2B:
		default:
			r.t.Fatalf("got % x while waiting for %q", m, want)
		}
	}
	return string(text)
}

// expectClose requires the device to close the connection without
// sending anything more.
func (r *rawConsole) expectClose() {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(testTimeout))
	b, err := io.ReadAll(r.br)
	if len(b) > 0 || err != nil {
		r.t.Fatalf("before the close: % x, %v", b, err)
	}
}

type serveRun struct {
	done chan struct{}
	err  error // set before done closes
}

func (r *serveRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return")
	}
	return nil
}

// serveOne connects a raw console to s over loopback TCP; wrap, if not
// nil, wraps the device's end.
func serveOne(t *testing.T, s *RedirServer, wrap func(net.Conn) net.Conn) (*rawConsole, *serveRun) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		sc = wrap(sc)
	}
	run := &serveRun{done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = s.Serve(sc)
	}()
	t.Cleanup(func() {
		c.Close()
		run.wait(t)
	})
	return &rawConsole{t: t, c: c, br: bufio.NewReader(c)}, run
}

// startSOLRaw runs the amtterm 1.4 handshake (vectors 1, 2, 4, 7) and
// reads the banner.
func startSOLRaw(t *testing.T, r *rawConsole) {
	t.Helper()
	r.send(unhex(t, "10 00 00 00 53 4f 4c 20"))
	r.expect("0x11", unhex(t, "11 00 00 00 01 00 0b 08 57 01 00 00 00"))
	r.send(unhex(t, "13 00 00 00 01 0f 00 00 00 05 61 64 6d 69 6e 08 50 40 73 73 77 30 72 64"))
	r.expect("0x14", unhex(t, "14 00 00 00 01 00 00 00 00"))
	r.send(unhex(t, "20 00 00 00 00 00 00 00 e8 03 64 00 00 00 10 27 00 00 88 13 00 00 00 00"))
	r.expect("0x21", unhex(t, "21 00 00 00 01 00 00 00 e8 03 64 00 00 00 10 27 00 00 88 13 00 00 00"))
	r.expect("banner", solData(0x2A, 2, banner()))
}

// recConn records the device's writes.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes []recWrite
}

type recWrite struct {
	b          []byte
	start, end time.Time
}

func (c *recConn) Write(b []byte) (int, error) {
	start := time.Now()
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	c.writes = append(c.writes, recWrite{append([]byte(nil), b...), start, time.Now()})
	c.mu.Unlock()
	return n, err
}

// --- tests ---

// TestRedirAmttermSession replays amtterm 1.4's session byte for byte
// (vectors 1, 2, 4, 7, 9, 10, 11), and checks that every message is its own
// Write and that nothing follows 0x21 or 0x23 within solSettle.
func TestRedirAmttermSession(t *testing.T) {
	s := NewRedirServer(redirConfig())
	var rc *recConn
	r, run := serveOne(t, s, func(c net.Conn) net.Conn { rc = &recConn{Conn: c}; return rc })
	startSOLRaw(t, r)

	r.send(unhex(t, "28 00 00 00 00 00 00 00 03 00 61 62 0d")) // "ab⏎"
	r.expect("echo", solData(0x2A, 3, []byte("ab\r\nyou typed: ab\r\n"+redirHost+"$ ")))
	r.send(unhex(t, "2b 00 00 00 03 00 00 00"))             // an echoed heartbeat: no answer
	r.send(unhex(t, "28 00 00 00 00 00 00 00 02 00 63 7f")) // "c", backspace
	r.expect("backspace", solData(0x2A, 4, []byte("c\b \b")))
	// ^]: 0x22 and then the 0x1D itself, which is dropped.
	r.send(unhex(t, "22 00 00 00 00 00 00 00"))
	r.send(unhex(t, "28 00 00 00 00 00 00 00 01 00 1d"))
	r.expect("0x23", unhex(t, "23 00 00 00 05 00 00 00"))
	r.send(unhex(t, "12 00 00 00"))
	r.expectClose()
	if err := run.wait(t); err != nil {
		t.Fatalf("Serve = %v; want nil", err)
	}
	if got := string(s.SOLInput()); got != "ab\rc\x7f" {
		t.Errorf("SOLInput = %q; want %q", got, "ab\rc\x7f")
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	var codes []byte
	for i, w := range rc.writes {
		codes = append(codes, w.b[0])
		if n, err := redir.Len(w.b); err != nil || n != len(w.b) {
			t.Errorf("write %d (% x) is not one message", i, w.b)
		}
		if i > 0 && (rc.writes[i-1].b[0] == 0x21 || rc.writes[i-1].b[0] == 0x23) {
			if gap := w.start.Sub(rc.writes[i-1].end); gap < solSettle {
				t.Errorf("write %d came %v after 0x%02x; want at least %v", i, gap, rc.writes[i-1].b[0], solSettle)
			}
		}
	}
	if want := []byte{0x11, 0x14, 0x21, 0x2A, 0x2A, 0x2A, 0x23}; !bytes.Equal(codes, want) {
		t.Errorf("device wrote % x; want % x", codes, want)
	}
}

// TestRedirQueryAndDigest runs a web console's handshake by hand: the query
// (vector 3's form), the empty digest request (vector 5), the challenge
// (vector 6's frame) and the response (L = 0xb3), then 0x20 and 0x27 with
// counting sequence numbers (vector 8).
func TestRedirQueryAndDigest(t *testing.T) {
	s := NewRedirServer(redirConfig())
	r, run := serveOne(t, s, nil)
	r.send(unhex(t, "10 00 00 00 53 4f 4c 20"))
	r.readN("0x11", 13)
	r.send(unhex(t, "13 00 00 00 00 00 00 00 00"))
	r.expect("query reply", unhex(t, "14 00 00 00 00 03 00 00 00 04 03 01"))
	r.send(unhex(t, "13 00 00 00 04 20 00 00 00 05 61 64 6d 69 6e 00 00 13 2f 52 65 64 69 72 65 63 74 69 6f 6e 53 65 72 76 69 63 65 00 00 00 00"))
	ch := r.readN("challenge", 9+0x4e)
	if want := cat(unhex(t, "14 01 00 00 04 4e 00 00 00"), lv(vecRealm)); !bytes.Equal(ch[:len(want)], want) {
		t.Fatalf("challenge = % x; want it to start with % x", ch, want)
	}
	nonce := string(ch[9+1+len(vecRealm)+1:][:32])
	if ch[9+1+len(vecRealm)] != 32 || !bytes.HasSuffix(ch, lv("auth")) {
		t.Fatalf("challenge = % x; want a 32-byte nonce and qop auth", ch)
	}
	resp := solDigestResponse(nonce, testPassword)
	step3 := authMsg(redir.AuthDigest, lv(testUser, vecRealm, nonce, "/RedirectionService", vecCnonce, vecNC, resp, "auth"))
	if step3[5] != 0xb3 {
		t.Fatalf("response L = %#x; want 0xb3", step3[5])
	}
	r.send(step3)
	r.expect("digest success", unhex(t, "14 00 00 00 04 00 00 00 00"))
	r.send(unhex(t, "20 00 00 00 01 00 00 00 10 27 64 00 00 00 10 27 64 00 00 00 00 00 00 00"))
	r.expect("0x21", unhex(t, "21 00 00 00 01 00 00 00 10 27 64 00 00 00 10 27 64 00 00 00 00 00 00"))
	r.send(unhex(t, "27 00 00 00 02 00 00 00 00 00 1b 00 00 00"))
	r.output(redirHost + "$ ")
	// A web console's Enter is CR LF; one line, not two.
	r.send(solData(0x28, 3, []byte("x")))
	r.send(solData(0x28, 4, []byte("\r\n")))
	r.send(solData(0x28, 5, []byte("y\r")))
	if got := r.output("you typed: y\r\n" + redirHost + "$ "); got != "x\r\nyou typed: x\r\n"+redirHost+"$ y\r\nyou typed: y\r\n"+redirHost+"$ " {
		t.Errorf("output = %q", got)
	}
	r.c.Close() // web consoles just close
	if err := run.wait(t); err != nil {
		t.Fatalf("Serve = %v; want nil", err)
	}
}

// TestRedirRefusals covers every refusal: the reply, then the close.
func TestRedirRefusals(t *testing.T) {
	step1 := authMsg(redir.AuthDigest, lv(testUser, "", "", "/RedirectionService", "", "", "", ""))
	for _, tc := range []struct {
		name  string
		edit  func(*RedirConfig)
		start string // session type
		auth  []byte // sent after 0x11, if start is "SOL "
		want  string // the last reply
		err   error
	}{
		{"IDER", nil, "IDER", nil, "11 03 00 00 01 00 0b 08 57 01 00 00 00", ErrRedirUnsupported},
		{"KVM", nil, "KVMR", nil, "11 03 00 00 01 00 0b 08 57 01 00 00 00", ErrRedirUnsupported},
		{"unknown type", nil, "ABCD", nil, "11 01 00 00 01 00 0b 08 57 01 00 00 00", ErrRedirUnsupported},
		{"wrong password", nil, "SOL ", authMsg(redir.AuthPassword, lv(testUser, "wrong")), "14 01 00 00 01 00 00 00 00", ErrRedirAuth},
		{"wrong user", nil, "SOL ", authMsg(redir.AuthPassword, lv("root", testPassword)), "14 01 00 00 01 00 00 00 00", ErrRedirAuth},
		{"empty password configured", func(c *RedirConfig) { c.Password = nil }, "SOL ", authMsg(redir.AuthPassword, lv(testUser, "")), "14 01 00 00 01 00 00 00 00", ErrRedirAuth},
		{"no clear text", func(c *RedirConfig) { c.NoClearText = true }, "SOL ", authMsg(redir.AuthPassword, lv(testUser, testPassword)), "14 02 00 00 01 00 00 00 00", ErrRedirAuth},
		{"kerberos", nil, "SOL ", authMsg(2, nil), "14 02 00 00 02 00 00 00 00", ErrRedirAuth},
		{"digest without a challenge", nil, "SOL ", authMsg(redir.AuthDigest, lv(testUser, vecRealm, vecNonce, "/RedirectionService", vecCnonce, vecNC, vecResponse, "auth")), "14 01 00 00 04 00 00 00 00", ErrRedirAuth},
		{"malformed clear text", nil, "SOL ", authMsg(redir.AuthPassword, []byte{5, 'a', 'd'}), "14 01 00 00 01 00 00 00 00", ErrRedirAuth},
		{"malformed digest", nil, "SOL ", authMsg(redir.AuthDigest, lv("a", "b", "c", "d", "e", "f", "g", "h", "i")), "14 01 00 00 04 00 00 00 00", ErrRedirProtocol},
		{"oversized auth data", nil, "SOL ", unhex(t, "13 00 00 00 01 01 04 00 00"), "14 01 00 00 01 00 00 00 00", ErrRedirProtocol},
		{"auth flood", nil, "SOL ", bytes.Repeat(authMsg(redir.AuthQuery, nil), redir.MaxAuthMessages+1), "14 01 00 00 00 00 00 00 00", ErrRedirProtocol},
		{"digest with a wrong password", nil, "SOL ", step1, "", ErrRedirAuth}, // finished below
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := redirConfig()
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			r, run := serveOne(t, NewRedirServer(cfg), nil)
			r.send(append([]byte{0x10, 0, 0, 0}, tc.start...))
			if tc.start != "SOL " {
				r.expect("0x11", unhex(t, tc.want))
			} else {
				r.readN("0x11", 13)
				r.send(tc.auth)
				if tc.name == "auth flood" {
					for range redir.MaxAuthMessages {
						r.readN("query reply", 12)
					}
				}
				if tc.name == "digest with a wrong password" {
					ch := r.readN("challenge", 9+0x4e)
					nonce := string(ch[9+1+len(vecRealm)+1:][:32])
					resp := solDigestResponse(nonce, "wrong")
					r.send(authMsg(redir.AuthDigest, lv(testUser, vecRealm, nonce, "/RedirectionService", vecCnonce, vecNC, resp, "auth")))
					tc.want = "14 01 00 00 04 00 00 00 00"
				}
				r.expect("0x14", unhex(t, tc.want))
			}
			r.expectClose()
			if err := run.wait(t); !errors.Is(err, tc.err) {
				t.Fatalf("Serve = %v; want %v", err, tc.err)
			}
		})
	}
}

// TestRedirMalformed sends bad messages at each stage: the device closes
// without answering, and Serve reports a protocol error.
func TestRedirMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		sol  bool // after the SOL handshake
		send string
	}{
		{"auth before start", false, "13 00 00 00 00 00 00 00 00"},
		{"0x20 before auth", false, "10 00 00 00 53 4f 4c 20 20 00 00 00 00 00 00 00"},
		{"oversized SOL data", true, "28 00 00 00 00 00 00 00 ff ff"},
		{"unknown type in SOL", true, "99"},
		{"pong from the console", true, "25 00 00 00 00 00 00 00"},
		{"second 0x20", true, "20 00 00 00 00 00 00 00 e8 03 64 00 00 00 10 27 00 00 88 13 00 00 00 00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, run := serveOne(t, NewRedirServer(redirConfig()), nil)
			if tc.sol {
				startSOLRaw(t, r)
			}
			r.send(unhex(t, tc.send))
			// Replies to what came before (0x11) may precede the close.
			r.c.SetReadDeadline(time.Now().Add(testTimeout))
			rest, _ := io.ReadAll(r.br)
			if len(rest) > 0 && rest[0] != 0x11 {
				t.Fatalf("device sent % x", rest)
			}
			if err := run.wait(t); !errors.Is(err, ErrRedirProtocol) {
				t.Fatalf("Serve = %v; want ErrRedirProtocol", err)
			}
		})
	}
	t.Run("handshake timeout", func(t *testing.T) {
		cfg := redirConfig()
		cfg.HandshakeTimeout = 50 * time.Millisecond
		_, run := serveOne(t, NewRedirServer(cfg), nil)
		if err := run.wait(t); !isTimeout(err) {
			t.Fatalf("Serve = %v; want a timeout", err)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		cfg := redirConfig()
		cfg.IdleTimeout = 50 * time.Millisecond
		r, run := serveOne(t, NewRedirServer(cfg), nil)
		startSOLRaw(t, r)
		if err := run.wait(t); !isTimeout(err) {
			t.Fatalf("Serve = %v; want a timeout", err)
		}
	})
}

// serveBytes feeds in to a session over net.Pipe, then closes, and
// returns Serve's error; it fails if Serve does not return.
func serveBytes(t testing.TB, s *RedirServer, in []byte) error {
	dev, con := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Serve(dev) }()
	go io.Copy(io.Discard, con)
	con.Write(in)
	con.Close()
	select {
	case err := <-done:
		return err
	case <-time.After(testTimeout):
		t.Fatalf("Serve did not return for input % x", in)
	}
	return nil
}

// validPrefix is amtterm's whole handshake; random inputs start with a
// part of it to reach the later stages.
var validPrefix, _ = hex.DecodeString(strings.ReplaceAll("10000000534f4c20"+
	"13000000010f00000005 61646d696e 08 5040737377307264"+
	"2000000000000000 e803 6400 0000 1027 0000 8813 00000000", " ", ""))

// TestRedirRandomInput feeds 300 random inputs: none may panic or hang.
func TestRedirRandomInput(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(7, 11))
	cfg := redirConfig()
	cfg.IdleTimeout = time.Second
	for range 300 {
		in := append([]byte(nil), validPrefix[:rng.IntN(len(validPrefix)+1)]...)
		junk := make([]byte, rng.IntN(64))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
			if rng.IntN(4) == 0 { // favour known codes
				junk[j] = []byte{0x10, 0x12, 0x13, 0x20, 0x22, 0x27, 0x28, 0x2B}[rng.IntN(8)]
			}
		}
		in = append(in, junk...)
		serveBytes(t, NewRedirServer(cfg), in)
	}
}

func FuzzRedirection(f *testing.F) {
	f.Add(validPrefix)
	f.Add(append(append([]byte(nil), validPrefix...), unhex(f, "28 00 00 00 00 00 00 00 03 00 61 62 0d 22 00 00 00 00 00 00 00 12 00 00 00")...))
	f.Add(unhex(f, "10 00 00 00 53 4f 4c 20 13 00 00 00 00 00 00 00 00 13 00 00 00 04 20 00 00 00 05 61 64 6d 69 6e 00 00 13 2f 52 65 64 69 72 65 63 74 69 6f 6e 53 65 72 76 69 63 65 00 00 00 00"))
	f.Add(unhex(f, "10 00 00 00 53 4f 4c 20 13 00 00 00 01 ff ff ff ff"))
	cfg := redirConfig()
	cfg.IdleTimeout = time.Second
	f.Fuzz(func(t *testing.T, in []byte) {
		serveBytes(t, NewRedirServer(cfg), in)
	})
}

// TestRedirHeartbeats: the device sends 0x2B at the console's interval,
// or at Config.Heartbeat when the console asks for 0, numbered on.
func TestRedirHeartbeats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		console uint16 // HeartbeatInterval in 0x20, ms
	}{{"console interval", 60}, {"default interval", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := redirConfig()
			cfg.Heartbeat = 60 * time.Millisecond
			r, _ := serveOne(t, NewRedirServer(cfg), nil)
			r.send(unhex(t, "10 00 00 00 53 4f 4c 20"))
			r.readN("0x11", 13)
			r.send(authMsg(redir.AuthPassword, lv(testUser, testPassword)))
			r.readN("0x14", 9)
			start := binary.LittleEndian.AppendUint16(unhex(t, "20 00 00 00 01 00 00 00 10 27 64 00 00 00 10 27 64 00"), tc.console)
			r.send(append(start, 0, 0, 0, 0))
			r.readN("0x21", 23)
			r.expect("banner", solData(0x2A, 2, banner()))
			for seq := uint32(3); seq < 6; seq++ {
				r.expect("heartbeat", binary.LittleEndian.AppendUint32([]byte{0x2B, 0, 0, 0}, seq))
			}
		})
	}
}

// TestRedirBusy: one SOL session per device; the slot frees when the
// session ends.
func TestRedirBusy(t *testing.T) {
	s := NewRedirServer(redirConfig())
	r1, run1 := serveOne(t, s, nil)
	startSOLRaw(t, r1)

	r2, run2 := serveOne(t, s, nil)
	r2.send(unhex(t, "10 00 00 00 53 4f 4c 20"))
	r2.expect("busy", unhex(t, "11 02 00 00 01 00 0b 08 57 01 00 00 00"))
	r2.expectClose()
	if err := run2.wait(t); !errors.Is(err, ErrRedirBusy) {
		t.Fatalf("second Serve = %v; want ErrRedirBusy", err)
	}
	ln := listenRedir(t, s)
	if _, err := DialSOL(dialT(t, ln), testUser, testPassword, SOLAuthDigest); !errors.Is(err, ErrRedirBusy) {
		t.Fatalf("DialSOL = %v; want ErrRedirBusy", err)
	}

	r1.send(unhex(t, "12 00 00 00"))
	if err := run1.wait(t); err != nil {
		t.Fatalf("first Serve = %v", err)
	}
	r3, _ := serveOne(t, s, nil)
	startSOLRaw(t, r3)
}

// listenRedir serves s on a loopback listener until the test ends.
func listenRedir(t *testing.T, s *RedirServer) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ln) }()
	t.Cleanup(func() {
		ln.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeListener = %v", err)
			}
		case <-time.After(testTimeout):
			t.Error("ServeListener did not return")
		}
	})
	return ln
}

func dialT(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readUntil reads console output until it contains want.
func readUntil(t *testing.T, c *SOLClient, want string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(testTimeout))
	var got []byte
	buf := make([]byte, 7) // small on purpose
	for !bytes.Contains(got, []byte(want)) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("Read: %v after %q; want %q", err, got, want)
		}
	}
	return string(got)
}

// byteConn reads and writes one byte at a time: every message arrives in
// pieces, as through a websocket relay.
type byteConn struct{ net.Conn }

func (c byteConn) Read(p []byte) (int, error) { return c.Conn.Read(p[:min(len(p), 1)]) }

func (c byteConn) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// TestSOLClient runs the Go console against the device with each
// authentication, with messages split into single bytes, and both ways of
// ending.
func TestSOLClient(t *testing.T) {
	for _, tc := range []struct {
		name  string
		auth  SOLAuth
		edit  func(*RedirConfig)
		split bool
		end   bool
	}{
		{name: "digest", auth: SOLAuthDigest},
		{name: "clear", auth: SOLAuthClear, end: true},
		{name: "digest only device", auth: SOLAuthDigest, edit: func(c *RedirConfig) { c.NoClearText = true }},
		{name: "split", auth: SOLAuthDigest, split: true, end: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := redirConfig()
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			s := NewRedirServer(cfg)
			var wrap func(net.Conn) net.Conn
			if tc.split {
				wrap = func(c net.Conn) net.Conn { return byteConn{c} }
			}
			r, run := serveOne(t, s, wrap)
			var conn net.Conn = r.c
			if tc.split {
				conn = byteConn{r.c}
			}
			c, err := DialSOL(conn, testUser, testPassword, tc.auth)
			if err != nil {
				t.Fatalf("DialSOL: %v", err)
			}
			defer c.Close()
			readUntil(t, c, redirHost+"$ ")
			if _, err := c.Write([]byte("hello\r")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, c, "you typed: hello\r\n"+redirHost+"$ ")
			if got := string(s.SOLInput()); got != "hello\r" {
				t.Errorf("SOLInput = %q", got)
			}
			if tc.end {
				if err := c.End(); err != nil {
					t.Fatalf("End: %v", err)
				}
			} else {
				c.Close()
			}
			if err := run.wait(t); err != nil {
				t.Fatalf("Serve = %v", err)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		for _, auth := range []SOLAuth{SOLAuthDigest, SOLAuthClear} {
			ln := listenRedir(t, NewRedirServer(redirConfig()))
			_, err := DialSOL(dialT(t, ln), testUser, "wrong", auth)
			var se *RedirStatusError
			if !errors.Is(err, ErrRedirAuth) || !errors.As(err, &se) || se.Status != redir.StatusAuthFailed {
				t.Fatalf("DialSOL(auth %d) = %v; want status 1", auth, err)
			}
		}
	})
}

// syncBuffer collects a process's output and signals every write.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) waitFor(ctx context.Context, want string) error {
	for {
		s.mu.Lock()
		ok, ch := strings.Contains(s.b.String(), want), s.changed
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

// TestRedirAmtterm runs Debian's amtterm 1.4 against the device. Its
// stdin is a pipe: amtterm's raw-mode calls fail harmlessly on it.
func TestRedirAmtterm(t *testing.T) {
	path, err := exec.LookPath("amtterm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("amtterm is not installed")
		}
		t.Skip("amtterm is not installed (apt-get install -y amtterm)")
	}
	s := NewRedirServer(redirConfig())
	ln := listenRedir(t, s)
	host, port, _ := net.SplitHostPort(ln.Addr().String())

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-u", testUser, host, port)
	cmd.Env = append(os.Environ(), "AMT_PASSWORD="+testPassword) // not in argv
	cmd.WaitDelay = time.Second
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			cancel()
			cmd.Wait()
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nstdout: %q\nstderr: %q", append(args, stdout.String(), stderr.String())...)
	}

	if err := stdout.waitFor(ctx, "Presence simulated AMT serial console on "+redirHost); err != nil {
		fail("no banner: %v", err)
	}
	if _, err := io.WriteString(stdin, "hello\n"); err != nil {
		fail("stdin: %v", err)
	}
	if err := s.WaitSOLInput(ctx, []byte("hello\r")); err != nil {
		fail("the keys did not arrive: %v (got %q)", err, s.SOLInput())
	}
	if err := stdout.waitFor(ctx, "you typed: hello\r\n"+redirHost+"$ "); err != nil {
		fail("no answer: %v", err)
	}
	if _, err := stdin.Write([]byte{0x1D}); err != nil { // ^]
		fail("stdin: %v", err)
	}
	err = cmd.Wait()
	waited = true
	if err != nil || ctx.Err() != nil {
		fail("amtterm after ^]: %v", err)
	}
	if !strings.Contains(stderr.String(), "CLOSED") {
		fail("amtterm did not close the session")
	}
	if got := string(s.SOLInput()); got != "hello\r" {
		t.Errorf("SOLInput = %q; want %q", got, "hello\r")
	}
}

// TestRedirOverTunnel runs SOL through an APF channel to 16994 of a
// connected device, and checks that the device's direct listener shares
// its one SOL slot.
func TestRedirOverTunnel(t *testing.T) {
	d, _, p := connectedPeer(t, func(*Config) {}, true)
	pc := openPeerChan(p, 9, PortRedirect)
	// read takes n bytes of the channel's stream.
	read := func(what string, n int) []byte {
		t.Helper()
		for steps := 0; len(pc.stream) < n; steps++ {
			if steps > 1000 {
				t.Fatalf("%s: no data", what)
			}
			pc.pump()
		}
		b := pc.stream[:n]
		pc.stream = pc.stream[n:]
		return b
	}
	expect := func(what string, want []byte) {
		t.Helper()
		if got := read(what, len(want)); !bytes.Equal(got, want) {
			t.Fatalf("%s:\n got % x\nwant % x", what, got, want)
		}
	}
	pc.write(unhex(t, "10 00 00 00 53 4f 4c 20"))
	expect("0x11", unhex(t, "11 00 00 00 01 00 0b 08 57 01 00 00 00"))
	pc.write(authMsg(redir.AuthPassword, lv(DefaultAMTUser, testAMTPass)))
	expect("0x14", unhex(t, "14 00 00 00 01 00 00 00 00"))
	// Split across two CHANNEL_DATA.
	start := unhex(t, "20 00 00 00 00 00 00 00 e8 03 64 00 00 00 10 27 00 00 88 13 00 00 00 00")
	pc.write(start[:5])
	pc.write(start[5:])
	expect("0x21", unhex(t, "21 00 00 00 01 00 00 00 e8 03 64 00 00 00 10 27 00 00 88 13 00 00 00"))
	b := []byte("\r\nPresence simulated AMT serial console on " + testHost + "\r\n" + testHost + "$ ")
	expect("banner", solData(0x2A, 2, b))

	// The device's direct listener is the same device: busy.
	ln := listenRedir(t, d.Redirection())
	if _, err := DialSOL(dialT(t, ln), DefaultAMTUser, testAMTPass, SOLAuthDigest); !errors.Is(err, ErrRedirBusy) {
		t.Fatalf("DialSOL on the direct listener = %v; want ErrRedirBusy", err)
	}

	pc.write(solData(0x28, 0, []byte("hi\r")))
	expect("answer", solData(0x2A, 3, []byte("hi\r\nyou typed: hi\r\n"+testHost+"$ ")))
	if got := string(d.SOLInput()); got != "hi\r" {
		t.Errorf("SOLInput = %q", got)
	}
	pc.write(unhex(t, "12 00 00 00"))
	for steps := 0; ; steps++ {
		if steps > 1000 {
			t.Fatal("the device did not close the channel")
		}
		m := p.next()
		if cl, ok := m.(*apf.ChannelClose); ok {
			if cl.Recipient != 9 {
				t.Fatalf("CHANNEL_CLOSE to %d; want 9", cl.Recipient)
			}
			break
		}
		if dm, ok := m.(*apf.ChannelData); ok && len(dm.Data) > 0 && dm.Data[0] != 0x2B {
			t.Fatalf("data after 0x12: % x", dm.Data)
		}
	}
	p.send(&apf.ChannelClose{Recipient: pc.id})
	p.barrier(0x51)

	// Now the direct listener gets the slot, with digest over TCP.
	c, err := DialSOL(dialT(t, ln), DefaultAMTUser, testAMTPass, SOLAuthDigest)
	if err != nil {
		t.Fatalf("DialSOL after the tunnel session: %v", err)
	}
	readUntil(t, c, testHost+"$ ")
	c.Close()
}
