package uibench

import (
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps/amtsim"
)

const (
	// fleetSize is the fleet of the issue: "The window stays responsive
	// while 10,000 simulated devices connect."
	fleetSize = 10000
	// connectTimeout bounds every wait for a fleet to connect.
	connectTimeout = 3 * time.Minute
	// frameInterval is how often the benchmarks run a UI tick while
	// devices connect. The desktop app ticks once a second; ten times as
	// often gives enough frames for a 99th percentile.
	frameInterval = 100 * time.Millisecond
	// maxFrames caps the frames of one run.
	maxFrames = 4000
)

// The window's device table lists every device that connected, with the
// first host names at the top: the harness works end to end, from devices
// in another process over TLS to the rows of the table.
func TestWindowListsFleet(t *testing.T) {
	const n = 200
	in, rootPEM, _ := startInstance(t)
	f, err := startFleet(t, in.CIRAAddr.String(), rootPEM, n)
	requireFleet(t, err)
	newApp(t)
	b, _ := newBackend(t, in)
	win := newWindow(t, b)
	win.frame(false)
	if got := win.u.Shown(); got != 0 {
		t.Fatalf("before the fleet connects, the table lists %d devices; want 0", got)
	}
	if err := f.Go(); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for win.frame(false); win.u.Shown() < n; win.frame(false) {
		if err := f.Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("the table lists %d devices after 30 s; want %d (server: %+v)", win.u.Shown(), n, in.Server.Stats())
		}
	}
	if got := win.u.Shown(); got != n {
		t.Errorf("the table lists %d devices; want %d", got, n)
	}
	if rows, _ := win.u.Dev.Table.Length(); rows != n {
		t.Errorf("the table has %d rows; want %d", rows, n)
	}
	if got := in.Server.Stats().Tunnels; got != n {
		t.Errorf("the server holds %d tunnels; want %d", got, n)
	}
	for _, host := range []string{amtsim.DeviceHostname(0), amtsim.DeviceHostname(1)} {
		if !showsText(win, host) {
			t.Errorf("the window does not show %q (the table's first rows)", host)
		}
	}
	f.Stop()
	if s := f.Summary(); s.Handshakes != n || len(s.Failed) != 0 {
		t.Errorf("fleet: %s; want %d handshakes and no failure", describe(s), n)
	}
}

// showsText reports whether the window, rendered, shows text.
func showsText(w *window, text string) bool {
	return strings.Contains(test.RenderToMarkup(w.w.Canvas()), ">"+text+"</text>")
}

// requireOpenFiles fails tb unless this process may hold n tunnels and
// room to spare.
func requireOpenFiles(tb testing.TB, n int) {
	tb.Helper()
	if lim := raiseOpenFiles(); lim != 0 && lim < uint64(n)+512 {
		tb.Fatalf("this process may open %d files; %d tunnels need %d", lim, n, n+512)
	}
}

// BenchmarkFrameWhileConnecting measures the window's frames while a fleet
// of 10,000 devices connects to an empty instance, as fast as the server
// takes them, through real TLS over loopback. A UI tick starts every
// 100 ms (at once after a longer one), from the devices' start until the
// table lists them all. Each tick does what app.show does once a second:
// it reads a snapshot off the Fyne goroutine, then applies it on the Fyne
// goroutine (ui.UI.Apply). The frame is what the Fyne goroutine is busy
// with: in "apply", Apply alone (the GL driver then paints); in
// "apply+paint", Apply then a paint of the whole window with the software
// painter of Fyne's test driver, much slower than a GL paint.
//
// It reports the p50, p99 and maximum in milliseconds of the frames
// (frame-*), of the snapshots (snapshot-*, off the Fyne goroutine) and, in
// apply+paint, of the Apply part (apply-*); the number of frames, the
// devices listed at the end, and the seconds until all were listed.
func BenchmarkFrameWhileConnecting(b *testing.B) {
	requireOpenFiles(b, fleetSize)
	newApp(b)
	for _, paint := range []bool{false, true} {
		name := "apply"
		if paint {
			name = "apply+paint"
		}
		b.Run(name, func(b *testing.B) {
			var (
				all           connectRun
				connect       time.Duration
				shown, frames int
				last          amtsim.Summary
			)
			for range b.N {
				r := connectWhileFraming(b, fleetSize, paint)
				all.frame = append(all.frame, r.frame...)
				all.snapshot = append(all.snapshot, r.snapshot...)
				all.apply = append(all.apply, r.apply...)
				connect += r.connect
				shown = r.shown
				frames += len(r.frame)
				last = r.fleet
			}
			b.ReportMetric(0, "ns/op") // one op is a whole fleet connecting
			reportDurations(b, "frame-", all.frame)
			reportDurations(b, "snapshot-", all.snapshot)
			if paint {
				reportDurations(b, "apply-", all.apply)
			}
			b.ReportMetric(float64(frames)/float64(b.N), "frames")
			b.ReportMetric(float64(shown), "devices")
			b.ReportMetric(connect.Seconds()/float64(b.N), "connect-s")
			b.Logf("fleet: %s", describe(last))
		})
	}
}

// connectRun is what one fleet connecting measured.
type connectRun struct {
	frame, snapshot, apply []time.Duration
	connect                time.Duration // from the go to the first frame listing them all
	shown                  int
	fleet                  amtsim.Summary
}

// connectWhileFraming starts an instance and a window over it, then n
// devices, and runs UI ticks (with a paint if paint is set) until the
// window lists them all.
func connectWhileFraming(b *testing.B, n int, paint bool) connectRun {
	in, rootPEM, stopInstance := startInstance(b)
	defer stopInstance()
	be, stopBackend := newBackend(b, in)
	defer stopBackend()
	win := newWindow(b, be)
	win.frame(true) // the window before any device: renderers built, not counted
	f, err := startFleet(b, in.CIRAAddr.String(), rootPEM, n)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Stop()
	var r connectRun
	tick := time.NewTicker(frameInterval)
	defer tick.Stop()
	start := time.Now()
	if err := f.Go(); err != nil {
		b.Fatal(err)
	}
	for {
		ft := win.frame(paint)
		r.frame = append(r.frame, ft.apply+ft.paint)
		r.snapshot = append(r.snapshot, ft.snapshot)
		r.apply = append(r.apply, ft.apply)
		if win.u.Shown() >= n {
			r.connect = time.Since(start)
			break
		}
		if err := f.Err(); err != nil {
			b.Fatal(err)
		}
		if elapsed := time.Since(start); elapsed > connectTimeout || len(r.frame) >= maxFrames {
			st := in.Server.Stats()
			f.Stop()
			b.Fatalf("%d of %d devices connected after %v and %d frames; they must within %v (server: %d tunnels, %d handshakes in progress, failures %v; fleet: %s)",
				win.u.Shown(), n, elapsed.Round(time.Second), len(r.frame), connectTimeout, st.Tunnels, st.Handshakes, st.Failures, describe(f.Summary()))
		}
		<-tick.C
	}
	r.shown = win.u.Shown()
	f.Stop()
	r.fleet = f.Summary()
	return r
}

// BenchmarkFrameConnected measures the parts of a UI tick with 10,000
// devices connected and nothing changing:
//
//   - snapshot: the backend's Snapshot (read off the Fyne goroutine),
//   - prepare: ui.UI.Prepare of it (sort and filter, off the Fyne goroutine),
//   - apply: ui.UI.ApplyPrepared of it (on the Fyne goroutine),
//   - apply-search: the same with a search that lists 10 devices,
//   - table: the device table's Refresh alone (its visible cells), the
//     least Apply can do,
//   - refresh: ui.UI.Refresh, snapshot and Apply on the Fyne goroutine
//     (the window's first fill and its actions' results),
//   - paint: a software paint of the window listing them,
//   - frame: Apply and paint.
//
// Each reports p50, p99 and maximum milliseconds per operation.
func BenchmarkFrameConnected(b *testing.B) {
	requireOpenFiles(b, fleetSize)
	in, rootPEM, _ := startInstance(b)
	f, err := startFleet(b, in.CIRAAddr.String(), rootPEM, fleetSize)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Go(); err != nil {
		b.Fatal(err)
	}
	took := waitConnected(b, in, f, fleetSize)
	newApp(b)
	be, _ := newBackend(b, in)
	win := newWindow(b, be)
	win.frame(true)
	snap := be.Snapshot()
	b.Logf("%d devices connected in %v; a snapshot lists %d", fleetSize, took.Round(100*time.Millisecond), len(snap.Devices))
	b.Run("snapshot", func(b *testing.B) {
		timeEach(b, func() { be.Snapshot() })
	})
	b.Run("prepare", func(b *testing.B) {
		timeEach(b, func() { win.u.Prepare(snap) })
	})
	prep := win.u.Prepare(snap)
	b.Run("apply", func(b *testing.B) {
		timeEach(b, func() { win.u.ApplyPrepared(prep) })
	})
	b.Run("apply-search", func(b *testing.B) {
		const q = "sim-00042" // sim-000420 to sim-000429
		win.u.Dev.Search.SetText(q)
		defer win.u.Dev.Search.SetText("")
		prep := win.u.Prepare(snap)
		timeEach(b, func() { win.u.ApplyPrepared(prep) })
		if got := win.u.Shown(); got != 10 {
			b.Errorf("search %q lists %d devices; want 10", q, got)
		}
	})
	b.Run("table", func(b *testing.B) {
		win.u.Apply(snap)
		timeEach(b, win.u.Dev.Table.Refresh)
	})
	b.Run("refresh", func(b *testing.B) {
		timeEach(b, win.u.Refresh)
	})
	b.Run("paint", func(b *testing.B) {
		win.u.Apply(snap)
		timeEach(b, func() { win.w.Canvas().Capture() })
	})
	b.Run("frame", func(b *testing.B) {
		timeEach(b, func() {
			win.u.ApplyPrepared(prep)
			win.w.Canvas().Capture()
		})
	})
}

// timeEach runs op b.N times and reports the distribution of its times.
func timeEach(b *testing.B, op func()) {
	var d []time.Duration
	for b.Loop() {
		t0 := time.Now()
		op()
		d = append(d, time.Since(t0))
	}
	reportDurations(b, "", d)
}

// waitConnected waits until in lists n devices, within connectTimeout,
// and returns how long that took.
func waitConnected(b *testing.B, in *instance.Instance, f *fleet, n int) time.Duration {
	b.Helper()
	start := time.Now()
	tick := time.NewTicker(frameInterval)
	defer tick.Stop()
	for in.Server.Stats().Tunnels < n || len(in.Server.Devices()) < n {
		if err := f.Err(); err != nil {
			b.Fatal(err)
		}
		if elapsed := time.Since(start); elapsed > connectTimeout {
			st := in.Server.Stats()
			f.Stop()
			b.Fatalf("%d of %d devices connected after %v (%d handshakes in progress, failures %v; fleet: %s)",
				st.Tunnels, n, elapsed.Round(time.Second), st.Handshakes, st.Failures, describe(f.Summary()))
		}
		<-tick.C
	}
	return time.Since(start)
}
