package ui

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
)

type fakeSetup struct {
	calls []string
	err   error
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
	for _, want := range []string{"MPS address:       203.0.113.5", "Port:              4433", "Username:          admin", "Root SHA-256:      AB:CD", "BEGIN CERTIFICATE"} {
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
