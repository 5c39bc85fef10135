package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// dispatch handles one message after authentication: keepalives and
// DISCONNECT in any state, the rest of the setup (handshake.go), and the
// channel messages, which it routes through the channel table. It never
// blocks on a consumer. A non-nil error means the tunnel has been closed.
func (c *Conn) dispatch(m apf.Message) error {
	switch m := m.(type) {
	case *apf.KeepaliveRequest:
		c.keepalives.Add(1)
		c.lastKA.Store(time.Now().UnixNano())
		return c.reply(&apf.KeepaliveReply{Cookie: m.Cookie})
	case *apf.KeepaliveReply:
		return nil // we send no requests; a stray reply is harmless
	case *apf.KeepaliveOptionsReply:
		c.mu.Lock()
		c.kaInterval, c.kaTimeout = m.Interval, m.Timeout
		c.mu.Unlock()
		return nil
	case *apf.Disconnect:
		return c.abort(&CloseError{Reason: ReasonDisconnect, Disconnect: m.Reason,
			Detail: "device sent DISCONNECT: " + m.Reason.String()}, 0)
	case *apf.ServiceRequest:
		return c.pfwdService(m)
	}
	if c.state != stForwarding {
		return c.unexpected(m)
	}
	switch m := m.(type) {
	case *apf.TCPIPForward:
		return c.forward(m)
	case *apf.UDPSendTo:
		return nil // no anchor answers it (apf.md §2.5)
	case *apf.GlobalRequest:
		c.logAt(slog.LevelDebug, "unknown global request", "name", m.Name)
		if m.WantReply {
			return c.reply(&apf.RequestFailure{})
		}
		return nil
	case *apf.ChannelOpen:
		// AMT-initiated channels are not offered by an MPS: refuse politely.
		reason := apf.OpenAdministrativelyProhibited
		if m.ChannelType != apf.ChannelForwardedTCPIP && m.ChannelType != apf.ChannelDirectTCPIP {
			reason = apf.OpenUnknownChannelType
		}
		return c.reply(&apf.ChannelOpenFailure{Recipient: m.Sender, Reason: reason})
	case *apf.ChannelOpenConfirmation:
		return c.onConfirm(m)
	case *apf.ChannelOpenFailure:
		if ch := c.channel(m.Recipient); ch != nil {
			ch.onOpenFailure(m.Reason)
		}
		return nil
	case *apf.WindowAdjust:
		if ch := c.channel(m.Recipient); ch != nil && !ch.onWindowAdjust(m.BytesToAdd) {
			return c.abort(&CloseError{Reason: ReasonProtocolError, Detail: "window adjust overflows the send window"}, apf.DisconnectProtocolError)
		}
		return nil
	case *apf.ChannelData:
		if ch := c.channel(m.Recipient); ch != nil && !ch.onData(m.Data) {
			return c.abort(&CloseError{Reason: ReasonProtocolError,
				Detail: fmt.Sprintf("device overran the window of channel %d", m.Recipient)}, apf.DisconnectProtocolError)
		}
		return nil
	case *apf.ChannelClose:
		if ch := c.channel(m.Recipient); ch != nil {
			ch.onClose()
		}
		return nil
	}
	return c.unexpected(m)
}

// channel returns the channel with our id, or nil.
func (c *Conn) channel(id uint32) *Channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.channels[id]
}

func (c *Conn) removeChannel(id uint32) {
	c.mu.Lock()
	delete(c.channels, id)
	c.mu.Unlock()
}

// onConfirm completes a Dial.
func (c *Conn) onConfirm(m *apf.ChannelOpenConfirmation) error {
	ch := c.channel(m.Recipient)
	if ch == nil {
		return nil // a channel already given up; nothing to do
	}
	if closeNow := ch.onConfirm(m.Sender, m.Window); closeNow {
		return c.send(&apf.ChannelClose{Recipient: m.Sender})
	}
	return nil
}

// maxReadyWait bounds how long Dial waits for a new tunnel's forwards to
// settle: ForwardSettle after the last one, unless the device never asks
// for port forwarding at all.
const maxReadyWait = 5 * time.Second

// awaitForward waits until port is announced, the tunnel is ready (its
// forwards have settled) or closed, maxReadyWait has passed, or ctx ends
// (its error). It polls: it runs only for a Dial in a tunnel's first
// moments, and a channel to wait on would push every idle tunnel's struct
// out of its size class (TestConnSize).
func (c *Conn) awaitForward(ctx context.Context, port uint32) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	limit := time.NewTimer(maxReadyWait)
	defer limit.Stop()
	for {
		c.mu.Lock()
		settled := c.ready || c.closed || c.forwardIndex(port) >= 0
		c.mu.Unlock()
		if settled {
			return nil
		}
		select {
		case <-tick.C:
		case <-limit.C:
			return nil
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Dial opens a channel to an announced port of the device and waits for the
// device to confirm it. On a tunnel whose forwards have not settled yet
// (the device has just authenticated) it first waits for them. It fails
// with [ErrPortNotAnnounced], [ErrTooManyChannels], an [*OpenError] when
// the device refuses, ctx's error, or the tunnel's [*CloseError].
func (c *Conn) Dial(ctx context.Context, port uint32) (*Channel, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, c.Err()
	}
	i := c.forwardIndex(port)
	if i < 0 && !c.ready {
		// The port may be on its way: AMT announces its ports just
		// after it authenticates, and the device is listed from then
		// on, so a console (or an enrolment) that comes at once would
		// be refused for being a few milliseconds early.
		c.mu.Unlock()
		if err := c.awaitForward(ctx, port); err != nil {
			return nil, err
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, c.Err()
		}
		i = c.forwardIndex(port)
	}
	if i < 0 {
		c.mu.Unlock()
		return nil, ErrPortNotAnnounced
	}
	if len(c.channels) >= c.cfg.MaxChannels {
		c.mu.Unlock()
		return nil, ErrTooManyChannels
	}
	addr := c.forwards[i].Address
	c.nextID++
	id := c.nextID
	c.nextOrigin++
	origin := 1024 + c.nextOrigin%30000
	ch := newChannel(c, id, port)
	c.channels[id] = ch
	c.openedTotal++
	c.mu.Unlock()

	err := c.send(&apf.ChannelOpen{ChannelType: apf.ChannelForwardedTCPIP, Sender: id, Window: c.cfg.Window,
		MaxPacket: 0xFFFFFFFF, ConnectedAddress: addr, ConnectedPort: port,
		OriginatorAddress: "127.0.0.1", OriginatorPort: origin})
	if err != nil {
		c.removeChannel(id)
		return nil, c.Err()
	}
	c.poke() // a parked tunnel's shard reads the confirmation at once
	if err := ch.waitOpen(ctx); err != nil {
		return nil, err
	}
	return ch, nil
}
