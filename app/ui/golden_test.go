package ui

import (
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/mps/proxy"
)

// Golden renderings (scene-graph markup, which diffs well in review) of
// the screens with a small fixed fleet. Regenerate after an intended
// change by moving testdata/failed/*.xml over testdata/.
func TestGoldenScreens(t *testing.T) {
	// Times render in local time: pin it for the masters (the package's
	// tests do not run in parallel).
	local := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = local })
	test.NewTempApp(t)
	t0 := time.Unix(1_764_000_000, 0)
	b := &fakeBackend{snap: Snapshot{CIRA: ":4433", Proxy: ":1080", API: "127.0.0.1:16990", Devices: fleet(3), Accepted: 3,
		Samples:  []Sample{{t0, 0}, {t0.Add(time.Hour), 2}, {t0.Add(2 * time.Hour), 3}},
		Recent:   []Event{{Time: t0.Add(2 * time.Hour), Kind: "connected", Device: "sim-000002"}},
		Sessions: []proxy.SessionInfo{{ID: 1, Kind: proxy.KindSOCKS5, User: "alice", Console: "10.0.0.9:51000", Device: "00000000-0000-4000-8000-000000000001", Port: 16994}}}}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(900, 400))
	u.Refresh()
	test.AssertRendersToMarkup(t, "overview.xml", w.Canvas())
	tabs := u.Tabs
	tabs.SelectIndex(1)
	test.AssertRendersToMarkup(t, "devices.xml", w.Canvas())
	tabs.SelectIndex(2)
	test.AssertRendersToMarkup(t, "sessions.xml", w.Canvas())
}

// The Overview and Devices of an instance in a fleet: its peers and etcd,
// Send devices home, and the devices of the fleet with their instance.
func TestGoldenFleetScreens(t *testing.T) {
	pinLocal(t)
	test.NewTempApp(t)
	b := &fakeBackend{snap: fleetSnapshot(2, 2)}
	b.snap.Fleet.Away = 2
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(1100, 500))
	u.Refresh()
	test.AssertRendersToMarkup(t, "overview-fleet.xml", w.Canvas())
	u.Tabs.SelectIndex(1)
	test.AssertRendersToMarkup(t, "devices-fleet.xml", w.Canvas())
}

func TestGoldenFirstRun(t *testing.T) {
	test.NewTempApp(t)
	s := NewSetup(&fakeSetup{}, []string{"mps.example.com"}, nil)
	w := test.NewWindow(s.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(800, 400))
	test.AssertRendersToMarkup(t, "firstrun.xml", w.Canvas())
	s.Go = func(f func()) { f() }
	s.Password.SetText("Cira-P@ss1")
	test.Tap(s.Create)
	test.AssertRendersToMarkup(t, "firstrun-amt.xml", w.Canvas())

	j := NewSetup(&fakeSetup{}, []string{"mps-b.example.com"}, nil)
	wj := test.NewWindow(j.Root)
	defer wj.Close()
	wj.Resize(fyne.NewSize(800, 400))
	j.Mode.SetSelected(ModeJoin)
	test.AssertRendersToMarkup(t, "firstrun-join.xml", wj.Canvas())
}

func TestGoldenSettingsAndLog(t *testing.T) {
	test.NewTempApp(t)
	s := NewSettings(&fakeSettings{cur: defaultSettings()})
	w := test.NewWindow(s.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(800, 600))
	test.AssertRendersToMarkup(t, "settings.xml", w.Canvas())
}
