package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// AMT accounts are bound to devices: an account bound to a device is the
// one Presence logs in to that device's AMT with (WS-Man and the relay's
// redirection login); an account bound to no device is the default, for
// every device no account is bound to. The binding is kept beside the
// account, in the item "amt-devices/NAME" (GUIDs, one a line).
//
// The rule, for device D:
//  1. the account bound to D;
//  2. else the one unbound account;
//  3. else, of several unbound accounts, the one named "admin" (AMT's own
//     administrator; earlier Presence versions used this rule alone);
//  4. else none: [ErrNoAMTAccount].

// MaxAMTDevices caps the devices one AMT account is bound to.
const MaxAMTDevices = 10_000

// ErrNoAMTAccount: no AMT account applies to the device.
var ErrNoAMTAccount = errors.New("vault: no AMT account for this device")

// amtIndexTTL is how long the index of bindings is trusted when nothing
// changed through this value: bindings changed by another process
// (presence account add while the server runs) are seen within it.
const amtIndexTTL = 10 * time.Second

const amtDevicesPrefix = "amt-devices/"

// amtIndex maps devices to the AMT accounts bound to them.
type amtIndex struct {
	gen      uint64
	built    time.Time
	byDevice map[string]string // GUID → account name
	unbound  []string          // accounts bound to no device, sorted
}

// CanonicalGUID returns a device GUID in the form Presence keeps it
// (lowercase, 8-4-4-4-12), from any case, with or without dashes.
func CanonicalGUID(s string) (string, error) {
	h := strings.ToLower(strings.ReplaceAll(s, "-", ""))
	if len(h) != 32 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("vault: %q is not a device GUID (32 hex digits, dashes optional)", s)
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// AddAMT creates or replaces the AMT account name with its password, bound
// to devices (GUIDs in any form); no devices makes it a default account. A
// device already bound to another AMT account is refused: one device, one
// account.
func (a *Accounts) AddAMT(ctx context.Context, name string, password Secret, devices []string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if len(devices) > MaxAMTDevices {
		return fmt.Errorf("vault: an AMT account is bound to at most %d devices, not %d", MaxAMTDevices, len(devices))
	}
	guids := make([]string, 0, len(devices))
	for _, d := range devices {
		g, err := CanonicalGUID(d)
		if err != nil {
			return err
		}
		guids = append(guids, g)
	}
	slices.Sort(guids)
	guids = slices.Compact(guids)
	idx, err := a.buildAMTIndex(ctx)
	if err != nil {
		return err
	}
	for _, g := range guids {
		if other, ok := idx.byDevice[g]; ok && other != name {
			return fmt.Errorf("vault: device %s is bound to AMT account %q already: bind it to one account only (add %q again without it first)", g, other, other)
		}
	}
	if err := a.Add(ctx, KindAMT, name, password); err != nil {
		return err
	}
	defer a.Flush() // the index is rebuilt at the next look
	key := amtDevicesPrefix + name
	if len(guids) == 0 {
		if err := a.store.Delete(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	}
	return a.store.Set(ctx, key, []byte(strings.Join(guids, "\n")+"\n"))
}

// AMTDevices returns the devices the AMT account is bound to (none for a
// default account), sorted.
func (a *Accounts) AMTDevices(ctx context.Context, name string) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	b, err := a.store.Get(ctx, amtDevicesPrefix+name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseAMTDevices(b), nil
}

// parseAMTDevices reads a binding item, keeping only well-formed GUIDs (the
// item is ours, but a store can be edited by hand).
func parseAMTDevices(b []byte) []string {
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if g, err := CanonicalGUID(strings.TrimSpace(line)); err == nil && len(out) < MaxAMTDevices {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// AMTFor returns the AMT account that applies to the device (a GUID in
// any form) by the rule above: its name (the AMT user name) and password.
// The error wraps [ErrNoAMTAccount] when none applies.
func (a *Accounts) AMTFor(ctx context.Context, device string) (string, Secret, error) {
	g, err := CanonicalGUID(device)
	if err != nil {
		return "", "", err
	}
	idx, err := a.amtIndexFor(ctx)
	if err != nil {
		return "", "", err
	}
	name, ok := idx.byDevice[g]
	switch {
	case ok:
	case len(idx.unbound) == 1:
		name = idx.unbound[0]
	case slices.Contains(idx.unbound, "admin"):
		name = "admin"
	case len(idx.unbound) == 0:
		return "", "", fmt.Errorf("%w %s: add one with presence account add --kind amt NAME [--device GUID]", ErrNoAMTAccount, g)
	default:
		return "", "", fmt.Errorf("%w %s: %d AMT accounts are bound to no device and none is named admin; bind them with --device", ErrNoAMTAccount, g, len(idx.unbound))
	}
	pw, err := a.Password(ctx, KindAMT, name)
	if errors.Is(err, ErrNotFound) {
		a.Flush() // removed since the index was built
		return "", "", fmt.Errorf("%w %s: AMT account %q was just removed", ErrNoAMTAccount, g, name)
	}
	if err != nil {
		return "", "", err
	}
	return name, pw, nil
}

// amtIndexFor returns the cached index, rebuilding it when the accounts
// changed through this value or it is older than amtIndexTTL.
func (a *Accounts) amtIndexFor(ctx context.Context) (*amtIndex, error) {
	a.mu.RLock()
	idx, gen := a.amt, a.gen
	a.mu.RUnlock()
	if idx != nil && idx.gen == gen && time.Since(idx.built) < amtIndexTTL {
		return idx, nil
	}
	idx, err := a.buildAMTIndex(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if a.gen == idx.gen {
		a.amt = idx
	}
	a.mu.Unlock()
	return idx, nil
}

// buildAMTIndex reads every AMT account's binding.
func (a *Accounts) buildAMTIndex(ctx context.Context) (*amtIndex, error) {
	a.mu.RLock()
	gen := a.gen
	a.mu.RUnlock()
	names, err := a.List(ctx, KindAMT)
	if err != nil {
		return nil, err
	}
	bound, err := a.store.List(ctx, amtDevicesPrefix)
	if err != nil {
		return nil, err
	}
	idx := &amtIndex{gen: gen, built: time.Now(), byDevice: map[string]string{}}
	hasBinding := map[string]bool{}
	for _, key := range bound {
		name := strings.TrimPrefix(key, amtDevicesPrefix)
		if !slices.Contains(names, name) {
			continue // a binding left by an account removed by hand
		}
		b, err := a.store.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		devs := parseAMTDevices(b)
		if len(devs) == 0 {
			continue
		}
		hasBinding[name] = true
		for _, d := range devs {
			// names is sorted: of two accounts bound to one device (by
			// hand: AddAMT refuses it), the first by name wins.
			if _, dup := idx.byDevice[d]; !dup {
				idx.byDevice[d] = name
			}
		}
	}
	for _, n := range names {
		if !hasBinding[n] {
			idx.unbound = append(idx.unbound, n)
		}
	}
	return idx, nil
}
