package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/api"
)

// TestAMTCommands drives the AMT toolbox with presence amt against a
// running presence serve, as an admin would from a second terminal, with
// two simulated devices over real TLS tunnels: one in admin control mode
// on the default AMT account, one in client control mode on an account
// bound to it (presence account add --kind amt --device).
func TestAMTCommands(t *testing.T) {
	const (
		adminPW = "Amt-Admin-P@ss1"
		homePW  = "Amt-Home-P@ss2"
	)
	dir := t.TempDir()
	if r := run(t, "", "cert", "init", "--cn", "127.0.0.1", "--data-dir", dir); r.code != 0 {
		t.Fatalf("cert init: %+v", r)
	}
	if r := run(t, ciraPW+"\n", "account", "add", "--kind", "cira", "--data-dir", dir, "dev"); r.code != 0 {
		t.Fatalf("account add cira: %+v", r)
	}
	guids := []string{amtsim.DeviceUUID("cli-amt", 0).String(), amtsim.DeviceUUID("cli-amt", 1).String()}

	// AMT accounts: the default, and one bound to the second device
	// (named in upper case without dashes: any form of the GUID).
	if r := run(t, adminPW+"\n", "account", "add", "--kind", "amt", "--data-dir", dir, "admin"); r.code != 0 ||
		!strings.Contains(r.stdout, "the default") {
		t.Fatalf("account add amt admin: %+v", r)
	}
	bound := strings.ToUpper(strings.ReplaceAll(guids[1], "-", ""))
	if r := run(t, homePW+"\n", "account", "add", "--kind", "amt", "--data-dir", dir, "home", "--device", bound); r.code != 0 ||
		!strings.Contains(r.stdout, "for 1 device") {
		t.Fatalf("account add amt home --device: %+v", r)
	}
	l := run(t, "", "account", "list", "--kind", "amt", "--data-dir", dir)
	if l.code != 0 || !regexp.MustCompile(`(?m)^admin +default$`).MatchString(l.stdout) ||
		!regexp.MustCompile(`(?m)^home +`+guids[1]+`$`).MatchString(l.stdout) {
		t.Fatalf("account list --kind amt:\n%s", l.stdout)
	}
	for _, args := range [][]string{
		{"account", "add", "--kind", "amt", "--data-dir", dir, "x", "--device", "not-a-guid"},
		{"account", "add", "--kind", "console", "--data-dir", dir, "x", "--device", guids[0]},
	} {
		if r := run(t, "pw\n", args...); r.code != 2 {
			t.Errorf("%v = %+v; want a usage error", args, r)
		}
	}

	cira, logs := startServe(t, dir)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(run(t, "", "cert", "export-root", "--data-dir", dir).stdout)) {
		t.Fatal("no root certificate")
	}
	devs := make([]*amtsim.Device, 2)
	for i, amt := range []struct {
		user, pw string
		cfg      *amtsim.AMTConfig
	}{
		{"admin", adminPW, &amtsim.AMTConfig{Version: "16", OSAgent: true, EventLogRecords: 12}},
		{"home", homePW, &amtsim.AMTConfig{Version: "15", ControlMode: amtsim.CCM}},
	} {
		d, err := amtsim.New(amtsim.Config{
			UUID: amtsim.DeviceUUID("cli-amt", i), Hostname: amtsim.DeviceHostname(i), User: "dev", Password: []byte(ciraPW),
			MPSAddr: cira, RootCAs: roots, MaxVersion: tls.VersionTLS12, AMTUser: amt.user, AMTPassword: []byte(amt.pw), AMT: amt.cfg,
		})
		if err != nil {
			t.Fatal(err)
		}
		devs[i] = d
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var list []api.DeviceInfo
		json.Unmarshal([]byte(run(t, "", "devices", "--data-dir", dir, "--format", "json").stdout), &list)
		if len(list) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices never listed 2: %+v", list)
		}
	}
	amt := func(stdin string, args ...string) result {
		t.Helper()
		return run(t, stdin, append([]string{"amt", args[0], "--data-dir", dir}, args[1:]...)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		r := amt("", args...)
		if r.code != 0 {
			t.Fatalf("presence amt %v: %+v", args, r)
		}
		return r.stdout
	}
	refused := func(code int, want string, args ...string) {
		t.Helper()
		if r := amt("", args...); r.code != code || !strings.Contains(r.stderr, want) {
			t.Fatalf("presence amt %v = %+v; want exit %d and %q", args, r, code, want)
		}
	}
	d0, d1 := devs[0], devs[1]
	host0 := amtsim.DeviceHostname(0)

	t.Run("power", func(t *testing.T) {
		out := ok("power", host0)
		if !strings.Contains(out, host0+" is on (power state 2), its OS at full power") ||
			!regexp.MustCompile(`(?m)^reset +10 +Reset$`).MatchString(out) || strings.Contains(out, "\non ") {
			t.Fatalf("power state:\n%s", out)
		}
		var info AMTPowerInfo
		if err := json.Unmarshal([]byte(ok("power", guids[0], "--format", "json")), &info); err != nil || info.PowerState != 2 ||
			len(info.Actions) == 0 || info.Actions[0].Action != "reset" {
			t.Fatalf("power --format json: %+v %v", info, err)
		}
		if csv := ok("power", guids[0], "--format", "csv"); !strings.HasPrefix(csv, "DEVICE,STATE,POWER STATE,ACTION,CODE,DESCRIPTION\n") {
			t.Fatalf("power --format csv:\n%s", csv)
		}
		if out := ok("power", host0, "off"); !strings.Contains(out, "Power off accepted (action 8)") || d0.PowerState() != amtsim.PowerOffSoft {
			t.Fatalf("power off: %q, the device is in %d", out, d0.PowerState())
		}
		refused(1, "Power off is not possible now: the device is off, not on. (HTTP 400)", "power", host0, "off")
		// bios from off powers on to BIOS (100); pxe from on resets to PXE
		// (400).
		if out := ok("power", host0, "bios"); !strings.Contains(out, "Power on to BIOS accepted (action 100)") {
			t.Fatalf("power bios: %q", out)
		}
		if _, last := d0.Platform().Boots(); last != "bios setup" || d0.PowerState() != amtsim.PowerOn {
			t.Fatalf("after bios the last boot is %q, the state %d", last, d0.PowerState())
		}
		if out := ok("power", host0, "pxe"); !strings.Contains(out, "Reset to PXE accepted (action 400)") {
			t.Fatalf("power pxe: %q", out)
		}
		if _, last := d0.Platform().Boots(); last != "pxe" {
			t.Fatalf("after pxe the last boot is %q", last)
		}
		refused(2, "unknown power action", "power", host0, "frobnicate")
		refused(1, `No connected device is named "nosuch". (HTTP 404)`, "power", "nosuch")
	})

	t.Run("info and hardware", func(t *testing.T) {
		out := ok("info", host0)
		for _, re := range []string{`(?m)^AMT version +16\.1\.27$`, `(?m)^control mode +admin control mode \(ACM\)$`, `(?m)^host name +` + host0 + `$`} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Fatalf("info lacks %s:\n%s", re, out)
			}
		}
		var info AMTInfo
		if err := json.Unmarshal([]byte(ok("info", guids[1], "--format", "json")), &info); err != nil || info.ControlMode != "CCM" ||
			!strings.HasPrefix(info.AMT, "15.") {
			t.Fatalf("info of the CCM device (its bound account): %+v %v", info, err)
		}
		hw, _ := amtsim.HardwareProfile("desktop")
		out = ok("hardware", host0)
		if !regexp.MustCompile(`(?m)^system +`+regexp.QuoteMeta(hw.Manufacturer)).MatchString(out) || !strings.Contains(out, hw.CPU) ||
			strings.Count(out, "\nmemory ") != len(hw.Memory) || strings.Count(out, "\ndisk ") != len(hw.Disks) {
			t.Fatalf("hardware:\n%s", out)
		}
	})

	t.Run("logs", func(t *testing.T) {
		out := ok("log", host0)
		if !strings.HasPrefix(out, "TIME ") || strings.Count(out, "\n") < 13 {
			t.Fatalf("event log:\n%s", out)
		}
		csv := ok("log", host0, "--audit", "--format", "csv")
		if !strings.HasPrefix(csv, "TIME,APPLICATION,EVENT,INITIATOR,ADDRESS,DESCRIPTION\n") ||
			!strings.Contains(csv, ",Performed power down,admin,") {
			t.Fatalf("audit log:\n%s", csv)
		}
	})

	t.Run("features", func(t *testing.T) {
		out := ok("features", host0, "--kvm", "off", "--ider", "off")
		if !regexp.MustCompile(`(?m)^KVM +off$`).MatchString(out) || !regexp.MustCompile(`(?m)^SOL +on$`).MatchString(out) {
			t.Fatalf("features after --kvm off:\n%s", out)
		}
		var f api.AMTFeatures
		if err := json.Unmarshal([]byte(ok("features", host0, "--format", "json")), &f); err != nil || f.KVM || f.IDER || !f.SOL {
			t.Fatalf("features --format json: %+v %v", f, err)
		}
		ok("features", host0, "--kvm", "on", "--ider", "on")
		refused(2, "want on or off", "features", host0, "--kvm", "maybe")
	})

	t.Run("consent", func(t *testing.T) {
		refused(1, "The user at the device has to consent first. (HTTP 403)", "power", guids[1], "bios")
		out := ok("consent", guids[1])
		code := d1.ConsentCode()
		if code == "" || !strings.Contains(out, "presence amt consent "+guids[1]+" --code NNNNNN") {
			t.Fatalf("consent: %q; the device shows %q", out, code)
		}
		refused(2, "the six digits", "consent", guids[1], "--code", "12345")
		refused(2, "exclude each other", "consent", guids[1], "--code", code, "--cancel")
		if out := ok("consent", guids[1], "--code", code); !strings.Contains(out, "accepted the code") {
			t.Fatalf("consent --code: %q", out)
		}
		if out := ok("power", guids[1], "bios"); !strings.Contains(out, "Reset to BIOS accepted (action 101)") {
			t.Fatalf("power bios after consent: %q", out)
		}
		if _, last := d1.Platform().Boots(); last != "bios setup" {
			t.Fatalf("after consent the last boot is %q", last)
		}
		if out := ok("consent", guids[1], "--cancel"); !strings.Contains(out, "consent cancelled") || d1.Platform().OptInState() != 0 {
			t.Fatalf("consent --cancel: %q, state %d", out, d1.Platform().OptInState())
		}
	})

	if r := run(t, "", "amt"); r.code != 2 {
		t.Errorf("amt without a command: %+v", r)
	}
	if r := run(t, "", "amt", "help"); r.code != 0 || !strings.Contains(r.stdout, "presence amt COMMAND DEVICE") {
		t.Errorf("amt help: %+v", r)
	}
	for _, pw := range []string{adminPW, homePW, ciraPW} {
		if strings.Contains(logs.String(), pw) {
			t.Fatal("a password reached the log")
		}
	}
	if !strings.Contains(logs.String(), "AMT power action") {
		t.Errorf("the log does not record the power actions:\n%s", logs.String())
	}
}
