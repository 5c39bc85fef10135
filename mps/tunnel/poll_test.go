//go:build linux

package tunnel

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// testPoller, when set, makes the harness park each tunnel in it instead
// of serving it with a goroutine.
var testPoller *Poller

// TestParked runs the socket tests of the goroutine reader again with the
// tunnels parked in a poller (two shards, coalescing on), and then what
// only parking has: the idle timeout from the shard's heap, a tunnel
// closed from outside ending through the callback, and a device that
// stops reading while the server writes to it.
func TestParked(t *testing.T) {
	p, err := NewPoller(PollerOptions{Shards: 2, Coalesce: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for _, tt := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"HandshakeOverTLS", TestHandshakeOverTLS},
		{"OutOfOrderIsProtocolError", TestOutOfOrderIsProtocolError},
		{"ChannelDataAndWindows", TestChannelDataAndWindows},
		{"WindowOverrunIsProtocolError", TestWindowOverrunIsProtocolError},
		{"WindowAdjustOverflow", TestWindowAdjustOverflow},
		{"DialErrors", TestDialErrors},
		{"BulkEcho", TestBulkEcho},
		{"IdleTimeout", testParkedIdle},
		{"ClosedFromOutside", testParkedClosed},
		{"StalledDevice", testParkedStalled},
		{"DeadlineLeftBehind", testParkedDeadline},
	} {
		testPoller = p
		t.Run(tt.name, tt.f)
		testPoller = nil
		// Each test's tunnels have ended (its cleanups closed them): the
		// poller forgets them.
		deadline := time.Now().Add(5 * time.Second)
		for p.Parked() != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := p.Parked(); n != 0 {
			t.Fatalf("after %s: %d tunnels still parked", tt.name, n)
		}
	}
}

// parkedConn connects a device over TLS, completes its handshake, and
// checks that the tunnel was parked.
func parkedConn(t *testing.T, cfg Config) (*harness, *Conn) {
	t.Helper()
	cfg.TLS = TLSConfig(testCert(t), false)
	h := start(t, cfg)
	h.peer.up(16992)
	c := h.conn()
	recv[*apf.KeepaliveOptionsRequest](h.peer)
	if c.park.Load() == nil {
		t.Fatal("the tunnel was not parked")
	}
	return h, c
}

// testParkedIdle: a parked tunnel answers keepalives, then, silent, is
// dropped at its idle timeout (from the shard's heap, no read deadline)
// with DISCONNECT(connection timed out), not before.
func testParkedIdle(t *testing.T) {
	const idle = 400 * time.Millisecond
	h, _ := parkedConn(t, Config{KeepaliveInterval: 100 * time.Millisecond, IdleTimeout: idle})
	var silent time.Time
	for i := range 3 {
		if i > 0 {
			time.Sleep(idle * 3 / 4) // input within the timeout keeps it up
		}
		silent = time.Now()
		h.peer.send(&apf.KeepaliveRequest{Cookie: uint32(i)})
		if r := recv[*apf.KeepaliveReply](h.peer); r.Cookie != uint32(i) {
			t.Fatalf("reply cookie %d; want %d", r.Cookie, i)
		}
	}
	h.peer.wait = 5 * time.Second
	m := h.peer.expectClosed()
	if d, ok := m.(*apf.Disconnect); !ok || d.Reason != apf.DisconnectConnectionTimedOut {
		t.Fatalf("last message %T %+v; want DISCONNECT(connection timed out)", m, m)
	}
	if waited := time.Since(silent); waited < idle-50*time.Millisecond || waited > idle+time.Second {
		t.Fatalf("dropped %s after the last input; want about %s", waited, idle)
	}
	if r := h.serveErr(); r != ReasonIdleTimeout {
		t.Fatalf("reason %s; want idle-timeout", r)
	}
}

// testParkedClosed: a parked tunnel closed by the server (not by its
// reader) ends through the callback, with the reason given.
func testParkedClosed(t *testing.T) {
	h, c := parkedConn(t, Config{})
	c.CloseWithReason(ReasonReplaced, "test")
	if r := h.serveErr(); r != ReasonReplaced {
		t.Fatalf("reason %s; want replaced", r)
	}
	if _, ok := h.peer.expectClosed().(*apf.Disconnect); !ok {
		t.Fatal("no DISCONNECT")
	}
}

// testParkedStalled: a device that stops reading while a channel sends
// to it does not hold the shard: another parked tunnel on the same
// poller keeps answering keepalives at once, and the stalled one is
// dropped at the write timeout.
func testParkedStalled(t *testing.T) {
	h, c := parkedConn(t, Config{WriteTimeout: time.Second, Window: 64 << 10})
	ch, _ := dialPair(t, h, c, 16992, 1<<30)
	other, _ := parkedConn(t, Config{})

	// The device reads nothing more: fill its socket and ours.
	go func() {
		buf := bytes.Repeat([]byte("z"), 64<<10)
		for {
			if _, err := ch.Write(buf); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	for i := range 5 {
		start := time.Now()
		other.peer.send(&apf.KeepaliveRequest{Cookie: uint32(i)})
		recv[*apf.KeepaliveReply](other.peer)
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("keepalive %d on another tunnel took %s while one device stalled", i, d)
		}
	}
	select {
	case err := <-h.serve:
		if r := ReasonOf(err); r != ReasonStalled {
			t.Fatalf("reason %s; want stalled", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled tunnel was not dropped")
	}
}

// testParkedDeadline: the write deadline the writer goroutine leaves on
// the socket (its last write, KEEPALIVE_OPTIONS_REQUEST) does not fail the
// shard's later writes, which do not wait and so have none (a 10,000
// tunnel load run lost every tunnel to it at the write timeout).
func testParkedDeadline(t *testing.T) {
	const wt = 200 * time.Millisecond
	h, _ := parkedConn(t, Config{WriteTimeout: wt})
	time.Sleep(2 * wt)
	for i := range 3 {
		h.peer.send(&apf.KeepaliveRequest{Cookie: uint32(i)})
		if r := recv[*apf.KeepaliveReply](h.peer); r.Cookie != uint32(i) {
			t.Fatalf("reply cookie %d; want %d", r.Cookie, i)
		}
	}
	select {
	case err := <-h.serve:
		t.Fatalf("the tunnel ended: %v", err)
	default:
	}
}

// TestSockReadWithoutWaiting: a polled sock answers errAgain, not a
// wait, when the socket is empty; crypto/tls keeps a record cut in two
// across that answer and returns it whole once the rest has come.
func TestSockReadWithoutWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); accepted <- c }()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw := <-accepted
	defer raw.Close()
	s := newSock(raw, time.Second)
	srv := tls.Server(s, TLSConfig(testCert(t), false))
	sc := &splitConn{Conn: client, half: make(chan struct{}), rest: make(chan struct{})}
	cl := tls.Client(sc, &tls.Config{RootCAs: testPool(t), ServerName: "127.0.0.1"})
	errc := make(chan error, 1)
	go func() { errc <- cl.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	s.polled.Store(true)
	buf := make([]byte, 64)
	start := time.Now()
	if _, err := srv.Read(buf); err != errAgain {
		t.Fatalf("Read of an empty polled socket = %v; want errAgain", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("the read waited %s", d)
	}

	msg := []byte("hello, parked tunnel")
	sc.split.Store(true)
	go cl.Write(msg)
	<-sc.half
	time.Sleep(20 * time.Millisecond)
	s.drained = false
	if _, err := srv.Read(buf); err != errAgain {
		t.Fatalf("Read of half a record = %v; want errAgain", err)
	}
	close(sc.rest)
	time.Sleep(20 * time.Millisecond)
	s.drained = false
	n, err := srv.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("Read = %q, %v; want %q", buf[:n], err, msg)
	}
	s.drained = false
	if _, err := srv.Read(buf); !errors.Is(err, errAgain) {
		t.Fatalf("Read after the record = %v; want errAgain", err)
	}
}

// splitConn writes one write in two halves once split is set: the first,
// then, after rest is closed, the second.
type splitConn struct {
	net.Conn
	split      atomic.Bool
	half, rest chan struct{}
}

func (c *splitConn) Write(b []byte) (int, error) {
	if !c.split.Load() || len(b) < 2 {
		return c.Conn.Write(b)
	}
	c.split.Store(false)
	n, err := c.Conn.Write(b[:len(b)/2])
	close(c.half)
	if err != nil {
		return n, err
	}
	<-c.rest
	m, err := c.Conn.Write(b[len(b)/2:])
	return n + m, err
}
