// Package simenv is a test environment of the real server on 127.0.0.1
// with real TLS and simulated AMT devices connected to it: what the tests
// of the packages that talk to devices through tunnels (mps/wsman,
// mps/toolbox, mps/sol) share.
package simenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

// The accounts of the environment's devices.
const (
	CIRAUser = "cira"
	CIRAPass = "Cira-P@ss1"
	AMTUser  = amtsim.DefaultAMTUser
	AMTPass  = "Amt-P@ss1"
)

// Env is a running server with its devices. Everything it starts ends
// with the test.
type Env struct {
	t     testing.TB
	Srv   *mps.Server
	Addr  string
	Roots *x509.CertPool
	// RootDER is the server certificate's root, DER: what enrolment
	// installs with AddTrustedRootCertificate.
	RootDER []byte

	mu        sync.Mutex
	connected map[string]chan struct{} // device UUID → closed when it is up
}

// New starts the server.
func New(t testing.TB) *Env {
	t.Helper()
	ca := vaulttest.CA(t, "127.0.0.1")
	srv, err := mps.New(mps.Config{
		TLS: tunnel.TLSConfig(ca.TLSCertificate(), false),
		Tunnel: tunnel.Config{Auth: func(_ context.Context, _ apf.UUID, user string, pw []byte) bool {
			return user == CIRAUser && string(pw) == CIRAPass
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
	e := &Env{t: t, Srv: srv, Addr: addr.String(), connected: map[string]chan struct{}{}}
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
	e.Roots = x509.NewCertPool()
	e.Roots.AddCert(ca.Root())
	e.RootDER = ca.Root().Raw
	return e
}

// up returns the channel closed when the device connects (once per env).
func (e *Env) up(uuid string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := e.connected[uuid]
	if ch == nil {
		ch = make(chan struct{})
		e.connected[uuid] = ch
	}
	return ch
}

// Device starts simulated device i (mod may change its configuration)
// and waits until its tunnel is up. stop ends it and waits for its Run to
// return; the test's cleanup calls it too.
func (e *Env) Device(i int, mod func(*amtsim.Config)) (d *amtsim.Device, stop func()) {
	e.t.Helper()
	cfg := amtsim.Config{
		UUID: amtsim.DeviceUUID(e.t.Name(), i), Hostname: amtsim.DeviceHostname(i),
		User: CIRAUser, Password: []byte(CIRAPass), MPSAddr: e.Addr, RootCAs: e.Roots,
		MaxVersion: tls.VersionTLS12, AMTPassword: []byte(AMTPass),
	}
	if mod != nil {
		mod(&cfg)
	}
	d, stop = e.start(cfg)
	select {
	case <-e.up(d.UUID().String()):
	case <-time.After(60 * time.Second):
		e.t.Fatalf("device %d did not connect within 60 s", i)
	}
	return d, stop
}

// start makes and runs a device until stop, which the test's cleanup
// calls too.
func (e *Env) start(cfg amtsim.Config) (d *amtsim.Device, stop func()) {
	e.t.Helper()
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
	return d, stop
}

// LANDevice starts simulated device i as an unconfigured AMT on the LAN
// (amtsim.LANConfig): plain WS-Man on d.LANAddr() and TLS WS-Man on
// d.LANTLSAddr() (its certificate d.LANCertificate()), AMT account
// AMTUser/AMTPass, and no MPS until enrolment writes one; its periodic
// retries wait 50 ms rather than what the rule records. mod may change
// the configuration. Unlike Device it does not wait for a tunnel: see
// WaitConnected. stop ends it; the test's cleanup calls it too.
//
// To enrol it to this server: root RootDER; AddMpServer AccessInfo
// "127.0.0.1", InfoFormat 3, CN "127.0.0.1" (the server certificate's
// CN), Port that of Addr, Username CIRAUser, Password CIRAPass; a Periodic
// rule naming that SAP; and DetectionStrings that do not match the
// device's DNS suffix ("office.example"), or MpsType 2 to dial while
// inside.
func (e *Env) LANDevice(i int, mod func(*amtsim.Config)) (d *amtsim.Device, stop func()) {
	e.t.Helper()
	cfg := amtsim.Config{
		UUID: amtsim.DeviceUUID(e.t.Name(), i), Hostname: amtsim.DeviceHostname(i),
		MaxVersion: tls.VersionTLS12, AMTPassword: []byte(AMTPass),
		LAN: &amtsim.LANConfig{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", Interval: 50 * time.Millisecond},
	}
	if mod != nil {
		mod(&cfg)
	}
	d, stop = e.start(cfg)
	return d, stop
}

// WaitConnected waits until d's tunnel to the server is up (its first
// connection in this environment).
func (e *Env) WaitConnected(d *amtsim.Device) {
	e.t.Helper()
	select {
	case <-e.up(d.UUID().String()):
	case <-time.After(60 * time.Second):
		e.t.Fatalf("device %s did not connect within 60 s", d.UUID())
	}
}

// Ctx is a context for one step of a test: 20 s, cancelled with it.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// CheckBoot checks the arguments of a boot sequence's calls as the device
// recorded them (their order is the caller's to check): none failed, the
// first ChangeBootOrder cleared the order and the second, when source is
// set, names it, the Put sets option (when set) and not UseSOL, the boot
// configuration is made the next boot's, and the power action that
// starts the boot is a reset (the host is on). It returns the calls by
// "Action Class.Method" for further checks.
func CheckBoot(t testing.TB, calls []amtsim.Call, source, option string) map[string][]amtsim.Call {
	t.Helper()
	byName := map[string][]amtsim.Call{}
	for _, c := range calls {
		if c.ReturnValue != 0 || c.Fault != "" {
			t.Errorf("%s %s.%s got %d %q", c.Action, c.Class, c.Method, c.ReturnValue, c.Fault)
		}
		k := c.Action + " " + c.Class + "." + c.Method
		byName[k] = append(byName[k], c)
	}
	orders := byName["Invoke CIM_BootConfigSetting.ChangeBootOrder"]
	if _, ok := orders[0].Args["Source"]; ok {
		t.Errorf("the first ChangeBootOrder has Source %q; want it cleared", orders[0].Args["Source"])
	}
	if source != "" && orders[1].Args["Source"] != source {
		t.Errorf("the second ChangeBootOrder has Source %q; want %q", orders[1].Args["Source"], source)
	}
	put := byName["Put AMT_BootSettingData."][0].Args
	if option != "" && put[option] != "true" || put["UseSOL"] != "false" {
		t.Errorf("the Put has %v; want %s true, UseSOL false", put, option)
	}
	if role := byName["Invoke CIM_BootService.SetBootConfigRole"][0].Args; role["BootConfigSetting"] != wsman.BootConfig || role["Role"] != "1" {
		t.Errorf("SetBootConfigRole args %v", role)
	}
	if ps := byName["Invoke CIM_PowerManagementService.RequestPowerStateChange"][0].Args["PowerState"]; ps != "10" {
		t.Errorf("the boot starts with PowerState %s; want 10 (the host is on)", ps)
	}
	return byName
}
