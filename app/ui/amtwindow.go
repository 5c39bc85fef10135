package ui

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/widget"
)

// DeviceWindow is a device's own window, opened from the device pane: its
// hardware inventory, event log and audit log, each read when its tab is
// first shown and exported as CSV, and its Serial-over-LAN terminal. The
// listings need more room than the pane has. It lives on the Fyne
// goroutine.
type DeviceWindow struct {
	W    fyne.Window
	Tabs *container.AppTabs
	// Header names the device, and says when it is not connected.
	Header                  *widget.Label
	Hardware, Events, Audit *LogTab
	// Terminal is the Serial-over-LAN tab; nil when the backend opens
	// no terminals.
	Terminal *TerminalTab

	guid, name string
	connected  bool
	tabs       map[*container.TabItem]*LogTab
}

// The listings' column widths.
var (
	hardwareWidths = []float32{120, 150, 230, 170, 330}
	eventWidths    = []float32{200, 110, 150, 500}
	auditWidths    = []float32{200, 170, 220, 140, 130, 420}
)

// OpenWindow opens the device's window, or brings it to the front.
func (d *DeviceScreen) OpenWindow(guid, name string) *DeviceWindow {
	if dw := d.windows[guid]; dw != nil {
		dw.W.Show()
		dw.W.RequestFocus()
		return dw
	}
	a := fyne.CurrentApp()
	if a == nil || d.amt == nil {
		return nil
	}
	dw := newDeviceWindow(d.u, d.amt, guid, name, a.NewWindow(name+" — AMT"))
	d.windows[guid] = dw
	dw.W.SetOnClosed(func() {
		dw.closed()
		if d.windows[guid] == dw {
			delete(d.windows, guid)
		}
	})
	dw.W.Show()
	return dw
}

// Window returns the device's window if it is open, else nil.
func (d *DeviceScreen) Window(guid string) *DeviceWindow { return d.windows[guid] }

// checkWindows tells the open device windows whether their device is
// still connected (here or on a peer of the fleet).
func (d *DeviceScreen) checkWindows() {
	for guid, dw := range d.windows {
		dw.setConnected(slices.ContainsFunc(d.byName, func(r *row) bool { return r.UUID == guid }))
	}
}

func newDeviceWindow(u *UI, b AMTBackend, guid, name string, w fyne.Window) *DeviceWindow {
	dw := &DeviceWindow{W: w, guid: guid, name: name, connected: true}
	base := fileBase(name)
	dw.Hardware = newLogTab(u, w, "the hardware inventory", "component", base+"-hardware.csv", hardwareWidths,
		func() (Table, error) { h, err := b.AMTHardware(guid); return hardwareTable(h), err })
	dw.Events = newLogTab(u, w, "the event log", "record", base+"-event-log.csv", eventWidths,
		func() (Table, error) { evs, err := b.AMTEventLog(guid); return eventTable(evs), err })
	dw.Audit = newLogTab(u, w, "the audit log", "record", base+"-audit-log.csv", auditWidths,
		func() (Table, error) { l, err := b.AMTAuditLog(guid); return auditTable(l), err })
	hw := container.NewTabItem("Hardware", dw.Hardware.Root)
	ev := container.NewTabItem("Event log", dw.Events.Root)
	au := container.NewTabItem("Audit log", dw.Audit.Root)
	dw.tabs = map[*container.TabItem]*LogTab{hw: dw.Hardware, ev: dw.Events, au: dw.Audit}
	dw.Tabs = container.NewAppTabs(hw, ev, au)
	if sb, ok := u.b.(SOLBackend); ok {
		dw.Terminal = newTerminalTab(u, w, sb, b, guid, name)
		dw.Tabs.Append(container.NewTabItem("Terminal", dw.Terminal.Root))
	}
	dw.Tabs.OnSelected = func(it *container.TabItem) {
		if t := dw.tabs[it]; t != nil {
			t.ensure()
		}
		if dw.Terminal != nil && it.Content == dw.Terminal.Root {
			dw.Terminal.shown()
		}
	}
	dw.Header = widget.NewLabelWithStyle(name+" · GUID "+guid, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	w.SetContent(container.NewBorder(dw.Header, nil, nil, nil, dw.Tabs))
	w.Resize(fyne.NewSize(1000, 620))
	dw.Hardware.ensure()
	return dw
}

// Show selects the tab named name (Hardware, Event log, Audit log or
// Terminal), which reads its listing if it has none yet.
func (dw *DeviceWindow) Show(name string) {
	for i, it := range dw.Tabs.Items {
		if it.Text == name {
			dw.Tabs.SelectIndex(i)
		}
	}
}

// setConnected enables the window's calls while the device is connected;
// a device that goes ends its terminal session.
func (dw *DeviceWindow) setConnected(up bool) {
	if up == dw.connected {
		return
	}
	dw.connected = up
	head := dw.name + " · GUID " + dw.guid
	if !up {
		head += " · not connected"
	}
	dw.Header.SetText(head)
	for _, t := range []*LogTab{dw.Hardware, dw.Events, dw.Audit} {
		t.setConnected(up)
	}
	if dw.Terminal != nil {
		dw.Terminal.setConnected(up)
	}
}

// closed ends the window's terminal session.
func (dw *DeviceWindow) closed() {
	if dw.Terminal != nil {
		dw.Terminal.Close()
	}
}

// fileBase is a device name made safe for a file name.
func fileBase(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			b[i] = '_'
		}
	}
	return strings.Trim(string(b), ".")
}

// LogTab is a listing read from the device on demand: a table, Reload,
// Export as CSV, and a line that says what it holds or why it could not
// be read. Selecting a row shows it in full below the table.
type LogTab struct {
	Root           *fyne.Container
	Table          *widget.Table
	Reload, Export *widget.Button
	Msg, Detail    *widget.Label

	u          *UI
	w          fyne.Window
	read       func() (Table, error)
	what, unit string
	file       string
	widths     []float32
	data       Table
	loaded     bool
	busy       bool
	connected  bool
	seq        int
}

func newLogTab(u *UI, w fyne.Window, what, unit, file string, widths []float32, read func() (Table, error)) *LogTab {
	t := &LogTab{u: u, w: w, read: read, what: what, unit: unit, file: file, widths: widths, connected: true}
	t.Msg = widget.NewLabel("")
	t.Detail = widget.NewLabel("")
	t.Detail.Wrapping = fyne.TextWrapWord
	t.Table = widget.NewTableWithHeaders(
		func() (int, int) { return len(t.data.Rows), len(t.data.Columns) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(id widget.TableCellID, o fyne.CanvasObject) {
			if id.Row < len(t.data.Rows) && id.Col < len(t.data.Rows[id.Row]) {
				setText(o.(*widget.Label), t.data.Rows[id.Row][id.Col])
			}
		})
	t.Table.ShowHeaderColumn = false
	t.Table.CreateHeader = func() fyne.CanvasObject { return widget.NewLabel("") }
	t.Table.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if id.Row < 0 && id.Col >= 0 && id.Col < len(t.data.Columns) {
			o.(*widget.Label).SetText(t.data.Columns[id.Col])
		}
	}
	t.Table.OnSelected = func(id widget.TableCellID) { t.showRow(id.Row) }
	t.Reload = widget.NewButton("Reload", t.load)
	t.Export = widget.NewButton("Export CSV…", t.export)
	t.Export.Disable()
	top := container.NewBorder(nil, nil, container.NewHBox(t.Reload, t.Export), nil, t.Msg)
	t.Root = container.NewBorder(top, t.Detail, nil, nil, t.Table)
	return t
}

// Rows returns the rows the tab holds.
func (t *LogTab) Rows() [][]string { return t.data.Rows }

// Loaded reports whether the tab holds a listing read from the device.
func (t *LogTab) Loaded() bool { return t.loaded }

// ensure reads the listing if the tab has none.
func (t *LogTab) ensure() {
	if !t.loaded && !t.busy {
		t.load()
	}
}

// load reads the listing off the Fyne goroutine.
func (t *LogTab) load() {
	if !t.connected {
		return
	}
	t.busy = true
	t.seq++
	seq := t.seq
	t.enable()
	t.Msg.SetText("Reading " + t.what + "…")
	t.u.Go(func() {
		data, err := t.read()
		fyne.Do(func() {
			if seq != t.seq {
				return
			}
			t.busy = false
			if err != nil {
				t.Msg.SetText(capital(t.what) + " could not be read: " + amtSentence(err))
			} else {
				t.data, t.loaded = data, true
				t.Msg.SetText(strings.TrimSpace(count(len(data.Rows), t.unit) + ". " + data.Note))
				t.Detail.SetText("")
				t.Table.UnselectAll()
				for i := range data.Columns {
					w := float32(150)
					if i < len(t.widths) {
						w = t.widths[i]
					}
					t.Table.SetColumnWidth(i, w)
				}
				t.Table.Refresh()
				t.Table.ScrollToTop()
			}
			t.enable()
		})
	})
}

func (t *LogTab) enable() {
	enable(t.Reload, t.connected && !t.busy)
	enable(t.Export, t.loaded && !t.busy)
}

func (t *LogTab) setConnected(up bool) {
	t.connected = up
	if !up && t.busy {
		t.seq++ // the call fails: say why the device went instead
		t.busy = false
		t.Msg.SetText("The device is not connected.")
	}
	t.enable()
}

// showRow shows a row in full below the table.
func (t *LogTab) showRow(r int) {
	if r < 0 || r >= len(t.data.Rows) {
		t.Detail.SetText("")
		return
	}
	var b strings.Builder
	for i, v := range t.data.Rows[r] {
		if i < len(t.data.Columns) && v != "" {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			b.WriteString(t.data.Columns[i] + ": " + v)
		}
	}
	t.Detail.SetText(b.String())
}

func count(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// export asks where to save the listing as CSV.
func (t *LogTab) export() {
	if !t.loaded {
		return
	}
	d := dialog.NewFileSave(func(f fyne.URIWriteCloser, err error) {
		if err != nil {
			t.Msg.SetText("The file could not be opened: " + err.Error())
			return
		}
		if f != nil {
			t.ExportTo(f, f.URI().Name())
		}
	}, t.w)
	d.SetFileName(t.file)
	d.SetFilter(storage.NewExtensionFileFilter([]string{".csv"}))
	d.Show()
}

// ExportTo writes the listing as CSV to f, off the Fyne goroutine, closes
// it, and says how it went.
func (t *LogTab) ExportTo(f io.WriteCloser, name string) {
	data := t.data
	t.Export.Disable()
	t.u.Go(func() {
		err := WriteCSV(f, data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		fyne.Do(func() {
			t.enable()
			if err != nil {
				t.Msg.SetText(fmt.Sprintf("%s could not be saved to %s: %v", capital(t.what), name, err))
				return
			}
			t.Msg.SetText(fmt.Sprintf("Saved %s (%s) to %s.", t.what, count(len(data.Rows), t.unit), name))
		})
	})
}

// capital is s with its first letter upper case.
func capital(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
