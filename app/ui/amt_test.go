package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/app/ui/uitest"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/wsman"
)

// fakeAMT is a backend with the AMT toolbox, for the layout goldens and the
// pane's own rules; the behaviour against real devices is tested in
// app/adapter, over the real toolbox and simulated devices.
type fakeAMT struct {
	*fakeBackend
	status    map[string]toolbox.Status
	statusErr error
	power     map[string]toolbox.PowerReading
	selected  []string
	sent      []toolbox.Action
	actionErr error
	started   int // StartConsent calls
	cancelled int
	codes     []int
	code      int // the code the device shows
	hw        wsman.Hardware
	events    []wsman.Event
	audit     wsman.AuditLog
	reads     []string   // the listings read
	sols      []*fakeSOL // the sessions opened
	solErr    error
}

func newFakeAMT(devices int) *fakeAMT {
	f := &fakeAMT{fakeBackend: &fakeBackend{snap: Snapshot{Proxy: ":1080", Devices: fleet(devices)}},
		status: map[string]toolbox.Status{}, power: map[string]toolbox.PowerReading{}, code: 123456}
	for i, d := range f.snap.Devices {
		if i%2 == 0 {
			f.status[d.UUID] = onStatus()
		} else {
			f.status[d.UUID] = offStatus()
		}
	}
	return f
}

// onStatus is a device on, AMT 16 in admin control mode, that boots to
// BIOS and PXE on request and needs no consent.
func onStatus() toolbox.Status {
	return toolbox.Status{Power: wsman.PowerState{State: 2, Available: []int{10, 8, 5}}, Version: "16.1.25", Major: 16, ControlMode: "ACM",
		Boot: wsman.BootCapabilities{BIOSSetup: true, ForcePXEBoot: true}, BootKnown: true, ConsentKnown: true}
}

func offStatus() toolbox.Status {
	st := onStatus()
	st.Power = wsman.PowerState{State: 8, Available: []int{2}}
	return st
}

// ccm is st in client control mode, where a boot option needs consent.
func ccm(st toolbox.Status) toolbox.Status {
	st.ControlMode = "CCM"
	st.Consent.OptInRequired = wsman.OptInAll
	return st
}

func (f *fakeAMT) Power(guid string) (toolbox.PowerReading, bool) {
	r, ok := f.power[guid]
	return r, ok
}

func (f *fakeAMT) SelectPower(guid string) { f.selected = append(f.selected, guid) }

func (f *fakeAMT) AMTStatus(guid string) (toolbox.Status, error) {
	if f.statusErr != nil {
		return toolbox.Status{}, f.statusErr
	}
	st, ok := f.status[guid]
	if !ok {
		return st, fmt.Errorf("fake: %w", &wsman.TunnelError{Op: "dial", Err: errors.New("no such device")})
	}
	return st, nil
}

func (f *fakeAMT) AMTPower(guid string, a toolbox.Action) error {
	st := f.status[guid]
	if err := toolbox.Check(st, a); err != nil {
		return err
	}
	if f.actionErr != nil {
		return f.actionErr
	}
	f.sent = append(f.sent, a)
	if a == toolbox.On || a == toolbox.BIOSOn || a == toolbox.PXEOn {
		st.Power = onStatus().Power
	} else if a == toolbox.Off {
		st.Power = offStatus().Power
	}
	f.status[guid] = st
	return nil
}

func (f *fakeAMT) StartConsent(guid string) error {
	f.started++
	st := f.status[guid]
	st.Consent.OptInState = wsman.OptInDisplayed
	f.status[guid] = st
	return nil
}

func (f *fakeAMT) SendConsentCode(guid string, code int) error {
	f.codes = append(f.codes, code)
	if code != f.code {
		// As the toolbox says it: its sentinel over the device's status.
		return fmt.Errorf("%w: %w", toolbox.ErrWrongCode, &wsman.StatusError{Class: "IPS_OptInService", Method: "SendOptInCode", Value: 0x0812})
	}
	st := f.status[guid]
	st.Consent.OptInState = wsman.OptInReceived
	f.status[guid] = st
	return nil
}

func (f *fakeAMT) CancelConsent(guid string) error {
	f.cancelled++
	st := f.status[guid]
	st.Consent.OptInState = wsman.OptInNotStarted
	f.status[guid] = st
	return nil
}

func (f *fakeAMT) AMTHardware(string) (wsman.Hardware, error) {
	f.reads = append(f.reads, "hardware")
	return f.hw, nil
}

func (f *fakeAMT) AMTEventLog(string) ([]wsman.Event, error) {
	f.reads = append(f.reads, "events")
	return f.events, nil
}

func (f *fakeAMT) AMTAuditLog(string) (wsman.AuditLog, error) {
	f.reads = append(f.reads, "audit")
	return f.audit, nil
}

func (f *fakeAMT) OpenSOL(string) (io.ReadWriteCloser, error) {
	if f.solErr != nil {
		return nil, f.solErr
	}
	s := newFakeSOL()
	f.sols = append(f.sols, s)
	return s, nil
}

// fakeSOL is a session whose device output the test sends, chunk by
// chunk. It has no read deadline: the terminal tab closes it to end its
// reader.
type fakeSOL struct {
	out    chan []byte   // what the device prints
	again  chan struct{} // a Read began after one that returned output
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	in     []byte // what was typed; guarded by mu
	gave   bool   // the last Read returned output; guarded by mu
}

func newFakeSOL() *fakeSOL {
	return &fakeSOL{out: make(chan []byte), again: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (f *fakeSOL) Read(p []byte) (int, error) {
	f.mu.Lock()
	gave := f.gave
	f.gave = false
	f.mu.Unlock()
	if gave {
		f.again <- struct{}{}
	}
	select {
	case b := <-f.out:
		f.mu.Lock()
		f.gave = true
		f.mu.Unlock()
		return copy(p, b), nil
	case <-f.closed:
		return 0, io.EOF
	}
}

func (f *fakeSOL) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in = append(f.in, p...)
	return len(p), nil
}

func (f *fakeSOL) Close() error { f.once.Do(func() { close(f.closed) }); return nil }

func (f *fakeSOL) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

func (f *fakeSOL) typed() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.in)
}

// print has the device print b, and returns once the terminal has shown
// it: its reader repaints before it reads again.
func (f *fakeSOL) print(t *testing.T, b []byte) {
	t.Helper()
	f.out <- b
	select {
	case <-f.again:
	case <-time.After(20 * time.Second):
		t.Fatal("the terminal did not read again")
	}
}

// amtWindow is a window of the UI over f on the Devices screen, with the
// device of row selected.
func amtWindow(t *testing.T, f *fakeAMT, row int) (*UI, fyne.Window) {
	t.Helper()
	u := newTestUI(f)
	w := test.NewWindow(u.Root)
	t.Cleanup(w.Close)
	w.Resize(fyne.NewSize(1200, 760))
	u.Refresh()
	u.Show("Devices")
	if row >= 0 {
		u.Dev.Table.Select(widget.TableCellID{Row: row, Col: 0})
	}
	return u, w
}

// The pane offers what fits the state: an on device Reset and Power off
// but not Power on, an off device Power on (to the OS, BIOS or PXE) and
// nothing that needs it on.
func TestAMTPaneOffers(t *testing.T) {
	test.NewTempApp(t)
	f := newFakeAMT(2)
	u, _ := amtWindow(t, f, 0)
	p := u.Dev.AMT
	if got, want := p.Offered(), []string{"Reset", "Power cycle", "Power off", "Reset to BIOS", "Reset to PXE"}; !slices.Equal(got, want) {
		t.Fatalf("on device offers %q; want %q", got, want)
	}
	if p.Button("Power on") != nil {
		t.Fatal("Power on offered for a device that is on")
	}
	if !strings.HasPrefix(p.Info.Text, "Power: on\nAMT 16.1.25, admin control mode\nConsent: not needed") {
		t.Fatalf("info %q", p.Info.Text)
	}
	u.Dev.Table.Select(widget.TableCellID{Row: 1, Col: 0})
	if got, want := p.Offered(), []string{"Power on", "Power on to BIOS", "Power on to PXE"}; !slices.Equal(got, want) {
		t.Fatalf("off device offers %q; want %q", got, want)
	}
	if p.Button("Reset") != nil || p.Button("Power off") != nil {
		t.Fatal("Reset or Power off offered for a device that is off")
	}
	// Power on is not disruptive: it is sent at once, and the pane reads
	// the status again and offers what fits the new state.
	test.Tap(p.Button("Power on"))
	if !slices.Equal(f.sent, []toolbox.Action{toolbox.On}) || p.Msg.Text != "sim-000001 accepted Power on." || p.Button("Reset") == nil {
		t.Fatalf("sent %v, message %q, offers %q", f.sent, p.Msg.Text, p.Offered())
	}
	if got := f.selected; len(got) < 2 || got[len(got)-1] != fleet(2)[1].UUID {
		t.Fatalf("the watch was told of the selections %q", got)
	}
}

// A disruptive action asks first, naming the device and the action;
// Cancel sends nothing. A refusal is shown in its sentence.
func TestAMTConfirmAndRefusal(t *testing.T) {
	test.NewTempApp(t)
	f := newFakeAMT(1)
	u, w := amtWindow(t, f, 0)
	p := u.Dev.AMT
	test.Tap(p.Button("Reset"))
	txt := uitest.DialogText(w)
	for _, want := range []string{"Reset: sim-000000?", "Presence will send Reset to sim-000000", fleet(1)[0].UUID} {
		if !strings.Contains(txt, want) {
			t.Fatalf("confirmation lacks %q:\n%s", want, txt)
		}
	}
	uitest.TapDialogButton(t, w, "Cancel")
	if len(f.sent) != 0 {
		t.Fatalf("sent %v after Cancel", f.sent)
	}
	test.Tap(p.Button("Reset"))
	uitest.TapDialogButton(t, w, "Reset")
	if !slices.Equal(f.sent, []toolbox.Action{toolbox.Reset}) || p.Msg.Text != "sim-000000 accepted Reset." {
		t.Fatalf("sent %v, message %q", f.sent, p.Msg.Text)
	}
	f.actionErr = &wsman.CredentialsError{User: "admin"}
	test.Tap(p.Button("Power off"))
	uitest.TapDialogButton(t, w, "Power off")
	if want := wrapLines(toolbox.Sentence(f.actionErr), paneWidth); p.Msg.Text != want {
		t.Fatalf("refusal %q; want %q", p.Msg.Text, want)
	}
	f.statusErr = &wsman.TunnelError{Op: "read", Err: io.ErrUnexpectedEOF}
	test.Tap(p.Refresh)
	if want := wrapLines("The AMT status could not be read: The device is not connected, or its tunnel went away.", paneWidth); p.Info.Text != want || len(p.Offered()) != 0 {
		t.Fatalf("status failure %q, offers %q", p.Info.Text, p.Offered())
	}
}

// In client control mode a boot option asks for the consent code first:
// the entry takes six digits, a wrong code is said and may be typed again,
// the right one sends the action. Cancel withdraws the request.
func TestAMTConsentDialog(t *testing.T) {
	test.NewTempApp(t)
	f := newFakeAMT(2)
	guid := fleet(2)[1].UUID
	f.status[guid] = ccm(offStatus())
	u, w := amtWindow(t, f, 1)
	p := u.Dev.AMT
	if !p.Consent.Visible() || !strings.Contains(p.Info.Text, "needed for boot options and the terminal\n(client control mode)") {
		t.Fatalf("consent button shown %v, info %q", p.Consent.Visible(), p.Info.Text)
	}
	test.Tap(p.Button("Power on to BIOS"))
	c := p.Consenting
	if c == nil || f.started != 1 || len(f.sent) != 0 {
		t.Fatalf("dialog %v, consent started %d times, sent %v", c, f.started, f.sent)
	}
	if !strings.Contains(uitest.DialogText(w), "sim-000001 now shows a six-digit code") {
		t.Fatalf("dialog: %s", uitest.DialogText(w))
	}
	for _, s := range []string{"12345", "12345a", "1234567"} {
		c.Code.SetText(s)
		if !c.Send.Disabled() {
			t.Fatalf("Send enabled for %q", s)
		}
	}
	c.Code.SetText("")
	test.Type(c.Code, "654321")
	if c.Send.Disabled() {
		t.Fatal("Send disabled for six digits")
	}
	test.Tap(c.Send)
	if p.Consenting != c || c.Msg.Text != wrapLines("The device did not take that code: check the six digits it shows and send them again.", 50) || c.Code.Text != "" || len(f.sent) != 0 {
		t.Fatalf("wrong code: open %v, message %q, entry %q, sent %v", p.Consenting == c, c.Msg.Text, c.Code.Text, f.sent)
	}
	test.Type(c.Code, "123 456")
	test.Tap(c.Send)
	if p.Consenting != nil || !slices.Equal(f.codes, []int{654321, 123456}) || !slices.Equal(f.sent, []toolbox.Action{toolbox.BIOSOn}) {
		t.Fatalf("right code: open %v, codes %v, sent %v", p.Consenting != nil, f.codes, f.sent)
	}
	// Asked for explicitly, and cancelled.
	f.status[guid] = ccm(offStatus())
	test.Tap(p.Refresh)
	test.Tap(p.Consent)
	if p.Consenting == nil {
		t.Fatal("Request consent opened no dialog")
	}
	test.Tap(p.Consenting.Cancel)
	if p.Consenting != nil || f.cancelled != 1 || p.Msg.Text != "The consent request was withdrawn." {
		t.Fatalf("cancel: open %v, cancelled %d, message %q", p.Consenting != nil, f.cancelled, p.Msg.Text)
	}
}

// The Power column appears with an AMT backend and shows each device's
// reading: a dash before the first, a short mark for a failure.
func TestPowerColumn(t *testing.T) {
	test.NewTempApp(t)
	plain := newTestUI(&fakeBackend{snap: Snapshot{Devices: fleet(1)}})
	if slices.Contains(plain.Dev.Columns(), "Power") {
		t.Fatal("a Power column without the AMT toolbox")
	}
	f := newFakeAMT(3)
	u, _ := amtWindow(t, f, -1)
	if got := u.Dev.Columns(); !slices.Equal(got[:3], []string{"Status", "Power", "Host name"}) {
		t.Fatalf("columns %q", got)
	}
	devs := fleet(3)
	f.power[devs[0].UUID] = toolbox.PowerReading{State: wsman.PowerState{State: 2}, At: time.Now()}
	f.power[devs[1].UUID] = toolbox.PowerReading{State: wsman.PowerState{State: 4}, At: time.Now()}
	u.Refresh()
	var got []string
	for _, r := range u.Dev.shown {
		got = append(got, u.Dev.cell(r, colPower))
	}
	if want := []string{"on", "sleep", "—"}; !slices.Equal(got, want) {
		t.Fatalf("power column %q; want %q", got, want)
	}
	f.power[devs[0].UUID] = toolbox.PowerReading{Err: &wsman.TunnelError{Op: "read", Err: io.EOF}, At: time.Now()}
	u.Refresh()
	if c := u.Dev.cell(u.Dev.shown[0], colPower); c != "error" {
		t.Fatalf("a failed reading shows %q", c)
	}
}

// The pane reads the status again when the watch reads a new state of
// the selected device (it went off by itself), so its actions fit.
func TestAMTPaneFollowsTheWatch(t *testing.T) {
	test.NewTempApp(t)
	f := newFakeAMT(1)
	u, _ := amtWindow(t, f, 0)
	p := u.Dev.AMT
	guid := fleet(1)[0].UUID
	f.status[guid] = offStatus()
	f.power[guid] = toolbox.PowerReading{State: f.status[guid].Power, At: time.Now()}
	u.Refresh()
	if got := p.Offered(); len(got) == 0 || got[0] != "Power on" {
		t.Fatalf("after the watch saw it off: offers %q", got)
	}
	// A reading that fails is a mark in the column and a sentence here.
	f.power[guid] = toolbox.PowerReading{Err: &wsman.TunnelError{Op: "wait", Err: context.DeadlineExceeded}, At: time.Now().Add(time.Second)}
	u.Refresh()
	if !strings.HasSuffix(flatText(p.Info.Text), "The last power reading failed: The device did not answer in time.") {
		t.Fatalf("pane after a failed reading: %q", p.Info.Text)
	}
	f.power[guid] = toolbox.PowerReading{State: f.status[guid].Power, At: time.Now().Add(2 * time.Second)}
	u.Refresh()
	if strings.Contains(p.Info.Text, "failed") {
		t.Fatalf("pane after a good reading: %q", p.Info.Text)
	}
}

func flatText(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func TestWriteCSV(t *testing.T) {
	tab := Table{Columns: []string{"Time", "Description"}, Rows: [][]string{
		{"2026-12-02 10:00:00 +00:00", `BIOS "setup", entered`},
		{"2026-12-02 10:01:00 +00:00", "two\nlines"},
		{"=HYPERLINK(\"http://x\")", "+1"},
		{"@SUM(A1)", "-2"},
		{"short"},
	}}
	var b bytes.Buffer
	if err := WriteCSV(&b, tab); err != nil {
		t.Fatal(err)
	}
	want := "Time,Description\n" +
		"2026-12-02 10:00:00 +00:00,\"BIOS \"\"setup\"\", entered\"\n" +
		"2026-12-02 10:01:00 +00:00,\"two\nlines\"\n" +
		"\"'=HYPERLINK(\"\"http://x\"\")\",'+1\n" +
		"'@SUM(A1),'-2\n" +
		"short,\n"
	if b.String() != want {
		t.Fatalf("WriteCSV =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestTables(t *testing.T) {
	pinLocal(t)
	t0 := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	ev := eventTable([]wsman.Event{{Time: t0, Severity: 16, Entity: 34, Description: "System boot failure.\x1b[2J"}})
	if got := ev.Rows[0]; !slices.Equal(got, []string{"2026-12-02 09:30:00 +00:00", "critical", "BIOS", "System boot failure. [2J"}) {
		t.Fatalf("event row %q", got)
	}
	au := auditTable(wsman.AuditLog{Header: wsman.AuditLogHeader{CurrentNumberOfRecords: 2, MaxNumberOfRecords: 100, PercentageFree: 98},
		Records: []wsman.AuditRecord{
			{App: "Security Admin", Event: "Provisioning Started", Initiator: "Local", Time: t0},
			{AppID: 19, EventID: 7, Initiator: "admin", NetAddress: "10.0.0.9", Time: t0.Add(time.Minute), Description: "Reset."},
		}})
	if au.Rows[0][1] != "application 19" || au.Rows[0][2] != "event 7" || au.Rows[1][2] != "Provisioning Started" ||
		au.Note != "The device keeps 2 of at most 100 records (98% free)." {
		t.Fatalf("audit %+v", au)
	}
	hw := hardwareTable(wsman.Hardware{
		Chassis:    wsman.PhysicalPackage{Manufacturer: "Intel", Model: "NUC", SerialNumber: "C1", Version: "1.0"},
		BIOS:       wsman.BIOS{Manufacturer: "Intel Corp.", Version: "BE0088", ReleaseDate: "2023-06-01T00:00:00Z"},
		Memory:     []wsman.PhysicalMemory{{Manufacturer: "Kingston", PartNumber: "KF432", SerialNumber: "M1", BankLabel: "BANK 0", Capacity: 16 << 30, Speed: 3200}},
		Chips:      []wsman.Chip{{Manufacturer: "Intel(R) Corporation", Version: "Core i7"}},
		Processors: []wsman.Processor{{MaxClockSpeed: 4700, CurrentClockSpeed: 2100}},
		Disks:      []wsman.MediaAccessDevice{{DeviceID: "NVMe 0", MaxMediaSize: 512_110_190}},
		Packages:   []wsman.PhysicalPackage{{Model: "Samsung 980", SerialNumber: "S1"}},
		Missing:    []string{"CIM_Card"},
	})
	want := [][]string{
		{"Chassis", "Intel", "NUC", "C1", "version 1.0"},
		{"BIOS", "Intel Corp.", "", "", "version BE0088, released 2023-06-01"},
		{"Processor", "Intel(R) Corporation", "Core i7", "", "up to 4700 MHz, now 2100 MHz"},
		{"Memory", "Kingston", "KF432", "M1", "BANK 0, 16 GiB, speed 3200"},
		{"Disk", "", "Samsung 980", "S1", "NVMe 0, 512 GB"},
	}
	if !slices.EqualFunc(hw.Rows, want, slices.Equal) || hw.Note != "Not on this platform: CIM_Card." {
		t.Fatalf("hardware %q, note %q", hw.Rows, hw.Note)
	}
}

func TestWrapLines(t *testing.T) {
	if got := wrapLines("The device rejected the AMT user name or password.", 20); got != "The device rejected\nthe AMT user name or\npassword." {
		t.Fatalf("%q", got)
	}
	if got := wrapLines("a\nb c", 1); got != "a\nb\nc" {
		t.Fatalf("%q", got)
	}
}

// The device window reads each listing when its tab is first shown, and
// exports what it shows.
func TestDeviceWindowListings(t *testing.T) {
	pinLocal(t)
	test.NewTempApp(t)
	f := newFakeAMT(1)
	f.events = goldenEvents()
	u, _ := amtWindow(t, f, 0)
	test.Tap(u.Dev.AMT.Tools)
	dw := u.Dev.Window(fleet(1)[0].UUID)
	if dw == nil || !slices.Equal(f.reads, []string{"hardware"}) {
		t.Fatalf("window %v, reads %q", dw, f.reads)
	}
	dw.Show("Event log")
	dw.Show("Hardware")
	dw.Show("Event log")
	if !slices.Equal(f.reads, []string{"hardware", "events"}) || len(dw.Events.Rows()) != 3 || dw.Events.Msg.Text != "3 records." {
		t.Fatalf("reads %q, %d rows, %q", f.reads, len(dw.Events.Rows()), dw.Events.Msg.Text)
	}
	var out closeBuffer
	dw.Events.ExportTo(&out, "sim-000000-event-log.csv")
	if !out.closed || !strings.HasPrefix(out.String(), "Time,Severity,Entity,Description\n2026-12-02 09:31:40 +00:00,critical,BIOS,System boot failure.\n") ||
		dw.Events.Msg.Text != "Saved the event log (3 records) to sim-000000-event-log.csv." {
		t.Fatalf("export %q (closed %v), message %q", out.String(), out.closed, dw.Events.Msg.Text)
	}
	// The device goes: the window says so and reads nothing more.
	f.snap.Devices = nil
	u.Refresh()
	if !strings.HasSuffix(dw.Header.Text, "not connected") || !dw.Events.Reload.Disabled() {
		t.Fatalf("header %q, reload enabled %v", dw.Header.Text, !dw.Events.Reload.Disabled())
	}
	dw.W.Close()
	if u.Dev.Window(fleet(1)[0].UUID) != nil {
		t.Fatal("a closed window is still listed")
	}
}

type closeBuffer struct {
	bytes.Buffer
	closed bool
}

func (c *closeBuffer) Close() error { c.closed = true; return nil }

func goldenEvents() []wsman.Event {
	t0 := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	return []wsman.Event{
		{Time: t0.Add(100 * time.Second), Severity: 16, Entity: 34, SensorType: 35, Description: "System boot failure."},
		{Time: t0.Add(40 * time.Second), Severity: 2, Entity: 34, SensorType: 15, Offset: 2, Description: "System firmware progress: motherboard initialization."},
		{Time: t0, Severity: 8, Entity: 1, SensorType: 6, Description: "Authentication failed 3 times. The system may be under attack."},
	}
}

func goldenAudit() wsman.AuditLog {
	t0 := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	return wsman.AuditLog{Header: wsman.AuditLogHeader{CurrentNumberOfRecords: 3, MaxNumberOfRecords: 3000, PercentageFree: 99},
		Records: []wsman.AuditRecord{
			{App: "Security Admin", Event: "Provisioning Started", Initiator: "Local", Time: t0.Add(-30 * 24 * time.Hour), Description: "Provisioning started."},
			{App: "Remote Control", Event: "Performed Power Up", Initiator: "admin", NetAddress: "127.0.0.1", Time: t0, Description: "Performed power up."},
			{App: "Remote Control", Event: "Performed Reset", Initiator: "admin", NetAddress: "127.0.0.1", Time: t0.Add(time.Minute), Description: "Performed reset to BIOS setup."},
		}}
}

// Golden renderings of the AMT parts of the window: the pane of a device
// that is on and of one that is off, the confirmation of a reset, the
// consent dialog, and the device window's event and audit logs.
func TestGoldenAMT(t *testing.T) {
	pinLocal(t)
	test.NewTempApp(t)
	f := newFakeAMT(3)
	f.status[fleet(3)[2].UUID] = ccm(onStatus())
	f.events, f.audit = goldenEvents(), goldenAudit()
	devs := fleet(3)
	for i, d := range devs {
		f.power[d.UUID] = toolbox.PowerReading{State: f.status[d.UUID].Power, At: time.Unix(1_764_000_000, 0)}
		if i == 2 {
			f.power[d.UUID] = toolbox.PowerReading{Err: &wsman.CredentialsError{User: "admin"}, At: time.Unix(1_764_000_000, 0)}
		}
	}
	u, w := amtWindow(t, f, 0)
	test.AssertRendersToMarkup(t, "amt-pane-on.xml", w.Canvas())
	u.Dev.Table.Select(widget.TableCellID{Row: 1, Col: 0})
	test.AssertRendersToMarkup(t, "amt-pane-off.xml", w.Canvas())
	u.Dev.Table.Select(widget.TableCellID{Row: 0, Col: 0})
	test.Tap(u.Dev.AMT.Button("Reset"))
	test.AssertRendersToMarkup(t, "amt-confirm.xml", w.Canvas())
	uitest.TapDialogButton(t, w, "Cancel")
	u.Dev.Table.Select(widget.TableCellID{Row: 2, Col: 0})
	test.Tap(u.Dev.AMT.Consent)
	test.AssertRendersToMarkup(t, "amt-consent.xml", w.Canvas())
	test.Tap(u.Dev.AMT.Consenting.Cancel)

	u.Dev.Table.Select(widget.TableCellID{Row: 0, Col: 0})
	test.Tap(u.Dev.AMT.Tools)
	dw := u.Dev.Window(devs[0].UUID)
	dw.Show("Event log")
	test.AssertRendersToMarkup(t, "amt-events.xml", dw.W.Canvas())
	dw.Show("Audit log")
	test.AssertRendersToMarkup(t, "amt-audit.xml", dw.W.Canvas())

	// The terminal showing the simulator's BIOS setup screen (boxes,
	// colours, cursor addressing), as a device sends it over SOL.
	dw.Show("Terminal")
	test.Tap(dw.Terminal.Connect)
	hw, _ := amtsim.HardwareProfile("desktop")
	f.sols[0].print(t, amtsim.BIOSScreen("sim-000000", hw))
	test.AssertRendersToMarkup(t, "amt-terminal-bios.xml", dw.W.Canvas())
	dw.W.Close()
	if !f.sols[0].isClosed() {
		t.Fatal("closing the window left the session open")
	}
}

// The terminal tab: Connect opens a session and attaches the terminal,
// keys reach the device, Disconnect and the device's going close it, a
// session the device ends says so, and a refusal is said in its sentence.
func TestTerminalTab(t *testing.T) {
	test.NewTempApp(t)
	f := newFakeAMT(1)
	u, _ := amtWindow(t, f, 0)
	// The terminal's reader tells of a session's end from its own
	// goroutine: the test runs it on its own.
	queued := make(chan func(), 8)
	u.Do = func(fn func()) { queued <- fn }
	test.Tap(u.Dev.AMT.Tools)
	dw := u.Dev.Window(fleet(1)[0].UUID)
	dw.Show("Terminal")
	tt := dw.Terminal
	if tt.Disconnect.Disabled() == false || tt.Connect.Disabled() {
		t.Fatal("before connecting: Disconnect enabled or Connect disabled")
	}
	test.Tap(tt.Connect)
	s := f.sols[0]
	if !tt.Connected() || !tt.Connect.Disabled() || dw.W.Canvas().Focused() != tt.Term {
		t.Fatalf("connected %v, Connect enabled %v, focus %v", tt.Connected(), !tt.Connect.Disabled(), dw.W.Canvas().Focused())
	}
	s.print(t, []byte("login: "))
	if !strings.HasPrefix(tt.Term.Text(), "login:") {
		t.Fatalf("screen %q", tt.Term.Text())
	}
	// What is typed into the window goes to the focused terminal.
	for _, r := range "root" {
		dw.W.Canvas().Focused().TypedRune(r)
	}
	dw.W.Canvas().Focused().TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn})
	waitFor(t, "the keys to reach the device", func() bool { return s.typed() == "root\r" })
	test.Tap(tt.Disconnect)
	if !s.isClosed() || tt.Connected() || tt.Msg.Text != "Disconnected." {
		t.Fatalf("after Disconnect: closed %v, connected %v, %q", s.isClosed(), tt.Connected(), tt.Msg.Text)
	}
	// The device ends the session by itself.
	test.Tap(tt.Connect)
	s = f.sols[1]
	s.Close()
	select {
	case fn := <-queued:
		fn()
	case <-time.After(20 * time.Second):
		t.Fatal("the end of the session was not told")
	}
	if tt.Connected() || tt.Msg.Text != "The device ended the session." || tt.Connect.Disabled() {
		t.Fatalf("after the device ended it: connected %v, %q", tt.Connected(), tt.Msg.Text)
	}
	// The device goes.
	test.Tap(tt.Connect)
	s = f.sols[2]
	f.snap.Devices = nil
	u.Refresh()
	if !s.isClosed() || tt.Msg.Text != "The device has disconnected: the session is closed." || !tt.Connect.Disabled() {
		t.Fatalf("after the device went: closed %v, %q", s.isClosed(), tt.Msg.Text)
	}
	f.snap.Devices = fleet(1)
	u.Refresh()
	f.solErr = &AMTError{Sentence: "Serial-over-LAN is not enabled on the device: turn it on in its redirection features."}
	test.Tap(tt.Connect)
	if tt.Connected() || tt.Msg.Text != f.solErr.Error() || len(f.sols) != 3 {
		t.Fatalf("refused: connected %v, %q", tt.Connected(), tt.Msg.Text)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
