package ui

import (
	"context"
	"io"
	"sync/atomic"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/app/ui/term"
)

// TerminalTab is the device window's Serial-over-LAN terminal: Connect
// opens a session (a console session of the instance, in Sessions and
// History) and focuses the terminal for typing; Disconnect, closing the
// window and the device going end it. It lives on the Fyne goroutine; the
// session is opened and closed off it.
type TerminalTab struct {
	Root                *fyne.Container
	Term                *term.Terminal
	Connect, Disconnect *widget.Button
	Msg                 *widget.Label
	// Consenting is the consent dialog while it is open (a device that
	// refused to start SOL without consent).
	Consenting *ConsentDialog

	u          *UI
	w          fyne.Window
	sol        SOLBackend
	amt        AMTBackend // for consent; nil: none
	guid, name string
	sess       *attached // the session shown, nil when none
	connecting bool
	up         bool // the device is connected
	seq        int  // counts connects and disconnects: an open that comes back late is closed
}

// attached is a session the terminal shows: a goroutine of the tab runs
// the terminal on it until it ends, then closes done.
type attached struct {
	s       io.ReadWriteCloser
	cancel  context.CancelFunc
	done    chan struct{}
	closing atomic.Bool // the tab closes it: its end is not news
}

func newTerminalTab(u *UI, w fyne.Window, sol SOLBackend, amt AMTBackend, guid, name string) *TerminalTab {
	t := &TerminalTab{u: u, w: w, sol: sol, amt: amt, guid: guid, name: name, up: true}
	t.Term = term.New()
	t.Msg = widget.NewLabel("Not connected.")
	t.Connect = widget.NewButton("Connect", t.connect)
	t.Connect.Importance = widget.HighImportance
	t.Disconnect = widget.NewButton("Disconnect", func() { t.disconnect("Disconnected.") })
	t.Root = container.NewBorder(container.NewHBox(t.Connect, t.Disconnect, t.Msg), nil, nil, nil, container.NewScroll(t.Term))
	t.enable()
	return t
}

// Connected reports whether a session is attached.
func (t *TerminalTab) Connected() bool { return t.sess != nil }

func (t *TerminalTab) enable() {
	enable(t.Connect, t.up && t.sess == nil && !t.connecting)
	enable(t.Disconnect, t.sess != nil || t.connecting)
}

// connect opens a session off the Fyne goroutine and attaches the
// terminal to it. A device that refuses to start SOL without consent gets
// the consent dialog, and a second try once consent is given.
func (t *TerminalTab) connect() {
	if t.sess != nil || t.connecting || !t.up {
		return
	}
	t.connecting = true
	t.seq++
	seq := t.seq
	t.enable()
	t.Msg.SetText("Connecting to the serial console of " + t.name + "…")
	t.u.Go(func() {
		s, err := t.sol.OpenSOL(t.guid)
		fyne.Do(func() {
			if seq != t.seq { // disconnected meanwhile
				if s != nil {
					t.u.Go(func() { s.Close() })
				}
				return
			}
			t.connecting = false
			if err != nil {
				t.enable()
				if needsConsent(err) && t.amt != nil {
					t.askConsent(err)
					return
				}
				t.Msg.SetText(amtSentence(err))
				return
			}
			t.attach(s)
			t.Msg.SetText("Connected: what you type goes to the device.")
			t.enable()
			t.w.Canvas().Focus(t.Term)
		})
	})
}

// attach runs the terminal on s in a goroutine of the tab's. When the
// session ends by itself (not by cancel), ended hears of it on the Fyne
// goroutine.
func (t *TerminalTab) attach(s io.ReadWriteCloser) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &attached{s: s, cancel: cancel, done: make(chan struct{})}
	t.sess = a
	tm := t.Term
	go func() {
		defer close(a.done)
		err := tm.Run(ctx, s)
		if ctx.Err() == nil && !a.closing.Load() {
			t.u.Do(func() { t.ended(a, err) })
		}
	}()
}

// askConsent has the device show a consent code after it refused to start
// SOL, and connects again once the code is given.
func (t *TerminalTab) askConsent(refusal error) {
	seq := t.seq
	t.connecting = true
	t.enable()
	t.Msg.SetText(amtSentence(refusal) + " Asking it for a consent code…")
	askConsent(t.u, t.amt, t.w, t.guid, t.name,
		func() bool {
			if seq != t.seq {
				return false
			}
			t.connecting = false
			t.enable()
			return true
		},
		func(c *ConsentDialog) { t.Consenting = c },
		func(given bool, note string) {
			t.Consenting = nil
			t.Msg.SetText(note)
			if given && seq == t.seq {
				t.connect()
			}
		})
}

// ended is told that session s ended by itself (the device closed it or
// went away).
func (t *TerminalTab) ended(a *attached, err error) {
	if t.sess != a {
		return // disconnected meanwhile
	}
	t.sess = nil
	t.enable()
	t.u.Go(func() { a.s.Close() })
	if err == nil {
		t.Msg.SetText("The device ended the session.")
		return
	}
	t.Msg.SetText("The session ended: " + amtSentence(err))
}

// disconnect ends the session, if any, and says msg ("": nothing).
func (t *TerminalTab) disconnect(msg string) {
	t.seq++
	t.connecting = false
	if t.Consenting != nil {
		t.Consenting.close()
		t.Consenting = nil
	}
	a := t.sess
	t.sess = nil
	t.enable()
	if msg != "" {
		t.Msg.SetText(msg)
	}
	if a == nil {
		return
	}
	t.u.Go(func() {
		// Closed first, the session ends as the console's doing (in
		// Sessions and History); the terminal's Run then returns.
		a.closing.Store(true)
		a.s.Close()
		<-a.done
		a.cancel()
	})
}

// Close ends the session: the window closes.
func (t *TerminalTab) Close() { t.disconnect("") }

// shown focuses the terminal when its tab is shown with a session.
func (t *TerminalTab) shown() {
	if t.sess != nil {
		t.w.Canvas().Focus(t.Term)
	}
}

// setConnected is told whether the device is connected: a device that
// goes ends the session.
func (t *TerminalTab) setConnected(up bool) {
	t.up = up
	if !up && (t.sess != nil || t.connecting) {
		t.disconnect("The device has disconnected: the session is closed.")
		return
	}
	t.enable()
}
