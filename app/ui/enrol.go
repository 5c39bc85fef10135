package ui

import (
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/vault"
)

// The window's "Add a device on the LAN…": the same enrolment as
// `presence enrol` and the API's POST /api/v1/enrol (the instance runs
// it), with its progress shown step by step.

// EnrolBackend enrols devices on the LAN. A backend that implements it
// gets the Devices screen's "Add a device on the LAN…" button and the
// Connection problems screen's re-enrol action.
type EnrolBackend interface {
	// Enrol configures CIRA in the device at req.Address over the LAN and
	// waits for its tunnel. It blocks for as long as that takes (minutes
	// at most): the window calls it through its Go runner. progress is
	// called, from any goroutine, at each step and state change, before
	// Enrol returns. Its error is a sentence that says what was written
	// and how to finish or undo it.
	Enrol(req EnrolRequest, progress func(EnrolStep)) (EnrolResult, error)
}

// EnrolRequest asks for a device on the LAN to be enrolled.
type EnrolRequest struct {
	// Address is the device's LAN address, HOST or HOST:PORT (the port
	// defaults to 16992, or 16993 with TLS).
	Address string
	// User is the AMT admin user, Password its password.
	User     string
	Password vault.Secret
	// TLS talks WS-Man over TLS (16993); the device's certificate is
	// pinned on first use.
	TLS bool
	// Replace removes other MPSes' entries and rules in the way.
	Replace bool
}

// String leaves the password out, so that a request can be logged.
func (r EnrolRequest) String() string { return "enrol " + r.Address + " as " + r.User }

// Enrolment step states.
const (
	StepRunning = "running"
	StepDone    = "done"
	StepSkipped = "skipped"
	StepFailed  = "failed"
)

// EnrolStep is one step of an enrolment as it happens: a step is
// reported running, then done, skipped or failed.
type EnrolStep struct {
	Step     string // e.g. read, root, mps, policy, environment, tunnel
	State    string // StepRunning, StepDone, StepSkipped or StepFailed
	Sentence string
	Time     time.Time
}

// EnrolResult says how an enrolment went.
type EnrolResult struct {
	Address string
	GUID    string
	// Connected reports that the device's tunnel came up.
	Connected bool
	// Certificate is the SHA-256 of the device's TLS certificate (with
	// TLS), now pinned.
	Certificate string
	Notes       []string
	Millis      int64
}

// enrolWidth is where the dialog's sentences are broken: its labels do
// not wrap (a wrapping label in a box keeps the height of its first
// layout).
const enrolWidth = 72

// EnrolDialog is the "Add a device on the LAN…" dialog. It lives on the
// Fyne goroutine.
type EnrolDialog struct {
	Address, User, Password *widget.Entry
	TLS, Replace            *widget.Check
	Start, Close            *widget.Button
	// Steps lists the steps as they are reported, a row each.
	Steps *fyne.Container
	// Msg says what is going on, and at the end how it went.
	Msg *widget.Label

	u       *UI
	b       EnrolBackend
	d       *dialog.CustomDialog
	rows    map[string]*enrolRow // by step name
	order   []string
	running bool
	closed  bool
}

type enrolRow struct {
	icon  *widget.Icon
	label *widget.Label
}

// OpenEnrol opens the "Add a device on the LAN…" dialog with address
// filled in ("" for none); false when the backend does not enrol.
func (u *UI) OpenEnrol(address string) (*EnrolDialog, bool) {
	b, ok := u.b.(EnrolBackend)
	if !ok {
		return nil, false
	}
	return newEnrolDialog(u, b, u.window(), address), true
}

func newEnrolDialog(u *UI, b EnrolBackend, w fyne.Window, address string) *EnrolDialog {
	e := &EnrolDialog{u: u, b: b, rows: map[string]*enrolRow{}}
	e.Address = widget.NewEntry()
	e.Address.SetPlaceHolder("192.168.1.20, amt-pc.example.lan or HOST:PORT")
	e.Address.SetText(address)
	e.User = widget.NewEntry()
	e.User.SetText("admin")
	e.Password = widget.NewPasswordEntry()
	e.Password.SetPlaceHolder("the AMT admin password")
	e.TLS = widget.NewCheck("Use TLS (16993)", nil)
	e.Replace = widget.NewCheck("Replace other MPS entries", nil)
	e.Steps = container.NewVBox()
	e.Msg = widget.NewLabel(wrapLines("Presence writes its root certificate, its MPS entry, a CIRA account and the remote access policies into the device, then waits for its tunnel. The device closes its LAN ports at the end.", enrolWidth))
	e.Start = widget.NewButton("Start", e.start)
	e.Start.Importance = widget.HighImportance
	e.Close = widget.NewButton("Close", e.close)
	for _, en := range []*widget.Entry{e.Address, e.User, e.Password} {
		en.OnChanged = func(string) { e.check() }
		en.OnSubmitted = func(string) { e.start() }
	}
	e.check()
	form := widget.NewForm(
		widget.NewFormItem("Address", e.Address),
		widget.NewFormItem("AMT user", e.User),
		widget.NewFormItem("Password", e.Password),
		widget.NewFormItem("", e.TLS),
		widget.NewFormItem("", e.Replace),
	)
	// The message and the steps grow as the enrolment goes: they scroll
	// in a region of their own, so the dialog keeps its size.
	progress := container.NewVScroll(container.NewVBox(e.Msg, e.Steps))
	progress.SetMinSize(fyne.NewSize(600, 260))
	e.d = dialog.NewCustomWithoutButtons("Add a device on the LAN", container.NewBorder(form, nil, nil, nil, progress), w)
	e.d.SetButtons([]fyne.CanvasObject{e.Close, e.Start})
	e.d.Show()
	if address == "" {
		w.Canvas().Focus(e.Address)
	} else {
		w.Canvas().Focus(e.Password)
	}
	return e
}

// check enables Start when the form is complete and nothing runs.
func (e *EnrolDialog) check() {
	enable(e.Start, !e.running && strings.TrimSpace(e.Address.Text) != "" && e.Password.Text != "")
}

// start runs the enrolment off the Fyne goroutine; its steps and its end
// come back through the UI's Do. The password entry is cleared at once:
// the request holds the only copy.
func (e *EnrolDialog) start() {
	if e.running || e.closed || strings.TrimSpace(e.Address.Text) == "" || e.Password.Text == "" {
		return
	}
	req := EnrolRequest{Address: strings.TrimSpace(e.Address.Text), User: strings.TrimSpace(e.User.Text),
		Password: vault.Secret(e.Password.Text), TLS: e.TLS.Checked, Replace: e.Replace.Checked}
	if req.User == "" {
		req.User = "admin"
	}
	e.Password.SetText("")
	e.running = true
	e.setForm(false)
	e.Steps.RemoveAll()
	e.rows, e.order = map[string]*enrolRow{}, nil
	e.say(fmt.Sprintf("Enrolling %s… Closing this dialog does not stop the enrolment: Presence finishes it, and the device appears under Devices when its tunnel is up.", req.Address))
	do := e.u.Do
	e.u.Go(func() {
		res, err := e.b.Enrol(req, func(s EnrolStep) { do(func() { e.step(s) }) })
		do(func() { e.finish(req, res, err) })
	})
}

// setForm enables or disables the form's fields.
func (e *EnrolDialog) setForm(on bool) {
	for _, en := range []*widget.Entry{e.Address, e.User, e.Password} {
		if on {
			en.Enable()
		} else {
			en.Disable()
		}
	}
	for _, c := range []*widget.Check{e.TLS, e.Replace} {
		if on {
			c.Enable()
		} else {
			c.Disable()
		}
	}
	e.check()
}

// step shows a step's new state: a row per step, updated in place.
func (e *EnrolDialog) step(s EnrolStep) {
	if e.closed {
		return
	}
	r := e.rows[s.Step]
	if r == nil {
		r = &enrolRow{icon: widget.NewIcon(nil), label: widget.NewLabel("")}
		e.rows[s.Step] = r
		e.order = append(e.order, s.Step)
		e.Steps.Add(container.NewBorder(nil, nil, r.icon, nil, r.label))
	}
	r.icon.SetResource(stepIcon(s.State))
	r.label.SetText(wrapLines(StepText(s), enrolWidth))
}

// StepText is a step as the dialog's list says it.
func StepText(s EnrolStep) string {
	text := s.Step + " — " + s.State
	if s.Sentence != "" {
		text += ": " + s.Sentence
	}
	return text
}

func stepIcon(state string) fyne.Resource {
	switch state {
	case StepDone:
		return theme.ConfirmIcon()
	case StepFailed:
		return theme.ErrorIcon()
	case StepSkipped:
		return theme.MediaSkipNextIcon()
	}
	return theme.MediaPlayIcon()
}

// finish says how it went. With the dialog closed meanwhile, a failure
// goes to the window's banner: the admin must still learn what was
// written.
func (e *EnrolDialog) finish(req EnrolRequest, res EnrolResult, err error) {
	e.running = false
	if e.closed {
		if err != nil {
			e.u.Report(fmt.Sprintf("Enrolling %s failed: %v", req.Address, err))
		}
		return
	}
	e.setForm(true)
	if err != nil {
		e.say(err.Error())
		return
	}
	e.say(EnrolSentence(res))
}

// EnrolSentence says what an enrolment did: the device, whether its
// tunnel is up, the pinned certificate, and the notes.
func EnrolSentence(r EnrolResult) string {
	dev := r.Address
	if r.GUID != "" {
		dev = "Device " + r.GUID + " (" + r.Address + ")"
	}
	var b strings.Builder
	if r.Connected {
		fmt.Fprintf(&b, "%s is enrolled and its tunnel is up: it is managed through Presence from now on.", dev)
	} else {
		fmt.Fprintf(&b, "%s is enrolled, but its tunnel has not come up yet: check that it reaches this MPS's address and CIRA port; it keeps trying on its own.", dev)
	}
	if r.Certificate != "" {
		fmt.Fprintf(&b, " Its TLS certificate, SHA-256 %s, is now pinned.", r.Certificate)
	}
	for _, n := range r.Notes {
		b.WriteString(" Note: " + n)
		if !strings.HasSuffix(n, ".") {
			b.WriteByte('.')
		}
	}
	return b.String()
}

func (e *EnrolDialog) say(text string) { e.Msg.SetText(wrapLines(text, enrolWidth)) }

// Running reports whether an enrolment started here has not ended yet.
func (e *EnrolDialog) Running() bool { return e.running }

// StepLines returns the steps' rows as the list shows them, a line each
// (a row's own line breaks as spaces).
func (e *EnrolDialog) StepLines() []string {
	out := make([]string, len(e.order))
	for i, s := range e.order {
		out[i] = strings.ReplaceAll(e.rows[s].label.Text, "\n", " ")
	}
	return out
}

// close closes the dialog. An enrolment in progress goes on: stopping
// between two writes would leave the device half configured.
func (e *EnrolDialog) close() {
	if e.closed {
		return
	}
	e.closed = true
	e.Password.SetText("")
	e.d.Hide()
}
