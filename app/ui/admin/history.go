package admin

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps/history"
)

// KindSessions is the [Query] kind that selects console sessions rather
// than tunnel events.
const KindSessions = "sessions"

// Query selects history records.
type Query struct {
	// Device is what the admin typed: a GUID, a host name, or part of
	// either; empty means every device.
	Device string
	// Kind is "" (every tunnel event), history.KindUp, history.KindDown,
	// history.KindAuthFailed, or KindSessions.
	Kind string
	// Since and Until bound the records' times, [Since, Until); a zero
	// Until means now.
	Since, Until time.Time
	// Limit is how many records, the newest, at most (0: the history
	// file's default, 1000).
	Limit int
}

// Event is one tunnel event.
type Event struct {
	Time     time.Time
	Device   string // the device's GUID
	Hostname string
	Kind     string // history.KindUp, KindDown, KindAuthFailed, or another kind
	Reason   string
	Remote   string // the device's address
	User     string // for auth failures: the user name the device offered
}

// Session is one console session.
type Session struct {
	Start, End time.Time // End is zero while the session is open
	Kind       string    // how the console came: "socks5", "http-connect", …
	User       string    // the console account
	Console    string    // the console's address
	Device     string    // the device's GUID, or the name the console used
	Port       uint32
	// BytesToDevice and BytesFromDevice count the bytes relayed.
	BytesToDevice, BytesFromDevice int64
	EndReason                      string
}

// HistoryBackend reads the history file. Its methods may block; the
// screen calls them off the Fyne goroutine, one at a time or concurrently.
type HistoryBackend interface {
	// Events returns the tunnel events q selects, oldest first.
	Events(q Query) ([]Event, error)
	// Sessions returns the console sessions q selects (q.Kind aside),
	// oldest first.
	Sessions(q Query) ([]Session, error)
	// Availability returns when device's tunnel was up in [since, until);
	// a zero until means now.
	Availability(device string, since, until time.Time) (Availability, error)
	// WriteCSV writes the records q selects to w in the format of
	// `presence history --format csv` (with --sessions when q.Kind is
	// KindSessions).
	WriteCSV(w io.Writer, q Query) error
}

// Ranges are the time ranges the History screen offers.
var Ranges = []struct {
	Label  string // in the select
	Phrase string // in a sentence: "over the last hour"
	Length time.Duration
}{
	{"Last hour", "the last hour", time.Hour},
	{"Last 24 hours", "the last 24 hours", 24 * time.Hour},
	{"Last 7 days", "the last 7 days", 7 * 24 * time.Hour},
	{"Last 30 days", "the last 30 days", 30 * 24 * time.Hour},
}

// Kinds are the kinds of record the History screen offers, by label.
var Kinds = []struct{ Label, Kind string }{
	{"All tunnel events", ""},
	{"Tunnel up", history.KindUp},
	{"Tunnel down", history.KindDown},
	{"Authentication failures", history.KindAuthFailed},
	{"Console sessions", KindSessions},
}

var (
	eventColumns   = []string{"Time", "Host name", "Device", "Event", "Reason", "Remote"}
	eventWidths    = []float32{155, 130, 295, 100, 200, 150}
	sessionColumns = []string{"Start", "End", "Kind", "Account", "Console", "Device", "Port", "To device", "From device", "End reason"}
	sessionWidths  = []float32{155, 155, 110, 100, 150, 295, 60, 90, 100, 200}
)

// History is the History screen: filters, a table of tunnel events or
// console sessions, the availability of one device over the range, and
// CSV export. Use it on the Fyne goroutine.
type History struct {
	Root fyne.CanvasObject

	// Filters: device text, time range, kind.
	Search *widget.Entry
	Range  *widget.Select
	Kind   *widget.Select
	// Table lists the selected records, newest first.
	Table *widget.Table
	// ChartTitle names the device Chart and Uptime are about: the
	// selected row's device, or the only device the filter matched.
	ChartTitle *widget.Label
	Chart      *Chart
	Uptime     *widget.Label
	ExportBtn  *widget.Button
	// RefreshBtn reads the records again (new ones arrive while the
	// screen is open).
	RefreshBtn *widget.Button
	// Message says how many records are shown, or what went wrong.
	Message *widget.Label

	// Window is the window the save dialog opens over; nil means the one
	// showing Root.
	Window fyne.Window
	// Go runs a backend call; nil means in a new goroutine. Tests set it
	// to func(f func()) { f() }.
	Go func(func())
	// Now is the clock the time range counts back from (nil: time.Now).
	Now func() time.Time
	// Logger receives backend errors in full (nil: discarded).
	Logger *slog.Logger

	b          HistoryBackend
	q          Query     // the query of the rows shown
	events     []Event   // newest first
	sessions   []Session // newest first
	names      map[string]string
	device     string // the chart's device
	gen, cgen  uint64 // requests made, so that late answers are dropped
	sized      bool   // the columns have their widths
	wasSession bool   // which columns' widths
}

// NewHistory builds the screen over b. Call Refresh to fill it.
func NewHistory(b HistoryBackend) *History {
	h := &History{b: b}
	h.Search = widget.NewEntry()
	h.Search.SetPlaceHolder("Device: host name or GUID, or part of one")
	labels := make([]string, len(Ranges))
	for i, r := range Ranges {
		labels[i] = r.Label
	}
	h.Range = widget.NewSelect(labels, nil)
	h.Range.SetSelectedIndex(1)
	labels = make([]string, len(Kinds))
	for i, k := range Kinds {
		labels[i] = k.Label
	}
	h.Kind = widget.NewSelect(labels, nil)
	h.Kind.SetSelectedIndex(0)
	h.ExportBtn = widget.NewButton("Export CSV…", h.exportDialog)
	h.RefreshBtn = widget.NewButtonWithIcon("", theme.ViewRefreshIcon(), h.Refresh)

	h.Table = widget.NewTableWithHeaders(
		func() (int, int) { return h.rows(), len(h.columns()) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(id widget.TableCellID, o fyne.CanvasObject) { o.(*widget.Label).SetText(h.cell(id.Row, id.Col)) })
	h.Table.ShowHeaderColumn = false
	h.Table.CreateHeader = func() fyne.CanvasObject { return widget.NewLabel("") }
	h.Table.UpdateHeader = func(id widget.TableCellID, o fyne.CanvasObject) {
		if cols := h.columns(); id.Row < 0 && id.Col >= 0 && id.Col < len(cols) {
			o.(*widget.Label).SetText(cols[id.Col])
		}
	}
	h.Table.OnSelected = func(id widget.TableCellID) { h.selectRow(id.Row) }
	h.setWidths()

	h.ChartTitle = wrapLabel("")
	h.Chart = NewChart()
	h.Uptime = widget.NewLabel("")
	h.Message = wrapLabel("")
	h.showChart("", Availability{}, nil)

	// A select is as wide as its min size: give the labels room.
	height := h.Range.MinSize().Height
	filters := container.NewBorder(nil, nil, nil, container.NewHBox(
		container.NewGridWrap(fyne.NewSize(150, height), h.Range),
		container.NewGridWrap(fyne.NewSize(210, height), h.Kind),
		h.RefreshBtn, h.ExportBtn), h.Search)
	chart := container.NewVBox(h.ChartTitle, container.NewBorder(nil, nil, nil, h.Uptime, h.Chart), h.Message)
	h.Root = container.NewBorder(filters, chart, nil, nil, h.Table)

	h.Search.OnChanged = func(string) { h.Refresh() }
	h.Range.OnChanged = func(string) { h.Refresh() }
	h.Kind.OnChanged = func(string) { h.Refresh() }
	return h
}

// Query returns the query the filters describe now.
func (h *History) Query() Query {
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	q := Query{Device: strings.TrimSpace(h.Search.Text), Limit: history.DefaultLimit}
	if i := h.Range.SelectedIndex(); i >= 0 {
		q.Since = now().Add(-Ranges[i].Length)
	}
	if i := h.Kind.SelectedIndex(); i >= 0 {
		q.Kind = Kinds[i].Kind
	}
	return q
}

// Refresh reads the records the filters select. It puts the table back
// at its top with no row selected, so call it when the screen is shown
// (RefreshBtn and the filters call it too), not on a timer.
func (h *History) Refresh() {
	q := h.Query()
	h.gen++
	gen := h.gen
	var evs []Event
	var ss []Session
	var err error
	run(h.Go, func() {
		if q.Kind == KindSessions {
			ss, err = h.b.Sessions(q)
		} else {
			evs, err = h.b.Events(q)
		}
	}, func() {
		if gen == h.gen {
			h.show(q, evs, ss, err)
		}
	})
}

// show puts the answer to q in the table.
func (h *History) show(q Query, evs []Event, ss []Session, err error) {
	h.q = q
	h.events, h.sessions = reversed(evs), reversed(ss)
	h.names = make(map[string]string)
	devices := make(map[string]bool)
	for _, e := range h.events {
		devices[e.Device] = true
		if _, ok := h.names[e.Device]; !ok && e.Hostname != "" {
			h.names[e.Device] = e.Hostname // the newest
		}
	}
	for _, s := range h.sessions {
		devices[s.Device] = true
	}
	h.Table.UnselectAll()
	h.setWidths()
	h.Table.Refresh()
	h.Table.ScrollToTop()

	n, what := len(h.events), "events"
	if q.Kind == KindSessions {
		n, what = len(h.sessions), "console sessions"
	}
	if n == 1 {
		what = strings.TrimSuffix(what, "s")
	}
	switch {
	case err != nil:
		logger(h.Logger).Warn("history query failed", "err", err)
		h.Message.SetText(Sentence("The history could not be read", err))
	case n == 0:
		h.Message.SetText(fmt.Sprintf("No %s match the filter.", what))
	case q.Limit > 0 && n >= q.Limit:
		h.Message.SetText(fmt.Sprintf("The newest %d %s are shown: narrow the filter to see older ones.", n, what))
	default:
		h.Message.SetText(fmt.Sprintf("%d %s, newest first.", n, what))
	}

	// The chart stays on its device while the device is listed; else it
	// takes the only device listed.
	if !devices[h.device] {
		h.device = ""
		if len(devices) == 1 {
			for d := range devices {
				h.device = d
			}
		}
	}
	h.loadChart()
	h.relayout()
}

// relayout lays the screen out again after texts changed size. (The
// desktop driver notices on its own at the next frame; the test canvas
// and a goldens snapshot do not.)
func (h *History) relayout() {
	if c, ok := h.Root.(*fyne.Container); ok {
		c.Refresh()
	}
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func (h *History) sessionMode() bool { return h.q.Kind == KindSessions }

func (h *History) columns() []string {
	if h.sessionMode() {
		return sessionColumns
	}
	return eventColumns
}

func (h *History) rows() int {
	if h.sessionMode() {
		return len(h.sessions)
	}
	return len(h.events)
}

// setWidths sizes the columns when the table changes between events and
// sessions (and at first).
func (h *History) setWidths() {
	if h.sized && h.sessionMode() == h.wasSession {
		return
	}
	h.sized, h.wasSession = true, h.sessionMode()
	widths := eventWidths
	if h.wasSession {
		widths = sessionWidths
	}
	for i, w := range widths {
		h.Table.SetColumnWidth(i, w)
	}
}

// Rows returns the table's text, row by row, newest first.
func (h *History) Rows() [][]string {
	out := make([][]string, h.rows())
	for r := range out {
		out[r] = make([]string, len(h.columns()))
		for c := range out[r] {
			out[r][c] = h.cell(r, c)
		}
	}
	return out
}

func (h *History) cell(row, col int) string {
	if h.sessionMode() {
		if row >= len(h.sessions) {
			return ""
		}
		return sessionCell(h.sessions[row], col)
	}
	if row >= len(h.events) {
		return ""
	}
	return eventCell(h.events[row], col)
}

const timeLayout = time.DateTime

func eventCell(e Event, col int) string {
	switch col {
	case 0:
		return e.Time.Local().Format(timeLayout)
	case 1:
		return e.Hostname
	case 2:
		return e.Device
	case 3:
		switch e.Kind {
		case history.KindAuthFailed:
			return "auth failure"
		}
		return e.Kind
	case 4:
		if e.User != "" {
			return fmt.Sprintf("%s (user %q)", e.Reason, e.User)
		}
		return e.Reason
	case 5:
		return e.Remote
	}
	return ""
}

func sessionCell(s Session, col int) string {
	switch col {
	case 0:
		return s.Start.Local().Format(timeLayout)
	case 1:
		if s.End.IsZero() {
			return "open"
		}
		return s.End.Local().Format(timeLayout)
	case 2:
		return s.Kind
	case 3:
		return s.User
	case 4:
		return s.Console
	case 5:
		return s.Device
	case 6:
		return strconv.FormatUint(uint64(s.Port), 10)
	case 7:
		return strconv.FormatInt(s.BytesToDevice, 10)
	case 8:
		return strconv.FormatInt(s.BytesFromDevice, 10)
	case 9:
		return s.EndReason
	}
	return ""
}

// selectRow puts the device of row in the chart.
func (h *History) selectRow(row int) {
	dev := ""
	switch {
	case h.sessionMode() && row >= 0 && row < len(h.sessions):
		dev = h.sessions[row].Device
	case !h.sessionMode() && row >= 0 && row < len(h.events):
		dev = h.events[row].Device
	}
	if dev != "" && dev != h.device {
		h.device = dev
		h.loadChart()
	}
}

// ChartDevice returns the device the chart is about ("" for none).
func (h *History) ChartDevice() string { return h.device }

// loadChart reads the chart device's availability over the query's range.
func (h *History) loadChart() {
	h.cgen++
	gen, dev, q := h.cgen, h.device, h.q
	if dev == "" {
		h.showChart("", Availability{}, nil)
		return
	}
	var a Availability
	var err error
	run(h.Go, func() { a, err = h.b.Availability(dev, q.Since, q.Until) }, func() {
		if gen == h.cgen {
			h.showChart(dev, a, err)
		}
	})
}

func (h *History) showChart(dev string, a Availability, err error) {
	defer h.relayout()
	if dev == "" {
		h.ChartTitle.SetText("Availability: select a row to see its device's.")
		h.Chart.Set(Availability{})
		h.Uptime.SetText("")
		return
	}
	name := dev
	if host := h.names[dev]; host != "" {
		name = host + " (" + dev + ")"
	}
	phrase := "the range"
	if i := h.Range.SelectedIndex(); i >= 0 {
		phrase = Ranges[i].Phrase
	}
	if err != nil {
		logger(h.Logger).Warn("availability query failed", "device", dev, "err", err)
		h.ChartTitle.SetText(Sentence("The availability of "+name+" could not be read", err))
		h.Chart.Set(Availability{})
		h.Uptime.SetText("")
		return
	}
	h.ChartTitle.SetText(fmt.Sprintf("Availability of %s over %s", name, phrase))
	h.Chart.Set(a)
	h.Uptime.SetText(fmt.Sprintf("%.1f%% up (%s of %s)", 100*a.Fraction(), span(a.UpTime()), span(a.Length())))
}

// span writes a duration the way people say it: "3d 4h", "4h 12m", "12m",
// "45s".
func span(d time.Duration) string {
	d = d.Round(time.Second)
	days, hours, mins := int(d/(24*time.Hour)), int(d/time.Hour)%24, int(d/time.Minute)%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm", mins)
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

// exportDialog asks where to save the CSV file.
func (h *History) exportDialog() {
	w := h.Window
	if w == nil {
		w = windowFor(h.Root)
	}
	if w == nil {
		return
	}
	d := dialog.NewFileSave(func(f fyne.URIWriteCloser, err error) {
		if err != nil {
			h.Message.SetText(Sentence("The file could not be opened", err))
			return
		}
		if f == nil {
			return // cancelled
		}
		h.ExportTo(f, f.URI().Name())
	}, w)
	d.SetFileName("presence-history.csv")
	d.Show()
}

// ExportTo writes the records the filters select to f as CSV, closes f
// and says so in Message; name is how the message calls the file.
func (h *History) ExportTo(f io.WriteCloser, name string) {
	q := h.Query()
	q.Limit = history.MaxLimit // the file holds everything the filter selects
	export{goFn: h.Go, btn: h.ExportBtn, msg: h.Message, log: h.Logger, after: h.relayout,
		write:  func(w io.Writer) error { return h.b.WriteCSV(w, q) },
		failed: "The history could not be exported",
		ok:     "The history was exported to " + name + ".",
	}.to(f, name)
}
