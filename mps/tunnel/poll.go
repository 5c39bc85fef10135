package tunnel

import (
	"errors"
	"runtime"
	"time"
)

// A Poller reads idle tunnels without a goroutine each. Serve makes the
// calling goroutine a tunnel's reader, which parks in the runtime's network
// poller with its stack (8 KiB, grown in the TLS handshake) for as long as
// the tunnel lives; with tens of thousands of tunnels that do nothing but
// answer a keepalive every 30 s, those stacks are half the server's memory,
// and every keepalive wakes a goroutine on its own. A parked tunnel
// ([Conn.Park]) instead belongs to one of the poller's shards: a goroutine
// that waits in epoll for any of its tunnels' sockets, reads what is there
// without blocking, dispatches it and writes the replies in the same
// turn, and then sleeps [PollerOptions.Coalesce] while none of its tunnels
// has channels, so the keepalives of many tunnels are read in one wake-up.
// A tunnel with channels keeps its shard awake: console traffic is read as
// soon as it arrives.
//
// The idle timeout of a parked tunnel is a deadline in its shard's heap,
// looked at once per timeout rather than rearmed on every message.
//
// Pollers exist on Linux only; elsewhere NewPoller fails with
// errors.ErrUnsupported and the server serves each tunnel with a goroutine.
type PollerOptions struct {
	// Shards is the number of reading goroutines (default: half the
	// processors, at least 1).
	Shards int
	// Coalesce is how long a shard whose tunnels have no channels waits
	// after a turn before it reads again (default 20 ms; negative: never).
	// It delays a keepalive reply by at most that, far inside AMT's
	// keepalive timeout.
	Coalesce time.Duration
}

// DefaultCoalesce is PollerOptions.Coalesce's default.
const DefaultCoalesce = 20 * time.Millisecond

func (o PollerOptions) withDefaults() PollerOptions {
	if o.Shards <= 0 {
		o.Shards = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if o.Coalesce == 0 {
		o.Coalesce = DefaultCoalesce
	}
	return o
}

// errNotParkable is Park's answer for a tunnel whose transport is not a
// socket the poller can watch (an in-memory pipe in tests, a TLS listener
// that is not TCP).
var errNotParkable = errors.New("tunnel: this connection cannot be parked")

// maxTurnBytes is how much one tunnel may read in one turn of its shard
// before the shard moves on to its other ready tunnels (epoll reports the
// rest again).
const maxTurnBytes = 256 << 10

// pollWait is the wait with which readPacket reads what the socket has
// without waiting for more (a parked tunnel's turn).
const pollWait time.Duration = -2

// errAgain is a polled socket's answer when it has nothing to read. It is
// a temporary net.Error, so crypto/tls keeps a partial record and reads on
// in the next turn instead of failing the connection.
var errAgain error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tunnel: nothing to read now" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }
