package sol_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/redir"
	"github.com/presence-mps/presence/mps/sol"
)

// A scripted device on the far end of a net.Pipe, built from the codec
// alone, for what the simulator does not do: count heartbeats, end the
// session by itself, stay silent, send oversized messages.
type fakeDevice struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	got  []byte // codes of the console's messages, in order
}

// scripted runs script as the device; it returns the console's end of
// the pipe and a channel closed when the script is done.
func scripted(t *testing.T, script func(d *fakeDevice)) (net.Conn, <-chan struct{}) {
	t.Helper()
	c, dc := net.Pipe()
	d := &fakeDevice{t: t, conn: dc, br: bufio.NewReader(dc)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer dc.Close()
		script(d)
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c, done
}

// read returns the console's next message, or nil at the end.
func (d *fakeDevice) read() redir.Message {
	d.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, _, err := redir.ReadMessage(d.br)
	if err != nil {
		return nil
	}
	d.got = append(d.got, m.Code())
	return m
}

// expect reads messages until one with code arrives (skipping
// heartbeats) and returns it, or nil.
func (d *fakeDevice) expect(code byte) redir.Message {
	for {
		m := d.read()
		if m == nil || m.Code() == code {
			return m
		}
		if m.Code() != redir.MsgSOLHeartbeat {
			d.t.Errorf("the console sent %s, want %s", redir.Name(m.Code()), redir.Name(code))
			return nil
		}
	}
}

func (d *fakeDevice) send(m redir.Message) { d.sendRaw(redir.Marshal(m)) }

func (d *fakeDevice) sendRaw(b []byte) {
	d.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	d.conn.Write(b)
}

// login serves the handshake up to and including 0x27, accepting any
// digest response.
func (d *fakeDevice) login() bool {
	if d.expect(redir.MsgStartSession) == nil {
		return false
	}
	d.send(&redir.StartSessionReply{ProtocolMajor: 1, FWMajor: 16, FWMinor: 1, OEM: 343})
	if d.expect(redir.MsgAuthenticate) == nil {
		return false
	}
	d.send(&redir.AuthenticateReply{Type: redir.AuthQuery, Data: []byte{4}})
	if d.expect(redir.MsgAuthenticate) == nil {
		return false
	}
	d.send(&redir.AuthenticateReply{Status: 1, Type: 4, Data: redir.Challenge{Realm: "Digest:X", Nonce: "n", QOP: "auth"}.Append(nil)})
	if d.expect(redir.MsgAuthenticate) == nil {
		return false
	}
	d.send(&redir.AuthenticateReply{Type: 4})
	start, ok := d.expect(redir.MsgSOLStart).(*redir.SOLStart)
	if !ok {
		return false
	}
	d.send(&redir.SOLStartReply{SOLHeader: redir.SOLHeader{Seq: 1}, Settings: start.Settings})
	return d.expect(redir.MsgSOLOpen) != nil
}

func openT(t *testing.T, c net.Conn, opts ...sol.Option) *sol.Session {
	t.Helper()
	s, err := sol.Open(ctxT(t), c, "admin", "pw", opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPoliteClose: the console's messages in order (the web consoles'
// handshake, counting sequence numbers), its own heartbeats, and Close as
// amtterm ends: 0x22, the device's 0x23, then 0x12.
func TestPoliteClose(t *testing.T) {
	var seqs []uint32
	var got []byte
	c, done := scripted(t, func(d *fakeDevice) {
		if !d.login() {
			return
		}
		d.send(&redir.SOLDataFromHost{Data: []byte("hi")})
		for {
			m := d.read()
			if m == nil {
				break
			}
			if sm, ok := m.(redir.SOLMessage); ok {
				seqs = append(seqs, sm.Header().Seq)
			}
			if m.Code() == redir.MsgSOLEnd {
				d.send(&redir.SOLDataFromHost{Data: []byte("late output")}) // discarded
				d.send(&redir.SOLEndReply{})
			}
			if m.Code() == redir.MsgEndSession {
				break
			}
		}
		got = d.got
	})
	s := openT(t, c, sol.WithKeepalive(20*time.Millisecond))
	buf := make([]byte, 10)
	if n, err := s.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	time.Sleep(150 * time.Millisecond)
	s.Write([]byte("k"))
	s.Close()
	<-done
	codes := string(got)
	if !strings.HasPrefix(codes, "\x10\x13\x13\x13\x20\x27") || !strings.HasSuffix(codes, "\x22\x12") {
		t.Fatalf("console messages % x; want the handshake first and 22 12 last", got)
	}
	if n := strings.Count(codes, "\x2b"); n < 3 {
		t.Errorf("%d heartbeats in 150 ms at 20 ms; want several", n)
	}
	if !strings.Contains(codes, "\x28") {
		t.Error("the keystroke did not arrive")
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("SOL sequence numbers %v; want counting up by one", seqs)
		}
	}
}

// TestDeviceEnds: a device that ends the session by itself (0x23 unasked)
// gives io.EOF after the output before it, and is answered with 0x12.
func TestDeviceEnds(t *testing.T) {
	var last byte
	c, done := scripted(t, func(d *fakeDevice) {
		if !d.login() {
			return
		}
		d.send(&redir.SOLDataFromHost{Data: []byte("bye")})
		d.send(&redir.SOLEndReply{})
		if m := d.expect(redir.MsgEndSession); m != nil {
			last = m.Code()
		}
	})
	s := openT(t, c)
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "bye" {
		t.Fatalf("ReadAll = %q, %v; want bye, then io.EOF", got, err)
	}
	s.Close()
	<-done
	if last != redir.MsgEndSession {
		t.Error("no 0x12 after the device's 0x23")
	}
}

// TestSplitAndNoise: messages split into single bytes, with heartbeats,
// control messages, pings and a recording notice in between.
func TestSplitAndNoise(t *testing.T) {
	c, _ := scripted(t, func(d *fakeDevice) {
		d = &fakeDevice{t: d.t, conn: oneByte{d.conn}, br: d.br}
		noise := func() {
			d.send(&redir.SOLHeartbeat{})
			d.send(&redir.SOLControls{State: redir.StatePowerOn})
			d.sendRaw([]byte{redir.MsgRecording})
		}
		d.expect(redir.MsgStartSession)
		noise()
		d.send(&redir.StartSessionReply{ProtocolMajor: 1, OEM: 343})
		d.expect(redir.MsgAuthenticate)
		d.send(&redir.AuthenticateReply{Type: redir.AuthQuery, Data: []byte{1}}) // clear text only
		a, _ := d.expect(redir.MsgAuthenticate).(*redir.Authenticate)
		if pa, err := redir.ParsePasswordAuth(a.Data); err != nil || a.Type != redir.AuthPassword || pa.User != "admin" || string(pa.Password) != "pw" {
			d.t.Errorf("clear-text login %v %v", pa, err)
		}
		noise()
		d.send(&redir.AuthenticateReply{Type: redir.AuthPassword})
		d.expect(redir.MsgSOLStart)
		d.send(&redir.SOLStartReply{})
		d.expect(redir.MsgSOLOpen)
		for _, p := range []string{"one ", "two"} {
			noise()
			d.send(&redir.SOLDataFromHost{Data: []byte(p)})
		}
		d.send(&redir.SOLPing{})
		d.read()
	})
	s := openT(t, c)
	if s.Info().Auth != redir.AuthPassword {
		t.Errorf("auth %v; want clear text, the only one offered", s.Info().Auth)
	}
	var got []byte
	buf := make([]byte, 3)
	for !bytes.Equal(got, []byte("one two")) {
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := s.Read(buf)
		if err != nil {
			t.Fatalf("Read: %v after %q", err, got)
		}
		got = append(got, buf[:n]...)
	}
}

type oneByte struct{ net.Conn }

func (c oneByte) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// TestHostileDevice: oversized lengths, unknown messages and silence end
// the handshake or the session with the right error, without waiting for
// the declared bytes.
func TestHostileDevice(t *testing.T) {
	huge := redir.Marshal(&redir.SOLDataFromHost{})
	huge[8], huge[9] = 0xff, 0xff // 65535 bytes declared
	for _, tc := range []struct {
		name   string
		during func(d *fakeDevice) // after login; nil: before
		before []byte
		then   []byte // sent after the console's next message
		want   error
	}{
		{name: "auth data too long", before: redir.Marshal(&redir.StartSessionReply{ProtocolMajor: 1}),
			then: []byte{0x14, 0, 0, 0, 0, 0xff, 0xff, 0, 0}, want: sol.ErrProtocol},
		{name: "unknown message", before: []byte{0x77}, want: sol.ErrProtocol},
		{name: "wrong protocol", before: redir.Marshal(&redir.StartSessionReply{ProtocolMajor: 2}), want: sol.ErrProtocol},
		{name: "closed", before: []byte{0x11, 0}, want: sol.ErrDeviceGone},
		{name: "SOL data too long", during: func(d *fakeDevice) { d.sendRaw(huge) }, want: sol.ErrProtocol},
		{name: "a login reply during SOL", during: func(d *fakeDevice) { d.send(&redir.AuthenticateReply{}) }, want: sol.ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := scripted(t, func(d *fakeDevice) {
				if tc.during == nil {
					d.expect(redir.MsgStartSession)
					d.sendRaw(tc.before)
					if tc.then != nil {
						d.read()
						d.sendRaw(tc.then)
						d.read()
					}
					return // and close
				}
				if d.login() {
					tc.during(d)
					d.read()
				}
			})
			s, err := sol.Open(ctxT(t), c, "admin", "pw")
			if tc.during != nil {
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				_, err = io.ReadAll(s)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v; want %v", err, tc.want)
			}
		})
	}
}

// TestHandshakeDeadlines: a silent device ends Open at the handshake
// timeout with ErrDeviceGone, and a cancelled context ends it at once.
func TestHandshakeDeadlines(t *testing.T) {
	silent := func(d *fakeDevice) { d.read(); d.read() }
	c, _ := scripted(t, silent)
	t0 := time.Now()
	_, err := sol.Open(context.Background(), c, "admin", "pw", sol.WithHandshakeTimeout(100*time.Millisecond))
	var ge *sol.GoneError
	if !errors.Is(err, sol.ErrDeviceGone) || !errors.As(err, &ge) || !ge.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Open against a silent device = %v; want a timeout", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Open took %v", d)
	}

	c, _ = scripted(t, silent)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := sol.Open(ctx, c, "admin", "pw"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context = %v; want context.Canceled", err)
	}
}

// TestNoCommonAuth: a device offering only Kerberos, and a console that
// refuses clear text facing a device that offers only that.
func TestNoCommonAuth(t *testing.T) {
	for _, tc := range []struct {
		offer []byte
		opts  []sol.Option
	}{
		{offer: []byte{2}},
		{offer: []byte{1}, opts: []sol.Option{sol.WithAuth(redir.AuthDigest, redir.AuthDigestRFC2069)}},
	} {
		c, _ := scripted(t, func(d *fakeDevice) {
			d.expect(redir.MsgStartSession)
			d.send(&redir.StartSessionReply{ProtocolMajor: 1})
			d.expect(redir.MsgAuthenticate)
			d.send(&redir.AuthenticateReply{Type: redir.AuthQuery, Data: tc.offer})
			d.read()
		})
		_, err := sol.Open(ctxT(t), c, "admin", "pw", tc.opts...)
		if !errors.Is(err, sol.ErrNoAuth) || !errors.Is(err, sol.ErrRefused) {
			t.Fatalf("offer % x: %v; want ErrNoAuth", tc.offer, err)
		}
	}
}

// TestReadDeadline: a Read past its deadline returns
// os.ErrDeadlineExceeded and the session goes on.
func TestReadDeadline(t *testing.T) {
	next := make(chan struct{})
	c, _ := scripted(t, func(d *fakeDevice) {
		if d.login() {
			<-next
			d.send(&redir.SOLDataFromHost{Data: []byte("later")})
			d.read()
		}
	})
	s := openT(t, c)
	s.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := s.Read(make([]byte, 5)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %v; want the deadline", err)
	}
	s.SetReadDeadline(time.Time{})
	close(next)
	buf := make([]byte, 5)
	if n, err := io.ReadFull(s, buf); err != nil || string(buf[:n]) != "later" {
		t.Fatalf("Read after the deadline = %q, %v", buf[:n], err)
	}
}

// TestAmtterm: the simulator's clear-text path without a query, as
// amtterm 1.4 logs in, over a plain connection to its listener.
func TestAmtterm(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := amtsim.NewRedirServer(amtsim.RedirConfig{Password: []byte(amtPass)})
	go srv.ServeListener(ln)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := sol.Open(ctxT(t), c, amtsim.DefaultAMTUser, amtPass, sol.WithAuth(redir.AuthPassword), sol.WithoutQuery())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readUntil(t, s, "amtsim$ ")
}

// FuzzOpen: whatever a device sends, Open and Read end with one of the
// package's errors (or io.EOF), never a panic or a hang.
func FuzzOpen(f *testing.F) {
	var b []byte
	b = redir.Marshal(&redir.StartSessionReply{ProtocolMajor: 1})
	b = append(b, redir.Marshal(&redir.AuthenticateReply{Type: 0, Data: []byte{4, 3, 1}})...)
	b = append(b, redir.Marshal(&redir.AuthenticateReply{Status: 1, Type: 4, Data: redir.Challenge{Realm: "r", Nonce: "n", QOP: "auth"}.Append(nil)})...)
	ok := append(b, redir.Marshal(&redir.AuthenticateReply{Type: 4})...)
	ok = append(ok, redir.Marshal(&redir.SOLStartReply{})...)
	f.Add(b)
	f.Add(append(ok, redir.Marshal(&redir.SOLDataFromHost{Data: []byte("x")})...))
	f.Add(append(ok, redir.Marshal(&redir.SOLEndReply{})...))
	f.Add(append(slices(ok), 0x2a, 0, 0, 0, 0, 0, 0, 0, 0xff))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, dc := net.Pipe()
		go func() {
			go io.Copy(io.Discard, dc)
			dc.Write(in)
			dc.Close()
		}()
		s, err := sol.Open(context.Background(), c, "admin", "pw", sol.WithHandshakeTimeout(2*time.Second))
		if err == nil {
			_, err = io.Copy(io.Discard, s)
			s.Close()
			if err == nil {
				return // io.EOF: the device ended the session
			}
		}
		for _, want := range []error{sol.ErrCredentials, sol.ErrRefused, sol.ErrDeviceGone, sol.ErrProtocol} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("error %v is none of the package's", err)
	})
}

func slices(b []byte) []byte { return append([]byte(nil), b...) }
