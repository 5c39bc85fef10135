package adapter_test

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/app/adapter"
	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/app/ui/admin"
	"github.com/presence-mps/presence/app/ui/uitest"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// startPeer starts instance id of the fleet of root on loopback, linked
// to peers (as internal/instance's fleet tests do); ca, if not nil, is its
// CA, and cira its CIRA address.
func startPeer(t *testing.T, root *fleettest.Root, id string, ca *vault.CA, cira, peerAddr string, peers ...string) (*instance.Instance, *vault.CA) {
	t.Helper()
	stls, ctls := root.TLS(root.Peer(t, id))
	return instancetest.Start(t, func(c *instance.Config) {
		c.InstanceID = id
		if ca != nil {
			c.CA = ca
		}
		if cira != "" {
			c.Settings.CIRAAddr = cira
		}
		c.Fleet = &instance.FleetConfig{PeerAddr: peerAddr, Peers: peers, ServerTLS: stls, ClientTLS: ctls,
			PeerID: fleettest.PeerID, Name: id}
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// newWindow shows the window's screens over b, with blocking work inline.
func newWindow(t *testing.T, b ui.Backend) (*ui.UI, fyne.Window) {
	t.Helper()
	test.NewTempApp(t)
	u := ui.New(b)
	u.Go = func(f func()) { f() }
	w := test.NewTempWindow(t, u.Root)
	w.Resize(fyne.NewSize(1100, 700))
	return u, w
}

// selectDevice selects guid's row in the device table.
func selectDevice(t *testing.T, u *ui.UI, guid string) {
	t.Helper()
	u.Dev.Search.SetText(guid)
	if u.Shown() != 1 {
		t.Fatalf("%d rows for %s", u.Shown(), guid)
	}
	u.Dev.Table.Select(widget.TableCellID{Row: 0, Col: 0})
}

// The window of instance A of a real two-instance fleet: the Overview
// lists B (its id, link, MPS entry, version and devices); Devices lists
// B's device beside A's with the instance that holds it; that device's
// pane names B for what only B knows; a port mapping made in the window
// reaches it through the fleet; Disconnect closes B's tunnel. The
// Certificates screen's backend names B's announced entry as the backup.
func TestWindowOfAFleet(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	b, caB := startPeer(t, root, "inst-b", nil, "", "127.0.0.1:0")
	a, caA := startPeer(t, root, "inst-a", nil, "", "127.0.0.1:0", b.PeerAddr.String())
	onB := instancetest.LoopDevice(t, caB, "window-fleet", 0, "laptop-0", b.CIRAAddr.String())
	onA := instancetest.LoopDevice(t, caA, "window-fleet", 1, "desk-1", a.CIRAAddr.String())
	waitUntil(t, "A to learn B's device", func() bool { o, ok := a.Fleet().Lookup(onB); return ok && o.Instance == "inst-b" })
	waitUntil(t, "A's device", func() bool { _, ok := a.Server.Device(onA); return ok })

	back := adapter.New(a, settings.Settings{}, nil)
	defer back.Close()
	s := back.Snapshot()
	f := s.Fleet
	if f == nil || f.Self.ID != "inst-a" || f.Self.CIRAAddr != "inst-a:"+port(a.CIRAAddr) || f.Etcd != nil || f.Away != 0 || f.SendHomeRate != instance.DefaultSendHomeRate {
		t.Fatalf("fleet %+v", f)
	}
	if len(f.Peers) != 1 || f.Peers[0].ID != "inst-b" || !f.Peers[0].Up || f.Peers[0].Devices != 1 || f.Peers[0].CIRAAddr != "inst-b:"+port(b.CIRAAddr) ||
		f.Peers[0].Version != "test" || f.Peers[0].Addr != b.PeerAddr.String() {
		t.Fatalf("peers %+v", f.Peers)
	}
	if len(f.Devices) != 1 || f.Devices[0].GUID != onB || f.Devices[0].Host != "laptop-0" || f.Devices[0].Instance != "inst-b" {
		t.Fatalf("peers' devices %+v", f.Devices)
	}

	u, _ := newWindow(t, back)
	u.Refresh()
	peers := u.Overview.Fleet.Peers.Text
	for _, want := range []string{"This instance: inst-a · MPS entry inst-a:" + port(a.CIRAAddr), "inst-b · link up since",
		"peer " + b.PeerAddr.String() + " · MPS entry inst-b:" + port(b.CIRAAddr) + " · version test · 1 devices"} {
		if !strings.Contains(peers, want) {
			t.Fatalf("overview peers lack %q:\n%s", want, peers)
		}
	}
	if got := u.Dev.Columns(); !slices.Contains(got, "Instance") || u.Shown() != 2 {
		t.Fatalf("devices: columns %q, %d rows", got, u.Shown())
	}
	selectDevice(t, u, onB)
	if d := u.Dev.Detail.Text; !strings.Contains(d, "Host name: laptop-0") || !strings.Contains(d, "TLS: held by instance inst-b") {
		t.Fatalf("pane of B's device:\n%s", d)
	}

	// A mapping on A reaches B's device through the fleet.
	listen, err := back.Map(onB, 7)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", listen, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("window"))
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "window" {
		t.Fatalf("echo through the window's mapping: %q, %v", buf, err)
	}
	c.Close()

	// The Certificates screen: A is the primary, B the backup.
	st := vault.NewMemory(0)
	rk, sk := vaulttest.Keys(t)
	if _, err := vault.InitCA(t.Context(), st, vault.CAOptions{Address: "inst-a", RootKey: rk, ServerKey: sk}); err != nil {
		t.Fatal(err)
	}
	cs, err := (&adapter.Admin{Vault: st, In: a}).Certificates()
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := strconv.Atoi(port(a.CIRAAddr))
	pb, _ := strconv.Atoi(port(b.CIRAAddr))
	if cs.Primary != (admin.MPSEntry{Address: "inst-a", Port: pa}) || !cs.InFleet || len(cs.Backups) != 1 || cs.Backups[0] != (admin.MPSEntry{Address: "inst-b", Port: pb, Instance: "inst-b"}) {
		t.Fatalf("entries: primary %+v, backups %+v, in fleet %v", cs.Primary, cs.Backups, cs.InFleet)
	}

	// Disconnect in the window closes B's tunnel.
	selectDevice(t, u, onB)
	test.Tap(u.Dev.DisconnectBtn)
	waitUntil(t, "B's tunnel to close", func() bool {
		d, ok := b.Server.Device(onB)
		return !ok || d.Info.ConnectedAt.After(s.Taken) // it reconnects on its own
	})
	if _, ok := a.Server.Device(onA); !ok {
		t.Fatal("A's own device was disconnected")
	}
}

// Send devices home in the window of a backup: a device whose primary is
// B comes to A while B is down; once B is back, A's Overview offers to
// send it home, and confirming closes its tunnel so that it goes back to
// B.
func TestWindowSendsDevicesHome(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	ca := vaulttest.CA(t, "127.0.0.1")
	b, _ := startPeer(t, root, "inst-b", ca, "127.0.0.1:0", "127.0.0.1:0")
	a, _ := startPeer(t, root, "inst-a", ca, "", "127.0.0.1:0", b.PeerAddr.String())
	ciraB, peerB := b.CIRAAddr.String(), b.PeerAddr.String()
	guid := instancetest.LoopDevice(t, ca, "window-fleet", 2, "laptop-2", ciraB, a.CIRAAddr.String())
	waitUntil(t, "the device on B, seen by A", func() bool { _, ok := a.Fleet().Lookup(guid); return ok })

	back := adapter.New(a, settings.Settings{}, nil)
	defer back.Close()
	u, w := newWindow(t, back)
	u.Refresh()
	if n := back.Snapshot().Fleet.Away; n != 0 {
		t.Fatalf("%d devices away before any", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the device to come to A", func() bool { _, ok := a.Server.Device(guid); return ok })
	b, _ = startPeer(t, root, "inst-b", ca, ciraB, peerB)
	waitUntil(t, "A to see B again, and the device away from it", func() bool { return back.Snapshot().Fleet.Away == 1 })
	u.Refresh()
	if got := u.Overview.Fleet.Away.Text; got != "1 device is here while its home instance is up again." {
		t.Fatalf("away %q", got)
	}
	test.Tap(u.Overview.Fleet.SendHome)
	uitest.TapDialogButton(t, w, "Send home")
	if got := u.Overview.Fleet.Message.Text; !strings.HasPrefix(got, "Sending 1 devices home, 20 per second") {
		t.Fatalf("message %q", got)
	}
	waitUntil(t, "the device home on B", func() bool { _, ok := b.Server.Device(guid); return ok })
	if away := a.Away(); len(away) != 0 {
		t.Fatalf("still away: %+v", away)
	}
}

func port(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}
