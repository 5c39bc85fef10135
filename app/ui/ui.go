// Package ui is the desktop window's content: screens built from value
// snapshots of a running Presence. It never imports fyne.io/fyne/v2/app, so
// it builds and tests without cgo or a display; package app puts it in a
// real window. Widgets are touched only on the Fyne goroutine: Apply and
// Refresh are called through fyne.Do, and anything that may block runs in
// the UI's Go runner and comes back through fyne.Do.
package ui

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps"
)

// Snapshot is what the window shows at one moment.
type Snapshot struct {
	CIRA, Proxy, API string // listen addresses ("" when off)
	Paused           bool   // listeners paused from the tray
	Devices          []mps.Device
	Sessions         []mps.SessionInfo
	Taken            time.Time

	Accepted, Failures               uint64   // tunnel handshakes since start
	BytesToDevices, BytesFromDevices int64    // of the live console sessions
	Recent                           []Event  // latest engine events, newest first
	Samples                          []Sample // devices connected over time, oldest first
	// Problems are things the admin should act on, in sentences.
	Problems []string
	// Fleet is the instance's fleet; nil outside one.
	Fleet *Fleet
}

// Event is one engine event for the overview's list.
type Event struct {
	Time         time.Time
	Kind         string // connected, disconnected, auth-failed
	Device, GUID string
	Reason       string
}

// Sample is how many devices were connected at a time.
type Sample struct {
	Time    time.Time
	Devices int
}

// TimelineEntry is one event of a device's history.
type TimelineEntry struct {
	Time                 time.Time
	Kind, Reason, Remote string
}

// Backend gives the window its data. The adapter implements it in package
// app/adapter; tests use a fake.
type Backend interface {
	Snapshot() Snapshot
	// KillSession ends a live console session.
	KillSession(id uint64) error
	// Disconnect closes a device's tunnel, here or on the instance of the
	// fleet that holds it.
	Disconnect(guid string) error
	// Map opens a loopback port mapping to a device port and returns its
	// address; a peer's device is reached through the fleet.
	Map(guid string, port uint32) (string, error)
	// Timeline returns the device's latest history, newest first.
	Timeline(guid string) ([]TimelineEntry, error)
	// SendHome closes, paced, the tunnels of the devices here whose home
	// instance is up again, and returns how many it will close.
	SendHome() (int, error)
}

// UI is the window content.
type UI struct {
	b    Backend
	Root fyne.CanvasObject
	Tabs *container.AppTabs
	// Go runs work that may block off the Fyne goroutine (default: a
	// goroutine); its result comes back through fyne.Do. Tests make it
	// synchronous.
	Go func(func())
	// Do runs f on the Fyne goroutine, for what comes back by itself
	// from a goroutine the window did not start (a terminal session
	// that ends): default fyne.Do. A test that plays the Fyne goroutine
	// on its own goroutine queues f and runs it there.
	Do func(func())
	// OpenURL opens a URL in the default browser (default: the app's).
	OpenURL func(string) error
	// Window is where dialogs open (nil: the window showing Root).
	Window fyne.Window
	// AddAccount, if set, opens the Accounts screen's form to add the
	// account of kind named user (the Connection problems screen's fix
	// for an unknown CIRA user); nil: the screen shows Accounts and says
	// what to add.
	AddAccount func(kind, user string)

	problems *widget.Label
	banner   fyne.CanvasObject
	onShow   map[*container.TabItem]func()

	Overview Overview
	Dev      DeviceScreen
	// Doctor is the Connection problems screen, with a [ProblemsBackend]
	// only (nil otherwise).
	Doctor *Problems

	// Sessions
	SessionTable *widget.Table
	EndSession   *widget.Button
	sessions     []mps.SessionInfo
	selected     int // row in sessions, -1 for none
	message      *widget.Label

	last Snapshot
}

var sessionColumns = []string{"ID", "Kind", "Account", "Console", "Device", "Port", "To device", "From device", "Since"}

// New builds the content for b: Overview, Devices and Sessions. Call
// Refresh to fill it, and AddScreen for more.
func New(b Backend) *UI {
	u := &UI{b: b, Go: func(f func()) { go f() }, Do: fyne.Do}
	u.OpenURL = func(s string) error {
		a := fyne.CurrentApp()
		if a == nil {
			return fmt.Errorf("no application to open %s with", s)
		}
		return a.OpenURL(parseURL(s))
	}

	u.selected = -1
	u.message = widget.NewLabel("")
	u.SessionTable = newTable(sessionColumns, func() int { return len(u.sessions) }, func(row, col int) string { return sessionCell(u.sessions[row], col) })
	u.SessionTable.OnSelected = func(id widget.TableCellID) {
		u.selected = id.Row
		u.EndSession.Enable()
	}
	u.EndSession = widget.NewButton("End session", u.endSelected)
	u.EndSession.Disable()
	sessionsScreen := container.NewBorder(nil, container.NewHBox(u.EndSession, u.message), nil, nil, u.SessionTable)

	u.Tabs = container.NewAppTabs(
		container.NewTabItem("Overview", u.Overview.build(u)),
		container.NewTabItem("Devices", u.Dev.build(u)),
		container.NewTabItem("Sessions", sessionsScreen),
	)
	u.Tabs.SetTabLocation(container.TabLocationLeading)
	u.onShow = map[*container.TabItem]func(){}
	if pb, ok := b.(ProblemsBackend); ok {
		u.Doctor = newProblems(u, pb)
		u.Doctor.tab = container.NewTabItem(ProblemsScreen, u.Doctor.Root)
		u.Tabs.Append(u.Doctor.tab)
		u.onShow[u.Doctor.tab] = u.Doctor.Read
	}
	u.Tabs.OnSelected = func(it *container.TabItem) {
		if f := u.onShow[it]; f != nil {
			f()
		}
	}
	u.problems = widget.NewLabel("")
	u.problems.Wrapping = fyne.TextWrapWord
	u.problems.Importance = widget.DangerImportance
	u.banner = container.NewBorder(nil, nil, widget.NewIcon(theme.WarningIcon()), nil, u.problems)
	u.banner.Hide()
	u.Root = container.NewBorder(u.banner, nil, nil, nil, u.Tabs)
	return u
}

// AddScreen adds a screen to the sidebar; onShow, if not nil, runs each
// time it is selected (to read what it shows afresh).
func (u *UI) AddScreen(name string, content fyne.CanvasObject, onShow func()) {
	it := container.NewTabItem(name, content)
	u.Tabs.Append(it)
	if onShow != nil {
		u.onShow[it] = onShow
	}
}

// Show selects the screen named name.
func (u *UI) Show(name string) {
	for i, it := range u.Tabs.Items {
		if it.Text == name {
			u.Tabs.SelectIndex(i)
		}
	}
}

// Refresh reads a new snapshot and applies it. Call it on the Fyne
// goroutine; the window itself reads and prepares snapshots off it and
// calls ApplyPrepared.
func (u *UI) Refresh() { u.Apply(u.b.Snapshot()) }

// Prepared is a snapshot with the work that touches no widget done: the
// device list sorted and filtered.
type Prepared struct {
	Snapshot
	devices preparedDevices
}

// Prepare readies s for ApplyPrepared. It touches no widget: call it off
// the Fyne goroutine (one call at a time), so that applying a snapshot of
// 10,000 devices costs the Fyne goroutine a slice swap.
func (u *UI) Prepare(s Snapshot) Prepared {
	return Prepared{Snapshot: s, devices: u.Dev.prepare(s)}
}

// Apply prepares and applies s, on the Fyne goroutine.
func (u *UI) Apply(s Snapshot) { u.ApplyPrepared(u.Prepare(s)) }

// ApplyPrepared updates every screen from p. Call it on the Fyne
// goroutine.
func (u *UI) ApplyPrepared(p Prepared) {
	s := p.Snapshot
	u.last = s
	u.setProblems(s.Problems)
	u.Overview.apply(s)
	var selectedID uint64
	if u.selected >= 0 && u.selected < len(u.sessions) {
		selectedID = u.sessions[u.selected].ID
	}
	u.sessions = slices.Clone(s.Sessions)
	u.selected = slices.IndexFunc(u.sessions, func(x mps.SessionInfo) bool { return x.ID == selectedID && selectedID != 0 })
	if u.selected < 0 {
		u.EndSession.Disable()
	}
	u.SessionTable.Refresh()
	u.Dev.apply(s, p.devices)
	if u.Doctor != nil {
		u.Doctor.tick(s.Taken)
	}
}

// Report shows a problem in the window's banner until the next snapshot
// that does not list it; for failures of the admin's own actions.
func (u *UI) Report(text string) {
	u.setProblems(append(slices.Clone(u.last.Problems), text))
}

func (u *UI) setProblems(ps []string) {
	if len(ps) == 0 {
		u.banner.Hide()
		return
	}
	text := ps[0]
	for _, p := range ps[1:] {
		text += "\n" + p
	}
	u.problems.SetText(text)
	u.banner.Show()
}

// Problems returns the banner's text ("" when hidden).
func (u *UI) Problems() string {
	if !u.banner.Visible() {
		return ""
	}
	return u.problems.Text
}

// newTable is a table with a header row of columns, rows() rows and cells
// from text.
func newTable(columns []string, rows func() int, text func(row, col int) string) *widget.Table {
	return newColumnsTable(func() int { return len(columns) }, func(col int) string { return columns[col] }, rows, text)
}

// newColumnsTable is a table of cols() columns headed by header(col),
// rows() rows and cells from text.
func newColumnsTable(cols func() int, header func(col int) string, rows func() int, text func(row, col int) string) *widget.Table {
	t := widget.NewTableWithHeaders(
		func() (int, int) { return rows(), cols() },
		func() fyne.CanvasObject { return widget.NewLabel("00000000-0000-0000-0000-000000000000") },
		func(id widget.TableCellID, o fyne.CanvasObject) {
			if id.Row < rows() && id.Col < cols() {
				setText(o.(*widget.Label), text(id.Row, id.Col))
			}
		})
	t.ShowHeaderColumn = false
	t.CreateHeader = func() fyne.CanvasObject { return widget.NewLabel("") }
	t.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if id.Row < 0 && id.Col >= 0 && id.Col < cols() {
			o.(*widget.Label).SetText(header(id.Col))
		}
	}
	return t
}

func sessionCell(s mps.SessionInfo, col int) string {
	switch col {
	case 0:
		return strconv.FormatUint(s.ID, 10)
	case 1:
		return s.Kind
	case 2:
		return s.User
	case 3:
		return s.Console
	case 4:
		return s.Device
	case 5:
		return strconv.FormatUint(uint64(s.Port), 10)
	case 6:
		return strconv.FormatInt(s.BytesToDevice, 10)
	case 7:
		return strconv.FormatInt(s.BytesFromDevice, 10)
	case 8:
		return s.Start.Local().Format(time.TimeOnly)
	}
	return ""
}

// endSelected ends the selected session and says what happened.
func (u *UI) endSelected() {
	if u.selected < 0 || u.selected >= len(u.sessions) {
		return
	}
	id := u.sessions[u.selected].ID
	u.Go(func() {
		err := u.b.KillSession(id)
		snap := u.b.Snapshot()
		fyne.Do(func() {
			if err != nil {
				u.message.SetText(fmt.Sprintf("Session %d could not be ended: %v", id, err))
				return
			}
			u.message.SetText(fmt.Sprintf("Session %d ended.", id))
			u.SessionTable.UnselectAll()
			u.selected = -1
			u.EndSession.Disable()
			u.Apply(snap)
		})
	})
}

// setText sets l's text if it changed: Fyne shapes the text again on
// every SetText.
func setText(l *widget.Label, text string) {
	if l.Text != text {
		l.SetText(text)
	}
}

func or(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}

// bytesText is n bytes in a short human form.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
