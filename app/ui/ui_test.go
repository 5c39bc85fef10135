package ui

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/tunnel"
)

type fakeBackend struct {
	snap         Snapshot
	killed       []uint64
	disconnected []string
	mapped       []string
	timelineErr  error
	timelines    []string // the devices whose timeline was asked for
	sentHome     int      // calls of SendHome
	sendHomeErr  error
}

func (f *fakeBackend) SendHome() (int, error) {
	f.sentHome++
	if f.sendHomeErr != nil {
		return 0, f.sendHomeErr
	}
	n := 0
	if f.snap.Fleet != nil {
		n, f.snap.Fleet.Away = f.snap.Fleet.Away, 0
	}
	return n, nil
}

func (f *fakeBackend) Disconnect(guid string) error {
	i := slices.IndexFunc(f.snap.Devices, func(d mps.Device) bool { return d.UUID == guid })
	if i < 0 && f.snap.Fleet != nil {
		if j := slices.IndexFunc(f.snap.Fleet.Devices, func(d PeerDevice) bool { return d.GUID == guid }); j >= 0 {
			f.disconnected = append(f.disconnected, guid)
			f.snap.Fleet.Devices = slices.Delete(f.snap.Fleet.Devices, j, j+1)
			return nil
		}
	}
	if i < 0 {
		return errors.New("no connected device is named " + guid)
	}
	f.disconnected = append(f.disconnected, guid)
	f.snap.Devices = slices.Delete(f.snap.Devices, i, i+1)
	return nil
}

func (f *fakeBackend) Map(guid string, port uint32) (string, error) {
	f.mapped = append(f.mapped, fmt.Sprintf("%s:%d", guid, port))
	return "127.0.0.1:40001", nil
}

func (f *fakeBackend) Snapshot() Snapshot { return f.snap }

func (f *fakeBackend) Timeline(guid string) ([]TimelineEntry, error) {
	f.timelines = append(f.timelines, guid)
	if f.timelineErr != nil {
		return nil, f.timelineErr
	}
	return []TimelineEntry{{Time: time.Unix(1_764_000_100, 0), Kind: "up", Remote: "192.0.2.9:1"}, {Time: time.Unix(1_764_000_000, 0), Kind: "down", Reason: "idle-timeout"}}, nil
}

func (f *fakeBackend) KillSession(id uint64) error {
	i := slices.IndexFunc(f.snap.Sessions, func(s proxy.SessionInfo) bool { return s.ID == id })
	if i < 0 {
		return errors.New("no live session has that id")
	}
	f.killed = append(f.killed, id)
	f.snap.Sessions = slices.Delete(f.snap.Sessions, i, i+1)
	return nil
}

func fleet(n int) []mps.Device {
	out := make([]mps.Device, n)
	for i := range out {
		out[i] = mps.Device{
			UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Hostname: fmt.Sprintf("sim-%06d", i),
			Remote: fmt.Sprintf("192.0.2.%d:%d", i%250, 40000+i%20000),
			Info:   tunnel.Info{TLSVersion: "TLS 1.2", ConnectedAt: time.Unix(1_764_000_000, 0), Forwards: []tunnel.Forward{{Port: 16992}, {Port: 16994}}},
		}
	}
	return out
}

// The device table lists 10,000 devices and the search narrows them.
func TestDeviceTableFilter10000(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{snap: Snapshot{CIRA: ":4433", Proxy: ":1080", Devices: fleet(10000), Sessions: make([]proxy.SessionInfo, 3)}}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(900, 600))
	u.Refresh()
	if u.Shown() != 10000 {
		t.Fatalf("%d rows, want 10000", u.Shown())
	}
	test.Type(u.Dev.Search, "sim-00042")
	if u.Shown() != 10 { // sim-000420 … sim-000429
		t.Fatalf("%d rows for sim-00042, want 10", u.Shown())
	}
	u.Dev.Search.SetText("192.0.2.7:")
	if u.Shown() != 40 {
		t.Fatalf("%d rows for a remote address, want 40", u.Shown())
	}
	u.Dev.Search.SetText("")
	if u.Shown() != 10000 {
		t.Fatalf("%d rows after clearing, want 10000", u.Shown())
	}
	if got := u.Overview.Counts.Text; !strings.HasPrefix(got, "10000 devices connected · 3 console sessions") {
		t.Fatalf("overview: %q", got)
	}
}

// A device appears on the next refresh and disappears after it leaves.
func TestDeviceAppearsAndDisappears(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	u.Refresh()
	if u.Shown() != 0 {
		t.Fatal("rows with no device")
	}
	b.snap.Devices = fleet(1)
	u.Refresh()
	if u.Shown() != 1 || cell(u.Dev.shown[0], 1) != "sim-000000" || cell(u.Dev.shown[0], 6) != "16992,16994" {
		t.Fatalf("after connect: %d rows", u.Shown())
	}
	b.snap.Devices = nil
	u.Refresh()
	if u.Shown() != 0 {
		t.Fatal("device still listed after it left")
	}
}

// A session is ended from the Sessions screen: select it, press the button.
func TestSessionKill(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{snap: Snapshot{Sessions: []proxy.SessionInfo{
		{ID: 7, Kind: proxy.KindSOCKS5, User: "alice", Device: "d1", Port: 16994},
		{ID: 9, Kind: proxy.KindHTTP, User: "bob", Device: "d2", Port: 16992},
	}}}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(900, 600))
	u.Refresh()
	if !u.EndSession.Disabled() {
		t.Fatal("End session enabled with nothing selected")
	}
	u.SessionTable.Select(widget.TableCellID{Row: 1, Col: 0})
	if u.EndSession.Disabled() {
		t.Fatal("End session disabled with a session selected")
	}
	test.Tap(u.EndSession)
	if len(b.killed) != 1 || b.killed[0] != 9 {
		t.Fatalf("killed %v, want [9]", b.killed)
	}
	if len(u.sessions) != 1 || u.sessions[0].ID != 7 || !u.EndSession.Disabled() || u.message.Text != "Session 9 ended." {
		t.Fatalf("after the kill: %d sessions, message %q", len(u.sessions), u.message.Text)
	}
	// A session that ended meanwhile: the error is shown, in a sentence.
	u.SessionTable.Select(widget.TableCellID{Row: 0, Col: 0})
	b.snap.Sessions = nil
	test.Tap(u.EndSession)
	if u.message.Text != "Session 7 could not be ended: no live session has that id" {
		t.Fatalf("message %q", u.message.Text)
	}
}

// The device pane: select, copy, map the web UI, disconnect.
func TestDeviceActions(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{snap: Snapshot{Proxy: "192.0.2.1:1080", Devices: fleet(3)}}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(1000, 600))
	u.Refresh()
	if !u.Dev.DisconnectBtn.Disabled() {
		t.Fatal("actions enabled with no device selected")
	}
	u.Dev.Table.Select(widget.TableCellID{Row: 1, Col: 0})
	guid := fleet(3)[1].UUID
	if !strings.Contains(u.Dev.Detail.Text, "GUID: "+guid) || !strings.Contains(u.Dev.Detail.Text, "Ports: 16992,16994") {
		t.Fatalf("detail %q", u.Dev.Detail.Text)
	}
	test.Tap(u.Dev.CopyBtn)
	if got := fyne.CurrentApp().Clipboard().Content(); got != guid+".amt:16992 (proxy 192.0.2.1:1080)" {
		t.Fatalf("clipboard %q", got)
	}
	test.Tap(u.Dev.MapBtn)
	if len(b.mapped) != 1 || b.mapped[0] != guid+":16992" || !strings.Contains(u.Dev.deviceMsg.Text, "127.0.0.1:40001") {
		t.Fatalf("map: %v, %q", b.mapped, u.Dev.deviceMsg.Text)
	}
	test.Tap(u.Dev.DisconnectBtn)
	if len(b.disconnected) != 1 || b.disconnected[0] != guid || u.Shown() != 2 || !u.Dev.DisconnectBtn.Disabled() {
		t.Fatalf("disconnect: %v, %d shown", b.disconnected, u.Shown())
	}
	if u.Dev.Detail.Text != "The device has disconnected." {
		t.Fatalf("detail after disconnect %q", u.Dev.Detail.Text)
	}
}
