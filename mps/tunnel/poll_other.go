//go:build !linux

package tunnel

import (
	"errors"
	"net"
	"time"
)

// Poller reads parked tunnels; on this system there is none.
type Poller struct{}

// NewPoller fails with errors.ErrUnsupported: tunnels are served with a
// goroutine each here.
func NewPoller(PollerOptions) (*Poller, error) { return nil, errors.ErrUnsupported }

// Close does nothing.
func (p *Poller) Close() error { return nil }

// Parked returns 0.
func (p *Poller) Parked() int { return 0 }

// Park refuses: call Serve.
func (c *Conn) Park(*Poller, func(error)) error { return errNotParkable }

type parked struct{}

type sock struct{ net.Conn }

func newSock(net.Conn, time.Duration) *sock { return nil }

func (c *Conn) parkEnded(*parked) {}
func (c *Conn) poke()             {}

func (s *streamConn) noWait() bool { return false }
func (c *Conn) setNoWait(bool)     {}
