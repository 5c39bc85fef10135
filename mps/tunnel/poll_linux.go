//go:build linux

package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/internal/timeheap"
)

// Poller reads parked tunnels; see [PollerOptions].
type Poller struct {
	opt    PollerOptions
	shards []*shard
	next   atomic.Uint32
	wg     sync.WaitGroup
}

// NewPoller starts a poller's shards. Close stops them.
func NewPoller(opt PollerOptions) (*Poller, error) {
	p := &Poller{opt: opt.withDefaults()}
	for range p.opt.Shards {
		sh, err := newShard(p.opt)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.shards = append(p.shards, sh)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); sh.run() }()
	}
	return p, nil
}

// Close stops the shards. Tunnels still parked stay open but are no longer
// read: close them first.
func (p *Poller) Close() error {
	for _, sh := range p.shards {
		sh.stop()
	}
	p.wg.Wait()
	for _, sh := range p.shards {
		sh.ep.Close() // the epoll set's descriptor
		unix.Close(sh.evfd)
	}
	p.shards = nil
	return nil
}

// Parked returns the number of tunnels the poller reads now.
func (p *Poller) Parked() int {
	n := 0
	for _, sh := range p.shards {
		sh.mu.Lock()
		n += len(sh.conns)
		sh.mu.Unlock()
	}
	return n
}

// shard is one reading goroutine of a poller, with its epoll set and the
// idle deadlines of its tunnels.
type shard struct {
	opt  PollerOptions
	epfd int
	evfd int // an eventfd in the set (key 0) that wakes the shard
	// ep is epfd in the Go runtime's own poller, which the shard waits
	// in (see waitEvents); ep owns epfd.
	ep  *os.File
	erc syscall.RawConn

	mu      sync.Mutex
	conns   map[uint64]*Conn
	nextKey uint64
	due     timeheap.Heap[uint64] // idle deadlines, by parked.key
	closed  bool

	// hotUntil (unix ns) keeps the shard from coalescing while a tunnel
	// of it has console traffic; poke wakes a coalescing shard.
	hotUntil atomic.Int64
	wake     chan struct{}
}

func newShard(opt PollerOptions) (*shard, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("tunnel: epoll: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("tunnel: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("tunnel: epoll: %w", err)
	}
	sh := &shard{opt: opt, epfd: epfd, evfd: evfd, conns: make(map[uint64]*Conn), nextKey: 1, wake: make(chan struct{}, 1)}
	// Non-blocking, the epoll descriptor joins the runtime's poller
	// (an epoll set is readable while it has events).
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("tunnel: epoll: %w", err)
	}
	sh.ep = os.NewFile(uintptr(epfd), "epoll")
	if sh.erc, err = sh.ep.SyscallConn(); err != nil {
		sh.ep.Close()
		unix.Close(evfd)
		return nil, fmt.Errorf("tunnel: epoll: %w", err)
	}
	return sh, nil
}

// waitEvents waits up to wait milliseconds (-1: no limit) for events of
// the set. It does not block in epoll_wait itself: a goroutine blocked in
// a system call keeps its thread and its P until the runtime's monitor
// takes the P back, up to milliseconds later, and the goroutines the
// last turn made runnable (a console's relay, say) would wait that long.
// It asks without waiting, and otherwise parks in the runtime's poller,
// which watches the set's own descriptor, as any socket's goroutine does.
func (sh *shard) waitEvents(events []unix.EpollEvent, wait int) (int, error) {
	n, err := unix.EpollWait(sh.epfd, events, 0)
	if n > 0 || wait == 0 || (err != nil && err != unix.EINTR) {
		return n, err
	}
	dl := time.Time{}
	if wait > 0 {
		dl = time.Now().Add(time.Duration(wait) * time.Millisecond)
	}
	if err := sh.ep.SetReadDeadline(dl); err != nil {
		return 0, err
	}
	rerr := sh.erc.Read(func(fd uintptr) bool {
		n, err = unix.EpollWait(int(fd), events, 0)
		return n > 0 || (err != nil && err != unix.EINTR)
	})
	switch {
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		return 0, nil
	case rerr != nil:
		return 0, rerr
	}
	return n, err
}

// interrupt makes run's EpollWait return.
func (sh *shard) interrupt() {
	var one = [8]byte{1}
	unix.Write(sh.evfd, one[:])
}

func (sh *shard) stop() {
	sh.mu.Lock()
	sh.closed = true
	sh.mu.Unlock()
	sh.interrupt()
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// poke keeps the shard awake for a second: a console is using one of its
// tunnels.
func (sh *shard) poke() {
	now := time.Now().UnixNano()
	if sh.hotUntil.Load() < now+int64(500*time.Millisecond) {
		sh.hotUntil.Store(now + int64(time.Second))
	}
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// parked is a tunnel's membership of a shard.
type parked struct {
	sh    *shard
	key   uint64
	ended func(error)
	// mu is held by whoever reads the tunnel: the shard in a turn, Park
	// in the first one. gone is set once the tunnel ended, under mu, so
	// that no turn runs after ended is called.
	mu   sync.Mutex
	gone bool
	once sync.Once
}

func (p *Poller) pick() *shard {
	return p.shards[int(p.next.Add(1))%len(p.shards)]
}

// Park hands the authenticated tunnel to p: from now on p reads it, and
// ended is called, from a goroutine of its own, once the tunnel has ended
// and its writer stopped, with what Serve would have returned. Park
// returns an error, and the caller should Serve the tunnel instead, when
// the tunnel's transport is not a socket p can watch. Call Park or Serve,
// once.
func (c *Conn) Park(p *Poller, ended func(error)) error {
	s := c.stream.socket()
	if p == nil || len(p.shards) == 0 || s == nil || c.pc != &c.stream {
		return errNotParkable
	}
	var fd int
	if err := s.rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return errNotParkable
	}
	sh := p.pick()
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		return errNotParkable
	}
	pk := &parked{sh: sh, key: sh.nextKey, ended: ended}
	sh.nextKey++
	sh.conns[pk.key] = c
	due := c.lastRecv.Load() + int64(c.cfg.IdleTimeout)
	sh.due.Push(due, pk.key)
	first, _ := sh.due.Min()
	early := first.V == pk.key
	sh.mu.Unlock()

	s.polled.Store(true)
	s.stalled = func(err error) {
		c.closeWith(&CloseError{Reason: ReasonStalled, Err: err, Detail: "the device stopped reading"}, 0)
	}
	pk.mu.Lock()
	c.park.Store(pk)
	if c.isDone() {
		// Closed before it was parked: closeWith did not see pk.
		pk.mu.Unlock()
		c.parkEnded(pk)
		return nil
	}
	// What the handshake read past its last message waits in the
	// transport's buffers, where epoll does not see it: the first turn
	// takes it, then the socket joins the set.
	c.pollTurn()
	if !c.isDone() {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP}
		setKey(&ev, pk.key)
		if err := unix.EpollCtl(sh.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			pk.mu.Unlock()
			c.closeWith(&CloseError{Reason: ReasonNetworkError, Err: fmt.Errorf("tunnel: epoll: %w", err)}, 0)
			return nil
		}
	}
	pk.mu.Unlock()
	if early {
		sh.interrupt()
	}
	// A new tunnel's forwards are on their way: read them at once, so
	// that a console finds its ports as soon as the device is listed.
	sh.poke()
	return nil
}

// parkEnded runs, once, when a parked tunnel has ended: it waits for a
// turn in progress, takes the tunnel out of its shard, and calls ended
// after the writer stopped.
func (c *Conn) parkEnded(pk *parked) {
	pk.once.Do(func() {
		go func() {
			pk.mu.Lock()
			pk.gone = true
			pk.mu.Unlock()
			pk.sh.mu.Lock()
			delete(pk.sh.conns, pk.key)
			pk.sh.mu.Unlock()
			c.writer.Wait()
			c.stream.socket().waitDrained()
			pk.ended(c.err)
		}()
	})
}

// pollTurn reads what the socket has, without waiting, dispatches it and
// writes the replies. The caller holds the tunnel's parked.mu.
func (c *Conn) pollTurn() {
	c.stream.socket().drained = false
	start := c.bytesIn.Load()
	for c.bytesIn.Load()-start < maxTurnBytes {
		m, err := c.pc.readPacket(pollWait)
		if err == errAgain {
			break
		}
		if err != nil {
			c.readFailed(context.Background(), err)
			return
		}
		if err := c.dispatch(m); err != nil {
			return
		}
	}
	if c.replied {
		c.replied = false
		c.flushFromReader()
	}
}

// poke tells a parked tunnel's shard that a console uses the tunnel.
func (c *Conn) poke() {
	if pk := c.park.Load(); pk != nil {
		pk.sh.poke()
	}
}

// run is the shard's goroutine.
func (sh *shard) run() {
	events := make([]unix.EpollEvent, 128)
	var timer *time.Timer
	for {
		sh.mu.Lock()
		if sh.closed {
			sh.mu.Unlock()
			return
		}
		wait := -1
		if first, ok := sh.due.Min(); ok {
			until := time.Until(time.Unix(0, first.At))
			wait = int(max(0, (until+time.Millisecond-1)/time.Millisecond))
		}
		sh.mu.Unlock()
		n, err := sh.waitEvents(events, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return // the set is gone: the poller is closing
		}
		hot := false
		for i := range max(n, 0) {
			key := getKey(&events[i])
			if key == 0 {
				var b [8]byte
				unix.Read(sh.evfd, b[:])
				continue
			}
			sh.mu.Lock()
			c := sh.conns[key]
			sh.mu.Unlock()
			if c == nil {
				continue
			}
			pk := c.park.Load()
			pk.mu.Lock()
			if !pk.gone && !c.isDone() {
				c.pollTurn()
				hot = hot || c.hasChannels()
			}
			pk.mu.Unlock()
		}
		sh.expire(time.Now())
		if sh.opt.Coalesce > 0 && !hot && n < len(events) && time.Now().UnixNano() > sh.hotUntil.Load() {
			if timer == nil {
				timer = time.NewTimer(sh.opt.Coalesce)
			} else {
				timer.Reset(sh.opt.Coalesce)
			}
			select {
			case <-timer.C:
			case <-sh.wake:
				timer.Stop()
			}
		}
	}
}

// expire drops the tunnels that have been silent for their idle timeout,
// and moves the others' deadlines to their latest input.
func (sh *shard) expire(now time.Time) {
	t := now.UnixNano()
	for {
		sh.mu.Lock()
		key, ok := sh.due.PopDue(t)
		if !ok {
			sh.mu.Unlock()
			return
		}
		c := sh.conns[key]
		if c == nil {
			sh.mu.Unlock()
			continue
		}
		idle := int64(c.cfg.IdleTimeout)
		last := c.lastRecv.Load()
		if t-last < idle {
			sh.due.Push(last+idle, key)
			sh.mu.Unlock()
			continue
		}
		sh.mu.Unlock()
		// From a goroutine of its own: the DISCONNECT waits for a
		// writer that may be in a write.
		go c.closeWith(&CloseError{Reason: ReasonIdleTimeout, Detail: fmt.Sprintf("nothing received for %s", c.cfg.IdleTimeout)},
			apf.DisconnectConnectionTimedOut)
	}
}

// hasChannels reports whether the tunnel has channels open or opening.
func (c *Conn) hasChannels() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.channels) > 0
}

// The key of a tunnel in the epoll set is its parked.key, in the event's
// data (Fd and Pad).
func setKey(ev *unix.EpollEvent, key uint64) {
	ev.Fd, ev.Pad = int32(uint32(key)), int32(uint32(key>>32))
}

func getKey(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// sock is the accepted TCP connection of a tunnel that may be parked: in
// a goroutine's hands (before Park, and always for Serve) it is the
// connection itself; once polled it reads without waiting (errAgain when
// nothing is there) and writes without waiting, keeping what the socket
// does not take for a goroutine that writes it out under WriteTimeout.
// TLS runs over it: crypto/tls keeps a partial record across a temporary
// error, so a record cut between two turns is finished in the next.
type sock struct {
	net.Conn
	rc     syscall.RawConn
	polled atomic.Bool

	// drained is the reader's: the latest read took less than it asked
	// for, so the socket is empty until epoll says otherwise.
	drained bool
	rb      []byte
	rn      int
	rerr    error
	readFn  func(uintptr) bool

	// nowait is set while a shard's turn writes its replies (under the
	// tunnel's writing mutex), and for the last DISCONNECT.
	nowait atomic.Bool

	// rdl and wdl are set while a read or write deadline is: RawConn
	// honours them, so a polled read or a write that does not wait
	// clears them first.
	rdl, wdl atomic.Bool

	wmu      sync.Mutex
	wb       []byte
	wn       int
	werr     error
	writeFn  func(uintptr) bool
	over     []byte // accepted, not yet written; guarded by wmu
	draining bool   // a goroutine writes over; guarded by wmu
	drainWG  sync.WaitGroup
	timeout  time.Duration
	stalled  func(error) // set by Park; ends the tunnel
}

// newSock wraps raw when it is a socket; nil otherwise.
func newSock(raw net.Conn, writeTimeout time.Duration) *sock {
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sock{Conn: raw, rc: rc, timeout: writeTimeout}
	s.readFn = s.rawRead
	s.writeFn = s.rawWrite
	return s
}

func (s *sock) rawRead(fd uintptr) bool {
	for {
		s.rn, s.rerr = unix.Read(int(fd), s.rb)
		if s.rerr != unix.EINTR {
			return true
		}
	}
}

func (s *sock) rawWrite(fd uintptr) bool {
	for s.wn < len(s.wb) {
		n, err := unix.Write(int(fd), s.wb[s.wn:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			s.werr = err
			return true
		}
		s.wn += n
	}
	return true
}

func (s *sock) SetDeadline(t time.Time) error {
	s.rdl.Store(!t.IsZero())
	s.wdl.Store(!t.IsZero())
	return s.Conn.SetDeadline(t)
}

func (s *sock) SetReadDeadline(t time.Time) error {
	s.rdl.Store(!t.IsZero())
	return s.Conn.SetReadDeadline(t)
}

func (s *sock) SetWriteDeadline(t time.Time) error {
	s.wdl.Store(!t.IsZero())
	return s.Conn.SetWriteDeadline(t)
}

func (s *sock) Read(b []byte) (int, error) {
	if !s.polled.Load() {
		return s.Conn.Read(b)
	}
	if s.drained {
		return 0, errAgain
	}
	if s.rdl.Load() {
		s.SetReadDeadline(time.Time{})
	}
	s.rb = b
	err := s.rc.Read(s.readFn)
	s.rb = nil
	if err != nil {
		return 0, err
	}
	n, rerr := s.rn, s.rerr
	switch {
	case rerr == unix.EAGAIN:
		s.drained = true
		return 0, errAgain
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	if n < len(b) {
		s.drained = true
	}
	return n, nil
}

// Write writes b. Only a shard's turn writes without waiting (nowait);
// the writer goroutine waits for the socket as it does unparked, once
// what a turn left over is out, so that a device that does not read
// holds back the channels' writers (the queue's high-water mark) rather
// than growing the overflow.
func (s *sock) Write(b []byte) (int, error) {
	if !s.polled.Load() || !s.nowait.Load() {
		s.drainWG.Wait()
		return s.Conn.Write(b)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.draining {
		if len(s.over)+len(b) > hardCap {
			return 0, fmt.Errorf("tunnel: the device stopped reading: %w", os.ErrDeadlineExceeded)
		}
		s.over = append(s.over, b...)
		return len(b), nil
	}
	if s.wdl.Load() {
		// Left by the writer goroutine's last write.
		s.SetWriteDeadline(time.Time{})
	}
	s.wb, s.wn, s.werr = b, 0, nil
	err := s.rc.Write(s.writeFn)
	n, werr := s.wn, s.werr
	s.wb = nil
	switch {
	case err != nil:
		return n, err
	case werr == unix.EAGAIN:
		s.over = append(s.over[:0], b[n:]...)
		s.draining = true
		s.drainWG.Add(1)
		go s.drain()
		return len(b), nil
	case werr != nil:
		return n, os.NewSyscallError("write", werr)
	}
	return n, nil
}

// drain writes over out, waiting for the socket, until nothing is left.
func (s *sock) drain() {
	defer s.drainWG.Done()
	for {
		s.wmu.Lock()
		b := s.over
		s.over = nil
		if len(b) == 0 {
			s.draining = false
			s.wmu.Unlock()
			return
		}
		s.wmu.Unlock()
		s.SetWriteDeadline(time.Now().Add(s.timeout))
		if _, err := s.Conn.Write(b); err != nil {
			s.wmu.Lock()
			s.over = nil
			s.draining = false
			s.wmu.Unlock()
			if s.stalled != nil {
				s.stalled(err)
			}
			return
		}
	}
}

func (s *sock) waitDrained() { s.drainWG.Wait() }

// socket returns the sock under the transport, if it has one.
func (s *streamConn) socket() *sock {
	switch c := s.conn.(type) {
	case *sock:
		return c
	case *tls.Conn:
		sk, _ := c.NetConn().(*sock)
		return sk
	}
	return nil
}

// noWait reports whether the transport writes without waiting now (a
// shard's turn).
func (s *streamConn) noWait() bool {
	sk := s.socket()
	return sk != nil && sk.polled.Load() && sk.nowait.Load()
}

// setNoWait makes the transport's writes not wait, or wait again; the
// caller holds the tunnel's writing mutex.
func (c *Conn) setNoWait(on bool) {
	if c.pc != &c.stream {
		return
	}
	if sk := c.stream.socket(); sk != nil {
		sk.nowait.Store(on)
	}
}
