package tunnel

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// Channel states.
const (
	chOpening = iota
	chOpen
	chFailed
)

// Data chunking. A write is split into CHANNEL_DATA messages of at most
// maxChunk bytes, and a write of up to smallWrite bytes is never split by a
// lack of credit (it waits for enough; see window.reserve): AMT rejects an
// HTTP chunked body whose last few bytes arrive in a separate message
// (apf.md §10, mps #662).
const (
	maxChunk   = 32 << 10
	smallWrite = 1 << 10
)

// Channel is one APF channel to a device port, used as a [net.Conn]. Read
// returns [io.EOF] after the device closed the channel and its data has been
// read. APF has no half-close, so Close ends both directions. Its methods are
// safe for concurrent use; deadlines are supported.
type Channel struct {
	c    *Conn
	id   uint32 // our channel id, the recipient in the device's messages
	port uint32

	wmu sync.Mutex // serialises Write calls so their chunks stay in order

	mu        sync.Mutex // guards the fields below; cond waits on it
	cond      sync.Cond
	state     int
	openErr   error
	peer      uint32 // the device's id, the recipient in our messages
	send      window // what we may still send to the device
	recv      window // what the device may still send us
	rbuf      []byte // received, not yet read: rbuf[roff:]
	roff      int
	eof       bool // the device sent CHANNEL_CLOSE
	closeSent bool
	closed    bool // Close was called
	abandoned bool // Dial gave up before the device answered
	terr      error
	rdl, wdl  deadline

	in, out atomic.Uint64
}

var _ net.Conn = (*Channel)(nil)

func newChannel(c *Conn, id, port uint32) *Channel {
	ch := &Channel{c: c, id: id, port: port, recv: window{avail: c.cfg.Window, size: c.cfg.Window}}
	ch.cond.L = &ch.mu
	ch.rdl.ch, ch.wdl.ch = ch, ch
	return ch
}

// waitOpen waits for the device's answer to CHANNEL_OPEN.
func (ch *Channel) waitOpen(ctx context.Context) error {
	stop := context.AfterFunc(ctx, ch.broadcast)
	defer stop()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for ch.state == chOpening && ch.terr == nil && ctx.Err() == nil {
		ch.cond.Wait()
	}
	switch {
	case ch.state == chFailed:
		return ch.openErr
	case ch.terr != nil:
		return ch.terr
	case ch.state == chOpening:
		// Close it as soon as the device confirms (apf.md §4).
		ch.abandoned, ch.closed = true, true
		return ctx.Err()
	}
	return nil
}

func (ch *Channel) broadcast() {
	ch.mu.Lock()
	ch.cond.Broadcast()
	ch.mu.Unlock()
}

// onConfirm handles CHANNEL_OPEN_CONFIRMATION and reports whether the
// channel must be closed at once because Dial gave up.
func (ch *Channel) onConfirm(peer, size uint32) (closeNow bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.state != chOpening {
		return false
	}
	ch.state, ch.peer, ch.send = chOpen, peer, window{avail: size, size: size}
	ch.cond.Broadcast()
	if ch.abandoned {
		ch.closeSent = true
		return true
	}
	return false
}

func (ch *Channel) onOpenFailure(reason apf.OpenFailureReason) {
	// Free the slot before Dial learns of the failure, so a Dial that
	// follows at once is not refused for a channel that no longer exists.
	ch.c.removeChannel(ch.id)
	ch.mu.Lock()
	if ch.state == chOpening {
		ch.state = chFailed
		ch.openErr = &OpenError{Port: ch.port, Reason: reason}
		ch.cond.Broadcast()
	}
	ch.mu.Unlock()
}

// onWindowAdjust adds send credit; false means the credit would overflow.
func (ch *Channel) onWindowAdjust(n uint32) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.state != chOpen {
		return true
	}
	if !ch.send.add(n) {
		return false
	}
	ch.cond.Broadcast()
	return true
}

// onData buffers received data; false means the device overran the window.
// It copies p, which aliases the tunnel's read buffer.
func (ch *Channel) onData(p []byte) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.state != chOpen || ch.eof {
		return true // late data for a channel being torn down
	}
	if !ch.recv.take(uint32(len(p))) {
		return false
	}
	ch.in.Add(uint64(len(p)))
	if ch.closed {
		return true // nobody will read it
	}
	if ch.roff > 0 && ch.roff == len(ch.rbuf) {
		ch.rbuf, ch.roff = ch.rbuf[:0], 0
	} else if ch.roff > cap(ch.rbuf)/2 {
		n := copy(ch.rbuf, ch.rbuf[ch.roff:])
		ch.rbuf, ch.roff = ch.rbuf[:n], 0
	}
	ch.rbuf = append(ch.rbuf, p...)
	ch.cond.Broadcast()
	return true
}

// onClose handles the device's CHANNEL_CLOSE: answer it unless we already
// sent ours, and forget the channel.
func (ch *Channel) onClose() {
	ch.c.removeChannel(ch.id) // before readers see EOF; see onOpenFailure
	ch.mu.Lock()
	if ch.state == chOpening {
		ch.state = chFailed
		ch.openErr = &OpenError{Port: ch.port, Reason: apf.OpenConnectFailed}
	}
	ch.eof = true
	ch.recv.close()
	reply := !ch.closeSent && ch.state == chOpen
	ch.closeSent = true
	peer := ch.peer
	ch.cond.Broadcast()
	ch.mu.Unlock()
	if reply {
		ch.c.send(&apf.ChannelClose{Recipient: peer})
	}
}

// tunnelClosed fails the channel because its tunnel ended.
func (ch *Channel) tunnelClosed(err error) {
	ch.mu.Lock()
	ch.terr = err
	ch.cond.Broadcast()
	ch.mu.Unlock()
}

// Read reads data the device sent, granting the device more window once half
// of it has been consumed.
func (ch *Channel) Read(p []byte) (int, error) {
	ch.mu.Lock()
	for ch.roff == len(ch.rbuf) && !ch.eof && !ch.closed && ch.terr == nil && !ch.rdl.expired {
		ch.cond.Wait()
	}
	switch {
	case ch.closed:
		ch.mu.Unlock()
		return 0, net.ErrClosed
	case ch.roff < len(ch.rbuf):
	case ch.eof:
		ch.mu.Unlock()
		return 0, io.EOF
	case ch.terr != nil:
		err := ch.terr
		ch.mu.Unlock()
		return 0, err
	default:
		ch.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, ch.rbuf[ch.roff:])
	ch.roff += n
	if ch.roff == len(ch.rbuf) {
		ch.rbuf, ch.roff = ch.rbuf[:0], 0
	}
	adjust := ch.recv.consume(uint32(n))
	peer := ch.peer
	ch.mu.Unlock()
	if adjust > 0 {
		ch.c.send(&apf.WindowAdjust{Recipient: peer, BytesToAdd: adjust})
	}
	return n, nil
}

// Write sends p as CHANNEL_DATA within the device's window, blocking while
// the window is exhausted.
func (ch *Channel) Write(p []byte) (int, error) {
	ch.wmu.Lock()
	defer ch.wmu.Unlock()
	total := 0
	for len(p) > 0 {
		ch.mu.Lock()
		n := 0
		for {
			if err := ch.writeErr(); err != nil {
				ch.mu.Unlock()
				return total, err
			}
			if n = ch.send.reserve(min(len(p), maxChunk)); n > 0 {
				break
			}
			ch.cond.Wait()
		}
		peer := ch.peer
		ch.mu.Unlock()
		if err := ch.c.sendData(peer, p[:n]); err != nil {
			return total, err
		}
		ch.out.Add(uint64(n))
		total += n
		p = p[n:]
	}
	return total, nil
}

// writeErr returns why Write cannot proceed, or nil.
func (ch *Channel) writeErr() error {
	switch {
	case ch.closed:
		return net.ErrClosed
	case ch.terr != nil:
		return ch.terr
	case ch.eof:
		return ErrChannelClosed
	case ch.wdl.expired:
		return os.ErrDeadlineExceeded
	}
	return nil
}

// Close closes the channel, sending CHANNEL_CLOSE unless the device closed it
// first. It unblocks pending Read and Write calls.
func (ch *Channel) Close() error {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return net.ErrClosed
	}
	ch.closed = true
	send := ch.state == chOpen && !ch.closeSent && ch.terr == nil
	ch.closeSent = ch.closeSent || send
	forget := ch.eof
	peer := ch.peer
	ch.rbuf, ch.roff = nil, 0
	ch.rdl.stop()
	ch.wdl.stop()
	ch.cond.Broadcast()
	ch.mu.Unlock()
	if send {
		ch.c.send(&apf.ChannelClose{Recipient: peer})
	}
	if forget {
		ch.c.removeChannel(ch.id)
	}
	return nil
}

// Port returns the device port the channel is connected to.
func (ch *Channel) Port() uint32 { return ch.port }

// Tunnel returns the tunnel the channel belongs to.
func (ch *Channel) Tunnel() *Conn { return ch.c }

// BytesIn and BytesOut count payload bytes received from and sent to the
// device.
func (ch *Channel) BytesIn() uint64  { return ch.in.Load() }
func (ch *Channel) BytesOut() uint64 { return ch.out.Load() }

// LocalAddr returns the tunnel's local address.
func (ch *Channel) LocalAddr() net.Addr { return ch.c.local }

// RemoteAddr returns the address of the device port: its UUID and port.
func (ch *Channel) RemoteAddr() net.Addr { return Addr{UUID: ch.c.uuid, Port: ch.port} }

// SetDeadline sets the read and write deadlines.
func (ch *Channel) SetDeadline(t time.Time) error {
	ch.SetReadDeadline(t)
	return ch.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read calls.
func (ch *Channel) SetReadDeadline(t time.Time) error { ch.rdl.set(t); return nil }

// SetWriteDeadline sets the deadline for Write calls.
func (ch *Channel) SetWriteDeadline(t time.Time) error { ch.wdl.set(t); return nil }

// Addr is the address of a device port, reached through its tunnel.
type Addr struct {
	UUID apf.UUID
	Port uint32
}

// Network returns "amt".
func (Addr) Network() string { return "amt" }

func (a Addr) String() string { return a.UUID.String() + ":" + strconv.FormatUint(uint64(a.Port), 10) }

// deadline is a channel's read or write deadline. Its fields are guarded by
// the channel's mu; the timer wakes waiters when it expires.
type deadline struct {
	ch      *Channel
	timer   *time.Timer
	expired bool
	gen     uint64
}

func (d *deadline) set(t time.Time) {
	d.ch.mu.Lock()
	defer d.ch.mu.Unlock()
	d.stop()
	d.gen++
	d.expired = false
	switch {
	case t.IsZero():
	case !time.Now().Before(t):
		d.expired = true
	default:
		gen := d.gen
		d.timer = time.AfterFunc(time.Until(t), func() {
			d.ch.mu.Lock()
			if d.gen == gen {
				d.expired = true
				d.ch.cond.Broadcast()
			}
			d.ch.mu.Unlock()
		})
	}
	d.ch.cond.Broadcast()
}

// stop cancels the timer; the caller holds the channel's mu.
func (d *deadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
