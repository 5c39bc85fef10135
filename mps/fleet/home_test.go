package fleet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
)

// An administrator on A disconnects a device B holds: B closes its own
// tunnel and knows who asked; a device B does not hold is ErrNotHere.
func TestDisconnectThroughPeer(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	a := start(t, root, "inst-a", root.Peer(t, "inst-a"))
	b := start(t, root, "inst-b", root.Peer(t, "inst-b"))
	b.hold(guidA, "laptop-1")
	a.peers.Add(b.addr)
	waitFor(t, "B's table on A", func() bool { _, ok := a.peers.Lookup(guidA); return ok })
	o, _ := a.peers.Lookup(guidA)
	if err := a.peers.Disconnect(context.Background(), o, fleet.Console{User: "admin"}); err != nil {
		t.Fatal(err)
	}
	b.local.mu.Lock()
	closed := b.local.closed
	b.local.mu.Unlock()
	if len(closed) != 1 || closed[0] != (fleet.Console{User: "admin", Via: "inst-a"}) {
		t.Fatalf("B closed for %+v", closed)
	}
	if err := a.peers.Disconnect(context.Background(), o, fleet.Console{User: "admin"}); !errors.Is(err, fleet.ErrNotHere) {
		t.Fatalf("a device B no longer holds: %v", err)
	}
	if err := a.peers.Disconnect(context.Background(), fleet.Owner{GUID: guidA, Instance: "inst-z"}, fleet.Console{}); !errors.Is(err, fleet.ErrNoPeer) {
		t.Fatalf("an instance with no link: %v", err)
	}
}

// Devices a peer held when its link dropped, which then came here, are
// away from home once that peer is back; a device that moved while both
// were up, or that went home, is not.
func TestAwayFromHome(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	a := start(t, root, "inst-a", root.Peer(t, "inst-a"))
	b := start(t, root, "inst-b", root.Peer(t, "inst-b"))
	const chose = "cccccccc-2222-3333-4444-555555555555"
	b.hold(guidA, "laptop-1")
	moved := b.hold(chose, "laptop-2")
	a.peers.Add(b.addr)
	waitFor(t, "B's table on A", func() bool { return len(a.peers.Owners()) == 2 })
	// laptop-2 moves to A while B is up: B lets it go.
	a.hold(chose, "laptop-2")
	b.peers.Down(moved)
	waitFor(t, "laptop-2 gone from B's rows", func() bool { return len(a.peers.Owners()) == 1 })

	b.peers.Close() // B dies holding laptop-1, which then comes to A
	waitFor(t, "B's link down", func() bool { return !a.peers.Links()[0].Up })
	a.hold(guidA, "laptop-1")
	if away := a.peers.Away(); len(away) != 0 {
		t.Fatalf("away while its home is down: %+v", away)
	}

	back := start(t, root, "inst-b", root.Peer(t, "inst-b")) // B again, at a new address
	a.peers.Add(back.addr)
	var away []fleet.Away
	waitFor(t, "laptop-1 away from B", func() bool { away = a.peers.Away(); return len(away) == 1 })
	if away[0].GUID != guidA || away[0].Home.ID != "inst-b" || away[0].Home.PeerAddr != back.addr {
		t.Fatalf("away %+v", away)
	}
	// It goes home.
	back.hold(guidA, "laptop-1")
	waitFor(t, "laptop-1 home", func() bool { return len(a.peers.Away()) == 0 })
}

// Instances each told of one peer end linked to every other: B names its
// peers to its subscribers, so A and C, told only of B, find each other
// and reach each other's devices.
func TestMembersLinkTheWholeFleet(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	a := start(t, root, "inst-a", root.Peer(t, "inst-a"))
	b := start(t, root, "inst-b", root.Peer(t, "inst-b"))
	c := start(t, root, "inst-c", root.Peer(t, "inst-c"))
	c.hold(guidA, "laptop-1")
	a.peers.Add(b.addr)
	c.peers.Add(b.addr)
	waitForLong(t, "A to learn C's device through a link of its own", func() bool {
		o, ok := a.peers.Lookup(guidA)
		return ok && o.Instance == "inst-c"
	})
	conn, err := a.peers.Dial(context.Background(), fleet.Owner{GUID: guidA, Instance: "inst-c"}, 7, fleet.Console{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// waitForLong is waitFor with room for a few heartbeats.
func waitForLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(4 * fleet.HeartbeatEvery)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A peer that comes back and subscribes cuts short our link's redial
// wait (at least a second after a failure): the link is up at once.
func TestLinkRedialsWhenPeerReturns(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	a := start(t, root, "inst-a", root.Peer(t, "inst-a"))
	b := start(t, root, "inst-b", root.Peer(t, "inst-b"))
	a.peers.Add(b.addr)
	waitFor(t, "the link", func() bool { l := a.peers.Links(); return len(l) == 1 && l[0].Up })
	b.peers.Close()
	waitFor(t, "the link down", func() bool { l := a.peers.Links(); return !l[0].Up })
	// B again, elsewhere, told of A: it subscribes to A, and A's link to
	// B's new address (linked back) or its old one must be up well
	// within the redial wait.
	back := start(t, root, "inst-b", root.Peer(t, "inst-b"))
	t0 := time.Now()
	back.peers.Add(a.addr)
	waitFor(t, "A linked to B again", func() bool {
		for _, l := range a.peers.Links() {
			if l.Up && l.Member.ID == "inst-b" {
				return true
			}
		}
		return false
	})
	if took := time.Since(t0); took > 900*time.Millisecond {
		t.Fatalf("A linked to B again after %v", took)
	}
}
