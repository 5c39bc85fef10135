package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/api"
)

// TestDoctorCommand runs presence doctor against a running presence serve
// while real simulated devices fail: one with a wrong CIRA password, one
// with an unknown user, one offering only TLS 1.0. The legacy device is
// then allowed TLS 1.0 with doctor --allow-legacy, connects, and is listed
// as on legacy TLS; the setting outlives the run (settings.json).
func TestDoctorCommand(t *testing.T) {
	dir := t.TempDir()
	if r := run(t, "", "cert", "init", "--cn", "127.0.0.1", "--data-dir", dir); r.code != 0 {
		t.Fatalf("cert init: %+v", r)
	}
	if r := run(t, ciraPW+"\n", "account", "add", "--kind", "cira", "--data-dir", dir, "dev"); r.code != 0 {
		t.Fatalf("account add: %+v", r)
	}
	cira, _ := startServe(t, dir)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(run(t, "", "cert", "export-root", "--data-dir", dir).stdout)) {
		t.Fatal("no root certificate")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	start := func(i int, user, pw string, maxTLS uint16) *amtsim.Device {
		d, err := amtsim.New(amtsim.Config{
			UUID: amtsim.DeviceUUID("cli-doctor", i), User: user, Password: []byte(pw),
			MPSAddr: cira, RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: maxTLS, HandshakeTimeout: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for ctx.Err() == nil {
				if d.Run(ctx) == nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
		return d
	}
	start(0, "dev", "Wrong-Password-1", tls.VersionTLS12)
	start(1, "nobody", ciraPW, tls.VersionTLS12)
	legacy := start(2, "dev", ciraPW, tls.VersionTLS10)
	legacyGUID := amtsim.DeviceUUID("cli-doctor", 2).String()

	report := func() api.DoctorReport {
		r := run(t, "", "doctor", "--data-dir", dir, "--format", "json")
		if r.code != 0 {
			t.Fatalf("doctor: %+v", r)
		}
		var rep api.DoctorReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("doctor --format json: %v\n%s", err, r.stdout)
		}
		return rep
	}
	classes := func(rep api.DoctorReport) map[string]string {
		m := map[string]string{}
		for _, p := range rep.Problems {
			m[string(p.Class)] = p.Device + "|" + p.User + "|" + p.Fix
		}
		return m
	}
	deadline := time.Now().Add(30 * time.Second)
	var got map[string]string
	for {
		got = classes(report())
		if got["wrong-password"] != "" && got["unknown-user"] != "" && got["legacy-tls"] != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("doctor found %v; want wrong-password, unknown-user and legacy-tls", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(got["wrong-password"], amtsim.DeviceUUID("cli-doctor", 0).String()+"|dev|") {
		t.Errorf("wrong-password = %q; want device 0 and user dev", got["wrong-password"])
	}
	if !strings.Contains(got["unknown-user"], "|nobody|") {
		t.Errorf("unknown-user = %q; want user nobody", got["unknown-user"])
	}
	if !strings.Contains(strings.ToLower(got["legacy-tls"]), "legacy tls") {
		t.Errorf("legacy-tls fix = %q; want it to say legacy TLS", got["legacy-tls"])
	}
	// The table says each problem as a sentence with its fix.
	if r := run(t, "", "doctor", "--data-dir", dir); r.code != 0 || !strings.Contains(r.stdout, "wrong-password: "+amtsim.DeviceUUID("cli-doctor", 0).String()) {
		t.Errorf("doctor table:\n%s", r.stdout)
	}
	// The TLS 1.0 device gets in only once it is allowed, by GUID.
	select {
	case <-legacy.Connected():
		t.Fatal("a TLS 1.0 device connected before it was allowed")
	default:
	}
	if r := run(t, "", "doctor", "--data-dir", dir, "--allow-legacy", strings.ToUpper(legacyGUID)); r.code != 0 || !strings.Contains(r.stdout, legacyGUID) {
		t.Fatalf("doctor --allow-legacy: %+v", r)
	}
	select {
	case <-legacy.Connected():
	case <-time.After(30 * time.Second):
		t.Fatal("the device allowed legacy TLS did not connect")
	}
	rep := report()
	if len(rep.Legacy) != 1 || rep.Legacy[0].GUID != legacyGUID || len(rep.LegacyAllowed) != 1 || rep.LegacyAllowed[0] != legacyGUID {
		t.Errorf("legacy = %+v, allowed %v; want the one device", rep.Legacy, rep.LegacyAllowed)
	}
	if r := run(t, "", "doctor", "--data-dir", dir, "--allow-legacy", "not-a-guid"); r.code == 0 || !strings.Contains(r.stderr, "not a device GUID") {
		t.Errorf("doctor --allow-legacy not-a-guid: %+v", r)
	}
	// The setting is kept in the data dir.
	if b, err := os.ReadFile(filepath.Join(dir, launch.SettingsFile)); err != nil || !strings.Contains(string(b), legacyGUID) {
		t.Errorf("settings.json does not keep the device:\n%s", b)
	}
}
