package ui

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/app/ui/admin"
	"github.com/presence-mps/presence/vault"
)

// SetupResult is what the first-run setup made, for the page that tells
// the admin what to enter in AMT.
type SetupResult struct {
	Address, User string
	Port          int
	RootSHA256    string
	RootPEM       string
	// Backup is another instance's MPS entry (HOST:PORT), the policy's
	// backup; "" when there is none yet.
	Backup string
	// Fleet is the id of the fleet joined ("" for a new Presence), and
	// CIRAUsers the CIRA accounts that came with it.
	Fleet     string
	CIRAUsers []string
}

// SetupBackend creates the MPS identity on first run, or joins an
// existing Presence's fleet.
type SetupBackend interface {
	// Create makes the certificate authority for address and a CIRA
	// account user with password.
	Create(address, user, password string) (SetupResult, error)
	// Join makes this instance one of a fleet with the join bundle file
	// at path (presence fleet invite writes it), sealed with passphrase:
	// the fleet's root, a server certificate of its own for address, and
	// the fleet's accounts.
	Join(path, passphrase, address string) (SetupResult, error)
}

// The first run's two ways, as Mode offers them.
const (
	ModeNew  = "New Presence"
	ModeJoin = "Join an existing Presence"
)

// Setup is the first-run flow: a new Presence (the address AMT devices
// will use and a CIRA account) or joining an existing one (its join
// bundle, the passphrase and this instance's address), then everything
// to enter in AMT.
type Setup struct {
	Root fyne.CanvasObject

	// Mode chooses between ModeNew and ModeJoin.
	Mode *widget.RadioGroup

	Address  *widget.SelectEntry
	User     *widget.Entry
	Password *widget.Entry
	Create   *widget.Button

	// Joining: the bundle file (typed, or chosen with ChooseBundle), its
	// passphrase and this instance's address.
	BundlePath   *widget.Entry
	ChooseBundle *widget.Button
	Passphrase   *widget.Entry
	JoinAddress  *widget.SelectEntry
	JoinBtn      *widget.Button

	Message *widget.Label
	// Result is filled once Create succeeded; Done is then enabled.
	Result *widget.Entry
	Done   *widget.Button
	// Copy buttons for each value to enter in AMT, and the root
	// certificate's Save button; Copied says what was copied or saved.
	CopyAddress, CopyPort, CopyUser, CopyRoot, SaveRoot *widget.Button
	Copied                                              *widget.Label
	// Go runs the creation (RSA keys, the keychain) off the Fyne
	// goroutine (default: a goroutine). Window is where the save dialog
	// opens (nil: the window showing Root).
	Go     func(func())
	Window fyne.Window

	b     SetupBackend
	onEnd func(SetupResult)
	res   SetupResult
	pages *fyne.Container
	intro *widget.Label
	forms *fyne.Container // the new and the join form
}

// MinPasswordLen is the shortest CIRA password the setup accepts (AMT
// itself requires a strong password for CIRA).
const MinPasswordLen = 8

// NewSetup builds the flow; done is called with the result when the admin
// presses Start.
func NewSetup(b SetupBackend, suggestions []string, done func(SetupResult)) *Setup {
	s := &Setup{b: b, onEnd: done, Go: func(f func()) { go f() }}
	address := func() *widget.SelectEntry {
		e := widget.NewSelectEntry(suggestions)
		if len(suggestions) > 0 {
			e.SetText(suggestions[0])
		}
		return e
	}
	s.Address, s.JoinAddress = address(), address()
	s.User = widget.NewEntry()
	s.User.SetText("admin")
	s.Password = widget.NewPasswordEntry()
	s.Message = widget.NewLabel("")
	s.Message.Wrapping = fyne.TextWrapWord
	s.Create = widget.NewButton("Create certificates and account", s.create)
	form := widget.NewForm(
		widget.NewFormItem("MPS address", s.Address),
		widget.NewFormItem("CIRA user", s.User),
		widget.NewFormItem("CIRA password", s.Password),
	)
	newForm := container.NewVBox(form, s.Create)

	s.BundlePath = widget.NewEntry()
	s.BundlePath.SetPlaceHolder("the file presence fleet invite wrote")
	s.ChooseBundle = widget.NewButton("Choose…", s.chooseBundleDialog)
	s.Passphrase = widget.NewPasswordEntry()
	s.JoinBtn = widget.NewButton("Join the fleet", s.join)
	joinForm := container.NewVBox(widget.NewForm(
		widget.NewFormItem("Join bundle", container.NewBorder(nil, nil, nil, s.ChooseBundle, s.BundlePath)),
		widget.NewFormItem("Passphrase", s.Passphrase),
		widget.NewFormItem("MPS address", s.JoinAddress),
	), s.JoinBtn)
	joinForm.Hide()
	s.forms = container.NewStack(newForm, joinForm)

	s.intro = widget.NewLabel(introNew)
	s.Mode = widget.NewRadioGroup([]string{ModeNew, ModeJoin}, s.setMode)
	s.Mode.Horizontal = true
	s.Mode.Required = true
	s.Mode.SetSelected(ModeNew)
	first := container.NewVBox(
		widget.NewLabelWithStyle("Welcome to Presence", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		s.Mode, s.intro, s.forms, s.Message)

	s.Result = widget.NewMultiLineEntry()
	s.Result.Wrapping = fyne.TextWrapOff
	s.Result.TextStyle = fyne.TextStyle{Monospace: true}
	s.Done = widget.NewButton("Start Presence", func() {
		if s.onEnd != nil {
			s.onEnd(s.res)
		}
	})
	copyBtn := widget.NewButton("Copy all", func() { s.copy("the settings", s.Result.Text) })
	s.Copied = widget.NewLabel("")
	s.CopyAddress = widget.NewButton("Copy address", func() { s.copy("the address", s.res.Address) })
	s.CopyPort = widget.NewButton("Copy port", func() { s.copy("the port", strconv.Itoa(s.res.Port)) })
	s.CopyUser = widget.NewButton("Copy user", func() { s.copy("the user name", s.res.User) })
	s.CopyRoot = widget.NewButton("Copy root certificate", func() { s.copy("the root certificate (PEM)", s.res.RootPEM) })
	s.SaveRoot = widget.NewButton("Save root certificate…", s.saveRootDialog)
	buttons := container.NewVBox(
		container.NewHBox(s.CopyAddress, s.CopyPort, s.CopyUser, s.CopyRoot, s.SaveRoot),
		container.NewHBox(copyBtn, s.Done, s.Copied))
	second := container.NewBorder(
		widget.NewLabelWithStyle("Enter this in AMT (CIRA / Management Presence Server)", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		buttons, nil, nil, s.Result)
	second.Hide()
	s.pages = container.NewStack(first, second)
	s.Root = s.pages
	return s
}

// What the first page says above each form.
const (
	introNew  = "AMT devices outside the office will connect to this machine. Choose the address\nthey will use to reach it (a name or an IP address that reaches this machine from\nthe internet), and the account they will log in with."
	introJoin = "This machine becomes another instance of an existing Presence: the same root (devices\ntrust it already) and accounts. Choose the join bundle (presence fleet invite --out FILE on\nthat Presence), its passphrase, and the address AMT devices will use to reach this machine."
)

// setMode shows the form of mode.
func (s *Setup) setMode(mode string) {
	if s.pages == nil {
		return
	}
	join := mode == ModeJoin
	for i, f := range s.forms.Objects {
		if (i == 1) == join {
			f.Show()
		} else {
			f.Hide()
		}
	}
	if join {
		s.intro.SetText(introJoin)
	} else {
		s.intro.SetText(introNew)
	}
	s.Message.SetText("")
	s.pages.Refresh() // the intro and the form changed size
}

// addressProblem checks an MPS address, as the vault will.
func addressProblem(addr string) string {
	switch {
	case addr == "":
		return "Enter the address AMT devices will use to reach this machine."
	case strings.ContainsAny(addr, " /:") && net.ParseIP(addr) == nil:
		return fmt.Sprintf("%q is not a host name or an IP address.", addr)
	}
	return ""
}

// Problem checks the form and returns a sentence for the first problem,
// or "" when there is none.
func (s *Setup) Problem() string {
	if s.Mode.Selected == ModeJoin {
		return s.joinProblem()
	}
	if p := addressProblem(strings.TrimSpace(s.Address.Text)); p != "" {
		return p
	}
	switch {
	case strings.TrimSpace(s.User.Text) == "":
		return "Enter the user name AMT devices will log in with."
	case len(s.Password.Text) < MinPasswordLen:
		return fmt.Sprintf("The CIRA password needs at least %d characters.", MinPasswordLen)
	}
	return ""
}

func (s *Setup) create() {
	if p := s.Problem(); p != "" {
		s.Message.SetText(p)
		return
	}
	s.Create.Disable()
	s.Message.SetText("Creating the certificates… (a few seconds)")
	addr, user, pw := strings.TrimSpace(s.Address.Text), strings.TrimSpace(s.User.Text), s.Password.Text
	s.Go(func() {
		res, err := s.b.Create(addr, user, pw)
		fyne.Do(func() { s.created(res, err) })
	})
}

func (s *Setup) created(res SetupResult, err error) {
	s.Create.Enable()
	if err != nil {
		s.Message.SetText("The certificates could not be created: " + err.Error())
		return
	}
	s.Password.SetText("") // the password is not kept on screen
	s.showResult(res)
}

// joinProblem checks the join form.
func (s *Setup) joinProblem() string {
	switch {
	case strings.TrimSpace(s.BundlePath.Text) == "":
		return "Choose the join bundle file (presence fleet invite writes it on the Presence to join)."
	case s.Passphrase.Text == "":
		return "Enter the passphrase the join bundle was sealed with."
	}
	return addressProblem(strings.TrimSpace(s.JoinAddress.Text))
}

func (s *Setup) join() {
	if p := s.joinProblem(); p != "" {
		s.Message.SetText(p)
		return
	}
	s.JoinBtn.Disable()
	s.Message.SetText("Joining the fleet… (a few seconds)")
	path, pass, addr := strings.TrimSpace(s.BundlePath.Text), s.Passphrase.Text, strings.TrimSpace(s.JoinAddress.Text)
	s.Go(func() {
		res, err := s.b.Join(path, pass, addr)
		fyne.Do(func() { s.joined(res, err) })
	})
}

func (s *Setup) joined(res SetupResult, err error) {
	s.JoinBtn.Enable()
	if err != nil {
		s.Message.SetText(JoinSentence(err))
		return
	}
	s.Passphrase.SetText("") // nor is the passphrase
	s.showResult(res)
}

// JoinSentence is what the first run says when joining failed with err:
// one sentence.
func JoinSentence(err error) string {
	switch {
	case errors.Is(err, vault.ErrBadBundle):
		return "The passphrase is wrong, or the join bundle is damaged: nothing was written."
	case errors.Is(err, vault.ErrRootExists):
		return "This machine already has a different MPS root, which its devices may trust: Presence keeps it (presence fleet join --force replaces it)."
	case errors.Is(err, vault.ErrOtherFleet):
		return "This machine already belongs to another fleet: Presence leaves it there (presence fleet join --force moves it)."
	case errors.Is(err, vault.ErrLocked):
		return "The keychain is locked: unlock it and join again."
	case errors.Is(err, fs.ErrNotExist):
		return "There is no join bundle at that path: choose the file presence fleet invite wrote."
	}
	return "Presence could not join the fleet: " + strings.TrimSuffix(strings.TrimPrefix(err.Error(), "vault: "), ".") + "."
}

// showResult shows what to enter in AMT for res: both MPS entries of
// the policy, then the root.
func (s *Setup) showResult(res SetupResult) {
	s.res = res
	p := admin.Policy{Primary: admin.MPSEntry{Address: res.Address, Port: res.Port}, InFleet: res.Fleet != ""}
	var head string
	if res.Fleet == "" {
		p.Account = [][2]string{{"Username", res.User}, {"Password", "the one you chose"}, {"Root SHA-256", res.RootSHA256}}
	} else {
		users := "none in the fleet yet: add one under Accounts"
		if len(res.CIRAUsers) > 0 {
			users = "a CIRA account of the fleet: " + strings.Join(res.CIRAUsers, ", ")
		}
		p.Account = [][2]string{{"Username", users}, {"Password", "its password, as on the other instances"}, {"Root SHA-256", res.RootSHA256}}
		head = fmt.Sprintf("Joined fleet %s:\nits root and its CIRA and console accounts are in this instance's vault.\n"+
			"Presence links to the fleet's instances it finds on the LAN (mDNS); across\n"+
			"networks, start it with --peer HOST:PORT naming another instance's peer address.\n\n", res.Fleet)
	}
	if e, ok := admin.ParseEntry(res.Backup, "the inviting one"); ok {
		p.Backup = &e
	}
	s.Result.SetText(head + p.Text() + "\n\nTrusted root certificate:\n" + res.RootPEM)
	s.pages.Objects[0].Hide()
	s.pages.Objects[1].Show()
}

// chooseBundleDialog lets the admin pick the join bundle file.
func (s *Setup) chooseBundleDialog() {
	w := s.Window
	if w == nil {
		w = windowOf(s.Root)
	}
	if w == nil {
		return
	}
	dialog.NewFileOpen(func(f fyne.URIReadCloser, err error) {
		if err != nil {
			s.Message.SetText("The join bundle could not be opened: " + err.Error())
			return
		}
		if f == nil {
			return // cancelled
		}
		s.BundlePath.SetText(f.URI().Path())
		f.Close() // read later, off the Fyne goroutine
	}, w).Show()
}

// copy puts text on the clipboard and says so.
func (s *Setup) copy(what, text string) {
	if app := fyne.CurrentApp(); app != nil {
		app.Clipboard().SetContent(text)
	}
	s.Copied.SetText("Copied " + what + ".")
}

func (s *Setup) saveRootDialog() {
	w := s.Window
	if w == nil {
		w = windowOf(s.Root)
	}
	if w == nil {
		return
	}
	d := dialog.NewFileSave(func(f fyne.URIWriteCloser, err error) {
		if err != nil {
			s.Copied.SetText("The root certificate could not be saved: " + err.Error())
			return
		}
		if f != nil {
			s.SaveRootTo(f, f.URI().Name())
		}
	}, w)
	d.SetFileName("presence-root.pem")
	d.Show()
}

// SaveRootTo writes the root certificate (PEM) to f, closes it, and says
// what happened.
func (s *Setup) SaveRootTo(f io.WriteCloser, name string) {
	_, err := io.WriteString(f, s.res.RootPEM)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.Copied.SetText("The root certificate could not be saved to " + name + ": " + err.Error())
		return
	}
	s.Copied.SetText("Saved the root certificate to " + name + ".")
}

// windowOf returns the window whose canvas shows o, if any.
func windowOf(o fyne.CanvasObject) fyne.Window {
	a := fyne.CurrentApp()
	if a == nil {
		return nil
	}
	for _, w := range a.Driver().AllWindows() {
		if w.Canvas().Content() == o {
			return w
		}
	}
	return nil
}

// SuggestAddresses lists addresses AMT devices might use for this machine:
// its host name, then its non-loopback IP addresses.
func SuggestAddresses() []string {
	var out []string
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		out = append(out, h)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}
