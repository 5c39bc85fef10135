package ui

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/internal/settings"
)

// newTestUI is New with blocking work run inline, so tests see its result.
func newTestUI(b Backend) *UI {
	u := New(b)
	u.Go = func(f func()) { f() }
	return u
}

// A device that leaves is listed under Disconnected, with the time it
// left, and moves back to Connected when it returns.
func TestDeviceStatusFilter(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{snap: Snapshot{Devices: fleet(5), Taken: time.Unix(1_764_000_500, 0)}}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	u.Refresh()
	leaving := b.snap.Devices[2]
	b.snap.Devices = append(fleet(5)[:2], fleet(5)[3:]...)
	u.Refresh()
	if u.Shown() != 4 {
		t.Fatalf("connected after one left: %d", u.Shown())
	}
	u.Dev.Status.SetSelected(StatusDisconnected)
	if u.Shown() != 1 || u.Dev.shown[0].UUID != leaving.UUID || !strings.HasPrefix(cell(u.Dev.shown[0], 0), "left ") {
		t.Fatalf("disconnected: %d rows, first %q", u.Shown(), cell(u.Dev.shown[0], 0))
	}
	// Its pane says when it left, and offers no actions.
	u.Dev.Table.Select(widget.TableCellID{Row: 0, Col: 0})
	if !strings.Contains(u.Dev.Detail.Text, "State: disconnected at") || !u.Dev.Web.Disabled() {
		t.Fatalf("pane of a gone device: %q, web enabled %v", u.Dev.Detail.Text, !u.Dev.Web.Disabled())
	}
	u.Dev.Status.SetSelected(StatusAll)
	if u.Shown() != 5 {
		t.Fatalf("all: %d rows", u.Shown())
	}
	b.snap.Devices = fleet(5)
	u.Refresh()
	u.Dev.Status.SetSelected(StatusDisconnected)
	if u.Shown() != 0 {
		t.Fatalf("the device came back but is still listed as gone")
	}
}

// The pane shows the device's timeline, or why it cannot; "Open AMT web
// UI" maps the port and opens the browser on it.
func TestDeviceTimelineAndWebUI(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{snap: Snapshot{Devices: fleet(2)}}
	u := newTestUI(b)
	var opened []string
	u.OpenURL = func(s string) error { opened = append(opened, s); return nil }
	w := test.NewWindow(u.Root)
	defer w.Close()
	u.Refresh()
	u.Dev.Table.Select(widget.TableCellID{Row: 0, Col: 0})
	lines := strings.Split(u.Dev.Timeline.Text, "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "up from 192.0.2.9:1") || !strings.HasSuffix(lines[1], "down (idle-timeout)") {
		t.Fatalf("timeline %q", u.Dev.Timeline.Text)
	}
	test.Tap(u.Dev.Web)
	if len(opened) != 1 || opened[0] != "http://127.0.0.1:40001/" || len(b.mapped) != 1 || !strings.HasPrefix(u.Dev.deviceMsg.Text, "Opened http://127.0.0.1:40001/") {
		t.Fatalf("opened %v, mapped %v, message %q", opened, b.mapped, u.Dev.deviceMsg.Text)
	}
	u.OpenURL = func(string) error { return errors.New("no browser") }
	test.Tap(u.Dev.Web)
	if !strings.Contains(u.Dev.deviceMsg.Text, "no browser could be opened") {
		t.Fatalf("message %q", u.Dev.deviceMsg.Text)
	}
	b.timelineErr = errors.New("the history file is locked")
	u.Dev.Table.Select(widget.TableCellID{Row: 1, Col: 0})
	if u.Dev.Timeline.Text != "The history could not be read:\nthe history file is locked" {
		t.Fatalf("timeline error %q", u.Dev.Timeline.Text)
	}
}

// The overview: counts, bytes, a chart caption from the samples, the
// latest events, and problems in the banner above every screen.
func TestOverview(t *testing.T) {
	test.NewTempApp(t)
	t0 := time.Unix(1_764_000_000, 0)
	var samples []Sample
	for i := range 1000 { // more samples than the chart has points
		samples = append(samples, Sample{Time: t0.Add(time.Duration(i) * 10 * time.Second), Devices: i % 300})
	}
	b := &fakeBackend{snap: Snapshot{CIRA: ":4433", Devices: fleet(2), BytesToDevices: 2048, BytesFromDevices: 3 << 20,
		Accepted: 7, Failures: 1, Samples: samples,
		Recent:   []Event{{Time: t0, Kind: "disconnected", Device: "sim-1", Reason: "idle-timeout"}},
		Problems: []string{"The keychain is locked: unlock it and Presence will go on."}}}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(900, 600))
	u.Refresh()
	if got := u.Overview.Counts.Text; got != "2 devices connected · 0 console sessions · 2.0 KiB to devices, 3.0 MiB from devices · 7 tunnels accepted, 1 refused since start" {
		t.Fatalf("counts %q", got)
	}
	if got := u.Overview.Chart.Label(); got != "now 99 · highest 299 · over 2h47m" {
		t.Fatalf("chart %q", got)
	}
	if n := len(test.LaidOutObjects(u.Overview.Chart)); n > maxPoints+5 {
		t.Fatalf("the chart draws %d objects for 1000 samples", n)
	}
	if !strings.HasSuffix(u.Overview.Events.Text, "sim-1 disconnected (idle-timeout)") {
		t.Fatalf("events %q", u.Overview.Events.Text)
	}
	if u.Problems() != "The keychain is locked: unlock it and Presence will go on." {
		t.Fatalf("banner %q", u.Problems())
	}
	b.snap.Problems = nil
	b.snap.Paused = true
	u.Refresh()
	if u.Problems() != "" || !strings.HasPrefix(u.Overview.Status.Text, "Paused") {
		t.Fatalf("banner %q, status %q", u.Problems(), u.Overview.Status.Text)
	}
	u.Report("Port 4433 is in use.")
	if u.Problems() != "Port 4433 is in use." {
		t.Fatalf("reported %q", u.Problems())
	}
}

type fakeSettings struct {
	cur     settings.Settings
	applied []settings.Settings
	err     error
}

func (f *fakeSettings) Settings() settings.Settings { return f.cur }
func (f *fakeSettings) ApplySettings(s settings.Settings) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	f.applied = append(f.applied, s)
	f.cur = s
	return "", nil
}

func defaultSettings() settings.Settings { return settings.Defaults() }

// The Settings screen refuses what would not work, in sentences, and
// applies the rest.
func TestSettingsValidation(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeSettings{cur: defaultSettings()}
	s := NewSettings(b)
	s.Go = func(f func()) { f() }
	w := test.NewWindow(s.Root)
	defer w.Close()
	if s.CIRA.Text != ":4433" || s.Keepalive.Text != "30s" || !s.MDNS.Checked || s.Level.Selected != "info" {
		t.Fatal("the form does not show the settings in force")
	}
	for _, c := range []struct {
		entry *widget.Entry
		text  string
		want  string
	}{
		{s.CIRA, "4433", `The CIRA address "4433" is not HOST:PORT or :PORT (for example :4433).`},
		{s.CIRA, ":70000", `The CIRA address ":70000" is not HOST:PORT or :PORT (for example :4433).`},
		{s.Proxy, "localhost", `The proxy address "localhost" is not HOST:PORT or :PORT (for example :4433).`},
		{s.Keepalive, "soon", `The keepalive "soon" is not a duration such as 30s or 1m.`},
		{s.Keepalive, "100ms", `The keepalive interval must be between 1s and 1h; 100ms is not.`},
		{s.Idle, "20s", `The idle timeout (20s) must be longer than the keepalive interval (30s), or devices are dropped between keepalives.`},
	} {
		old := c.entry.Text
		c.entry.SetText(c.text)
		test.Tap(s.ApplyBtn)
		if s.Message.Text != c.want {
			t.Errorf("%q: message %q, want %q", c.text, s.Message.Text, c.want)
		}
		c.entry.SetText(old)
	}
	if len(b.applied) != 0 {
		t.Fatalf("invalid settings were applied: %+v", b.applied)
	}
	s.Proxy.SetText("off")
	s.Keepalive.SetText("20s")
	s.LegacyTLS.SetChecked(true)
	s.Level.SetSelected("debug")
	test.Tap(s.ApplyBtn)
	want := defaultSettings()
	want.ProxyAddr, want.Keepalive, want.LegacyTLS, want.LogLevel = "off", 20*time.Second, true, "debug"
	if len(b.applied) != 1 || b.applied[0] != want || s.Message.Text != "Applied and saved." {
		t.Fatalf("applied %+v, message %q", b.applied, s.Message.Text)
	}
	// A failure is shown, and the form goes back to what is in force.
	b.err = errors.New("proxy listener: listen tcp :1080: bind: address already in use")
	s.Proxy.SetText(":1080")
	test.Tap(s.ApplyBtn)
	if s.Message.Text != "The settings could not be applied: proxy listener: listen tcp :1080: bind: address already in use." || s.Proxy.Text != "off" {
		t.Fatalf("message %q, proxy %q", s.Message.Text, s.Proxy.Text)
	}
}

type fakeLog struct{ r *logring.Ring }

func (f fakeLog) LogSince(seq uint64, min slog.Level) []logring.Entry { return f.r.Since(seq, min) }

// The Log screen tails new lines and filters by level.
func TestLogTail(t *testing.T) {
	test.NewTempApp(t)
	r := logring.New(100)
	log := slog.New(r.Handler(slog.LevelDebug, nil))
	l := NewLog(fakeLog{r})
	w := test.NewWindow(l.Root)
	defer w.Close()
	log.Debug("detail")
	log.Info("tunnel up", "device", "sim-1")
	log.Warn("keychain slow")
	l.Poll()
	if got := l.Lines(); len(got) != 2 || !strings.HasSuffix(got[0], "INFO tunnel up  device=sim-1") {
		t.Fatalf("info and above: %q", got)
	}
	for i := range 3 {
		log.Info(fmt.Sprint("line ", i))
	}
	l.Poll()
	if n := len(l.Lines()); n != 5 {
		t.Fatalf("after three more: %d lines", n)
	}
	l.Level.SetSelected("warn")
	if got := l.Lines(); len(got) != 1 || !strings.HasSuffix(got[0], "WARN keychain slow") {
		t.Fatalf("warn and above: %q", got)
	}
	l.Level.SetSelected("debug")
	if n := len(l.Lines()); n != 6 {
		t.Fatalf("debug: %d lines", n)
	}
}
