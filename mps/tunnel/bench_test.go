package tunnel

import (
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/testutil"
	"github.com/presence-mps/presence/mps/apf"
)

// The benchmarks drive a tunnel on loopback TCP from a lean scripted
// device, so that they measure the tunnel's own paths: a keepalive (what an
// idle tunnel does every interval), a channel echo (the data path), and
// what an idle tunnel holds.

// upForBench brings a tunnel up with one announced port and clears the
// peer's deadlines, which the benchmark outlives.
func upForBench(b *testing.B, cfg Config, port uint32) (*harness, *Conn) {
	b.Helper()
	h := start(b, cfg)
	h.peer.up(port)
	c := h.conn()
	recv[*apf.KeepaliveOptionsRequest](h.peer)
	h.peer.conn.SetDeadline(time.Time{})
	return h, c
}

// BenchmarkKeepalive measures one KEEPALIVE_REQUEST and its reply.
func BenchmarkKeepalive(b *testing.B) {
	for _, v := range []struct {
		name string
		tls  bool
	}{{"TCP", false}, {"TLS", true}} {
		b.Run(v.name, func(b *testing.B) {
			cfg := Config{ForwardSettle: time.Millisecond}
			if v.tls {
				cfg.TLS = TLSConfig(testCert(b), false)
			}
			h, _ := upForBench(b, cfg, 16992)
			req := (&apf.KeepaliveRequest{Cookie: 7}).Append(nil)
			reply := make([]byte, 5)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.peer.conn.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(h.peer.conn, reply); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChannelEcho measures bytes per second through one channel on
// loopback TCP without TLS: the server writes, the device echoes within
// the server's window, the server reads it back (SetBytes counts each byte
// once; it crosses the tunnel twice).
func BenchmarkChannelEcho(b *testing.B) {
	h, c := upForBench(b, Config{ForwardSettle: time.Millisecond}, 7)
	ch, id := dialPair(b, h, c, 7, echoWindow)
	h.peer.conn.SetDeadline(time.Time{})
	go echoDevice(h.peer.conn, id, c.cfg.Window)
	b.ReportAllocs()
	testutil.EchoThroughput(b, ch, 64<<10)
}

// echoWindow is the echo device's window: what it buffers at most.
const echoWindow = 1 << 20

// echoDevice echoes the CHANNEL_DATA it receives on channel id back to the
// server within the server's window (credit), granting its own window back
// as it echoes. It returns when the connection fails.
func echoDevice(conn net.Conn, id, credit uint32) {
	buf := make([]byte, 0, 256<<10)
	tmp := make([]byte, 64<<10)
	var pending, out []byte // pending is echoed from po on
	po := 0
	for {
		n, err := conn.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
		off := 0
		if po > 0 {
			pending, po = pending[:copy(pending, pending[po:])], 0
		}
		for {
			m, k, err := apf.Parse(buf[off:])
			if err != nil {
				break
			}
			off += k
			switch m := m.(type) {
			case *apf.ChannelData:
				pending = append(pending, m.Data...)
			case *apf.WindowAdjust:
				credit += m.BytesToAdd
			}
		}
		buf = buf[:copy(buf, buf[off:])]
		out = out[:0]
		echoed := po
		for po < len(pending) && credit > 0 {
			k := min(len(pending)-po, int(credit), 16<<10)
			out = apf.AppendChannelDataHeader(out, id, k)
			out = append(out, pending[po:po+k]...)
			po, credit = po+k, credit-uint32(k)
		}
		if po > echoed {
			out = (&apf.WindowAdjust{Recipient: id, BytesToAdd: uint32(po - echoed)}).Append(out)
		}
		if len(out) > 0 {
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
	}
}

// BenchmarkIdleTunnels opens 200 authenticated tunnels on loopback TCP and
// reports the heap, stack and goroutines they hold once idle. Both ends of
// each socket live in the process; the device ends hold no goroutine and
// a few hundred bytes each.
func BenchmarkIdleTunnels(b *testing.B) {
	const n = 200
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	cfg := Config{Auth: testAuth, ForwardSettle: time.Millisecond}
	ready := make(chan *Conn, n)
	cfg.OnReady = func(c *Conn) { ready <- c }
	served := make(chan struct{}, n)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { served <- struct{}{} }()
				c, err := Accept(context.Background(), raw, &cfg)
				if err == nil {
					c.Serve()
				}
			}()
		}
	}()
	var login []byte
	for _, m := range []apf.Message{&apf.ProtocolVersion{Major: 1, UUID: testUUID}, &apf.ServiceRequest{Service: apf.ServiceAuth},
		&apf.UserauthRequest{Username: testUser, Service: apf.ServicePfwd, Method: apf.MethodPassword, Password: []byte(testPass)},
		&apf.ServiceRequest{Service: apf.ServicePfwd}, &apf.TCPIPForward{WantReply: true, Address: "dev.example", Port: 16992}} {
		login = m.Append(login)
	}
	var heap, stack, goroutines float64
	for b.Loop() {
		b.StopTimer()
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		b.StartTimer()
		devices := make([]net.Conn, n)
		conns := make([]*Conn, n)
		for i := range devices {
			d, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := d.Write(login); err != nil {
				b.Fatal(err)
			}
			devices[i] = d
		}
		for i := range conns {
			conns[i] = <-ready
		}
		b.StopTimer()
		// Let the replies and KEEPALIVE_OPTIONS_REQUEST go out and the
		// writer goroutines exit.
		for range 100 {
			if runtime.NumGoroutine()-g0 <= n {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap += float64(after.HeapAlloc-before.HeapAlloc) / n
		stack += float64(after.StackInuse-before.StackInuse) / n
		goroutines += float64(runtime.NumGoroutine()-g0) / n
		for i := range conns {
			conns[i].CloseWithReason(ReasonShutdown, "")
			devices[i].Close()
		}
		for range n {
			<-served
		}
		b.StartTimer()
	}
	runs := float64(b.N)
	b.ReportMetric(heap/runs, "heapB/tunnel")
	b.ReportMetric(stack/runs, "stackB/tunnel")
	b.ReportMetric(goroutines/runs, "goroutines/tunnel")
}
