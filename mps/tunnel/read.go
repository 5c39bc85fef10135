package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// packetConn is the transport a tunnel's protocol runs on: whole APF
// messages in, encoded messages out, as x/crypto/ssh's mux runs on its
// packetConn. The handshake, the dispatch and the writer know nothing of
// TLS or sockets; [streamConn] is the transport over a network connection,
// and tests drive a tunnel through an in-memory one (mempipe_test.go),
// under testing/synctest where time matters.
//
// Only the reader goroutine calls readPacket. writePacket is called by one
// goroutine at a time (the holder of Conn.writing), except for the last
// DISCONNECT that closeWith writes; Close may be called at any time.
type packetConn interface {
	// readPacket returns the next message from the device. The message and
	// its byte slices alias the transport's buffer and are valid until the
	// next call. wait is how long it may wait for input: noWait returns
	// errWouldBlock instead of waiting; 0 waits with no limit of its own
	// (Accept's handshake deadline bounds it); a positive wait bounds each
	// wait for more input, failing with os.ErrDeadlineExceeded, and marks
	// an authenticated tunnel, whose buffer is kept small when idle. A
	// malformed message is a *apf.ParseError, an HTTP request where the
	// first message belongs errHTTPProbe, and the device's close io.EOF.
	readPacket(wait time.Duration) (apf.Message, error)
	// writePacket writes b, whole encoded messages (or the answer to an
	// HTTP probe), failing with os.ErrDeadlineExceeded if that takes
	// longer than timeout (0: no limit of its own).
	writePacket(b []byte, timeout time.Duration) error
	// Close closes the transport at once, without a TLS close_notify,
	// and unblocks readPacket and writePacket.
	Close() error
}

// noWait is the wait with which readPacket returns only a message that is
// already buffered.
const noWait time.Duration = -1

var (
	// errWouldBlock is readPacket's answer to noWait when no whole message
	// is buffered.
	errWouldBlock = errors.New("tunnel: no whole message buffered")
	// errHTTPProbe is readPacket's answer to a first message that is an
	// HTTP request (a browser or a scanner probing the CIRA port).
	errHTTPProbe = errors.New("tunnel: HTTP request on the CIRA port")
)

// smallReadBuf is the read buffer of an idle tunnel.
const smallReadBuf = 512

// received counts what a tunnel's transport read. The transport updates
// it as bytes arrive (not as messages complete); Info reports it.
type received struct {
	lastRecv atomic.Int64 // unix nanoseconds of the latest input
	bytesIn  atomic.Uint64
}

// streamConn is the packetConn over a network connection. APF has no outer
// length, so it accumulates bytes and parses each message once it is whole
// (apf.md §1). A Conn holds its streamConn by value, so a tunnel stays one
// allocation; the fields are the reader goroutine's.
type streamConn struct {
	conn         net.Conn // TLS over the accepted socket, or the socket itself without Config.TLS
	recv         *received
	lim          apf.Limits
	rbuf         []byte
	rstart, rend int
	lastRead     int  // bytes returned by the latest Read
	parsed       bool // a message has been returned: an HTTP probe comes first or never
}

func (s *streamConn) readPacket(wait time.Duration) (apf.Message, error) {
	for {
		if s.rstart < s.rend {
			m, n, err := s.lim.Parse(s.rbuf[s.rstart:s.rend])
			if err == nil {
				s.rstart += n
				s.parsed = true
				return m, nil
			}
			if err != apf.ErrIncomplete {
				if !s.parsed && s.rend-s.rstart >= 4 && isHTTP(s.rbuf[s.rstart:s.rend]) {
					return nil, errHTTPProbe
				}
				return nil, err
			}
		}
		if wait < 0 && wait != pollWait {
			return nil, errWouldBlock
		}
		if err := s.fill(wait); err != nil {
			return nil, err
		}
	}
}

func isHTTP(b []byte) bool {
	return bytes.HasPrefix(b, []byte("GET ")) || bytes.HasPrefix(b, []byte("HEAD")) || bytes.HasPrefix(b, []byte("POST"))
}

// maxMessage is the largest message the limits allow: a udp-send-to with
// two maximal strings and maximal data.
func (s *streamConn) maxMessage() int {
	return int(s.lim.MaxData) + 4*int(s.lim.MaxString) + 64
}

// fill reads more bytes into rbuf, compacting or growing it as needed.
func (s *streamConn) fill(wait time.Duration) error {
	if s.rstart == s.rend {
		s.rstart, s.rend = 0, 0
		if len(s.rbuf) > smallReadBuf && s.lastRead < smallReadBuf && (wait > 0 || wait == pollWait) {
			// Drop a big buffer once drained so idle tunnels stay small.
			s.rbuf = make([]byte, smallReadBuf)
		}
	}
	if s.rend == len(s.rbuf) {
		if s.rstart > 0 {
			s.rend = copy(s.rbuf, s.rbuf[s.rstart:s.rend])
			s.rstart = 0
		} else {
			if len(s.rbuf) >= s.maxMessage() {
				return &apf.ParseError{Type: s.rbuf[0], Msg: "message exceeds the size limit"}
			}
			nb := make([]byte, min(2*len(s.rbuf)+int(s.lim.MaxString), s.maxMessage()))
			s.rend = copy(nb, s.rbuf[:s.rend])
			s.rbuf = nb
		}
	}
	if wait > 0 {
		if err := s.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return err
		}
	}
	n, err := s.conn.Read(s.rbuf[s.rend:])
	s.lastRead = n
	if n > 0 {
		s.rend += n
		s.recv.bytesIn.Add(uint64(n))
		s.recv.lastRecv.Store(time.Now().UnixNano())
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (s *streamConn) writePacket(b []byte, timeout time.Duration) error {
	if timeout > 0 && !s.noWait() {
		// A shard's turn never waits to write (see sock).
		s.conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, err := s.conn.Write(b)
	return err
}

// Close closes the socket itself: a tunnel that ends tells the device with
// DISCONNECT, not with a TLS alert that could block on a stalled device.
func (s *streamConn) Close() error {
	if tc, ok := s.conn.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return s.conn.Close()
}

// readFailed ends the tunnel after readPacket failed.
func (c *Conn) readFailed(ctx context.Context, err error) error {
	var pe *apf.ParseError
	if errors.As(err, &pe) {
		return c.abort(&CloseError{Reason: ReasonProtocolError, Err: err}, apf.DisconnectProtocolError)
	}
	if c.state >= stPfwdService {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return c.abort(&CloseError{Reason: ReasonIdleTimeout,
				Detail: fmt.Sprintf("nothing received for %s", c.cfg.IdleTimeout)}, apf.DisconnectConnectionTimedOut)
		case errors.Is(err, io.EOF):
			return c.abort(&CloseError{Reason: ReasonDeviceClosed}, 0)
		case errors.Is(err, syscall.ECONNRESET):
			return c.abort(&CloseError{Reason: ReasonDeviceClosed, Detail: "connection reset"}, 0)
		}
		return c.abort(&CloseError{Reason: ReasonNetworkError, Err: err}, 0)
	}
	return c.abort(c.handshakeError(ctx, err, ReasonNetworkError), 0)
}

// Serve runs the tunnel until it ends and returns why, as a [*CloseError].
// The calling goroutine becomes the tunnel's reader. Serve returns only
// after the writer goroutine, if one runs, has stopped too.
func (c *Conn) Serve() error {
	for {
		m, err := c.next()
		if err != nil {
			c.readFailed(context.Background(), err)
			break
		}
		if err := c.dispatch(m); err != nil {
			break
		}
	}
	c.writer.Wait() // no writer starts once the tunnel is done
	return c.err
}

// next returns the next message of an authenticated tunnel, waiting at
// most IdleTimeout for each arrival of input. Before it waits, it writes
// the replies the reader queued (flushFromReader), so the replies to one
// read leave together and a keepalive costs no thread handoff.
func (c *Conn) next() (apf.Message, error) {
	if c.replied {
		if m, err := c.pc.readPacket(noWait); err != errWouldBlock {
			return m, err
		}
		c.replied = false
		c.flushFromReader()
	}
	return c.pc.readPacket(c.cfg.IdleTimeout)
}
