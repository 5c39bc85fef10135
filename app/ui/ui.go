// Package ui is the desktop window's content: screens built from value
// snapshots of a running Presence. It never imports fyne.io/fyne/v2/app, so
// it builds and tests without cgo or a display; package app puts it in a
// real window. Widgets are touched only on the Fyne goroutine: Refresh is
// called through fyne.Do.
package ui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/proxy"
)

// Snapshot is what the window shows at one moment.
type Snapshot struct {
	CIRA, Proxy, API string // listen addresses ("" when off)
	Devices          []mps.Device
	Sessions         []proxy.SessionInfo
	Taken            time.Time
}

// Backend gives the window its data. The engine implements it in package
// app; tests use a fake.
type Backend interface {
	Snapshot() Snapshot
	// KillSession ends a live console session.
	KillSession(id uint64) error
}

// UI is the window content.
type UI struct {
	b    Backend
	Root fyne.CanvasObject

	// Overview
	status *widget.Label
	counts *widget.Label

	// Devices
	Search  *widget.Entry
	Table   *widget.Table
	devices []mps.Device // all, sorted
	shown   []mps.Device // after the search filter

	// Sessions
	SessionTable *widget.Table
	EndSession   *widget.Button
	sessions     []proxy.SessionInfo
	selected     int // row in sessions, -1 for none
	message      *widget.Label
}

var sessionColumns = []string{"ID", "Kind", "Account", "Console", "Device", "Port", "To device", "From device", "Since"}

var deviceColumns = []string{"Host name", "GUID", "Remote", "TLS", "Connected", "Ports"}

// New builds the content for b. Call Refresh to fill it.
func New(b Backend) *UI {
	u := &UI{b: b}
	u.status = widget.NewLabel("")
	u.counts = widget.NewLabel("")
	overview := container.NewVBox(widget.NewLabelWithStyle("Presence", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), u.status, u.counts)

	u.Search = widget.NewEntry()
	u.Search.SetPlaceHolder("Search host name, GUID or address")
	u.Search.OnChanged = func(string) { u.filter() }
	u.Table = newTable(deviceColumns, func() int { return len(u.shown) }, func(row, col int) string { return cell(u.shown[row], col) })
	for i, w := range []float32{140, 300, 150, 70, 160, 200} {
		u.Table.SetColumnWidth(i, w)
	}
	devicesScreen := container.NewBorder(u.Search, nil, nil, nil, u.Table)

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

	tabs := container.NewAppTabs(
		container.NewTabItem("Overview", overview),
		container.NewTabItem("Devices", devicesScreen),
		container.NewTabItem("Sessions", sessionsScreen),
	)
	tabs.SetTabLocation(container.TabLocationLeading)
	u.Root = tabs
	return u
}

// newTable is a table with a header row of columns, rows() rows and cells
// from text.
func newTable(columns []string, rows func() int, text func(row, col int) string) *widget.Table {
	t := widget.NewTableWithHeaders(
		func() (int, int) { return rows(), len(columns) },
		func() fyne.CanvasObject { return widget.NewLabel("00000000-0000-0000-0000-000000000000") },
		func(id widget.TableCellID, o fyne.CanvasObject) {
			if id.Row < rows() {
				o.(*widget.Label).SetText(text(id.Row, id.Col))
			}
		})
	t.ShowHeaderColumn = false
	t.CreateHeader = func() fyne.CanvasObject { return widget.NewLabel("") }
	t.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if id.Row < 0 && id.Col >= 0 && id.Col < len(columns) {
			o.(*widget.Label).SetText(columns[id.Col])
		}
	}
	return t
}

func cell(d mps.Device, col int) string {
	switch col {
	case 0:
		return d.Hostname
	case 1:
		return d.UUID
	case 2:
		return d.Remote
	case 3:
		return d.Info.TLSVersion
	case 4:
		if d.Info.ConnectedAt.IsZero() {
			return ""
		}
		return d.Info.ConnectedAt.Local().Format(time.DateTime)
	case 5:
		ps := make([]string, len(d.Info.Forwards))
		for i, f := range d.Info.Forwards {
			ps[i] = strconv.FormatUint(uint64(f.Port), 10)
		}
		return strings.Join(ps, ",")
	}
	return ""
}

func sessionCell(s proxy.SessionInfo, col int) string {
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
	if err := u.b.KillSession(id); err != nil {
		u.message.SetText(fmt.Sprintf("Session %d could not be ended: %v", id, err))
		return
	}
	u.message.SetText(fmt.Sprintf("Session %d ended.", id))
	u.SessionTable.UnselectAll()
	u.selected = -1
	u.EndSession.Disable()
	u.Refresh()
}

// Refresh reads a new snapshot and updates every screen. Call it on the
// Fyne goroutine.
func (u *UI) Refresh() {
	s := u.b.Snapshot()
	u.status.SetText(fmt.Sprintf("CIRA %s · proxy %s · API %s", or(s.CIRA), or(s.Proxy), or(s.API)))
	u.counts.SetText(fmt.Sprintf("%d devices connected · %d console sessions", len(s.Devices), len(s.Sessions)))
	var selectedID uint64
	if u.selected >= 0 && u.selected < len(u.sessions) {
		selectedID = u.sessions[u.selected].ID
	}
	u.sessions = slices.Clone(s.Sessions)
	u.selected = slices.IndexFunc(u.sessions, func(x proxy.SessionInfo) bool { return x.ID == selectedID && selectedID != 0 })
	if u.selected < 0 {
		u.EndSession.Disable()
	}
	u.SessionTable.Refresh()
	u.devices = slices.Clone(s.Devices)
	slices.SortFunc(u.devices, func(a, b mps.Device) int { return strings.Compare(a.Hostname, b.Hostname) })
	u.filter()
}

func or(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}

// filter applies the search text to the device list.
func (u *UI) filter() {
	q := strings.ToLower(strings.TrimSpace(u.Search.Text))
	u.shown = u.shown[:0]
	for _, d := range u.devices {
		if q == "" || strings.Contains(strings.ToLower(d.Hostname), q) || strings.Contains(d.UUID, q) || strings.Contains(d.Remote, q) {
			u.shown = append(u.shown, d)
		}
	}
	u.Table.Refresh()
}

// Shown returns how many devices the table lists.
func (u *UI) Shown() int { return len(u.shown) }
