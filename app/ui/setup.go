package ui

import (
	"fmt"
	"net"
	"os"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
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
	s := &Setup{b: b, onEnd: done}
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
	copyBtn := widget.NewButton("Copy settings", func() {
		if app := fyne.CurrentApp(); app != nil {
			app.Clipboard().SetContent(s.Result.Text)
		}
	})
	second := container.NewBorder(
		widget.NewLabelWithStyle("Enter this in AMT (CIRA / Management Presence Server)", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		container.NewHBox(copyBtn, s.Done), nil, nil, s.Result)
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
	s.Message.SetText("Creating the certificates…")
	res, err := s.b.Create(strings.TrimSpace(s.Address.Text), strings.TrimSpace(s.User.Text), s.Password.Text)
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
