package ui

import (
	"errors"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps/wsman"
)

// ConsentDialog asks for the six-digit code a device shows its user, sends
// it, and says so when the device does not take it, for another try;
// Cancel withdraws the request. It lives on the Fyne goroutine.
type ConsentDialog struct {
	Code         *widget.Entry
	Send, Cancel *widget.Button
	Msg          *widget.Label

	u          *UI
	b          AMTBackend
	d          *dialog.CustomDialog
	guid, name string
	done       func(given bool, note string)
	sending    bool
	closed     bool
}

// askConsent asks the device to show a consent code, off the Fyne
// goroutine, then opens the consent dialog over w. current, called on the
// Fyne goroutine when the device has answered, reports whether the request
// still matters (the device is still the one shown); opened gets the
// dialog. done gets what came of it: the request's refusal, or, once the
// dialog closed, whether consent was given, with what to say.
func askConsent(u *UI, b AMTBackend, w fyne.Window, guid, name string, current func() bool, opened func(*ConsentDialog), done func(given bool, note string)) {
	u.Go(func() {
		err := b.StartConsent(guid)
		fyne.Do(func() {
			if !current() {
				return
			}
			if err != nil {
				done(false, "Consent could not be requested: "+amtSentence(err))
				return
			}
			opened(newConsentDialog(u, b, w, guid, name, done))
		})
	})
}

func newConsentDialog(u *UI, b AMTBackend, w fyne.Window, guid, name string, done func(bool, string)) *ConsentDialog {
	c := &ConsentDialog{u: u, b: b, guid: guid, name: name, done: done}
	c.Code = widget.NewEntry()
	c.Code.SetPlaceHolder("six digits")
	c.Code.Validator = checkCode
	c.Msg = widget.NewLabel("")
	c.Send = widget.NewButton("Send code", c.send)
	c.Send.Importance = widget.HighImportance
	c.Send.Disable()
	c.Cancel = widget.NewButton("Cancel", c.cancel)
	c.Code.OnChanged = func(s string) { enable(c.Send, checkCode(s) == nil && !c.sending) }
	c.Code.OnSubmitted = func(string) { c.send() }
	text := widget.NewLabel(name + " now shows a six-digit code on its screen.\nAsk the person at the device to read it to you,\nand type it here.")
	c.d = dialog.NewCustomWithoutButtons("Consent code for "+name, container.NewVBox(text, c.Code, c.Msg), w)
	c.d.SetButtons([]fyne.CanvasObject{c.Cancel, c.Send})
	c.d.Show()
	w.Canvas().Focus(c.Code)
	return c
}

// checkCode accepts six digits (spaces between them are ignored).
func checkCode(s string) error {
	s = strings.ReplaceAll(s, " ", "")
	if len(s) != 6 || strings.Trim(s, "0123456789") != "" {
		return errCodeDigits
	}
	return nil
}

var errCodeDigits = errors.New("the code is the six digits the device shows")

// send sends the code typed; the dialog stays open, saying why, when the
// device does not take it.
func (c *ConsentDialog) send() {
	code := strings.ReplaceAll(c.Code.Text, " ", "")
	if c.sending || c.closed || checkCode(code) != nil {
		return
	}
	c.sending = true
	c.Send.Disable()
	c.Cancel.Disable()
	c.Msg.SetText("Sending the code…")
	n, _ := strconv.Atoi(code)
	c.u.Go(func() {
		err := c.b.SendConsentCode(c.guid, n)
		fyne.Do(func() {
			c.sending = false
			if c.closed {
				return
			}
			c.Cancel.Enable()
			if err != nil {
				c.Msg.SetText(wrapLines(codeSentence(err), 50))
				c.Code.SetText("")
				return
			}
			c.close()
			c.done(true, "Consent given by the person at "+c.name+".")
		})
	})
}

// cancel closes the dialog and withdraws the request.
func (c *ConsentDialog) cancel() {
	if c.closed {
		return
	}
	c.close()
	c.u.Go(func() {
		err := c.b.CancelConsent(c.guid)
		fyne.Do(func() {
			switch se, _ := errors.AsType[*wsman.StatusError](err); {
			case err == nil:
				c.done(false, "The consent request was withdrawn.")
			case se != nil && se.Value == wsman.StatusNotReady:
				c.done(false, "No consent request was left to withdraw.")
			default:
				c.done(false, "The consent request could not be withdrawn: "+amtSentence(err))
			}
		})
	})
}

// codeSentence is what the consent dialog says when the device does not
// take a code: the toolbox's sentences for a wrong code and for one sent
// when no code is shown any more.
func codeSentence(err error) string { return amtSentence(err) }

// close closes the dialog without a word (its device went, or another
// was selected).
func (c *ConsentDialog) close() {
	if c.closed {
		return
	}
	c.closed = true
	c.d.Hide()
}
