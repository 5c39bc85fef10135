package uibench

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"github.com/presence-mps/presence/app/adapter"
	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/settings"
)

// window is the desktop window's content in a headless window of the
// desktop app's size (app.Run), showing the Devices screen. The test's
// goroutine plays both the Fyne goroutine and the goroutine that reads
// snapshots for it (app.show): the test driver runs fyne.Do inline.
type window struct {
	u *ui.UI
	w fyne.Window
	b ui.Backend
}

// newApp makes a test app, in the default theme as the desktop app, the
// current one until tb ends. Call it before newWindow.
func newApp(tb testing.TB) {
	test.NewTempApp(tb).Settings().SetTheme(theme.DefaultTheme())
}

// newBackend is the desktop app's backend over in; stop (idempotent, and a
// cleanup) stops its event recorder.
func newBackend(tb testing.TB, in *instance.Instance) (b *adapter.Backend, stop func()) {
	b = adapter.New(in, settings.Settings{}, nil)
	stop = sync.OnceFunc(b.Close)
	tb.Cleanup(stop)
	return b, stop
}

// newWindow shows ui.New(b) on the Devices screen.
func newWindow(tb testing.TB, b ui.Backend) *window {
	tb.Helper()
	u := ui.New(b)
	w := test.NewWindow(u.Root)
	tb.Cleanup(w.Close)
	w.Resize(fyne.NewSize(1000, 640))
	u.Show("Devices")
	if it := u.Tabs.Selected(); it == nil || it.Text != "Devices" {
		tb.Fatal(`ui.UI.Show("Devices") did not select a Devices screen`)
	}
	return &window{u: u, w: w, b: b}
}

// frameTimes are the parts of one UI tick.
type frameTimes struct {
	snapshot time.Duration // Backend.Snapshot and ui.UI.Prepare, off the Fyne goroutine
	apply    time.Duration // ui.UI.ApplyPrepared, on the Fyne goroutine
	paint    time.Duration // a software paint, on the Fyne goroutine
}

// frame is one UI tick of app.show: a snapshot read and prepared (sorted,
// filtered) off the Fyne goroutine, then ui.UI.ApplyPrepared on it, then,
// if paint is set, a paint of the whole window with the test driver's
// software painter.
func (w *window) frame(paint bool) frameTimes {
	t0 := time.Now()
	p := w.u.Prepare(w.b.Snapshot())
	t1 := time.Now()
	w.u.ApplyPrepared(p)
	t2 := time.Now()
	if paint {
		w.w.Canvas().Capture()
	}
	return frameTimes{snapshot: t1.Sub(t0), apply: t2.Sub(t1), paint: time.Since(t2)}
}

// reportDurations reports the p50 (median), p99 (nearest rank) and maximum
// of d in milliseconds, as metrics prefix+"p50-ms" and so on.
func reportDurations(b *testing.B, prefix string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	s := slices.Sorted(slices.Values(d))
	rank := func(p float64) time.Duration { return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)] }
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	b.ReportMetric(ms(rank(0.50)), prefix+"p50-ms")
	b.ReportMetric(ms(rank(0.99)), prefix+"p99-ms")
	b.ReportMetric(ms(s[len(s)-1]), prefix+"max-ms")
}
