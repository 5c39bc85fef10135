package admin

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps/history"
)

// newTestHistory shows a History screen over b in a test window, with the
// tests' clock and inline backend calls, and refreshes it.
func newTestHistory(t *testing.T, b HistoryBackend) (*History, fyne.Window) {
	t.Helper()
	test.NewTempApp(t)
	h := NewHistory(b)
	h.Go, h.Now = inline, func() time.Time { return now }
	w := test.NewTempWindow(t, h.Root)
	w.Resize(fyne.NewSize(1000, 600))
	h.Refresh()
	return h, w
}

// column returns column col of the table's rows.
func column(h *History, col int) []string {
	var out []string
	for _, r := range h.Rows() {
		out = append(out, r[col])
	}
	return out
}

// Each filter narrows the table, and the query the backend gets says so.
func TestHistoryFiltersNarrowTable(t *testing.T) {
	local := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = local })
	b := sampleHistory()
	h, _ := newTestHistory(t, b)

	if got := column(h, 0); !slices.Equal(got, []string{"2026-05-01 11:30:00", "2026-05-01 06:00:00", "2026-05-01 00:00:00", "2026-04-30 18:00:00", "2026-04-30 16:00:00"}) {
		t.Fatalf("times, last 24 hours = %q; want all five events, newest first", got)
	}
	if q := b.queries[len(b.queries)-1]; !q.Since.Equal(now.Add(-24*time.Hour)) || q.Kind != "" || q.Device != "" || q.Limit != history.DefaultLimit {
		t.Fatalf("first query %+v; want the last 24 hours of every event, %d at most", q, history.DefaultLimit)
	}
	if h.Message.Text != "5 events, newest first." {
		t.Errorf("message %q", h.Message.Text)
	}

	test.Type(h.Search, "alph")
	if got := column(h, 1); !slices.Equal(got, []string{"alpha", "alpha", "alpha"}) {
		t.Fatalf("host names after typing alph = %q; want alpha's three events", got)
	}
	h.Kind.SetSelected("Tunnel down")
	rows := h.Rows()
	if len(rows) != 1 || rows[0][3] != "down" || rows[0][4] != "keepalive timeout" {
		t.Fatalf("alpha's downs = %q; want the keepalive timeout", rows)
	}
	h.Range.SetSelected("Last hour")
	if len(h.Rows()) != 0 || h.Message.Text != "No events match the filter." {
		t.Fatalf("alpha's downs in the last hour: %q, %q; want none", h.Rows(), h.Message.Text)
	}
	if q := b.queries[len(b.queries)-1]; q.Device != "alph" || q.Kind != history.KindDown || !q.Since.Equal(now.Add(-time.Hour)) {
		t.Fatalf("last query %+v; want alph, down, the last hour", q)
	}

	h.Search.SetText("")
	h.Range.SetSelected("Last 24 hours")
	h.Kind.SetSelected("Authentication failures")
	rows = h.Rows()
	if len(rows) != 1 || rows[0][1] != "beta" || rows[0][3] != "auth failure" || rows[0][4] != `wrong password (user "admin")` {
		t.Fatalf("auth failures = %q", rows)
	}

	h.Kind.SetSelected("Console sessions")
	rows = h.Rows()
	if len(rows) != 1 || len(rows[0]) != len(sessionColumns) || rows[0][3] != "alice" || rows[0][6] != "16994" || rows[0][9] != "console closed" {
		t.Fatalf("sessions = %q; want alice's session in session columns", rows)
	}
	if h.Message.Text != "1 console session, newest first." {
		t.Errorf("message %q", h.Message.Text)
	}
}

// The table says when the limit cut the list.
func TestHistoryLimitMessage(t *testing.T) {
	b := &fakeHistory{}
	for i := range history.DefaultLimit {
		b.events = append(b.events, Event{Time: now.Add(-time.Duration(i) * time.Second), Device: guidA, Kind: "up"})
	}
	h, _ := newTestHistory(t, b)
	if want := "The newest 1000 events are shown: narrow the filter to see older ones."; h.Message.Text != want {
		t.Fatalf("message %q; want %q", h.Message.Text, want)
	}
}

// Export writes the backend's CSV for the current filter (every record
// it selects, not just the table's limit) and closes the file.
func TestHistoryExportCSV(t *testing.T) {
	b := sampleHistory()
	h, _ := newTestHistory(t, b)
	h.Search.SetText("beta")

	var f closeRecorder
	h.ExportTo(&f, "history.csv")
	want := "TIME,DEVICE,EVENT\n" +
		"2026-04-30 18:00:00," + guidB + ",auth-failed\n" +
		"2026-05-01 11:30:00," + guidB + ",up\n"
	if f.String() != want {
		t.Fatalf("CSV:\n%s\nwant:\n%s", f.String(), want)
	}
	if !f.closed {
		t.Error("the file was not closed")
	}
	if q := b.exported[0]; q.Device != "beta" || q.Limit != history.MaxLimit || !q.Since.Equal(now.Add(-24*time.Hour)) {
		t.Errorf("export query %+v; want beta over the last 24 hours, up to MaxLimit", q)
	}
	if h.Message.Text != "The history was exported to history.csv." || h.ExportBtn.Disabled() {
		t.Errorf("after export: message %q, button disabled %v", h.Message.Text, h.ExportBtn.Disabled())
	}

	h.Kind.SetSelected("Console sessions")
	h.Search.SetText("")
	f = closeRecorder{}
	h.ExportTo(&f, "sessions.csv")
	if want := "START,DEVICE\n2026-05-01 07:00:00," + guidA + "\n"; f.String() != want {
		t.Fatalf("sessions CSV:\n%s\nwant:\n%s", f.String(), want)
	}

	f = closeRecorder{failing: true}
	h.ExportTo(&f, "full.csv")
	if want := "The history could not be exported to full.csv. Disk full."; h.Message.Text != want || !f.closed {
		t.Errorf("failed export: message %q, closed %v; want %q", h.Message.Text, f.closed, want)
	}
}

// The chart follows the selected row's device, and its percentage is the
// share of the window its up spans cover.
func TestHistoryAvailabilityChart(t *testing.T) {
	b := sampleHistory()
	h, _ := newTestHistory(t, b)
	if h.ChartDevice() != "" || !strings.HasPrefix(h.ChartTitle.Text, "Availability: select a row") {
		t.Fatalf("chart of %q, title %q with two devices listed; want none", h.ChartDevice(), h.ChartTitle.Text)
	}
	h.Table.Select(widget.TableCellID{Row: 1, Col: 0}) // alpha's up at 06:00
	if h.ChartDevice() != guidA {
		t.Fatalf("chart of %q after selecting alpha's row", h.ChartDevice())
	}
	if want := "Availability of alpha (" + guidA + ") over the last 24 hours"; h.ChartTitle.Text != want {
		t.Errorf("title %q; want %q", h.ChartTitle.Text, want)
	}
	// Up 16:00–00:00 and 06:00–12:00 of 12:00–12:00: 14 of 24 hours.
	if want := "58.3% up (14h 0m of 1d 0h)"; h.Uptime.Text != want {
		t.Errorf("uptime %q; want %q", h.Uptime.Text, want)
	}

	// The bars: one green rectangle per span, placed by time.
	h.Chart.Resize(fyne.NewSize(240, 20))
	var bars []fyne.CanvasObject
	for _, o := range test.WidgetRenderer(h.Chart).Objects()[1:] {
		if _, ok := o.(*canvas.Rectangle); ok {
			bars = append(bars, o)
		}
	}
	if len(bars) != 2 {
		t.Fatalf("%d up bars; want 2", len(bars))
	}
	for i, want := range []struct{ x, w float32 }{{40, 80}, {180, 60}} { // 10 px an hour
		if p, s := bars[i].Position(), bars[i].Size(); math.Abs(float64(p.X-want.x)) > 0.01 || math.Abs(float64(s.Width-want.w)) > 0.01 {
			t.Errorf("bar %d at x %v, width %v; want %v, %v", i, p.X, s.Width, want.x, want.w)
		}
	}

	// A filter that leaves one device puts it in the chart.
	h.Table.UnselectAll()
	h.Search.SetText("beta")
	if h.ChartDevice() != guidB || h.Uptime.Text != "2.1% up (30m of 1d 0h)" {
		t.Errorf("after filtering to beta: chart of %q, %q", h.ChartDevice(), h.Uptime.Text)
	}
}

func TestAvailabilityFraction(t *testing.T) {
	h := func(n int) time.Time { return now.Add(time.Duration(n) * time.Hour) }
	for _, tc := range []struct {
		name string
		a    Availability
		want float64
	}{
		{"empty window", Availability{}, 0},
		{"never up", Availability{From: h(0), To: h(10)}, 0},
		{"always up", Availability{From: h(0), To: h(10), Up: []Span{{h(0), h(10)}}}, 1},
		{"two spans", Availability{From: h(0), To: h(10), Up: []Span{{h(1), h(3)}, {h(5), h(6)}}}, 0.3},
		{"spans cut to the window", Availability{From: h(0), To: h(10), Up: []Span{{h(-5), h(2)}, {h(9), h(20)}}}, 0.3},
		{"span outside", Availability{From: h(0), To: h(10), Up: []Span{{h(-5), h(-1)}}}, 0},
	} {
		if got := tc.a.Fraction(); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Fraction() = %v; want %v", tc.name, got, tc.want)
		}
	}
}

// Spans closer than the chart's resolution are drawn as one bar, so a
// flapping device does not make thousands of rectangles.
func TestChartMergesCloseSpans(t *testing.T) {
	a := Availability{From: now, To: now.Add(1000 * time.Minute)}
	for i := range 500 {
		start := now.Add(time.Duration(2*i) * time.Minute)
		a.Up = append(a.Up, Span{start, start.Add(time.Minute)})
	}
	if got := len(a.bars()); got != 1 {
		t.Errorf("%d bars for spans one resolution step apart; want 1", got)
	}
	a.Up = []Span{{now, now.Add(time.Minute)}, {now.Add(10 * time.Minute), now.Add(11 * time.Minute)}}
	if got := len(a.bars()); got != 2 {
		t.Errorf("%d bars for spans ten steps apart; want 2", got)
	}
}

// A backend error is a sentence in the screen, and the rows go.
func TestHistoryErrorSentence(t *testing.T) {
	b := sampleHistory()
	h, _ := newTestHistory(t, b)
	b.err = history.ErrClosed
	h.Refresh()
	if want := "The history could not be read. The history file is closed because Presence is stopping."; h.Message.Text != want {
		t.Errorf("message %q; want %q", h.Message.Text, want)
	}
	if len(h.Rows()) != 0 {
		t.Errorf("%d rows still shown after the error", len(h.Rows()))
	}
}

// An answer that arrives after a newer query's is dropped.
func TestHistoryLateAnswerDropped(t *testing.T) {
	b := sampleHistory()
	h, _ := newTestHistory(t, b)
	var queued []func()
	h.Go = func(f func()) { queued = append(queued, f) }
	h.Search.SetText("alpha") // first query
	h.Search.SetText("beta")  // second query
	if len(queued) != 2 {
		t.Fatalf("%d calls queued; want 2", len(queued))
	}
	queued[1]()
	queued[0]() // late: the filter no longer says alpha
	if got := column(h, 1); !slices.Equal(got, []string{"beta", "beta"}) {
		t.Errorf("host names %q; want beta's two events", got)
	}
}

// The refresh button reads again: a record that arrived since shows.
func TestHistoryRefreshButton(t *testing.T) {
	b := sampleHistory()
	h, _ := newTestHistory(t, b)
	b.events = append(b.events, Event{Time: now.Add(-time.Minute), Device: guidB, Hostname: "beta", Kind: "down", Reason: "device closed the tunnel"})
	if len(h.Rows()) != 5 {
		t.Fatalf("%d rows before the refresh", len(h.Rows()))
	}
	test.Tap(h.RefreshBtn)
	if rows := h.Rows(); len(rows) != 6 || rows[0][4] != "device closed the tunnel" {
		t.Errorf("rows after the refresh %q; want the new down first", rows)
	}
}
