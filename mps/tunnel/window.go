package tunnel

import "math"

// window is one direction of a channel's flow control (apf.md §4, RFC 4254
// §5.2): the bytes its sender may still send. A channel has two: send, the
// credit the device granted us, and recv, what we granted the device, with
// the bytes the consumer read but we have not granted back yet.
//
// Unlike x/crypto/ssh's window, it has no lock or sync.Cond of its own: the
// channel's mu guards it and writers wait on the channel's cond, because a
// channel waits for credit, data, deadlines and close under one lock, and a
// second lock would only add a lock order.
type window struct {
	avail    uint32 // bytes that may still be sent
	size     uint32 // the window advertised when the channel opened
	consumed uint32 // recv: bytes read by the consumer, not yet granted back
	closed   bool   // recv: no more grants; the device closed the channel
}

// reserve takes up to n > 0 bytes of credit and returns how many it took;
// 0 means wait for add. It may grant less than asked, except that n up to
// smallWrite bytes is granted whole or not at all when the window can ever
// hold it: AMT rejects an HTTP chunked body whose last few bytes come in a
// message of their own (apf.md §10, mps #662).
func (w *window) reserve(n int) int {
	if w.closed || w.avail == 0 {
		return 0
	}
	if n <= smallWrite && uint64(w.avail) < uint64(n) && uint64(w.size) >= uint64(n) {
		return 0
	}
	n = int(min(uint64(n), uint64(w.avail)))
	w.avail -= uint32(n)
	return n
}

// add grants n more bytes (a WINDOW_ADJUST from the device). It reports
// false, a protocol error, if the credit would overflow a uint32.
func (w *window) add(n uint32) bool {
	if uint64(w.avail)+uint64(n) > math.MaxUint32 {
		return false
	}
	w.avail += n
	return true
}

// take spends n bytes the device sent. It reports false, a protocol error,
// if the device sent more than the window allowed.
func (w *window) take(n uint32) bool {
	if n > w.avail {
		return false
	}
	w.avail -= n
	return true
}

// consume counts n bytes the consumer read and returns the grant to send
// back in a WINDOW_ADJUST, which it adds to the window: nothing until half
// the window has been consumed, so that adjusts are not chatty, and
// nothing once the window is closed.
func (w *window) consume(n uint32) uint32 {
	w.consumed += n
	if w.closed || w.consumed < w.size/2 {
		return 0
	}
	grant := w.consumed
	w.consumed = 0
	w.avail += grant
	return grant
}

// close ends the grants: the device closed the channel, so more window is
// of no use to it. Data it sent before still counts against the window.
func (w *window) close() { w.closed = true }
