package amtsim

import (
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// channel is one forwarded-tcpip channel the MPS opened, as a net.Conn for
// the service behind the port.
//
// Flow control (apf.md §4), kept independent of mps/tunnel on purpose:
//   - Sending: credit is what the MPS granted; Write sends at most that
//     much and waits for CHANNEL_WINDOW_ADJUST for the rest.
//   - Receiving: avail is what the MPS may still send. Data beyond it is a
//     protocol error. Bytes the service has read (unacked) are granted
//     back with WINDOW_ADJUST once they reach half the window, so
//     avail + buffered + unacked == the window at all times.
type channel struct {
	c      *conn
	id     uint32 // ours
	rid    uint32 // the MPS's: the recipient of everything we send
	local  addr
	remote addr

	// mu guards the fields below and is held while this channel's
	// messages are written, so DATA never follows our CLOSE. cond is
	// signalled on every change a blocked Read or Write waits for.
	mu      sync.Mutex
	cond    sync.Cond
	credit  uint32 // bytes we may still send
	avail   uint32 // bytes the MPS may still send
	unacked uint32 // bytes read but not yet granted back
	buf     []byte // received, unread: buf[off:]; allocated on first data
	off     int

	closeSent   bool  // we sent CHANNEL_CLOSE
	closeRecv   bool  // the MPS sent CHANNEL_CLOSE
	localClosed bool  // Close was called
	dead        error // the tunnel ended
	rdl, wdl    deadline
}

var _ net.Conn = (*channel)(nil)

func newChannel(c *conn, id uint32, m *apf.ChannelOpen) *channel {
	ch := &channel{
		c:      c,
		id:     id,
		rid:    m.Sender,
		local:  addr{c.cfg.Hostname, m.ConnectedPort},
		remote: addr{m.OriginatorAddress, m.OriginatorPort},
		credit: m.Window,
		avail:  c.cfg.Window,
	}
	ch.cond.L = &ch.mu
	return ch
}

// deliver queues data from the MPS (reader goroutine).
func (ch *channel) deliver(data []byte) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if uint64(len(data)) > uint64(ch.avail) {
		return fmt.Errorf("%w: the MPS sent %d bytes on channel %d with %d left in the window", ErrProtocol, len(data), ch.id, ch.avail)
	}
	ch.avail -= uint32(len(data))
	if ch.localClosed || ch.closeSent {
		return nil // nobody reads any more
	}
	if ch.off > 0 && len(ch.buf)+len(data) > cap(ch.buf) {
		ch.buf = ch.buf[:copy(ch.buf, ch.buf[ch.off:])]
		ch.off = 0
	}
	ch.buf = append(ch.buf, data...)
	ch.cond.Broadcast()
	return nil
}

// adjust adds send credit (reader goroutine).
func (ch *channel) adjust(n uint32) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if uint64(ch.credit)+uint64(n) > math.MaxUint32 {
		return fmt.Errorf("%w: WINDOW_ADJUST overflows the window of channel %d", ErrProtocol, ch.id)
	}
	ch.credit += n
	ch.cond.Broadcast()
	return nil
}

// remoteClose handles the MPS's CHANNEL_CLOSE (reader goroutine): it
// answers once, unless we closed first, and frees the slot.
func (ch *channel) remoteClose() {
	ch.mu.Lock()
	ch.closeRecv = true
	if !ch.closeSent {
		ch.closeSent = true
		ch.c.send(&apf.ChannelClose{Recipient: ch.rid})
	}
	ch.cond.Broadcast()
	ch.mu.Unlock()
	ch.c.forget(ch.id)
}

// shutdown fails pending and future I/O because the tunnel ended.
func (ch *channel) shutdown() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.dead = errTunnelClosed
	ch.cond.Broadcast()
}

// Read reads data the MPS sent, and grants window back as it goes.
func (ch *channel) Read(p []byte) (int, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for {
		if ch.localClosed {
			return 0, net.ErrClosed
		}
		if ch.off < len(ch.buf) {
			break
		}
		switch {
		case ch.closeRecv:
			return 0, io.EOF
		case ch.dead != nil:
			return 0, ch.dead
		case ch.rdl.passed():
			return 0, os.ErrDeadlineExceeded
		case len(p) == 0:
			return 0, nil
		}
		ch.cond.Wait()
	}
	n := copy(p, ch.buf[ch.off:])
	ch.off += n
	if ch.off == len(ch.buf) {
		ch.buf, ch.off = ch.buf[:0], 0
	}
	ch.unacked += uint32(n)
	if ch.unacked >= max(ch.c.cfg.Window/2, 1) && !ch.closeSent && ch.dead == nil {
		ch.c.send(&apf.WindowAdjust{Recipient: ch.rid, BytesToAdd: ch.unacked})
		ch.avail += ch.unacked
		ch.unacked = 0
	}
	return n, nil
}

// Write sends p, never more than the MPS's credit: it blocks until
// WINDOW_ADJUST grants the rest.
func (ch *channel) Write(p []byte) (int, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for {
			if err := ch.writeErr(); err != nil {
				return n, err
			}
			if ch.credit > 0 {
				break
			}
			ch.cond.Wait()
		}
		k := min(len(p), int(min(ch.credit, maxSendChunk)))
		if err := ch.c.sendData(ch.rid, p[:k]); err != nil {
			return n, err
		}
		ch.credit -= uint32(k)
		n += k
		p = p[k:]
	}
	return n, nil
}

func (ch *channel) writeErr() error {
	switch {
	case ch.localClosed:
		return net.ErrClosed
	case ch.closeSent || ch.closeRecv:
		return io.ErrClosedPipe
	case ch.dead != nil:
		return ch.dead
	case ch.wdl.passed():
		return os.ErrDeadlineExceeded
	}
	return nil
}

// Close sends CHANNEL_CLOSE unless one was exchanged already. The slot is
// freed when the MPS's CHANNEL_CLOSE arrives, as in AMT.
func (ch *channel) Close() error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.localClosed {
		return nil
	}
	ch.localClosed = true
	ch.rdl.stop()
	ch.wdl.stop()
	if !ch.closeSent && ch.dead == nil {
		ch.closeSent = true
		ch.c.send(&apf.ChannelClose{Recipient: ch.rid})
	}
	ch.cond.Broadcast()
	return nil
}

func (ch *channel) LocalAddr() net.Addr  { return ch.local }
func (ch *channel) RemoteAddr() net.Addr { return ch.remote }

func (ch *channel) SetDeadline(t time.Time) error {
	ch.SetReadDeadline(t)
	return ch.SetWriteDeadline(t)
}

func (ch *channel) SetReadDeadline(t time.Time) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.rdl.set(t, ch.wake)
	return nil
}

func (ch *channel) SetWriteDeadline(t time.Time) error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.wdl.set(t, ch.wake)
	return nil
}

// wake is a deadline timer's callback.
func (ch *channel) wake() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.cond.Broadcast()
}

// deadline is a read or write deadline; guarded by the channel's mu.
// net/http relies on a past read deadline unblocking a pending Read.
type deadline struct {
	t     time.Time
	timer *time.Timer
}

func (d *deadline) passed() bool { return !d.t.IsZero() && !time.Now().Before(d.t) }

func (d *deadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// set arms the deadline; wake runs when it passes (at once if it has, in a
// goroutine since the caller holds the lock).
func (d *deadline) set(t time.Time, wake func()) {
	d.stop()
	d.t = t
	if t.IsZero() {
		return
	}
	d.timer = time.AfterFunc(max(time.Until(t), 0), wake)
}

// addr is a channel endpoint.
type addr struct {
	host string
	port uint32
}

func (a addr) Network() string { return "apf" }
func (a addr) String() string {
	return net.JoinHostPort(a.host, strconv.FormatUint(uint64(a.port), 10))
}

// listener yields the channels of one port to an http.Server.
type listener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  addr
}

var _ net.Listener = (*listener)(nil)

func newListener(a addr, backlog int) *listener {
	return &listener{conns: make(chan net.Conn, backlog), done: make(chan struct{}), addr: a}
}

// push queues a channel for Accept without blocking; false if the listener
// is closed or full.
func (l *listener) push(c net.Conn) bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.conns <- c:
		return true
	default:
		return false
	}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }
