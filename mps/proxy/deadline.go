package proxy

import (
	"net"
	"os"
	"sync"
	"time"
)

// Consoles inside Presence rely on deadlines: the WS-Man client tells
// whether a kept-alive connection is still open by a read with a deadline
// in the past and ends a call by moving the deadline, and the SOL client
// bounds its handshake and writes with them. A connection to a device a
// fleet peer holds is an HTTP/2 stream without deadlines (mps/fleet's
// streamConn): without this adapter the first reuse of such a connection
// blocked its device's WS-Man queue for good. (The proxy's own relays need
// no deadlines, so the forwarded stream stays without them.)

// WithDeadlines returns c, or c behind an adapter that gives it deadlines
// if it does not support them.
func WithDeadlines(c net.Conn) net.Conn {
	if c.SetDeadline(time.Time{}) == nil {
		return c
	}
	return newDeadlineConn(c)
}

// readChunk is the largest read of the underlying connection.
const readChunk = 16 << 10

// deadlineConn adds deadlines to a connection without them. Reads come
// from a goroutine that reads the connection one chunk at a time, handing
// each over before it reads the next (so a device cannot fill memory), and
// ends when the connection is closed; a Read waits for a chunk or its
// deadline. A Write whose deadline passes closes the connection, the only
// way to end a write blocked on a peer that stopped reading.
type deadlineConn struct {
	net.Conn
	chunks     chan []byte   // the reader's chunks; closed when it stops
	readerDone chan struct{} // closed when the reader has returned
	done       chan struct{} // closed by Close
	closeOnce  sync.Once
	rerr       error // why the reader stopped; read after chunks is closed

	pending []byte // the rest of the last chunk (Read's alone)

	mu        sync.Mutex
	readDL    time.Time
	changed   chan struct{} // closed and replaced when readDL changes
	writeDL   time.Time
	writing   bool
	wtimer    *time.Timer
	wexpired  bool
	closedErr error
}

func newDeadlineConn(c net.Conn) *deadlineConn {
	d := &deadlineConn{Conn: c, chunks: make(chan []byte), readerDone: make(chan struct{}),
		done: make(chan struct{}), changed: make(chan struct{})}
	go d.read()
	return d
}

func (d *deadlineConn) read() {
	defer close(d.readerDone)
	defer close(d.chunks)
	for {
		b := make([]byte, readChunk)
		n, err := d.Conn.Read(b)
		if n > 0 {
			select {
			case d.chunks <- b[:n]:
			case <-d.done:
				d.rerr = net.ErrClosed
				return
			}
		}
		if err != nil {
			d.rerr = err
			return
		}
	}
}

// Read reads what the reader has, waiting until its deadline.
func (d *deadlineConn) Read(p []byte) (int, error) {
	for {
		if len(d.pending) > 0 {
			n := copy(p, d.pending)
			d.pending = d.pending[n:]
			return n, nil
		}
		d.mu.Lock()
		dl, changed := d.readDL, d.changed
		d.mu.Unlock()
		var (
			timer   *time.Timer
			expired <-chan time.Time
		)
		if !dl.IsZero() {
			wait := time.Until(dl)
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(wait)
			expired = timer.C
		}
		var (
			n   int
			err error
			got bool
		)
		select {
		case b, ok := <-d.chunks:
			if !ok {
				n, err, got = 0, d.rerr, true
			} else {
				d.pending = b
			}
		case <-expired:
			n, err, got = 0, os.ErrDeadlineExceeded, true
		case <-changed:
		case <-d.done:
			n, err, got = 0, net.ErrClosed, true
		}
		if timer != nil {
			timer.Stop()
		}
		if got {
			return n, err
		}
	}
}

// Write writes, closing the connection if the deadline passes first.
func (d *deadlineConn) Write(p []byte) (int, error) {
	d.mu.Lock()
	if !d.writeDL.IsZero() && !time.Now().Before(d.writeDL) {
		d.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	d.writing, d.wexpired = true, false
	d.armWriteLocked()
	d.mu.Unlock()
	n, err := d.Conn.Write(p)
	d.mu.Lock()
	d.writing = false
	if d.wtimer != nil {
		d.wtimer.Stop()
		d.wtimer = nil
	}
	expired := d.wexpired
	d.mu.Unlock()
	if err != nil && expired {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// armWriteLocked starts the timer of a write in flight.
func (d *deadlineConn) armWriteLocked() {
	if d.wtimer != nil {
		d.wtimer.Stop()
		d.wtimer = nil
	}
	if !d.writing || d.writeDL.IsZero() {
		return
	}
	d.wtimer = time.AfterFunc(time.Until(d.writeDL), func() {
		d.mu.Lock()
		d.wexpired = true
		d.mu.Unlock()
		d.Conn.Close()
	})
}

func (d *deadlineConn) SetDeadline(t time.Time) error {
	d.SetReadDeadline(t)
	return d.SetWriteDeadline(t)
}

func (d *deadlineConn) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	d.readDL = t
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
	return nil
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error {
	d.mu.Lock()
	d.writeDL = t
	d.armWriteLocked()
	d.mu.Unlock()
	return nil
}

// Close closes the connection and waits for the reader to end.
func (d *deadlineConn) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.closedErr = d.Conn.Close()
	})
	<-d.readerDone
	return d.closedErr
}
