package ui

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps/toolbox"
)

// paneWidth is how many characters the pane's sentences are broken at.
const paneWidth = 44

// AMTPane is the device pane's AMT section: the selected device's power
// state, AMT version, control mode and consent; a button for each action
// its state allows ([toolbox.Offers]: when the device is on, Power on is
// not offered), a confirmation first for the disruptive ones and the
// consent code first for a boot option that needs it; Refresh, Request
// consent, and the device's own window. Its calls run in the UI's Go
// runner and come back through fyne.Do; its buttons are disabled while
// one runs. It lives on the Fyne goroutine.
type AMTPane struct {
	d *DeviceScreen
	b AMTBackend

	Box *fyne.Container
	// Info is the status: power, version and control mode, consent.
	Info *widget.Label
	// Actions holds a button per action the state allows.
	Actions *fyne.Container
	Refresh *widget.Button
	// Consent asks the device for a consent code; shown while the
	// status says consent is needed.
	Consent *widget.Button
	// Tools opens the device's window (hardware, logs, terminal).
	Tools *widget.Button
	// Msg is the last action's result, or the sentence of its refusal.
	Msg *widget.Label
	// Consenting is the consent dialog while it is open.
	Consenting *ConsentDialog

	guid, name string
	connected  bool
	st         toolbox.Status
	known      bool             // st is a reading of guid
	buttons    []toolbox.Action // the actions Actions has buttons for
	powerAt    time.Time        // the watch's reading last looked at
	busy       bool
	seq        int // counts the pane's calls: the result of an older one is dropped
}

func newAMTPane(d *DeviceScreen, b AMTBackend) *AMTPane {
	p := &AMTPane{d: d, b: b}
	p.Info = widget.NewLabel("")
	p.Actions = container.NewGridWithColumns(2)
	p.Refresh = widget.NewButton("Refresh", p.load)
	p.Consent = widget.NewButton("Request consent", func() { p.requestConsent(nil) })
	p.Consent.Hide()
	p.Tools = widget.NewButton("Hardware, logs and terminal…", p.openWindow)
	p.Msg = widget.NewLabel("")
	p.Box = container.NewVBox(
		widget.NewLabelWithStyle("AMT", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		p.Info, p.Actions, container.NewGridWithColumns(2, p.Refresh, p.Consent), p.Tools, p.Msg)
	return p
}

// Button returns the button of the action labelled label, nil if the
// pane offers no such action.
func (p *AMTPane) Button(label string) *widget.Button {
	for _, o := range p.Actions.Objects {
		if b, ok := o.(*widget.Button); ok && b.Text == label {
			return b
		}
	}
	return nil
}

// Offered returns the labels of the actions the pane offers.
func (p *AMTPane) Offered() []string {
	out := make([]string, len(p.buttons))
	for i, a := range p.buttons {
		out[i] = a.String()
	}
	return out
}

// Busy reports whether a call of the pane is running.
func (p *AMTPane) Busy() bool { return p.busy }

// show shows the AMT section of x's device (nil: none selected) and
// reads its status.
func (p *AMTPane) show(x *row) {
	if p == nil {
		return
	}
	p.closeConsent()
	p.seq++
	p.busy, p.known, p.st, p.powerAt = false, false, toolbox.Status{}, time.Time{}
	p.Msg.SetText("")
	if x == nil {
		p.guid, p.name, p.connected = "", "", false
		p.Info.SetText("")
		p.render()
		return
	}
	p.guid, p.name, p.connected = x.UUID, cmp.Or(x.Hostname, x.UUID), x.gone.IsZero()
	if !p.connected {
		p.Info.SetText("The device is not connected.")
		p.render()
		return
	}
	p.load()
}

// gone is called while the selected device is listed as gone.
func (p *AMTPane) gone() {
	if p == nil || !p.connected {
		return
	}
	p.closeConsent()
	p.seq++
	p.busy, p.connected, p.known = false, false, false
	p.Info.SetText("The device is not connected.")
	p.render()
}

// tick is called with each snapshot while x, the selected device, is
// connected: if the power watch read a state other than the pane's, the
// status (and with it the actions that fit) is read again; if its reading
// failed (the Power column's mark), the pane says why.
func (p *AMTPane) tick(x *row) {
	if p == nil || x.UUID != p.guid {
		return
	}
	if !p.connected {
		p.show(x) // it came back
		return
	}
	if p.busy || !p.known {
		return
	}
	r, ok := p.b.Power(p.guid)
	if !ok || !r.At.After(p.powerAt) {
		return
	}
	p.powerAt = r.At
	switch {
	case r.Err != nil:
		p.Info.SetText(statusText(p.st) + "\n" + wrapLines("The last power reading failed: "+amtSentence(r.Err), paneWidth))
	case r.State.State != p.st.Power.State:
		p.load()
	default:
		setText(p.Info, statusText(p.st))
	}
}

// begin marks a call as running and returns its number.
func (p *AMTPane) begin() int {
	p.seq++
	p.busy = true
	p.render()
	return p.seq
}

// end reports whether seq is the pane's latest call (its result is then
// shown) and marks it done.
func (p *AMTPane) end(seq int) bool {
	if seq != p.seq {
		return false
	}
	p.busy = false
	return true
}

// say shows a result or a refusal.
func (p *AMTPane) say(s string) { p.Msg.SetText(wrapLines(s, paneWidth)) }

// load reads the status off the Fyne goroutine.
func (p *AMTPane) load() {
	if p.guid == "" || !p.connected {
		return
	}
	guid := p.guid
	if !p.known {
		p.Info.SetText("Reading the AMT status…")
	}
	seq := p.begin()
	p.d.u.Go(func() {
		st, err := p.b.AMTStatus(guid)
		fyne.Do(func() {
			if !p.end(seq) {
				return
			}
			if err != nil {
				p.st, p.known = toolbox.Status{}, false
				p.Info.SetText(wrapLines("The AMT status could not be read: "+amtSentence(err), paneWidth))
			} else {
				p.st, p.known = st, true
				p.Info.SetText(statusText(st))
			}
			p.render()
		})
	})
}

// statusText is the pane's status lines.
func statusText(st toolbox.Status) string {
	mode := "control mode unknown"
	switch st.ControlMode {
	case "ACM":
		mode = "admin control mode"
	case "CCM":
		mode = "client control mode"
	}
	s := fmt.Sprintf("Power: %s\nAMT %s, %s\nConsent: %s", powerText(st.Power), cmp.Or(st.Version, "(version unknown)"), mode, consentText(st))
	if len(toolbox.Offers(st)) == 0 {
		s += "\nNo power action fits this state."
	}
	return s
}

// render shows the actions of the status and enables what may be used.
func (p *AMTPane) render() {
	var offers []toolbox.Action
	if p.known {
		offers = toolbox.Offers(p.st)
	}
	if !slices.Equal(p.buttons, offers) {
		p.buttons = offers
		objs := make([]fyne.CanvasObject, len(p.buttons))
		for i, a := range p.buttons {
			objs[i] = widget.NewButton(a.String(), func() { p.tap(a) })
		}
		p.Actions.Objects = objs
		// The pane grows or shrinks: lay it out again from the scroll
		// that holds it, or the new buttons keep the grid's old size.
		p.Actions.Refresh()
		if p.d.paneScroll != nil {
			p.d.paneScroll.Refresh()
		}
	}
	usable := p.guid != "" && p.connected && !p.busy
	for _, o := range p.Actions.Objects {
		enable(o.(*widget.Button), usable)
	}
	enable(p.Refresh, usable)
	enable(p.Consent, usable)
	enable(p.Tools, p.guid != "" && p.connected)
	if p.known && p.st.NeedsConsent() {
		p.Consent.Show()
	} else {
		p.Consent.Hide()
	}
}

func enable(b *widget.Button, on bool) {
	if on {
		b.Enable()
	} else {
		b.Disable()
	}
}

// tap runs an action: the confirmation first if it is disruptive, then
// the consent code if it needs one.
func (p *AMTPane) tap(a toolbox.Action) {
	if p.busy || !p.connected {
		return
	}
	next := func() {
		if isBoot(a) && p.st.NeedsConsent() {
			p.requestConsent(func() { p.run(a) })
			return
		}
		p.run(a)
	}
	if !a.Disruptive() {
		next()
		return
	}
	w := p.d.u.window()
	if w == nil {
		p.say("There is no window to confirm " + a.String() + " in.")
		return
	}
	guid := p.guid
	d := dialog.NewConfirm(confirmTitle(a, p.name), confirmText(a, p.name, guid), func(ok bool) {
		if ok && p.guid == guid && p.connected && !p.busy {
			next()
		}
	}, w)
	d.SetConfirmText(a.String())
	d.SetDismissText("Cancel")
	d.SetConfirmImportance(widget.DangerImportance)
	d.Show()
}

// confirmTitle and confirmText are the confirmation of a disruptive
// action: they name the action and the device.
func confirmTitle(a toolbox.Action, name string) string { return a.String() + ": " + name + "?" }

func confirmText(a toolbox.Action, name, guid string) string {
	return fmt.Sprintf("Presence will send %s to %s\n(GUID %s) now.\n\nIt interrupts whatever the device is doing:\nwork not saved on it may be lost.", a, name, guid)
}

// run sends an action and reads the status again.
func (p *AMTPane) run(a toolbox.Action) {
	guid, name := p.guid, p.name
	p.say("Sending " + a.String() + " to " + name + "…")
	seq := p.begin()
	p.d.u.Go(func() {
		err := p.b.AMTPower(guid, a)
		fyne.Do(func() {
			if !p.end(seq) {
				return
			}
			if err != nil {
				p.say(amtSentence(err))
			} else {
				p.say(name + " accepted " + a.String() + ".")
			}
			p.load()
		})
	})
}

// requestConsent asks the device to show a consent code, then opens the
// consent dialog; then, if not nil, runs once consent is given.
func (p *AMTPane) requestConsent(then func()) {
	if p.busy || !p.connected {
		return
	}
	w := p.d.u.window()
	if w == nil {
		p.say("There is no window to ask for the consent code in.")
		return
	}
	guid, name := p.guid, p.name
	p.say("Asking " + name + " to show a consent code…")
	seq := p.begin()
	askConsent(p.d.u, p.b, w, guid, name,
		func() bool {
			if !p.end(seq) {
				return false
			}
			p.say("")
			p.render()
			return true
		},
		func(c *ConsentDialog) { p.Consenting = c },
		func(given bool, note string) {
			if p.guid != guid {
				return
			}
			p.Consenting = nil
			p.say(note)
			if given && then != nil {
				then()
			} else {
				p.load()
			}
		})
}

func (p *AMTPane) closeConsent() {
	if p.Consenting != nil {
		p.Consenting.close()
		p.Consenting = nil
	}
}

func (p *AMTPane) openWindow() {
	if p.guid != "" && p.connected {
		p.d.OpenWindow(p.guid, p.name)
	}
}
