package instance_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps/amtsim"
)

// refused reports whether nothing accepts TCP connections on addr.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// echoThroughProxy sends a line to device i's echo port through the
// SOCKS5 proxy at proxyAddr and checks it comes back.
func echoThroughProxy(t *testing.T, e *env, i int) {
	t.Helper()
	c := echoConn(t, e, "socks5", i)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echo through the proxy: %q, %v", buf, err)
	}
}

// connectedSince returns each device's tunnel start, by GUID.
func connectedSince(e *env) map[string]time.Time {
	m := map[string]time.Time{}
	for _, d := range e.in.Server.Devices() {
		m[d.UUID] = d.Info.ConnectedAt
	}
	return m
}

// dialDevice starts one more simulated device against addr and waits for
// its tunnel.
func dialDevice(t *testing.T, e *env, addr string, n int) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root())
	d, err := amtsim.New(amtsim.Config{
		UUID: amtsim.DeviceUUID(t.Name()+"-late", n), Hostname: "late-" + strconv.Itoa(n),
		User: ciraUser, Password: []byte(ciraPass), MPSAddr: addr, RootCAs: roots, MaxVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	e.waitFor("the new device", func() bool { _, ok := e.in.Server.Device(d.UUID().String()); return ok })
}

func TestApplyMovesListenersWithoutDroppingTunnels(t *testing.T) {
	var mu sync.Mutex
	var ads []instance.Announcement
	withdrawn := 0
	e := newEnv(t, envOptions{devices: 2, cfg: func(c *instance.Config) {
		c.Settings.Keepalive, c.Settings.IdleTimeout = 30*time.Second, 90*time.Second
		c.Settings.MDNS = true
		c.Advertise = func(a instance.Announcement) (func(), error) {
			mu.Lock()
			ads = append(ads, a)
			mu.Unlock()
			return func() { mu.Lock(); withdrawn++; mu.Unlock() }, nil
		}
	}})
	before := connectedSince(e)
	oldCIRA, oldProxy := e.in.CIRAAddr.String(), e.in.ProxyAddr.String()
	s := e.in.Settings()
	if !s.MDNS || s.CIRAAddr != "127.0.0.1:0" {
		t.Fatalf("settings at start: %+v", s)
	}
	s.CIRAAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	s.ProxyAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	s.Keepalive, s.IdleTimeout = 20*time.Second, 60*time.Second
	if err := e.in.Apply(s); err != nil {
		t.Fatal(err)
	}
	l := e.in.Listening()
	if l.CIRA.String() != s.CIRAAddr || l.Proxy.String() != s.ProxyAddr {
		t.Fatalf("listening on %v and %v, want %s and %s", l.CIRA, l.Proxy, s.CIRAAddr, s.ProxyAddr)
	}
	if !refused(oldCIRA) || !refused(oldProxy) {
		t.Fatal("the old listeners still accept")
	}
	// The same tunnels, not reconnected ones.
	after := connectedSince(e)
	for guid, at := range before {
		if !after[guid].Equal(at) {
			t.Fatalf("device %s reconnected (%v, then %v): Apply dropped its tunnel", guid, at, after[guid])
		}
	}
	// Consoles use the new proxy port; devices the new CIRA port.
	e.in.ProxyAddr = l.Proxy // echoConn dials e.proxyAddr()
	echoThroughProxy(t, e, 0)
	dialDevice(t, e, s.CIRAAddr, 0)
	// The advertisement moved with the ports.
	mu.Lock()
	last := ads[len(ads)-1]
	n, w := len(ads), withdrawn
	mu.Unlock()
	if n != 2 || w != 1 || last.ProxyPort != l.Proxy.(*net.TCPAddr).Port || last.CIRAPort != l.CIRA.(*net.TCPAddr).Port {
		t.Fatalf("advertisements %d, withdrawn %d, last %+v", n, w, last)
	}
	// Turning mDNS off withdraws it, and nothing is announced again.
	s.MDNS = false
	if err := e.in.Apply(s); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n, w = len(ads), withdrawn
	mu.Unlock()
	if n != 2 || w != 2 {
		t.Fatalf("after mDNS off: advertisements %d, withdrawn %d", n, w)
	}
}

func TestApplyPortInUseKeepsTheOldListener(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := e.in.Settings()
	s.CIRAAddr = busy.Addr().String()
	if err := e.in.Apply(s); err == nil {
		t.Fatal("Apply onto a port in use succeeded")
	}
	if got := e.in.Listening().CIRA.String(); got != e.in.CIRAAddr.String() || refused(got) {
		t.Fatalf("CIRA listener after the failed Apply: %s", got)
	}
	if e.in.Settings().CIRAAddr == s.CIRAAddr {
		t.Fatal("the failed address was recorded as in force")
	}
	// A new CIRA address with a proxy address in use: neither moves.
	s = e.in.Settings()
	s.CIRAAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	s.ProxyAddr = busy.Addr().String()
	if err := e.in.Apply(s); err == nil {
		t.Fatal("Apply onto a proxy port in use succeeded")
	}
	if l := e.in.Listening(); l.CIRA.String() != e.in.CIRAAddr.String() || l.Proxy.String() != e.in.ProxyAddr.String() || !refused(s.CIRAAddr) || e.in.Settings().CIRAAddr == s.CIRAAddr {
		t.Fatalf("after a failed Apply: listening %+v, settings %+v", l, e.in.Settings())
	}
	s = e.in.Settings()
	s.IdleTimeout = s.Keepalive
	if err := e.in.Apply(s); err == nil {
		t.Fatal("an idle timeout no longer than the keepalive was accepted")
	}
}

func TestApplyLegacyTLS(t *testing.T) {
	e := newEnv(t, envOptions{devices: 0})
	tls11 := func() error {
		c, err := tls.Dial("tcp", e.in.Listening().CIRA.String(), &tls.Config{
			InsecureSkipVerify: true, MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11,
		})
		if err == nil {
			c.Close()
		}
		return err
	}
	if tls11() == nil {
		t.Fatal("TLS 1.1 accepted without legacy TLS")
	}
	s := e.in.Settings()
	s.LegacyTLS = true
	if err := e.in.Apply(s); err != nil {
		t.Fatal(err)
	}
	if err := tls11(); err != nil {
		t.Fatalf("TLS 1.1 refused with legacy TLS on: %v", err)
	}
}

func TestPauseAndResume(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	cira, prx := e.in.CIRAAddr.String(), e.in.ProxyAddr.String()
	e.in.Pause()
	if l := e.in.Listening(); !l.Paused || l.CIRA != nil || l.Proxy != nil {
		t.Fatalf("paused: %+v", l)
	}
	if !refused(cira) || !refused(prx) {
		t.Fatal("a paused listener accepts")
	}
	if n := e.in.Server.Stats().Tunnels; n != 1 {
		t.Fatalf("tunnels while paused: %d, want 1", n)
	}
	if err := e.in.Resume(); err != nil {
		t.Fatal(err)
	}
	if l := e.in.Listening(); l.Paused || l.CIRA.String() != cira || l.Proxy.String() != prx {
		t.Fatalf("resumed on %+v, want %s and %s", l, cira, prx)
	}
	echoThroughProxy(t, e, 0)
	dialDevice(t, e, cira, 1)
}
