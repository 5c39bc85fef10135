package amtsim

// Tests of AMT's MPS order: a primary and a backup, each a real mps.Server
// over TLS on 127.0.0.1 with a certificate for its own name under one root
// and its own CIRA account.

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/tunnel"
)

// site is one MPS of a primary/backup pair: a real server on a loopback
// address it keeps while it stops and starts listening.
type site struct {
	t          *testing.T
	name       string // the name its certificate carries
	user, pass string // the CIRA account it accepts
	srv        *mps.Server
	addr       string
	ln         net.Addr // while listening
	events     <-chan mps.Event
}

// newSite starts a server whose certificate is for certName; it does not
// listen until up.
func newSite(t *testing.T, certName, user, pass string) *site {
	t.Helper()
	s := &site{t: t, name: certName, user: user, pass: pass, addr: freeAddr(t)}
	srv, err := mps.New(mps.Config{
		TLS: tunnel.TLSConfig(getPKI(t).issue(t, certName), false),
		Tunnel: tunnel.Config{
			ForwardSettle: time.Millisecond,
			Auth: func(_ context.Context, _ apf.UUID, u string, pw []byte) bool {
				return subtle.ConstantTimeCompare([]byte(u), []byte(user))&subtle.ConstantTimeCompare(pw, []byte(pass)) == 1
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	s.events, _ = srv.Subscribe(1 << 12)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown %s: %v", certName, err)
		}
	})
	return s
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// entry is the MPS entry a device holds for s, with s's own account.
func (s *site) entry() MPSEntry {
	return MPSEntry{Addr: s.addr, ServerName: s.name, User: s.user, Password: []byte(s.pass)}
}

func (s *site) up() {
	s.t.Helper()
	ln, err := s.srv.Listen(s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.ln = ln
}

// down stops listening and closes every tunnel.
func (s *site) down() {
	s.t.Helper()
	if s.ln != nil && !s.srv.CloseListener(s.ln) {
		s.t.Fatalf("%s was not listening", s.name)
	}
	s.ln = nil
	s.closeTunnels()
}

// closeTunnels closes every tunnel, as an administrator's Disconnect does.
func (s *site) closeTunnels() {
	for _, d := range s.srv.Devices() {
		if err := s.srv.Disconnect(d.UUID); err != nil && !errors.Is(err, mps.ErrUnknownDevice) {
			s.t.Fatal(err)
		}
	}
}

// await waits until every device of ds has connected to s, and checks that
// each reports s's index in its MPS list.
func (s *site) await(index int, ds ...*Device) {
	s.t.Helper()
	want := map[string]bool{}
	for _, d := range ds {
		want[d.UUID().String()] = true
	}
	deadline := time.After(testTimeout)
	for len(want) > 0 {
		select {
		case ev := <-s.events:
			if ev.Kind == mps.EventConnected {
				delete(want, ev.Device.UUID)
			}
		case <-deadline:
			s.t.Fatalf("%d devices never connected to %s", len(want), s.name)
		}
	}
	for _, d := range ds {
		waitConnected(s.t, d) // the device reads the last reply after the server sent it
		if got := d.Stats().MPS; got != index {
			s.t.Fatalf("device %s on MPS entry %d; want %d (%s)", d.UUID(), got, index, s.name)
		}
	}
}

// dialLog records every dial, in order.
type dialLog struct {
	mu    sync.Mutex
	dials []dialed
	more  chan struct{}
}

type dialed struct {
	addr string
	at   time.Time
}

func newDialLog() *dialLog { return &dialLog{more: make(chan struct{}, 1)} }

func (l *dialLog) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	l.mu.Lock()
	l.dials = append(l.dials, dialed{addr, time.Now()})
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (l *dialLog) snapshot() []dialed {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.dials)
}

// waitFor waits until ok holds for the dials so far, and returns them.
func (l *dialLog) waitFor(t *testing.T, what string, ok func([]dialed) bool) []dialed {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		if ds := l.snapshot(); ok(ds) {
			return ds
		}
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("no %s; dials %v", what, l.snapshot())
		}
	}
}

// addrs returns the addresses of ds, named by sites (A, B, ...).
func addrs(ds []dialed, sites ...*site) string {
	var b strings.Builder
	for _, d := range ds {
		name := "?"
		for i, s := range sites {
			if s.addr == d.addr {
				name = string(rune('A' + i))
			}
		}
		b.WriteString(name)
	}
	return b.String()
}

func count(ds []dialed, s *site) int {
	n := 0
	for _, d := range ds {
		if d.addr == s.addr {
			n++
		}
	}
	return n
}

// orderFleet is a fleet with MPS entries a then b and short intervals.
func orderFleet(t *testing.T, n int, log *dialLog, a, b *site) FleetConfig {
	return FleetConfig{
		Device: Config{
			MPS:              []MPSEntry{a.entry(), b.entry()},
			RootCAs:          getPKI(t).roots,
			HandshakeTimeout: testTimeout,
			Dial:             log.dial,
		},
		Devices:       n,
		Seed:          t.Name(),
		RetryMin:      10 * time.Millisecond,
		RetryMax:      50 * time.Millisecond,
		RetryInterval: 200 * time.Millisecond,
	}
}

func runFleet(t *testing.T, cfg FleetConfig) (*Fleet, func() Summary) {
	t.Helper()
	f, err := NewFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan Summary, 1)
	go func() { res <- f.Run(ctx) }()
	stop := sync.OnceValue(func() Summary {
		cancel()
		select {
		case s := <-res:
			return s
		case <-time.After(testTimeout):
			t.Error("Fleet.Run did not return after cancel")
		}
		return Summary{}
	})
	t.Cleanup(func() { stop() })
	return f, stop
}

func wantByMPS(t *testing.T, f *Fleet, connected []int) Summary {
	t.Helper()
	s := f.Summary()
	if !slices.Equal(s.ConnectedByMPS, connected) || s.ConnectedNow != connected[0]+connected[1] {
		t.Fatalf("connected %d by MPS %v; want %v", s.ConnectedNow, s.ConnectedByMPS, connected)
	}
	return s
}

// TestFleetPrimaryAndBackup walks a fleet through a primary's outage and
// return: devices come up on A; with A down they move to B after retrying
// A once; when B closes their tunnels with A up again, they go home to A;
// with both down they pause and start over at A. Neither server knows the
// other's CIRA account, so each entry's own credentials are the ones used.
func TestFleetPrimaryAndBackup(t *testing.T) {
	a := newSite(t, "mps-a.test", "cira-a", "Pass-A-1")
	b := newSite(t, "mps-b.test", "cira-b", "Pass-B-1")
	a.up()
	b.up()
	log := newDialLog()
	cfg := orderFleet(t, 3, log, a, b)
	f, stop := runFleet(t, cfg)
	ds := f.Devices()

	a.await(0, ds...)
	wantByMPS(t, f, []int{3, 0})

	a.down()
	b.await(1, ds...)
	s := wantByMPS(t, f, []int{0, 3})
	if s.Failed["dial"] != 6 || len(s.Failed) != 1 {
		t.Fatalf("failures %v; want A refused twice per device (dial: 6)", s.Failed)
	}

	a.up()
	b.closeTunnels() // "send devices home"
	a.await(0, ds...)
	if s := wantByMPS(t, f, []int{3, 0}); !slices.Equal(s.HandshakesByMPS, []int64{6, 3}) {
		t.Fatalf("handshakes by MPS %v; want [6 3]", s.HandshakesByMPS)
	}

	mark := len(log.snapshot())
	b.down() // first, so that no device leaving A finds B still up
	a.down()
	// Each pass dials A twice per device, so the 7th dial of A belongs to
	// some device's second pass, which follows its first by the pause.
	got := log.waitFor(t, "second pass at A", func(ds []dialed) bool { return count(ds[mark:], a) >= 12 })[mark:]
	var aDials []time.Time
	for _, d := range got {
		if d.addr == a.addr {
			aDials = append(aDials, d.at)
		}
	}
	if gap := aDials[6].Sub(got[0].at); gap < cfg.RetryInterval {
		t.Fatalf("second pass began %v after the first; want at least the %v pause (dials %s)",
			gap, cfg.RetryInterval, addrs(got, a, b))
	}
	a.up()
	a.await(0, ds...)
	wantByMPS(t, f, []int{3, 0})

	final := stop()
	if final.ConnectedNow != 0 || !slices.Equal(final.ConnectedByMPS, []int{0, 0}) ||
		!slices.Equal(final.HandshakesByMPS, []int64{9, 3}) || final.Handshakes != 12 {
		t.Fatalf("final summary %+v", final)
	}
}

// TestFleetMPSOrder follows one device through both MPSs being down: A, A
// again, B, B again, the pause, and A first again; then A comes up.
func TestFleetMPSOrder(t *testing.T) {
	a := newSite(t, "mps-a.test", "cira-a", "Pass-A-1")
	b := newSite(t, "mps-b.test", "cira-b", "Pass-B-1")
	log := newDialLog()
	cfg := orderFleet(t, 1, log, a, b)
	f, _ := runFleet(t, cfg)
	got := log.waitFor(t, "two passes", func(ds []dialed) bool { return len(ds) >= 8 })[:8]
	if s := addrs(got, a, b); s != "AABBAABB" {
		t.Fatalf("dials %s; want AABBAABB", s)
	}
	if gap := got[4].at.Sub(got[3].at); gap < cfg.RetryInterval {
		t.Fatalf("pause between passes %v; want at least %v", gap, cfg.RetryInterval)
	}
	a.up()
	a.await(0, f.Devices()...)
}

// TestFleetMPSNoRetry: with NoRetry, a device makes one pass.
func TestFleetMPSNoRetry(t *testing.T) {
	a := newSite(t, "mps-a.test", "cira-a", "Pass-A-1")
	b := newSite(t, "mps-b.test", "cira-b", "Pass-B-1")
	log := newDialLog()
	cfg := orderFleet(t, 2, log, a, b)
	cfg.NoRetry = true
	f, err := NewFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s := f.Run(ctx)
	if ctx.Err() != nil {
		t.Fatal("Fleet.Run waited for ctx although every device had stopped")
	}
	if s.Attempts != 8 || s.Failed["dial"] != 8 || !slices.Equal(s.HandshakesByMPS, []int64{0, 0}) {
		t.Fatalf("summary %+v; want 8 refused attempts", s)
	}
}

// TestDeviceMPSFallback: every way the primary can fail sends the device to
// the backup, after the primary was tried MPSRetries+1 times.
func TestDeviceMPSFallback(t *testing.T) {
	b := newSite(t, "mps-b.test", "cira-b", "Pass-B-1")
	b.up()
	for _, tt := range []struct {
		name   string
		setup  func(t *testing.T, a *site, cfg *Config)
		aDials int
	}{
		{"refused", func(*testing.T, *site, *Config) {}, 2},
		{"refused without retry", func(_ *testing.T, _ *site, c *Config) { c.MPSRetries = -1 }, 1},
		{"refused, three retries", func(_ *testing.T, _ *site, c *Config) { c.MPSRetries = 3 }, 4},
		{"certificate for another name", func(t *testing.T, a *site, c *Config) {
			a.up()
			c.MPS[0].ServerName = "mps-elsewhere.test" // A's certificate names mps-a.test
		}, 2},
		{"auth refused", func(t *testing.T, a *site, c *Config) {
			a.up()
			c.MPS[0].Password = []byte("Pass-B-1") // B's password, not A's
		}, 2},
		{"closed before the tunnel was up", func(t *testing.T, a *site, c *Config) {
			closeAfterTLS(t, a)
		}, 2},
		{"backup with the device's credentials", func(t *testing.T, a *site, c *Config) {
			c.MPS[1].User, c.MPS[1].Password = "", nil
			c.User, c.Password = b.user, []byte(b.pass)
		}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newSite(t, "mps-a.test", "cira-a", "Pass-A-1")
			log := newDialLog()
			cfg := Config{
				UUID:             DeviceUUID(t.Name(), 0),
				MPS:              []MPSEntry{a.entry(), b.entry()},
				RootCAs:          getPKI(t).roots,
				HandshakeTimeout: testTimeout,
				Dial:             log.dial,
			}
			tt.setup(t, a, &cfg)
			d, _, _ := startDevice(t, cfg)
			b.await(1, d)
			want := strings.Repeat("A", tt.aDials) + "B"
			if got := addrs(log.snapshot(), a, b); got != want {
				t.Fatalf("dials %s; want %s", got, want)
			}
		})
	}
}

// closeAfterTLS serves a's address with a TLS listener that closes each
// connection after the device's first bytes: a tunnel that ends before it
// is up.
func closeAfterTLS(t *testing.T, a *site) {
	ln, err := net.Listen("tcp", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	cert := getPKI(t).issue(t, a.name)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
			tc.SetDeadline(time.Now().Add(testTimeout))
			tc.Read(make([]byte, 1))
			tc.Close()
		}
	})
}

// TestDeviceMPSAllFail: when no entry takes it, Run returns after one pass
// with the last entry's error, wrapped and still classified.
func TestDeviceMPSAllFail(t *testing.T) {
	a := newSite(t, "mps-a.test", "cira-a", "Pass-A-1")
	b := newSite(t, "mps-b.test", "cira-b", "Pass-B-1")
	log := newDialLog()
	d, err := New(Config{
		UUID: testUUID, MPS: []MPSEntry{a.entry(), b.entry()},
		RootCAs: getPKI(t).roots, HandshakeTimeout: testTimeout, Dial: log.dial,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	if !errors.Is(err, ErrDial) || Reason(err) != "dial" || !strings.Contains(err.Error(), b.addr) {
		t.Fatalf("Run = %v; want ErrDial naming %s", err, b.addr)
	}
	if got := addrs(log.snapshot(), a, b); got != "AABB" {
		t.Fatalf("dials %s; want AABB", got)
	}
	if strings.Contains(err.Error(), "Pass-") {
		t.Fatal("error text contains a password")
	}
}

// TestResumeSessionsPerEntry: with ResumeSessions, each entry's session is
// kept and offered to that entry again.
func TestResumeSessionsPerEntry(t *testing.T) {
	p := getPKI(t)
	type hello struct {
		name    string
		resumed bool
	}
	seen := make(chan hello, 16)
	var (
		entries []MPSEntry
		lns     []net.Listener
		wg      sync.WaitGroup
	)
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	for _, name := range []string{"mps-a.test", "mps-b.test"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		conf := &tls.Config{Certificates: []tls.Certificate{p.issue(t, name)}}
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				tc := tls.Server(c, conf)
				tc.SetDeadline(time.Now().Add(testTimeout))
				if tc.Handshake() == nil {
					seen <- hello{name, tc.ConnectionState().DidResume}
					tc.Read(make([]byte, 1)) // the device reads the ticket with our close
				}
				tc.Close()
			}
		})
		entries = append(entries, MPSEntry{Addr: ln.Addr().String(), ServerName: name})
	}
	d, err := New(Config{
		UUID: testUUID, User: testUser, Password: []byte(testPassword), MPS: entries,
		RootCAs: p.roots, HandshakeTimeout: testTimeout, ResumeSessions: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The servers close as soon as they have read: EOF, or a reset if
	// more of the device's first flight was still unread.
	if err := d.Run(context.Background()); Reason(err) != "eof" && Reason(err) != "reset" {
		t.Fatalf("Run = %v; want the servers' close", err)
	}
	want := []hello{{"mps-a.test", false}, {"mps-a.test", true}, {"mps-b.test", false}, {"mps-b.test", true}}
	for i, w := range want {
		if got := <-seen; got != w {
			t.Fatalf("connection %d: %+v; want %+v", i, got, w)
		}
	}
}

func TestNewRejectsBadMPS(t *testing.T) {
	entry := func(addr string) MPSEntry { return MPSEntry{Addr: addr, User: "u", Password: []byte("p")} }
	good := Config{UUID: testUUID, MPS: []MPSEntry{entry("127.0.0.1:4433"), entry("[::1]:4433")}}
	if _, err := New(good); err != nil {
		t.Fatalf("New(entries with their own credentials) = %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"MPSAddr too":         func(c *Config) { c.MPSAddr = "127.0.0.1:4433" },
		"ServerName too":      func(c *Config) { c.ServerName = "mps.test" },
		"five entries":        func(c *Config) { c.MPS = slices.Repeat(c.MPS[:1], 5) },
		"bad address":         func(c *Config) { c.MPS[1].Addr = "nohost" },
		"user, no password":   func(c *Config) { c.MPS[1].Password = nil },
		"no credentials here": func(c *Config) { c.MPS[1].User, c.MPS[1].Password = "", nil },
	} {
		c := good
		c.MPS = slices.Clone(good.MPS)
		edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("New with %s succeeded", name)
		}
	}
}

// TestDeviceSize guards the cost of an idle simulated device: a Device
// stays in its 576-byte size class (64-bit).
func TestDeviceSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	if n := unsafe.Sizeof(Device{}); n > 576 {
		t.Fatalf("Device is %d bytes; want at most 576", n)
	}
}
