package admin

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/app/ui/uitest"
	"github.com/presence-mps/presence/vault"
)

func newTestCertificates(t *testing.T, b CertBackend) (*Certificates, fyne.Window) {
	t.Helper()
	test.NewTempApp(t)
	c := NewCertificates(b)
	c.Go, c.Now = inline, func() time.Time { return now }
	w := test.NewTempWindow(t, c.Root)
	w.Resize(fyne.NewSize(1000, 700))
	c.Refresh()
	return c, w
}

// The screen shows both certificates with their fingerprints and days
// left, and one row per doctor finding with its severity.
func TestCertificatesDetailsAndFindings(t *testing.T) {
	b := sampleCerts()
	c, _ := newTestCertificates(t, b)
	for _, want := range []string{"SHA-256:  " + rootSHA, "Key:      RSA 3072, signed with SHA256-RSA", "(6940 days left)"} {
		if !strings.Contains(c.RootDetails.Text, want) {
			t.Errorf("root details lack %q:\n%s", want, c.RootDetails.Text)
		}
	}
	for _, want := range []string{"Names:    DNS:mps.example.com", "SHA-256:  9F:00:AB", "2025-04-30 to 2026-05-21 (20 days left)"} {
		if !strings.Contains(c.ServerDetails.Text, want) {
			t.Errorf("server details lack %q:\n%s", want, c.ServerDetails.Text)
		}
	}
	want := []string{"Warning: " + b.st.Problems[0].Text, "Must fix: " + b.st.Problems[1].Text}
	if got := c.FindingTexts(); !slices.Equal(got, want) {
		t.Errorf("findings %q; want %q", got, want)
	}

	b.st.Problems = nil
	c.Refresh()
	if got := c.FindingTexts(); len(got) != 1 || got[0] != "No problems: AMT devices reaching mps.example.com should accept these certificates." {
		t.Errorf("findings without problems %q", got)
	}
}

func TestDaysLeft(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{400 * 24 * time.Hour, "400 days left"},
		{36 * time.Hour, "1 day left"},
		{time.Hour, "expires within a day"},
		{-time.Hour, "expired 1 day ago"},
		{-49 * time.Hour, "expired 3 days ago"},
	} {
		if got := daysLeft(now, now.Add(tc.after)); got != tc.want {
			t.Errorf("daysLeft(now+%v) = %q; want %q", tc.after, got, tc.want)
		}
	}
}

// Renew asks first; Cancel renews nothing, Renew renews and says whether
// the new certificate is in use or needs a restart.
func TestCertificatesRenew(t *testing.T) {
	b := sampleCerts()
	c, w := newTestCertificates(t, b)

	test.Tap(c.RenewBtn)
	if txt := uitest.DialogText(w); !strings.Contains(txt, "for mps.example.com") || !strings.Contains(txt, "nothing needs to change in AMT") {
		t.Fatalf("confirmation says:\n%s", txt)
	}
	uitest.TapDialogButton(t, w, "Cancel")
	if b.renewed != 0 {
		t.Fatal("renewed after Cancel")
	}

	test.Tap(c.RenewBtn)
	uitest.TapDialogButton(t, w, "Renew")
	if b.renewed != 1 {
		t.Fatalf("renewed %d times; want 1", b.renewed)
	}
	if want := "The new server certificate is saved, valid until 2031-05-01. Restart Presence to present it; devices trust the same root, so nothing changes in AMT."; c.Message.Text != want {
		t.Errorf("message %q; want %q", c.Message.Text, want)
	}
	if !strings.Contains(c.ServerDetails.Text, "RENEWED:01") || c.RenewBtn.Disabled() {
		t.Errorf("after renewal: server details\n%s\nbutton disabled %v", c.ServerDetails.Text, c.RenewBtn.Disabled())
	}

	b.inUse = true
	c.Renew()
	if !strings.HasPrefix(c.Message.Text, "The new server certificate is in use, valid until 2031-05-01.") {
		t.Errorf("message when in use %q", c.Message.Text)
	}

	b.renewErr = fmt.Errorf("vault: saving the new server certificate stopped half way: %w", vault.ErrLocked)
	c.Renew()
	if want := "The server certificate could not be renewed. The keychain is locked: unlock it and try again. The current one is still in use."; c.Message.Text != want {
		t.Errorf("failure message %q; want %q", c.Message.Text, want)
	}
	if c.RenewBtn.Disabled() {
		t.Error("Renew stays disabled after a failure")
	}
}

// Export writes the root's PEM to the file and closes it.
func TestCertificatesExportRoot(t *testing.T) {
	b := sampleCerts()
	c, _ := newTestCertificates(t, b)
	var f closeRecorder
	c.ExportRootTo(&f, "presence-root.pem")
	if f.String() != b.pem || !f.closed {
		t.Fatalf("file %q (closed %v); want the PEM", f.String(), f.closed)
	}
	if want := "The root certificate was saved to presence-root.pem. Install it in AMT as a trusted root certificate."; c.Message.Text != want {
		t.Errorf("message %q", c.Message.Text)
	}
}

// A locked keychain is a sentence in place of the details, and the
// buttons that need the certificates are off.
func TestCertificatesLocked(t *testing.T) {
	b := sampleCerts()
	b.err = fmt.Errorf("vault: read ca/root.crt: %w", vault.ErrLocked)
	c, _ := newTestCertificates(t, b)
	if want := "The certificates could not be read. The keychain is locked: unlock it and try again."; c.RootDetails.Text != want {
		t.Errorf("details %q; want %q", c.RootDetails.Text, want)
	}
	if !c.RenewBtn.Disabled() || !c.ExportBtn.Disabled() {
		t.Error("Renew or Export enabled without certificates")
	}
}

// The screen says what to enter in AMT for the policy's two MPS entries,
// in the command line's words: this instance as primary and, in a fleet,
// a peer's announced entry as backup (the others named as alternatives);
// outside a fleet, none yet and how a backup comes about.
func TestCertificatesMPSEntries(t *testing.T) {
	b := sampleCerts()
	c, _ := newTestCertificates(t, b)
	for _, want := range []string{
		"first MPS entry (primary), this instance:\n  MPS address:       mps.example.com\n  Port:              4433\n  Common name (CN):  mps.example.com\n  Username:          a CIRA account (see Accounts)",
		"Backup MPS entry: none yet. A second instance (presence fleet invite here,\npresence fleet join there,",
	} {
		if !strings.Contains(c.Entries.Text, want) {
			t.Errorf("entries lack %q:\n%s", want, c.Entries.Text)
		}
	}

	b.st.InFleet = true
	c.Refresh()
	if !strings.Contains(c.Entries.Text, "Backup MPS entry: none yet. No other instance of this fleet is linked") {
		t.Errorf("entries in a fleet with no peer:\n%s", c.Entries.Text)
	}

	b.st.Backups = []MPSEntry{{Address: "mps-b.example.com", Port: 4433, Instance: "mps-b.example.com"}, {Address: "10.0.0.3", Port: 14433, Instance: "inst-c"}}
	c.Refresh()
	for _, want := range []string{
		"Its second MPS entry (backup), another instance of this fleet (mps-b.example.com),\nwhich AMT tries when the first cannot be reached:\n  MPS address:       mps-b.example.com\n  Port:              4433\n  Common name (CN):  mps-b.example.com\n  Username:          the same CIRA account (the fleet shares its accounts)\n  Trusted root:      the same root",
		"Any other instance of the fleet can be the backup instead: 10.0.0.3:14433 (inst-c).",
	} {
		if !strings.Contains(c.Entries.Text, want) {
			t.Errorf("entries lack %q:\n%s", want, c.Entries.Text)
		}
	}
	if strings.Contains(c.Entries.Text, "none yet") {
		t.Errorf("a backup and none yet:\n%s", c.Entries.Text)
	}
}
