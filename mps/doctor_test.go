package mps_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/doctor"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// awaitEntry waits (up to 20 s, woken by the doctor's updates) for an entry
// of class for device ("" for one keyed by the remote host) whose count
// has reached n more than in base.
func awaitEntry(t *testing.T, d *doctor.Doctor, class doctor.Class, device string, n uint64, base map[string]uint64) doctor.Entry {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		upd := d.Updated()
		for _, e := range d.Report(time.Time{}, "") {
			if e.Class == class && e.Device == device && e.Count >= base[entryKey(e)]+n {
				return e
			}
		}
		select {
		case <-upd:
		case <-timeout:
			t.Fatalf("no %s finding for %q within 20 s; report: %+v", class, device, d.Report(time.Time{}, ""))
		}
	}
}

// fleetUp runs n healthy devices (the test's fleet, numbered from 0) and
// waits until the server has reported each connected. stop ends them and
// waits for the fleet to wind down.
func (e *env) fleetUp(n int) (*amtsim.Fleet, func()) {
	e.t.Helper()
	fleet, err := amtsim.NewFleet(amtsim.FleetConfig{Devices: n, Seed: e.t.Name(), Device: e.device(0, nil)})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fleet.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	for range n {
		e.await("connected", func(ev mps.Event) bool { return ev.Kind == mps.EventConnected })
	}
	return fleet, stop
}

func entryKey(e doctor.Entry) string { return string(e.Class) + "|" + e.Device + "|" + e.Remote }

// dialFrom makes a device connect from a given loopback address, as two
// machines would.
func dialFrom(ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.DialContext
}

// TestDoctorFindsEachFaultBesideHealthyFleet runs 300 healthy devices and,
// beside them, devices that each do one thing wrong, and checks that the
// doctor names and counts each, while every healthy device stays up.
func TestDoctorFindsEachFaultBesideHealthyFleet(t *testing.T) {
	const healthy = 300
	// A 2 s keepalive: a device is suspect after 3 s of silence, which
	// leaves a healthy device 1 s of slack under the race detector on a
	// loaded machine (with 1 s, one of 300 was once 0.5 s late in CI).
	const interval = 2 * time.Second
	e := newEnvWith(t, tunnel.Config{KeepaliveInterval: interval, IdleTimeout: 3 * interval, HandshakeTimeout: 5 * time.Second,
		UserExists: func(_ context.Context, user string) bool { return user == ciraUser }}, nil)
	doc := e.srv.Doctor()

	fleet, stop := e.fleetUp(healthy)
	defer stop()
	healthyIDs := map[string]bool{}
	for _, d := range fleet.Devices() {
		healthyIDs[d.UUID().String()] = true
	}
	// Whatever the connection storm left (nothing, normally) is the base.
	base := map[string]uint64{}
	for _, x := range doc.Report(time.Time{}, "") {
		base[entryKey(x)] = x.Count
	}

	// The faulty devices are numbered from 1000: the fleet's take 0–299.
	legacy := func(i int) amtsim.Config {
		return e.device(i, func(c *amtsim.Config) {
			c.MinVersion, c.MaxVersion, c.CipherSuites = tls.VersionTLS10, tls.VersionTLS10, []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}
		})
	}
	// 1. TLS 1.0 only, no legacy list: refused in TLS, found by its hello.
	old := legacy(1020)
	_, done := e.run(old)
	if err := done(); err == nil {
		t.Fatal("a TLS 1.0 device connected to a modern listener")
	}
	x := awaitEntry(t, doc, doctor.LegacyTLS, "", 1, base)
	if !strings.Contains(x.TLS, "TLS 1.0") || !strings.Contains(x.Detail, "only TLS 1.0") || !strings.Contains(x.Fix, "legacy TLS") || x.Remote == "" {
		t.Errorf("legacy TLS entry %+v", x)
	}
	// … allowed by GUID, it connects; another TLS 1.0 device does not.
	if err := e.srv.SetLegacyDevices([]string{strings.ToUpper(old.UUID.String())}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SetLegacyDevices([]string{"not-a-guid"}); err == nil || len(e.srv.LegacyDevices()) != 1 {
		t.Errorf("a bad GUID: %v, list %v", err, e.srv.LegacyDevices())
	}
	allowed, _ := e.run(old)
	e.connected(allowed)
	if ls := e.srv.LegacySessions(); len(ls) != 1 || ls[0].UUID != old.UUID.String() || ls[0].Info.TLSVersion != "TLS 1.0" {
		t.Errorf("legacy sessions %+v", ls)
	}
	other := legacy(1021)
	_, otherDone := e.run(other)
	var de *amtsim.DisconnectError
	if err := otherDone(); !errors.As(err, &de) || de.Reason != apf.DisconnectHostNotAllowed {
		t.Errorf("TLS 1.0 device not on the list: %v; want DISCONNECT(host not allowed)", err)
	}
	x = awaitEntry(t, doc, doctor.LegacyTLS, other.UUID.String(), 1, base)
	if !strings.Contains(x.Fix, "Allow legacy TLS for device "+other.UUID.String()) {
		t.Errorf("legacy refusal fix %q", x.Fix)
	}

	// 2. A device that trusts another root.
	stranger := x509.NewCertPool()
	stranger.AddCert(vaulttest.CA(t, "127.0.0.1").Root())
	_, done = e.run(e.device(1022, func(c *amtsim.Config) { c.RootCAs = stranger }))
	done()
	x = awaitEntry(t, doc, doctor.CertRejected, "", 1, base)
	if !strings.Contains(x.Detail, "alert") || !strings.Contains(x.Fix, "presence enrol") {
		t.Errorf("certificate entry %+v", x)
	}

	// 3. Wrong password, 4. unknown user.
	wrong := e.device(1023, func(c *amtsim.Config) { c.Fault, c.Password = amtsim.FaultWrongPassword, []byte("not-the-password") })
	_, done = e.run(wrong)
	done()
	x = awaitEntry(t, doc, doctor.WrongPassword, wrong.UUID.String(), 1, base)
	if x.User != ciraUser || strings.Contains(x.Fix+x.Detail, "not-the-password") {
		t.Errorf("wrong password entry %+v", x)
	}
	nobody := e.device(1024, func(c *amtsim.Config) { c.User = "nobody" })
	_, done = e.run(nobody)
	done()
	if x = awaitEntry(t, doc, doctor.UnknownUser, nobody.UUID.String(), 1, base); x.User != "nobody" {
		t.Errorf("unknown user entry %+v", x)
	}

	// 5. Two machines with one UUID, at 127.0.0.2 and 127.0.0.3.
	first, _ := e.run(e.device(1025, func(c *amtsim.Config) { c.Dial = dialFrom("127.0.0.2") }))
	e.connected(first)
	second, _ := e.run(e.device(1025, func(c *amtsim.Config) { c.Dial = dialFrom("127.0.0.3") }))
	if ev := e.disconnected(first.UUID()); ev.Reason != "replaced" {
		t.Errorf("first of the pair ended with %q", ev.Reason)
	}
	e.connected(second)
	x = awaitEntry(t, doc, doctor.DuplicateUUID, first.UUID().String(), 1, base)
	if !strings.Contains(x.Detail, "127.0.0.2") || !strings.Contains(x.Detail, "127.0.0.3") || !strings.Contains(x.Fix, "OEM UUID") {
		t.Errorf("duplicate entry %+v", x)
	}

	// 6. Silent: suspect first, dropped at the idle timeout.
	silent, _ := e.run(e.device(1026, func(c *amtsim.Config) { c.Fault = amtsim.FaultSilent; c.KeepaliveMisses = -1 }))
	e.connected(silent)
	ev := e.await("suspect", func(ev mps.Event) bool {
		return ev.Kind == mps.EventSuspect && ev.Device.UUID == silent.UUID().String()
	})
	if !ev.Device.Suspect || ev.Device.Silent < interval*3/2 || ev.Device.Silent > 3*interval {
		t.Errorf("suspect event %+v", ev.Device)
	}
	if d, ok := e.srv.Device(silent.UUID().String()); ok && !d.Suspect {
		t.Errorf("silent device not suspect in Device: %+v", d)
	}
	if ev := e.disconnected(silent.UUID()); ev.Reason != "idle-timeout" {
		t.Errorf("silent device ended with %q", ev.Reason)
	}
	awaitEntry(t, doc, doctor.KeepaliveMissed, silent.UUID().String(), 1, base)

	// 7. Trickling: the handshake's bytes come 40 ms apart, so that its
	// PROTOCOL_VERSION (93 bytes) arrives within the 5 s handshake time and
	// its USERAUTH_REQUEST does not.
	trickle := e.device(1027, func(c *amtsim.Config) { c.Fault, c.TrickleGap = amtsim.FaultTrickle, 40*time.Millisecond })
	_, trickleDone := e.run(trickle)
	// 8. Garbage after PROTOCOL_VERSION.
	garbage := e.device(1028, func(c *amtsim.Config) { c.Fault = amtsim.FaultGarbage; c.GarbageAfterVersion = true })
	_, done = e.run(garbage)
	done()
	awaitEntry(t, doc, doctor.ProtocolError, garbage.UUID.String(), 1, base)
	trickleDone()
	awaitEntry(t, doc, doctor.Trickling, trickle.UUID.String(), 1, base)

	// Each fault was counted once, under its own class; the healthy
	// devices have no finding and are all still up.
	want := map[doctor.Class]uint64{doctor.LegacyTLS: 2, doctor.CertRejected: 1, doctor.WrongPassword: 1, doctor.UnknownUser: 1,
		doctor.DuplicateUUID: 1, doctor.KeepaliveMissed: 1, doctor.Trickling: 1, doctor.ProtocolError: 1}
	got := map[doctor.Class]uint64{}
	for _, x := range doc.Report(time.Time{}, "") {
		if healthyIDs[x.Device] {
			t.Errorf("a healthy device has a finding: %+v", x)
		}
		if x.Fix == "" {
			t.Errorf("no fix: %+v", x)
		}
		got[x.Class] += x.Count - base[entryKey(x)]
	}
	for c, n := range want {
		if got[c] != n {
			t.Errorf("%s counted %d times; want %d (all: %v)", c, got[c], n, got)
		}
	}
	if n := got[doctor.HandshakeTimeout] + got[doctor.TLSFailed] + got[doctor.ClosedEarly]; n != 0 {
		t.Errorf("unexpected findings: %v", got)
	}
	if one := doc.Report(time.Time{}, strings.ToUpper(wrong.UUID.String())); len(one) != 1 || one[0].Class != doctor.WrongPassword {
		t.Errorf("report of one device: %+v", one)
	}
	if sum := fleet.Summary(); sum.ConnectedNow != healthy {
		t.Errorf("%d of %d healthy devices connected at the end: %+v", sum.ConnectedNow, healthy, sum)
	}
	e.mu.Lock()
	for _, ev := range e.events {
		if healthyIDs[ev.Device.UUID] && (ev.Kind == mps.EventDisconnected || ev.Kind == mps.EventSuspect) {
			t.Errorf("healthy device %s: %s %s %s", ev.Device.UUID, ev.Kind, ev.Reason, ev.Detail)
		}
	}
	e.mu.Unlock()
}

// pausedConn is a device's connection whose writes can be held back: a
// device that loses its network for a while and then comes back.
type pausedConn struct {
	net.Conn
	mu sync.RWMutex // held for writing while paused
}

func (c *pausedConn) Write(b []byte) (int, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.Conn.Write(b)
}

// TestSuspectThenResumed: a device whose keepalives stop is suspect after
// one interval and a half; when they come again it is resumed, and only
// it: the devices beside it are never suspect.
func TestSuspectThenResumed(t *testing.T) {
	e := newEnvWith(t, tunnel.Config{KeepaliveInterval: time.Second, IdleTimeout: 20 * time.Second}, nil)
	var (
		pc     *pausedConn
		once   sync.Once
		dialed = make(chan struct{})
	)
	quiet, _ := e.run(e.device(0, func(c *amtsim.Config) {
		c.KeepaliveMisses = -1
		c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			p := &pausedConn{Conn: conn}
			once.Do(func() { pc = p; close(dialed) }) // the test holds back the first connection only
			return p, nil
		}
	}))
	<-dialed
	e.connected(quiet)
	for i := 1; i <= 3; i++ {
		d, _ := e.run(e.device(i, nil))
		e.connected(d)
	}
	is := func(kind mps.EventKind) func(mps.Event) bool {
		return func(ev mps.Event) bool { return ev.Kind == kind && ev.Device.UUID == quiet.UUID().String() }
	}

	pc.mu.Lock()
	ev := e.await("suspect", is(mps.EventSuspect))
	if ev.Device.Silent < 1500*time.Millisecond {
		t.Errorf("suspect after %s of silence; want at least 1.5 s", ev.Device.Silent)
	}
	if d, ok := e.srv.Device(quiet.UUID().String()); !ok || !d.Suspect {
		t.Errorf("while silent: %+v, %v; want suspect", d, ok)
	}
	pc.mu.Unlock()
	e.await("resumed", is(mps.EventResumed))
	if d, ok := e.srv.Device(quiet.UUID().String()); !ok || d.Suspect {
		t.Errorf("after it came back: %+v, %v; want connected, not suspect", d, ok)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.events {
		if ev.Kind == mps.EventDisconnected || (ev.Kind == mps.EventSuspect && ev.Device.UUID != quiet.UUID().String()) {
			t.Errorf("event %s %s %s", ev.Kind, ev.Device.UUID, ev.Reason)
		}
	}
}

// TestMemoryReturnedAfterDevicesLeave: when 300 devices leave at once,
// the server gives their memory back to the system at its next sweep,
// once; a few tunnels coming and going do not make it collect.
func TestMemoryReturnedAfterDevicesLeave(t *testing.T) {
	const n = 300
	e := newEnvWith(t, tunnel.Config{KeepaliveInterval: time.Second, IdleTimeout: 5 * time.Second}, nil)
	few, _ := e.run(e.device(n, nil))
	e.connected(few)
	_, stop := e.fleetUp(n)
	defer stop()            // a second call returns at once
	time.Sleep(time.Second) // four sweeps with every tunnel up
	if st := e.srv.Stats(); st.MemoryReturns != 0 || st.Tunnels != n+1 {
		t.Fatalf("with the devices up: %+v; want %d tunnels and no memory return", st, n+1)
	}
	stop()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := e.srv.Stats()
		if st.Tunnels == 1 && st.MemoryReturns == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the devices left: %+v; want 1 tunnel and one memory return", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if st := e.srv.Stats(); st.MemoryReturns != 1 {
		t.Errorf("memory returned %d times; want once", st.MemoryReturns)
	}
}

// TestQueuedDevicesWaitTheirTurn: with one handshake slot taken in turn by
// three devices that trickle until the 1 s handshake timeout, healthy
// devices queued behind them wait about 3 s, three times the timeout,
// and all come up, none reset.
func TestQueuedDevicesWaitTheirTurn(t *testing.T) {
	e := newEnvWith(t, tunnel.Config{HandshakeTimeout: time.Second}, func(c *mps.Config) { c.MaxHandshakes = 1 })
	for i := range 3 {
		e.run(e.device(100+i, func(c *amtsim.Config) {
			c.Fault, c.TrickleGap = amtsim.FaultTrickle, 200*time.Millisecond
		}))
		deadline := time.Now().Add(10 * time.Second)
		for e.srv.Stats().Handshakes < i+1 { // queued in this order
			if time.Now().After(deadline) {
				t.Fatalf("trickling device %d not accepted", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	start := time.Now()
	for i := range 5 {
		d, _ := e.run(e.device(i, nil))
		defer func() {
			if st := d.Stats(); st.Handshakes != 1 {
				t.Errorf("healthy device %d: %+v; want one handshake", i, st)
			}
		}()
	}
	for range 5 {
		e.await("connected", func(ev mps.Event) bool { return ev.Kind == mps.EventConnected })
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Errorf("the healthy devices were up after %s; the tricklers should have held the slot for about 3 s", waited)
	}
	if st := e.srv.Stats(); st.Tunnels != 5 {
		t.Errorf("%+v; want the 5 healthy devices up", st)
	}
}
