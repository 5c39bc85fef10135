package instance_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/fleet/etcdtest"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/vault"
)

// startPeer starts an instance named id that is one of root's fleet,
// linking to the peer listeners in peers.
func startPeer(t testing.TB, root *fleettest.Root, id string, peers ...string) (*instance.Instance, *vault.CA) {
	t.Helper()
	return startPeerWith(t, root, id, nil, peers...)
}

// startPeerWith is startPeer with mod, if not nil, changing the
// configuration last.
func startPeerWith(t testing.TB, root *fleettest.Root, id string, mod func(*instance.Config), peers ...string) (*instance.Instance, *vault.CA) {
	t.Helper()
	stls, ctls := root.TLS(root.Peer(t, id))
	return instancetest.Start(t, func(c *instance.Config) {
		c.InstanceID = id
		c.Fleet = &instance.FleetConfig{PeerAddr: "127.0.0.1:0", Peers: peers, ServerTLS: stls, ClientTLS: ctls,
			PeerID: fleettest.PeerID, Name: id}
		if mod != nil {
			mod(c)
		}
	})
}

// runDevice connects a simulated device with uuid to the instance in,
// whose CA is ca, until the test ends.
func runDevice(t testing.TB, in *instance.Instance, ca *vault.CA, n int, host string) *amtsim.Device {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	d, err := amtsim.New(amtsim.Config{
		UUID: amtsim.DeviceUUID("fleet", n), Hostname: host,
		User: instancetest.CIRAUser, Password: []byte(instancetest.CIRAPass), MPSAddr: in.CIRAAddr.String(), RootCAs: roots,
		MaxVersion: tls.VersionTLS12, AMTUser: instancetest.AMTUser, AMTPassword: []byte(instancetest.AMTPass), EchoPort: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two instances of one fleet on loopback: a console on A reaches a device
// whose tunnel is on B, by host name, through A's SOCKS5 proxy (Go's
// x/net/proxy), with WS-Man digest answered by that device; both
// instances record the session, B's marked as coming through A. When the
// device then connects to A, the newest connection wins: B closes its
// tunnel as moved.
func TestFleetConsoleReachesPeersDevice(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	b, caB := startPeer(t, root, "inst-b")
	a, caA := startPeer(t, root, "inst-a", b.PeerAddr.String())
	b.Fleet().Add(a.PeerAddr.String())

	d := runDevice(t, b, caB, 0, "laptop-0")
	guid := d.UUID().String()
	waitUntil(t, "A to learn B's device", func() bool { o, ok := a.Fleet().Lookup(guid); return ok && o.Instance == "inst-b" })

	socks, err := xproxy.SOCKS5("tcp", a.ProxyAddr.String(), &xproxy.Auth{User: instancetest.ConsoleUser, Password: instancetest.ConsolePass}, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	dialer := socks.(xproxy.ContextDialer)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := amtsim.WSManGet(ctx, func(ctx context.Context) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", "laptop-0:16992")
	}, instancetest.AMTUser, instancetest.AMTPass, amtsim.ResourceGeneralSettings)
	if err != nil || res.Status != 200 || res.HostName != "laptop-0" {
		t.Fatalf("WS-Man through A to B's device: %+v, %v", res, err)
	}

	// A held-open session is on both instances' tables.
	c, err := dialer.DialContext(ctx, "tcp", guid+":7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the hop: %q, %v", buf, err)
	}
	find := func(in *instance.Instance, kind string) (proxy.SessionInfo, bool) {
		for _, s := range in.Sessions().List() {
			if s.Kind == kind && s.Port == 7 {
				return s, true
			}
		}
		return proxy.SessionInfo{}, false
	}
	if s, ok := find(a, proxy.KindSOCKS5); !ok || s.User != instancetest.ConsoleUser || s.Device != guid {
		t.Fatalf("A's session: %+v (%v)", s, ok)
	}
	if s, ok := find(b, proxy.KindFleet); !ok || s.User != instancetest.ConsoleUser || s.Via != "inst-a" || s.Device != guid {
		t.Fatalf("B's session: %+v (%v)", s, ok)
	}
	c.Close()

	// The same device now connects to A: the newest connection wins.
	events, stop := b.Server.Subscribe(64)
	defer stop()
	runDevice(t, a, caA, 0, "laptop-0")
	deadline := time.After(20 * time.Second)
	for moved := false; !moved; {
		select {
		case ev := <-events:
			moved = ev.Kind == mps.EventDisconnected && ev.Device.UUID == guid && ev.Reason == "moved"
		case <-deadline:
			t.Fatal("B did not close its tunnel as moved")
		}
	}
	waitUntil(t, "B to see the device on A", func() bool { o, ok := b.Fleet().Lookup(guid); return ok && o.Instance == "inst-a" })
}

// Two instances that know only a real etcd (Debian's, throwaway, on
// loopback), no --peer: each finds the other's peer listener in etcd's
// member list, and a console on A reaches a device on B by its GUID.
func TestFleetThroughEtcd(t *testing.T) {
	etcd := etcdtest.Start(t)
	root := fleettest.NewRoot(t, "fleet")
	start := func(id string) (*instance.Instance, *vault.CA) {
		stls, ctls := root.TLS(root.Peer(t, id))
		return instancetest.Start(t, func(c *instance.Config) {
			c.InstanceID = id
			c.Fleet = &instance.FleetConfig{PeerAddr: "127.0.0.1:0", ServerTLS: stls, ClientTLS: ctls,
				PeerID: fleettest.PeerID, Name: id, Etcd: []string{etcd.Endpoint()}, EtcdPrefix: "/t/", EtcdTTL: 2 * time.Second}
		})
	}
	a, _ := start("inst-a")
	b, caB := start("inst-b")
	d := runDevice(t, b, caB, 0, "laptop-e")
	guid := d.UUID().String()
	waitUntil(t, "A to link to B through etcd's member list", func() bool {
		for _, l := range a.Fleet().Links() {
			if l.Up && l.Member.ID == "inst-b" {
				return true
			}
		}
		return false
	})
	socks, err := xproxy.SOCKS5("tcp", a.ProxyAddr.String(), &xproxy.Auth{User: instancetest.ConsoleUser, Password: instancetest.ConsolePass}, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	var c net.Conn
	waitUntil(t, "a console on A to reach B's device", func() bool {
		c, err = socks.(xproxy.ContextDialer).DialContext(context.Background(), "tcp", guid+":7")
		return err == nil
	})
	c.Write([]byte("etcd"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "etcd" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	c.Close()
	if configured, connected, _, err := a.EtcdStatus(); !configured || !connected || err != nil {
		t.Fatalf("A's etcd status: %v %v %v", configured, connected, err)
	}
	// While etcd is down, A says so, and still serves its own devices
	// and reaches B's through the link.
	etcd.Stop()
	waitUntil(t, "A to notice etcd is gone", func() bool { _, connected, _, _ := a.EtcdStatus(); return !connected })
	c, err = socks.(xproxy.ContextDialer).DialContext(context.Background(), "tcp", guid+":7")
	if err != nil {
		t.Fatalf("B's device through A without etcd: %v", err)
	}
	c.Close()
	etcd.Restart()
	waitUntil(t, "A to see etcd again", func() bool { _, connected, _, _ := a.EtcdStatus(); return connected })
}

// A console account added on A, and one removed there, reach B within
// seconds: B stores them in its own vault, and a console logs in to B's
// proxy with the new account. An AMT account stays where it was added.
func TestFleetAccountsReachPeers(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	b, _ := startPeer(t, root, "inst-b")
	a, _ := startPeer(t, root, "inst-a", b.PeerAddr.String())
	ctx := context.Background()
	waitUntil(t, "the link", func() bool { l := a.Fleet().Links(); return len(l) == 1 && l[0].Up })
	start := time.Now()
	if err := a.Accounts().Add(ctx, vault.KindConsole, "bob", "Bob-P4ssword"); err != nil {
		t.Fatal(err)
	}
	if err := a.Accounts().Add(ctx, vault.KindAMT, "local-amt", "Amt-Only-Here1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bob on B", func() bool {
		ok, _ := b.Accounts().Verify(ctx, vault.KindConsole, "bob", []byte("Bob-P4ssword"))
		return ok
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the account took %v to reach B; want within 5 s", took)
	}
	socks, err := xproxy.SOCKS5("tcp", b.ProxyAddr.String(), &xproxy.Auth{User: "bob", Password: "Bob-P4ssword"}, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	// B's proxy takes bob's login (the device does not exist: the refusal
	// after the login says so, a failed login would be another).
	_, err = socks.(xproxy.ContextDialer).DialContext(ctx, "tcp", "no-such-device:16992")
	if err == nil || strings.Contains(err.Error(), "authentication") || strings.Contains(err.Error(), "username/password") {
		t.Fatalf("bob's login on B: %v", err)
	}
	if names, _ := b.Accounts().List(ctx, vault.KindAMT); slices.Contains(names, "local-amt") {
		t.Fatal("an AMT account travelled to the peer")
	}
	// A changed password (the same names) travels too, within the
	// passwords' read interval (10 s).
	if err := a.Accounts().Add(ctx, vault.KindConsole, "bob", "Bob-N3w-Password"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bob's new password on B", func() bool {
		ok, _ := b.Accounts().Verify(ctx, vault.KindConsole, "bob", []byte("Bob-N3w-Password"))
		return ok
	})
	if err := a.Accounts().Remove(ctx, vault.KindConsole, "bob"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bob to leave B", func() bool {
		names, _ := b.Accounts().List(ctx, vault.KindConsole)
		return !slices.Contains(names, "bob")
	})
}
