package enrol

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/presence-mps/presence/mps/wsman"
)

// Steps of a removal, in the order they run.
const (
	StepRemoveRules = "remove-rules"
	StepRemoveMPS   = "remove-mps"
	StepRemoveRoot  = "remove-root"
)

// UnenrolOptions says what to restore.
type UnenrolOptions struct {
	// DetectionStrings are the environment detection strings to put back
	// ([Result] PreviousDetectionStrings of the enrolment); nil empties
	// the list, which keeps the device inside the enterprise.
	DetectionStrings []string
	// UserInitiated, if non-zero, is the user-initiated connection state
	// to put back ([Result] UserInitiatedBefore), when Presence turned it
	// on.
	UserInitiated int
	// KeepRoot leaves Presence's root certificate installed.
	KeepRoot bool
	// Fallback, if set, finishes the removal on FallbackDevice when the
	// device drops its connection midway: removing a rule or an entry may
	// end the tunnel the removal runs through (enrol.md §10, unverified
	// on hardware), and with environment detection put back first the
	// device's LAN WS-Man is open again.
	Fallback       *wsman.Client
	FallbackDevice string
}

// Unenrol removes what [Enroller.Enrol] wrote (enrol.md §10): environment
// detection back first (so that the LAN reopens if the tunnel goes), then
// the rules that name this instance's entries (Primary and Backup; a rule
// that also names another MPS is re-added with only that one), then the
// entries, then Presence's root (only the one whose DER is Root), then
// the user-initiated state if asked. Root, Primary and Backup identify
// Presence's items; Account and Replace are not used. What is already gone
// is skipped, so a second run writes nothing.
func (e *Enroller) Unenrol(ctx context.Context, opt UnenrolOptions) (Result, error) {
	res := Result{}
	if e.Client == nil || e.Device == "" {
		return res, errors.New("enrol: Client and Device are required")
	}
	var entries []entry
	for _, en := range append([]*Entry{&e.Primary}, e.Backup) {
		if en == nil {
			continue
		}
		r, err := resolve(*en)
		if err != nil {
			return res, fmt.Errorf("the MPS entry to remove: %w", err)
		}
		entries = append(entries, r)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	err := e.Client.Do(ctx, e.Device, func(ctx context.Context, s *wsman.Session) error {
		r := &run{e: e, s: s, res: &res, remove: true}
		return r.unenrol(ctx, entries, opt)
	})
	var ee *Error
	if opt.Fallback == nil || !errors.Is(err, wsman.ErrTunnel) || !errors.As(err, &ee) || len(ee.Written) == 0 {
		return res, err
	}
	// The connection went after the first writes: finish on the LAN. The
	// removal is idempotent, so it starts over and skips what is done.
	first := res
	f := *e
	f.Client, f.Device = opt.Fallback, opt.FallbackDevice
	opt.Fallback = nil
	res, err = f.Unenrol(ctx, opt)
	res.Writes = append(first.Writes, res.Writes...)
	res.Steps = append(first.Steps, res.Steps...)
	res.Rules = append(first.Rules, res.Rules...)
	res.Notes = append(res.Notes, "The device's connection went midway (removing its rules ends its tunnel); the removal was finished over its LAN address "+opt.FallbackDevice+".")
	if res.GUID == "" {
		res.GUID = first.GUID
	}
	return res, err
}

func (r *run) unenrol(ctx context.Context, entries []entry, opt UnenrolOptions) error {
	r.report(StepRead, Running, "Reading the device's AMT configuration.")
	st, err := r.read(ctx, false)
	if err != nil {
		return r.fail(err)
	}
	r.report(StepRead, Done, "The device %s has %d MPS entries and %d rules.", r.res.GUID, len(st.saps), len(st.rules))

	// Environment detection first.
	r.report(StepEnvironment, Running, "Putting environment detection back.")
	want := opt.DetectionStrings
	if slices.Equal(st.env.DetectionStrings, want) || len(st.env.DetectionStrings) == 0 && len(want) == 0 {
		r.report(StepEnvironment, Skipped, "Environment detection already holds %q.", want)
	} else {
		env := st.env
		env.DetectionStrings = slices.Clone(want)
		if err := r.s.PutEnvironmentDetection(ctx, env); err != nil {
			return r.fail(err)
		}
		r.wrote(fmt.Sprintf("environment detection %q (was %q)", want, st.env.DetectionStrings))
		got, err := r.s.EnvironmentDetection(ctx)
		if err != nil {
			return r.fail(err)
		}
		if !slices.Equal(got.DetectionStrings, want) && !(len(got.DetectionStrings) == 0 && len(want) == 0) {
			return r.fail(fmt.Errorf("the device kept the detection strings %q", got.DetectionStrings))
		}
		r.report(StepEnvironment, Done, "Environment detection holds %q again.", want)
	}

	var mine []string
	for _, s := range st.saps {
		for _, en := range entries {
			if en.is(s) && !slices.Contains(mine, s.Name) {
				mine = append(mine, s.Name)
			}
		}
	}
	r.res.SAPs = mine

	// Rules naming Presence's entries.
	r.report(StepRemoveRules, Running, "Removing the rules that send the device to Presence.")
	removed := 0
	for _, rule := range st.rules {
		servers := st.serversOf(rule.PolicyRuleName)
		var rest []string
		hit := false
		for _, n := range servers {
			if slices.Contains(mine, n) {
				hit = true
			} else {
				rest = append(rest, n)
			}
		}
		if !hit {
			continue
		}
		if err := r.s.DeletePolicyRule(ctx, rule.PolicyRuleName); err != nil && !errors.Is(err, wsman.ErrAbsent) {
			return r.fail(err)
		}
		removed++
		r.wrote("deleted the rule " + q(rule.PolicyRuleName))
		r.res.Rules = append(r.res.Rules, rule.PolicyRuleName)
		if len(rest) > 0 {
			spec := wsman.PolicyRuleSpec{Trigger: rule.Trigger, TunnelLifeTime: rule.TunnelLifeTime, ExtendedData: decode64(rule.ExtendedData), MpServers: rest}
			n, err := r.s.AddRemoteAccessPolicyRule(ctx, spec)
			if err != nil {
				return r.fail(err)
			}
			r.wrote("re-added the rule " + q(n) + " with only " + strings.Join(rest, ", "))
		}
	}
	if removed == 0 {
		r.report(StepRemoveRules, Skipped, "No rule names Presence.")
	} else {
		if err := r.readMPS(ctx, st); err != nil {
			return r.fail(err)
		}
		for _, a := range st.applies {
			if slices.Contains(mine, a.SAP()) {
				return r.fail(fmt.Errorf("the rule %q still names %q after its removal", a.Rule(), a.SAP()))
			}
		}
		r.report(StepRemoveRules, Done, "Removed %d rules.", removed)
	}

	// Presence's entries.
	r.report(StepRemoveMPS, Running, "Removing Presence's MPS entries.")
	if len(mine) == 0 {
		r.report(StepRemoveMPS, Skipped, "The device has no MPS entry of Presence.")
	} else {
		for _, n := range mine {
			if err := r.s.DeleteMpServer(ctx, n); err != nil && !errors.Is(err, wsman.ErrAbsent) {
				return r.fail(err)
			}
			r.wrote("deleted the MPS entry " + q(n))
		}
		saps, err := r.s.MPServers(ctx)
		if err != nil {
			return r.fail(err)
		}
		for _, s := range saps {
			if slices.Contains(mine, s.Name) {
				return r.fail(fmt.Errorf("the device still lists the MPS entry %q after deleting it", s.Name))
			}
		}
		r.report(StepRemoveMPS, Done, "Removed %d MPS entries.", len(mine))
	}

	// Presence's root, matched by DER.
	r.report(StepRemoveRoot, Running, "Removing Presence's root certificate.")
	id := ""
	if len(r.e.Root) > 0 {
		id = certID(st.certs, r.e.Root)
	}
	switch {
	case opt.KeepRoot:
		r.report(StepRemoveRoot, Skipped, "Presence's root certificate is kept, as asked.")
	case id == "":
		r.report(StepRemoveRoot, Skipped, "The device does not hold Presence's root certificate.")
	default:
		if err := r.s.DeleteCertificate(ctx, id); err != nil && !errors.Is(err, wsman.ErrAbsent) {
			return r.fail(err)
		}
		r.wrote("deleted the root certificate " + q(id))
		certs, err := r.s.PublicKeyCertificates(ctx)
		if err != nil {
			return r.fail(err)
		}
		if certID(certs, r.e.Root) != "" {
			return r.fail(fmt.Errorf("the device still holds the root certificate %q after deleting it", id))
		}
		r.res.RootID = id
		r.report(StepRemoveRoot, Done, "Removed Presence's root certificate (%s).", id)
	}

	// The user-initiated state, when asked.
	r.report(StepUIC, Running, "Putting the user-initiated connection state back.")
	if opt.UserInitiated == 0 || st.uic.EnabledState == opt.UserInitiated {
		r.report(StepUIC, Skipped, "The user-initiated connection state is left at %d.", st.uic.EnabledState)
		return nil
	}
	if err := r.s.RequestUserInitiatedState(ctx, opt.UserInitiated); err != nil {
		return r.fail(err)
	}
	r.wrote(fmt.Sprintf("the user-initiated connection state (%d, was %d)", opt.UserInitiated, st.uic.EnabledState))
	u, err := r.s.UserInitiatedConnection(ctx)
	if err != nil {
		return r.fail(err)
	}
	if u.EnabledState != opt.UserInitiated {
		return r.fail(fmt.Errorf("the device kept the user-initiated connection state %d", u.EnabledState))
	}
	r.report(StepUIC, Done, "The user-initiated connection state is %d again.", opt.UserInitiated)
	return nil
}

// decode64 decodes a rule's ExtendedData (nil if it is not base64).
func decode64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		return nil
	}
	return b
}
