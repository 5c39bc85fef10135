package adapter_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/app/adapter"
	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
)

// The Connection problems screen over a real instance's connection
// doctor, with real simulated devices failing on loopback: a wrong CIRA
// password, an unknown user, and a device that offers only TLS 1.0. Each
// shows in its sentence with the fix the window can do; the legacy TLS
// button allows the device, which then connects, and the setting is in
// force and in the Settings screen's copy. (Another device is on the
// legacy list already, so the TLS 1.0 session is refused after its GUID;
// with an empty list it is refused in TLS, before it, and the screen asks
// for the GUID: app/ui's TestProblemsScreen.)
func TestWindowConnectionProblems(t *testing.T) {
	other := amtsim.DeviceUUID(t.Name(), 9).String()
	in, ca := instancetest.Start(t, func(c *instance.Config) { c.Settings.LegacyTLSDevices = other })
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(i int, user, pw string, maxTLS uint16) *amtsim.Device {
		d, err := amtsim.New(amtsim.Config{UUID: amtsim.DeviceUUID(t.Name(), i), Hostname: amtsim.DeviceHostname(i),
			User: user, Password: []byte(pw), MPSAddr: in.Listening().CIRA.String(), RootCAs: roots,
			MinVersion: tls.VersionTLS10, MaxVersion: maxTLS, HandshakeTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		// A device tries again after a refusal, as AMT does.
		wg.Go(func() {
			for ctx.Err() == nil {
				if d.Run(ctx) == nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
		return d
	}
	wrongGUID := amtsim.DeviceUUID(t.Name(), 0).String()
	legacyGUID := amtsim.DeviceUUID(t.Name(), 2).String()
	start(0, instancetest.CIRAUser, "Wrong-Password-1", tls.VersionTLS12)
	start(1, "nobody", instancetest.CIRAPass, tls.VersionTLS12)
	legacy := start(2, instancetest.CIRAUser, instancetest.CIRAPass, tls.VersionTLS10)

	b := adapter.New(in, in.Settings(), nil)
	t.Cleanup(b.Close)
	u, _ := newWindow(t, b)
	u.Refresh()
	if u.Doctor == nil || u.Dev.AddLAN == nil {
		t.Fatal("the adapter's window has no Connection problems screen or no Add a device on the LAN button")
	}
	u.Show(ui.ProblemsScreen)
	byClass := func() map[string]*ui.ProblemItem {
		m := map[string]*ui.ProblemItem{}
		for _, it := range u.Doctor.Items {
			m[it.Class] = it
		}
		return m
	}
	waitUntil(t, "the doctor's findings on the screen", func() bool {
		test.Tap(u.Doctor.Refresh)
		m := byClass()
		return m["wrong-password"] != nil && m["unknown-user"] != nil && m["legacy-tls"] != nil && m["legacy-tls"].Device != ""
	})
	m := byClass()
	checks := []struct {
		class, device, user string
		action              ui.ProblemAction
		button              string
		says                []string
	}{
		{"wrong-password", wrongGUID, instancetest.CIRAUser, ui.ActionReEnrol, "Enrol it again…", []string{"wrong CIRA password", "device " + wrongGUID, "from 127.0.0.1:"}},
		{"unknown-user", "", "nobody", ui.ActionAddAccount, "Add the account…", []string{"CIRA user this MPS does not have", `user "nobody"`, `No CIRA account is named "nobody"`}},
		{"legacy-tls", legacyGUID, "", ui.ActionLegacyTLS, "Allow legacy TLS for this device", []string{"offers only TLS 1.0/1.1", "TLS 1.0", "device " + legacyGUID}},
	}
	for _, c := range checks {
		it := m[c.class]
		text := flat(it.Text.Text)
		if (c.device != "" && it.Device != c.device) || it.User != c.user || it.Action != c.action || it.Count == 0 || it.Last.IsZero() {
			t.Errorf("%s: device %q user %q action %q count %d last %v; want %q %q %q, counted", c.class, it.Device, it.User, it.Action, it.Count, it.Last, c.device, c.user, c.action)
		}
		if it.Button == nil || it.Button.Text != c.button {
			t.Errorf("%s: button %v; want %q", c.class, it.Button, c.button)
		}
		for _, s := range c.says {
			if !strings.Contains(text, s) {
				t.Errorf("%s says %q; want %q in it", c.class, text, s)
			}
		}
	}
	select {
	case <-legacy.Connected():
		t.Fatal("a TLS 1.0 device connected before it was allowed")
	default:
	}
	test.Tap(m["legacy-tls"].Button)
	if !strings.Contains(flat(u.Doctor.Msg.Text), "Device "+legacyGUID+" may now connect with TLS 1.0/1.1") {
		t.Fatalf("after allowing: %q", u.Doctor.Msg.Text)
	}
	select {
	case <-legacy.Connected():
	case <-time.After(30 * time.Second):
		t.Fatal("the device allowed legacy TLS did not connect")
	}
	if !slices.Contains(in.Settings().LegacyDevices(), legacyGUID) || !slices.Contains(b.Settings().LegacyDevices(), legacyGUID) {
		t.Fatalf("legacy devices: instance %v, the Settings screen's %v; want %s in both", in.Settings().LegacyDevices(), b.Settings().LegacyDevices(), legacyGUID)
	}
}
