package adapter_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/app/adapter"
	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/app/ui/uitest"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/wsman"
)

// The window's AMT toolbox against the real engine: a real instance on
// loopback, simulated devices over real TLS tunnels, the real adapter and
// toolbox, and the window driven with Fyne's test driver (its blocking
// work run inline).

// amtEnv is an instance with simulated AMT devices and a window over it.
type amtEnv struct {
	in    *instance.Instance
	hist  *history.Store
	b     *adapter.Backend
	u     *ui.UI
	w     fyne.Window
	devs  []*amtsim.Device
	guids []string
}

// amtDevice is a device of an amtEnv: its platform and, if not "", an
// AMT password other than the vault's.
type amtDevice struct {
	amt      *amtsim.AMTConfig
	password string
}

func newAMTEnv(t *testing.T, watch toolbox.WatchOptions, devices ...amtDevice) *amtEnv {
	t.Helper()
	hist, err := history.Open(filepath.Join(t.TempDir(), "history.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hist.Close() }) // after the instance's shutdown
	in, ca := instancetest.Start(t, func(c *instance.Config) { c.History = hist })
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	e := &amtEnv{in: in, hist: hist}
	for i, dc := range devices {
		pw := instancetest.AMTPass
		if dc.password != "" {
			pw = dc.password
		}
		d, err := amtsim.New(amtsim.Config{UUID: amtsim.DeviceUUID(t.Name(), i), Hostname: amtsim.DeviceHostname(i),
			User: instancetest.CIRAUser, Password: []byte(instancetest.CIRAPass), MPSAddr: in.Listening().CIRA.String(),
			RootCAs: roots, MaxVersion: tls.VersionTLS12, AMTPassword: []byte(pw), AMT: dc.amt})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { d.Run(ctx) })
		e.devs = append(e.devs, d)
		e.guids = append(e.guids, d.UUID().String())
	}
	waitUntil(t, "the devices", func() bool {
		devs := in.Server.Devices()
		return len(devs) == len(devices) && !slices.ContainsFunc(devs, func(d mps.Device) bool { return !d.Info.Ready })
	})
	e.b = adapter.New(in, settings.Settings{}, nil)
	e.b.PowerWatch = watch
	t.Cleanup(e.b.Close)
	e.u, e.w = newWindow(t, e.b)
	e.w.Resize(fyne.NewSize(1200, 900))
	e.u.Refresh()
	e.u.Show("Devices")
	return e
}

// pick selects guid's row in the device table, as a click on it does
// (the table does not tell of a row selected again).
func pick(t *testing.T, u *ui.UI, guid string) {
	t.Helper()
	u.Dev.Table.UnselectAll()
	selectDevice(t, u, guid)
}

// flat is a pane text with its line breaks as spaces.
func flat(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// calls returns the device's calls of class and method ("" for any).
func calls(d *amtsim.Device, class, method string) []amtsim.Call {
	return slices.DeleteFunc(d.Calls(), func(c amtsim.Call) bool {
		return c.Class != class || (method != "" && c.Method != method)
	})
}

// Reset from the pane, confirmed, resets the device; an off device offers
// Power on and not Reset, and Power on powers it up; an action the state
// no longer allows (the device went off behind the pane's back) is refused
// in its sentence, and the pane then offers what fits.
func TestWindowPowerActions(t *testing.T) {
	e := newAMTEnv(t, toolbox.WatchOptions{},
		amtDevice{amt: &amtsim.AMTConfig{Version: "16.1.25"}},
		amtDevice{amt: &amtsim.AMTConfig{Version: "16.1.25", Off: true}})
	on, off := e.devs[0], e.devs[1]
	pick(t, e.u, e.guids[0])
	p := e.u.Dev.AMT
	if !strings.HasPrefix(p.Info.Text, "Power: on\nAMT 16.1.25, admin control mode\nConsent: not needed") {
		t.Fatalf("pane of an on device: %q", p.Info.Text)
	}
	if p.Button("Reset") == nil || p.Button("Power on") != nil {
		t.Fatalf("an on device offers %q", p.Offered())
	}
	boots, _ := on.Platform().Boots()
	test.Tap(p.Button("Reset"))
	if !strings.Contains(uitest.DialogText(e.w), "Presence will send Reset to sim-000000") {
		t.Fatalf("confirmation: %q", uitest.DialogText(e.w))
	}
	if len(calls(on, "CIM_PowerManagementService", "RequestPowerStateChange")) != 0 {
		t.Fatal("the device was asked to reset before the confirmation")
	}
	uitest.TapDialogButton(t, e.w, "Reset")
	rq := calls(on, "CIM_PowerManagementService", "RequestPowerStateChange")
	if n, last := on.Platform().Boots(); n != boots+1 || last != "normal" || len(rq) != 1 || rq[0].Args["PowerState"] != "10" {
		t.Fatalf("after Reset: %d boots (was %d), last %q, requests %+v", n, boots, last, rq)
	}
	if p.Msg.Text != "sim-000000 accepted Reset." || p.Busy() {
		t.Fatalf("message %q, busy %v", p.Msg.Text, p.Busy())
	}

	pick(t, e.u, e.guids[1])
	if !strings.HasPrefix(p.Info.Text, "Power: off\n") || p.Button("Power on") == nil || p.Button("Reset") != nil || p.Button("Power off") != nil {
		t.Fatalf("an off device: %q, offers %q", p.Info.Text, p.Offered())
	}
	test.Tap(p.Button("Power on")) // not disruptive: no confirmation
	if off.PowerState() != 2 || p.Button("Power on") != nil || p.Button("Power off") == nil {
		t.Fatalf("after Power on: power state %d, offers %q", off.PowerState(), p.Offered())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.in.AMT.Power(ctx, e.guids[1], toolbox.Off); err != nil {
		t.Fatal(err)
	}
	test.Tap(p.Button("Power off"))
	uitest.TapDialogButton(t, e.w, "Power off")
	want := toolbox.Sentence(&toolbox.NotOfferedError{Action: toolbox.Off, Why: "the device is off, not on"})
	if flat(p.Msg.Text) != want || p.Button("Power on") == nil {
		t.Fatalf("refusal %q, want %q; offers %q", flat(p.Msg.Text), want, p.Offered())
	}
}

// In client control mode a boot option asks for the code the device shows
// first: a wrong one is said and may be retried, the right one lets the
// reset to BIOS through (the device boots to BIOS setup). Request consent
// then Cancel withdraws the request on the device. A consent withdrawn
// behind the pane's back is a refusal with its sentence.
func TestWindowConsent(t *testing.T) {
	e := newAMTEnv(t, toolbox.WatchOptions{}, amtDevice{amt: &amtsim.AMTConfig{Version: "16.1.25", ControlMode: amtsim.CCM}})
	d := e.devs[0]
	pick(t, e.u, e.guids[0])
	p := e.u.Dev.AMT
	if !p.Consent.Visible() || !strings.Contains(p.Info.Text, "client control mode") {
		t.Fatalf("CCM pane: consent button %v, %q", p.Consent.Visible(), p.Info.Text)
	}
	test.Tap(p.Button("Reset to BIOS"))
	uitest.TapDialogButton(t, e.w, "Reset to BIOS")
	c := p.Consenting
	code := d.ConsentCode()
	if c == nil || len(code) != 6 {
		t.Fatalf("consent dialog %v, the device shows %q", c, code)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	test.Type(c.Code, wrong)
	test.Tap(c.Send)
	if p.Consenting != c || !strings.HasPrefix(flat(c.Msg.Text), "The device did not take that code:") {
		t.Fatalf("wrong code: dialog open %v, %q", p.Consenting == c, c.Msg.Text)
	}
	if boots, _ := d.Platform().Boots(); boots != 0 {
		t.Fatalf("the host booted %d times before consent", boots)
	}
	test.Type(c.Code, code)
	test.Tap(c.Send)
	if n, last := d.Platform().Boots(); p.Consenting != nil || n != 1 || last != "bios setup" {
		t.Fatalf("right code: dialog open %v, %d boots, last %q; pane %q", p.Consenting != nil, n, last, p.Msg.Text)
	}
	if p.Msg.Text != "sim-000000 accepted Reset to BIOS." {
		t.Fatalf("message %q", p.Msg.Text)
	}

	// The consent given lasts a while: withdrawn on the device's side, the
	// pane still believes it and sends; the refusal says why.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	test.Tap(p.Refresh)
	if p.Consent.Visible() {
		t.Fatalf("consent still asked for after it was given: %q", p.Info.Text)
	}
	if err := e.in.AMT.CancelConsent(ctx, e.guids[0]); err != nil {
		t.Fatal(err)
	}
	test.Tap(p.Button("Reset to PXE"))
	uitest.TapDialogButton(t, e.w, "Reset to PXE")
	if flat(p.Msg.Text) != toolbox.Sentence(wsman.ErrConsentRequired) || !p.Consent.Visible() {
		t.Fatalf("without consent: %q, consent button %v", p.Msg.Text, p.Consent.Visible())
	}
	if _, last := d.Platform().Boots(); last != "bios setup" {
		t.Fatalf("the host booted (%q) without consent", last)
	}

	test.Tap(p.Consent)
	if p.Consenting == nil || d.ConsentCode() == "" {
		t.Fatal("Request consent showed no code")
	}
	test.Tap(p.Consenting.Cancel)
	if d.ConsentCode() != "" || d.Platform().OptInState() != wsman.OptInNotStarted || p.Msg.Text != "The consent request was withdrawn." {
		t.Fatalf("after Cancel the device shows %q (state %d); pane %q", d.ConsentCode(), d.Platform().OptInState(), p.Msg.Text)
	}
}

// Wrong AMT credentials are said in a sentence, and the device is not
// asked again with them however often the admin presses Refresh (AMT
// locks accounts out). A device that goes mid-session is said plainly.
func TestWindowRefusals(t *testing.T) {
	e := newAMTEnv(t, toolbox.WatchOptions{Every: time.Hour},
		amtDevice{amt: &amtsim.AMTConfig{}, password: "Other-P@ss9"},
		amtDevice{amt: &amtsim.AMTConfig{}})
	pick(t, e.u, e.guids[0])
	p := e.u.Dev.AMT
	// The watch's first reading may have been refused first.
	if !strings.HasPrefix(flat(p.Info.Text), "The AMT status could not be read: The device rejected ") {
		t.Fatalf("wrong password: %q", p.Info.Text)
	}
	for range 3 {
		test.Tap(p.Refresh)
	}
	if !strings.Contains(flat(p.Info.Text), "Presence does not try it again until it is changed") || len(p.Offered()) != 0 {
		t.Fatalf("after Refresh: %q, offers %q", p.Info.Text, p.Offered())
	}
	failed := 0
	for _, r := range e.devs[0].Platform().AuditRecords() {
		if r.AuditAppID == 16 && r.EventID == 5 { // Security Admin: ACL access with invalid credentials
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("the device saw %d failed logins; want 1", failed)
	}

	pick(t, e.u, e.guids[1])
	if p.Button("Reset") == nil {
		t.Fatalf("offers %q", p.Offered())
	}
	// The device goes; the pane has not heard yet.
	if _, _, err := e.in.Disconnect(context.Background(), e.guids[1], "test"); err != nil {
		t.Fatal(err)
	}
	test.Tap(p.Refresh)
	if !strings.Contains(flat(p.Info.Text), "The device is not connected, or its tunnel went away.") {
		t.Fatalf("device gone: %q", p.Info.Text)
	}
}

// The Power column fills from the watch; the selected device is read more
// often than the others, and no device more often than the watch allows.
func TestWindowPowerColumn(t *testing.T) {
	const every, selected = 900 * time.Millisecond, 150 * time.Millisecond
	e := newAMTEnv(t, toolbox.WatchOptions{Every: every, SelectedEvery: selected},
		amtDevice{amt: &amtsim.AMTConfig{}}, amtDevice{amt: &amtsim.AMTConfig{Off: true}}, amtDevice{amt: &amtsim.AMTConfig{}})
	power := func() []string {
		e.u.Refresh()
		var out []string
		for r := range e.u.Shown() {
			out = append(out, e.u.Dev.Cell(r, "Power"))
		}
		return out
	}
	waitUntil(t, "the Power column", func() bool { return slices.Equal(power(), []string{"on", "off", "on"}) })
	pick(t, e.u, e.guids[1])
	reads := func(d *amtsim.Device) []time.Time { return watchReads(d) }
	waitUntil(t, "six reads of the selected device", func() bool { return len(reads(e.devs[1])) >= 6 })
	sel, other := reads(e.devs[1]), reads(e.devs[0])
	if len(other) >= len(sel) {
		t.Fatalf("the selected device was read %d times, another %d times", len(sel), len(other))
	}
	const slack = 50 * time.Millisecond
	for _, c := range []struct {
		name  string
		reads []time.Time
		gap   time.Duration
	}{{"selected", sel, selected}, {"other", other, every}, {"third", reads(e.devs[2]), every}} {
		for i := 1; i < len(c.reads); i++ {
			if g := c.reads[i].Sub(c.reads[i-1]); g < c.gap-slack {
				t.Errorf("%s device: reads %v apart; the watch allows one per %v", c.name, g, c.gap)
			}
		}
	}
}

// watchReads returns the times the watch read the device's power state:
// the CIM_ServiceAvailableToElement enumerations not followed by the
// consent state read of a whole status (the pane's).
func watchReads(d *amtsim.Device) []time.Time {
	cs := d.Calls()
	var out []time.Time
	for i, c := range cs {
		if c.Class != "CIM_ServiceAvailableToElement" || c.Action != "Enumerate" {
			continue
		}
		status := false
		for _, n := range cs[i+1:] {
			if n.Class == c.Class && n.Action != "Enumerate" {
				continue // its Pull
			}
			status = n.Class == "IPS_OptInService" || n.Class == "CIM_SoftwareIdentity"
			break
		}
		if !status {
			out = append(out, c.Time)
		}
	}
	return out
}

// The device window reads the hardware, the event log and the audit log
// from the device when their tabs are shown, and exports them as CSV.
func TestWindowLogs(t *testing.T) {
	e := newAMTEnv(t, toolbox.WatchOptions{Every: time.Hour}, amtDevice{amt: &amtsim.AMTConfig{Version: "16.1.25", EventLogRecords: 40}})
	d := e.devs[0]
	pick(t, e.u, e.guids[0])
	p := e.u.Dev.AMT
	test.Tap(p.Button("Reset"))
	uitest.TapDialogButton(t, e.w, "Reset")
	test.Tap(p.Tools)
	dw := e.u.Dev.Window(e.guids[0])
	if dw == nil || !dw.Hardware.Loaded() {
		t.Fatal("the device window did not open on its hardware")
	}
	parts := map[string]bool{}
	for _, r := range dw.Hardware.Rows() {
		parts[r[0]] = true
	}
	for _, want := range []string{"Chassis", "BIOS", "Processor", "Memory", "Disk"} {
		if !parts[want] {
			t.Errorf("hardware lacks a %s row: %q", want, dw.Hardware.Rows())
		}
	}
	if dw.Events.Loaded() || dw.Audit.Loaded() {
		t.Fatal("the logs were read before their tabs were shown")
	}
	dw.Show("Event log")
	if got, want := len(dw.Events.Rows()), len(d.Platform().EventRecords()); got != want || got < 40 {
		t.Fatalf("event log: %d rows; the device has %d records", got, want)
	}
	dw.Show("Audit log")
	rows := dw.Audit.Rows()
	if len(rows) != len(d.Platform().AuditRecords()) || !strings.Contains(strings.ToLower(rows[0][2]), "reset") || rows[0][3] != instancetest.AMTUser {
		t.Fatalf("audit log: %d rows (the device has %d), newest %q", len(rows), len(d.Platform().AuditRecords()), rows[0])
	}
	var out exportBuffer
	dw.Audit.ExportTo(&out, "audit.csv")
	recs, err := csv.NewReader(&out.Buffer).ReadAll()
	if err != nil || len(recs) != len(rows)+1 || recs[0][0] != "Time" || !slices.Equal(recs[1], rows[0]) || !out.closed {
		t.Fatalf("export: %d records (%v), header %q, first %q; want %q", len(recs), err, recs[0], recs[1], rows[0])
	}
}

type exportBuffer struct {
	bytes.Buffer
	closed bool
}

func (b *exportBuffer) Close() error { b.closed = true; return nil }

// The terminal tab over a real Serial-over-LAN session: the simulated
// host's BIOS setup screen appears, keys typed into the window reach the
// device and work the screen, and the session is a terminal session of
// the desktop user in Sessions until the window closes, then in History.
// A device that goes ends its terminal's session. In client control
// mode the device refuses SOL until its user consents: the tab asks for
// the code the device shows and connects once it is given.
func TestWindowTerminal(t *testing.T) {
	e := newAMTEnv(t, toolbox.WatchOptions{Every: time.Hour},
		amtDevice{amt: &amtsim.AMTConfig{SOLScreen: amtsim.SOLBIOS}},
		amtDevice{amt: &amtsim.AMTConfig{ControlMode: amtsim.CCM}})
	// A session that ends by itself is told from the terminal's goroutine;
	// none should here.
	ended := make(chan func(), 8)
	e.u.Do = func(f func()) { ended <- f }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	pick(t, e.u, e.guids[0])
	test.Tap(e.u.Dev.AMT.Tools)
	dw := e.u.Dev.Window(e.guids[0])
	dw.Show("Terminal")
	tt := dw.Terminal
	test.Tap(tt.Connect)
	if !tt.Connected() {
		t.Fatalf("not connected: %q", tt.Msg.Text)
	}
	waitUntil(t, "the BIOS screen", func() bool {
		row, col, _ := tt.Term.Cursor()
		return strings.Contains(tt.Term.Text(), "Setup Utility - Presence Simulated Systems") && row == 19 && col == 9
	})
	live := e.in.Sessions().List()
	if len(live) != 1 || live[0].Kind != proxy.KindTerminal || live[0].Device != e.guids[0] || live[0].User != "(desktop)" {
		t.Fatalf("live sessions %+v", live)
	}
	// Keys go to the focused terminal (the window's canvas delivers them
	// there), and the device redraws: not a tap on the window while the
	// terminal's goroutine paints it.
	focused := dw.W.Canvas().Focused()
	if focused != tt.Term {
		t.Fatalf("focus on %T, not the terminal", focused)
	}
	for range 4 {
		focused.TypedKey(&fyne.KeyEvent{Name: fyne.KeyDown})
	}
	focused.TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn})
	if err := e.devs[0].Redirection().WaitSOLInput(ctx, []byte("\x1b[B\x1b[B\x1b[B\x1b[B\r")); err != nil {
		t.Fatalf("the keys did not reach the device: %v (it has %q)", err, e.devs[0].SOLInput())
	}
	waitUntil(t, "the device's answer", func() bool { return strings.Contains(tt.Term.Text(), "Boot Mode set to [Legacy].") })
	dw.W.Close()
	waitUntil(t, "the session to end with the window", func() bool { return len(e.in.Sessions().List()) == 0 })
	var recs []history.SessionRecord
	waitUntil(t, "the session's end in History", func() bool {
		err := e.hist.Flush(ctx)
		recs, _ = e.hist.Sessions(history.Filter{Device: e.guids[0]})
		return err == nil && len(recs) == 1 && !recs[0].End.IsZero()
	})
	if r := recs[0]; r.Kind != proxy.KindTerminal || r.User != "(desktop)" || r.EndReason != proxy.EndConsole || r.BytesToDevice == 0 || r.BytesFromDevice == 0 {
		t.Fatalf("history: %+v", r)
	}

	pick(t, e.u, e.guids[1])
	test.Tap(e.u.Dev.AMT.Tools)
	dw = e.u.Dev.Window(e.guids[1])
	dw.Show("Terminal")
	tt = dw.Terminal
	test.Tap(tt.Connect)
	c := tt.Consenting
	code := e.devs[1].ConsentCode()
	if c == nil || tt.Connected() || len(code) != 6 {
		t.Fatalf("CCM without consent: dialog %v, connected %v, the device shows %q; %q", c != nil, tt.Connected(), code, tt.Msg.Text)
	}
	test.Type(c.Code, code)
	test.Tap(c.Send)
	if !tt.Connected() {
		t.Fatalf("not connected after consent: %q", tt.Msg.Text)
	}
	waitUntil(t, "the shell", func() bool { return strings.Contains(tt.Term.Text(), "sim-000001$") })
	dw.W.Close()
	waitUntil(t, "the session to end with the window", func() bool { return len(e.in.Sessions().List()) == 0 })
	select {
	case <-ended:
		t.Fatal("a session ended by itself")
	default:
	}

	// The device goes while its terminal is open: the session ends, and
	// the tab says why (the session's end or the device's, whichever the
	// window hears of first).
	pick(t, e.u, e.guids[0])
	test.Tap(e.u.Dev.AMT.Tools)
	dw = e.u.Dev.Window(e.guids[0])
	dw.Show("Terminal")
	tt = dw.Terminal
	test.Tap(tt.Connect)
	waitUntil(t, "the BIOS screen", func() bool { return strings.Contains(tt.Term.Text(), "Setup Utility") })
	if _, _, err := e.in.Disconnect(ctx, e.guids[0], "test"); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-ended:
		f()
	case <-time.After(20 * time.Second):
		t.Fatal("the session's end was not told")
	}
	e.u.Refresh()
	if tt.Connected() || !strings.HasPrefix(tt.Msg.Text, "The session ended: ") || !tt.Connect.Disabled() {
		t.Fatalf("after the device went: connected %v, Connect enabled %v, %q", tt.Connected(), !tt.Connect.Disabled(), tt.Msg.Text)
	}
	waitUntil(t, "no session left", func() bool { return len(e.in.Sessions().List()) == 0 })
}
