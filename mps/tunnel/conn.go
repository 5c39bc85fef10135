package tunnel

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// finalDeadline bounds the DISCONNECT written as a tunnel closes.
const finalDeadline = time.Second

// Forward is a port the device announced with tcpip-forward.
type Forward struct {
	Port    uint32
	Address string // the address string AMT sent (usually its host name)
}

// Conn is one authenticated CIRA tunnel. Its methods are safe for concurrent
// use. The zero value is not usable; see [Accept].
//
// An idle tunnel is mostly this struct, so mind its size: with the 8-byte
// header the allocator adds, it must stay within the 768-byte size class
// (TestConnSize); small fields sit together so that little goes to padding.
type Conn struct {
	cfg    Config
	pc     packetConn // the transport: &stream, or an in-memory one in tests
	stream streamConn // the transport over the accepted connection (see Accept)
	local  net.Addr   // the accepted connection's, for Channel.LocalAddr

	// Set during the handshake; read-only afterwards.
	uuid        apf.UUID
	user        string
	version     apf.ProtocolVersion
	tlsVersion  uint16
	tlsCipher   uint16
	names       infoNames // Info's strings, made once
	remote      string
	connectedAt int64 // unix ns (a time.Time is 16 bytes more)

	// Owned by the reader goroutine. state is a byte and sits next to
	// replied (and ready, closed and writerActive sit together below) so
	// that padding does not push the struct out of its size class.
	state   uint8
	replied bool // replies queued by the reader, not yet flushed

	mu         sync.Mutex // guards the fields below
	forwards   []Forward
	channels   map[uint32]*Channel
	nextID     uint32
	nextOrigin uint32
	settle     *time.Timer
	kaInterval uint32 // from KEEPALIVE_OPTIONS_REPLY
	kaTimeout  uint32
	ready      bool
	closed     bool
	// writerActive is guarded by wmu, not mu: it sits here only to share
	// the bools' word.
	writerActive bool
	openedTotal  uint64

	writing sync.Mutex // held while taking the queue and writing it, so writes keep queue order
	wmu     sync.Mutex // guards pending and writerActive; wcond waits on it
	wcond   sync.Cond
	pending []byte         // from bufPool; nil while empty (writerActive is above)
	writer  sync.WaitGroup // the writer goroutine, while it runs

	done      chan struct{} // closed when the tunnel ends
	closeOnce sync.Once
	err       *CloseError // set before done is closed

	received                          // updated by the transport
	park       atomic.Pointer[parked] // set by Park
	lastKA     atomic.Int64
	bytesOut   atomic.Uint64
	keepalives atomic.Uint64
}

// newConn returns a tunnel to the device at remote, before its
// handshake; the caller sets pc.
func newConn(cfg *Config, remote string, local net.Addr) *Conn {
	c := &Conn{
		cfg:         cfg.withDefaults(),
		local:       local,
		remote:      remote,
		channels:    make(map[uint32]*Channel),
		done:        make(chan struct{}),
		connectedAt: time.Now().UnixNano(),
	}
	c.wcond.L = &c.wmu
	return c
}

// logAt logs with the tunnel's remote address and device UUID. The
// attributes are added per call rather than kept in a derived logger: a
// logger per tunnel costs memory on every idle tunnel, and logs are rare.
func (c *Conn) logAt(level slog.Level, msg string, args ...any) {
	l := c.cfg.Logger
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	args = append(args, "remote", c.remote)
	if !c.uuid.IsZero() {
		args = append(args, "device", c.uuid.String())
	}
	l.Log(ctx, level, msg, args...)
}

// Close ends the tunnel with [ReasonAdmin], sending DISCONNECT(BY_APPLICATION).
func (c *Conn) Close() error {
	c.CloseWithReason(ReasonAdmin, "")
	return nil
}

// CloseWithReason ends the tunnel, telling the device with a DISCONNECT
// (BY_APPLICATION). It is idempotent: only the first cause is kept. It does
// not wait for Serve to return.
func (c *Conn) CloseWithReason(r Reason, detail string) {
	c.closeWith(&CloseError{Reason: r, Detail: detail}, apf.DisconnectByApplication)
}

// closeWith records err as the cause, sends DISCONNECT(disc) unless disc is
// 0, closes the connection and fails every channel. Writes are bounded by a
// short deadline so a stalled device cannot hold the caller.
func (c *Conn) closeWith(err *CloseError, disc apf.DisconnectReason) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		if c.settle != nil {
			c.settle.Stop()
		}
		chans := c.channels
		c.channels = nil
		c.mu.Unlock()

		c.wmu.Lock()
		c.err = err
		close(c.done)
		c.wcond.Broadcast()
		c.wmu.Unlock()

		if disc != 0 {
			c.setNoWait(true) // a parked tunnel's last words never wait
			c.pc.writePacket((&apf.Disconnect{Reason: disc}).Append(nil), finalDeadline)
		}
		c.pc.Close()
		if pk := c.park.Load(); pk != nil {
			c.parkEnded(pk)
		}
		for _, ch := range chans {
			ch.tunnelClosed(err)
		}
		level := slog.LevelInfo
		if err.Reason == ReasonShutdown {
			level = slog.LevelDebug
		}
		c.logAt(level, "tunnel closed", "reason", err.Reason.String(), "err", err)
	})
}

// Done is closed when the tunnel has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the tunnel ended, or nil while it is up.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}
