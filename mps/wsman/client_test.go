package wsman

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func ctx10(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestDigestNonceReused: one 401 for the first call, then every request of
// later calls reuses the nonce with nc counting up, on one connection.
func TestDigestNonceReused(t *testing.T) {
	f := newFakeDevice(t)
	c := testClient(t, f, nil)
	for i := range 5 {
		g, err := c.GeneralSettings(ctx10(t), "dev")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if g.HostName != "laptop-7" || g.DomainName != "example.org" || !g.NetworkInterfaceEnabled {
			t.Fatalf("GeneralSettings = %+v", g)
		}
	}
	reqs := f.requests()
	if len(reqs) != 6 || reqs[0].Authorized {
		t.Fatalf("%d requests, first authorized %t; want 6, an unauthenticated first", len(reqs), reqs[0].Authorized)
	}
	for i, r := range reqs[1:] {
		if !r.Authorized || r.Nonce != reqs[1].Nonce || r.NC != uint64(i+1) {
			t.Errorf("request %d: authorized %t nonce %q nc %d; want nonce %q nc %d", i+1, r.Authorized, r.Nonce, r.NC, reqs[1].Nonce, i+1)
		}
	}
	if conns, _ := f.counts(); conns != 1 {
		t.Errorf("%d connections; want 1", conns)
	}
}

// TestDigestStaleAndRechallenge: a stale nonce and a new challenge to a used
// nonce are followed by one request with the new nonce, not a credentials
// error.
func TestDigestStaleAndRechallenge(t *testing.T) {
	for _, stale := range []bool{true, false} {
		t.Run(fmt.Sprintf("stale=%t", stale), func(t *testing.T) {
			f := newFakeDevice(t)
			f.set(func(f *fakeDevice) {
				if stale {
					f.staleAfter = 2
				} else {
					f.rechallAt = 2
				}
			})
			c := testClient(t, f, nil)
			for i := range 5 {
				if _, err := c.GeneralSettings(ctx10(t), "dev"); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			reqs := f.requests()
			nonces := map[string]bool{}
			ok := 0
			for _, r := range reqs {
				if r.Authorized {
					ok++
					nonces[r.Nonce] = true
				}
			}
			// 5 calls, 2 per nonce: nonces A A B B C; B and C each cost
			// one refused request.
			if ok != 5 || len(nonces) != 3 || len(reqs) != 8 {
				t.Errorf("%d requests, %d authorized, %d nonces; want 8, 5, 3", len(reqs), ok, len(nonces))
			}
		})
	}
}

// TestWrongCredentials: the device's 401 to a fresh nonce ends the call
// with ErrCredentials after one try; later calls with the same credentials
// are refused without a request; changed credentials go through.
func TestWrongCredentials(t *testing.T) {
	f := newFakeDevice(t)
	f.set(func(f *fakeDevice) { f.pass = "something else" })
	var pass atomic.Value
	pass.Store(testPass)
	var logs bytes.Buffer
	var logMu sync.Mutex
	c := testClient(t, f, func(cfg *Config) {
		cfg.Credentials = func(context.Context, string) (Credentials, error) {
			return Credentials{User: testUser, Password: pass.Load().(string)}, nil
		}
		cfg.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	_, err := c.PowerState(ctx10(t), "dev")
	var ce *CredentialsError
	if !errors.Is(err, ErrCredentials) || !errors.As(err, &ce) || ce.Refused || ce.User != testUser {
		t.Fatalf("PowerState = %v; want a CredentialsError from the device", err)
	}
	authTries := func() int {
		n := 0
		for _, r := range f.requests() {
			if r.Nonce != "" {
				n++
			}
		}
		return n
	}
	if n := authTries(); n != 1 {
		t.Fatalf("%d authenticated attempts; want 1", n)
	}
	before := len(f.requests())
	for range 3 {
		_, err = c.PowerState(ctx10(t), "dev")
		if !errors.As(err, &ce) || !ce.Refused {
			t.Fatalf("PowerState again = %v; want a refused CredentialsError", err)
		}
	}
	if n := len(f.requests()); n != before {
		t.Fatalf("%d requests after the refusal; want none", n-before)
	}
	// Another device is not affected by this one's refusal.
	if _, err := c.PowerState(ctx10(t), "other"); !errors.As(err, &ce) || ce.Refused {
		t.Fatalf("PowerState of another device = %v; want it to ask its device", err)
	}
	f.set(func(f *fakeDevice) { f.pass = "the new one" })
	pass.Store("the new one")
	if _, err := c.PowerState(ctx10(t), "dev"); err != nil {
		t.Fatalf("PowerState with new credentials: %v", err)
	}
	// The old pair stays refused.
	pass.Store(testPass)
	if _, err := c.PowerState(ctx10(t), "dev"); !errors.As(err, &ce) || !ce.Refused {
		t.Fatalf("PowerState with the old credentials = %v; want refused", err)
	}
	c.Forget("dev")
	if _, err := c.PowerState(ctx10(t), "dev"); !errors.As(err, &ce) || ce.Refused {
		t.Fatalf("PowerState after Forget = %v; want it to ask the device", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	for _, s := range []string{testPass, "the new one"} {
		if strings.Contains(logs.String(), s) || strings.Contains(err.Error(), s) {
			t.Errorf("a password appears in the logs or the error")
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestFaults: the unsupported-platform faults and a 404 are ErrUnsupported;
// other faults are not; Hardware and Features skip what is missing.
func TestFaults(t *testing.T) {
	for _, sub := range []string{"DestinationUnreachable", "ActionNotSupported", "InvalidResourceURI", "AccessDenied"} {
		t.Run(sub, func(t *testing.T) {
			f := newFakeDevice(t)
			f.set(func(f *fakeDevice) { f.faults["AMT_GeneralSettings"] = sub })
			c := testClient(t, f, nil)
			_, err := c.GeneralSettings(ctx10(t), "dev")
			var fe *Fault
			if !errors.As(err, &fe) || fe.Subcode != sub || fe.Status != 400 || fe.Reason != "The fault "+sub+"." {
				t.Fatalf("GeneralSettings = %#v; want a fault %s", err, sub)
			}
			if got, want := errors.Is(err, ErrUnsupported), sub != "AccessDenied"; got != want {
				t.Errorf("errors.Is(%v, ErrUnsupported) = %t; want %t", err, got, want)
			}
		})
	}
	t.Run("404", func(t *testing.T) {
		f := newFakeDevice(t)
		f.set(func(f *fakeDevice) {
			f.raw = func(w http.ResponseWriter, _ *fakeReq) bool { http.NotFound(w, nil); return true }
		})
		c := testClient(t, f, nil)
		_, err := c.GeneralSettings(ctx10(t), "dev")
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != 404 || !errors.Is(err, ErrUnsupported) {
			t.Fatalf("GeneralSettings = %v; want HTTP 404, unsupported", err)
		}
	})
	t.Run("partial", func(t *testing.T) {
		f := newFakeDevice(t)
		f.set(func(f *fakeDevice) {
			f.faults["CIM_KVMRedirectionSAP"] = "DestinationUnreachable"
			f.faults["CIM_Chip"] = "InvalidResourceURI"
			f.faults["CIM_Card"] = "DestinationUnreachable"
		})
		c := testClient(t, f, nil)
		ft, err := c.Features(ctx10(t), "dev")
		if err != nil || ft.KVMAvailable || ft.KVM || !ft.SOL || !ft.IDER || !ft.Redirection || ft.OptInRequired != OptInAll {
			t.Fatalf("Features = %+v, %v; want SOL and IDE-R, no KVM, consent for all", ft, err)
		}
		h, err := c.Hardware(ctx10(t), "dev")
		if err != nil || len(h.Missing) != 2 || h.Missing[0] != "CIM_Card" || h.Missing[1] != "CIM_Chip" || len(h.Memory) != 2 {
			t.Fatalf("Hardware = %+v, %v; want CIM_Card and CIM_Chip missing", h, err)
		}
		if err := c.SetFeatures(ctx10(t), "dev", FeatureSwitches{SOL: true}); err != nil {
			t.Errorf("SetFeatures without KVM on a platform without it: %v", err)
		}
		if err := c.SetFeatures(ctx10(t), "dev", FeatureSwitches{KVM: true}); !errors.Is(err, ErrUnsupported) {
			t.Errorf("SetFeatures with KVM on a platform without it = %v; want ErrUnsupported", err)
		}
	})
}

// TestReturnValues: a ReturnValue of 0x0821 is ErrConsentRequired; others
// are StatusErrors with the method's or AMT's name.
func TestReturnValues(t *testing.T) {
	f := newFakeDevice(t)
	c := testClient(t, f, nil)
	for _, tc := range []struct {
		method  string
		rv      uint32
		call    func() error
		name    string
		consent bool
	}{
		{"RequestPowerStateChange", 0x0821, func() error { return c.RequestPowerStateChange(ctx10(t), "dev", PowerReset) }, "USER_CONSENT_REQUIRED", true},
		{"RequestPowerStateChange", 2, func() error { return c.RequestPowerStateChange(ctx10(t), "dev", PowerOff) }, "NOT_READY", false},
		{"StartOptIn", 2, func() error { return c.StartOptIn(ctx10(t), "dev") }, "invalid state", false},
		{"SendOptInCode", 0x0821, func() error { return c.SendOptInCode(ctx10(t), "dev", 123456) }, "USER_CONSENT_REQUIRED", true},
		{"ChangeBootOrder", 0x0812, func() error { return c.ChangeBootOrder(ctx10(t), "dev", SourcePXE) }, "UNSUPPORTED", false},
		{"SetBootConfigRole", 77777, func() error { return c.SetBootConfigRole(ctx10(t), "dev", BootConfig, 1) }, "", false},
	} {
		f.set(func(f *fakeDevice) { f.rv = map[string]uint32{tc.method: tc.rv} })
		err := tc.call()
		var se *StatusError
		if !errors.As(err, &se) || se.Method != tc.method || se.Value != tc.rv || se.Name() != tc.name {
			t.Errorf("%s returning %d: %v; want a StatusError named %q", tc.method, tc.rv, err, tc.name)
			continue
		}
		if errors.Is(err, ErrConsentRequired) != tc.consent {
			t.Errorf("%s returning %d: errors.Is(ErrConsentRequired) = %t", tc.method, tc.rv, !tc.consent)
		}
	}
	if err := c.RequestPowerStateChange(ctx10(t), "dev", 3); err == nil || !strings.Contains(err.Error(), "not a power action") {
		t.Errorf("RequestPowerStateChange(3) = %v; want refused before any request", err)
	}
}

// TestSilentDevice: a device that does not answer within the deadline ends
// the call with a TunnelError that is a timeout; the next call redials.
func TestSilentDevice(t *testing.T) {
	f := newFakeDevice(t)
	c := testClient(t, f, nil)
	if _, err := c.PowerState(ctx10(t), "dev"); err != nil {
		t.Fatal(err)
	}
	block, blocked := make(chan struct{}), make(chan struct{}, 10)
	f.set(func(f *fakeDevice) { f.block, f.blocked = block, blocked })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.PowerState(ctx, "dev")
	var te *TunnelError
	if !errors.Is(err, ErrTunnel) || !errors.As(err, &te) || !te.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PowerState of a silent device = %v; want a tunnel timeout", err)
	}
	<-blocked
	close(block)
	f.set(func(f *fakeDevice) { f.block = nil })
	if _, err := c.PowerState(ctx10(t), "dev"); err != nil {
		t.Fatalf("PowerState after the timeout: %v", err)
	}
	if conns, _ := f.counts(); conns != 2 {
		t.Errorf("%d connections; want 2 (the timed-out one is not reused)", conns)
	}
}

// TestDialFails: a dial error is ErrTunnel with its cause.
func TestDialFails(t *testing.T) {
	errGone := errors.New("mps: no connected device by that name")
	c, err := New(Config{
		Dial:        func(context.Context, string) (net.Conn, error) { return nil, errGone },
		Credentials: func(context.Context, string) (Credentials, error) { return Credentials{User: "u", Password: "p"}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.PowerState(context.Background(), "dev")
	var te *TunnelError
	if !errors.Is(err, ErrTunnel) || !errors.Is(err, errGone) || !errors.As(err, &te) || te.Op != "dial" || te.Timeout() {
		t.Fatalf("PowerState = %v; want a dial TunnelError", err)
	}
	if st := c.Stats(); st.Devices != 0 {
		t.Errorf("Stats = %+v; want no device kept after a failed dial", st)
	}
}

// TestDeviceClosesConnection: a device that closes its connections (after
// an answer, or idle) gets a new one for the next call, and a Get that meets
// a dead reused connection is sent again once.
func TestDeviceClosesConnection(t *testing.T) {
	f := newFakeDevice(t)
	f.set(func(f *fakeDevice) { f.closeEach = true })
	c := testClient(t, f, nil)
	for range 3 {
		if _, err := c.GeneralSettings(ctx10(t), "dev"); err != nil {
			t.Fatal(err)
		}
	}
	if conns, _ := f.counts(); conns != 3 { // the 401 and the first answer share one
		t.Errorf("%d connections; want 3", conns)
	}
	reqs := f.requests()
	if n := len(reqs); n != 4 || reqs[3].NC != 3 {
		t.Errorf("%d requests, last nc %d; want 4 and nc 3 (the nonce outlives connections)", n, reqs[n-1].NC)
	}

	// The device hangs up on a request on a reused connection: a Get is
	// retried on a new one, a method is not.
	f.set(func(f *fakeDevice) { f.closeEach = false })
	if _, err := c.GeneralSettings(ctx10(t), "dev"); err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeDevice) { f.hangUp = true })
	if _, err := c.GeneralSettings(ctx10(t), "dev"); err != nil {
		t.Fatalf("GeneralSettings after a hang-up: %v", err)
	}
	f.set(func(f *fakeDevice) { f.hangUp = true })
	err := c.RequestPowerStateChange(ctx10(t), "dev", PowerReset)
	var te *TunnelError
	if !errors.As(err, &te) || te.Op != "read" {
		t.Fatalf("RequestPowerStateChange on a hang-up = %v; want a read TunnelError, not a second reset", err)
	}
}

// TestIdleClose: the client closes a connection idle for IdleTimeout.
func TestIdleClose(t *testing.T) {
	f := newFakeDevice(t)
	c := testClient(t, f, func(cfg *Config) { cfg.IdleTimeout = 50 * time.Millisecond })
	if _, err := c.PowerState(ctx10(t), "dev"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.closedCh:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	if st := c.Stats(); st.Conns != 0 || st.Devices != 0 {
		t.Errorf("Stats after the idle close = %+v; want nothing held", st)
	}
	if _, err := c.PowerState(ctx10(t), "dev"); err != nil {
		t.Fatal(err)
	}
}

// TestOneCallPerDevice: concurrent calls to one device reach it one at a
// time; calls to many devices are capped by MaxDevices.
func TestOneCallPerDevice(t *testing.T) {
	f := newFakeDevice(t)
	c := testClient(t, f, func(cfg *Config) { cfg.QueueLen = 64; cfg.MaxDevices = 4 })
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 40 {
		wg.Go(func() {
			if _, err := c.PowerState(ctx10(t), "dev"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	f.mu.Lock()
	if f.maxFlight != 1 {
		t.Errorf("%d requests in flight at once to one device; want 1", f.maxFlight)
	}
	f.mu.Unlock()
	// Hold each request until four are at the device at once: more would
	// break the cap, and the barrier's timeout lets fewer show.
	barrier := make(chan struct{})
	var once sync.Once
	f.set(func(f *fakeDevice) {
		f.maxFlight = 0
		f.hook = func(http.ResponseWriter, *http.Request, *fakeReq) {
			f.mu.Lock()
			if f.inFlight >= 4 {
				once.Do(func() { close(barrier) })
			}
			f.mu.Unlock()
			select {
			case <-barrier:
			case <-time.After(2 * time.Second):
			}
		}
	})
	for i := range 40 {
		wg.Go(func() {
			if _, err := c.PowerState(ctx10(t), fmt.Sprintf("dev-%d", i%20)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxFlight != 4 {
		t.Errorf("%d requests in flight at once to 20 devices; want 4 (MaxDevices)", f.maxFlight)
	}
}

// TestQueueFull: a full queue fails at once; a call whose deadline passes in
// the queue leaves it; Close ends the rest.
func TestQueueFull(t *testing.T) {
	f := newFakeDevice(t)
	c := testClient(t, f, func(cfg *Config) { cfg.QueueLen = 3 })
	enqueued := make(chan struct{}, 10)
	c.enqueued = func() { enqueued <- struct{}{} }
	if _, err := c.PowerState(ctx10(t), "dev"); err != nil {
		t.Fatal(err)
	}
	<-enqueued
	block, blocked := make(chan struct{}), make(chan struct{}, 10)
	f.set(func(f *fakeDevice) { f.block, f.blocked = block, blocked })
	results := make(chan error, 10)
	go func() { _, err := c.PowerState(ctx10(t), "dev"); results <- err }()
	<-enqueued
	<-blocked // the first call is at the device; the queue is empty
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	go func() { _, err := c.PowerState(short, "dev"); results <- err }()
	for range 2 {
		go func() { _, err := c.PowerState(ctx10(t), "dev"); results <- err }()
	}
	for range 3 {
		<-enqueued
	}
	if q := c.Stats().Queued; q != 3 {
		t.Fatalf("%d calls queued; want 3", q)
	}
	if _, err := c.PowerState(ctx10(t), "dev"); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("a fourth queued call = %v; want ErrQueueFull", err)
	}
	err := <-results // the short one
	var te *TunnelError
	if !errors.As(err, &te) || te.Op != "wait" || !te.Timeout() {
		t.Fatalf("a call whose deadline passed in the queue = %v; want a wait timeout", err)
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	for range 3 {
		if err := <-results; !errors.Is(err, ErrClosed) {
			t.Errorf("a call at Close = %v; want ErrClosed", err)
		}
	}
	<-done
	close(block)
	if _, err := c.PowerState(ctx10(t), "dev"); !errors.Is(err, ErrClosed) {
		t.Errorf("a call after Close = %v; want ErrClosed", err)
	}
}

// TestHostileAnswers: oversized, deep, long and malformed answers fail with
// ErrMalformed (never a panic) and the connection is not reused.
func TestHostileAnswers(t *testing.T) {
	deep := strings.Repeat("<x>", 100) + strings.Repeat("</x>", 100)
	for _, tc := range []struct {
		name string
		raw  func(w http.ResponseWriter)
		want error
	}{
		{"big body", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", fmt.Sprint(5<<20))
			w.Write(bytes.Repeat([]byte("x"), 5<<20))
		}, ErrMalformed},
		{"big chunked body", func(w http.ResponseWriter) {
			for range 5 << 10 {
				w.Write(bytes.Repeat([]byte("y"), 1<<10))
			}
		}, ErrMalformed},
		{"big header", func(w http.ResponseWriter) {
			w.Header().Set("X-Junk", strings.Repeat("j", 80<<10))
			w.WriteHeader(200)
		}, ErrMalformed},
		{"deep XML", func(w http.ResponseWriter) {
			w.Write([]byte(`<a:Envelope xmlns:a="` + nsSOAP + `"><a:Body><h:AMT_GeneralSettings>` + deep + `</h:AMT_GeneralSettings></a:Body></a:Envelope>`))
		}, ErrMalformed},
		{"many tokens", func(w http.ResponseWriter) {
			w.Write([]byte(`<a:Envelope xmlns:a="` + nsSOAP + `"><a:Body><h:AMT_GeneralSettings>` + strings.Repeat("<y/>", 600_000) + `</h:AMT_GeneralSettings></a:Body></a:Envelope>`))
		}, ErrMalformed},
		{"not XML", func(w http.ResponseWriter) { w.Write([]byte("<html>locked</html")) }, ErrMalformed},
		{"wrong answer", func(w http.ResponseWriter) {
			w.Write([]byte(`<a:Envelope xmlns:a="` + nsSOAP + `"><a:Body><h:CIM_Chassis/></a:Body></a:Envelope>`))
		}, ErrMalformed},
		{"no body", func(w http.ResponseWriter) {
			w.Write([]byte(`<a:Envelope xmlns:a="` + nsSOAP + `"><a:Header/></a:Envelope>`))
		}, ErrMalformed},
		{"bad number", func(w http.ResponseWriter) {
			w.Write([]byte(`<a:Envelope xmlns:a="` + nsSOAP + `"><a:Body><h:AMT_GeneralSettings><h:PowerSource>lots</h:PowerSource></h:AMT_GeneralSettings></a:Body></a:Envelope>`))
		}, ErrMalformed},
		{"500 without fault", func(w http.ResponseWriter) { w.WriteHeader(500) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDevice(t)
			c := testClient(t, f, nil)
			if _, err := c.GeneralSettings(ctx10(t), "dev"); err != nil {
				t.Fatal(err)
			}
			f.set(func(f *fakeDevice) {
				f.raw = func(w http.ResponseWriter, _ *fakeReq) bool { tc.raw(w); return true }
			})
			_, err := c.GeneralSettings(ctx10(t), "dev")
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("GeneralSettings = %v; want %v", err, tc.want)
			}
			t.Logf("%v", err)
			f.set(func(f *fakeDevice) { f.raw = nil })
			if _, err := c.GeneralSettings(ctx10(t), "dev"); err != nil {
				t.Fatalf("GeneralSettings after: %v", err)
			}
		})
	}
}

// TestEnumerate: items over several pulls are gathered; a device that never
// ends the sequence is stopped at MaxPulls.
func TestEnumerate(t *testing.T) {
	f := newFakeDevice(t)
	f.set(func(f *fakeDevice) { f.pullBatch = 1 })
	c := testClient(t, f, func(cfg *Config) { cfg.Limits.MaxPulls = 6 })
	ids, err := c.SoftwareIdentity(ctx10(t), "dev")
	if err != nil || len(ids) != 4 || ids[1].InstanceID != "AMT" || ids[1].VersionString != "16.1.25" {
		t.Fatalf("SoftwareIdentity = %+v, %v; want 4 over 4 pulls", ids, err)
	}
	pulls := 0
	for _, r := range f.requests() {
		if r.Action == actionPull {
			pulls++
			if !strings.Contains(r.Body, fmt.Sprintf("ctx-CIM_SoftwareIdentity-%d<", pulls-1)) {
				t.Errorf("pull %d sent %q", pulls, r.Body)
			}
		}
	}
	if pulls != 4 {
		t.Errorf("%d pulls; want 4", pulls)
	}
	f.set(func(f *fakeDevice) { f.noEnd = true })
	if _, err := c.SoftwareIdentity(ctx10(t), "dev"); !errors.Is(err, ErrMalformed) {
		t.Errorf("SoftwareIdentity without an end = %v; want ErrMalformed", err)
	}
}

// TestOperations runs every operation against the fake device and checks
// what it decoded and what it sent.
func TestOperations(t *testing.T) {
	f := newFakeDevice(t)
	c := testClient(t, f, nil)
	ctx := ctx10(t)

	ps, err := c.PowerState(ctx, "dev")
	if err != nil || !ps.On() || ps.String() != "on" || len(ps.Available) != 2 || ps.Available[1] != 10 {
		t.Errorf("PowerState = %+v, %v", ps, err)
	}
	if err := c.RequestPowerStateChange(ctx, "dev", PowerOff); err != nil {
		t.Error(err)
	}
	if ps, err := c.PowerState(ctx, "dev"); err != nil || ps.State != 8 || ps.String() != "off" {
		t.Errorf("PowerState after off = %+v, %v", ps, err)
	}
	if os, err := c.OSPowerSavingState(ctx, "dev"); err != nil || os != OSPowerSavingFullPower {
		t.Errorf("OSPowerSavingState = %d, %v", os, err)
	}
	v, err := c.Version(ctx, "dev")
	if err != nil || v.AMT != "16.1.25" || v.Major() != 16 || v.ControlMode != "CCM" || v.Parts["Sku"] != "16392" ||
		v.ServerHeader != "Intel(R) Active Management Technology 16.1.25" {
		t.Errorf("Version = %+v, %v", v, err)
	}
	h, err := c.Hardware(ctx, "dev")
	if err != nil || h.Chassis.Model != "ThinkPad T14" || h.Board.Version != "SDK0T76530 WIN" || h.BIOS.ReleaseDate != "2023-03-15T00:00:00Z" ||
		h.BIOS.Version != "N3MET18W (1.17 )" || len(h.Memory) != 2 || h.Memory[0].Capacity != 16<<30 || h.Chips[0].Version == "" ||
		h.Processors[0].MaxClockSpeed != 4800 || h.Disks[0].MaxMediaSize != 500107862 || len(h.Packages) != 1 || h.Packages[0].Model != "SAMSUNG MZVL2512" {
		t.Errorf("Hardware = %+v, %v", h, err)
	}
	o, err := c.OptInService(ctx, "dev")
	if err != nil || o.OptInRequired != OptInAll || o.Consented() || o.OptInCodeTimeout != 120 {
		t.Errorf("OptInService = %+v, %v", o, err)
	}
	for _, call := range []func() error{
		func() error { return c.StartOptIn(ctx, "dev") },
		func() error { return c.SendOptInCode(ctx, "dev", 42) },
		func() error { return c.CancelOptIn(ctx, "dev") },
		func() error { return c.SetOptInRequired(ctx, "dev", OptInKVM) },
	} {
		if err := call(); err != nil {
			t.Error(err)
		}
	}
	if err := c.SendOptInCode(ctx, "dev", 1234567); err == nil {
		t.Error("SendOptInCode(1234567) succeeded")
	}
	ft, err := c.Features(ctx, "dev")
	if err != nil || !ft.KVM || !ft.KVMAvailable || !ft.SOL || !ft.IDER {
		t.Errorf("Features = %+v, %v", ft, err)
	}
	if err := c.SetFeatures(ctx, "dev", FeatureSwitches{SOL: true, KVM: true}); err != nil {
		t.Error(err)
	}
	k, err := c.KVMRedirectionSettingData(ctx, "dev")
	if err != nil || !k.OptInPolicy || k.OptInPolicyTimeout != 120 {
		t.Errorf("KVMRedirectionSettingData = %+v, %v", k, err)
	}
	k.Is5900PortEnabled = true
	if err := c.PutKVMRedirectionSettingData(ctx, "dev", k); err != nil {
		t.Error(err)
	}
	bs, err := c.BootSettingData(ctx, "dev")
	if err != nil || bs.InstanceID != "Intel(r) AMT:BootSettingData 0" || !bs.LockKeyboard || len(bs.BIOSLastStatus) != 2 {
		t.Errorf("BootSettingData = %+v, %v", bs, err)
	}

	// What went on the wire for the writes.
	want := map[string][]string{
		"CIM_PowerManagementService/RequestPowerStateChange": {`<h:PowerState>8</h:PowerState>`, `<w:Selector Name="Name">ManagedSystem</w:Selector>`, `/CIM_ComputerSystem</w:ResourceURI>`},
		"IPS_OptInService/SendOptInCode":                     {`<h:OptInCode>42</h:OptInCode>`},
		"IPS_OptInService/Put":                               {`<h:OptInRequired>1</h:OptInRequired>`, `<h:OptInState>0</h:OptInState>`, `<h:Name>Intel(r) AMT OptIn Service</h:Name>`},
		"AMT_RedirectionService/RequestStateChange":          {`<h:RequestedState>32770</h:RequestedState>`},
		"AMT_RedirectionService/Put":                         {`<h:ListenerEnabled>true</h:ListenerEnabled>`, `<h:EnabledState>32771</h:EnabledState>`},
		"CIM_KVMRedirectionSAP/RequestStateChange":           {`<h:RequestedState>2</h:RequestedState>`},
		"IPS_KVMRedirectionSettingData/Put":                  {`<h:Is5900PortEnabled>true</h:Is5900PortEnabled>`, `<h:OptInPolicyTimeout>120</h:OptInPolicyTimeout>`},
	}
	for _, r := range f.requests() {
		for _, s := range want[r.Class()+"/"+r.Method()] {
			if !strings.Contains(r.Body, s) {
				t.Errorf("%s/%s sent %s; want it to contain %s", r.Class(), r.Method(), r.Body, s)
			}
		}
		delete(want, r.Class()+"/"+r.Method())
	}
	for k := range want {
		t.Errorf("no %s request", k)
	}
}

// TestBoot checks the boot sequence call by call (§1.1 row 3).
func TestBoot(t *testing.T) {
	for _, tc := range []struct {
		req    BootRequest
		power  int // the device's state before
		want   []string
		inPut  []string
		source string
	}{
		{BootRequest{Target: BootBIOS}, 2,
			[]string{"Enumerate CIM_ServiceAvailableToElement", "Pull CIM_ServiceAvailableToElement", "Get AMT_BootCapabilities", "ChangeBootOrder CIM_BootConfigSetting",
				"Get AMT_BootSettingData", "Put AMT_BootSettingData", "SetBootConfigRole CIM_BootService", "RequestPowerStateChange CIM_PowerManagementService"},
			[]string{"<h:BIOSSetup>true</h:BIOSSetup>", "<h:UseSOL>false</h:UseSOL>", "<h:LockKeyboard>false</h:LockKeyboard>", "<h:InstanceID>Intel(r) AMT:BootSettingData 0</h:InstanceID>"}, ""},
		{BootRequest{Target: BootPXE, Power: PowerOn, SOL: true}, 8,
			[]string{"Get AMT_BootCapabilities", "ChangeBootOrder CIM_BootConfigSetting", "Get AMT_BootSettingData", "Put AMT_BootSettingData",
				"SetBootConfigRole CIM_BootService", "ChangeBootOrder CIM_BootConfigSetting", "RequestPowerStateChange CIM_PowerManagementService"},
			[]string{"<h:BIOSSetup>false</h:BIOSSetup>", "<h:UseSOL>true</h:UseSOL>"}, SourcePXE},
		{BootRequest{Target: BootIDERCD, Power: PowerReset}, 2,
			[]string{"Get AMT_BootCapabilities", "ChangeBootOrder CIM_BootConfigSetting", "Get AMT_BootSettingData", "Put AMT_BootSettingData",
				"SetBootConfigRole CIM_BootService", "RequestPowerStateChange CIM_PowerManagementService"},
			[]string{"<h:UseIDER>true</h:UseIDER>", "<h:IDERBootDevice>1</h:IDERBootDevice>"}, ""},
	} {
		t.Run(tc.req.Target.String(), func(t *testing.T) {
			f := newFakeDevice(t)
			f.set(func(f *fakeDevice) { f.power = tc.power })
			c := testClient(t, f, nil)
			if err := c.Boot(ctx10(t), "dev", tc.req); err != nil {
				t.Fatal(err)
			}
			var got []string
			var bodies []fakeReq
			for _, r := range f.requests() {
				if r.Authorized {
					got = append(got, r.Method()+" "+r.Class())
					bodies = append(bodies, r)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("the sequence:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			var order []string
			for _, r := range bodies {
				switch r.Method() {
				case "ChangeBootOrder":
					order = append(order, r.Body)
				case "Put":
					for _, s := range tc.inPut {
						if !strings.Contains(r.Body, s) {
							t.Errorf("the Put %s; want %s", r.Body, s)
						}
					}
				case "SetBootConfigRole":
					if !strings.Contains(r.Body, `<w:Selector Name="InstanceID">Intel(r) AMT: Boot Configuration 0</w:Selector>`) || !strings.Contains(r.Body, "<h:Role>1</h:Role>") {
						t.Errorf("SetBootConfigRole sent %s", r.Body)
					}
				case "RequestPowerStateChange":
					want := "<h:PowerState>10</h:PowerState>"
					if tc.power != 2 {
						want = "<h:PowerState>2</h:PowerState>"
					}
					if !strings.Contains(r.Body, want) {
						t.Errorf("RequestPowerStateChange sent %s; want %s", r.Body, want)
					}
				}
			}
			if strings.Contains(order[0], "Source") {
				t.Errorf("the first ChangeBootOrder has a Source: %s", order[0])
			}
			if tc.source != "" && !strings.Contains(order[1], `<h:Source>`) && !strings.Contains(order[1], ">"+tc.source+"<") {
				t.Errorf("the second ChangeBootOrder is %s; want Source %s", order[1], tc.source)
			}
		})
	}
	t.Run("access denied", func(t *testing.T) {
		f := newFakeDevice(t)
		f.set(func(f *fakeDevice) {
			f.raw = func(w http.ResponseWriter, r *fakeReq) bool {
				if r.Method() != "ChangeBootOrder" || !strings.Contains(r.Body, "Source") {
					return false
				}
				f.fault(w, r, "AccessDenied")
				return true
			}
		})
		c := testClient(t, f, nil)
		err := c.Boot(ctx10(t), "dev", BootRequest{Target: BootPXE, Power: PowerReset})
		var fe *Fault
		if !errors.Is(err, ErrConsentRequired) || !errors.As(err, &fe) || fe.Subcode != "AccessDenied" || Sentence(err) != "The user at the device has to consent first." {
			t.Fatalf("Boot to PXE denied = %v; want ErrConsentRequired and the fault", err)
		}
		if last := f.requests()[len(f.requests())-1]; last.Method() != "ChangeBootOrder" {
			t.Errorf("the boot went on to %s after the refusal", last.Method())
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		f := newFakeDevice(t)
		c := testClient(t, f, nil)
		if err := c.Boot(ctx10(t), "dev", BootRequest{Target: BootDiagnostic, Power: PowerReset}); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Boot to diagnostics = %v; want ErrUnsupported", err)
		}
		for _, r := range f.requests() {
			if r.Method() != "Get" {
				t.Errorf("a refused boot sent %s %s", r.Method(), r.Class())
			}
		}
	})
}

// TestLogs reads both logs over several pages and checks the decoding.
func TestLogs(t *testing.T) {
	f := newFakeDevice(t)
	ev := func(ts uint32, sensor, offset byte, data ...byte) []byte {
		b := make([]byte, 21)
		b[0], b[1], b[2], b[3] = byte(ts), byte(ts>>8), byte(ts>>16), byte(ts>>24)
		b[5], b[7], b[9], b[11] = sensor, offset, 2, 34
		copy(b[13:], data)
		return b
	}
	var events [][]byte
	for i := range 1000 {
		events = append(events, ev(1764000000+uint32(i), 15, 2, 0, 19))
	}
	events[0] = ev(1764000000, 6, 0, 0, 5, 1)
	events[1] = ev(0, 15, 0) // no time: dropped
	events[2] = ev(1764000002, 15, 0, 0, 8)
	events[3] = ev(1764000003, 37, 0)
	events[4] = ev(1764000004, 99, 0)
	audit := func(app, id uint16, user string, ex ...byte) []byte {
		b := []byte{byte(app >> 8), byte(app), byte(id >> 8), byte(id), 0, byte(len(user))}
		b = append(b, user...)
		b = append(b, 0x69, 0x2d, 0x96, 0x80, 5, 8)
		b = append(b, "10.0.0.9"...)
		return append(append(b, byte(len(ex))), ex...)
	}
	var audits [][]byte
	for range 23 {
		audits = append(audits, audit(17, 3, "admin"))
	}
	audits[1] = audit(30, 0, "admin", 0, 2)
	audits[2] = []byte{0, 16, 0, 0, 2, 0x69, 0x2d, 0x96, 0x80, 0, 0, 0}
	f.set(func(f *fakeDevice) { f.events, f.audits, f.logPage = events, audits, 390 })
	c := testClient(t, f, nil)
	got, err := c.EventLog(ctx10(t), "dev")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 999 {
		t.Fatalf("%d events; want 999", len(got))
	}
	for i, want := range []string{
		"Authentication failed 261 times. The system may be under attack.",
		"System firmware error: removable boot media not found.",
		"System firmware started (at least one CPU is properly executing).",
		"Event of sensor type 99.",
		"System firmware progress: starting the operating system boot process.",
	} {
		if got[i].Description != want {
			t.Errorf("event %d: %q; want %q", i, got[i].Description, want)
		}
	}
	if e := got[1]; e.Time != time.Unix(1764000002, 0).UTC() || e.EntityName() != "BIOS" || e.SeverityName() != "information" {
		t.Errorf("event 1 = %+v, %s, %s", e, e.EntityName(), e.SeverityName())
	}
	calls := 0
	for _, r := range f.requests() {
		if r.Method() == "GetRecords" && r.Authorized {
			calls++
		}
	}
	if calls != 3 {
		t.Errorf("%d GetRecords; want 3", calls)
	}

	log, err := c.AuditLog(ctx10(t), "dev")
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Records) != 23 || log.Header.PercentageFree != 88 || log.Header.TimeOfLastRecord != "2026-12-01T10:00:00Z" {
		t.Fatalf("AuditLog = %d records, header %+v", len(log.Records), log.Header)
	}
	r := log.Records[0]
	if r.App != "RCO" || r.Event != "Performed reset" || r.Initiator != "admin" || r.NetAddress != "10.0.0.9" ||
		r.Time != time.Unix(0x692d9680, 0).UTC() || r.LocationType != 5 || r.Description != "Performed reset." {
		t.Errorf("audit record 0 = %+v", r)
	}
	if d := log.Records[1].Description; d != "Opt-in policy changed: from none to all." {
		t.Errorf("audit record 1: %q", d)
	}
	if r := log.Records[2]; r.Initiator != "Local" || r.Event != "Provisioning started" {
		t.Errorf("audit record 2 = %+v", r)
	}
}

// TestCredentialsString: credentials never print their password.
func TestCredentialsString(t *testing.T) {
	cr := Credentials{User: "admin", Password: testPass}
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "cr", cr)
	for _, s := range []string{fmt.Sprint(cr), fmt.Sprintf("%v %+v %#v %s", cr, cr, cr, cr), b.String()} {
		if strings.Contains(s, testPass) {
			t.Errorf("the password shows in %q", s)
		}
	}
}

// TestSentence: every kind of error has its own sentence.
func TestSentence(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&CredentialsError{User: "admin", Refused: true}, "rejected this AMT user name or password before"},
		{fmt.Errorf("x: %w", &CredentialsError{User: "admin"}), "rejected the AMT user name"},
		{&TunnelError{Op: "read", Err: context.DeadlineExceeded}, "did not answer in time"},
		{&TunnelError{Op: "dial", Err: errors.New("mps: no connected device")}, "not connected"},
		{&StatusError{Class: classOptIn, Method: "StartOptIn", Value: 0x821}, "consent first"},
		{&StatusError{Class: classOptIn, Method: "StartOptIn", Value: 2}, "refused: invalid state (2)"},
		{&StatusError{Class: "X", Method: "Y", Value: 99999}, "code 99999"},
		{&Fault{Subcode: "ActionNotSupported"}, "does not support"},
		{&HTTPError{Status: 404}, "does not support"},
		{&Fault{Subcode: "AccessDenied", Reason: "Access denied.\x1b[2J"}, "refused: Access denied"},
		{fmt.Errorf("%w (3 queued)", ErrQueueFull), "busy"},
		{ErrClosed, "shutting down"},
		{malformed("x"), "cannot read"},
		{context.Canceled, "cancelled"},
		{&HTTPError{Status: 500}, "The request failed."},
	} {
		if got := Sentence(tc.err); !strings.Contains(got, tc.want) || strings.ContainsRune(got, 0x1b) {
			t.Errorf("Sentence(%v) = %q; want it to contain %q", tc.err, got, tc.want)
		}
	}
}
