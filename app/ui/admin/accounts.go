package admin

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/vault"
)

// AccountsBackend lists, adds and removes accounts. Its methods may block
// (the keychain may wait for an unlock prompt); the screen calls them off
// the Fyne goroutine. Kinds are vault.KindCIRA, vault.KindConsole and
// vault.KindAMT.
type AccountsBackend interface {
	// AccountNames returns the names of the accounts of kind, sorted.
	AccountNames(kind string) ([]string, error)
	// AddAccount creates the account, or replaces its password.
	AddAccount(kind, name string, password vault.Secret) error
	// RemoveAccount deletes the account.
	RemoveAccount(kind, name string) error
}

// AMTBindings is what a backend that binds AMT accounts to devices adds
// to AccountsBackend (the vault's rule: the account bound to a device is
// its; an unbound one is the default). Its methods may block too.
type AMTBindings interface {
	// AMTDevices returns the GUIDs the account is bound to, none for a
	// default account.
	AMTDevices(name string) ([]string, error)
	// AddAMTAccount creates or replaces the account, bound to devices.
	AddAMTAccount(name string, password vault.Secret, devices []string) error
}

// AccountKinds are the screen's three lists, in order.
var AccountKinds = []struct {
	Kind, Title, Help string
	Removed           string // what removing one stops, for the confirmation
}{
	{vault.KindCIRA, "CIRA accounts", "AMT devices log in to Presence with these.",
		"Devices that log in with it can no longer connect to Presence."},
	{vault.KindConsole, "Console accounts", "Consoles use these for the proxy and the API.",
		"Consoles that use it can no longer reach devices through the proxy or the API."},
	{vault.KindAMT, "AMT accounts", "Presence logs in to devices' AMT with these: an account bound to devices is theirs, an unbound one is every other device's.",
		"Presence can no longer log in to the devices' AMT with it."},
}

// kindWord is a kind as a sentence names it: "CIRA", "console", "AMT".
func kindWord(kind string) string {
	if kind == vault.KindConsole {
		return "console"
	}
	return strings.ToUpper(kind)
}

// AccountList is one kind's list of accounts.
type AccountList struct {
	Kind      string
	List      *widget.List
	RemoveBtn *widget.Button

	names    []string
	labels   []string // what the list shows of each name (AMT: its devices)
	selected string   // "" for none
}

// Names returns the names listed.
func (l *AccountList) Names() []string { return slices.Clone(l.names) }

// Accounts is the Accounts screen: the CIRA, console and AMT accounts, a
// form to add one (or change its password) and a Remove button under each
// list. Use it on the Fyne goroutine.
type Accounts struct {
	Root fyne.CanvasObject

	// Lists are in the order of AccountKinds.
	Lists []*AccountList
	// The add form.
	AddKind           *widget.Select
	Name              *widget.Entry
	Password, Confirm *widget.Entry
	// Devices binds an AMT account to devices: GUIDs separated by
	// commas, spaces or lines; empty for a default account. It is
	// enabled for AMT accounts when the backend binds them (AMTBindings).
	Devices *widget.Entry
	AddBtn  *widget.Button
	// Message says what the last action did, or what went wrong. It never
	// holds a password.
	Message *widget.Label

	// Window is the window dialogs open over; nil means the one showing
	// Root.
	Window fyne.Window
	// Go runs a backend call; nil means in a new goroutine. Tests set it
	// to func(f func()) { f() }.
	Go func(func())
	// Logger receives backend errors in full (nil: discarded). Errors
	// carry no password.
	Logger *slog.Logger

	b   AccountsBackend
	gen uint64
}

// NewAccounts builds the screen over b. Call Refresh to fill it.
func NewAccounts(b AccountsBackend) *Accounts {
	a := &Accounts{b: b}
	var columns []fyne.CanvasObject
	var kinds []string
	for _, k := range AccountKinds {
		l := &AccountList{Kind: k.Kind}
		l.List = widget.NewList(
			func() int { return len(l.names) },
			func() fyne.CanvasObject { return widget.NewLabel("") },
			func(i widget.ListItemID, o fyne.CanvasObject) {
				switch {
				case i < len(l.labels):
					o.(*widget.Label).SetText(l.labels[i])
				case i < len(l.names):
					o.(*widget.Label).SetText(l.names[i])
				}
			})
		l.RemoveBtn = widget.NewButton("Remove…", func() { a.confirmRemove(l) })
		l.RemoveBtn.Disable()
		l.List.OnSelected = func(i widget.ListItemID) {
			if i < len(l.names) {
				l.selected = l.names[i]
				l.RemoveBtn.Enable()
			}
		}
		l.List.OnUnselected = func(widget.ListItemID) {
			l.selected = ""
			l.RemoveBtn.Disable()
		}
		a.Lists = append(a.Lists, l)
		kinds = append(kinds, strings.TrimSuffix(k.Title, " accounts"))
		columns = append(columns, container.NewBorder(
			container.NewVBox(heading(k.Title), wrapLabel(k.Help)),
			container.NewHBox(l.RemoveBtn), nil, nil, l.List))
	}

	a.Devices = widget.NewEntry()
	a.Devices.SetPlaceHolder("AMT: device GUIDs; empty for every device")
	a.AddKind = widget.NewSelect(kinds, func(string) { a.devicesFor(a.kind()) })
	a.AddKind.SetSelectedIndex(0)
	a.Name = widget.NewEntry()
	a.Name.SetPlaceHolder("letters, digits, . _ @ -")
	a.Password = widget.NewPasswordEntry()
	a.Confirm = widget.NewPasswordEntry()
	a.AddBtn = widget.NewButton("Add account", a.Add)
	a.Message = wrapLabel("")
	form := widget.NewForm(
		widget.NewFormItem("Kind", a.AddKind),
		widget.NewFormItem("Name", a.Name),
		widget.NewFormItem("Password", a.Password),
		widget.NewFormItem("Password again", a.Confirm),
		widget.NewFormItem("Devices", a.Devices),
	)
	add := container.NewVBox(
		heading("Add an account, or change the password of one"),
		form, container.NewHBox(a.AddBtn), a.Message)
	a.Root = container.NewBorder(nil, add, nil, nil, container.NewGridWithColumns(len(columns), columns...))
	return a
}

// devicesFor enables the Devices entry for the AMT kind, where the
// backend binds accounts to devices.
func (a *Accounts) devicesFor(kind string) {
	if a.Devices == nil {
		return
	}
	if _, ok := a.b.(AMTBindings); ok && kind == vault.KindAMT {
		a.Devices.Enable()
		return
	}
	a.Devices.Disable()
}

// DeviceList splits the Devices entry into GUIDs, checking each.
func DeviceList(text string) ([]string, string) {
	var out []string
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\n' || r == '\t' }) {
		g, err := vault.CanonicalGUID(f)
		if err != nil {
			return nil, fmt.Sprintf("%q is not a device GUID: use the 32 hex digits the Devices screen shows (dashes optional).", f)
		}
		out = append(out, g)
	}
	return out, ""
}

// amtLabel is what the AMT list shows of an account.
func amtLabel(name string, devices []string) string {
	switch len(devices) {
	case 0:
		return name + " (default)"
	case 1:
		return name + " (1 device)"
	}
	return fmt.Sprintf("%s (%d devices)", name, len(devices))
}

// relayout lays the screen out again after texts changed size. (The
// desktop driver notices on its own at the next frame; the test canvas
// and a goldens snapshot do not.)
func (a *Accounts) relayout() {
	if c, ok := a.Root.(*fyne.Container); ok {
		c.Refresh()
	}
}

// say shows a sentence in Message.
func (a *Accounts) say(text string) {
	a.Message.SetText(text)
	a.relayout()
}

// List returns the list of kind, or nil.
func (a *Accounts) List(kind string) *AccountList {
	for _, l := range a.Lists {
		if l.Kind == kind {
			return l
		}
	}
	return nil
}

// Refresh reads the three lists.
func (a *Accounts) Refresh() {
	a.gen++
	gen := a.gen
	names := make([][]string, len(a.Lists))
	labels := make([][]string, len(a.Lists))
	var err error
	run(a.Go, func() {
		for i, l := range a.Lists {
			if names[i], err = a.b.AccountNames(l.Kind); err != nil {
				return
			}
			ab, ok := a.b.(AMTBindings)
			if !ok || l.Kind != vault.KindAMT {
				continue
			}
			for _, n := range names[i] {
				var devs []string
				if devs, err = ab.AMTDevices(n); err != nil {
					return
				}
				labels[i] = append(labels[i], amtLabel(n, devs))
			}
		}
	}, func() {
		if gen != a.gen {
			return
		}
		if err != nil {
			logger(a.Logger).Warn("listing accounts failed", "err", err)
			a.say(Sentence("The accounts could not be read", err))
			return
		}
		for i, l := range a.Lists {
			// Keep the selection on its name while it is listed.
			sel := l.selected
			l.names, l.labels = names[i], labels[i]
			l.List.UnselectAll()
			if j := slices.Index(l.names, sel); j >= 0 && sel != "" {
				l.List.Select(j)
			}
			l.List.Refresh()
		}
	})
}

// NameProblem returns why name cannot be an account name, or "". The
// rules are the vault's, which `presence account add` applies: 1 to
// vault.MaxNameLen characters from A-Z a-z 0-9 . _ @ -, and not "." or "..".
func NameProblem(name string) string {
	if name == "" {
		return "Enter a name for the account."
	}
	if !vault.ValidAccountName(name) {
		return fmt.Sprintf("%q cannot be an account name: use 1 to %d characters from A-Z a-z 0-9 . _ @ - (not . or ..).", name, vault.MaxNameLen)
	}
	return ""
}

// Problem checks the add form and returns a sentence for its first
// problem, or "". It never quotes a password.
func (a *Accounts) Problem() string {
	if p := NameProblem(strings.TrimSpace(a.Name.Text)); p != "" {
		return p
	}
	switch pw := a.Password.Text; {
	case pw == "":
		return "Enter the password, twice."
	case len(pw) > vault.MaxPasswordLen:
		return fmt.Sprintf("The password is longer than %d bytes.", vault.MaxPasswordLen)
	case a.Confirm.Text != pw:
		return "The two passwords differ: type the same password in both fields."
	}
	if a.kind() == vault.KindAMT {
		if _, p := DeviceList(a.Devices.Text); p != "" {
			return p
		}
	}
	return ""
}

// kind returns the kind the add form is set to.
func (a *Accounts) kind() string {
	if i := a.AddKind.SelectedIndex(); i >= 0 {
		return AccountKinds[i].Kind
	}
	return vault.KindCIRA
}

// Add adds the account the form describes, or says what is wrong with the
// form.
func (a *Accounts) Add() {
	if p := a.Problem(); p != "" {
		a.say(p)
		return
	}
	kind, name, pw := a.kind(), strings.TrimSpace(a.Name.Text), vault.Secret(a.Password.Text)
	existed := slices.Contains(a.List(kind).names, name)
	a.AddBtn.Disable()
	a.say("Saving…")
	devices, _ := DeviceList(a.Devices.Text)
	ab, binds := a.b.(AMTBindings)
	binds = binds && kind == vault.KindAMT
	var err error
	run(a.Go, func() {
		if binds {
			err = ab.AddAMTAccount(name, pw, devices)
		} else {
			err = a.b.AddAccount(kind, name, pw)
		}
	}, func() {
		a.AddBtn.Enable()
		if err != nil {
			logger(a.Logger).Warn("adding an account failed", "kind", kind, "name", name, "err", err)
			a.say(Sentence(fmt.Sprintf("The %s account %q could not be saved", kindWord(kind), name), err))
			return
		}
		// The password does not stay on screen.
		a.Password.SetText("")
		a.Confirm.SetText("")
		a.Name.SetText("")
		a.Devices.SetText("")
		if existed {
			a.say(fmt.Sprintf("The password of %s account %q was changed.", kindWord(kind), name))
		} else {
			a.say(fmt.Sprintf("The %s account %q was added.", kindWord(kind), name))
		}
		a.Refresh()
	})
}

func (a *Accounts) confirmRemove(l *AccountList) {
	if l.selected == "" {
		return
	}
	w := a.Window
	if w == nil {
		w = windowFor(a.Root)
	}
	if w == nil {
		return
	}
	name, removed := l.selected, ""
	for _, k := range AccountKinds {
		if k.Kind == l.Kind {
			removed = k.Removed
		}
	}
	d := dialog.NewConfirm(fmt.Sprintf("Remove the %s account %q?", kindWord(l.Kind), name), removed, func(ok bool) {
		if ok {
			a.Remove(l.Kind, name)
		}
	}, w)
	d.SetConfirmText("Remove")
	d.SetDismissText("Cancel")
	d.Show()
}

// Remove removes an account (the confirmation is done) and says how it
// went.
func (a *Accounts) Remove(kind, name string) {
	var err error
	run(a.Go, func() { err = a.b.RemoveAccount(kind, name) }, func() {
		if err != nil {
			logger(a.Logger).Warn("removing an account failed", "kind", kind, "name", name, "err", err)
			a.say(Sentence(fmt.Sprintf("The %s account %q could not be removed", kindWord(kind), name), err))
		} else {
			a.say(fmt.Sprintf("The %s account %q was removed.", kindWord(kind), name))
		}
		a.Refresh()
	})
}
