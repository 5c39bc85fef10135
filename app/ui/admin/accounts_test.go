package admin

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/app/ui/uitest"
	"github.com/presence-mps/presence/vault"
)

func newTestAccounts(t *testing.T, b AccountsBackend) (*Accounts, fyne.Window) {
	t.Helper()
	test.NewTempApp(t)
	a := NewAccounts(b)
	a.Go = inline
	w := test.NewTempWindow(t, a.Root)
	w.Resize(fyne.NewSize(1000, 600))
	a.Refresh()
	return a, w
}

// fill sets the add form.
func fill(a *Accounts, kind, name, pw, confirm string) {
	a.AddKind.SetSelected(kind)
	a.Name.SetText(name)
	a.Password.SetText(pw)
	a.Confirm.SetText(confirm)
}

// The form refuses what the vault would refuse, and a mismatch, without
// asking the backend.
func TestAccountsAddValidation(t *testing.T) {
	b := newFakeAccounts()
	a, _ := newTestAccounts(t, b)
	calls := b.calls
	for _, tc := range []struct{ name, pw, confirm, want string }{
		{"", "secret-1", "secret-1", "Enter a name for the account."},
		{"   ", "secret-1", "secret-1", "Enter a name for the account."},
		{"bad/name", "secret-1", "secret-1", `"bad/name" cannot be an account name: use 1 to 64 characters from A-Z a-z 0-9 . _ @ - (not . or ..).`},
		{"..", "secret-1", "secret-1", `".." cannot be an account name: use 1 to 64 characters from A-Z a-z 0-9 . _ @ - (not . or ..).`},
		{strings.Repeat("n", 65), "secret-1", "secret-1", fmt.Sprintf("%q cannot be an account name: use 1 to 64 characters from A-Z a-z 0-9 . _ @ - (not . or ..).", strings.Repeat("n", 65))},
		{"carol", "", "", "Enter the password, twice."},
		{"carol", "secret-1", "secret-2", "The two passwords differ: type the same password in both fields."},
		{"carol", "secret-1", "", "The two passwords differ: type the same password in both fields."},
		{"carol", strings.Repeat("p", 257), strings.Repeat("p", 257), "The password is longer than 256 bytes."},
	} {
		fill(a, "Console", tc.name, tc.pw, tc.confirm)
		test.Tap(a.AddBtn)
		if a.Message.Text != tc.want {
			t.Errorf("add %q: message %q; want %q", tc.name, a.Message.Text, tc.want)
		}
		if tc.pw != "" && strings.Contains(a.Message.Text, tc.pw) {
			t.Errorf("add %q: the message shows the password", tc.name)
		}
	}
	if b.calls != calls {
		t.Errorf("the backend was called %d times for invalid forms", b.calls-calls)
	}
}

// Add puts the account in its list, clears the passwords, and a second
// add of the same name says the password changed; Remove asks, then
// takes it out.
func TestAccountsAddRemove(t *testing.T) {
	b := newFakeAccounts()
	a, w := newTestAccounts(t, b)
	if got := a.List(vault.KindConsole).Names(); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("console accounts %q", got)
	}

	fill(a, "Console", " carol@example ", "s3cret-Pass", "s3cret-Pass")
	test.Tap(a.AddBtn)
	if a.Message.Text != `The console account "carol@example" was added.` {
		t.Fatalf("message %q", a.Message.Text)
	}
	if got := a.List(vault.KindConsole).Names(); !slices.Equal(got, []string{"alice", "bob", "carol@example"}) {
		t.Errorf("console accounts after add %q", got)
	}
	if got := a.List(vault.KindCIRA).Names(); !slices.Equal(got, []string{"amt-devices"}) {
		t.Errorf("CIRA accounts changed by a console add: %q", got)
	}
	if b.pw[vault.KindConsole]["carol@example"].Reveal() != "s3cret-Pass" {
		t.Error("the backend got another password")
	}
	if a.Password.Text != "" || a.Confirm.Text != "" || a.Name.Text != "" {
		t.Error("the form keeps the password after a successful add")
	}

	fill(a, "CIRA", "amt-devices", "n3w-Pass", "n3w-Pass")
	test.Tap(a.AddBtn)
	if a.Message.Text != `The password of CIRA account "amt-devices" was changed.` {
		t.Errorf("message %q", a.Message.Text)
	}

	l := a.List(vault.KindConsole)
	if !l.RemoveBtn.Disabled() {
		t.Fatal("Remove enabled with nothing selected")
	}
	l.List.Select(1) // bob
	test.Tap(l.RemoveBtn)
	if txt := uitest.DialogText(w); !strings.Contains(txt, "Consoles that use it can no longer reach devices") {
		t.Fatalf("confirmation says:\n%s", txt)
	}
	uitest.TapDialogButton(t, w, "Remove")
	if got := l.Names(); !slices.Equal(got, []string{"alice", "carol@example"}) {
		t.Errorf("console accounts after removing bob %q", got)
	}
	if a.Message.Text != `The console account "bob" was removed.` || !l.RemoveBtn.Disabled() {
		t.Errorf("message %q, Remove disabled %v", a.Message.Text, l.RemoveBtn.Disabled())
	}

	// Removed meanwhile by another program: the vault's reason, in a sentence.
	a.Remove(vault.KindAMT, "ghost")
	if want := `The AMT account "ghost" could not be removed. No amt account "ghost": vault: not found.`; a.Message.Text != want {
		t.Errorf("message %q; want %q", a.Message.Text, want)
	}
}

// A locked keychain is the same sentence whatever was tried, and never
// shows the password.
func TestAccountsLockedKeychain(t *testing.T) {
	b := newFakeAccounts()
	b.err = fmt.Errorf("keychain: get account/cira/x: %w", vault.ErrLocked)
	var log bytes.Buffer
	test.NewTempApp(t)
	a := NewAccounts(b)
	a.Go, a.Logger = inline, slog.New(slog.NewTextHandler(&log, nil))
	test.NewTempWindow(t, a.Root)
	a.Refresh()
	if want := "The accounts could not be read. The keychain is locked: unlock it and try again."; a.Message.Text != want {
		t.Errorf("message %q; want %q", a.Message.Text, want)
	}
	fill(a, "AMT", "admin2", "Sup3r-Secret!", "Sup3r-Secret!")
	test.Tap(a.AddBtn)
	if want := `The AMT account "admin2" could not be saved. The keychain is locked: unlock it and try again.`; a.Message.Text != want {
		t.Errorf("message %q; want %q", a.Message.Text, want)
	}
	if strings.Contains(a.Message.Text, "Sup3r-Secret!") || a.AddBtn.Disabled() {
		t.Errorf("after the failure: message %q, Add disabled %v", a.Message.Text, a.AddBtn.Disabled())
	}
	// The log has the whole error, and no password.
	if !strings.Contains(log.String(), "keychain: get account/cira/x") || strings.Contains(log.String(), "Sup3r-Secret!") {
		t.Errorf("log:\n%s", log.String())
	}
}

// NameProblem accepts exactly the names the vault accepts.
func TestNameProblemMatchesVault(t *testing.T) {
	acc := vault.NewAccounts(vault.NewMemory(vault.ItemLimit))
	for _, name := range []string{"a", "alice", "dev.01", "a_b@c-d", strings.Repeat("x", 64), strings.Repeat("x", 65),
		"", ".", "..", "...", "a b", "a/b", "é", "a:b", "a+b", "UPPER"} {
		err := acc.Add(t.Context(), vault.KindConsole, name, "pw")
		if (NameProblem(name) == "") != (err == nil) {
			t.Errorf("name %q: NameProblem %q, vault error %v", name, NameProblem(name), err)
		}
	}
}

// An AMT account can be bound to devices: the form checks the GUIDs, the
// backend gets them, and the list says which accounts are defaults.
func TestAccountsAMTBinding(t *testing.T) {
	b := newFakeAccounts()
	a, _ := newTestAccounts(t, b)
	if !a.Devices.Disabled() {
		t.Error("the Devices entry is enabled for CIRA accounts")
	}
	fill(a, "AMT", "home", "Home-P@ss2", "Home-P@ss2")
	if a.Devices.Disabled() {
		t.Fatal("the Devices entry is disabled for AMT accounts")
	}
	a.Devices.SetText("not-a-guid")
	test.Tap(a.AddBtn)
	if !strings.Contains(a.Message.Text, `"not-a-guid" is not a device GUID`) {
		t.Fatalf("message %q", a.Message.Text)
	}
	a.Devices.SetText("AAAAAAAABBBBCCCCDDDDEEEEEEEEEEEE, 11111111-2222-3333-4444-555555555555")
	test.Tap(a.AddBtn)
	if want := []string{"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "11111111-2222-3333-4444-555555555555"}; !slices.Equal(b.bound["home"], want) {
		t.Fatalf("bound %v, want %v (message %q)", b.bound["home"], want, a.Message.Text)
	}
	if a.Devices.Text != "" || a.Password.Text != "" {
		t.Error("the form kept what was typed")
	}
	l := a.List(vault.KindAMT)
	if !slices.Equal(l.labels, []string{"admin (default)", "home (2 devices)"}) {
		t.Errorf("AMT list shows %v", l.labels)
	}
	// One device, one account: the backend's refusal is shown.
	fill(a, "AMT", "other", "Other-P@ss3", "Other-P@ss3")
	a.Devices.SetText("11111111222233334444555555555555")
	test.Tap(a.AddBtn)
	if !strings.Contains(a.Message.Text, `bound to AMT account "home"`) || strings.Contains(a.Message.Text, "Other-P@ss3") {
		t.Errorf("message %q", a.Message.Text)
	}
}
