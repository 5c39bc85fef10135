package adapter

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/sol"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/wsman"
)

// The window's AMT toolbox: the Power column's watch, and the device
// pane's and device window's calls, through the instance's toolbox
// (in.AMT), the one implementation the API and the command line use too.

var (
	_ ui.AMTBackend = (*Backend)(nil)
	_ ui.SOLBackend = (*Backend)(nil)
)

// solOpenTimeout bounds the opening of a terminal (the dial, the login
// and the start of SOL); the session itself lasts until it is closed.
const solOpenTimeout = 30 * time.Second

// amtState is the backend's part of the toolbox: the power watch, started
// by the first use, and the context its calls run in, cancelled by Close.
type amtState struct {
	mu      sync.Mutex
	watch   *toolbox.Watch // nil until used, or after Close
	closed  bool
	devices []string // the GUIDs last given to the watch
	ctx     context.Context
	cancel  context.CancelFunc
}

// toolbox returns the instance's toolbox and the context of the window's
// calls, or an error once the backend is closed or when the instance
// has no toolbox.
func (b *Backend) toolbox() (*toolbox.Toolbox, context.Context, error) {
	a := &b.amt
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || b.In == nil || b.In.AMT == nil {
		return nil, nil, &ui.AMTError{Sentence: "Presence is shutting down.", Err: wsman.ErrClosed}
	}
	if a.ctx == nil {
		a.ctx, a.cancel = context.WithCancel(context.Background())
	}
	return b.In.AMT, a.ctx, nil
}

// powerWatch returns the watch, starting it at the first call; nil once
// the backend is closed.
func (b *Backend) powerWatch() *toolbox.Watch {
	a := &b.amt
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || b.In == nil || b.In.AMT == nil {
		return nil
	}
	if a.watch == nil {
		opts := b.PowerWatch
		opts.OnChange = nil // the window reads the readings at each snapshot
		a.watch = b.In.AMT.Watch(opts)
	}
	return a.watch
}

// watchDevices gives the watch the devices of a snapshot: this
// instance's. A peer's devices are its own watch's to poll (one call per
// device per minute for the whole fleet, not one per instance).
func (b *Backend) watchDevices(devs []mps.Device) {
	w := b.powerWatch()
	if w == nil {
		return
	}
	a := &b.amt
	a.mu.Lock()
	same := slices.EqualFunc(a.devices, devs, func(g string, d mps.Device) bool { return g == d.UUID })
	if !same {
		a.devices = make([]string, len(devs))
		for i, d := range devs {
			a.devices[i] = d.UUID
		}
	}
	guids := a.devices
	a.mu.Unlock()
	if !same {
		w.SetDevices(guids) // it copies what it keeps
	}
}

// closeAMT stops the watch and cancels the window's calls in flight.
func (b *Backend) closeAMT() {
	a := &b.amt
	a.mu.Lock()
	w := a.watch
	a.watch, a.closed = nil, true
	if a.cancel != nil {
		a.cancel()
	}
	a.mu.Unlock()
	if w != nil {
		w.Close()
	}
}

// Power returns the Power column's reading of a device.
func (b *Backend) Power(guid string) (toolbox.PowerReading, bool) {
	if w := b.powerWatch(); w != nil {
		return w.Get(guid)
	}
	return toolbox.PowerReading{}, false
}

// SelectPower makes guid the watch's selected device.
func (b *Backend) SelectPower(guid string) {
	if w := b.powerWatch(); w != nil {
		w.Select(guid)
	}
}

// AMTStatus reads the device's status.
func (b *Backend) AMTStatus(guid string) (toolbox.Status, error) {
	t, ctx, err := b.toolbox()
	if err != nil {
		return toolbox.Status{}, err
	}
	st, err := t.Status(ctx, guid)
	b.logRefusal("status", guid, err)
	return st, err
}

// AMTPower sends a power or boot action, and has the watch read the
// device again. The toolbox logs it.
func (b *Backend) AMTPower(guid string, a toolbox.Action) error {
	t, ctx, err := b.toolbox()
	if err != nil {
		return err
	}
	_, err = t.Power(ctx, guid, a)
	if err == nil {
		if w := b.powerWatch(); w != nil {
			w.Refresh(guid)
		}
	}
	return err
}

// StartConsent asks the device to show a consent code.
func (b *Backend) StartConsent(guid string) error {
	t, ctx, err := b.toolbox()
	if err != nil {
		return err
	}
	_, err = t.StartConsent(ctx, guid)
	b.logRefusal("consent request", guid, err)
	return err
}

// SendConsentCode sends the code the user read off the device.
func (b *Backend) SendConsentCode(guid string, code int) error {
	t, ctx, err := b.toolbox()
	if err != nil {
		return err
	}
	err = t.SendConsentCode(ctx, guid, code)
	b.logRefusal("consent code", guid, err)
	return err
}

// CancelConsent withdraws a consent request.
func (b *Backend) CancelConsent(guid string) error {
	t, ctx, err := b.toolbox()
	if err != nil {
		return err
	}
	err = t.CancelConsent(ctx, guid)
	b.logRefusal("consent cancel", guid, err)
	return err
}

// AMTHardware reads the hardware inventory.
func (b *Backend) AMTHardware(guid string) (wsman.Hardware, error) {
	t, ctx, err := b.toolbox()
	if err != nil {
		return wsman.Hardware{}, err
	}
	h, err := t.Client().Hardware(ctx, guid)
	b.logRefusal("hardware", guid, err)
	return h, err
}

// AMTEventLog reads the event log.
func (b *Backend) AMTEventLog(guid string) ([]wsman.Event, error) {
	t, ctx, err := b.toolbox()
	if err != nil {
		return nil, err
	}
	evs, err := t.Client().EventLog(ctx, guid)
	b.logRefusal("event log", guid, err)
	return evs, err
}

// AMTAuditLog reads the audit log.
func (b *Backend) AMTAuditLog(guid string) (wsman.AuditLog, error) {
	t, ctx, err := b.toolbox()
	if err != nil {
		return wsman.AuditLog{}, err
	}
	l, err := t.Client().AuditLog(ctx, guid)
	b.logRefusal("audit log", guid, err)
	return l, err
}

// OpenSOL opens a Serial-over-LAN session for the window's terminal, a
// console session of kind terminal for the desktop user.
func (b *Backend) OpenSOL(guid string) (io.ReadWriteCloser, error) {
	_, root, err := b.toolbox()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(root, solOpenTimeout)
	defer cancel()
	s, err := b.In.OpenSOL(ctx, guid, desktopUser)
	if err != nil {
		b.logRefusal("terminal", guid, err)
		return nil, &ui.AMTError{Sentence: instance.SOLSentence(err), Consent: errors.Is(err, sol.ErrStartRefused), Err: err}
	}
	return s, nil
}

// logRefusal logs a failed call once, here where the window's errors are
// handled (the window shows its sentence).
func (b *Backend) logRefusal(what, guid string, err error) {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, wsman.ErrClosed) {
		return
	}
	log := b.Logger
	if log == nil {
		return
	}
	log.Info("AMT call from the window failed", "call", what, "device", guid, "err", err)
}
