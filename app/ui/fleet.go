package ui

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"
)

// Fleet is the instance's part in a fleet of instances, as the window
// shows it: a plain value, filled by the adapter from the peer links.
type Fleet struct {
	// Self is this instance (its link fields are unused).
	Self Peer
	// Peers are the links to the other instances, sorted by address.
	Peers []Peer
	// Etcd is the state of the fleet's etcd, or nil when it has none.
	Etcd *EtcdState
	// Away is how many devices here came while their home instance was
	// down, and it is up again; SendHomeRate is how many of their tunnels
	// Send devices home closes per second.
	Away         int
	SendHomeRate float64
	// Devices are the devices the peers hold, newest owner per GUID.
	Devices []PeerDevice
}

// Peer is an instance of the fleet and this instance's link to it.
type Peer struct {
	ID, Name string
	// Addr is its peer-link address; CIRAAddr its MPS entry (HOST:PORT
	// AMT is configured with, "" when unknown or off).
	Addr, CIRAAddr string
	Version        string
	// Devices is how many devices it holds.
	Devices int
	Up      bool
	// Since is when the link last went up or down; Contact when the peer
	// was last heard (zero: never).
	Since, Contact time.Time
	// Error says why the link is down.
	Error string
}

// Label is what the window calls the instance: its name, else its id,
// else the address it is reached at.
func (p Peer) Label() string { return cmp.Or(p.Name, p.ID, p.Addr) }

// EtcdState says whether the fleet's etcd answers, since when, and why not.
type EtcdState struct {
	Connected bool
	Since     time.Time
	Error     string
}

// PeerDevice is a device another instance holds. Only its owner knows its
// tunnel's details.
type PeerDevice struct {
	GUID, Host string
	// Instance is the id of the instance that holds it.
	Instance string
	// Since is when its tunnel came up.
	Since time.Time
}

// fleetView is the Overview's fleet section: hidden outside a fleet.
type fleetView struct {
	Box *fyne.Container
	// Peers says, a line or two each, the etcd state and every peer.
	Peers *widget.Label
	// Away and SendHome are shown while devices are away from a home
	// instance that is up again; Message says what Send devices home did.
	Away     *widget.Label
	SendHome *widget.Button
	Message  *widget.Label
	awayRow  *fyne.Container

	u     *UI
	fleet *Fleet
	// relayout lays the Overview out again after the section changed
	// size (the desktop driver notices on its own at the next frame; the
	// test canvas and a golden snapshot do not); shape is what it was laid
	// out for.
	relayout func()
	shape    fleetShape
}

// fleetShape is what decides the section's height.
type fleetShape struct {
	shown, away, message bool
	lines                int
}

func (f *fleetView) reshape() {
	sh := fleetShape{f.Box.Visible(), f.awayRow.Visible(), f.Message.Visible(), strings.Count(f.Peers.Text, "\n")}
	if sh != f.shape {
		f.shape = sh
		if f.relayout != nil {
			f.relayout()
		}
	}
}

func (f *fleetView) build(u *UI) fyne.CanvasObject {
	f.u = u
	f.Peers = widget.NewLabel("")
	f.Peers.Truncation = fyne.TextTruncateEllipsis
	f.Away = widget.NewLabel("")
	f.SendHome = widget.NewButton("Send devices home", f.confirmSendHome)
	f.SendHome.Importance = widget.HighImportance
	f.Message = widget.NewLabel("")
	f.Message.Hide()
	f.awayRow = container.NewHBox(f.Away, f.SendHome)
	f.awayRow.Hide()
	f.Box = container.NewVBox(
		widget.NewLabelWithStyle("Fleet", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		f.Peers, f.awayRow, f.Message)
	f.Box.Hide()
	return f.Box
}

func (f *fleetView) apply(s Snapshot) {
	f.fleet = s.Fleet
	defer f.reshape()
	if s.Fleet == nil {
		f.Box.Hide()
		return
	}
	setText(f.Peers, peersText(s.Fleet, s.Taken))
	if n := s.Fleet.Away; n > 0 {
		setText(f.Away, awayText(n))
		f.awayRow.Show()
	} else {
		f.awayRow.Hide()
	}
	f.Box.Show()
}

// awayText says how many devices could go home.
func awayText(n int) string {
	if n == 1 {
		return "1 device is here while its home instance is up again."
	}
	return fmt.Sprintf("%d devices are here while their home instance is up again.", n)
}

// peersText describes the fleet: this instance, etcd, then each peer in
// two lines (name, id and link; then its addresses, version and devices).
func peersText(f *Fleet, now time.Time) string {
	if now.IsZero() {
		now = time.Now()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "This instance: %s", f.Self.Label())
	if f.Self.ID != "" && f.Self.ID != f.Self.Label() {
		fmt.Fprintf(&b, " (%s)", f.Self.ID)
	}
	fmt.Fprintf(&b, " · MPS entry %s · peer %s\n", cmp.Or(f.Self.CIRAAddr, "off"), cmp.Or(f.Self.Addr, "?"))
	if e := f.Etcd; e != nil {
		if e.Connected {
			fmt.Fprintf(&b, "etcd: connected since %s\n", clock(e.Since))
		} else {
			fmt.Fprintf(&b, "etcd: unreachable since %s (%s): serving own devices, and the peers' through the links\n",
				clock(e.Since), cmp.Or(e.Error, "no answer"))
		}
	}
	if len(f.Peers) == 0 {
		b.WriteString("No other instance is linked yet: give --peer HOST:PORT, or run the instances on one LAN (mDNS) or with etcd.")
		return b.String()
	}
	for _, p := range f.Peers {
		b.WriteString(p.Label())
		if p.ID != "" && p.ID != p.Label() {
			fmt.Fprintf(&b, " (%s)", p.ID)
		} else if p.ID == "" {
			b.WriteString(" (not reached yet)")
		}
		if p.Up {
			fmt.Fprintf(&b, " · link up since %s", clock(p.Since))
		} else {
			b.WriteString(" · link down")
			if p.Error != "" {
				b.WriteString(": " + p.Error)
			}
		}
		if p.Contact.IsZero() {
			b.WriteString(" · never heard from\n")
		} else {
			fmt.Fprintf(&b, " · last contact %s (%s)\n", clock(p.Contact), ago(now, p.Contact))
		}
		fmt.Fprintf(&b, "    peer %s · MPS entry %s · version %s · %d devices\n",
			p.Addr, cmp.Or(p.CIRAAddr, "unknown"), cmp.Or(p.Version, "unknown"), p.Devices)
	}
	return strings.TrimRight(b.String(), "\n")
}

// clock is t's time of day, or "?" for the zero time.
func clock(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.Local().Format(time.TimeOnly)
}

// ago says how long before now t was, to the second.
func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d <= 0 {
		return "just now"
	}
	return d.String() + " ago"
}

// pace says how fast Send devices home closes tunnels.
func pace(rate float64) string {
	if rate <= 0 {
		return "paced"
	}
	return fmt.Sprintf("%g per second", rate)
}

// sendHomeText is what the confirmation of Send devices home says.
func sendHomeText(n int, rate float64) string {
	about := ""
	if rate > 0 {
		about = fmt.Sprintf(" (about %d s)", max(1, int(float64(n)/rate+0.5)))
	}
	return fmt.Sprintf("Presence will close the tunnels of the %d devices here whose home instance is up again, %s%s, "+
		"so that AMT reconnects to its first MPS entry, their home.\n\n"+
		"Unconfirmed on real hardware: whether AMT goes back to its primary after the tunnel closes. "+
		"A device that comes back here stays, reachable as before.", n, pace(rate), about)
}

// confirmSendHome asks before sending the devices home.
func (f *fleetView) confirmSendHome() {
	if f.fleet == nil {
		return
	}
	w := f.u.window()
	if w == nil {
		f.SendHomeNow()
		return
	}
	d := dialog.NewConfirm("Send devices home?", sendHomeText(f.fleet.Away, f.fleet.SendHomeRate), func(ok bool) {
		if ok {
			f.SendHomeNow()
		}
	}, w)
	d.SetConfirmText("Send home")
	d.SetDismissText("Cancel")
	d.Show()
}

// SendHomeNow sends the devices home (the confirmation is done) and says
// how it went.
func (f *fleetView) SendHomeNow() {
	var rate float64
	if f.fleet != nil {
		rate = f.fleet.SendHomeRate
	}
	f.SendHome.Disable()
	b := f.u.b
	f.u.Go(func() {
		n, err := b.SendHome()
		fyne.Do(func() {
			f.SendHome.Enable()
			switch {
			case err != nil:
				f.Message.SetText("The devices could not be sent home: " + err.Error())
			case n == 0:
				f.Message.SetText("No device here is away from a home instance that is up.")
			default:
				f.Message.SetText(fmt.Sprintf("Sending %d devices home, %s: each tunnel is closed, and AMT reconnects to its first MPS entry.", n, pace(rate)))
			}
			f.Message.Show()
			f.reshape()
		})
	})
}

// window returns the window dialogs open over.
func (u *UI) window() fyne.Window {
	if u.Window != nil {
		return u.Window
	}
	return windowOf(u.Root)
}
