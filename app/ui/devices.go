package ui

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps"
)

// Status filter choices of the device table.
const (
	StatusConnected    = "Connected"
	StatusDisconnected = "Disconnected"
	StatusAll          = "All"
)

// maxGone is how many devices that left the window remembers.
const maxGone = 1000

// deviceColumns are the device table's columns, by the number cell
// knows them by; colInstance is shown only in a fleet, colPower only
// with an [AMTBackend].
var deviceColumns = []string{"Status", "Host name", "GUID", "Remote", "TLS", "Connected", "Ports", "Instance", "Power"}

// deviceWidths are the columns' widths, in the same order.
var deviceWidths = []float32{110, 140, 300, 150, 70, 160, 160, 150, 70}

const (
	colInstance = 7
	colPower    = 8
)

// The columns the table shows, in order: outside a fleet, and in one
// (where the instance that holds the device follows its host name); with
// the AMT toolbox, the power state follows the status.
var (
	soloColumns       = []int{0, 1, 2, 3, 4, 5, 6}
	fleetColumns      = []int{0, 1, colInstance, 2, 3, 4, 5, 6}
	soloPowerColumns  = []int{0, colPower, 1, 2, 3, 4, 5, 6}
	fleetPowerColumns = []int{0, colPower, 1, colInstance, 2, 3, 4, 5, 6}
)

// row is a device as the table lists it.
type row struct {
	mps.Device
	gone time.Time // zero while connected
	// holder is what the window calls the instance of the fleet that
	// holds the device, and holderID its id; both "" for this instance.
	// A peer's device has no tunnel details here (Info.ConnectedAt only).
	holder, holderID string
}

// elsewhere reports whether another instance of the fleet holds r.
func (r *row) elsewhere() bool { return r.holder != "" }

// DeviceScreen is the Devices screen: a virtualised table with search and a
// status filter, and a pane for the selected device.
type DeviceScreen struct {
	u *UI

	Search *widget.Entry
	Status *widget.Select
	Table  *widget.Table
	// cols are the logical columns the table shows (soloColumns,
	// fleetColumns or their Power variants); fleetCols is set for the
	// fleet's.
	cols      []int
	fleetCols bool
	// amt is the backend's AMT toolbox, nil if it has none; AMT is the
	// pane's section for it.
	amt AMTBackend
	AMT *AMTPane
	// windows are the devices' own windows that are open, by GUID.
	windows map[string]*DeviceWindow
	// paneScroll holds the pane; it lays the pane out again when the
	// AMT section's buttons change.
	paneScroll *container.Scroll

	// On the Fyne goroutine: the rows of the last prepared snapshot, and
	// what the table shows of them.
	byName []*row // connected devices, by host name
	gone   []*row // devices that left since the window opened, by host name
	shown  []*row // after search and status filter

	// The search and status as the preparing goroutine reads them.
	fmu        sync.Mutex
	query      string // lower case, trimmed
	statusSeen string

	// Owned by Prepare (one goroutine at a time).
	pmu     sync.Mutex
	prev    []*row
	goneMap map[string]*row

	// AddLAN opens "Add a device on the LAN…", with an [EnrolBackend]
	// only (nil otherwise).
	AddLAN *widget.Button

	Detail, Timeline                    *widget.Label
	DisconnectBtn, MapBtn, CopyBtn, Web *widget.Button
	deviceMsg                           *widget.Label
	selectedGUID                        string
	proxyAddr                           string
}

func (d *DeviceScreen) build(u *UI) fyne.CanvasObject {
	d.u = u
	d.goneMap = map[string]*row{}
	d.windows = map[string]*DeviceWindow{}
	d.amt, _ = u.b.(AMTBackend)
	d.Search = widget.NewEntry()
	d.Search.SetPlaceHolder("Search host name, GUID or address")
	d.Search.OnChanged = func(string) { d.filter() }
	d.Status = widget.NewSelect([]string{StatusConnected, StatusDisconnected, StatusAll}, func(string) { d.filter() })
	d.Status.SetSelected(StatusConnected)
	d.Table = newColumnsTable(
		func() int { return len(d.cols) },
		func(col int) string { return deviceColumns[d.cols[col]] },
		func() int { return len(d.shown) },
		func(r, col int) string { return d.cell(d.shown[r], d.cols[col]) })
	d.setColumns(false)
	// The pane's texts are lines of their own and do not wrap: a wrapped
	// label in a box reports the height of its first layout, and the
	// buttons below would be drawn over it. The pane scrolls both ways.
	d.Detail = widget.NewLabel("Select a device.")
	d.Timeline = widget.NewLabel("")
	d.DisconnectBtn = widget.NewButton("Disconnect", d.disconnectSelected)
	d.MapBtn = widget.NewButton("Map web UI port (16992)", func() { d.mapSelected(16992, false) })
	d.Web = widget.NewButton("Open AMT web UI", func() { d.mapSelected(16992, true) })
	d.Web.Importance = widget.HighImportance
	d.CopyBtn = widget.NewButton("Copy proxy address", d.copySelected)
	d.deviceMsg = widget.NewLabel("")
	// The AMT section (power, actions) comes right after the details:
	// it is what an admin looks for first.
	pane := container.NewVBox(widget.NewLabelWithStyle("Device", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), d.Detail)
	if d.amt != nil {
		d.AMT = newAMTPane(d, d.amt)
		pane.Add(d.AMT.Box)
	}
	for _, o := range []fyne.CanvasObject{d.Web, d.CopyBtn, d.MapBtn, d.DisconnectBtn, d.deviceMsg,
		widget.NewLabelWithStyle("Timeline", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), d.Timeline} {
		pane.Add(o)
	}
	d.selectDevice(-1)
	d.Table.OnSelected = func(id widget.TableCellID) { d.selectDevice(id.Row) }
	d.paneScroll = container.NewScroll(pane)
	split := container.NewHSplit(d.Table, d.paneScroll)
	split.Offset = 0.68
	var right fyne.CanvasObject = d.Status
	if _, ok := u.b.(EnrolBackend); ok {
		d.AddLAN = widget.NewButton("Add a device on the LAN…", func() { u.OpenEnrol("") })
		right = container.NewHBox(d.Status, d.AddLAN)
	}
	top := container.NewBorder(nil, nil, nil, right, d.Search)
	return container.NewBorder(top, nil, nil, nil, split)
}

// setColumns shows the columns of a fleet's instance or of one alone
// (and their widths).
func (d *DeviceScreen) setColumns(fleet bool) {
	var cols []int
	switch {
	case fleet && d.amt != nil:
		cols = fleetPowerColumns
	case fleet:
		cols = fleetColumns
	case d.amt != nil:
		cols = soloPowerColumns
	default:
		cols = soloColumns
	}
	d.cols, d.fleetCols = cols, fleet
	for i, c := range cols {
		d.Table.SetColumnWidth(i, deviceWidths[c])
	}
}

// cell is the text of a device's cell in the table: cell's, or the power
// watch's reading.
func (d *DeviceScreen) cell(r *row, col int) string {
	if col != colPower {
		return cell(r, col)
	}
	if !r.gone.IsZero() || d.amt == nil {
		return ""
	}
	return powerColumn(d.amt.Power(r.UUID))
}

// Columns returns the headers of the columns the table shows.
func (d *DeviceScreen) Columns() []string {
	out := make([]string, len(d.cols))
	for i, c := range d.cols {
		out[i] = deviceColumns[c]
	}
	return out
}

func cell(d *row, col int) string {
	switch col {
	case 0:
		if !d.gone.IsZero() {
			return "left " + d.gone.Local().Format(time.TimeOnly)
		}
		if !d.Info.Ready && !d.elsewhere() {
			return "starting"
		}
		return "connected"
	case 1:
		return d.Hostname
	case 2:
		return d.UUID
	case 3:
		return d.Remote
	case 4:
		return d.Info.TLSVersion
	case 5:
		if d.Info.ConnectedAt.IsZero() {
			return ""
		}
		return d.Info.ConnectedAt.Local().Format(time.DateTime)
	case 6:
		ps := make([]string, len(d.Info.Forwards))
		for i, f := range d.Info.Forwards {
			ps[i] = strconv.FormatUint(uint64(f.Port), 10)
		}
		return strings.Join(ps, ",")
	case colInstance:
		if d.elsewhere() {
			return d.holder
		}
		return "this one"
	}
	return ""
}

// preparedDevices is the device list of a snapshot, made ready off the
// Fyne goroutine: sorted, departed devices kept, filtered.
type preparedDevices struct {
	byName, gone, shown []*row
	query, status       string // the filter shown was made with
	fleet               bool   // the snapshot is of an instance in a fleet
}

// prepare does the work of a snapshot that does not touch widgets: the
// sort by host name, the bookkeeping of devices that left, the filter.
// The window calls it off the Fyne goroutine, one call at a time.
func (d *DeviceScreen) prepare(s Snapshot) preparedDevices {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	now := s.Taken
	if now.IsZero() {
		now = time.Now()
	}
	var peers []PeerDevice
	if s.Fleet != nil {
		peers = s.Fleet.Devices
	}
	seen := make(map[string]bool, len(s.Devices)+len(peers))
	for _, x := range s.Devices {
		seen[x.UUID] = true
	}
	// A device a peer holds that is also here (it is moving) is listed
	// once, as this instance's.
	rows := make([]row, len(s.Devices), len(s.Devices)+len(peers))
	for i, x := range s.Devices {
		rows[i] = row{Device: x}
	}
	if len(peers) > 0 {
		names := make(map[string]string, len(s.Fleet.Peers))
		for _, p := range s.Fleet.Peers {
			names[p.ID] = p.Label()
		}
		for _, o := range peers {
			if seen[o.GUID] {
				continue
			}
			seen[o.GUID] = true
			rows = append(rows, row{Device: mps.Device{UUID: o.GUID, Hostname: o.Host}, holder: cmp.Or(names[o.Instance], o.Instance, "?"), holderID: o.Instance})
			rows[len(rows)-1].Info.ConnectedAt = o.Since
		}
	}
	for _, old := range d.prev {
		if !seen[old.UUID] {
			g := *old
			g.gone = now
			d.goneMap[old.UUID] = &g
		}
	}
	for guid := range seen {
		delete(d.goneMap, guid)
	}
	gone := make([]*row, 0, len(d.goneMap))
	for _, r := range d.goneMap {
		gone = append(gone, r)
	}
	if len(gone) > maxGone { // forget the longest gone
		slices.SortFunc(gone, func(a, b *row) int { return a.gone.Compare(b.gone) })
		for _, r := range gone[:len(gone)-maxGone] {
			delete(d.goneMap, r.UUID)
		}
		gone = gone[len(gone)-maxGone:]
	}
	byHost := func(a, b *row) int { return strings.Compare(a.Hostname, b.Hostname) }
	slices.SortFunc(gone, byHost)
	byName := make([]*row, len(rows))
	for i := range rows {
		byName[i] = &rows[i]
	}
	slices.SortFunc(byName, byHost)
	d.prev = byName
	d.fmu.Lock()
	q, status := d.query, d.statusSeen
	d.fmu.Unlock()
	return preparedDevices{byName: byName, gone: gone, shown: filterRows(byName, gone, q, status), query: q, status: status, fleet: s.Fleet != nil}
}

// apply shows prepared devices: a slice swap and a table refresh, unless
// the search changed meanwhile.
func (d *DeviceScreen) apply(s Snapshot, p preparedDevices) {
	d.proxyAddr = s.Proxy
	if p.fleet != d.fleetCols {
		d.setColumns(p.fleet)
	}
	d.byName, d.gone = p.byName, p.gone
	if q, status := d.filterParams(); q == p.query && status == p.status {
		d.shown = p.shown
		d.Table.Refresh()
	} else {
		d.filter()
	}
	// Keep the pane on the selected device while it is there.
	if d.selectedGUID != "" {
		i := slices.IndexFunc(d.byName, func(r *row) bool { return r.UUID == d.selectedGUID })
		if i >= 0 {
			d.showDetail(d.byName[i])
			d.AMT.tick(d.byName[i])
		} else if d.Status.Selected == StatusConnected {
			d.Table.UnselectAll()
			d.selectDevice(-1)
			d.Detail.SetText("The device has disconnected.")
		} else {
			d.AMT.gone()
		}
	}
	d.checkWindows()
}

// filterParams returns the search text (lower case) and the status, and
// records them for prepare.
func (d *DeviceScreen) filterParams() (string, string) {
	q := strings.ToLower(strings.TrimSpace(d.Search.Text))
	d.fmu.Lock()
	d.query, d.statusSeen = q, d.Status.Selected
	d.fmu.Unlock()
	return q, d.Status.Selected
}

// filter applies the search text and the status to the device list, at
// once, when the admin changes them.
func (d *DeviceScreen) filter() {
	if d.Table == nil {
		return
	}
	q, status := d.filterParams()
	d.shown = filterRows(d.byName, d.gone, q, status)
	d.Table.Refresh()
}

// filterRows returns the rows that match q (lower case) with status.
func filterRows(byName, gone []*row, q, status string) []*row {
	match := func(r *row) bool {
		return q == "" || strings.Contains(strings.ToLower(r.Hostname), q) || strings.Contains(r.UUID, q) || strings.Contains(r.Remote, q) ||
			r.holder != "" && strings.Contains(strings.ToLower(r.holder), q)
	}
	var shown []*row
	if status != StatusDisconnected {
		if q == "" {
			shown = slices.Clone(byName)
		} else {
			for _, r := range byName {
				if match(r) {
					shown = append(shown, r)
				}
			}
		}
	}
	if status != StatusConnected {
		for _, r := range gone {
			if match(r) {
				shown = append(shown, r)
			}
		}
	}
	return shown
}

// selectDevice shows row's device in the pane (-1: none).
func (d *DeviceScreen) selectDevice(r int) {
	btns := []*widget.Button{d.DisconnectBtn, d.MapBtn, d.CopyBtn, d.Web}
	if r < 0 || r >= len(d.shown) {
		d.selectedGUID = ""
		d.Detail.SetText("Select a device.")
		d.Timeline.SetText("")
		for _, b := range btns {
			b.Disable()
		}
		d.AMT.show(nil)
		if d.amt != nil {
			d.amt.SelectPower("")
		}
		return
	}
	x := d.shown[r]
	d.selectedGUID = x.UUID
	d.showDetail(x)
	if d.amt != nil {
		d.amt.SelectPower(x.UUID)
	}
	d.AMT.show(x)
	for _, b := range btns {
		if x.gone.IsZero() {
			b.Enable()
		} else {
			b.Disable()
		}
	}
	if x.elsewhere() {
		// Its history is kept where its tunnel is.
		d.Timeline.SetText("Held by instance " + x.holder + ":\nits timeline is in that instance's history.")
		return
	}
	d.loadTimeline(x.UUID)
}

// loadTimeline reads the device's history off the Fyne goroutine.
func (d *DeviceScreen) loadTimeline(guid string) {
	d.Timeline.SetText("Reading the history…")
	b := d.u.b
	d.u.Go(func() {
		entries, err := b.Timeline(guid)
		fyne.Do(func() {
			if d.selectedGUID != guid {
				return // another device was selected meanwhile
			}
			d.Timeline.SetText(timelineText(entries, err))
		})
	})
}

func timelineText(entries []TimelineEntry, err error) string {
	if err != nil {
		return "The history could not be read:\n" + err.Error()
	}
	if len(entries) == 0 {
		return "No history recorded yet."
	}
	var b strings.Builder
	for i, e := range entries {
		if i == 20 {
			fmt.Fprintf(&b, "… and %d earlier (see History)", len(entries)-i)
			break
		}
		fmt.Fprintf(&b, "%s  %s", e.Time.Local().Format(time.DateTime), e.Kind)
		if e.Reason != "" {
			b.WriteString(" (" + e.Reason + ")")
		}
		if e.Remote != "" {
			b.WriteString(" from " + e.Remote)
		}
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

func (d *DeviceScreen) showDetail(x *row) {
	if x.elsewhere() {
		d.showPeerDetail(x)
		return
	}
	in := x.Info
	ka := "none yet"
	if !in.LastKeepalive.IsZero() {
		ka = in.LastKeepalive.Local().Format(time.DateTime)
	}
	sessions := 0
	for _, s := range d.u.last.Sessions {
		if strings.EqualFold(s.Device, x.UUID) || (x.Hostname != "" && strings.EqualFold(s.Host, x.Hostname)) {
			sessions++
		}
	}
	state := "connected"
	if x.Suspect {
		state = fmt.Sprintf("connected, suspect: silent for %s, a keepalive missed (the idle timeout drops it; see Connection problems)", x.Silent.Round(time.Second))
	}
	if !x.gone.IsZero() {
		state = "disconnected at " + x.gone.Local().Format(time.DateTime)
	}
	d.Detail.SetText(fmt.Sprintf("Host name: %s\nGUID: %s\nState: %s\nRemote: %s\nTLS: %s\nCipher: %s\nPorts: %s\nConnected since: %s\nLast keepalive: %s\nChannels open: %d\nConsole sessions: %d",
		x.Hostname, x.UUID, state, x.Remote, in.TLSVersion, in.TLSCipher, cell(x, 6), cell(x, 5), ka, in.Channels, sessions))
}

// showPeerDetail describes a device another instance holds: what its
// table row says; the tunnel's details are on that instance.
func (d *DeviceScreen) showPeerDetail(x *row) {
	state := "connected to instance " + x.holder
	if !x.gone.IsZero() {
		state = "disconnected at " + x.gone.Local().Format(time.DateTime)
	}
	since := "unknown"
	if !x.Info.ConnectedAt.IsZero() {
		since = x.Info.ConnectedAt.Local().Format(time.DateTime)
	}
	held := "held by instance " + x.holder
	id := x.holder
	if x.holderID != "" && x.holderID != x.holder {
		id += " (" + x.holderID + ")"
	}
	sessions := 0
	for _, s := range d.u.last.Sessions {
		if strings.EqualFold(s.Device, x.UUID) || (x.Hostname != "" && strings.EqualFold(s.Host, x.Hostname)) {
			sessions++
		}
	}
	d.Detail.SetText(fmt.Sprintf("Host name: %s\nGUID: %s\nState: %s\nInstance: %s\nRemote: %s\nTLS: %s\nPorts: %s\nConnected since: %s\nLast keepalive: %s\nConsole sessions here: %d",
		x.Hostname, x.UUID, state, id, held, held, held, since, held, sessions))
}

// consoleAddress is what a console names the device by through the proxy.
func (d *DeviceScreen) consoleAddress() string {
	addr := d.selectedGUID + ".amt:16992"
	if d.proxyAddr != "" {
		addr += " (proxy " + d.proxyAddr + ")"
	}
	return addr
}

func (d *DeviceScreen) copySelected() {
	if d.selectedGUID == "" {
		return
	}
	if app := fyne.CurrentApp(); app != nil {
		app.Clipboard().SetContent(d.consoleAddress())
	}
	d.deviceMsg.SetText("Copied: " + d.consoleAddress())
}

func (d *DeviceScreen) disconnectSelected() {
	guid := d.selectedGUID
	if guid == "" {
		return
	}
	where := ""
	if i := slices.IndexFunc(d.byName, func(r *row) bool { return r.UUID == guid }); i >= 0 && d.byName[i].elsewhere() {
		where = " on instance " + d.byName[i].holder
	}
	d.u.Go(func() {
		err := d.u.b.Disconnect(guid)
		snap := d.u.b.Snapshot()
		fyne.Do(func() {
			if err != nil {
				d.deviceMsg.SetText("The device could not be disconnected:\n" + err.Error())
				return
			}
			d.deviceMsg.SetText("Disconnected " + guid + where + ".\nAMT will reconnect on its own schedule.")
			d.u.Apply(snap)
		})
	})
}

// mapSelected maps a port of the device to this machine and, with open,
// opens it in the default browser.
func (d *DeviceScreen) mapSelected(port uint32, open bool) {
	guid := d.selectedGUID
	if guid == "" {
		return
	}
	d.u.Go(func() {
		addr, err := d.u.b.Map(guid, port)
		fyne.Do(func() {
			if err != nil {
				d.deviceMsg.SetText(fmt.Sprintf("Port %d could not be mapped:\n%v", port, err))
				return
			}
			msg := fmt.Sprintf("Port %d of the device is at %s.\nThe mapping closes when the device leaves\nor after 10 minutes unused.", port, addr)
			if open {
				u := "http://" + addr + "/"
				if err := d.u.OpenURL(u); err != nil {
					msg = fmt.Sprintf("The AMT web UI is at %s,\nbut no browser could be opened: %v", u, err)
				} else {
					msg = "Opened " + u + " in your browser.\n" + msg
				}
			}
			d.deviceMsg.SetText(msg)
		})
	})
}

func parseURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		return &url.URL{}
	}
	return u
}

// Shown returns how many devices the table lists.
func (u *UI) Shown() int { return len(u.Dev.shown) }

// Cell returns the text of the table's row (of the rows shown, from 0) in
// the column headed column, "" if there is no such row or column.
func (d *DeviceScreen) Cell(row int, column string) string {
	i := slices.Index(d.Columns(), column)
	if row < 0 || row >= len(d.shown) || i < 0 {
		return ""
	}
	return d.cell(d.shown[row], d.cols[i])
}
