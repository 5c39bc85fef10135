package mps_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// End-to-end tests: the real server with the certificate authority from
// vault, over real TLS on 127.0.0.1, against simulated AMT devices.

const (
	ciraUser = "cira"
	ciraPass = "Cira-P@ss1"
	amtPass  = "Amt-P@ss1"
	echoPort = 7
)

type env struct {
	t     testing.TB
	srv   *mps.Server
	addr  string
	roots *x509.CertPool

	mu     sync.Mutex
	events []mps.Event // every event so far; await takes matches out
	more   chan struct{}
}

func newEnv(t testing.TB, tc tunnel.Config) *env {
	t.Helper()
	return newEnvWith(t, tc, nil)
}

// newEnvWith is newEnv with a change to the server's configuration.
func newEnvWith(t testing.TB, tc tunnel.Config, mod func(*mps.Config)) *env {
	t.Helper()
	ca := vaulttest.CA(t, "127.0.0.1")
	acc := vault.NewAccounts(vault.NewMemory(0))
	if err := acc.Add(context.Background(), vault.KindCIRA, ciraUser, ciraPass); err != nil {
		t.Fatal(err)
	}
	check := acc.CIRAAuthenticator()
	tc.Auth = func(ctx context.Context, _ apf.UUID, user string, pw []byte) bool {
		ok, err := check(ctx, user, pw)
		return ok && err == nil
	}
	cfg := mps.Config{TLS: tunnel.TLSConfig(ca.TLSCertificate(), false), Tunnel: tc}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := mps.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := srv.Subscribe(10000)
	e := &env{t: t, srv: srv, addr: addr.String(), more: make(chan struct{}, 1)}
	go func() {
		for x := range ev { // until Shutdown closes it
			e.mu.Lock()
			e.events = append(e.events, x)
			e.mu.Unlock()
			select {
			case e.more <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	e.roots = x509.NewCertPool()
	e.roots.AddCert(ca.Root())
	return e
}

func (e *env) device(i int, mod func(*amtsim.Config)) amtsim.Config {
	cfg := amtsim.Config{
		UUID: amtsim.DeviceUUID(e.t.Name(), i), Hostname: amtsim.DeviceHostname(i),
		User: ciraUser, Password: []byte(ciraPass), MPSAddr: e.addr, RootCAs: e.roots,
		MaxVersion: tls.VersionTLS12, AMTPassword: []byte(amtPass), EchoPort: echoPort,
	}
	if mod != nil {
		mod(&cfg)
	}
	return cfg
}

// run starts a device in the background; it stops at the end of the test.
// The returned function waits for Run to return and gives its error.
func (e *env) run(cfg amtsim.Config) (*amtsim.Device, func() error) {
	e.t.Helper()
	d, err := amtsim.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var runErr error
	go func() { runErr = d.Run(ctx); close(stopped) }()
	wait := func() error {
		select {
		case <-stopped:
		case <-time.After(20 * time.Second):
			e.t.Error("device did not stop")
		}
		return runErr
	}
	e.t.Cleanup(func() { cancel(); wait() })
	return d, wait
}

// await takes the oldest event matching ok, waiting up to 20 s for it.
func (e *env) await(what string, ok func(mps.Event) bool) mps.Event {
	e.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		e.mu.Lock()
		for i, ev := range e.events {
			if ok(ev) {
				e.events = append(e.events[:i], e.events[i+1:]...)
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.more:
		case <-timeout:
			e.t.Fatalf("no %s event within 20 s", what)
		}
	}
}

func (e *env) connected(d *amtsim.Device) mps.Event {
	e.t.Helper()
	return e.await("connected "+d.UUID().String(), func(ev mps.Event) bool {
		return ev.Kind == mps.EventConnected && ev.Device.UUID == d.UUID().String()
	})
}

func (e *env) disconnected(u apf.UUID) mps.Event {
	e.t.Helper()
	return e.await("disconnected "+u.String(), func(ev mps.Event) bool {
		return ev.Kind == mps.EventDisconnected && ev.Device.UUID == u.String()
	})
}

func (e *env) wsman(d *amtsim.Device) amtsim.WSManResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := amtsim.WSManGet(ctx, func(ctx context.Context) (net.Conn, error) {
		return e.srv.Dial(ctx, d.UUID().String(), amtsim.PortWSMan)
	}, amtsim.DefaultAMTUser, amtPass, amtsim.ResourceGeneralSettings)
	if err != nil {
		e.t.Fatalf("WS-Man through the tunnel of %s: %v", d.UUID(), err)
	}
	return res
}

func TestWSManThroughTunnel(t *testing.T) {
	e := newEnv(t, tunnel.Config{})
	d, _ := e.run(e.device(0, nil))
	ev := e.connected(d)
	if ev.Device.Hostname != "sim-000000" || ev.Device.Info.TLSVersion != "TLS 1.2" || len(ev.Device.Info.Forwards) != 7 {
		t.Fatalf("connected event %+v", ev.Device)
	}
	res := e.wsman(d)
	if res.Status != 200 || res.HostName != "sim-000000" {
		t.Fatalf("WS-Man result status %d host %q", res.Status, res.HostName)
	}
	// By host name and by <guid>.amt, too.
	for _, name := range []string{"SIM-000000", strings.ToUpper(d.UUID().String()) + ".amt", strings.ReplaceAll(d.UUID().String(), "-", "")} {
		c, err := e.srv.Dial(context.Background(), name, amtsim.PortWSMan)
		if err != nil {
			t.Fatalf("Dial(%q): %v", name, err)
		}
		c.Close()
	}
	if _, err := e.srv.Dial(context.Background(), "nosuch", 16992); !errors.Is(err, mps.ErrUnknownDevice) {
		t.Fatalf("Dial unknown: %v", err)
	}
	if _, err := e.srv.Dial(context.Background(), d.UUID().String(), 5900); !errors.Is(err, tunnel.ErrPortNotAnnounced) {
		t.Fatalf("Dial unannounced port: %v", err)
	}
}

// TestEcho10MB sends 10 MB of random data through one channel with small
// windows on both sides and checks it comes back intact.
func TestEcho10MB(t *testing.T) {
	e := newEnv(t, tunnel.Config{Window: 8 << 10})
	d, _ := e.run(e.device(0, func(c *amtsim.Config) { c.Window = 4 << 10 }))
	e.connected(d)
	c, err := e.srv.Dial(context.Background(), d.UUID().String(), echoPort)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 10<<20)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() { _, err := c.Write(data); werr <- err }()
	got := make([]byte, len(data))
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echoed data differs")
	}
}

func TestConcurrentChannels(t *testing.T) {
	e := newEnv(t, tunnel.Config{})
	d, _ := e.run(e.device(0, func(c *amtsim.Config) { c.MaxChannels = 48 }))
	e.connected(d)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Add(2)
		go func() { // an echo channel
			defer wg.Done()
			c, err := e.srv.Dial(context.Background(), d.UUID().String(), echoPort)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := bytes.Repeat([]byte{byte(i)}, 100000+i)
			go c.Write(msg)
			got := make([]byte, len(msg))
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("channel %d: echo mismatch or %v", i, err)
			}
		}()
		go func() { // and a WS-Man request, at the same time
			defer wg.Done()
			if res := e.wsman(d); res.HostName != "sim-000000" {
				errs <- fmt.Errorf("WS-Man host %q", res.HostName)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDuplicateUUIDNewestWins(t *testing.T) {
	e := newEnv(t, tunnel.Config{})
	cfg := e.device(0, nil)
	first, firstDone := e.run(cfg)
	e.connected(first)
	cfg.Hostname = "second"
	second, _ := e.run(cfg)
	ev := e.disconnected(cfg.UUID)
	if ev.Reason != "replaced" || ev.Device.Hostname != "sim-000000" {
		t.Fatalf("old tunnel ended with %q (%s); want replaced", ev.Reason, ev.Device.Hostname)
	}
	var de *amtsim.DisconnectError
	if err := firstDone(); !errors.As(err, &de) || de.Reason != apf.DisconnectByApplication {
		t.Fatalf("first device ended with %v; want DISCONNECT(by application)", err)
	}
	e.connected(second)
	if devs := e.srv.Devices(); len(devs) != 1 || devs[0].Hostname != "second" {
		t.Fatalf("Devices() = %+v; want only the second connection", devs)
	}
}

// The fleet hears of every tunnel that comes up and ends, each with its
// own number, and can close one exact tunnel as moved; a number that is
// not the device's tunnel now closes nothing.
func TestTunnelsHookAndCloseTunnel(t *testing.T) {
	type note struct {
		up   bool
		d    mps.Device
		conn uint64
	}
	notes := make(chan note, 16)
	e := newEnvWith(t, tunnel.Config{}, func(c *mps.Config) {
		c.Tunnels = func(up bool, d mps.Device, conn uint64) {
			select { // the hook must never block a tunnel
			case notes <- note{up, d, conn}:
			default:
				t.Errorf("more tunnel notes than expected: %v %s %d", up, d.UUID, conn)
			}
		}
	})
	cfg := e.device(0, nil)
	d, _ := e.run(cfg)
	e.connected(d)
	up := <-notes
	if !up.up || up.d.UUID != cfg.UUID.String() || up.d.Hostname != "sim-000000" || up.conn == 0 {
		t.Fatalf("up: %+v", up)
	}
	if e.srv.CloseTunnel(cfg.UUID.String(), up.conn+1, tunnel.ReasonMoved, "on inst-b") {
		t.Fatal("closed a tunnel by a number that is not its own")
	}
	if !e.srv.CloseTunnel(strings.ToUpper(cfg.UUID.String()), up.conn, tunnel.ReasonMoved, "a newer connection is on inst-b") {
		t.Fatal("CloseTunnel did not find the tunnel")
	}
	ev := e.disconnected(cfg.UUID)
	if ev.Reason != "moved" || !strings.Contains(ev.Detail, "inst-b") {
		t.Fatalf("ended with %q (%s); want moved, naming the instance", ev.Reason, ev.Detail)
	}
	if down := <-notes; down.up || down.conn != up.conn {
		t.Fatalf("down: %+v; want the end of tunnel %d", down, up.conn)
	}
	// The device's next connection is a new tunnel, with a new number.
	again, _ := e.run(cfg)
	e.connected(again)
	if n := <-notes; !n.up || n.conn <= up.conn {
		t.Fatalf("reconnected: %+v", n)
	}
}

// TestFaultsLeaveOthersUntouched runs every fault mode next to healthy
// devices and checks each fault's outcome while the healthy tunnels keep
// working and never drop.
func TestFaultsLeaveOthersUntouched(t *testing.T) {
	e := newEnv(t, tunnel.Config{IdleTimeout: 2500 * time.Millisecond, KeepaliveInterval: time.Second,
		HandshakeTimeout: 3 * time.Second})
	var healthy []*amtsim.Device
	for i := range 3 {
		d, _ := e.run(e.device(i, nil))
		healthy = append(healthy, d)
	}
	for _, d := range healthy {
		e.connected(d)
	}

	wrong, wrongDone := e.run(e.device(10, func(c *amtsim.Config) {
		c.Fault, c.Password = amtsim.FaultWrongPassword, []byte("not-the-password")
	}))
	garbage, garbageDone := e.run(e.device(11, func(c *amtsim.Config) { c.Fault = amtsim.FaultGarbage; c.GarbageAfterVersion = true }))
	trickle, _ := e.run(e.device(12, func(c *amtsim.Config) { c.Fault, c.TrickleGap = amtsim.FaultTrickle, 0 }))
	silent, _ := e.run(e.device(13, func(c *amtsim.Config) { c.Fault = amtsim.FaultSilent; c.KeepaliveMisses = -1 }))
	drop, _ := e.run(e.device(14, func(c *amtsim.Config) { c.Fault, c.Hold = amtsim.FaultDropAfter, 200*time.Millisecond }))
	loop, _ := e.run(e.device(15, func(c *amtsim.Config) { c.Fault = amtsim.FaultReconnectLoop }))

	ev := e.await("auth failure", func(ev mps.Event) bool { return ev.Kind == mps.EventAuthFailed })
	if ev.User != ciraUser || ev.Device.UUID != wrong.UUID().String() {
		t.Errorf("auth failure event %+v", ev)
	}
	if err := wrongDone(); !errors.Is(err, amtsim.ErrAuthFailed) {
		t.Errorf("wrong password device: %v; want ErrAuthFailed", err)
	}
	var de *amtsim.DisconnectError
	if err := garbageDone(); !errors.As(err, &de) || de.Reason != apf.DisconnectProtocolError {
		t.Errorf("garbage device: %v; want DISCONNECT(protocol error)", err)
	}
	_ = garbage
	e.connected(trickle)
	if ev := e.disconnected(silent.UUID()); ev.Reason != "idle-timeout" {
		t.Errorf("silent device ended with %q; want idle-timeout", ev.Reason)
	}
	if ev := e.disconnected(drop.UUID()); ev.Reason != "device-closed" {
		t.Errorf("dropping device ended with %q; want device-closed", ev.Reason)
	}
	for loop.Stats().Handshakes < 3 {
		e.disconnected(loop.UUID())
	}

	// The healthy devices answered throughout and never dropped.
	e.mu.Lock()
	for _, ev := range e.events {
		for _, d := range healthy {
			if ev.Kind == mps.EventDisconnected && ev.Device.UUID == d.UUID().String() {
				t.Errorf("healthy device %s dropped: %s %s", d.Hostname(), ev.Reason, ev.Detail)
			}
		}
	}
	e.mu.Unlock()
	for _, d := range healthy {
		if res := e.wsman(d); res.HostName != d.Hostname() {
			t.Errorf("WS-Man on %s: host %q", d.Hostname(), res.HostName)
		}
		if st := d.Stats(); st.Handshakes != 1 || st.State != amtsim.StateConnected || st.KeepalivesAnswered == 0 {
			t.Errorf("healthy device %s: %+v", d.Hostname(), st)
		}
	}
	st := e.srv.Stats()
	if st.Failures["auth-failed"] != 1 || st.Failures["protocol-error"] != 1 {
		t.Errorf("failure counters %v", st.Failures)
	}
}

// TestShutdownLeavesNoGoroutine connects devices, opens a channel, shuts the
// server down and checks every device saw DISCONNECT and no goroutine is left.
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	ca := vaulttest.CA(t, "127.0.0.1")
	srv, err := mps.New(mps.Config{TLS: tunnel.TLSConfig(ca.TLSCertificate(), false),
		Tunnel: tunnel.Config{Auth: func(context.Context, apf.UUID, string, []byte) bool { return true }}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	events, _ := srv.Subscribe(100)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	fleet, err := amtsim.NewFleet(amtsim.FleetConfig{Devices: 10, Seed: t.Name(), NoRetry: true,
		Device: amtsim.Config{MPSAddr: addr.String(), RootCAs: roots, User: "u", Password: []byte("p"), EchoPort: echoPort}})
	if err != nil {
		t.Fatal(err)
	}
	fleetDone := make(chan amtsim.Summary, 1)
	go func() { fleetDone <- fleet.Run(context.Background()) }()
	for up := 0; up < 10; {
		if ev := <-events; ev.Kind == mps.EventConnected {
			up++
		}
	}
	c, err := srv.Dial(context.Background(), fleet.Devices()[0].UUID().String(), echoPort)
	if err != nil {
		t.Fatal(err)
	}
	// A raw connection stuck before its TLS handshake is closed too.
	stuck, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, tunnel.ErrClosed) {
		t.Fatalf("channel Write after Shutdown: %v", err)
	}
	sum := <-fleetDone
	if sum.Ended["disconnect: by application"] != 10 {
		t.Fatalf("devices ended with %v; want 10 DISCONNECT(by application)", sum.Ended)
	}
	n := 0
	for range events { // closed by Shutdown
		n++
	}
	if st := srv.Stats(); st.Tunnels != 0 || st.Handshakes != 0 {
		t.Fatalf("after Shutdown: %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Shutdown, %d before:\n%s", g, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestManyDevices connects a few hundred devices at once (the 1,000- and
// 19,000-tunnel figures come from the load run in README).
func TestManyDevices(t *testing.T) {
	const n = 300
	e := newEnv(t, tunnel.Config{})
	fleet, err := amtsim.NewFleet(amtsim.FleetConfig{Devices: n, Seed: t.Name(),
		Device: e.device(0, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan amtsim.Summary, 1)
	go func() { done <- fleet.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for up := 0; up < n; {
		if e.await("connected", func(ev mps.Event) bool { return ev.Kind == mps.EventConnected }).Kind == mps.EventConnected {
			up++
		}
	}
	if got := len(e.srv.Devices()); got != n {
		t.Fatalf("%d devices registered; want %d", got, n)
	}
	if sum := fleet.Summary(); sum.ConnectedNow != n || len(sum.Failed) != 0 {
		t.Fatalf("fleet summary %+v", sum)
	}
}
