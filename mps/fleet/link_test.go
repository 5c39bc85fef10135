package fleet_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/testutil"
	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
)

// echoLocal holds devices whose every port is an echo service.
type echoLocal struct {
	mu      sync.Mutex
	owners  map[string]fleet.Owner
	echo    string // the echo server's address
	console []fleet.Console
	closed  []fleet.Console // administrators who disconnected a device
}

func (e *echoLocal) Disconnect(guid string, c fleet.Console) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.owners[guid]; !ok {
		return fmt.Errorf("%w: %s", fleet.ErrNotHere, guid)
	}
	delete(e.owners, guid)
	e.closed = append(e.closed, c)
	return nil
}

func (e *echoLocal) Relay(stream, dc net.Conn, _ fleet.Forward) { fleet.Relay(stream, dc) }

func (e *echoLocal) DialLocal(ctx context.Context, guid string, port uint32, c fleet.Console) (net.Conn, error) {
	e.mu.Lock()
	_, ok := e.owners[guid]
	e.console = append(e.console, c)
	e.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", fleet.ErrNotHere, guid)
	}
	if port != 7 {
		return nil, fleet.ErrNoPort
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", e.echo)
}

func echoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

type instance struct {
	peers *fleet.Peers
	addr  string
	local *echoLocal
	moved chan [2]fleet.Owner
}

// start runs a Peers for instance id with cert on 127.0.0.1.
func start(t testing.TB, root *fleettest.Root, id string, cert tls.Certificate) *instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{addr: ln.Addr().String(), local: &echoLocal{owners: map[string]fleet.Owner{}, echo: echoServer(t)},
		moved: make(chan [2]fleet.Owner, 16)}
	stls, ctls := root.TLS(cert)
	p, err := fleet.New(fleet.Config{
		Self:      fleet.Member{ID: id, PeerAddr: in.addr, Version: "test"},
		Local:     in.local,
		ServerTLS: stls, ClientTLS: ctls, PeerID: fleettest.PeerID,
		Moved: func(mine, newer fleet.Owner) { in.moved <- [2]fleet.Owner{mine, newer} },
	})
	if err != nil {
		t.Fatal(err)
	}
	in.peers = p
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return in
}

func (in *instance) hold(guid, host string) fleet.Owner {
	o := fleet.Owner{GUID: guid, Host: host, Conn: uint64(time.Now().UnixNano()), Since: time.Now()}
	in.local.mu.Lock()
	in.local.owners[guid] = o
	in.local.mu.Unlock()
	in.peers.Up(o)
	return o
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const guidA = "11111111-2222-3333-4444-555555555555"

// A subscribes to B: B's devices appear in A's table at once and as they
// come and go; A forwards a console to B's device in one hop, with the
// console's identity; a device B does not hold is ErrNotHere; when B goes
// away its rows go too.
func TestLinkTableAndForward(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	a := start(t, root, "inst-a", root.Peer(t, "inst-a"))
	b := start(t, root, "inst-b", root.Peer(t, "inst-b"))
	early := b.hold(guidA, "laptop-1")
	a.peers.Add(b.addr)
	waitFor(t, "B's table on A", func() bool { _, ok := a.peers.Lookup(guidA); return ok })
	if o, ok := a.peers.Lookup("11111111222233334444555555555555"); !ok || o.GUID != guidA {
		t.Fatalf("lookup by a GUID without dashes: %+v, %v", o, ok)
	}
	if o, _ := a.peers.Lookup("LAPTOP-1.amt"); o.Instance != "inst-b" || !o.Same(fleet.Owner{GUID: guidA, Instance: "inst-b", Conn: early.Conn}) {
		t.Fatalf("lookup by host: %+v", o)
	}
	const guidB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	b.hold(guidB, "laptop-2")
	waitFor(t, "a device that came up later", func() bool { _, ok := a.peers.Lookup(guidB); return ok })

	o, _ := a.peers.Lookup(guidA)
	c, err := a.peers.Dial(context.Background(), o, 7, fleet.Console{User: "alice", Addr: "192.0.2.7:5000"})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello through one hop")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo %q, %v", got, err)
	}
	c.Close()
	b.local.mu.Lock()
	who := b.local.console[len(b.local.console)-1]
	b.local.mu.Unlock()
	if who != (fleet.Console{User: "alice", Addr: "192.0.2.7:5000", Via: "inst-a"}) {
		t.Fatalf("B saw the console as %+v", who)
	}
	if _, err := a.peers.Dial(context.Background(), o, 16992, fleet.Console{User: "alice"}); !errors.Is(err, fleet.ErrNoPort) {
		t.Fatalf("a port the device does not offer: %v", err)
	}
	gone := fleet.Owner{GUID: "99999999-2222-3333-4444-555555555555", Instance: "inst-b"}
	if _, err := a.peers.Dial(context.Background(), gone, 7, fleet.Console{}); !errors.Is(err, fleet.ErrNotHere) {
		t.Fatalf("a device B does not hold: %v", err)
	}

	b.peers.Down(early)
	waitFor(t, "the device that left", func() bool { _, ok := a.peers.Lookup(guidA); return !ok })
	if got := len(a.peers.Owners()); got != 1 {
		t.Fatalf("%d rows; want 1", got)
	}
	links := a.peers.Links()
	if len(links) != 1 || !links[0].Up || links[0].Member.ID != "inst-b" || links[0].Devices != 1 {
		t.Fatalf("links %+v", links)
	}
	b.peers.Close()
	waitFor(t, "B's rows to go with its link", func() bool { return len(a.peers.Owners()) == 0 })
	if a.peers.Links()[0].Up {
		t.Fatal("the link to a closed peer is up")
	}
}

// A peer that pushes a newer connection of a device this instance holds
// makes it give the device up (Moved), and the newer owner wins lookups.
func TestNewestConnectionWins(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	a := start(t, root, "inst-a", root.Peer(t, "inst-a"))
	b := start(t, root, "inst-b", root.Peer(t, "inst-b"))
	mine := a.hold(guidA, "laptop-1")
	a.peers.Add(b.addr)
	time.Sleep(10 * time.Millisecond)
	newer := b.hold(guidA, "laptop-1")
	select {
	case m := <-a.moved:
		if !m[0].Same(fleet.Owner{GUID: guidA, Instance: "inst-a", Conn: mine.Conn}) || m[1].Instance != "inst-b" || m[1].Conn != newer.Conn {
			t.Fatalf("moved %+v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("A was not told that B holds a newer connection")
	}
}

// Only peers of this fleet's root get in: a certificate of another root
// fails the handshake, and one of this root that names no instance is
// refused.
func TestPeerRefusals(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	a := start(t, root, "inst-a", root.Peer(t, "inst-a"))
	a.hold(guidA, "laptop-1")

	other := fleettest.NewRoot(t, "another fleet")
	stranger := start(t, other, "inst-x", other.Peer(t, "inst-x"))
	stranger.peers.Add(a.addr)
	nameless := start(t, root, "inst-n", root.Peer(t, ""))
	nameless.peers.Add(a.addr)
	waitFor(t, "both refusals", func() bool {
		l1, l2 := stranger.peers.Links(), nameless.peers.Links()
		return len(l1) == 1 && l1[0].Error != "" && len(l2) == 1 && l2[0].Error != ""
	})
	for _, in := range []*instance{stranger, nameless} {
		if _, ok := in.peers.Lookup(guidA); ok {
			t.Fatalf("a refused peer sees A's devices: %+v", in.peers.Links())
		}
	}
	if e := stranger.peers.Links()[0].Error; !strings.Contains(e, "certificate") && !strings.Contains(e, "tls") {
		t.Errorf("another root: %s", e)
	}
	if e := nameless.peers.Links()[0].Error; !strings.Contains(e, "403") {
		t.Errorf("a certificate naming no instance: %s", e)
	}
}

// The hop itself, against an echo service on the owner: a small round
// trip on an open forwarded connection, opening one, and bytes per second
// through one (the real device path adds the tunnel; see the instance's
// benchmarks).
func BenchmarkHop(b *testing.B) {
	root := fleettest.NewRoot(b, "fleet")
	a := start(b, root, "inst-a", root.Peer(b, "inst-a"))
	bb := start(b, root, "inst-b", root.Peer(b, "inst-b"))
	o := bb.hold(guidA, "laptop-1")
	a.peers.Add(bb.addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := a.peers.Lookup(guidA); ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no link")
		}
		time.Sleep(time.Millisecond)
	}
	o.Instance = "inst-b"
	dial := func() net.Conn {
		c, err := a.peers.Dial(context.Background(), o, 7, fleet.Console{User: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	b.Run("echo-64B", func(b *testing.B) {
		c := dial()
		defer c.Close()
		msg, got := make([]byte, 64), make([]byte, 64)
		for b.Loop() {
			c.Write(msg)
			if _, err := io.ReadFull(c, got); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open-echo-close", func(b *testing.B) {
		msg, got := make([]byte, 64), make([]byte, 64)
		for b.Loop() {
			c := dial()
			c.Write(msg)
			if _, err := io.ReadFull(c, got); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("throughput", func(b *testing.B) {
		c := dial()
		defer c.Close()
		testutil.EchoThroughput(b, c, 32<<10)
	})
}
