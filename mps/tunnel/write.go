package tunnel

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"github.com/presence-mps/presence/mps/apf"
)

// Write queue bounds. Channel writers wait while more than highWater bytes
// are queued; control messages never wait, and a queue above hardCap means
// the device stopped reading: the tunnel is dropped.
const (
	highWater = 256 << 10
	hardCap   = 4 << 20
	maxPooled = 64 << 10
)

// writeNow writes one message synchronously (handshake only).
func (c *Conn) writeNow(m apf.Message) error {
	b := m.Append(nil)
	err := c.pc.writePacket(b, 0)
	c.bytesOut.Add(uint64(len(b)))
	return err
}

// send queues a control message and wakes the writer; it never waits.
func (c *Conn) send(m apf.Message) error {
	if err := c.queue(m); err != nil {
		return err
	}
	c.signalWriter()
	return nil
}

// reply queues a control message from the reader goroutine, which writes
// it itself before it next waits for input, together with every other
// reply to the same read (see Conn.next and flushFromReader).
func (c *Conn) reply(m apf.Message) error {
	if err := c.queue(m); err != nil {
		return err
	}
	c.replied = true
	return nil
}

// queue appends a control message to the write queue.
func (c *Conn) queue(m apf.Message) error {
	c.wmu.Lock()
	if c.isDone() {
		c.wmu.Unlock()
		return ErrClosed
	}
	c.pending = m.Append(c.buffer())
	over := len(c.pending) > hardCap
	c.wmu.Unlock()
	if over {
		return c.abort(&CloseError{Reason: ReasonStalled, Detail: "the device stopped reading"}, 0)
	}
	return nil
}

// sendData queues one CHANNEL_DATA, waiting while the queue is above the
// high-water mark.
func (c *Conn) sendData(recipient uint32, p []byte) error {
	c.wmu.Lock()
	for len(c.pending) > highWater && !c.isDone() {
		c.wcond.Wait()
	}
	if c.isDone() {
		c.wmu.Unlock()
		return c.err
	}
	c.pending = apf.AppendChannelDataHeader(c.buffer(), recipient, len(p))
	c.pending = append(c.pending, p...)
	c.wmu.Unlock()
	c.signalWriter()
	c.poke() // the answer is read at once, not after a coalescing pause
	return nil
}

// Write buffers are pooled, so an idle tunnel holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// buffer returns the queue to append to, taking a pooled buffer when the
// queue is empty. The caller holds wmu.
func (c *Conn) buffer() []byte {
	if c.pending == nil {
		c.pending = *bufPool.Get().(*[]byte)
	}
	return c.pending
}

// signalWriter makes sure a writer goroutine runs to drain the queue. The
// writer exits when the queue is empty, so an idle tunnel has only its
// reader goroutine; at most one writer runs at a time.
func (c *Conn) signalWriter() {
	c.wmu.Lock()
	if c.writerActive || c.isDone() {
		c.wmu.Unlock()
		return
	}
	c.writerActive = true
	c.writer.Add(1)
	c.wmu.Unlock()
	go c.writeLoop()
}

func (c *Conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// writeLoop is the tunnel's writer goroutine: it takes the whole queue and
// writes it in one call, so bursts of small messages share TLS records, and
// exits once the queue is empty.
func (c *Conn) writeLoop() {
	defer c.writer.Done()
	for {
		c.writing.Lock()
		for c.flushLocked() {
		}
		c.writing.Unlock()
		c.wmu.Lock()
		if len(c.pending) == 0 || c.isDone() {
			c.writerActive = false
			c.wmu.Unlock()
			return
		}
		c.wmu.Unlock()
	}
}

// inlineMax is the most the reader writes itself; more is left to the writer.
const inlineMax = 16 << 10

// flushFromReader writes the replies the reader queued, from the reader
// goroutine, when the writer is idle and the queue small: that saves waking
// the writer goroutine (a thread handoff) for each keepalive reply, which
// measured as most of an idle tunnel's CPU cost. A tiny write to a socket
// blocks only when the device has stopped reading, and then WriteTimeout
// ends the tunnel. Otherwise the writer goroutine is woken to do it.
func (c *Conn) flushFromReader() {
	c.wmu.Lock()
	small := len(c.pending) <= inlineMax
	c.wmu.Unlock()
	if !small || !c.writing.TryLock() {
		c.signalWriter()
		return
	}
	c.setNoWait(true)
	c.flushLocked()
	c.setNoWait(false)
	c.writing.Unlock()
}

// flushLocked writes the queue, if any, and reports whether it wrote
// something. The caller holds c.writing. A failed write ends the tunnel.
func (c *Conn) flushLocked() bool {
	c.wmu.Lock()
	buf := c.pending
	c.pending = nil
	c.wcond.Broadcast()
	c.wmu.Unlock()
	if buf == nil {
		return false
	}
	defer func() {
		if cap(buf) <= maxPooled {
			buf = buf[:0]
			bufPool.Put(&buf)
		}
	}()
	if c.isDone() {
		return false
	}
	if err := c.pc.writePacket(buf, c.cfg.WriteTimeout); err != nil {
		reason := ReasonNetworkError
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			reason = ReasonStalled
		case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
			reason = ReasonDeviceClosed
		}
		c.closeWith(&CloseError{Reason: reason, Err: err}, 0)
		return false
	}
	c.bytesOut.Add(uint64(len(buf)))
	return true
}
