package tunnel

import (
	"errors"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// What time does to a tunnel: the forwards settling, keepalives, the idle
// timeout, a stalled device and channel deadlines. These run over the
// in-memory transport inside a testing/synctest bubble, so they use the
// real defaults (30 s keepalives, a 90 s idle timeout) and check the
// timings exactly, without sleeping; TestKeepaliveAndIdleOverTLS is the
// same story end to end over TLS on loopback, in real time.

func TestForwardsKeepaliveAndGlobalRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ready := make(chan struct{})
		h := startMem(t, Config{KeepaliveInterval: 7 * time.Second, OnReady: func(*Conn) { close(ready) }})
		h.peer.up(16993, 16992, 664, 623, 16995, 16994)
		forwarded := time.Now()
		c := h.conn()
		// The options request comes once the forwards settle, for any port set.
		opt := recv[*apf.KeepaliveOptionsRequest](h.peer)
		if opt.Interval != 7 {
			t.Fatalf("KEEPALIVE_OPTIONS_REQUEST interval %d; want 7", opt.Interval)
		}
		if d := time.Since(forwarded); d != defaultSettle {
			t.Fatalf("KEEPALIVE_OPTIONS_REQUEST %s after the last forward; want %s", d, defaultSettle)
		}
		<-ready
		h.peer.send(&apf.KeepaliveOptionsReply{Interval: 7}, &apf.KeepaliveRequest{Cookie: 0xfeed})
		if r := recv[*apf.KeepaliveReply](h.peer); r.Cookie != 0xfeed {
			t.Fatalf("KEEPALIVE_REPLY cookie %x", r.Cookie)
		}
		h.peer.send(&apf.TCPIPForward{Cancel: true, WantReply: true, Address: "dev.example", Port: 623})
		if r := recv[*apf.RequestSuccess](h.peer); !r.NoPort {
			t.Fatalf("cancel reply %+v; want 1-byte REQUEST_SUCCESS", r)
		}
		h.peer.send(&apf.GlobalRequest{Name: "x-unknown@example", WantReply: true, Data: []byte{1, 2, 3}})
		recv[*apf.RequestFailure](h.peer)
		h.peer.send(&apf.UDPSendTo{Address: "a", Port: 1, OriginatorAddress: "b", Data: []byte{9}}, &apf.KeepaliveRequest{Cookie: 2})
		recv[*apf.KeepaliveReply](h.peer) // udp-send-to gets no reply
		info := c.Info()
		if len(info.Forwards) != 5 || c.HasPort(623) || !c.HasPort(16994) || info.KeepaliveAccepted[0] != 7 || info.Keepalives != 2 {
			t.Fatalf("Info = %+v", info)
		}
		// An AMT-initiated open is refused politely.
		h.peer.send(&apf.ChannelOpen{ChannelType: apf.ChannelDirectTCPIP, Sender: 77, Window: 100, MaxPacket: 0xffffffff})
		if f := recv[*apf.ChannelOpenFailure](h.peer); f.Recipient != 77 || f.Reason != apf.OpenAdministrativelyProhibited {
			t.Fatalf("open failure %+v", f)
		}
		h.peer.send(&apf.Disconnect{Reason: apf.DisconnectByApplication})
		if r := h.serveErr(); r != ReasonDisconnect {
			t.Fatalf("Serve reason %s; want device-disconnect", r)
		}
	})
}

// TestSettleFollowsLastForward: each forward restarts the settle timer, so
// KEEPALIVE_OPTIONS_REQUEST and readiness come ForwardSettle after the
// last one however slowly the device announces its ports.
func TestSettleFollowsLastForward(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ready := make(chan time.Time, 1)
		h := startMem(t, Config{OnReady: func(*Conn) { ready <- time.Now() }})
		h.peer.up()
		for _, port := range []uint32{16993, 16992, 664} {
			time.Sleep(defaultSettle - time.Millisecond)
			h.peer.send(&apf.TCPIPForward{WantReply: true, Address: "dev.example", Port: port})
			recv[*apf.RequestSuccess](h.peer)
		}
		last := time.Now()
		h.conn()
		recv[*apf.KeepaliveOptionsRequest](h.peer)
		if d := time.Since(last); d != defaultSettle {
			t.Fatalf("KEEPALIVE_OPTIONS_REQUEST %s after the last forward; want %s", d, defaultSettle)
		}
		if readyAt := <-ready; !readyAt.Equal(last.Add(defaultSettle)) {
			t.Fatalf("ready at %s; want %s", readyAt, last.Add(defaultSettle))
		}
	})
}

// TestKeepalivesHoldIdleTimeout: with the default timings, a device that
// sends a keepalive every 30 s stays up for an hour, and one that goes
// silent is dropped with DISCONNECT(CONNECTION_TIMED_OUT) exactly 90 s
// after the last thing it sent, however late in the interval that was.
func TestKeepalivesHoldIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startMem(t, Config{})
		h.peer.wait = 2 * DefaultIdle
		h.peer.up(16992)
		c := h.conn()
		recv[*apf.KeepaliveOptionsRequest](h.peer)
		const rounds = 120
		for i := range uint32(rounds) {
			time.Sleep(DefaultKeepalive)
			h.peer.send(&apf.KeepaliveRequest{Cookie: i})
			if r := recv[*apf.KeepaliveReply](h.peer); r.Cookie != i {
				t.Fatalf("KEEPALIVE_REPLY cookie %d; want %d", r.Cookie, i)
			}
		}
		// Input just inside the timeout keeps the tunnel up too.
		time.Sleep(DefaultIdle - time.Nanosecond)
		h.peer.send(&apf.KeepaliveOptionsReply{Interval: 30})
		last := time.Now()
		info := c.Info()
		if wantKA := last.Add(-(DefaultIdle - time.Nanosecond)); info.Keepalives != rounds || !info.LastKeepalive.Equal(wantKA) {
			t.Fatalf("Info: %d keepalives, the last at %s; want %d at %s", info.Keepalives, info.LastKeepalive, rounds, wantKA)
		}
		if d, ok := h.peer.expectClosed().(*apf.Disconnect); !ok || d.Reason != apf.DisconnectConnectionTimedOut {
			t.Fatalf("got %#v; want DISCONNECT(connection timed out)", d)
		}
		if d := time.Since(last); d != DefaultIdle {
			t.Fatalf("dropped %s after the last input; want %s", d, DefaultIdle)
		}
		if r := h.serveErr(); r != ReasonIdleTimeout {
			t.Fatalf("reason %s; want idle-timeout", r)
		}
	})
}

// TestStalledDevice: a device that stops reading while its keepalive
// replies pile up is dropped WriteTimeout after the tunnel's write began to
// wait, as stalled. (The forwards settle after that: a writer goroutine
// that waited on Conn.writing, a mutex, would hold the bubble's clock.)
func TestStalledDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startMem(t, Config{ForwardSettle: 2 * defaultWriteTimeout})
		h.peer.up(16992)
		h.conn()
		start := time.Now()
		for i := uint32(0); ; i++ {
			if _, err := h.peer.conn.Write(apf.Marshal(&apf.KeepaliveRequest{Cookie: i})); err != nil {
				break // the tunnel closed
			}
		}
		if r := h.serveErr(); r != ReasonStalled {
			t.Fatalf("reason %s; want stalled", r)
		}
		if d := time.Since(start); d != defaultWriteTimeout {
			t.Fatalf("dropped after %s; want %s", d, defaultWriteTimeout)
		}
	})
}

func TestCloseUnblocksWriterAndReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startMem(t, Config{})
		h.peer.up(16992)
		c := h.conn()
		recv[*apf.KeepaliveOptionsRequest](h.peer)
		ch, _ := dialPair(t, h, c, 16992, 0) // no credit at all
		werr := make(chan error, 1)
		go func() { _, err := ch.Write([]byte("blocked")); werr <- err }()
		rerr := make(chan error, 1)
		go func() { _, err := ch.Read(make([]byte, 10)); rerr <- err }()
		start := time.Now()
		ch.SetWriteDeadline(start.Add(50 * time.Millisecond))
		if err := <-werr; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write past deadline: %v", err)
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Fatalf("Write gave up after %s; want 50ms", d)
		}
		ch.SetWriteDeadline(time.Time{})
		go func() { _, err := ch.Write([]byte("blocked")); werr <- err }()
		synctest.Wait() // the Write waits for credit
		c.CloseWithReason(ReasonShutdown, "")
		for _, e := range []chan error{werr, rerr} {
			if err := <-e; !errors.Is(err, ErrClosed) {
				t.Fatalf("after tunnel close: %v; want ErrClosed", err)
			}
		}
		if d, ok := h.peer.expectClosed().(*apf.Disconnect); !ok || d.Reason != apf.DisconnectByApplication {
			t.Fatalf("got %#v; want DISCONNECT(by application)", d)
		}
		if r := h.serveErr(); r != ReasonShutdown {
			t.Fatalf("reason %s", r)
		}
	})
}

// TestKeepaliveAndIdleOverTLS is the keepalive and idle-timeout story end
// to end: real TLS over loopback sockets, in real time.
func TestKeepaliveAndIdleOverTLS(t *testing.T) {
	const idle = time.Second
	h := start(t, Config{TLS: TLSConfig(testCert(t), false), KeepaliveInterval: 100 * time.Millisecond,
		IdleTimeout: idle, ForwardSettle: time.Millisecond})
	h.peer.up(16992)
	c := h.conn()
	if o := recv[*apf.KeepaliveOptionsRequest](h.peer); o.Interval != 1 {
		t.Fatalf("KEEPALIVE_OPTIONS_REQUEST interval %d; want 1 (whole seconds, rounded up)", o.Interval)
	}
	began := time.Now()
	for i := range uint32(8) { // 1.2 s, longer than the idle timeout
		time.Sleep(idle * 3 / 20)
		h.peer.send(&apf.KeepaliveRequest{Cookie: i})
		if r := recv[*apf.KeepaliveReply](h.peer); r.Cookie != i {
			t.Fatalf("KEEPALIVE_REPLY cookie %d; want %d", r.Cookie, i)
		}
	}
	if c.Err() != nil || time.Since(began) < idle {
		t.Fatalf("tunnel ended while keepalives flowed: %v", c.Err())
	}
	last := time.Now()
	if d, ok := h.peer.expectClosed().(*apf.Disconnect); !ok || d.Reason != apf.DisconnectConnectionTimedOut {
		t.Fatalf("got %#v; want DISCONNECT(connection timed out)", d)
	}
	if d := time.Since(last); d < idle {
		t.Fatalf("dropped %s after the last keepalive; want at least %s", d, idle)
	}
	if r := h.serveErr(); r != ReasonIdleTimeout {
		t.Fatalf("reason %s; want idle-timeout", r)
	}
	if info := c.Info(); info.Keepalives != 8 || info.TLSVersion != "TLS 1.3" || info.BytesIn == 0 {
		t.Fatalf("Info = %+v", info)
	}
}

// TestStreamBufferShrinks: once authenticated, the stream transport drops
// a read buffer grown for a big message when it is drained, so an idle
// tunnel keeps only smallReadBuf bytes.
func TestStreamBufferShrinks(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var rc received
	s := streamConn{conn: a, recv: &rc, lim: (&Config{Window: defaultWindow}).limits(), rbuf: make([]byte, smallReadBuf)}
	big := apf.Marshal(&apf.ChannelData{Recipient: 4, Data: make([]byte, 20<<10)})
	ka := apf.Marshal(&apf.KeepaliveRequest{Cookie: 1})
	go func() {
		b.Write(big)
		b.Write(ka)
		b.Write(ka)
	}()
	// The buffer grows for the big message and is dropped when the read
	// after a small one finds it drained.
	for i, want := range []byte{apf.MsgChannelData, apf.MsgKeepaliveRequest, apf.MsgKeepaliveRequest} {
		m, err := s.readPacket(time.Minute)
		if err != nil || m.Type() != want {
			t.Fatalf("readPacket %d = %v, %v; want %s", i, m, err, apf.TypeName(want))
		}
		if i == 0 && len(s.rbuf) <= smallReadBuf {
			t.Fatalf("read buffer of %d bytes for a %d-byte message", len(s.rbuf), len(big))
		}
	}
	if len(s.rbuf) != smallReadBuf || rc.bytesIn.Load() != uint64(len(big)+2*len(ka)) {
		t.Fatalf("read buffer of %d bytes, %d bytes counted; want %d and %d", len(s.rbuf), rc.bytesIn.Load(), smallReadBuf, len(big)+2*len(ka))
	}
	if _, err := s.readPacket(noWait); err != errWouldBlock {
		t.Fatalf("readPacket(noWait) on an empty buffer = %v; want errWouldBlock", err)
	}
}

// TestLateForwardsReported: a device whose first tcpip-forward comes after
// the settle time is ready without a host name; OnForwards then reports
// the forwards that arrive, and not a repeat of one it has.
func TestLateForwardsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ready := make(chan string, 1)
		late := make(chan string, 4)
		h := startMem(t, Config{
			OnReady:    func(c *Conn) { ready <- c.Hostname() },
			OnForwards: func(c *Conn) { late <- c.Hostname() },
		})
		h.peer.up()
		h.conn()
		recv[*apf.KeepaliveOptionsRequest](h.peer)
		if host := <-ready; host != "" {
			t.Fatalf("ready with host %q; want none yet", host)
		}
		for range 2 { // the second is a repeat: not reported
			h.peer.send(&apf.TCPIPForward{WantReply: true, Address: "late.example", Port: 16992})
			recv[*apf.RequestSuccess](h.peer)
		}
		h.peer.send(&apf.TCPIPForward{WantReply: true, Address: "late.example", Port: 16994})
		recv[*apf.RequestSuccess](h.peer)
		synctest.Wait()
		if n := len(late); n != 2 {
			t.Fatalf("OnForwards called %d times; want 2 (two new ports, one repeat)", n)
		}
		if host := <-late; host != "late.example" {
			t.Fatalf("OnForwards saw host %q", host)
		}
	})
}
