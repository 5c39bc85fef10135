package adapter_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/app/adapter"
	"github.com/presence-mps/presence/app/ui/uitest"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
)

// notWired is the instance's answer while the WS-Man sequence of
// enrolment is not wired in (internal/instance/enrol_run.go).
const notWired = "enrolment is not available in this build yet"

// The window enrols a real unconfigured simulated device on loopback
// through "Add a device on the LAN…", over TLS, against a real instance:
// the steps appear as the instance reports them, the password entry is
// cleared at Start, and at the end the dialog says the GUID, that the
// tunnel is up and the device's certificate now pinned; the device is
// then connected to the instance. The enrolment runs on a goroutine of
// its own, as in the window, and everything it sends back is applied on
// the test's goroutine, which plays the Fyne goroutine.
func TestWindowEnrolsLANDevice(t *testing.T) {
	in, _ := instancetest.Start(t, nil)
	d, err := amtsim.New(amtsim.Config{UUID: amtsim.DeviceUUID(t.Name(), 0), Hostname: amtsim.DeviceHostname(0),
		MaxVersion: tls.VersionTLS12, AMTPassword: []byte(instancetest.AMTPass),
		LAN: &amtsim.LANConfig{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", Interval: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	b := adapter.New(in, in.Settings(), nil)
	t.Cleanup(b.Close)
	u, w := newWindow(t, b)
	queue := make(chan func(), 256)
	var running sync.WaitGroup
	u.Go = func(f func()) { running.Go(f) }
	u.Do = func(f func()) { queue <- f }
	t.Cleanup(running.Wait) // the enrolment ends before the instance stops
	u.Refresh()
	u.Show("Devices")
	if u.Dev.AddLAN == nil {
		t.Fatal("no Add a device on the LAN button over the adapter")
	}
	e, _ := u.OpenEnrol("")
	t.Cleanup(func() { uitest.TapDialogButton(t, w, "Close") })
	test.Type(e.Address, d.LANTLSAddr())
	e.User.SetText(instancetest.AMTUser)
	test.Type(e.Password, instancetest.AMTPass)
	test.Tap(e.TLS)
	uitest.TapDialogButton(t, w, "Start")
	if e.Password.Text != "" || !e.Running() {
		t.Fatalf("after Start: password entry %q, running %v", e.Password.Text, e.Running())
	}
	var seen int // steps shown while it still ran
	for deadline := time.After(3 * time.Minute); e.Running(); {
		select {
		case f := <-queue:
			f()
			if e.Running() {
				seen = max(seen, len(e.StepLines()))
			}
		case <-deadline:
			t.Fatalf("the enrolment did not end in 3 minutes; steps %q", e.StepLines())
		}
	}
	msg := strings.ReplaceAll(e.Msg.Text, "\n", " ")
	if strings.Contains(msg, notWired) {
		t.Skip("the instance does not enrol yet: " + msg)
	}
	guid := d.UUID().String()
	sum := sha256.Sum256(d.LANCertificate().Raw)
	for _, s := range []string{guid, "its tunnel is up", hex.EncodeToString(sum[:])} {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
			t.Errorf("result %q lacks %q", msg, s)
		}
	}
	if seen == 0 || len(e.StepLines()) < 3 {
		t.Errorf("steps shown live: %d, at the end %q; want them as they happened", seen, e.StepLines())
	}
	for _, l := range e.StepLines() {
		if strings.Contains(l, " — failed") || strings.Contains(l, " — running") {
			t.Errorf("step %q at the end of a successful enrolment", l)
		}
	}
	if _, ok := in.Server.Device(guid); !ok {
		t.Fatalf("device %s is not connected after the dialog said its tunnel is up", guid)
	}
	select {
	case <-d.Connected():
	default:
		t.Fatal("the simulated device does not report its tunnel")
	}
}
