package amtsim

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// miniMPS completes the handshakes of many devices with the apf codec and
// answers their keepalives. Test code only, as small as a fleet test needs.
type miniMPS struct {
	t        *testing.T
	pki      testPKI
	ln       net.Listener
	password string
	// One value per completed handshake (the device UUID) and per refused
	// login.
	handshakes chan apf.UUID
	refused    chan struct{}
	inFlight   atomic.Int64 // handshakes between PROTOCOL_VERSION and the last forward
	maxFlight  atomic.Int64

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func startMiniMPS(t *testing.T) *miniMPS {
	t.Helper()
	e := newEnv(t)
	s := &miniMPS{t: t, pki: e.pki, ln: e.ln, password: testPassword,
		handshakes: make(chan apf.UUID, 1<<16), refused: make(chan struct{}, 1<<10), conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *miniMPS) serve(raw net.Conn) {
	defer raw.Close()
	c := tlsServer(raw, s.pki)
	var (
		buf      []byte
		tmp      = make([]byte, 4096)
		id       apf.UUID
		forwards int
		counted  bool
	)
	done := func() {
		if counted {
			s.inFlight.Add(-1)
			counted = false
		}
	}
	defer done()
	for {
		n, err := c.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
		for {
			m, k, err := apf.Parse(buf)
			if errors.Is(err, apf.ErrIncomplete) {
				break
			}
			if err != nil {
				return
			}
			buf = buf[k:]
			var out apf.Message
			switch m := m.(type) {
			case *apf.ProtocolVersion:
				id = m.UUID
				counted = true
				for f := s.inFlight.Add(1); ; {
					if m := s.maxFlight.Load(); f <= m || s.maxFlight.CompareAndSwap(m, f) {
						break
					}
				}
			case *apf.ServiceRequest:
				out = &apf.ServiceAccept{Service: m.Service}
			case *apf.UserauthRequest:
				if string(m.Password) != s.password {
					c.Write((&apf.UserauthFailure{Methods: "password"}).Append(nil))
					s.refused <- struct{}{}
					return
				}
				out = &apf.UserauthSuccess{}
			case *apf.TCPIPForward:
				out = &apf.RequestSuccess{Port: m.Port}
				if forwards++; forwards == len(DefaultPorts()) {
					c.Write(out.Append(nil))
					out = nil
					done()
					s.handshakes <- id
				}
			case *apf.KeepaliveRequest:
				out = &apf.KeepaliveReply{Cookie: m.Cookie}
			}
			if out != nil {
				if _, err := c.Write(out.Append(nil)); err != nil {
					return
				}
			}
		}
	}
}

func fleetConfig(s *miniMPS, n int) FleetConfig {
	return FleetConfig{
		Device: Config{
			User:             testUser,
			Password:         []byte(testPassword),
			MPSAddr:          s.ln.Addr().String(),
			RootCAs:          s.pki.roots,
			HandshakeTimeout: testTimeout,
			MinVersion:       tls.VersionTLS12,
		},
		Devices:  n,
		First:    100,
		Seed:     "fleet-test",
		RetryMin: 10 * time.Millisecond,
		RetryMax: 50 * time.Millisecond,
	}
}

func TestFleetConnects(t *testing.T) {
	s := startMiniMPS(t)
	cfg := fleetConfig(s, 12)
	cfg.StartRate = 500
	cfg.MaxHandshakes = 3
	f, err := NewFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan Summary, 1)
	go func() { res <- f.Run(ctx) }()
	for _, d := range f.Devices() {
		waitConnected(t, d)
	}
	live := f.Summary()
	cancel()
	var final Summary
	select {
	case final = <-res:
	case <-time.After(testTimeout):
		t.Fatal("Fleet.Run did not return after cancel")
	}
	if live.ConnectedNow != 12 || live.Started != 12 || live.Handshakes != 12 {
		t.Fatalf("live summary %+v; want 12 started, connected and handshakes", live)
	}
	if final.Handshakes != 12 || final.Attempts != 12 || final.Failed != nil || final.ConnectedNow != 0 ||
		final.HandshakeMS.P50 <= 0 || final.HandshakeMS.P99 < final.HandshakeMS.P50 || final.HandshakesPerSec <= 0 {
		t.Fatalf("final summary %+v", final)
	}
	if m := s.maxFlight.Load(); m > 3 {
		t.Fatalf("%d handshakes in flight; MaxHandshakes is 3", m)
	}
	seen := map[apf.UUID]bool{}
	for range 12 {
		seen[<-s.handshakes] = true
	}
	for i, d := range f.Devices() {
		if !seen[DeviceUUID("fleet-test", 100+i)] || d.Hostname() != DeviceHostname(100+i) {
			t.Fatalf("device %d: uuid %v host %s not the derived identity", i, d.UUID(), d.Hostname())
		}
	}
	b, err := json.Marshal(final)
	if err != nil || !strings.Contains(string(b), `"handshakes":12`) {
		t.Fatalf("json %s, %v", b, err)
	}
}

func TestFleetAuthFailureNoRetry(t *testing.T) {
	s := startMiniMPS(t)
	cfg := fleetConfig(s, 5)
	cfg.Device.Fault = FaultWrongPassword
	cfg.NoRetry = true
	f, err := NewFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sum := f.Run(ctx) // returns once every device has given up
	if ctx.Err() != nil {
		t.Fatal("Fleet.Run waited for ctx although every device had stopped")
	}
	if sum.Failed["auth"] != 5 || sum.Handshakes != 0 || sum.Attempts != 5 {
		t.Fatalf("summary %+v; want 5 auth failures", sum)
	}
}

func TestFleetReconnectStorm(t *testing.T) {
	s := startMiniMPS(t)
	cfg := fleetConfig(s, 4)
	cfg.Device.Fault = FaultReconnectLoop
	f, err := NewFleet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan Summary, 1)
	go func() { res <- f.Run(ctx) }()
	const want = 40
	for range want {
		select {
		case <-s.handshakes:
		case <-time.After(testTimeout):
			t.Fatalf("handshakes stalled: %+v", f.Summary())
		}
	}
	cancel()
	sum := <-res
	// The MPS counts a handshake when it sends the last reply; the device
	// when it reads it, so each device may be one behind.
	if sum.Handshakes < want-4 || sum.Ended["dropped"] < want-8 || sum.HandshakesPerSec <= 0 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestNewFleetTooManyDevices(t *testing.T) {
	lim := openFileLimit()
	if lim == 0 || lim > math.MaxInt32 {
		t.Skip("no usable open-file limit")
	}
	_, err := NewFleet(FleetConfig{Devices: int(lim), Device: Config{User: "u", Password: []byte("p"), MPSAddr: "127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), "split") {
		t.Fatalf("NewFleet(%d devices) = %v; want an error that says to split", lim, err)
	}
}

func TestDeviceUUID(t *testing.T) {
	a, b := DeviceUUID("s", 1), DeviceUUID("s", 2)
	if a != DeviceUUID("s", 1) || a == b || a == DeviceUUID("t", 1) {
		t.Fatal("DeviceUUID is not a deterministic function of seed and index")
	}
	s := a.String()
	if s[14] != '4' || !strings.ContainsRune("89ab", rune(s[19])) {
		t.Fatalf("DeviceUUID = %s; want a version 4, RFC 4122 variant UUID", s)
	}
	if got := DeviceHostname(123); got != "sim-000123" {
		t.Fatalf("DeviceHostname(123) = %q", got)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	l := h.latency()
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.07 }
	if !near(l.P50, 500) || !near(l.P90, 900) || !near(l.P99, 990) || l.Max != 1000 || !near(l.Mean, 500.5) {
		t.Fatalf("latency = %+v; want p50≈500 p90≈900 p99≈990 max 1000", l)
	}
	for us := uint64(0); us < 1<<20; us += 7 {
		if mid := bucketMid(bucketOf(us)); math.Abs(mid-float64(us)) > float64(us)*0.04+1 {
			t.Fatalf("bucketMid(bucketOf(%d)) = %v", us, mid)
		}
	}
}
