package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/sol"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
)

// PortRedirection is AMT's redirection port (SOL, IDE-R, KVM) in a tunnel.
const PortRedirection = 16994

// OpenSOL opens a Serial-over-LAN session to the device (a GUID, a host
// name or an alias; here or on a peer of the fleet) for Presence's own
// terminal: it dials the device's redirection port, logs in with the
// device's AMT account (the vault's rule, as the relay does) and starts
// SOL. The session is a console session of kind terminal, user user, in
// Sessions and History, from the open to Close (or until the device goes,
// or an admin ends it). Read returns what the host's console prints;
// Write sends keys. The error's sentence is [SOLSentence].
func (in *Instance) OpenSOL(ctx context.Context, device, user string) (io.ReadWriteCloser, error) {
	dc, err := in.dialConsole(ctx, device, PortRedirection)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sol.ErrDeviceGone, err)
	}
	guid := device
	if id, ok := dc.(proxy.Identified); ok {
		guid = id.DeviceID()
	}
	dc = proxy.WithDeadlines(dc) // the SOL client's handshake and writes are bounded by deadlines
	name, pw, err := in.cfg.Accounts.AMTFor(ctx, guid)
	if err != nil {
		dc.Close()
		return nil, err
	}
	sess := in.sessions.Begin(proxy.SessionInfo{
		Kind: proxy.KindTerminal, Console: "presence", User: user, Device: guid, Host: device, Port: PortRedirection,
	}, dc)
	if sess == nil {
		dc.Close()
		return nil, wsman.ErrClosed
	}
	s, err := sol.Open(ctx, sess.Counted(dc), name, pw.Reveal(), sol.WithLogger(in.log.With("part", "sol")))
	if err != nil {
		dc.Close()
		sess.End(proxy.EndError)
		return nil, err
	}
	in.log.Info("SOL terminal opened", "device", guid, "user", user, "amt_user", name)
	return &solTerminal{Session: s, sess: sess}, nil
}

// solTerminal ends its console session with the SOL session.
type solTerminal struct {
	*sol.Session
	sess *proxy.Session
	once sync.Once
}

func (t *solTerminal) Read(p []byte) (int, error) {
	n, err := t.Session.Read(p)
	// A read deadline of the caller's (a terminal that detaches) is not
	// the device hanging up.
	if err != nil && !errors.Is(err, sol.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.end(proxy.EndDevice) // a Kill's reason, if one came first, stays
	}
	return n, err
}

func (t *solTerminal) Close() error {
	err := t.Session.Close()
	t.end(proxy.EndConsole)
	return err
}

func (t *solTerminal) end(reason string) { t.once.Do(func() { t.sess.End(reason) }) }

// SOLSentence is the plain sentence for an error of OpenSOL or of the
// session, for the window.
func SOLSentence(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, vault.ErrNoAMTAccount):
		return "Presence has no AMT account for this device: add one in Accounts (AMT accounts)."
	case errors.Is(err, sol.ErrCredentials):
		return "The device rejected the AMT user name or password."
	case errors.Is(err, sol.ErrDisabled):
		return "Serial-over-LAN is not enabled on the device: turn it on in its redirection features."
	case errors.Is(err, sol.ErrBusy):
		return "Another Serial-over-LAN session is open on the device."
	case errors.Is(err, sol.ErrStartRefused):
		return "The device refused to start Serial-over-LAN: the user at the device may have to consent first."
	case errors.Is(err, sol.ErrNoAuth):
		return "The device offers no login Presence supports."
	case errors.Is(err, sol.ErrDeviceGone):
		return "The device is not connected, or its tunnel went away."
	case errors.Is(err, sol.ErrClosed), errors.Is(err, wsman.ErrClosed):
		return "The session is closed."
	case errors.Is(err, sol.ErrProtocol):
		return "The device sent something Presence cannot read."
	case errors.Is(err, context.DeadlineExceeded):
		return "The device did not answer in time."
	}
	return "The Serial-over-LAN session failed."
}
