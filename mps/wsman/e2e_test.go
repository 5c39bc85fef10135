package wsman_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/amtsim/simenv"
	"github.com/presence-mps/presence/mps/wsman"
)

// End-to-end: the real server over real TLS on 127.0.0.1, simulated AMT
// devices, and the client dialling port 16992 through the tunnels.

const amtPass = simenv.AMTPass

// env is simenv's server and devices, with a client maker.
type env struct {
	*simenv.Env
	t testing.TB
}

func newEnv(t testing.TB) *env { return &env{simenv.New(t), t} }

// device starts simulated device i and waits until its tunnel is up.
func (e *env) device(i int, mod func(*amtsim.Config)) (*amtsim.Device, func()) {
	e.t.Helper()
	return e.Device(i, mod)
}

// client returns a client that dials devices through the server with the
// given AMT password.
func (e *env) client(pass string, mod func(*wsman.Config)) *wsman.Client {
	cfg := wsman.Config{
		Dial: func(ctx context.Context, device string) (net.Conn, error) {
			return e.Srv.Dial(ctx, device, amtsim.PortWSMan)
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

func ctxT(t testing.TB) context.Context { return simenv.Ctx(t) }

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

// amtDevice starts a device on the given platform.
func (e *env) amtDevice(i int, amt *amtsim.AMTConfig) *amtsim.Device {
	e.t.Helper()
	d, _ := e.device(i, func(c *amtsim.Config) { c.AMT = amt })
	return d
}

// callsSince returns the device's record of calls after the first n,
// each as "Action Class.Method".
func callsSince(d *amtsim.Device, n int) ([]amtsim.Call, []string) {
	calls := d.Calls()[n:]
	var s []string
	for _, c := range calls {
		x := c.Action + " " + c.Class
		if c.Method != "" {
			x += "." + c.Method
		}
		s = append(s, x)
	}
	return calls, s
}

// TestToolboxEndToEnd runs every operation against a simulated AMT 16 in
// admin control mode over a real tunnel and checks the answers against the
// simulator's own state and record of calls.
func TestToolboxEndToEnd(t *testing.T) {
	e := newEnv(t)
	d := e.amtDevice(0, &amtsim.AMTConfig{Version: "16", OSAgent: true})
	dev := d.UUID().String()
	c := e.client(amtPass, nil)
	ctx := ctxT(t)
	hw, _ := amtsim.HardwareProfile("desktop")

	ps, err := c.PowerState(ctx, dev)
	skipUntilSimulated(t, err)
	if err != nil || !ps.On() || len(ps.Available) == 0 {
		t.Fatalf("PowerState = %v %v, %v; want on, with the actions it allows", ps, ps.Available, err)
	}

	t.Run("version", func(t *testing.T) {
		v, err := c.Version(ctx, dev)
		if err != nil || v.AMT != d.Platform().Version() || v.Major() != 16 || v.ControlMode != "ACM" || v.Setup.ProvisioningState != 2 ||
			!strings.Contains(v.ServerHeader, "Active Management Technology "+v.AMT) {
			t.Errorf("Version = %+v, %v; want %s in ACM", v, err, d.Platform().Version())
		}
		g, err := c.GeneralSettings(ctx, dev)
		if err != nil || g.HostName != "sim-000000" {
			t.Errorf("GeneralSettings = %+v, %v", g, err)
		}
	})

	t.Run("hardware", func(t *testing.T) {
		h, err := c.Hardware(ctx, dev)
		if err != nil {
			t.Fatal(err)
		}
		if h.Chassis.Manufacturer != hw.Manufacturer || h.Chassis.Model != hw.Model || h.Board.Model != hw.BoardModel ||
			h.BIOS.Manufacturer != hw.BIOSVendor || h.BIOS.Version != hw.BIOSVersion || !strings.HasPrefix(h.BIOS.ReleaseDate, hw.BIOSDate.Format("2006-01-02")) ||
			len(h.Memory) != len(hw.Memory) || len(h.Processors) != 1 || h.Processors[0].MaxClockSpeed != hw.CPUMaxMHz ||
			len(h.Chips) != 1 || h.Chips[0].Version != hw.CPU || len(h.Disks) != len(hw.Disks) || len(h.Packages) != len(hw.Disks) ||
			len(h.Missing) != 0 {
			t.Errorf("Hardware = %+v; want the simulator's %+v", h, hw)
		}
		if len(h.Memory) > 0 && h.Memory[0].Capacity != int64(hw.Memory[0].SizeMB)<<20 {
			t.Errorf("memory capacity %d; want %d MB", h.Memory[0].Capacity, hw.Memory[0].SizeMB)
		}
		if len(h.Packages) > 0 && h.Packages[0].Model != hw.Disks[0].Model {
			t.Errorf("disk model %q; want %q", h.Packages[0].Model, hw.Disks[0].Model)
		}
	})

	t.Run("power", func(t *testing.T) {
		for _, tc := range []struct {
			a     wsman.PowerAction
			state int
		}{{wsman.PowerOff, 8}, {wsman.PowerOn, 2}, {wsman.PowerSleep, 4}, {wsman.PowerOn, 2}, {wsman.PowerCycle, 2}, {wsman.PowerReset, 2}} {
			if err := c.RequestPowerStateChange(ctx, dev, tc.a); err != nil {
				t.Fatalf("%v: %v", tc.a, err)
			}
			ps, err := c.PowerState(ctx, dev)
			if err != nil || ps.State != tc.state || d.PowerState() != tc.state {
				t.Errorf("after %v: PowerState = %v, %v, the simulator says %d; want %d", tc.a, ps, err, d.PowerState(), tc.state)
			}
		}
		if st, err := c.OSPowerSavingState(ctx, dev); err != nil || st != wsman.OSPowerSavingFullPower {
			t.Errorf("OSPowerSavingState = %d, %v", st, err)
		}
		// An action the state does not allow: power up a host that is on.
		err := c.RequestPowerStateChange(ctx, dev, wsman.PowerOn)
		var se *wsman.StatusError
		if !errors.As(err, &se) || se.Value != wsman.StatusNotReady {
			t.Errorf("power on while on = %v; want NOT_READY", err)
		}
	})

	t.Run("boot", func(t *testing.T) {
		for _, tc := range []struct {
			req    wsman.BootRequest
			source string
			put    string
			boot   string
		}{
			{wsman.BootRequest{Target: wsman.BootBIOS}, "", "BIOSSetup", "bios setup"},
			{wsman.BootRequest{Target: wsman.BootPXE, Power: wsman.PowerReset}, wsman.SourcePXE, "", "pxe"},
		} {
			n := len(d.Calls())
			if err := c.Boot(ctx, dev, tc.req); err != nil {
				t.Fatalf("Boot to %v: %v", tc.req.Target, err)
			}
			calls, got := callsSince(d, n)
			want := []string{
				"Get AMT_BootCapabilities", "Invoke CIM_BootConfigSetting.ChangeBootOrder",
				"Get AMT_BootSettingData", "Put AMT_BootSettingData", "Invoke CIM_BootService.SetBootConfigRole",
			}
			if tc.req.Power == 0 {
				want = append([]string{"Enumerate CIM_ServiceAvailableToElement", "Pull CIM_ServiceAvailableToElement"}, want...)
			}
			if tc.source != "" {
				want = append(want, "Invoke CIM_BootConfigSetting.ChangeBootOrder")
			}
			want = append(want, "Invoke CIM_PowerManagementService.RequestPowerStateChange")
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("Boot to %v made the calls\n%s\nwant\n%s", tc.req.Target, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			simenv.CheckBoot(t, calls, tc.source, tc.put)
			if _, last := d.Platform().Boots(); last != tc.boot {
				t.Errorf("the host's last boot is %q; want %q", last, tc.boot)
			}
		}
	})

	t.Run("consent", func(t *testing.T) {
		o, err := c.OptInService(ctx, dev)
		if err != nil || o.OptInRequired != wsman.OptInNone {
			t.Fatalf("OptInService = %+v, %v; want no consent needed in ACM", o, err)
		}
		if err := c.SetOptInRequired(ctx, dev, wsman.OptInKVM); err != nil {
			t.Fatal(err)
		}
		if o, err := c.OptInService(ctx, dev); err != nil || o.OptInRequired != wsman.OptInKVM {
			t.Errorf("OptInService after SetOptInRequired(KVM) = %+v, %v", o, err)
		}
		consent(t, c, d)
		if err := c.SetOptInRequired(ctx, dev, wsman.OptInNone); err != nil {
			t.Error(err)
		}
	})

	t.Run("redirection", func(t *testing.T) {
		for _, want := range []wsman.FeatureSwitches{{SOL: true, IDER: false, KVM: false}, {SOL: true, IDER: true, KVM: true}} {
			if err := c.SetFeatures(ctx, dev, want); err != nil {
				t.Fatalf("SetFeatures(%+v): %v", want, err)
			}
			f, err := c.Features(ctx, dev)
			if err != nil || f.SOL != want.SOL || f.IDER != want.IDER || f.KVM != want.KVM || !f.KVMAvailable || !f.Redirection {
				t.Errorf("Features after SetFeatures(%+v) = %+v, %v", want, f, err)
			}
		}
		k, err := c.KVMRedirectionSettingData(ctx, dev)
		if err != nil {
			t.Fatal(err)
		}
		k.SessionTimeout = 7
		if err := c.PutKVMRedirectionSettingData(ctx, dev, k); err != nil {
			t.Fatal(err)
		}
		if k2, err := c.KVMRedirectionSettingData(ctx, dev); err != nil || k2.SessionTimeout != 7 {
			t.Errorf("KVMRedirectionSettingData after the Put = %+v, %v", k2, err)
		}
	})

	t.Run("logs", func(t *testing.T) {
		events, err := c.EventLog(ctx, dev)
		if err != nil {
			t.Fatal(err)
		}
		sim := d.Platform().EventRecords()
		if len(events) == 0 || len(events) > len(sim) {
			t.Errorf("%d events; the simulator holds %d", len(events), len(sim))
		}
		for _, ev := range events {
			if ev.Description == "" || ev.Time.IsZero() {
				t.Errorf("event %+v", ev)
			}
		}
		log, err := c.AuditLog(ctx, dev)
		if err != nil {
			t.Fatal(err)
		}
		if len(log.Records) != len(d.Platform().AuditRecords()) || log.Header.CurrentNumberOfRecords != len(log.Records) {
			t.Errorf("%d audit records, header %+v; the simulator holds %d", len(log.Records), log.Header, len(d.Platform().AuditRecords()))
		}
		seen := map[string]int{}
		for _, r := range log.Records {
			seen[r.Event]++
			if r.Description == "" || r.App == "" {
				t.Errorf("audit record %+v", r)
			}
		}
		for _, ev := range []string{"Provisioning completed", "Performed power down", "Performed power up", "Performed reset", "Performed power cycle", "Opt-in policy changed", "Consent code sent"} {
			if seen[ev] == 0 {
				t.Errorf("no %q in the audit log: %v", ev, seen)
			}
		}
		t.Logf("%d events, %d audit records", len(events), len(log.Records))
	})
}

// consent asks the device for a code, sends a wrong one and then the one its
// screen shows, and checks the consent is given, then cancels it.
func consent(t *testing.T, c *wsman.Client, d *amtsim.Device) {
	t.Helper()
	ctx, dev := ctxT(t), d.UUID().String()
	if err := c.StartOptIn(ctx, dev); err != nil {
		t.Fatalf("StartOptIn: %v", err)
	}
	code := d.ConsentCode()
	if len(code) != 6 {
		t.Fatalf("the device shows code %q", code)
	}
	n, _ := strconv.Atoi(code)
	err := c.SendOptInCode(ctx, dev, (n+1)%1000000)
	var se *wsman.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("SendOptInCode with a wrong code = %v; want a StatusError", err)
	}
	if err := c.SendOptInCode(ctx, dev, n); err != nil {
		t.Fatalf("SendOptInCode(%s): %v", code, err)
	}
	if o, err := c.OptInService(ctx, dev); err != nil || !o.Consented() {
		t.Fatalf("OptInService after the code = %+v, %v; want consented", o, err)
	}
}

// TestClientControlMode: in CCM (here on AMT 9) a boot needs consent
// (0x0821 until the user gives the code), the policy cannot be changed, and
// what needs AMT 10 is not there.
func TestClientControlMode(t *testing.T) {
	e := newEnv(t)
	d := e.amtDevice(0, &amtsim.AMTConfig{Version: "9", ControlMode: amtsim.CCM})
	dev := d.UUID().String()
	c := e.client(amtPass, nil)
	ctx := ctxT(t)
	v, err := c.Version(ctx, dev)
	skipUntilSimulated(t, err)
	if err != nil || v.ControlMode != "CCM" || v.Major() != 9 {
		t.Fatalf("Version = %+v, %v; want AMT 9 in CCM", v, err)
	}
	o, err := c.OptInService(ctx, dev)
	if err != nil || o.OptInRequired != wsman.OptInAll {
		t.Fatalf("OptInService = %+v, %v; want consent for all", o, err)
	}
	err = c.Boot(ctx, dev, wsman.BootRequest{Target: wsman.BootPXE, Power: wsman.PowerReset})
	if !errors.Is(err, wsman.ErrConsentRequired) || wsman.Sentence(err) != "The user at the device has to consent first." {
		t.Fatalf("Boot without consent = %v; want ErrConsentRequired", err)
	}
	if boots, _ := d.Platform().Boots(); boots != 0 {
		t.Fatalf("the host booted %d times without consent", boots)
	}
	consent(t, c, d)
	if err := c.Boot(ctx, dev, wsman.BootRequest{Target: wsman.BootPXE, Power: wsman.PowerReset}); err != nil {
		t.Fatalf("Boot with consent: %v", err)
	}
	if _, last := d.Platform().Boots(); last != "pxe" {
		t.Errorf("the last boot is %q; want pxe", last)
	}
	if err := c.SetOptInRequired(ctx, dev, wsman.OptInNone); err == nil {
		t.Error("SetOptInRequired in CCM succeeded")
	}
	// A consent in place refuses a new request; cancelled, it allows one,
	// which can be cancelled too.
	var se *wsman.StatusError
	if err := c.StartOptIn(ctx, dev); !errors.As(err, &se) || se.Value != 2 {
		t.Errorf("StartOptIn with a consent in place = %v; want 2", err)
	}
	if err := c.CancelOptIn(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if err := c.StartOptIn(ctx, dev); err != nil || d.ConsentCode() == "" {
		t.Fatalf("StartOptIn = %v; the device shows %q", err, d.ConsentCode())
	}
	if err := c.CancelOptIn(ctx, dev); err != nil || d.ConsentCode() != "" {
		t.Errorf("CancelOptIn = %v; the device still shows %q", err, d.ConsentCode())
	}
	// AMT 9 has no IPS_PowerManagementService and no OS actions.
	if _, err := c.OSPowerSavingState(ctx, dev); !errors.Is(err, wsman.ErrUnsupported) {
		t.Errorf("OSPowerSavingState on AMT 9 = %v; want ErrUnsupported", err)
	}
	if err := c.RequestPowerStateChange(ctx, dev, wsman.PowerSleep); !errors.As(err, new(*wsman.StatusError)) {
		t.Errorf("sleep without the OS agent = %v; want a StatusError", err)
	}
}

// TestPlatformWithoutKVM: a platform without KVM reports it absent rather
// than failing, and refuses to switch it on with ErrUnsupported.
func TestPlatformWithoutKVM(t *testing.T) {
	e := newEnv(t)
	hw, _ := amtsim.HardwareProfile("headless")
	d := e.amtDevice(0, &amtsim.AMTConfig{Version: "16", Hardware: &hw})
	dev := d.UUID().String()
	c := e.client(amtPass, nil)
	ctx := ctxT(t)
	f, err := c.Features(ctx, dev)
	skipUntilSimulated(t, err)
	if err != nil || f.KVMAvailable || f.KVM || !f.SOL {
		t.Fatalf("Features = %+v, %v; want SOL without KVM", f, err)
	}
	if _, err := c.KVMRedirectionSAP(ctx, dev); !errors.Is(err, wsman.ErrUnsupported) || wsman.Sentence(err) != "This device's platform does not support that." {
		t.Errorf("KVMRedirectionSAP = %v; want ErrUnsupported", err)
	}
	if err := c.SetFeatures(ctx, dev, wsman.FeatureSwitches{SOL: true, KVM: true}); !errors.Is(err, wsman.ErrUnsupported) {
		t.Errorf("SetFeatures with KVM = %v; want ErrUnsupported", err)
	}
	if err := c.SetFeatures(ctx, dev, wsman.FeatureSwitches{SOL: true}); err != nil {
		t.Errorf("SetFeatures without KVM: %v", err)
	}
}

// TestWrongCredentialsNoStorm: a client with a wrong password tries once;
// the device records one failed login however often it is asked.
func TestWrongCredentialsNoStorm(t *testing.T) {
	e := newEnv(t)
	d := e.amtDevice(0, nil)
	dev := d.UUID().String()
	bad := e.client("not the password", nil)
	for i := range 10 {
		_, err := bad.PowerState(ctxT(t), dev)
		var ce *wsman.CredentialsError
		if !errors.As(err, &ce) || ce.Refused != (i > 0) {
			t.Fatalf("call %d = %v; want a CredentialsError, refused from the second on", i, err)
		}
	}
	failed := 0
	for _, r := range d.Platform().AuditRecords() {
		if r.AuditAppID == 16 && r.EventID == 5 { // Security Admin: ACL access with invalid credentials
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("the device recorded %d failed logins; want 1", failed)
	}
}

// TestDeviceGoneMidCall: a device whose tunnel ends during a call fails the
// call with ErrTunnel at once, not at the deadline.
func TestDeviceGoneMidCall(t *testing.T) {
	e := newEnv(t)
	d, stop := e.device(0, func(c *amtsim.Config) { c.AMT = &amtsim.AMTConfig{EventLogRecords: 390} })
	dev := d.UUID().String()
	c := e.client(amtPass, nil)
	if _, err := c.PowerState(ctxT(t), dev); err != nil {
		skipUntilSimulated(t, err)
		t.Fatal(err)
	}
	start := time.Now()
	err := c.Do(ctxT(t), dev, func(ctx context.Context, s *wsman.Session) error {
		if _, err := s.PowerState(ctx); err != nil {
			return err
		}
		stop() // the device goes away between two requests of one call
		_, err := s.EventLog(ctx)
		return err
	})
	if !errors.Is(err, wsman.ErrTunnel) || time.Since(start) > 10*time.Second {
		t.Fatalf("a call whose device went away = %v after %v; want ErrTunnel at once", err, time.Since(start))
	}
	if s := wsman.Sentence(err); s != "The device is not connected, or its tunnel went away." {
		t.Errorf("Sentence = %q", s)
	}
}
