package ui

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"
)

// SetupResult is what the first-run setup made, for the page that tells
// the admin what to enter in AMT.
type SetupResult struct {
	Address, User string
	Port          int
	RootSHA256    string
	RootPEM       string
}

// SetupBackend creates the MPS identity on first run.
type SetupBackend interface {
	// Create makes the certificate authority for address and a CIRA
	// account user with password.
	Create(address, user, password string) (SetupResult, error)
}

// Setup is the first-run flow: the address AMT devices will use, a CIRA
// account, then everything to enter in AMT.
type Setup struct {
	Root fyne.CanvasObject

	Address  *widget.SelectEntry
	User     *widget.Entry
	Password *widget.Entry
	Create   *widget.Button
	Message  *widget.Label
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
}

// MinPasswordLen is the shortest CIRA password the setup accepts (AMT
// itself requires a strong password for CIRA).
const MinPasswordLen = 8

// NewSetup builds the flow; done is called with the result when the admin
// presses Start.
func NewSetup(b SetupBackend, suggestions []string, done func(SetupResult)) *Setup {
	s := &Setup{b: b, onEnd: done, Go: func(f func()) { go f() }}
	s.Address = widget.NewSelectEntry(suggestions)
	if len(suggestions) > 0 {
		s.Address.SetText(suggestions[0])
	}
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
	first := container.NewVBox(
		widget.NewLabelWithStyle("Welcome to Presence", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		widget.NewLabel("AMT devices outside the office will connect to this machine. Choose the address\nthey will use to reach it (a name or an IP address that reaches this machine from\nthe internet), and the account they will log in with."),
		form, s.Create, s.Message)

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

// Problem checks the form and returns a sentence for the first problem,
// or "" when there is none.
func (s *Setup) Problem() string {
	addr := strings.TrimSpace(s.Address.Text)
	switch {
	case addr == "":
		return "Enter the address AMT devices will use to reach this machine."
	case strings.ContainsAny(addr, " /:") && net.ParseIP(addr) == nil:
		return fmt.Sprintf("%q is not a host name or an IP address.", addr)
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
	s.res = res
	s.Password.SetText("") // the password is not kept on screen
	s.Result.SetText(fmt.Sprintf("MPS address:       %s\nPort:              %d\nCommon name (CN):  %s\nUsername:          %s\nPassword:          the one you chose\nRoot SHA-256:      %s\n\nTrusted root certificate:\n%s",
		res.Address, res.Port, res.Address, res.User, res.RootSHA256, res.RootPEM))
	s.pages.Objects[0].Hide()
	s.pages.Objects[1].Show()
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
