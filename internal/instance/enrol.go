package instance

// Enrolment through the instance: the API's POST /api/v1/enrol, the
// window's "Add a device on the LAN…" and `presence enrol` all come here.
// The instance talks WS-Man to the device on the LAN (mps/enrol does the
// sequence), keeps the device's CIRA account in its vault, and waits for
// the tunnel.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/vault"
)

// Defaults of an enrolment.
const (
	enrolWait     = 2 * time.Minute // for the tunnel, after the writes
	enrolMaxWait  = 5 * time.Minute
	maxEnrolments = 64 // at once; more wait for a turn
)

// lanPorts are AMT's WS-Man ports on the LAN.
const (
	lanPortHTTP = 16992
	lanPortTLS  = 16993
)

// enrolState is what the instance remembers between enrolments: the
// devices' certificates seen over TLS (pinned on first use) and which GUID
// was enrolled from which address, so that unenrol ADDRESS finds the
// device's tunnel once its LAN ports are closed. Kept in memory; the pins
// are also kept in the vault.
type enrolState struct {
	mu      sync.Mutex
	byAddr  map[string]string // LAN address → GUID
	devices map[string]enrolled
	turns   chan struct{}
}

func (in *Instance) enrolment() *enrolState {
	in.enrolOnce.Do(func() {
		in.enrol = &enrolState{byAddr: map[string]string{}, turns: make(chan struct{}, maxEnrolments)}
	})
	return in.enrol
}

// lanAddress returns addr with AMT's WS-Man port for the transport when it
// has none.
func lanAddress(addr string, useTLS bool) (string, error) {
	port := lanPortHTTP
	if useTLS {
		port = lanPortTLS
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		// No port (or an IPv6 literal without brackets).
		host = strings.Trim(addr, "[]")
		p = strconv.Itoa(port)
	}
	n, perr := strconv.Atoi(p)
	if host == "" || perr != nil || n <= 0 || n > 65535 || strings.ContainsAny(host, " /\\@") {
		return "", fmt.Errorf("%q is not a device's LAN address (HOST or HOST:PORT)", addr)
	}
	return net.JoinHostPort(host, p), nil
}

// parsePin reads a certificate pin: a SHA-256 in hex, colons allowed; ""
// is nil (trust on first use).
func parsePin(pin string) ([]byte, error) {
	h := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(pin))
	if h == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("pin %q is not a SHA-256 (64 hex digits, colons allowed)", pin)
	}
	return b, nil
}

// mpsEntry is this instance's MPS entry as AMT is given it: the name in
// its server certificate (AMT compares it with the entry) and its CIRA
// port.
func (in *Instance) mpsEntry() (cn string, ciraPort int, root []byte, err error) {
	in.live.Lock()
	ca, cira, paused := in.cfg.CA, in.ciraNow, in.paused
	in.live.Unlock()
	if paused || cira == nil {
		return "", 0, nil, errors.New("the CIRA listener is off (paused): devices could not connect; resume it first")
	}
	cn = ca.Server().Subject.CommonName
	if cn == "" {
		return "", 0, nil, errors.New("the MPS certificate has no common name: make one with presence cert init --cn ADDRESS")
	}
	return cn, port(cira), ca.Root().Raw, nil
}

// backupEntry is a fleet peer's MPS entry for the backup: the first linked
// peer that has a CIRA listener.
func (in *Instance) backupEntry() (cn string, ciraPort int, ok bool) {
	if in.peers == nil {
		return "", 0, false
	}
	for _, l := range in.peers.Links() {
		if !l.Up || l.Member.CIRAAddr == "" {
			continue
		}
		h, p, err := net.SplitHostPort(l.Member.CIRAAddr)
		n, perr := strconv.Atoi(p)
		if err != nil || perr != nil || h == "" || n <= 0 {
			continue
		}
		return h, n, true
	}
	return "", 0, false
}

// ciraAccount returns the device's CIRA account, creating it in the vault
// the first time: its user name comes from the GUID, its password is new.
func (in *Instance) ciraAccount(ctx context.Context, guid, user string, newPassword func() []byte) ([]byte, error) {
	acc := in.cfg.Accounts
	pw, err := acc.Password(ctx, vault.KindCIRA, user)
	if err == nil {
		return []byte(pw.Reveal()), nil
	}
	if !errors.Is(err, vault.ErrNotFound) {
		return nil, fmt.Errorf("reading the CIRA account %s of device %s: %w", user, guid, err)
	}
	p := newPassword()
	if err := acc.Add(ctx, vault.KindCIRA, user, vault.Secret(p)); err != nil {
		return nil, fmt.Errorf("saving the CIRA account %s of device %s: %w", user, guid, err)
	}
	in.cfg.Accounts.Flush()
	return p, nil
}

// keepAMTAccount makes the AMT account the admin gave the one Presence
// manages the device with over its tunnel, unless one already applies.
// It returns a note for the result when it could not.
func (in *Instance) keepAMTAccount(ctx context.Context, guid, user, password string) string {
	acc := in.cfg.Accounts
	name, pw, err := acc.AMTFor(ctx, guid)
	switch {
	case err == nil && name == user && pw.Reveal() == password:
		return ""
	case err == nil:
		return fmt.Sprintf("Presence manages this device with the AMT account %q it has; the one given here is not kept (bind it to the device with presence account add --kind amt %s --device %s)", name, user, guid)
	case !errors.Is(err, vault.ErrNoAMTAccount):
		return "the AMT account could not be checked: " + err.Error()
	}
	devices, _ := acc.AMTDevices(ctx, user)
	if old, err := acc.Password(ctx, vault.KindAMT, user); err == nil && old.Reveal() != password {
		// The name is taken by another password: keep the stored one.
		return fmt.Sprintf("an AMT account %q with another password exists; Presence did not change it (bind one to the device with presence account add --kind amt NAME --device %s)", user, guid)
	}
	if err := acc.AddAMT(ctx, user, vault.Secret(password), append(devices, guid)); err != nil {
		return "the AMT account was not kept: " + err.Error()
	}
	return ""
}

// waitTunnel waits for the device's tunnel, up to wait.
func (in *Instance) waitTunnel(ctx context.Context, guid string, wait time.Duration) (mps.Device, bool) {
	events, cancel := in.Server.Subscribe(256)
	defer cancel()
	if d, ok := in.Server.Device(guid); ok {
		return d, true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	tick := time.NewTicker(time.Second) // events may be dropped under load
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return mps.Device{}, false
			}
			if ev.Kind == mps.EventConnected && strings.EqualFold(ev.Device.UUID, guid) {
				return ev.Device, true
			}
		case <-tick.C:
			if d, ok := in.Server.Device(guid); ok {
				return d, true
			}
		case <-t.C:
			return mps.Device{}, false
		case <-ctx.Done():
			return mps.Device{}, false
		}
	}
}

// takeTurn waits for one of the enrolment turns.
func (e *enrolState) takeTurn(ctx context.Context) (func(), error) {
	select {
	case e.turns <- struct{}{}:
		return func() { <-e.turns }, nil
	case <-ctx.Done():
		return nil, errors.New("too many enrolments at once; try again")
	}
}

// stepper collects the steps of an enrolment and reports each.
type stepper struct {
	mu       sync.Mutex
	steps    []api.EnrolStep
	progress func(api.EnrolStep)
}

func (s *stepper) add(step, state, sentence string) {
	st := api.EnrolStep{Step: step, State: state, Sentence: sentence, Time: time.Now()}
	s.mu.Lock()
	s.steps = append(s.steps, st)
	s.mu.Unlock()
	if s.progress != nil {
		s.progress(st)
	}
}

func (s *stepper) all() []api.EnrolStep {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.EnrolStep(nil), s.steps...)
}

// Enrol configures CIRA in the device at req.Address over the LAN, keeps
// its accounts, and waits for its tunnel (see api.EnrolRequest).
func (in *Instance) Enrol(ctx context.Context, req api.EnrolRequest, progress func(api.EnrolStep)) (api.EnrolResult, error) {
	return in.runEnrol(ctx, req, progress, false)
}

// Unenrol removes what Enrol wrote: through the device's tunnel when it is
// connected here, else over the LAN.
func (in *Instance) Unenrol(ctx context.Context, req api.EnrolRequest, progress func(api.EnrolStep)) (api.EnrolResult, error) {
	return in.runEnrol(ctx, req, progress, true)
}
