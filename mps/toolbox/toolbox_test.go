package toolbox_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/amtsim/simenv"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/wsman"
)

// Every test here runs the real server over real TLS on 127.0.0.1 with
// simulated devices (mps/amtsim), the toolbox dialling through the tunnels.

func newToolbox(t testing.TB, e *simenv.Env, pass string) *toolbox.Toolbox {
	tb, err := toolbox.New(toolbox.Config{
		Dial: e.Srv.Dial,
		Credentials: func(context.Context, string) (wsman.Credentials, error) {
			return wsman.Credentials{User: simenv.AMTUser, Password: pass}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	return tb
}

func amt(c *amtsim.AMTConfig) func(*amtsim.Config) {
	return func(cfg *amtsim.Config) { cfg.AMT = c }
}

func TestOffersFollowStateAndVersion(t *testing.T) {
	e := simenv.New(t)
	tb := newToolbox(t, e, simenv.AMTPass)
	cases := []struct {
		name string
		cfg  *amtsim.AMTConfig
		want []toolbox.Action
	}{
		{"off", &amtsim.AMTConfig{Version: "16.1.25", Off: true}, []toolbox.Action{toolbox.On, toolbox.BIOSOn, toolbox.PXEOn}},
		{"on, AMT 11, no agent", &amtsim.AMTConfig{Version: "11.8"}, []toolbox.Action{toolbox.Reset, toolbox.Cycle, toolbox.Off, toolbox.BIOSReset, toolbox.PXEReset}},
		{"on, AMT 16 with agent", &amtsim.AMTConfig{Version: "16.1.25", OSAgent: true},
			[]toolbox.Action{toolbox.Reset, toolbox.Cycle, toolbox.Off, toolbox.SoftReset, toolbox.SoftOff, toolbox.Sleep, toolbox.Hibernate, toolbox.BIOSReset, toolbox.PXEReset}},
		{"on, AMT 9 with agent", &amtsim.AMTConfig{Version: "9.5", OSAgent: true}, []toolbox.Action{toolbox.Reset, toolbox.Cycle, toolbox.Off, toolbox.BIOSReset, toolbox.PXEReset}},
	}
	for i, c := range cases {
		d, _ := e.Device(i, amt(c.cfg))
		st, err := tb.Status(simenv.Ctx(t), d.UUID().String())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := toolbox.Offers(st); !slices.Equal(got, c.want) {
			t.Errorf("%s: Offers = %v, want %v", c.name, got, c.want)
		}
		if !strings.HasPrefix(st.Version, strings.Split(c.cfg.Version, ".")[0]+".") || st.ControlMode != "ACM" {
			t.Errorf("%s: version %q mode %q", c.name, st.Version, st.ControlMode)
		}
	}
}

func TestPowerActionsTakeEffect(t *testing.T) {
	e := simenv.New(t)
	tb := newToolbox(t, e, simenv.AMTPass)
	d, _ := e.Device(0, amt(&amtsim.AMTConfig{Version: "16.1.25"}))
	guid := d.UUID().String()

	// On: power on is refused with its sentence, and nothing is sent.
	before := len(d.Calls())
	_, err := tb.Power(simenv.Ctx(t), guid, toolbox.On)
	if !errors.Is(err, toolbox.ErrNotOffered) || !strings.Contains(toolbox.Sentence(err), "on already") {
		t.Fatalf("power on while on: %v (%q)", err, toolbox.Sentence(err))
	}
	for _, c := range d.Calls()[before:] {
		if c.Method == "RequestPowerStateChange" {
			t.Fatal("a refused action reached the device")
		}
	}
	// Soft-off needs AMT 10 and the agent: this device has no agent.
	if _, err := tb.Power(simenv.Ctx(t), guid, toolbox.SoftOff); !errors.Is(err, toolbox.ErrNotOffered) || !strings.Contains(toolbox.Sentence(err), "OS agent") {
		t.Fatalf("soft-off without agent: %v", err)
	}
	if _, err := tb.Power(simenv.Ctx(t), guid, toolbox.Off); err != nil {
		t.Fatal(err)
	}
	if s := d.PowerState(); s != amtsim.PowerOffSoft && s != amtsim.PowerOffHard {
		t.Fatalf("after power off the host is in state %d", s)
	}
	if _, err := tb.Power(simenv.Ctx(t), guid, toolbox.On); err != nil {
		t.Fatal(err)
	}
	if d.PowerState() != amtsim.PowerOn {
		t.Fatalf("after power on the host is in state %d", d.PowerState())
	}
}

func TestBootToBIOSSequence(t *testing.T) {
	e := simenv.New(t)
	tb := newToolbox(t, e, simenv.AMTPass)
	d, _ := e.Device(0, amt(&amtsim.AMTConfig{Version: "16.1.25"}))
	guid := d.UUID().String()
	a, err := toolbox.ParseAction("bios", wsman.PowerState{State: d.PowerState()})
	if err != nil || a != toolbox.BIOSReset {
		t.Fatalf("ParseAction(bios) while on = %v, %v", a, err)
	}
	before := len(d.Calls())
	if _, err := tb.Power(simenv.Ctx(t), guid, a); err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, c := range d.Calls()[before:] {
		switch {
		case c.Method != "":
			seq = append(seq, c.Class+"."+c.Method)
		case c.Action == "Put":
			seq = append(seq, c.Class+".Put")
		}
	}
	want := []string{"CIM_BootConfigSetting.ChangeBootOrder", "AMT_BootSettingData.Put", "CIM_BootService.SetBootConfigRole", "CIM_PowerManagementService.RequestPowerStateChange"}
	if !slices.Equal(seq, want) {
		t.Fatalf("boot sequence = %v\nwant %v", seq, want)
	}
	if n, last := d.Platform().Boots(); n == 0 || last != "bios setup" {
		t.Fatalf("the host booted %d times, last %q; want bios setup", n, last)
	}
}

func TestConsentInClientControlMode(t *testing.T) {
	e := simenv.New(t)
	tb := newToolbox(t, e, simenv.AMTPass)
	d, _ := e.Device(0, amt(&amtsim.AMTConfig{Version: "16.1.25", ControlMode: amtsim.CCM}))
	guid := d.UUID().String()

	st, err := tb.Status(simenv.Ctx(t), guid)
	if err != nil || st.ControlMode != "CCM" || !st.NeedsConsent() {
		t.Fatalf("Status = %+v, %v; want CCM needing consent", st, err)
	}
	_, err = tb.Power(simenv.Ctx(t), guid, toolbox.PXEReset)
	if !errors.Is(err, wsman.ErrConsentRequired) || !strings.Contains(toolbox.Sentence(err), "consent") {
		t.Fatalf("PXE without consent: %v", err)
	}
	o, err := tb.StartConsent(simenv.Ctx(t), guid)
	if err != nil || (o.OptInState != wsman.OptInRequested && o.OptInState != wsman.OptInDisplayed) {
		t.Fatalf("StartConsent = %+v, %v", o, err)
	}
	code := d.ConsentCode()
	if len(code) != 6 {
		t.Fatalf("the device shows code %q", code)
	}
	n, _ := strconv.Atoi(code)
	wrong := (n + 1) % 1_000_000
	if err := tb.SendConsentCode(simenv.Ctx(t), guid, wrong); !errors.Is(err, toolbox.ErrWrongCode) || !strings.Contains(toolbox.Sentence(err), "did not take that code") {
		t.Fatalf("a wrong code: %v (%q)", err, toolbox.Sentence(err))
	}
	if err := tb.SendConsentCode(simenv.Ctx(t), guid, 1_000_000); !errors.Is(err, toolbox.ErrBadCode) || !strings.Contains(toolbox.Sentence(err), "six digits") {
		t.Fatalf("seven digits: %v", err)
	}
	if err := tb.SendConsentCode(simenv.Ctx(t), guid, n); err != nil {
		t.Fatalf("the right code: %v (%s)", err, toolbox.Sentence(err))
	}
	if _, err := tb.Power(simenv.Ctx(t), guid, toolbox.PXEReset); err != nil {
		t.Fatalf("PXE after consent: %v", err)
	}
	if _, last := d.Platform().Boots(); last != "pxe" {
		t.Fatalf("last boot %q, want pxe", last)
	}
	if err := tb.CancelConsent(simenv.Ctx(t), guid); err != nil {
		t.Fatal(err)
	}
}

func TestRefusals(t *testing.T) {
	e := simenv.New(t)
	d, stop := e.Device(0, nil)
	guid := d.UUID().String()

	bad, err := toolbox.New(toolbox.Config{
		Dial: e.Srv.Dial,
		Credentials: func(context.Context, string) (wsman.Credentials, error) {
			return wsman.Credentials{User: simenv.AMTUser, Password: "wrong-password"}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	for i := range 5 {
		_, err := bad.Status(simenv.Ctx(t), guid)
		// The device refuses the first; the rest are refused here, without
		// asking it (AMT locks an account out after repeated failures).
		var ce *wsman.CredentialsError
		if !errors.As(err, &ce) || ce.Refused != (i > 0) {
			t.Fatalf("call %d with a wrong password: %v", i, err)
		}
		if strings.Contains(err.Error(), "wrong-password") || strings.Contains(toolbox.Sentence(err), "wrong-password") {
			t.Fatal("the password is in the error")
		}
	}
	tb := newToolbox(t, e, simenv.AMTPass)
	if _, err := tb.Status(simenv.Ctx(t), guid); err != nil {
		t.Fatal(err)
	}
	stop()
	_, err = tb.Power(simenv.Ctx(t), guid, toolbox.Reset)
	if !errors.Is(err, wsman.ErrTunnel) || toolbox.Sentence(err) == "" {
		t.Fatalf("a device gone: %v", err)
	}
	if _, err := toolbox.ParseAction("explode", wsman.PowerState{}); err == nil {
		t.Fatal("ParseAction accepted nonsense")
	}
	if _, err := toolbox.ParseAction("3", wsman.PowerState{}); err == nil {
		t.Fatal("ParseAction accepted 3")
	}
}

func TestWatchPacesCalls(t *testing.T) {
	e := simenv.New(t)
	tb := newToolbox(t, e, simenv.AMTPass)
	var devs []*amtsim.Device
	var guids []string
	for i := range 4 {
		d, _ := e.Device(i, nil)
		devs = append(devs, d)
		guids = append(guids, d.UUID().String())
	}
	changed := make(chan string, 64)
	w := tb.Watch(toolbox.WatchOptions{Every: time.Hour, SelectedEvery: 300 * time.Millisecond, InFlight: 2,
		OnChange: func(d string) { changed <- d }})
	defer w.Close()
	w.SetDevices(guids)
	w.Select(guids[0])
	seen := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for len(seen) < len(guids) {
		select {
		case d := <-changed:
			seen[d] = true
		case <-deadline:
			t.Fatalf("readings for %d of %d devices", len(seen), len(guids))
		}
	}
	for _, g := range guids {
		r, ok := w.Get(g)
		if !ok || r.Err != nil || !r.State.On() {
			t.Errorf("%s: %+v %v", g, r, ok)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	count := func(d *amtsim.Device) int {
		n := 0
		for _, c := range d.Calls() {
			if c.Class == "CIM_ServiceAvailableToElement" && c.Action == "Enumerate" {
				n++
			}
		}
		return n
	}
	if n := count(devs[0]); n < 3 || n > 7 {
		t.Errorf("the selected device was read %d times in about 1.5 s at 300 ms", n)
	}
	for _, d := range devs[1:] {
		if n := count(d); n != 1 {
			t.Errorf("an unselected device was read %d times within its hour", n)
		}
	}
	// A power change shows after Refresh.
	if _, err := tb.Power(simenv.Ctx(t), guids[1], toolbox.Off); err != nil {
		t.Fatal(err)
	}
	w.Refresh(guids[1])
	for {
		select {
		case d := <-changed:
			if d != guids[1] {
				continue
			}
			if r, _ := w.Get(d); r.State.On() {
				t.Fatalf("after power off and Refresh: %+v", r)
			}
			return
		case <-time.After(10 * time.Second):
			t.Fatal("no reading after Refresh")
		}
	}
}
