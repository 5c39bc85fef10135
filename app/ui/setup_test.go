package ui

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/vault"
)

type fakeSetup struct {
	calls []string
	err   error
}

// Join reads the bundle file (as the window's backend does) and joins
// when it says "bundle".
func (f *fakeSetup) Join(path, passphrase, address string) (SetupResult, error) {
	f.calls = append(f.calls, "join "+path+"|"+passphrase+"|"+address)
	if f.err != nil {
		return SetupResult{}, f.err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return SetupResult{}, err
	}
	if string(b) != "bundle" {
		return SetupResult{}, fmt.Errorf("%w: its PEM block is missing", vault.ErrBadBundle)
	}
	return SetupResult{Address: address, User: "amt-devices", CIRAUsers: []string{"amt-devices", "branch"}, Port: 4433,
		RootSHA256: "AB:CD", RootPEM: "-----BEGIN CERTIFICATE-----\n…\n", Backup: "mps-a.example.com:4433", Fleet: "0123456789abcdef0123456789abcdef"}, nil
}

func (f *fakeSetup) Create(address, user, password string) (SetupResult, error) {
	f.calls = append(f.calls, address+"|"+user+"|"+password)
	if f.err != nil {
		return SetupResult{}, f.err
	}
	return SetupResult{Address: address, User: user, Port: 4433, RootSHA256: "AB:CD", RootPEM: "-----BEGIN CERTIFICATE-----\n…\n"}, nil
}

func TestFirstRun(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeSetup{}
	var done *SetupResult
	s := NewSetup(b, []string{"mps.example.com", "203.0.113.5"}, func(r SetupResult) { done = &r })
	s.Go = func(f func()) { f() }
	w := test.NewWindow(s.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(800, 600))
	if s.Address.Text != "mps.example.com" || s.User.Text != "admin" {
		t.Fatalf("defaults: %q %q", s.Address.Text, s.User.Text)
	}
	// Validation, in sentences, and nothing created.
	test.Tap(s.Create)
	if !strings.Contains(s.Message.Text, "at least 8 characters") || len(b.calls) != 0 {
		t.Fatalf("short password: %q, %v", s.Message.Text, b.calls)
	}
	s.Address.SetText("not an address/")
	test.Type(s.Password, "Cira-P@ss1")
	test.Tap(s.Create)
	if !strings.Contains(s.Message.Text, "is not a host name or an IP address") || len(b.calls) != 0 {
		t.Fatalf("bad address: %q", s.Message.Text)
	}
	// A failure is shown; the form stays.
	s.Address.SetText("203.0.113.5")
	b.err = errors.New("the OS keychain is locked")
	test.Tap(s.Create)
	if !strings.Contains(s.Message.Text, "keychain is locked") || len(b.calls) != 1 {
		t.Fatalf("failure: %q", s.Message.Text)
	}
	b.err = nil
	test.Tap(s.Create)
	if len(b.calls) != 2 || b.calls[1] != "203.0.113.5|admin|Cira-P@ss1" {
		t.Fatalf("calls %v", b.calls)
	}
	for _, want := range []string{"MPS address:       203.0.113.5", "Port:              4433", "Username:          admin", "Root SHA-256:      AB:CD", "BEGIN CERTIFICATE",
		"Backup MPS entry: none yet. A second instance (presence fleet invite here,\npresence fleet join there,"} {
		if !strings.Contains(s.Result.Text, want) {
			t.Fatalf("result page lacks %q:\n%s", want, s.Result.Text)
		}
	}
	if strings.Contains(s.Result.Text, "Cira-P@ss1") || s.Password.Text != "" {
		t.Fatal("the password stays on screen")
	}
	// Each value has its copy button; the root certificate can be saved.
	for _, c := range []struct {
		btn  *widget.Button
		want string
	}{{s.CopyAddress, "203.0.113.5"}, {s.CopyPort, "4433"}, {s.CopyUser, "admin"}, {s.CopyRoot, "-----BEGIN CERTIFICATE-----\n…\n"}} {
		test.Tap(c.btn)
		if got := fyne.CurrentApp().Clipboard().Content(); got != c.want {
			t.Fatalf("%s copied %q, want %q", c.btn.Text, got, c.want)
		}
	}
	var saved closingBuffer
	s.SaveRootTo(&saved, "root.pem")
	if saved.String() != "-----BEGIN CERTIFICATE-----\n…\n" || !saved.closed || s.Copied.Text != "Saved the root certificate to root.pem." {
		t.Fatalf("saved %q (closed %v), message %q", saved.String(), saved.closed, s.Copied.Text)
	}
	test.Tap(s.Done)
	if done == nil || done.Address != "203.0.113.5" {
		t.Fatalf("done: %+v", done)
	}
}

func TestSuggestAddresses(t *testing.T) {
	for _, a := range SuggestAddresses() {
		if a == "127.0.0.1" || a == "::1" || a == "" {
			t.Fatalf("suggested %q", a)
		}
	}
}

type closingBuffer struct {
	bytes.Buffer
	closed bool
}

func (c *closingBuffer) Close() error { c.closed = true; return nil }

// Join an existing Presence: the form checks itself in sentences, a wrong
// passphrase is one sentence and keeps the form, and a join shows both
// MPS entries of the policy: this instance as primary, the inviting one
// as backup.
func TestFirstRunJoin(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeSetup{}
	var done *SetupResult
	s := NewSetup(b, []string{"mps-b.example.com"}, func(r SetupResult) { done = &r })
	s.Go = func(f func()) { f() }
	w := test.NewWindow(s.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(800, 600))
	newForm, joinForm := s.forms.Objects[0], s.forms.Objects[1]
	if joinForm.Visible() || !newForm.Visible() || s.Mode.Selected != ModeNew {
		t.Fatal("the first run does not start with the new Presence's form")
	}
	s.Mode.SetSelected(ModeJoin)
	if !joinForm.Visible() || newForm.Visible() || s.JoinAddress.Text != "mps-b.example.com" || !strings.Contains(s.intro.Text, "presence fleet invite --out FILE") {
		t.Fatalf("join form shown %v, create form shown %v, address %q", joinForm.Visible(), newForm.Visible(), s.JoinAddress.Text)
	}
	test.Tap(s.JoinBtn)
	if !strings.HasPrefix(s.Message.Text, "Choose the join bundle file") || len(b.calls) != 0 {
		t.Fatalf("no file: %q, %v", s.Message.Text, b.calls)
	}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "fleet.bundle"), filepath.Join(dir, "other.bundle")
	os.WriteFile(good, []byte("bundle"), 0o600)
	os.WriteFile(bad, []byte("garbage"), 0o600)
	s.BundlePath.SetText(bad)
	test.Tap(s.JoinBtn)
	if s.Message.Text != "Enter the passphrase the join bundle was sealed with." || len(b.calls) != 0 {
		t.Fatalf("no passphrase: %q", s.Message.Text)
	}
	test.Type(s.Passphrase, "fleet passphrase")
	s.JoinAddress.SetText("mps b")
	test.Tap(s.JoinBtn)
	if s.Message.Text != `"mps b" is not a host name or an IP address.` || len(b.calls) != 0 {
		t.Fatalf("bad address: %q", s.Message.Text)
	}
	s.JoinAddress.SetText("mps-b.example.com")
	test.Tap(s.JoinBtn)
	if s.Message.Text != "The passphrase is wrong, or the join bundle is damaged: nothing was written." || s.Passphrase.Text == "" {
		t.Fatalf("damaged bundle: %q (passphrase kept %v)", s.Message.Text, s.Passphrase.Text != "")
	}
	s.BundlePath.SetText(filepath.Join(dir, "nosuch"))
	test.Tap(s.JoinBtn)
	if s.Message.Text != "There is no join bundle at that path: choose the file presence fleet invite wrote." {
		t.Fatalf("missing file: %q", s.Message.Text)
	}
	b.err = fmt.Errorf("vault: this instance already has a different MPS root: %w", vault.ErrRootExists)
	test.Tap(s.JoinBtn)
	if !strings.HasPrefix(s.Message.Text, "This machine already has a different MPS root") || strings.Count(s.Message.Text, ". ") != 0 {
		t.Fatalf("another root: %q", s.Message.Text)
	}
	b.err = nil
	s.BundlePath.SetText(good)
	test.Tap(s.JoinBtn)
	if last := b.calls[len(b.calls)-1]; last != "join "+good+"|fleet passphrase|mps-b.example.com" {
		t.Fatalf("joined with %q", last)
	}
	for _, want := range []string{
		"Joined fleet 0123456789abcdef0123456789abcdef:\nits root and its CIRA and console accounts are in this instance's vault.",
		"The remote-access policy's first MPS entry (primary), this instance:\n  MPS address:       mps-b.example.com\n  Port:              4433\n  Common name (CN):  mps-b.example.com\n  Username:          a CIRA account of the fleet: amt-devices, branch\n",
		"  Root SHA-256:      AB:CD",
		"Its second MPS entry (backup), another instance of this fleet (the inviting one),\nwhich AMT tries when the first cannot be reached:\n  MPS address:       mps-a.example.com\n  Port:              4433\n  Common name (CN):  mps-a.example.com\n  Username:          the same CIRA account (the fleet shares its accounts)\n  Trusted root:      the same root",
		"Trusted root certificate:\n-----BEGIN CERTIFICATE-----",
	} {
		if !strings.Contains(s.Result.Text, want) {
			t.Fatalf("result page lacks %q:\n%s", want, s.Result.Text)
		}
	}
	if strings.Contains(s.Result.Text, "fleet passphrase") || s.Passphrase.Text != "" || strings.Contains(s.Result.Text, "none yet") {
		t.Fatalf("the passphrase stays on screen, or no backup:\n%s", s.Result.Text)
	}
	test.Tap(s.CopyUser)
	if got := fyne.CurrentApp().Clipboard().Content(); got != "amt-devices" {
		t.Fatalf("copied user %q", got)
	}
	test.Tap(s.Done)
	if done == nil || done.Fleet == "" {
		t.Fatalf("done: %+v", done)
	}
}
