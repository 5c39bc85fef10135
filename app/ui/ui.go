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
	// Disconnect closes a device's tunnel.
	Disconnect(guid string) error
	// Map opens a loopback port mapping to a device port and returns its
	// address.
	Map(guid string, port uint32) (string, error)
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

	// the selected device's pane
	Detail        *widget.Label
	DisconnectBtn *widget.Button
	MapBtn        *widget.Button
	CopyBtn       *widget.Button
	deviceMsg     *widget.Label
	selectedGUID  string
	proxyAddr     string

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
	u.Detail = widget.NewLabel("Select a device.")
	u.Detail.Wrapping = fyne.TextWrapWord
	u.DisconnectBtn = widget.NewButton("Disconnect", u.disconnectSelected)
	u.MapBtn = widget.NewButton("Map web UI (16992)", func() { u.mapSelected(16992) })
	u.CopyBtn = widget.NewButton("Copy console address", u.copySelected)
	u.deviceMsg = widget.NewLabel("")
	u.deviceMsg.Wrapping = fyne.TextWrapWord
	u.selectDevice(-1)
	u.Table.OnSelected = func(id widget.TableCellID) { u.selectDevice(id.Row) }
	detail := container.NewVBox(
		widget.NewLabelWithStyle("Device", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		u.Detail, u.CopyBtn, u.MapBtn, u.DisconnectBtn, u.deviceMsg)
	split := container.NewHSplit(u.Table, container.NewVScroll(detail))
	split.Offset = 0.68
	devicesScreen := container.NewBorder(u.Search, nil, nil, nil, split)

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

// selectDevice shows row's device in the pane (-1: none).
func (u *UI) selectDevice(row int) {
	if row < 0 || row >= len(u.shown) {
		u.selectedGUID = ""
		u.Detail.SetText("Select a device.")
		u.DisconnectBtn.Disable()
		u.MapBtn.Disable()
		u.CopyBtn.Disable()
		return
	}
	u.selectedGUID = u.shown[row].UUID
	u.showDetail(u.shown[row])
	u.DisconnectBtn.Enable()
	u.MapBtn.Enable()
	u.CopyBtn.Enable()
}

func (u *UI) showDetail(d mps.Device) {
	in := d.Info
	ka := "none yet"
	if !in.LastKeepalive.IsZero() {
		ka = in.LastKeepalive.Local().Format(time.DateTime)
	}
	u.Detail.SetText(fmt.Sprintf("Host name: %s\nGUID: %s\nRemote: %s\nTLS: %s, %s\nPorts: %s\nConnected since: %s\nLast keepalive: %s\nChannels open: %d",
		d.Hostname, d.UUID, d.Remote, in.TLSVersion, in.TLSCipher, cell(d, 5), cell(d, 4), ka, in.Channels))
}

// consoleAddress is what a console names the device by through the proxy.
func (u *UI) consoleAddress() string {
	addr := u.selectedGUID + ".amt:16992"
	if u.proxyAddr != "" {
		addr += " (proxy " + u.proxyAddr + ")"
	}
	return addr
}

func (u *UI) copySelected() {
	if u.selectedGUID == "" {
		return
	}
	if app := fyne.CurrentApp(); app != nil {
		app.Clipboard().SetContent(u.consoleAddress())
	}
	u.deviceMsg.SetText("Copied: " + u.consoleAddress())
}

func (u *UI) disconnectSelected() {
	if u.selectedGUID == "" {
		return
	}
	if err := u.b.Disconnect(u.selectedGUID); err != nil {
		u.deviceMsg.SetText("The device could not be disconnected: " + err.Error())
		return
	}
	u.deviceMsg.SetText("Disconnected " + u.selectedGUID + "; AMT will reconnect on its own schedule.")
	u.Refresh()
}

func (u *UI) mapSelected(port uint32) {
	if u.selectedGUID == "" {
		return
	}
	addr, err := u.b.Map(u.selectedGUID, port)
	if err != nil {
		u.deviceMsg.SetText(fmt.Sprintf("Port %d could not be mapped: %v", port, err))
		return
	}
	u.deviceMsg.SetText(fmt.Sprintf("Port %d of the device is at %s (closes when the device leaves or after 10 minutes unused).", port, addr))
}

// Refresh reads a new snapshot and updates every screen. Call it on the
// Fyne goroutine.
func (u *UI) Refresh() {
	s := u.b.Snapshot()
	u.proxyAddr = s.Proxy
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
	// Keep the pane on the selected device while it is there.
	if u.selectedGUID != "" {
		i := slices.IndexFunc(u.devices, func(d mps.Device) bool { return d.UUID == u.selectedGUID })
		if i < 0 {
			u.Table.UnselectAll()
			u.selectDevice(-1)
			u.Detail.SetText("The device has disconnected.")
		} else {
			u.showDetail(u.devices[i])
		}
	}
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
