package tunnel

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// memConn is an in-memory packetConn, the transport of tests that run
// under testing/synctest (which cannot contain real network I/O). Each
// write of its device end, memDevice, is a packet of whole messages (a
// message cut at its end is malformed); what the tunnel writes reaches the
// device as the chunks it wrote. Both directions are buffered, so neither
// side waits for the other until a buffer is full.
type memConn struct {
	lim    apf.Limits
	in     chan []byte   // packets from the device
	out    chan []byte   // what the tunnel wrote
	hangup chan struct{} // closed when the device closes its end
	closed chan struct{} // closed when the tunnel closes its end
	once   sync.Once
	rest   []byte // of the packet being read; the reader's
}

func newMemConn(lim apf.Limits) *memConn {
	return &memConn{lim: lim, in: make(chan []byte, 64), out: make(chan []byte, 256),
		hangup: make(chan struct{}), closed: make(chan struct{})}
}

func (m *memConn) readPacket(wait time.Duration) (apf.Message, error) {
	for len(m.rest) == 0 {
		p, err := m.packet(wait)
		if err != nil {
			return nil, err
		}
		m.rest = p
	}
	msg, n, err := m.lim.Parse(m.rest)
	if err == apf.ErrIncomplete {
		err = &apf.ParseError{Type: m.rest[0], Msg: "message cut at the end of a packet"}
	}
	if err != nil {
		m.rest = nil
		return nil, err
	}
	m.rest = m.rest[n:]
	return msg, nil
}

// packet returns the device's next packet, waiting as readPacket says.
func (m *memConn) packet(wait time.Duration) ([]byte, error) {
	select {
	case p := <-m.in:
		return p, nil
	case <-m.closed:
		return nil, net.ErrClosed
	default:
	}
	if wait < 0 {
		return nil, errWouldBlock
	}
	expired, stop := after(wait)
	defer stop()
	select {
	case p := <-m.in:
		return p, nil
	case <-m.hangup:
		select { // what the device sent before it hung up comes first
		case p := <-m.in:
			return p, nil
		default:
			return nil, io.EOF
		}
	case <-m.closed:
		return nil, net.ErrClosed
	case <-expired:
		return nil, os.ErrDeadlineExceeded
	}
}

func (m *memConn) writePacket(b []byte, timeout time.Duration) error {
	p := bytes.Clone(b) // the tunnel reuses b
	select {
	case m.out <- p:
		return nil
	case <-m.closed:
		return net.ErrClosed
	default:
	}
	expired, stop := after(timeout)
	defer stop()
	select {
	case m.out <- p:
		return nil
	case <-m.closed:
		return net.ErrClosed
	case <-expired:
		return os.ErrDeadlineExceeded
	}
}

func (m *memConn) Close() error {
	m.once.Do(func() { close(m.closed) })
	return nil
}

// after returns a channel that receives once d has passed, never for d of
// 0 or less, and the function that stops its timer.
func after(d time.Duration) (<-chan time.Time, func() bool) {
	if d <= 0 {
		return nil, func() bool { return false }
	}
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// memDevice is the device end of a memConn, a net.Conn for the peer.
type memDevice struct {
	m        *memConn
	rest     []byte // of the chunk being read
	once     sync.Once
	mu       sync.Mutex
	deadline time.Time // for Read; Write does not wait
}

func (d *memDevice) Read(p []byte) (int, error) {
	if len(d.rest) == 0 {
		d.mu.Lock()
		dl := d.deadline
		d.mu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			var stop func() bool
			expired, stop = after(max(time.Until(dl), 1))
			defer stop()
		}
		select {
		case d.rest = <-d.m.out:
		case <-d.m.closed:
			select { // what the tunnel wrote before it closed comes first
			case d.rest = <-d.m.out:
			default:
				return 0, io.EOF
			}
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, d.rest)
	d.rest = d.rest[n:]
	return n, nil
}

func (d *memDevice) Write(p []byte) (int, error) {
	select {
	case d.m.in <- bytes.Clone(p):
		return len(p), nil
	case <-d.m.closed:
		return 0, net.ErrClosed
	}
}

func (d *memDevice) Close() error {
	d.once.Do(func() { close(d.m.hangup) })
	return nil
}

func (d *memDevice) SetDeadline(t time.Time) error { return d.SetReadDeadline(t) }

func (d *memDevice) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	d.deadline = t
	d.mu.Unlock()
	return nil
}

func (d *memDevice) SetWriteDeadline(time.Time) error { return nil }
func (d *memDevice) LocalAddr() net.Addr              { return memAddr("device") }
func (d *memDevice) RemoteAddr() net.Addr             { return memAddr("tunnel") }

type memAddr string

func (a memAddr) Network() string { return "memory" }
func (a memAddr) String() string  { return string(a) }

// startMem is start over a memConn: the tunnel's handshake, then Serve, run
// in a goroutine of the caller's bubble, with the peer as its device.
func startMem(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := newHarness(t, cfg)
	c := newConn(&h.cfg, "device", memAddr("tunnel"))
	m := newMemConn(c.cfg.limits())
	c.pc = m
	go func() {
		if err := c.handshake(context.Background(), new(HandshakeFailure)); err != nil {
			h.run(nil, err)
			return
		}
		c.lastRecv.Store(time.Now().UnixNano())
		h.run(c, nil)
	}()
	d := &memDevice{m: m}
	t.Cleanup(func() { d.Close() })
	h.peer = &peer{t: t, conn: d}
	return h
}
