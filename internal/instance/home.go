package instance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/tunnel"
)

// Send devices home, and disconnect across the fleet.

// The pace of Send devices home, in tunnels closed per second. The
// default is gentle: each device closed reconnects to its primary with a
// full TLS handshake, and a reconnect storm is what the pacing avoids.
const (
	DefaultSendHomeRate = 20
	MaxSendHomeRate     = 500
)

// ErrNotInFleet is returned by fleet actions of an instance outside one.
var ErrNotInFleet = errors.New("this instance is not in a fleet (presence fleet invite / join)")

// sendHome is the one paced Send devices home in progress.
type sendHome struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	closed bool // the instance is shutting down
}

// Away returns the devices this instance holds whose home instance (the
// peer that held them until its link dropped) is up again.
func (in *Instance) Away() []fleet.Away {
	if in.peers == nil {
		return nil
	}
	return in.peers.Away()
}

// SendHome closes, rate per second (0 means DefaultSendHomeRate), the
// tunnels of the devices that are away from a home instance that is up
// again, so that AMT reconnects to its primary MPS. It returns how many
// it will close; a call while one is in progress replaces it. Whether
// real AMT then goes back to its first MPS entry is unconfirmed
// (fleet.md §1): a device that comes back here simply stays.
func (in *Instance) SendHome(rate float64) (int, error) {
	if in.peers == nil {
		return 0, ErrNotInFleet
	}
	if rate <= 0 {
		rate = DefaultSendHomeRate
	}
	rate = min(rate, MaxSendHomeRate)
	away := in.peers.Away()
	in.home.mu.Lock()
	defer in.home.mu.Unlock()
	if in.home.closed {
		return 0, errors.New("the instance is shutting down")
	}
	if in.home.cancel != nil {
		in.home.cancel()
		<-in.home.done
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	in.home.cancel, in.home.done = cancel, done
	in.log.Info("sending devices home", "devices", len(away), "per_second", rate)
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		defer close(done)
		defer cancel()
		in.sendHomePaced(ctx, away, time.Duration(float64(time.Second)/rate))
	}()
	return len(away), nil
}

// sendHomePaced closes one tunnel per gap, until the list or ctx or the
// instance ends.
func (in *Instance) sendHomePaced(ctx context.Context, away []fleet.Away, gap time.Duration) {
	t := time.NewTicker(gap)
	defer t.Stop()
	sent := 0
	for i, a := range away {
		if i > 0 {
			select {
			case <-ctx.Done():
				return
			case <-in.stop:
				return
			case <-t.C:
			}
		}
		detail := fmt.Sprintf("sent home to instance %s", a.Home.ID)
		if in.Server.CloseTunnel(a.GUID, a.Conn, tunnel.ReasonAdmin, detail) {
			sent++
		}
	}
	in.log.Info("devices sent home", "closed", sent, "listed", len(away))
}

// stopSendHome ends a Send devices home in progress (at shutdown).
func (in *Instance) stopSendHome() {
	in.home.mu.Lock()
	defer in.home.mu.Unlock()
	in.home.closed = true
	if in.home.cancel != nil {
		in.home.cancel()
	}
}

// Disconnect closes the tunnel of the device named name (GUID, host name
// or alias) for the administrator user, wherever in the fleet it is: here,
// or on the peer that holds it. It returns the device's GUID and the
// instance that held it.
func (in *Instance) Disconnect(ctx context.Context, name, user string) (guid, instance string, err error) {
	if d, ok := in.Server.Device(name); ok {
		if err := in.Server.Disconnect(d.UUID); err == nil {
			return d.UUID, in.cfg.InstanceID, nil
		}
	}
	if in.peers == nil {
		return "", "", fmt.Errorf("%w: %q", mps.ErrUnknownDevice, name)
	}
	if g, ok := in.Server.Alias(name); ok {
		name = g
	}
	o, found, err := in.atOwner(name, func(o fleet.Owner) error {
		return in.peers.Disconnect(ctx, o, fleet.Console{User: user})
	})
	switch {
	case !found:
		return "", "", fmt.Errorf("%w: %q", mps.ErrUnknownDevice, name)
	case err != nil:
		return "", "", err
	}
	in.log.Info("device on a peer disconnected by an administrator", "device", o.GUID, "instance", o.Instance, "user", user)
	return o.GUID, o.Instance, nil
}

// Disconnect closes a tunnel of this instance for an administrator on a
// peer.
func (l fleetLocal) Disconnect(guid string, c fleet.Console) error {
	d, ok := l.in.Server.Device(guid)
	if !ok || l.in.Server.Disconnect(d.UUID) != nil {
		return fmt.Errorf("%w: %s", fleet.ErrNotHere, guid)
	}
	l.in.log.Info("device disconnected by an administrator on a peer", "device", d.UUID, "user", c.User, "via", c.Via)
	return nil
}
