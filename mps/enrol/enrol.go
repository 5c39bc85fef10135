// Package enrol configures CIRA in a provisioned Intel AMT device over its
// LAN WS-Man (enrol.md §9), so that the device opens its tunnel to this
// Presence instance, and removes that configuration again (§10).
//
// An [Enroller] runs the sequence on one device through a [wsman.Client]
// whose Dial reaches the device's LAN address (16992, or 16993 with
// [PinnedTLS]). Every write is skipped when its target already holds (each
// write costs AMT flash) and checked by reading it back; re-running an
// enrolment leaves exactly one entry for this instance and one rule per
// trigger. Waiting for the tunnel is the caller's: [Result] GUID names the
// device as the server will know it.
package enrol

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/wsman"
)

// Entry is an MPS entry as AMT is given it.
type Entry struct {
	// Address is what AMT dials: an IPv4 or IPv6 literal or a host name
	// (normalised by [AccessInfo]).
	Address string
	// Port is the MPS's CIRA port.
	Port int
	// CN is exactly the common name in the MPS's server certificate.
	CN string
}

// State is where a step is.
type State string

// The states of a step.
const (
	Running State = "running"
	Done    State = "done"
	Skipped State = "skipped"
	Failed  State = "failed"
)

// Names of the steps, in the order they run.
const (
	StepRead          = "read"
	StepAccount       = "account"
	StepRoot          = "root"
	StepCleanup       = "cleanup"
	StepPrimary       = "mps"
	StepBackup        = "backup-mps"
	StepPeriodic      = "rule-periodic"
	StepUserInitiated = "rule-user-initiated"
	StepAssociations  = "associations"
	StepUIC           = "user-initiated-service"
	StepEnvironment   = "environment-detection"
)

// Step is one step's progress: a name, a state and a sentence for the
// admin.
type Step struct {
	Name     string
	State    State
	Sentence string
}

// Defaults of an enrolment.
const (
	// PeriodicInterval is the periodic rule's interval (RPS's and the SDK
	// example's 25 s).
	PeriodicInterval = 25
	// UserInitiatedLifetime is the user-initiated rule's tunnel lifetime
	// in seconds, RPS's value.
	UserInitiatedLifetime = 300
	// DefaultTimeout bounds an enrolment whose context has no deadline.
	DefaultTimeout = 3 * time.Minute
	// readBackTimeout bounds the read after the environment detection Put,
	// which may find the LAN ports already closed.
	readBackTimeout = 5 * time.Second
)

// Enroller enrols one device. Fields other than Client, Device, Root and
// Primary are optional.
type Enroller struct {
	// Client talks WS-Man to the device; Device is the name its Dial
	// understands (the LAN address).
	Client *wsman.Client
	Device string
	// Root is the DER of the MPS root certificate the device must trust.
	Root []byte
	// Primary is this instance's MPS entry; Backup, if set, a fleet
	// peer's, given as the second server of every rule.
	Primary Entry
	Backup  *Entry
	// Replace lets enrolment delete a Periodic or User Initiated rule of
	// another MPS (and the other MPS entries it leaves unused) instead of
	// refusing.
	Replace bool
	// Rewrite writes this instance's MPS entries again even when they
	// match, for when the CIRA password changed (AMT does not return it,
	// so Presence cannot tell).
	Rewrite bool
	// Account returns the device's CIRA account, creating it the first
	// time; it is called, and must have persisted the account, before the
	// device is given it. [NewUser] and [NewPassword] make one.
	Account func(ctx context.Context, guid string) (user string, password []byte, err error)
	// Progress, if set, is called at each step's start and end.
	Progress func(Step)
}

// Result is what an enrolment or a removal did.
type Result struct {
	// GUID is the device's GUID as its tunnel announces it (lower case,
	// with dashes).
	GUID string
	// ControlMode is "ACM" or "CCM"; Firmware the Server header's version
	// ("16.1", "" if unknown).
	ControlMode string
	Firmware    string
	// RootID is the InstanceID of the MPS root in the device.
	RootID string
	// SAPs are the Names of this instance's MPS entries (primary, then
	// backup); Rules the PolicyRuleNames of its rules.
	SAPs  []string
	Rules []string
	// UserInitiatedBefore is the user-initiated service's EnabledState
	// before enrolment changed it (0 if it did not).
	UserInitiatedBefore int
	// DetectionString is the environment detection string written.
	// PreviousDetectionStrings are the strings it replaced, to be given
	// back to [Enroller.Unenrol]; PreviousKnown is false when the device
	// already held a Presence string (a re-run), so the first run's
	// strings are the ones to keep.
	DetectionString          string
	PreviousDetectionStrings []string
	PreviousKnown            bool
	// Writes lists the writes done, each as a sentence fragment.
	Writes []string
	// Notes are things the admin should know (a backup left out, an old
	// firmware, the LAN ports closing).
	Notes []string
	Steps []Step
}

// Error is an enrolment or removal that stopped at a step: what failed,
// and what had been written before.
type Error struct {
	Step    string
	Device  string
	Written []string
	Remove  bool // a removal
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	verb := "Enrolment"
	if e.Remove {
		verb = "Removal"
	}
	fmt.Fprintf(&b, "%s of %s stopped at step %q: %s", verb, e.Device, e.Step, sentence(e.Err))
	if len(e.Written) == 0 {
		b.WriteString(" Nothing was written to the device.")
	} else {
		b.WriteString(" Written so far: " + strings.Join(e.Written, "; ") + ".")
	}
	if !e.Remove && len(e.Written) > 0 {
		fmt.Fprintf(&b, " Run `presence enrol %s` again to finish, or `presence unenrol %s` to undo.", e.Device, e.Device)
	} else if e.Remove {
		fmt.Fprintf(&b, " Run `presence unenrol %s` again to finish.", e.Device)
	}
	return b.String()
}

// Unwrap returns the cause (a wsman error, a refusal).
func (e *Error) Unwrap() error { return e.Err }

// Refusals before anything is written.
var (
	// ErrNotProvisioned: the device is not in post-provisioning.
	ErrNotProvisioned = errors.New("the device is not provisioned")
	// ErrNoCIRA: the device has no user-initiated connection service.
	ErrNoCIRA = errors.New("the device does not support CIRA")
	// ErrForeignRule: a Periodic or User Initiated rule belongs to another
	// MPS and Replace is not set.
	ErrForeignRule = errors.New("a remote access rule belongs to another MPS")
	// ErrNoRoom: the device cannot hold another MPS entry.
	ErrNoRoom = errors.New("the device has no room for another MPS entry")
)

// refusal is an error with its own sentence, wrapping a sentinel.
type refusal struct {
	sentinel error
	text     string
}

func (r *refusal) Error() string { return r.text }
func (r *refusal) Unwrap() error { return r.sentinel }

func refuse(sentinel error, format string, args ...any) error {
	return &refusal{sentinel, fmt.Sprintf(format, args...)}
}

// sentence is err as a sentence for the admin.
func sentence(err error) string {
	var r *refusal
	var he *wsman.HTTPError
	var se *wsman.StatusError
	switch {
	case errors.As(err, &r):
		return r.text
	case errors.As(err, &he):
		if he.Body == "" {
			return fmt.Sprintf("The device answered HTTP %d with no body (AMT answers invalid input this way, for instance a CIRA password it does not accept).", he.Status)
		}
		return fmt.Sprintf("The device answered HTTP %d: %q.", he.Status, he.Body)
	case errors.As(err, &se):
		return fmt.Sprintf("The device refused %s with %s (%d).", se.Method, orCode(se.Name()), se.Value)
	}
	if s := wsman.Sentence(err); s != "" && s != "The request failed." {
		return s
	}
	return strings.TrimSuffix(err.Error(), ".") + "."
}

func orCode(n string) string {
	if n == "" {
		return "a status code"
	}
	return n
}

// run is the state of one enrolment or removal.
type run struct {
	e      *Enroller
	s      *wsman.Session
	res    *Result
	step   string
	remove bool
}

func (r *run) report(name string, st State, format string, args ...any) {
	r.step = name
	s := Step{Name: name, State: st, Sentence: fmt.Sprintf(format, args...)}
	r.res.Steps = append(r.res.Steps, s)
	if r.e.Progress != nil {
		r.e.Progress(s)
	}
}

func (r *run) wrote(what string) { r.res.Writes = append(r.res.Writes, what) }

// fail reports the current step failed and returns the error.
func (r *run) fail(err error) error {
	r.report(r.step, Failed, "%s", sentence(err))
	return &Error{Step: r.step, Device: r.e.Device, Written: slices.Clone(r.res.Writes), Remove: r.remove, Err: err}
}

// state is what the reads found.
type state struct {
	prov    wsman.Provisioning
	uic     wsman.UserInitiatedConnection
	caps    wsman.RemoteAccessCapabilities
	capsOK  bool
	saps    []wsman.MPServer
	rules   []wsman.PolicyRule
	applies []wsman.PolicyAppliesToMPS
	certs   []wsman.PublicKeyCertificate
	env     wsman.EnvironmentDetection
}

// serversOf returns the SAP names of a rule, in OrderOfAccess (then
// enumeration) order.
func (st *state) serversOf(rule string) []string {
	var as []wsman.PolicyAppliesToMPS
	for _, a := range st.applies {
		if a.Rule() == rule {
			as = append(as, a)
		}
	}
	slices.SortStableFunc(as, func(a, b wsman.PolicyAppliesToMPS) int { return a.OrderOfAccess - b.OrderOfAccess })
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.SAP())
	}
	return out
}

func (st *state) ruleOf(trigger int) *wsman.PolicyRule {
	for i := range st.rules {
		if st.rules[i].Trigger == trigger {
			return &st.rules[i]
		}
	}
	return nil
}

// readMPS re-reads the MPS entries, rules and associations.
func (r *run) readMPS(ctx context.Context, st *state) error {
	var err error
	if st.saps, err = r.s.MPServers(ctx); err != nil {
		return err
	}
	if st.rules, err = r.s.PolicyRules(ctx); err != nil {
		return err
	}
	st.applies, err = r.s.PolicyAppliesToMPS(ctx)
	return err
}

// read reads the device's state; refusals come from here.
func (r *run) read(ctx context.Context, needProvisioned bool) (*state, error) {
	st := &state{}
	var err error
	if st.prov, err = r.s.Provisioning(ctx); err != nil {
		return nil, err
	}
	r.res.ControlMode = st.prov.ControlMode()
	if ma, mi, ok := wsman.FirmwareVersion(r.s.Server()); ok {
		r.res.Firmware = fmt.Sprintf("%d.%d", ma, mi)
	}
	if needProvisioned && !st.prov.Provisioned() {
		return nil, refuse(ErrNotProvisioned, "The device is not provisioned: activate it in CCM or ACM first (its ProvisioningState is %d; activate it with rpc-go or in the MEBx), then enrol it.", st.prov.ProvisioningState)
	}
	if st.uic, err = r.s.UserInitiatedConnection(ctx); err != nil {
		if errors.Is(err, wsman.ErrCredentials) || errors.Is(err, wsman.ErrTunnel) {
			return nil, err
		}
		return nil, refuse(ErrNoCIRA, "The device does not support CIRA: it has no user-initiated connection service (%s)", strings.TrimSuffix(sentence(err), "."))
	}
	g, err := r.s.PlatformGUID(ctx)
	if err != nil {
		return nil, err
	}
	if r.res.GUID, err = guidFromPlatform(g); err != nil {
		return nil, err
	}
	st.caps, err = r.s.RemoteAccessCapabilities(ctx)
	st.capsOK = err == nil
	if err != nil && (errors.Is(err, wsman.ErrCredentials) || errors.Is(err, wsman.ErrTunnel)) {
		return nil, err
	}
	if err := r.readMPS(ctx, st); err != nil {
		return nil, err
	}
	if st.certs, err = r.s.PublicKeyCertificates(ctx); err != nil {
		return nil, err
	}
	if st.env, err = r.s.EnvironmentDetection(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// entry is an Entry resolved for AMT.
type entry struct {
	accessInfo string
	format     int
	port       int
	cn         string
}

func resolve(e Entry) (entry, error) {
	ai, f, err := AccessInfo(e.Address)
	if err != nil {
		return entry{}, err
	}
	if e.Port <= 0 || e.Port > 65535 {
		return entry{}, fmt.Errorf("MPS port %d is out of range", e.Port)
	}
	if strings.TrimSpace(e.CN) == "" {
		return entry{}, errors.New("the MPS certificate's common name is empty")
	}
	return entry{ai, f, e.Port, e.CN}, nil
}

// is reports whether the SAP is this entry's (MeshCentral's test, enrol.md
// §1: AccessInfo, Port and InfoFormat).
func (en entry) is(s wsman.MPServer) bool {
	return strings.EqualFold(strings.TrimSuffix(s.AccessInfo, "."), en.accessInfo) && s.Port == en.port && s.InfoFormat == en.format
}

func (en entry) String() string { return fmt.Sprintf("%s:%d", en.accessInfo, en.port) }

// Enrol runs the enrolment sequence of enrol.md §9 on the device. On a
// failure after the first write the error is an [*Error] that lists what
// was written and says how to finish or undo.
func (e *Enroller) Enrol(ctx context.Context) (Result, error) {
	res := Result{}
	if e.Client == nil || e.Device == "" || len(e.Root) == 0 || e.Account == nil {
		return res, errors.New("enrol: Client, Device, Root and Account are required")
	}
	prim, err := resolve(e.Primary)
	if err != nil {
		return res, fmt.Errorf("this instance's MPS entry: %w", err)
	}
	var back *entry
	if e.Backup != nil {
		b, err := resolve(*e.Backup)
		if err != nil {
			return res, fmt.Errorf("the backup MPS entry: %w", err)
		}
		if b.is(wsman.MPServer{AccessInfo: prim.accessInfo, Port: prim.port, InfoFormat: prim.format}) {
			return res, errors.New("the backup MPS entry is this instance's own")
		}
		back = &b
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	err = e.Client.Do(ctx, e.Device, func(ctx context.Context, s *wsman.Session) error {
		r := &run{e: e, s: s, res: &res}
		return r.enrol(ctx, prim, back)
	})
	return res, err
}

func (r *run) enrol(ctx context.Context, prim entry, back *entry) error {
	r.report(StepRead, Running, "Reading the device's AMT configuration.")
	st, err := r.read(ctx, true)
	if err != nil {
		return r.fail(err)
	}
	if back != nil && st.capsOK && st.caps.MaxMpsPerPolicy > 0 && st.caps.MaxMpsPerPolicy < 2 {
		r.res.Notes = append(r.res.Notes, "The device allows one MPS per rule: the backup was left out.")
		back = nil
	}
	r.report(StepRead, Done, "The device %s is provisioned in %s, firmware %s, with %d MPS entries and %d rules.",
		r.res.GUID, orUnknown(r.res.ControlMode), orUnknown(r.res.Firmware), len(st.saps), len(st.rules))

	// The plan, checked before any write.
	entries := []entry{prim}
	if back != nil {
		entries = append(entries, *back)
	}
	ours := func(s wsman.MPServer) bool {
		for _, en := range entries {
			if en.is(s) {
				return true
			}
		}
		return false
	}
	// keep[i] is the SAP kept for entries[i] ("" to add one).
	keep := make([]string, len(entries))
	for i, en := range entries {
		if r.e.Rewrite {
			continue
		}
		for _, s := range st.saps {
			if en.is(s) && s.CN == en.cn && !slices.Contains(keep, s.Name) {
				keep[i] = s.Name
				break
			}
		}
	}
	kept := func(name string) bool { return name != "" && slices.Contains(keep, name) }
	var stale []string // Presence's SAPs that go
	for _, s := range st.saps {
		if ours(s) && !kept(s.Name) {
			stale = append(stale, s.Name)
		}
	}
	specs := []wsman.PolicyRuleSpec{
		{Trigger: wsman.TriggerPeriodic, TunnelLifeTime: 0, ExtendedData: wsman.PeriodicInterval(PeriodicInterval)},
		{Trigger: wsman.TriggerUserInitiated, TunnelLifeTime: UserInitiatedLifetime},
	}
	// Rules: current (kept), ours to redo, foreign ones.
	current := map[int]bool{}
	var delRules []string
	var readd []wsman.PolicyRuleSpec // rules re-added with only the other servers
	for _, rule := range st.rules {
		servers := st.serversOf(rule.PolicyRuleName)
		var foreign, mine []string
		for _, n := range servers {
			if slices.Contains(stale, n) || kept(n) {
				mine = append(mine, n)
			} else {
				foreign = append(foreign, n)
			}
		}
		ours := rule.Trigger == wsman.TriggerPeriodic || rule.Trigger == wsman.TriggerUserInitiated
		switch {
		case ours && len(foreign) > 0 && !r.e.Replace:
			return r.fail(refuse(ErrForeignRule, "The device's %q rule sends it to another MPS (%s): enrol it with --replace to make Presence its MPS instead, or remove that rule first.", rule.PolicyRuleName, r.describe(st, foreign)))
		case ours && len(foreign) > 0:
			delRules = append(delRules, rule.PolicyRuleName)
		case ours:
			spec := specs[0]
			if rule.Trigger == wsman.TriggerUserInitiated {
				spec = specs[1]
			}
			if slices.Equal(servers, keep) && !slices.Contains(keep, "") && matches(rule, spec) {
				current[rule.Trigger] = true
				continue
			}
			delRules = append(delRules, rule.PolicyRuleName)
		case len(mine) > 0 && hasStale(mine, stale):
			// Another trigger (Alert) naming an old Presence entry: redo it
			// without the entries that go.
			delRules = append(delRules, rule.PolicyRuleName)
			var rest []string
			for _, n := range servers {
				if !slices.Contains(stale, n) {
					rest = append(rest, n)
				}
			}
			if len(rest) > 0 {
				readd = append(readd, wsman.PolicyRuleSpec{Trigger: rule.Trigger, TunnelLifeTime: rule.TunnelLifeTime, ExtendedData: decode64(rule.ExtendedData), MpServers: rest})
			}
		}
	}
	// With Replace, other MPS entries left without a rule go too, to make
	// room.
	var delForeign []string
	if r.e.Replace {
		for _, s := range st.saps {
			if ours(s) {
				continue
			}
			used := false
			for _, a := range st.applies {
				if a.SAP() == s.Name && !slices.Contains(delRules, a.Rule()) {
					used = true
				}
			}
			if !used {
				delForeign = append(delForeign, s.Name)
			}
		}
	}
	adds := 0
	for _, k := range keep {
		if k == "" {
			adds++
		}
	}
	if st.capsOK && st.caps.MaxTotalMpServers > 0 {
		if n := len(st.saps) - len(stale) - len(delForeign) + adds; n > st.caps.MaxTotalMpServers {
			return r.fail(refuse(ErrNoRoom, "The device holds %d MPS entries of its maximum %d and Presence needs %d more: enrol it with --replace to remove the other MPS entries, or remove one first.", len(st.saps)-len(stale), st.caps.MaxTotalMpServers, adds))
		}
	}

	// The account, persisted before the device is given it.
	r.report(StepAccount, Running, "Getting the device's CIRA account from the vault.")
	user, pw, err := r.e.Account(ctx, r.res.GUID)
	if err != nil {
		return r.fail(fmt.Errorf("the vault could not keep the device's CIRA account: %w", err))
	}
	defer clear(pw)
	if user == "" || len(user) > wsman.MaxMPSUser || !strongPassword(pw) {
		return r.fail(errors.New("the device's CIRA account is not one AMT accepts (a user name of 1 to 16 characters and a strong password of 8 to 16): remove it from the vault and enrol again"))
	}
	r.report(StepAccount, Done, "The device logs in to Presence as %q; the password is in the vault.", user)

	// The root.
	r.report(StepRoot, Running, "Installing Presence's MPS root certificate.")
	if id := certID(st.certs, r.e.Root); id != "" {
		r.res.RootID = id
		r.report(StepRoot, Skipped, "The device already trusts Presence's root (%s).", id)
	} else {
		id, existed, err := r.s.AddTrustedRootCertificate(ctx, r.e.Root)
		if err != nil {
			return r.fail(err)
		}
		r.res.RootID = id
		if !existed {
			r.wrote("the root certificate (" + id + ")")
		}
		if st.certs, err = r.s.PublicKeyCertificates(ctx); err != nil {
			return r.fail(err)
		}
		if certID(st.certs, r.e.Root) != id {
			return r.fail(fmt.Errorf("the device answered that it added the root certificate %s, but does not list it", id))
		}
		r.report(StepRoot, Done, "The device trusts Presence's root (%s).", id)
	}

	// Clean-up: rules first (a SAP in use cannot be deleted), then SAPs.
	r.report(StepCleanup, Running, "Removing Presence's older MPS entries and the rules that use them.")
	if len(delRules)+len(stale)+len(delForeign) == 0 {
		r.report(StepCleanup, Skipped, "Nothing to remove.")
	} else {
		for _, n := range delRules {
			if err := r.s.DeletePolicyRule(ctx, n); err != nil && !errors.Is(err, wsman.ErrAbsent) {
				return r.fail(err)
			}
			r.wrote("deleted the rule " + q(n))
		}
		for _, spec := range readd {
			n, err := r.s.AddRemoteAccessPolicyRule(ctx, spec)
			if err != nil {
				return r.fail(err)
			}
			r.wrote("re-added the rule " + q(n) + " with only " + strings.Join(spec.MpServers, ", "))
		}
		for _, n := range append(slices.Clone(stale), delForeign...) {
			if err := r.s.DeleteMpServer(ctx, n); err != nil && !errors.Is(err, wsman.ErrAbsent) {
				return r.fail(err)
			}
			r.wrote("deleted the MPS entry " + q(n))
		}
		if err := r.readMPS(ctx, st); err != nil {
			return r.fail(err)
		}
		for _, s := range st.saps {
			if slices.Contains(stale, s.Name) || slices.Contains(delForeign, s.Name) {
				return r.fail(fmt.Errorf("the device still lists the MPS entry %q after deleting it", s.Name))
			}
		}
		r.report(StepCleanup, Done, "Removed %d rules and %d MPS entries.", len(delRules), len(stale)+len(delForeign))
	}

	// The MPS entries.
	steps := []string{StepPrimary, StepBackup}
	for i, en := range entries {
		name := steps[i]
		r.report(name, Running, "Adding the MPS entry %s (certificate name %q).", en, en.cn)
		if keep[i] != "" {
			r.report(name, Skipped, "The device already has the MPS entry %s (%s).", en, keep[i])
			continue
		}
		sap, err := r.s.AddMpServer(ctx, wsman.MPServerEntry{AccessInfo: en.accessInfo, InfoFormat: en.format, Port: en.port, CN: en.cn, Username: user, Password: pw})
		if err != nil {
			return r.fail(err)
		}
		r.wrote("the MPS entry " + q(sap) + " for " + en.String())
		keep[i] = sap
		if st.saps, err = r.s.MPServers(ctx); err != nil {
			return r.fail(err)
		}
		ok := false
		for _, s := range st.saps {
			ok = ok || (s.Name == sap && en.is(s))
		}
		if !ok {
			return r.fail(fmt.Errorf("the device answered that it added the MPS entry %q, but does not list it as %s", sap, en))
		}
		r.report(name, Done, "Added the MPS entry %s as %q.", en, sap)
	}
	r.res.SAPs = slices.Clone(keep)

	// The rules.
	ruleSteps := []string{StepPeriodic, StepUserInitiated}
	for i, spec := range specs {
		spec.MpServers = slices.Clone(keep)
		name := ruleSteps[i]
		what := "the periodic rule (every 25 s, tunnel kept open)"
		if spec.Trigger == wsman.TriggerUserInitiated {
			what = "the user-initiated rule (tunnel lifetime 300 s, as RPS sets it)"
		}
		r.report(name, Running, "Adding %s.", what)
		if current[spec.Trigger] {
			rn := st.ruleOf(spec.Trigger).PolicyRuleName
			r.res.Rules = append(r.res.Rules, rn)
			r.report(name, Skipped, "The device already has %s naming Presence (%q).", what, rn)
			continue
		}
		rn, err := r.s.AddRemoteAccessPolicyRule(ctx, spec)
		if err != nil {
			return r.fail(err)
		}
		r.wrote("the rule " + q(rn))
		r.res.Rules = append(r.res.Rules, rn)
		if err := r.readMPS(ctx, st); err != nil {
			return r.fail(err)
		}
		if got := st.serversOf(rn); !slices.Equal(sortedCopy(got), sortedCopy(keep)) {
			return r.fail(fmt.Errorf("the device answered that it added the rule %q, but it names %v, not %v", rn, got, keep))
		}
		r.report(name, Done, "Added %s as %q.", what, rn)
	}

	// The associations: MpsType 2 (both), OrderOfAccess by position.
	r.report(StepAssociations, Running, "Making Presence's entries eligible inside and outside the enterprise (MpsType 2) in order.")
	if ma, mi, ok := wsman.FirmwareVersion(r.s.Server()); ok && (ma < 11 || ma == 11 && mi < 6) {
		r.res.Notes = append(r.res.Notes, "Firmware before 11.6 has no MpsType: the device dials Presence only when it is outside the enterprise.")
		r.report(StepAssociations, Skipped, "Firmware %d.%d has no MpsType (added in 11.6).", ma, mi)
	} else {
		puts := 0
		for _, a := range st.applies {
			if !slices.Contains(r.res.Rules, a.Rule()) {
				continue
			}
			order := slices.Index(keep, a.SAP())
			if order < 0 || a.MpsType == wsman.MpsTypeBoth && a.OrderOfAccess == order {
				continue
			}
			a.MpsType, a.OrderOfAccess = wsman.MpsTypeBoth, order
			if err := r.s.PutPolicyAppliesToMPS(ctx, a); err != nil {
				return r.fail(err)
			}
			puts++
			r.wrote(fmt.Sprintf("the association of %q with %q (MpsType 2, order %d)", a.Rule(), a.SAP(), order))
		}
		if puts == 0 {
			r.report(StepAssociations, Skipped, "The associations already say MpsType 2 in order.")
		} else {
			if st.applies, err = r.s.PolicyAppliesToMPS(ctx); err != nil {
				return r.fail(err)
			}
			for _, a := range st.applies {
				if order := slices.Index(keep, a.SAP()); slices.Contains(r.res.Rules, a.Rule()) && order >= 0 &&
					(a.MpsType != wsman.MpsTypeBoth || a.OrderOfAccess != order) {
					return r.fail(fmt.Errorf("the device kept MpsType %d, order %d for %q with %q", a.MpsType, a.OrderOfAccess, a.Rule(), a.SAP()))
				}
			}
			r.report(StepAssociations, Done, "Set %d associations to MpsType 2 in order.", puts)
		}
	}

	// The user-initiated connection service.
	r.report(StepUIC, Running, "Allowing user-initiated connections from the BIOS and the OS.")
	if st.uic.EnabledState == wsman.UserInitiatedBIOSAndOS {
		r.report(StepUIC, Skipped, "User-initiated connections are already allowed from the BIOS and the OS.")
	} else {
		if err := r.s.RequestUserInitiatedState(ctx, wsman.UserInitiatedBIOSAndOS); err != nil {
			return r.fail(err)
		}
		r.res.UserInitiatedBefore = st.uic.EnabledState
		r.wrote(fmt.Sprintf("the user-initiated connection state (32771, was %d)", st.uic.EnabledState))
		u, err := r.s.UserInitiatedConnection(ctx)
		if err != nil {
			return r.fail(err)
		}
		if u.EnabledState != wsman.UserInitiatedBIOSAndOS {
			return r.fail(fmt.Errorf("the device kept the user-initiated connection state %d", u.EnabledState))
		}
		r.report(StepUIC, Done, "User-initiated connections are allowed from the BIOS and the OS.")
	}

	// Environment detection, last: the device then considers itself
	// outside, dials Presence and may close its LAN ports (enrol.md §8).
	r.report(StepEnvironment, Running, "Setting environment detection so that the device always dials Presence.")
	if isPresenceDetection(st.env.DetectionStrings) {
		r.res.DetectionString = st.env.DetectionStrings[0]
		r.report(StepEnvironment, Skipped, "Environment detection already holds Presence's string %q.", st.env.DetectionStrings[0])
		return nil
	}
	r.res.PreviousDetectionStrings = slices.Clone(st.env.DetectionStrings)
	r.res.PreviousKnown = true
	env := st.env
	env.DetectionStrings = []string{newDetectionString()}
	if err := r.s.PutEnvironmentDetection(ctx, env); err != nil {
		return r.fail(err)
	}
	r.res.DetectionString = env.DetectionStrings[0]
	r.wrote(fmt.Sprintf("environment detection %q (was %q)", env.DetectionStrings[0], st.env.DetectionStrings))
	rctx, cancel := context.WithTimeout(ctx, readBackTimeout)
	got, err := r.s.EnvironmentDetection(rctx)
	cancel()
	switch {
	case err == nil && !slices.Equal(got.DetectionStrings, env.DetectionStrings):
		return r.fail(fmt.Errorf("the device kept the detection strings %q", got.DetectionStrings))
	case err == nil:
		r.report(StepEnvironment, Done, "Environment detection holds %q; the device now dials Presence.", env.DetectionStrings[0])
	case errors.Is(err, wsman.ErrTunnel):
		// Expected: outside the enterprise AMT closes its LAN ports.
		r.res.Notes = append(r.res.Notes, "The device closed its LAN ports after environment detection was set, as AMT does outside the enterprise: manage it through its tunnel from now on.")
		r.report(StepEnvironment, Done, "Environment detection holds %q; the device closed its LAN ports, as expected, and now dials Presence.", env.DetectionStrings[0])
	default:
		return r.fail(err)
	}
	return nil
}

// matches reports whether a rule has the spec's trigger, lifetime and
// extended data.
func matches(rule wsman.PolicyRule, spec wsman.PolicyRuleSpec) bool {
	return rule.Trigger == spec.Trigger && rule.TunnelLifeTime == spec.TunnelLifeTime &&
		string(decode64(rule.ExtendedData)) == string(spec.ExtendedData)
}

func hasStale(names, stale []string) bool {
	for _, n := range names {
		if slices.Contains(stale, n) {
			return true
		}
	}
	return false
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func q(s string) string { return fmt.Sprintf("%q", s) }

// describe names SAPs by their address for a sentence.
func (r *run) describe(st *state, names []string) string {
	var out []string
	for _, n := range names {
		d := n
		for _, s := range st.saps {
			if s.Name == n {
				d = fmt.Sprintf("%s:%d", s.AccessInfo, s.Port)
			}
		}
		out = append(out, d)
	}
	return strings.Join(out, ", ")
}

// certID returns the InstanceID of the certificate whose DER is der.
func certID(certs []wsman.PublicKeyCertificate, der []byte) string {
	for _, c := range certs {
		if string(c.DER()) == string(der) {
			return c.InstanceID
		}
	}
	return ""
}
