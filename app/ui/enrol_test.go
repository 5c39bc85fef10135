package ui

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/app/ui/uitest"
	"github.com/presence-mps/presence/vault"
)

// fakeEnrol is a backend that enrols: each Enrol plays steps and ends with
// res or err. The dialog's behaviour against the real instance and a
// simulated device is tested in app/adapter.
type fakeEnrol struct {
	*fakeBackend
	reqs  []EnrolRequest
	steps []EnrolStep
	res   EnrolResult
	err   error
	// during, if set, runs after each step reported, while Enrol still
	// runs: what the dialog shows then is what the admin sees live.
	during func(EnrolStep)
	// Connection problems.
	problems []Problem
	readErr  error
	reads    int
	allowed  []string
	allowErr error
}

func (f *fakeEnrol) Enrol(req EnrolRequest, progress func(EnrolStep)) (EnrolResult, error) {
	f.reqs = append(f.reqs, req)
	for _, s := range f.steps {
		progress(s)
		if f.during != nil {
			f.during(s)
		}
	}
	return f.res, f.err
}

func (f *fakeEnrol) ConnectionProblems() ([]Problem, error) {
	f.reads++
	return slices.Clone(f.problems), f.readErr
}

func (f *fakeEnrol) AllowLegacyTLS(guid string) error {
	f.allowed = append(f.allowed, guid)
	return f.allowErr
}

func newFakeEnrol() *fakeEnrol {
	return &fakeEnrol{fakeBackend: &fakeBackend{snap: Snapshot{Proxy: ":1080", Devices: fleet(2), Taken: time.Unix(1_764_000_000, 0)}}}
}

func enrolWindow(t *testing.T, b Backend) (*UI, fyne.Window) {
	t.Helper()
	test.NewTempApp(t)
	u := newTestUI(b)
	w := test.NewTempWindow(t, u.Root)
	w.Resize(fyne.NewSize(1200, 800))
	u.Refresh()
	return u, w
}

var tlsSteps = []EnrolStep{
	{Step: "read", State: StepRunning, Sentence: "Reading the device over WS-Man."},
	{Step: "read", State: StepDone, Sentence: "AMT 16.1, admin control mode, no MPS entry."},
	{Step: "root", State: StepRunning},
	{Step: "root", State: StepDone, Sentence: "The MPS root is a trusted root of the device."},
	{Step: "other", State: StepSkipped, Sentence: "No other MPS's entries."},
	{Step: "tunnel", State: StepDone, Sentence: "The tunnel is up."},
}

// The Devices screen's "Add a device on the LAN…" opens the form; Start
// waits for an address and a password; the enrolment gets what was typed
// (the user defaults to admin), the password entry is cleared at once,
// each step is shown as it is reported, updated in place, and the end says
// the GUID, that the tunnel is up and the certificate now pinned.
func TestEnrolDialogSteps(t *testing.T) {
	b := newFakeEnrol()
	b.steps = tlsSteps
	b.res = EnrolResult{Address: "192.0.2.50:16993", GUID: "11111111-2222-4333-8444-555555555555", Connected: true,
		Certificate: "ab12cd34", Notes: []string{"the AMT account admin is kept for this device"}}
	u, w := enrolWindow(t, b)
	if u.Dev.AddLAN == nil {
		t.Fatal("no Add a device on the LAN button with an enrolling backend")
	}
	test.Tap(u.Dev.AddLAN)
	if !strings.Contains(uitest.DialogText(w), "Add a device on the LAN") {
		t.Fatalf("dialog after the button: %q", uitest.DialogText(w))
	}
	uitest.TapDialogButton(t, w, "Close")
	if w.Canvas().Overlays().Top() != nil {
		t.Fatal("a dialog is still open after Close")
	}
	e, _ := u.OpenEnrol("")
	if e.User.Text != "admin" || !e.Start.Disabled() {
		t.Fatalf("fresh form: user %q, Start disabled %v; want admin, true", e.User.Text, e.Start.Disabled())
	}
	test.Type(e.Address, "192.0.2.50")
	if !e.Start.Disabled() {
		t.Fatal("Start enabled without a password")
	}
	test.Type(e.Password, "Sec ret-1!")
	test.Tap(e.TLS)
	if e.Start.Disabled() {
		t.Fatal("Start disabled with an address and a password")
	}
	var live [][]string
	b.during = func(EnrolStep) {
		live = append(live, e.StepLines())
		if e.Password.Text != "" || !e.Running() || !e.Start.Disabled() || !e.Address.Disabled() {
			t.Errorf("while running: password %q, running %v, Start disabled %v, address disabled %v", e.Password.Text, e.Running(), e.Start.Disabled(), e.Address.Disabled())
		}
	}
	uitest.TapDialogButton(t, w, "Start")
	want := EnrolRequest{Address: "192.0.2.50", User: "admin", Password: vault.Secret("Sec ret-1!"), TLS: true}
	if len(b.reqs) != 1 || b.reqs[0] != want {
		t.Fatalf("requests %+v; want one %+v", b.reqs, want)
	}
	if e.Password.Text != "" {
		t.Fatalf("password entry after Start: %q; want it cleared", e.Password.Text)
	}
	if len(live) != len(tlsSteps) || len(live[0]) != 1 || live[0][0] != "read — running: Reading the device over WS-Man." ||
		len(live[1]) != 1 || !strings.HasPrefix(live[1][0], "read — done: AMT 16.1") || len(live[3]) != 2 {
		t.Fatalf("steps as shown live: %q", live)
	}
	lines := e.StepLines()
	wantLines := []string{"read — done: AMT 16.1, admin control mode, no MPS entry.", "root — done: The MPS root is a trusted root of the device.",
		"other — skipped: No other MPS's entries.", "tunnel — done: The tunnel is up."}
	if !slices.Equal(lines, wantLines) {
		t.Fatalf("steps at the end:\n%q\nwant\n%q", lines, wantLines)
	}
	msg := flatText(e.Msg.Text)
	for _, s := range []string{"11111111-2222-4333-8444-555555555555", "tunnel is up", "SHA-256 ab12cd34, is now pinned", "the AMT account admin is kept"} {
		if !strings.Contains(msg, s) {
			t.Errorf("result %q lacks %q", msg, s)
		}
	}
	if e.Running() || e.Address.Disabled() {
		t.Fatalf("after the end: running %v, address disabled %v", e.Running(), e.Address.Disabled())
	}
	if !e.Start.Disabled() {
		t.Fatal("Start enabled again with the password cleared")
	}
	uitest.TapDialogButton(t, w, "Close")
	if w.Canvas().Overlays().Top() != nil {
		t.Fatal("the dialog is still open after Close")
	}
}

// A failure shows the engine's sentence verbatim (it says what was
// written and how to undo it) below the steps, the failed step marked,
// the password cleared, and the form ready for another try.
func TestEnrolDialogFailure(t *testing.T) {
	b := newFakeEnrol()
	b.steps = []EnrolStep{
		{Step: "read", State: StepDone, Sentence: "AMT 12.0, client control mode."},
		{Step: "mps", State: StepDone, Sentence: "This MPS is entry 1."},
		{Step: "policy", State: StepFailed, Sentence: "The device refused the periodic policy."},
	}
	sentence := "the device refused the periodic policy (AMT_RemoteAccessService.AddRemoteAccessPolicyRule answered 1): written so far: the MPS root, this MPS's entry; run presence unenrol 192.0.2.60 to remove them, or enrol again"
	b.err = errors.New(sentence)
	u, w := enrolWindow(t, b)
	e, ok := u.OpenEnrol("192.0.2.60")
	if !ok || e.Address.Text != "192.0.2.60" {
		t.Fatalf("prefilled address %q, %v", e.Address.Text, ok)
	}
	test.Type(e.Password, "wrong")
	uitest.TapDialogButton(t, w, "Start")
	if got := flatText(e.Msg.Text); got != sentence {
		t.Fatalf("failure shown as %q; want the engine's sentence %q", got, sentence)
	}
	if lines := e.StepLines(); len(lines) != 3 || lines[2] != "policy — failed: The device refused the periodic policy." {
		t.Fatalf("steps: %q", lines)
	}
	if e.Password.Text != "" || e.Password.Disabled() || !e.Start.Disabled() {
		t.Fatalf("after the failure: password %q disabled %v, Start disabled %v", e.Password.Text, e.Password.Disabled(), e.Start.Disabled())
	}
	if u.Problems() != "" {
		t.Fatalf("banner %q: a failure shown in the open dialog stays there", u.Problems())
	}
	test.Type(e.Password, "right")
	if e.Start.Disabled() {
		t.Fatal("Start disabled for another try")
	}
	b.err, b.steps = nil, nil
	b.res = EnrolResult{Address: "192.0.2.60", GUID: "g-2"}
	uitest.TapDialogButton(t, w, "Start")
	if len(b.reqs) != 2 || b.reqs[1].Password != "right" || len(e.StepLines()) != 0 {
		t.Fatalf("second try: %+v, steps %q (the first try's steps should be gone)", b.reqs, e.StepLines())
	}
	if msg := flatText(e.Msg.Text); !strings.Contains(msg, "g-2") || !strings.Contains(msg, "has not come up yet") {
		t.Fatalf("result without a tunnel: %q", msg)
	}
}

// Closing the dialog while the enrolment runs does not stop it (the
// dialog says so); its steps after that touch no widget of it, and its
// failure still reaches the window's banner.
func TestEnrolDialogClosedWhileRunning(t *testing.T) {
	b := newFakeEnrol()
	b.steps = tlsSteps[:2]
	b.err = errors.New("the device did not answer after the MPS entry was written: run presence unenrol 192.0.2.70 to remove it")
	u, w := enrolWindow(t, b)
	var queued []func()
	u.Go = func(f func()) { queued = append(queued, f) }
	e, _ := u.OpenEnrol("192.0.2.70")
	test.Type(e.Password, "pw")
	uitest.TapDialogButton(t, w, "Start")
	if !e.Running() || !strings.Contains(flatText(e.Msg.Text), "Closing this dialog does not stop the enrolment") {
		t.Fatalf("running %v, says %q", e.Running(), e.Msg.Text)
	}
	uitest.TapDialogButton(t, w, "Close")
	if len(queued) != 1 {
		t.Fatalf("%d enrolments queued; want 1", len(queued))
	}
	queued[0]() // the enrolment runs on after the dialog closed
	if len(b.reqs) != 1 || len(e.StepLines()) != 0 {
		t.Fatalf("requests %d, steps shown in the closed dialog %q", len(b.reqs), e.StepLines())
	}
	if got := u.Problems(); !strings.Contains(got, "Enrolling 192.0.2.70 failed: the device did not answer") {
		t.Fatalf("banner %q; want the failure", got)
	}
}

// A backend that does not enrol has no such button.
func TestNoEnrolWithoutBackend(t *testing.T) {
	u, _ := enrolWindow(t, &fakeBackend{snap: Snapshot{Devices: fleet(1)}})
	if u.Dev.AddLAN != nil || u.Doctor != nil {
		t.Fatal("enrol button or problems screen without a backend for them")
	}
	if _, ok := u.OpenEnrol(""); ok {
		t.Fatal("OpenEnrol opened without an EnrolBackend")
	}
}
