package ui

import (
	"errors"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/app/ui/uitest"
	"github.com/presence-mps/presence/vault"
)

const (
	legacyGUID = "0a0a0a0a-0000-4000-8000-000000000001"
	wrongGUID  = "0b0b0b0b-0000-4000-8000-000000000002"
)

func someProblems() []Problem {
	t0 := time.Unix(1_764_000_000, 0)
	return []Problem{
		{Class: "legacy-tls", Sentence: "The device offers only TLS 1.0/1.1, which this MPS does not allow it (offers up to TLS 1.0).",
			Fix: "Allow legacy TLS for device " + legacyGUID + ".", Action: ActionLegacyTLS, Device: legacyGUID, Host: "old-pc",
			Remote: "198.51.100.4:50001", Count: 4, First: t0, Last: t0.Add(90 * time.Second)},
		{Class: "unknown-user", Sentence: "The device logged in as a CIRA user this MPS does not have.", Fix: "No CIRA account is named \"bob\": add it.",
			Action: ActionAddAccount, Remote: "198.51.100.5:50002", User: "bob", Count: 1, First: t0, Last: t0},
		{Class: "wrong-password", Sentence: "The device logged in with a wrong CIRA password.", Fix: "Enrol it again.",
			Action: ActionReEnrol, Device: wrongGUID, Remote: "203.0.113.7:51000", User: "cira-0b0b", Count: 2, First: t0, Last: t0.Add(time.Minute)},
		{Class: "legacy-tls", Sentence: "The device offers only TLS 1.0/1.1, which this MPS does not allow it.", Fix: "Turn on legacy TLS for this device.",
			Action: ActionLegacyTLS, Remote: "198.51.100.9:50009", Count: 3, First: t0, Last: t0},
		{Class: "protocol-error", Sentence: "Something that is not Intel AMT connected to the CIRA port.", Fix: "Find what connects from there.",
			Remote: "192.0.2.99:1234", Count: 7, First: t0, Last: t0},
	}
}

// The screen lists each finding in its sentence with the counts, first
// and last time, device and remote address, and the fix; each fix the
// window can do has its button, and each button does it: legacy TLS is
// allowed through the backend, re-enrol opens the enrol dialog with the
// remote host filled in, add the account hands the user name to the
// Accounts screen.
func TestProblemsScreen(t *testing.T) {
	b := newFakeEnrol()
	b.problems = someProblems()
	u, w := enrolWindow(t, b)
	if u.Doctor == nil {
		t.Fatal("no Connection problems screen with a doctor backend")
	}
	u.Show(ProblemsScreen)
	if b.reads != 1 || len(u.Doctor.Items) != 5 {
		t.Fatalf("after showing the screen: %d reads, %d rows; want 1, 5", b.reads, len(u.Doctor.Items))
	}
	if got := u.Doctor.Summary.Text; got != "5 connection problems, most recent first." {
		t.Fatalf("summary %q", got)
	}
	legacy := flatText(u.Doctor.Items[0].Text.Text)
	first, last := time.Unix(1_764_000_000, 0).Local().Format(time.DateTime), time.Unix(1_764_000_090, 0).Local().Format(time.DateTime)
	for _, s := range []string{"offers only TLS 1.0/1.1", "Seen 4 times, first " + first + ", last " + last,
		"device " + legacyGUID + " (old-pc)", "from 198.51.100.4:50001", "Allow legacy TLS for device"} {
		if !strings.Contains(legacy, s) {
			t.Errorf("legacy row %q lacks %q", legacy, s)
		}
	}
	if got := flatText(u.Doctor.Items[1].Text.Text); !strings.Contains(got, "Seen once, at") || !strings.Contains(got, `user "bob"`) {
		t.Errorf("unknown user row %q", got)
	}
	if u.Doctor.Items[4].Button != nil {
		t.Errorf("a button %q for a fix outside the window", u.Doctor.Items[4].Button.Text)
	}

	// Legacy TLS.
	test.Tap(u.Doctor.Items[0].Button)
	if len(b.allowed) != 1 || b.allowed[0] != legacyGUID {
		t.Fatalf("allowed %q; want %s", b.allowed, legacyGUID)
	}
	if !strings.Contains(flatText(u.Doctor.Msg.Text), "Device "+legacyGUID+" may now connect with TLS 1.0/1.1") || b.reads != 2 {
		t.Fatalf("after allowing: %q, %d reads (want a read again)", u.Doctor.Msg.Text, b.reads)
	}
	b.allowErr = errors.New("the settings could not be saved: disk full")
	test.Tap(u.Doctor.Items[0].Button)
	if got := flatText(u.Doctor.Msg.Text); got != "Legacy TLS could not be allowed for device "+legacyGUID+": the settings could not be saved: disk full" {
		t.Fatalf("refusal %q", got)
	}

	// Legacy TLS for a device refused before its GUID: the admin types it.
	if got := u.Doctor.Items[3].Button.Text; got != "Allow legacy TLS for a device…" {
		t.Fatalf("button of a legacy finding without a GUID: %q", got)
	}
	test.Tap(u.Doctor.Items[3].Button)
	if !strings.Contains(flatText(uitest.DialogText(w)), "The device at 198.51.100.9 offers only TLS 1.0/1.1") {
		t.Fatalf("GUID dialog says %q", uitest.DialogText(w))
	}
	b.allowErr = nil
	test.Type(u.Doctor.LegacyGUID, " 0c0c0c0c-0000-4000-8000-000000000003 ")
	uitest.TapDialogButton(t, w, "Allow")
	if len(b.allowed) != 3 || b.allowed[2] != "0c0c0c0c-0000-4000-8000-000000000003" {
		t.Fatalf("allowed %q; want the GUID typed", b.allowed)
	}

	// Add the account: through the window's hook, else by showing Accounts.
	test.Tap(u.Doctor.Items[1].Button)
	if !strings.Contains(u.Doctor.Msg.Text, `Add the CIRA account "bob" under Accounts`) {
		t.Fatalf("without a hook: %q", u.Doctor.Msg.Text)
	}
	var added []string
	u.AddAccount = func(kind, user string) { added = append(added, kind+"/"+user) }
	test.Tap(u.Doctor.Items[1].Button)
	if len(added) != 1 || added[0] != vault.KindCIRA+"/bob" {
		t.Fatalf("accounts asked for %q; want cira/bob", added)
	}

	// Re-enrol.
	test.Tap(u.Doctor.Items[2].Button)
	if w.Canvas().Overlays().Top() == nil {
		t.Fatal("no enrol dialog after Enrol it again")
	}
	e := u.Doctor.Enrol
	if e == nil {
		t.Fatal("the re-enrol button opened no enrol dialog")
	}
	if e.Address.Text != "203.0.113.7" {
		t.Fatalf("re-enrol prefilled %q; want the remote host 203.0.113.7", e.Address.Text)
	}
}

// While the screen is shown it reads the findings again every
// ProblemsEvery of snapshot time, and not while another screen is; new
// findings and read errors show.
func TestProblemsRefresh(t *testing.T) {
	b := newFakeEnrol()
	u, _ := enrolWindow(t, b)
	t0 := b.snap.Taken
	u.Apply(b.snap)
	if b.reads != 0 {
		t.Fatalf("%d reads with the screen hidden", b.reads)
	}
	u.Show(ProblemsScreen)
	if b.reads != 1 || !strings.HasPrefix(u.Doctor.Summary.Text, "No connection problems") || len(u.Doctor.Items) != 0 {
		t.Fatalf("empty: %d reads, %q, %d rows", b.reads, u.Doctor.Summary.Text, len(u.Doctor.Items))
	}
	b.problems = someProblems()[:1]
	for i, d := range []time.Duration{time.Second, 4 * time.Second} {
		b.snap.Taken = t0.Add(d)
		u.Apply(b.snap)
		if b.reads != 1 {
			t.Fatalf("tick %d (%v): %d reads; want none before %v", i, d, b.reads, ProblemsEvery)
		}
	}
	b.snap.Taken = t0.Add(ProblemsEvery)
	u.Apply(b.snap)
	if b.reads != 2 || len(u.Doctor.Items) != 1 || u.Doctor.Summary.Text != "One connection problem." {
		t.Fatalf("after %v: %d reads, %d rows, %q", ProblemsEvery, b.reads, len(u.Doctor.Items), u.Doctor.Summary.Text)
	}
	b.readErr = errors.New("history: the file is locked")
	b.snap.Taken = t0.Add(2 * ProblemsEvery)
	u.Apply(b.snap)
	if b.reads != 3 || u.Doctor.Summary.Text != "The connection doctor could not be read: history: the file is locked" || len(u.Doctor.Items) != 1 {
		t.Fatalf("read error: %d reads, %q, %d rows (the last rows stay)", b.reads, u.Doctor.Summary.Text, len(u.Doctor.Items))
	}
	u.Show("Devices")
	b.snap.Taken = t0.Add(10 * ProblemsEvery)
	u.Apply(b.snap)
	if b.reads != 3 {
		t.Fatalf("%d reads with the screen hidden again", b.reads)
	}
}

// A slow read is not started twice: a tick while one is in flight waits.
func TestProblemsOneReadAtATime(t *testing.T) {
	b := newFakeEnrol()
	u, _ := enrolWindow(t, b)
	var queued []func()
	u.Go = func(f func()) { queued = append(queued, f) }
	u.Show(ProblemsScreen)
	b.snap.Taken = b.snap.Taken.Add(ProblemsEvery)
	u.Apply(b.snap)
	test.Tap(u.Doctor.Refresh)
	if len(queued) != 1 {
		t.Fatalf("%d reads started; want 1 while it runs", len(queued))
	}
	queued[0]()
	test.Tap(u.Doctor.Refresh)
	if len(queued) != 2 {
		t.Fatalf("%d reads after the first ended; want 2", len(queued))
	}
}
