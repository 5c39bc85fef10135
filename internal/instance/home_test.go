package instance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// peerAPI calls in's REST API as the console account.
func peerAPI(t *testing.T, in *instance.Instance, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+in.APIAddr.String()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(instancetest.ConsoleUser, instancetest.ConsolePass)
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// An administrator on A acts on a device B holds, through A's API: a port
// mapping on A reaches it (the mapping dials through the fleet), and
// disconnecting it closes B's tunnel.
func TestFleetActionsOnPeersDevice(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	b, caB := startPeer(t, root, "inst-b")
	a, _ := startPeer(t, root, "inst-a", b.PeerAddr.String())
	d := runDevice(t, b, caB, 0, "laptop-0")
	guid := d.UUID().String()
	waitUntil(t, "A to learn B's device", func() bool { _, ok := a.Fleet().Lookup(guid); return ok })

	var m struct {
		Listen string `json:"listen"`
	}
	if code := peerAPI(t, a, "POST", "/api/v1/mappings", api.MappingRequest{Device: "laptop-0", Port: 7}, &m); code != 201 {
		t.Fatalf("mapping B's device on A: %d", code)
	}
	c, err := net.DialTimeout("tcp", m.Listen, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("mapped"))
	buf := make([]byte, 6)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "mapped" {
		t.Fatalf("echo through A's mapping: %q, %v", buf, err)
	}
	c.Close()
	if code := peerAPI(t, a, "POST", "/api/v1/mappings", api.MappingRequest{Device: "nosuch", Port: 7}, nil); code != 404 {
		t.Fatalf("mapping an unknown device: %d", code)
	}

	var out map[string]string
	if code := peerAPI(t, a, "DELETE", "/api/v1/devices/disconnect/laptop-0", nil, &out); code != 200 || out["disconnected"] != guid || out["instance"] != "inst-b" {
		t.Fatalf("disconnect through A: %d %v", code, out)
	}
	waitUntil(t, "B's tunnel to close", func() bool { _, ok := b.Server.Device(guid); return !ok })
	if code := peerAPI(t, a, "DELETE", "/api/v1/devices/disconnect/laptop-0", nil, nil); code != 404 {
		t.Fatalf("disconnecting it again: %d", code)
	}
}

// A device whose primary is B and backup A: B dies, the device comes up
// on A; B comes back on the same addresses; Send devices home on A
// closes the device's tunnel, and the device, starting again at its first
// entry, comes up on B. A device whose primary is A stays on A.
func TestSendDevicesHome(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	ca := vaulttest.CA(t, "127.0.0.1")
	startB := func(cira, peer string) *instance.Instance {
		stls, ctls := root.TLS(root.Peer(t, "inst-b"))
		in, _ := instancetest.Start(t, func(c *instance.Config) {
			c.InstanceID, c.CA = "inst-b", ca
			c.Settings.CIRAAddr = cira
			c.Fleet = &instance.FleetConfig{PeerAddr: peer, ServerTLS: stls, ClientTLS: ctls, PeerID: fleettest.PeerID, Name: "inst-b"}
		})
		return in
	}
	b := startB("127.0.0.1:0", "127.0.0.1:0")
	stls, ctls := root.TLS(root.Peer(t, "inst-a"))
	a, _ := instancetest.Start(t, func(c *instance.Config) {
		c.InstanceID, c.CA = "inst-a", ca
		c.Fleet = &instance.FleetConfig{PeerAddr: "127.0.0.1:0", Peers: []string{b.PeerAddr.String()},
			ServerTLS: stls, ClientTLS: ctls, PeerID: fleettest.PeerID, Name: "inst-a"}
	})
	ciraB, peerB := b.CIRAAddr.String(), b.PeerAddr.String()
	homeB := instancetest.LoopDevice(t, ca, "home", 1, "", ciraB, a.CIRAAddr.String())
	homeA := instancetest.LoopDevice(t, ca, "home", 2, "", a.CIRAAddr.String(), ciraB)
	waitUntil(t, "both devices up", func() bool {
		_, onB := b.Server.Device(homeB)
		_, onA := a.Server.Device(homeA)
		_, seen := a.Fleet().Lookup(homeB)
		return onB && onA && seen
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "B's device to come up on A", func() bool { _, ok := a.Server.Device(homeB); return ok })
	if n, err := a.SendHome(0); err != nil || n != 0 {
		t.Fatalf("send home while B is down: %d, %v", n, err)
	}

	b = startB(ciraB, peerB)
	waitUntil(t, "A to see B again, and the device away from it", func() bool { return len(a.Away()) == 1 })
	var info api.FleetInfo
	if code := peerAPI(t, a, "GET", "/api/v1/fleet", nil, &info); code != 200 || info.AwayFromHome != 1 {
		t.Fatalf("fleet info: %d %+v", code, info)
	}
	var sent api.SendHomeResult
	if code := peerAPI(t, a, "POST", "/api/v1/fleet/send-home", api.SendHomeRequest{Rate: 50}, &sent); code != 200 || sent.Devices != 1 {
		t.Fatalf("send home: %d %+v", code, sent)
	}
	waitUntil(t, "the device home on B", func() bool { _, ok := b.Server.Device(homeB); return ok })
	if _, ok := a.Server.Device(homeA); !ok {
		t.Fatal("the device whose primary is A left it")
	}
	if away := a.Away(); len(away) != 0 {
		t.Fatalf("still away: %+v", away)
	}
	if code := peerAPI(t, a, "POST", "/api/v1/fleet/send-home", map[string]any{"rate": -1}, nil); code != 400 {
		t.Fatalf("a negative rate: %d", code)
	}
}

// A peer that asks an owner to forward again is refused: the device is on
// C, and B, which could reach it, answers A's forward with not-here
// rather than making a second hop.
func TestNoSecondHop(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	c, caC := startPeer(t, root, "inst-c")
	b, _ := startPeer(t, root, "inst-b", c.PeerAddr.String())
	a, _ := startPeer(t, root, "inst-a", b.PeerAddr.String())
	d := runDevice(t, c, caC, 0, "laptop-0")
	guid := d.UUID().String()
	waitUntil(t, "B to learn C's device", func() bool { _, ok := b.Fleet().Lookup(guid); return ok })
	waitUntil(t, "A to link to B", func() bool { l := a.Fleet().Links(); return len(l) == 1 && l[0].Up })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.Fleet().Dial(ctx, fleet.Owner{GUID: guid, Instance: "inst-b"}, 7, fleet.Console{User: "alice"})
	if !errors.Is(err, fleet.ErrNotHere) {
		t.Fatalf("A asking B for C's device: %v; want not-here", err)
	}
	// B itself reaches it in one hop.
	conn, err := b.Fleet().Dial(ctx, fleet.Owner{GUID: guid, Instance: "inst-c"}, 7, fleet.Console{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}
