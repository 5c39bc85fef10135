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
	"github.com/presence-mps/presence/app/ui/uitest"
)

// fleetT0 is the time the fleet fixtures are taken at.
var fleetT0 = time.Unix(1_764_000_000, 0)

// fleetSnapshot is an instance (mps-a) of a fleet with etcd: nLocal
// devices here, and a peer mps-b holding nPeer devices, whose link is up,
// and a peer whose link is down.
func fleetSnapshot(nLocal, nPeer int) Snapshot {
	peerDevs := make([]PeerDevice, nPeer)
	for i := range peerDevs {
		peerDevs[i] = PeerDevice{GUID: fmt.Sprintf("00000000-0000-4000-9000-%012d", i), Host: fmt.Sprintf("laptop-%06d", i),
			Instance: "inst-b", Since: fleetT0.Add(-time.Hour)}
	}
	return Snapshot{CIRA: ":4433", Proxy: ":1080", API: "127.0.0.1:16990", Devices: fleet(nLocal), Taken: fleetT0,
		Fleet: &Fleet{
			Self: Peer{ID: "inst-a", Name: "mps-a.example.com", Addr: "mps-a.example.com:16991", CIRAAddr: "mps-a.example.com:4433", Version: "1.4.0"},
			Peers: []Peer{
				{ID: "inst-b", Name: "mps-b.example.com", Addr: "10.0.0.2:16991", CIRAAddr: "mps-b.example.com:4433", Version: "1.4.0",
					Devices: nPeer, Up: true, Since: fleetT0.Add(-2 * time.Hour), Contact: fleetT0.Add(-2 * time.Second)},
				{Addr: "10.0.0.3:16991", Since: fleetT0.Add(-time.Minute), Error: "dial tcp 10.0.0.3:16991: connect: connection refused"},
			},
			Etcd:         &EtcdState{Connected: true, Since: fleetT0.Add(-3 * time.Hour)},
			SendHomeRate: 20,
			Devices:      peerDevs,
		}}
}

// The Overview of an instance in a fleet lists its peers (name, id,
// link, last contact, peer address, MPS entry, version, devices) and
// etcd's state; outside a fleet it says nothing of one.
func TestOverviewPeers(t *testing.T) {
	pinLocal(t)
	test.NewTempApp(t)
	b := &fakeBackend{snap: Snapshot{Devices: fleet(1)}}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	u.Refresh()
	if u.Overview.Fleet.Box.Visible() {
		t.Fatal("a fleet section outside a fleet")
	}
	b.snap = fleetSnapshot(2, 3)
	u.Refresh()
	if !u.Overview.Fleet.Box.Visible() || u.Overview.Fleet.awayRow.Visible() {
		t.Fatalf("fleet shown %v, away shown %v", u.Overview.Fleet.Box.Visible(), u.Overview.Fleet.awayRow.Visible())
	}
	want := "This instance: mps-a.example.com (inst-a) · MPS entry mps-a.example.com:4433 · peer mps-a.example.com:16991\n" +
		"etcd: connected since 13:00:00\n" +
		"mps-b.example.com (inst-b) · link up since 14:00:00 · last contact 15:59:58 (2s ago)\n" +
		"    peer 10.0.0.2:16991 · MPS entry mps-b.example.com:4433 · version 1.4.0 · 3 devices\n" +
		"10.0.0.3:16991 (not reached yet) · link down: dial tcp 10.0.0.3:16991: connect: connection refused · never heard from\n" +
		"    peer 10.0.0.3:16991 · MPS entry unknown · version unknown · 0 devices"
	if got := u.Overview.Fleet.Peers.Text; got != want {
		t.Fatalf("peers:\n%s\nwant\n%s", got, want)
	}
	// etcd unreachable: the instance says it goes on with its own devices.
	b.snap.Fleet.Etcd = &EtcdState{Since: fleetT0.Add(-time.Minute), Error: "context deadline exceeded"}
	b.snap.Fleet.Peers = nil
	u.Refresh()
	if got := u.Overview.Fleet.Peers.Text; !strings.Contains(got, "etcd: unreachable since 15:59:00 (context deadline exceeded): serving own devices") ||
		!strings.Contains(got, "No other instance is linked yet") {
		t.Fatalf("peers with etcd down:\n%s", got)
	}
	b.snap.Fleet = nil
	u.Refresh()
	if u.Overview.Fleet.Box.Visible() {
		t.Fatal("the fleet section stays after the fleet is gone")
	}
}

// Send devices home: shown only while devices are away from a home that
// is up again; it asks first (naming the pace and that AMT's return is
// unconfirmed), Cancel sends nothing, Send home calls the backend.
func TestSendDevicesHome(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{snap: fleetSnapshot(3, 1)}
	b.snap.Fleet.Away = 3
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(1000, 700))
	u.Refresh()
	f := &u.Overview.Fleet
	if !f.awayRow.Visible() || f.Away.Text != "3 devices are here while their home instance is up again." {
		t.Fatalf("away shown %v: %q", f.awayRow.Visible(), f.Away.Text)
	}
	test.Tap(f.SendHome)
	txt := uitest.DialogText(w)
	for _, want := range []string{"close the tunnels of the 3 devices", "20 per second (about 1 s)", "first MPS entry", "Unconfirmed on real hardware"} {
		if !strings.Contains(txt, want) {
			t.Fatalf("confirmation lacks %q:\n%s", want, txt)
		}
	}
	uitest.TapDialogButton(t, w, "Cancel")
	if b.sentHome != 0 {
		t.Fatal("sent home after Cancel")
	}
	test.Tap(f.SendHome)
	uitest.TapDialogButton(t, w, "Send home")
	if b.sentHome != 1 || f.Message.Text != "Sending 3 devices home, 20 per second: each tunnel is closed, and AMT reconnects to its first MPS entry." {
		t.Fatalf("sent %d times, message %q", b.sentHome, f.Message.Text)
	}
	u.Refresh()
	if f.awayRow.Visible() {
		t.Fatal("Send devices home still offered with no device away")
	}
	b.sendHomeErr = errors.New("the instance is shutting down")
	f.SendHomeNow()
	if f.Message.Text != "The devices could not be sent home: the instance is shutting down" || f.SendHome.Disabled() {
		t.Fatalf("failure: %q", f.Message.Text)
	}
	b.snap.Fleet.Away = 1
	u.Refresh()
	if f.Away.Text != "1 device is here while its home instance is up again." {
		t.Fatalf("one away: %q", f.Away.Text)
	}
}

// In a fleet the device table has an Instance column and lists the
// peers' devices too; a peer's device's pane says which instance holds
// it instead of leaving the tunnel's details blank, reads no timeline,
// and its actions go to the backend (which reaches the owner).
func TestDevicesOfTheFleet(t *testing.T) {
	pinLocal(t)
	test.NewTempApp(t)
	b := &fakeBackend{snap: Snapshot{Proxy: "192.0.2.1:1080", Devices: fleet(2)}}
	u := newTestUI(b)
	var opened []string
	u.OpenURL = func(s string) error { opened = append(opened, s); return nil }
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(1000, 600))
	u.Refresh()
	if got := u.Dev.Columns(); slices.Contains(got, "Instance") {
		t.Fatalf("columns outside a fleet: %q", got)
	}
	b.snap = fleetSnapshot(2, 2)
	b.snap.Proxy = "192.0.2.1:1080"
	// A device on both (it is moving) is listed once, as this one's.
	b.snap.Fleet.Devices = append(b.snap.Fleet.Devices, PeerDevice{GUID: fleet(1)[0].UUID, Host: "sim-000000", Instance: "inst-b"})
	u.Refresh()
	if got := u.Dev.Columns(); !slices.Equal(got, []string{"Status", "Host name", "Instance", "GUID", "Remote", "TLS", "Connected", "Ports"}) {
		t.Fatalf("columns in a fleet: %q", got)
	}
	if u.Shown() != 4 {
		t.Fatalf("%d rows, want 2 here and 2 on mps-b", u.Shown())
	}
	var rows []string
	for _, r := range u.Dev.shown {
		rows = append(rows, cell(r, 1)+" "+cell(r, colInstance)+" "+cell(r, 0))
	}
	if want := []string{"laptop-000000 mps-b.example.com connected", "laptop-000001 mps-b.example.com connected", "sim-000000 this one starting", "sim-000001 this one starting"}; !slices.Equal(rows, want) {
		t.Fatalf("rows %q, want %q", rows, want)
	}
	test.Type(u.Dev.Search, "mps-b")
	if u.Shown() != 2 {
		t.Fatalf("%d rows for the instance's name, want 2", u.Shown())
	}
	u.Dev.Search.SetText("")

	u.Dev.Table.Select(widget.TableCellID{Row: 0, Col: 0})
	guid := b.snap.Fleet.Devices[0].GUID
	for _, want := range []string{"Host name: laptop-000000", "GUID: " + guid, "State: connected to instance mps-b.example.com",
		"Instance: mps-b.example.com (inst-b)", "TLS: held by instance mps-b.example.com", "Ports: held by instance mps-b.example.com",
		"Connected since: 2025-11-24 15:00:00"} {
		if !strings.Contains(u.Dev.Detail.Text, want) {
			t.Fatalf("pane lacks %q:\n%s", want, u.Dev.Detail.Text)
		}
	}
	if u.Dev.Timeline.Text != "Held by instance mps-b.example.com:\nits timeline is in that instance's history." || len(b.timelines) != 0 {
		t.Fatalf("timeline %q, read for %v", u.Dev.Timeline.Text, b.timelines)
	}
	for _, btn := range []*widget.Button{u.Dev.Web, u.Dev.CopyBtn, u.Dev.MapBtn, u.Dev.DisconnectBtn} {
		if btn.Disabled() {
			t.Fatalf("%s disabled for a peer's device", btn.Text)
		}
	}
	test.Tap(u.Dev.CopyBtn)
	if got := fyne.CurrentApp().Clipboard().Content(); got != guid+".amt:16992 (proxy 192.0.2.1:1080)" {
		t.Fatalf("clipboard %q", got)
	}
	test.Tap(u.Dev.Web)
	if len(b.mapped) != 1 || b.mapped[0] != guid+":16992" || len(opened) != 1 {
		t.Fatalf("web UI: mapped %v, opened %v", b.mapped, opened)
	}
	test.Tap(u.Dev.MapBtn)
	if len(b.mapped) != 2 || !strings.Contains(u.Dev.deviceMsg.Text, "127.0.0.1:40001") {
		t.Fatalf("map: %v, %q", b.mapped, u.Dev.deviceMsg.Text)
	}
	test.Tap(u.Dev.DisconnectBtn)
	if len(b.disconnected) != 1 || b.disconnected[0] != guid || !strings.HasPrefix(u.Dev.deviceMsg.Text, "Disconnected "+guid+" on instance mps-b.example.com.") {
		t.Fatalf("disconnect: %v, %q", b.disconnected, u.Dev.deviceMsg.Text)
	}
	if u.Shown() != 3 || u.Dev.Detail.Text != "The device has disconnected." {
		t.Fatalf("after the disconnect: %d rows, pane %q", u.Shown(), u.Dev.Detail.Text)
	}
	// A peer's device that left is listed under Disconnected.
	u.Dev.Status.SetSelected(StatusDisconnected)
	if u.Shown() != 1 || cell(u.Dev.shown[0], colInstance) != "mps-b.example.com" {
		t.Fatalf("disconnected: %d rows", u.Shown())
	}
	// Out of the fleet again, the column goes.
	b.snap.Fleet = nil
	u.Refresh()
	if got := u.Dev.Columns(); slices.Contains(got, "Instance") {
		t.Fatalf("columns after the fleet: %q", got)
	}
}

// The device table lists 10,000 devices, half of them a peer's, and the
// search narrows them by instance too.
func TestDeviceTableFleet10000(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{snap: fleetSnapshot(5000, 5000)}
	u := newTestUI(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(900, 600))
	u.Refresh()
	if u.Shown() != 10000 {
		t.Fatalf("%d rows, want 10000", u.Shown())
	}
	test.Type(u.Dev.Search, "laptop-00042")
	if u.Shown() != 10 {
		t.Fatalf("%d rows for laptop-00042, want 10", u.Shown())
	}
	u.Dev.Search.SetText("mps-b")
	if u.Shown() != 5000 {
		t.Fatalf("%d rows for mps-b, want 5000", u.Shown())
	}
}

// BenchmarkPrepareFleet is the off-Fyne-goroutine work of one tick with
// 10,000 devices, half on a peer.
func BenchmarkPrepareFleet(b *testing.B) {
	test.NewTempApp(b)
	fb := &fakeBackend{snap: fleetSnapshot(5000, 5000)}
	u := New(fb)
	u.Refresh()
	for b.Loop() {
		u.Prepare(fb.snap)
	}
}

// pinLocal renders times in UTC until the test ends (the package's tests
// do not run in parallel).
func pinLocal(t *testing.T) {
	local := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = local })
}
