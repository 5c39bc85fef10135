// Package toolbox is the AMT toolbox behind Presence's three surfaces (the
// window, the REST API on the Intel toolkit MPS's paths, and `presence
// amt`): power state and actions, boot to BIOS or PXE, version and control
// mode, hardware, general settings, the event and audit logs, user consent
// and the redirection switches, over the tunnels the server holds.
//
// It is one implementation with one set of rules: which actions fit a
// device's state and version (MeshCommander's rule, amt-toolbox.md §1.1
// notes), when consent is needed, and the sentence each refusal gets. The
// WS-Man calls are mps/wsman's, one at a time per device.
package toolbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/wsman"
)

// PortWSMan is AMT's WS-Man port inside a tunnel.
const PortWSMan = 16992

// infoTTL is how long a device's version, control mode and boot
// capabilities are kept: they change only with a firmware update or a
// reprovisioning, and reading them costs five requests.
const infoTTL = 10 * time.Minute

// Config configures a [Toolbox]. Dial and Credentials are required.
type Config struct {
	// Dial opens a channel to the device's port (in Presence through the
	// server, or through the peer that holds the device).
	Dial func(ctx context.Context, device string, port uint32) (net.Conn, error)
	// Credentials gives the AMT account for the device (the vault's
	// binding rule); it is called for every call.
	Credentials func(ctx context.Context, device string) (wsman.Credentials, error)
	// WSMan tunes the client (its Dial and Credentials are set from the
	// fields above).
	WSMan  wsman.Config
	Logger *slog.Logger
}

// Toolbox runs AMT operations on devices. Its methods are safe for
// concurrent use; devices are named by GUID.
type Toolbox struct {
	c   *wsman.Client
	log *slog.Logger

	mu   sync.Mutex
	info map[string]cachedInfo // GUID → static facts; guarded by mu
}

type cachedInfo struct {
	at      time.Time
	version wsman.Version
	boot    wsman.BootCapabilities
	bootErr error // the platform lacks AMT_BootCapabilities
}

// New returns a toolbox.
func New(cfg Config) (*Toolbox, error) {
	if cfg.Dial == nil || cfg.Credentials == nil {
		return nil, errors.New("toolbox: Config.Dial and Config.Credentials are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wc := cfg.WSMan
	dial := cfg.Dial
	wc.Dial = func(ctx context.Context, device string) (net.Conn, error) {
		c, err := dial(ctx, device, PortWSMan)
		if err != nil {
			return nil, err
		}
		return proxy.WithDeadlines(c), nil // a fleet peer's stream has none
	}
	wc.Credentials = cfg.Credentials
	if wc.Logger == nil {
		wc.Logger = log
	}
	c, err := wsman.New(wc)
	if err != nil {
		return nil, err
	}
	return &Toolbox{c: c, log: log, info: map[string]cachedInfo{}}, nil
}

// Client returns the WS-Man client, for the operations the toolbox passes
// through unchanged.
func (t *Toolbox) Client() *wsman.Client { return t.c }

// Close ends every call and connection.
func (t *Toolbox) Close() error { return t.c.Close() }

// Forget drops what the toolbox knows of a device (call it when its tunnel
// comes up again: its firmware or account may have changed), including the
// credentials it rejected.
func (t *Toolbox) Forget(device string) {
	t.mu.Lock()
	delete(t.info, device)
	t.mu.Unlock()
	t.c.Forget(device)
}

// Status is what the window's device pane shows, and what decides the
// actions offered.
type Status struct {
	Power wsman.PowerState
	// Version is the AMT version ("16.1.25"), Major its first number.
	Version string
	Major   int
	// ControlMode is "ACM", "CCM" or "" (not provisioned or unknown).
	ControlMode string
	// Boot is what the platform can boot to; BootKnown is false when it
	// lacks AMT_BootCapabilities.
	Boot      wsman.BootCapabilities
	BootKnown bool
	// Consent is the consent service's state; ConsentKnown is false on
	// platforms without it (AMT before 6).
	Consent      wsman.OptInService
	ConsentKnown bool
}

// NeedsConsent reports whether a boot option or a redirection needs the
// user's consent now: in client control mode always (AMT ignores boot
// options without it), in admin control mode when the policy asks consent
// for everything (OptInRequired 0xFFFFFFFF); never once it was given, nor
// below AMT 6 (amt-toolbox.md §1.1 notes, MeshCommander's rule).
func (s Status) NeedsConsent() bool {
	if !s.ConsentKnown || s.Consent.Consented() {
		return false
	}
	return s.ControlMode == "CCM" || s.Consent.OptInRequired == wsman.OptInAll
}

// Status reads the device's status in one turn on its queue: the power
// state and the consent state every time, the version and boot
// capabilities from a cache refreshed every ten minutes.
func (t *Toolbox) Status(ctx context.Context, device string) (Status, error) {
	var st Status
	err := t.c.Do(ctx, device, func(ctx context.Context, s *wsman.Session) error {
		var err error
		st, err = t.status(ctx, device, s)
		return err
	})
	return st, err
}

func (t *Toolbox) status(ctx context.Context, device string, s *wsman.Session) (Status, error) {
	var st Status
	ps, err := s.PowerState(ctx)
	if err != nil {
		return st, err
	}
	st.Power = ps
	ci, err := t.staticInfo(ctx, device, s)
	if err != nil {
		return st, err
	}
	st.Version, st.Major, st.ControlMode = ci.version.AMT, ci.version.Major(), ci.version.ControlMode
	st.Boot, st.BootKnown = ci.boot, ci.bootErr == nil
	oi, err := s.OptInService(ctx)
	switch {
	case err == nil:
		st.Consent, st.ConsentKnown = oi, true
	case errors.Is(err, wsman.ErrUnsupported):
	default:
		return st, err
	}
	return st, nil
}

// staticInfo returns the cached version and boot capabilities, reading
// them when the cache has none or old ones.
func (t *Toolbox) staticInfo(ctx context.Context, device string, s *wsman.Session) (cachedInfo, error) {
	t.mu.Lock()
	ci, ok := t.info[device]
	t.mu.Unlock()
	if ok && time.Since(ci.at) < infoTTL {
		return ci, nil
	}
	v, err := s.Version(ctx)
	if err != nil {
		return ci, err
	}
	ci = cachedInfo{at: time.Now(), version: v}
	ci.boot, ci.bootErr = s.BootCapabilities(ctx)
	if ci.bootErr != nil && !errors.Is(ci.bootErr, wsman.ErrUnsupported) {
		return ci, ci.bootErr
	}
	t.mu.Lock()
	if len(t.info) >= maxCached {
		clear(t.info) // many devices come and go: start over rather than grow
	}
	t.info[device] = ci
	t.mu.Unlock()
	return ci, nil
}

// maxCached bounds the devices whose static facts are kept.
const maxCached = 100_000

// Action is a power or boot action, numbered as the Intel toolkit's MPS
// and Console number them: the power states of RequestPowerStateChange,
// and 100/101 (to BIOS from off/on) and 401/400 (to PXE from off/on: the
// toolkit numbers 400 "Reset to PXE" and 401 "Power on to PXE", docs
// Reference/powerstates.md, MPS bootOptions.ts, MeshCommander's lists).
type Action int

// The actions.
const (
	On        Action = 2
	Sleep     Action = 4
	Cycle     Action = 5
	Hibernate Action = 7
	Off       Action = 8
	Reset     Action = 10
	SoftOff   Action = 12
	SoftReset Action = 14
	BIOSOn    Action = 100 // power on to the BIOS setup screen
	BIOSReset Action = 101 // reset to the BIOS setup screen
	PXEOn     Action = 401 // power on to PXE
	PXEReset  Action = 400 // reset to PXE
)

// actionInfo names an action and says what it needs.
type actionInfo struct {
	name, label string
	// disruptive actions stop what the device is doing: the window asks
	// before it sends one.
	disruptive bool
	whenOn     bool // offered when the device is on (else when it is off)
	osAgent    bool // needs AMT 10+ and the OS agent
	boot       wsman.BootTarget
}

var actions = map[Action]actionInfo{
	On:        {name: "on", label: "Power on"},
	Sleep:     {name: "sleep", label: "Sleep", disruptive: true, whenOn: true, osAgent: true},
	Cycle:     {name: "cycle", label: "Power cycle", disruptive: true, whenOn: true},
	Hibernate: {name: "hibernate", label: "Hibernate", disruptive: true, whenOn: true, osAgent: true},
	Off:       {name: "off", label: "Power off", disruptive: true, whenOn: true},
	Reset:     {name: "reset", label: "Reset", disruptive: true, whenOn: true},
	SoftOff:   {name: "soft-off", label: "Shut down the OS", disruptive: true, whenOn: true, osAgent: true},
	SoftReset: {name: "soft-reset", label: "Restart the OS", disruptive: true, whenOn: true, osAgent: true},
	BIOSOn:    {name: "bios", label: "Power on to BIOS", boot: wsman.BootBIOS},
	BIOSReset: {name: "bios", label: "Reset to BIOS", disruptive: true, whenOn: true, boot: wsman.BootBIOS},
	PXEOn:     {name: "pxe", label: "Power on to PXE", boot: wsman.BootPXE},
	PXEReset:  {name: "pxe", label: "Reset to PXE", disruptive: true, whenOn: true, boot: wsman.BootPXE},
}

// order is the order actions are offered in (MeshCommander's).
var order = []Action{On, BIOSOn, PXEOn, Reset, Cycle, Off, SoftReset, SoftOff, Sleep, Hibernate, BIOSReset, PXEReset}

// Name is the action's name on the command line ("on", "bios", ...); the
// two BIOS actions share "bios" and the two PXE ones "pxe".
func (a Action) Name() string { return actions[a].name }

// String is the action's label in the window ("Reset to BIOS").
func (a Action) String() string {
	if i, ok := actions[a]; ok {
		return i.label
	}
	return "action " + strconv.Itoa(int(a))
}

// Disruptive reports whether the action stops what the device is doing
// (the window asks for a confirmation first).
func (a Action) Disruptive() bool { return actions[a].disruptive }

// Valid reports whether a is one of the actions.
func (a Action) Valid() bool { _, ok := actions[a]; return ok }

// ParseAction reads an action by name (on, off, cycle, reset, sleep,
// hibernate, soft-off, soft-reset, bios, pxe) or number; for bios and pxe
// it picks the form that fits the power state st (from off: power on to;
// from on: reset to).
func ParseAction(s string, st wsman.PowerState) (Action, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if n, err := strconv.Atoi(s); err == nil {
		if a := Action(n); a.Valid() {
			return a, nil
		}
		return 0, fmt.Errorf("toolbox: %d is not a power action (2 on, 5 cycle, 8 off, 10 reset, 4, 7, 12, 14, 100/101 BIOS, 401/400 PXE)", n)
	}
	switch s {
	case "bios":
		if st.On() {
			return BIOSReset, nil
		}
		return BIOSOn, nil
	case "pxe":
		if st.On() {
			return PXEReset, nil
		}
		return PXEOn, nil
	}
	for _, a := range order {
		if actions[a].name == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("toolbox: unknown power action %q: use on, off, cycle, reset, bios, pxe, sleep, hibernate, soft-off or soft-reset", s)
}

// NotOfferedError is an action the device's state or version does not
// allow. Sentence says why.
type NotOfferedError struct {
	Action Action
	Why    string
}

func (e *NotOfferedError) Error() string {
	return "toolbox: " + e.Action.String() + " is not offered: " + e.Why
}

// ErrNotOffered matches every [*NotOfferedError].
var ErrNotOffered = errors.New("toolbox: the action does not fit the device's state")

// Is reports whether target is ErrNotOffered.
func (e *NotOfferedError) Is(target error) bool { return target == ErrNotOffered }

// Check returns nil if the action fits the status, or a *NotOfferedError.
// It does not check consent (see [Status.NeedsConsent]).
func Check(st Status, a Action) error {
	info, ok := actions[a]
	if !ok {
		return &NotOfferedError{a, "it is not a power action"}
	}
	on := st.Power.On()
	switch {
	case info.whenOn && !on:
		return &NotOfferedError{a, "the device is " + st.Power.String() + ", not on"}
	case !info.whenOn && on:
		return &NotOfferedError{a, "the device is on already"}
	}
	if info.osAgent {
		if st.Major < 10 {
			return &NotOfferedError{a, fmt.Sprintf("it needs AMT 10 or later, and the device has AMT %s", cmp.Or(st.Version, "of an unknown version"))}
		}
		// AvailableRequestedPowerStates leaves the OS agent's actions out
		// while the agent is not running. A device that does not report
		// the list gets the benefit of the doubt (unconfirmed which
		// firmware omits it).
		if len(st.Power.Available) > 0 && !slices.Contains(st.Power.Available, int(a)) {
			return &NotOfferedError{a, "it needs the OS agent (LMS) running on the device, and the device does not offer it now"}
		}
	}
	if info.boot != 0 {
		if !st.BootKnown {
			return &NotOfferedError{a, "the platform reports no boot options"}
		}
		if info.boot == wsman.BootBIOS && !st.Boot.BIOSSetup {
			return &NotOfferedError{a, "the platform cannot boot to BIOS setup remotely"}
		}
		if info.boot == wsman.BootPXE && !st.Boot.ForcePXEBoot {
			return &NotOfferedError{a, "the platform cannot be made to boot from the network"}
		}
	}
	return nil
}

// Offers lists the actions that fit the status, in the order a console
// shows them: from off, power on (to the OS, BIOS or PXE); from on, reset,
// cycle, off, the OS agent's actions, and reset to BIOS or PXE.
func Offers(st Status) []Action {
	var out []Action
	for _, a := range order {
		if Check(st, a) == nil {
			out = append(out, a)
		}
	}
	return out
}

// Power runs the action on the device, in one turn on its queue: it reads
// the status, checks that the action fits it ([ErrNotOffered] if not) and
// that consent is not needed for a boot option ([wsman.ErrConsentRequired]
// if it is), then sends the action (for BIOS and PXE, the whole boot
// sequence of wsman.Session.Boot). It returns the status read before.
func (t *Toolbox) Power(ctx context.Context, device string, a Action) (Status, error) {
	var st Status
	err := t.c.Do(ctx, device, func(ctx context.Context, s *wsman.Session) error {
		var err error
		st, err = t.status(ctx, device, s)
		if err != nil {
			return err
		}
		if err := Check(st, a); err != nil {
			return err
		}
		info := actions[a]
		if info.boot == 0 {
			return s.RequestPowerStateChange(ctx, wsman.PowerAction(a))
		}
		if st.NeedsConsent() {
			return fmt.Errorf("toolbox: %s: %w (in %s a boot option is ignored without it)", a, wsman.ErrConsentRequired, cmp.Or(st.ControlMode, "this mode"))
		}
		power := wsman.PowerOn
		if info.whenOn {
			power = wsman.PowerReset
		}
		return s.Boot(ctx, wsman.BootRequest{Target: info.boot, Power: power})
	})
	if err == nil {
		t.log.Info("AMT power action sent", "device", device, "action", a.String(), "code", int(a))
	} else {
		t.log.Info("AMT power action refused", "device", device, "action", a.String(), "err", err)
	}
	return st, err
}

// Sentence is the plain sentence for an error of this package or of
// mps/wsman, for the window, the command line and the API.
func Sentence(err error) string {
	var no *NotOfferedError
	switch {
	case errors.As(err, &no):
		return fmt.Sprintf("%s is not possible now: %s.", no.Action, no.Why)
	case errors.Is(err, ErrBadCode):
		return "The consent code is the six digits the device shows."
	case errors.Is(err, ErrWrongCode):
		return "The device did not take that code: check the six digits it shows and send them again."
	case errors.Is(err, ErrCodeExpired):
		return "The device shows no code any more (after three wrong ones, or its time ran out): cancel, and request consent again."
	case errors.Is(err, ErrNoConsentService):
		return "This device has no user consent service (AMT before 6): nothing on it needs consent."
	}
	return wsman.Sentence(err)
}
