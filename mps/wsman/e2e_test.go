package wsman_test

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
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// End-to-end: the real server over real TLS on 127.0.0.1, simulated AMT
// devices, and the client dialling port 16992 through the tunnels.

const (
	ciraUser = "cira"
	ciraPass = "Cira-P@ss1"
	amtPass  = "Amt-P@ss1"
)

type env struct {
	t     testing.TB
	srv   *mps.Server
	addr  string
	roots *x509.CertPool

	mu        sync.Mutex
	connected map[string]chan struct{} // device UUID → closed when it is up
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ca := vaulttest.CA(t, "127.0.0.1")
	srv, err := mps.New(mps.Config{
		TLS: tunnel.TLSConfig(ca.TLSCertificate(), false),
		Tunnel: tunnel.Config{Auth: func(_ context.Context, _ apf.UUID, user string, pw []byte) bool {
			return user == ciraUser && string(pw) == ciraPass
		}},
		MaxHandshakes: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, addr: addr.String(), connected: map[string]chan struct{}{}}
	ev, _ := srv.Subscribe(20000)
	go func() {
		for x := range ev { // until Shutdown closes it
			if x.Kind == mps.EventConnected {
				close(e.up(x.Device.UUID))
			}
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	e.roots = x509.NewCertPool()
	e.roots.AddCert(ca.Root())
	return e
}

// up returns the channel closed when the device connects (once per env).
func (e *env) up(uuid string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := e.connected[uuid]
	if ch == nil {
		ch = make(chan struct{})
		e.connected[uuid] = ch
	}
	return ch
}

// device starts a simulated device and waits until its tunnel is up. stop
// ends it and waits for its Run to return.
func (e *env) device(i int, mod func(*amtsim.Config)) (d *amtsim.Device, stop func()) {
	e.t.Helper()
	cfg := amtsim.Config{
		UUID: amtsim.DeviceUUID(e.t.Name(), i), Hostname: amtsim.DeviceHostname(i),
		User: ciraUser, Password: []byte(ciraPass), MPSAddr: e.addr, RootCAs: e.roots,
		MaxVersion: tls.VersionTLS12, AMTPassword: []byte(amtPass),
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := amtsim.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				e.t.Error("device did not stop")
			}
		})
	}
	e.t.Cleanup(stop)
	select {
	case <-e.up(d.UUID().String()):
	case <-time.After(60 * time.Second):
		e.t.Fatalf("device %d did not connect within 60 s", i)
	}
	return d, stop
}

// client returns a client that dials devices through the server with the
// given AMT password.
func (e *env) client(pass string, mod func(*wsman.Config)) *wsman.Client {
	cfg := wsman.Config{
		Dial: func(ctx context.Context, device string) (net.Conn, error) {
			return e.srv.Dial(ctx, device, amtsim.PortWSMan)
		},
		Credentials: func(context.Context, string) (wsman.Credentials, error) {
			return wsman.Credentials{User: amtsim.DefaultAMTUser, Password: pass}, nil
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := wsman.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// skipUntilSimulated skips when the simulator does not answer the
// toolbox's classes yet.
func skipUntilSimulated(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, wsman.ErrUnsupported) {
		t.Skipf("the simulator does not answer the toolbox's classes yet (%v): mps/amtsim gains them with issue 12 §5; this test runs once it does", err)
	}
}

// TestThroughTunnel: what the simulator has always served (AMT_GeneralSettings
// with digest) through a real tunnel, the nonce reused over calls, and the
// refusals (wrong credentials, a device gone).
func TestThroughTunnel(t *testing.T) {
	e := newEnv(t)
	d, stop := e.device(0, nil)
	c := e.client(amtPass, nil)
	for range 3 {
		g, err := c.GeneralSettings(ctxT(t), d.UUID().String())
		if err != nil {
			t.Fatal(err)
		}
		if g.HostName != "sim-000000" || !strings.HasPrefix(g.DigestRealm, "Digest:") {
			t.Fatalf("GeneralSettings = %+v", g)
		}
	}
	if st := c.Stats(); st.Conns != 1 || st.Devices != 1 {
		t.Errorf("Stats = %+v; want one kept-alive connection", st)
	}

	bad := e.client("wrong", nil)
	_, err := bad.GeneralSettings(ctxT(t), d.UUID().String())
	var ce *wsman.CredentialsError
	if !errors.As(err, &ce) || ce.Refused {
		t.Fatalf("GeneralSettings with a wrong password = %v; want the device's refusal", err)
	}
	if _, err := bad.GeneralSettings(ctxT(t), d.UUID().String()); !errors.As(err, &ce) || !ce.Refused {
		t.Fatalf("GeneralSettings again = %v; want refused without asking", err)
	}

	stop()
	_, err = c.GeneralSettings(ctxT(t), d.UUID().String())
	if !errors.Is(err, wsman.ErrTunnel) {
		t.Fatalf("GeneralSettings of a device gone = %v; want ErrTunnel", err)
	}
	if _, err := c.GeneralSettings(ctxT(t), "no-such-device"); !errors.Is(err, wsman.ErrTunnel) || !errors.Is(err, mps.ErrUnknownDevice) {
		t.Fatalf("GeneralSettings of an unknown device = %v; want ErrTunnel and mps.ErrUnknownDevice", err)
	}
}

// TestToolboxEndToEnd runs every operation against a simulated device over a
// real tunnel. It needs the simulator's toolbox classes (issue 12 §5).
func TestToolboxEndToEnd(t *testing.T) {
	e := newEnv(t)
	d, _ := e.device(0, nil)
	dev := d.UUID().String()
	c := e.client(amtPass, nil)
	ctx := ctxT(t)

	ps, err := c.PowerState(ctx, dev)
	skipUntilSimulated(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("power state %v", ps)

	v, err := c.Version(ctx, dev)
	if err != nil || v.AMT == "" || v.Major() == 0 || v.ControlMode == "" || !strings.Contains(v.ServerHeader, "Active Management Technology") {
		t.Errorf("Version = %+v, %v", v, err)
	}
	if g, err := c.GeneralSettings(ctx, dev); err != nil || g.HostName != "sim-000000" {
		t.Errorf("GeneralSettings = %+v, %v", g, err)
	}
	h, err := c.Hardware(ctx, dev)
	if err != nil || h.Chassis.Manufacturer == "" || h.BIOS.Version == "" || len(h.Memory) == 0 || len(h.Processors) == 0 {
		t.Errorf("Hardware = %+v, %v", h, err)
	}

	// Power: off, then on, each seen in the state.
	for _, tc := range []struct {
		a  wsman.PowerAction
		on bool
	}{{wsman.PowerOff, false}, {wsman.PowerOn, true}} {
		if err := c.RequestPowerStateChange(ctx, dev, tc.a); err != nil {
			t.Fatalf("%v: %v", tc.a, err)
		}
		ps, err := c.PowerState(ctx, dev)
		if err != nil || ps.On() != tc.on {
			t.Errorf("PowerState after %v = %v, %v", tc.a, ps, err)
		}
	}

	// Consent: a code is requested, then cancelled.
	o, err := c.OptInService(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("consent: required %#x state %d", o.OptInRequired, o.OptInState)
	if err := c.StartOptIn(ctx, dev); err != nil {
		t.Errorf("StartOptIn: %v", err)
	} else if o, err := c.OptInService(ctx, dev); err != nil || o.OptInState == wsman.OptInNotStarted {
		t.Errorf("OptInService after StartOptIn = %+v, %v", o, err)
	}
	if err := c.SendOptInCode(ctx, dev, 0); !errors.As(err, new(*wsman.StatusError)) {
		t.Errorf("SendOptInCode with a wrong code = %v; want a StatusError", err)
	}
	if err := c.CancelOptIn(ctx, dev); err != nil {
		t.Errorf("CancelOptIn: %v", err)
	}

	// Boot to BIOS, then to PXE: the settings are kept until the boot
	// takes them (and clears them, as BIOS does).
	for _, tc := range []struct {
		target wsman.BootTarget
		check  func(wsman.BootSettingData) bool
	}{
		{wsman.BootBIOS, func(b wsman.BootSettingData) bool { return b.BIOSSetup || b.OptionsCleared }},
		{wsman.BootPXE, func(b wsman.BootSettingData) bool { return !b.BIOSSetup }},
	} {
		err := c.Boot(ctx, dev, wsman.BootRequest{Target: tc.target})
		if errors.Is(err, wsman.ErrConsentRequired) {
			t.Logf("boot to %v needs consent: %v", tc.target, err)
			continue
		}
		if err != nil {
			t.Errorf("Boot to %v: %v", tc.target, err)
			continue
		}
		if b, err := c.BootSettingData(ctx, dev); err != nil || !tc.check(b) {
			t.Errorf("BootSettingData after a boot to %v = %+v, %v", tc.target, b, err)
		}
	}

	// Redirection switches.
	for _, want := range []wsman.FeatureSwitches{{SOL: true, IDER: true, KVM: true}, {SOL: true}} {
		if err := c.SetFeatures(ctx, dev, want); err != nil {
			t.Errorf("SetFeatures(%+v): %v", want, err)
			continue
		}
		f, err := c.Features(ctx, dev)
		if err != nil || f.SOL != want.SOL || f.IDER != want.IDER || f.KVMAvailable && f.KVM != want.KVM {
			t.Errorf("Features after SetFeatures(%+v) = %+v, %v", want, f, err)
		}
	}

	// The logs hold what happened.
	events, err := c.EventLog(ctx, dev)
	if err != nil {
		t.Errorf("EventLog: %v", err)
	}
	for _, ev := range events {
		if ev.Description == "" {
			t.Errorf("an event without a description: %+v", ev)
		}
	}
	log, err := c.AuditLog(ctx, dev)
	if err != nil {
		t.Fatalf("AuditLog: %v", err)
	}
	seen := map[string]bool{}
	for _, r := range log.Records {
		seen[r.Event] = true
	}
	if !seen["Performed power down"] && !seen["Performed power up"] {
		t.Errorf("the audit log has no power action: %+v", log.Records)
	}
	t.Logf("%d events, %d audit records", len(events), len(log.Records))
}
