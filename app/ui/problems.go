package ui

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/vault"
)

// The Connection problems screen: the connection doctor's findings, each
// in one sentence with its counts and the fix, and a button for the fix
// where the window can do it.

// ProblemAction is the fix of a problem that the window can do.
type ProblemAction string

// The fixes the window offers.
const (
	// ActionNone: the fix is outside the window (the sentence says it).
	ActionNone ProblemAction = ""
	// ActionLegacyTLS allows the device TLS 1.0/1.1.
	ActionLegacyTLS ProblemAction = "legacy-tls"
	// ActionReEnrol opens "Add a device on the LAN…" for the device.
	ActionReEnrol ProblemAction = "re-enrol"
	// ActionAddAccount opens Accounts to add the CIRA account the device
	// logs in with.
	ActionAddAccount ProblemAction = "add-account"
)

// Problem is one finding of the connection doctor: one class of failure
// of one device (or, before its GUID is known, one remote host).
type Problem struct {
	Class string // the doctor's class: legacy-tls, wrong-password, …
	// Sentence says what is wrong; Fix what to do about it.
	Sentence, Fix string
	Action        ProblemAction
	Device        string // the GUID, "" when not known
	Host          string // the host name the device announced, if known
	Remote        string // the last remote address, host:port
	User          string // the CIRA user name the device offered
	Count         uint64
	First, Last   time.Time
}

// ProblemsBackend is the connection doctor of a running Presence. A
// backend that implements it gets the Connection problems screen. Its
// methods may block: the window calls them through its Go runner.
type ProblemsBackend interface {
	// ConnectionProblems returns the findings, most recent first.
	ConnectionProblems() ([]Problem, error)
	// AllowLegacyTLS lets the device connect with TLS 1.0/1.1, from now
	// on and in the saved settings.
	AllowLegacyTLS(guid string) error
}

// Connection problems screen constants.
const (
	// ProblemsScreen is the screen's name in the sidebar.
	ProblemsScreen = "Connection problems"
	// ProblemsEvery is how often the screen reads the findings again
	// while it is shown.
	ProblemsEvery = 5 * time.Second
	// maxProblemRows is how many findings the screen lists; the command
	// line lists all.
	maxProblemRows = 100
	problemWidth   = 110
)

// ProblemItem is one finding as the screen lists it.
type ProblemItem struct {
	Problem
	// Text is the finding: its sentence, counts, device and remote, and
	// the fix.
	Text *widget.Label
	// Button does the fix; nil where the window cannot.
	Button *widget.Button
}

// Problems is the Connection problems screen. It lives on the Fyne
// goroutine.
type Problems struct {
	Root fyne.CanvasObject
	// Summary says how many findings there are, or why none could be read.
	Summary *widget.Label
	// Msg says what came of the last fix.
	Msg     *widget.Label
	Refresh *widget.Button
	Items   []*ProblemItem
	// Enrol is the enrol dialog a re-enrol button opened last.
	Enrol *EnrolDialog
	// LegacyGUID is the GUID entry of the legacy TLS dialog opened last,
	// for a device refused before it said its GUID.
	LegacyGUID *widget.Entry

	u        *UI
	b        ProblemsBackend
	tab      *container.TabItem
	list     *fyne.Container
	shown    []Problem
	reading  bool
	lastRead time.Time // the snapshot time of the last read started
}

func newProblems(u *UI, b ProblemsBackend) *Problems {
	p := &Problems{u: u, b: b}
	p.Summary = widget.NewLabel("Reading the connection doctor's findings…")
	p.Msg = widget.NewLabel("")
	p.Refresh = widget.NewButton("Refresh", p.Read)
	p.list = container.NewVBox()
	top := container.NewVBox(container.NewBorder(nil, nil, nil, p.Refresh, p.Summary), p.Msg)
	p.Root = container.NewBorder(top, nil, nil, nil, container.NewScroll(p.list))
	return p
}

// Read reads the findings off the Fyne goroutine and shows them; a read
// already in flight makes it a no-op.
func (p *Problems) Read() {
	if p.reading {
		return
	}
	p.reading = true
	p.lastRead = p.u.last.Taken
	do := p.u.Do
	p.u.Go(func() {
		ps, err := p.b.ConnectionProblems()
		do(func() {
			p.reading = false
			p.show(ps, err)
		})
	})
}

// tick reads again, while the screen is shown, when the last read is
// ProblemsEvery old at the snapshot's time now.
func (p *Problems) tick(now time.Time) {
	if p.u.Tabs.Selected() != p.tab || now.Sub(p.lastRead) < ProblemsEvery {
		return
	}
	p.Read()
}

func (p *Problems) show(ps []Problem, err error) {
	if err != nil {
		p.Summary.SetText(wrapLines("The connection doctor could not be read: "+err.Error(), problemWidth))
		return
	}
	switch len(ps) {
	case 0:
		p.Summary.SetText("No connection problems: every device that tried to connect got its tunnel.")
	case 1:
		p.Summary.SetText("One connection problem.")
	default:
		p.Summary.SetText(fmt.Sprintf("%d connection problems, most recent first.", len(ps)))
	}
	if slices.Equal(ps, p.shown) {
		return
	}
	p.shown = ps
	p.list.RemoveAll()
	p.Items = p.Items[:0]
	for i, pr := range ps {
		if i == maxProblemRows {
			p.list.Add(widget.NewLabel(fmt.Sprintf("… and %d more: presence doctor lists them all.", len(ps)-maxProblemRows)))
			break
		}
		it := &ProblemItem{Problem: pr, Text: widget.NewLabel(wrapLines(ProblemText(pr), problemWidth))}
		it.Button = p.actionButton(pr)
		row := container.NewVBox(it.Text)
		if it.Button != nil {
			row.Add(container.NewHBox(it.Button))
		}
		row.Add(widget.NewSeparator())
		p.list.Add(row)
		p.Items = append(p.Items, it)
	}
}

// ProblemText is a finding as the screen says it: what is wrong, how
// often and when, which device from where, and the fix.
func ProblemText(p Problem) string {
	var b strings.Builder
	b.WriteString(p.Sentence)
	times := "once"
	if p.Count != 1 {
		times = fmt.Sprintf("%d times", p.Count)
	}
	fmt.Fprintf(&b, "\nSeen %s", times)
	if !p.First.IsZero() {
		if p.Count == 1 || p.First.Equal(p.Last) {
			fmt.Fprintf(&b, ", at %s", p.Last.Local().Format(time.DateTime))
		} else {
			fmt.Fprintf(&b, ", first %s, last %s", p.First.Local().Format(time.DateTime), p.Last.Local().Format(time.DateTime))
		}
	}
	switch {
	case p.Device != "" && p.Host != "":
		fmt.Fprintf(&b, "; device %s (%s)", p.Device, p.Host)
	case p.Device != "":
		fmt.Fprintf(&b, "; device %s", p.Device)
	}
	if p.Remote != "" {
		fmt.Fprintf(&b, "; from %s", p.Remote)
	}
	if p.User != "" {
		fmt.Fprintf(&b, "; user %q", p.User)
	}
	b.WriteString(".")
	if p.Fix != "" {
		b.WriteString("\n" + p.Fix)
	}
	return b.String()
}

// actionButton is the button of a finding's fix, nil where the window
// cannot do it.
func (p *Problems) actionButton(pr Problem) *widget.Button {
	switch pr.Action {
	case ActionLegacyTLS:
		if pr.Device == "" {
			// Refused in TLS, before its GUID: the admin says which
			// device it is (its GUID is on its AMT web page or in MEBx).
			return widget.NewButton("Allow legacy TLS for a device…", func() { p.askLegacyGUID(remoteHost(pr.Remote)) })
		}
		return widget.NewButton("Allow legacy TLS for this device", func() { p.allowLegacy(pr.Device) })
	case ActionReEnrol:
		if _, ok := p.u.b.(EnrolBackend); !ok {
			return nil
		}
		return widget.NewButton("Enrol it again…", func() { p.Enrol, _ = p.u.OpenEnrol(remoteHost(pr.Remote)) })
	case ActionAddAccount:
		if pr.User == "" {
			return nil
		}
		return widget.NewButton("Add the account…", func() { p.addAccount(pr.User) })
	}
	return nil
}

func (p *Problems) allowLegacy(guid string) {
	do := p.u.Do
	p.u.Go(func() {
		err := p.b.AllowLegacyTLS(guid)
		do(func() {
			if err != nil {
				p.Msg.SetText(wrapLines(fmt.Sprintf("Legacy TLS could not be allowed for device %s: %v", guid, err), problemWidth))
				return
			}
			p.Msg.SetText(wrapLines(fmt.Sprintf("Device %s may now connect with TLS 1.0/1.1 (kept in the settings); its tunnel comes up at its next try.", guid), problemWidth))
			p.Read()
		})
	})
}

// askLegacyGUID asks for the GUID of the device at host, then allows it
// legacy TLS.
func (p *Problems) askLegacyGUID(host string) {
	guid := widget.NewEntry()
	guid.SetPlaceHolder("00000000-0000-0000-0000-000000000000")
	text := widget.NewLabel(wrapLines("The device at "+host+" offers only TLS 1.0/1.1 and was refused before it said its GUID. Type its GUID (on its AMT web page, in MEBx, or in presence devices on another MPS) to allow it legacy TLS.", 70))
	form := widget.NewForm(widget.NewFormItem("GUID", guid))
	d := dialog.NewCustomConfirm("Allow legacy TLS", "Allow", "Cancel", container.NewVBox(text, form), func(ok bool) {
		if g := strings.TrimSpace(guid.Text); ok && g != "" {
			p.allowLegacy(g)
		}
	}, p.u.window())
	p.LegacyGUID = guid
	d.Show()
	p.u.window().Canvas().Focus(guid)
}

// addAccount opens the Accounts screen to add the CIRA account user,
// through UI.AddAccount where the window set it.
func (p *Problems) addAccount(user string) {
	if p.u.AddAccount != nil {
		p.u.AddAccount(vault.KindCIRA, user)
		return
	}
	p.u.Show("Accounts")
	p.Msg.SetText(wrapLines(fmt.Sprintf("Add the CIRA account %q under Accounts, with the password the device was given.", user), problemWidth))
}

// remoteHost is the host of a remote address (the address itself when
// it has no port).
func remoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
