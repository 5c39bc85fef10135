package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// smallReadBuf is the read buffer of an idle tunnel.
const smallReadBuf = 512

// readFailed ends the tunnel after readMsg failed.
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

// readMsg returns the next message. Its byte slices alias the read buffer
// and are valid until the next call.
func (c *Conn) readMsg() (apf.Message, error) {
	for {
		if c.rstart < c.rend {
			m, n, err := c.lim.Parse(c.rbuf[c.rstart:c.rend])
			if err == nil {
				c.rstart += n
				return m, nil
			}
			if err != apf.ErrIncomplete {
				return nil, err
			}
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// maxMessage is the largest message the limits allow: a udp-send-to with
// two maximal strings and maximal data.
func (c *Conn) maxMessage() int {
	return int(c.lim.MaxData) + 4*int(c.lim.MaxString) + 64
}

// fill reads more bytes into rbuf, compacting or growing it as needed.
func (c *Conn) fill() error {
	if c.rstart == c.rend {
		c.rstart, c.rend = 0, 0
		if len(c.rbuf) > smallReadBuf && c.lastRead < smallReadBuf && c.state >= stPfwdService {
			// Drop a big buffer once drained so idle tunnels stay small.
			c.rbuf = make([]byte, smallReadBuf)
		}
	}
	if c.rend == len(c.rbuf) {
		if c.rstart > 0 {
			c.rend = copy(c.rbuf, c.rbuf[c.rstart:c.rend])
			c.rstart = 0
		} else {
			if len(c.rbuf) >= c.maxMessage() {
				return &apf.ParseError{Type: c.rbuf[0], Msg: "message exceeds the size limit"}
			}
			nb := make([]byte, min(2*len(c.rbuf)+int(c.lim.MaxString), c.maxMessage()))
			c.rend = copy(nb, c.rbuf[:c.rend])
			c.rbuf = nb
		}
	}
	if c.state >= stPfwdService { // authenticated: the idle timeout applies
		if c.replied {
			c.replied = false
			c.flushFromReader()
		}
		if err := c.conn.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout)); err != nil {
			return err
		}
	}
	n, err := c.conn.Read(c.rbuf[c.rend:])
	c.lastRead = n
	if n > 0 {
		c.rend += n
		c.bytesIn.Add(uint64(n))
		c.lastRecv.Store(time.Now().UnixNano())
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Serve runs the tunnel until it ends and returns why, as a [*CloseError].
// The calling goroutine becomes the tunnel's reader. Serve returns only
// after the writer goroutine, if one runs, has stopped too.
func (c *Conn) Serve() error {
	for {
		m, err := c.readMsg()
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
