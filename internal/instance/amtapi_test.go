package instance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/amtsim/simenv"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
)

// The AMT toolbox's REST endpoints, on the Intel toolkit MPS's paths, end
// to end: curl (the program) against an instance with simulated devices
// over real TLS tunnels, every route and every refusal with its sentence,
// checked against the simulator's state and its record of calls.

// curlAMT sends method path to the API with curl, logged in with the
// console account (the login reaches curl on stdin, never argv), with body
// as JSON if not "". It returns the HTTP status and the body.
func curlAMT(t testing.TB, e *env, method, path, body string) (int, []byte) {
	t.Helper()
	return curlAMTWith(t, e, method, path, body, fmt.Sprintf("user = \"%s:%s\"\n", consoleUser, consolePass))
}

// curlAMTWith is curlAMT with curl's configuration (its login and
// headers, on stdin) given.
func curlAMTWith(t testing.TB, e *env, method, path, body, config string) (int, []byte) {
	t.Helper()
	curl := requireTool(t, "curl")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.json")
	args := []string{"-sS", "-K", "-", "-X", method, "--max-time", "60", "-o", out, "-w", "%{http_code}"}
	if body != "" {
		in := filepath.Join(dir, "in.json")
		if err := os.WriteFile(in, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-H", "Content-Type: application/json", "--data-binary", "@"+in)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, append(args, e.apiURL()+path)...)
	cmd.Stdin = strings.NewReader(config)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v: %s", method, path, err, stderr.String())
	}
	var code int
	fmt.Sscanf(string(stdout), "%d", &code)
	b, _ := os.ReadFile(out)
	return code, b
}

// amtGet is curlAMT with the answer decoded into out; it fails the test
// unless the status is want.
func amtCall(t testing.TB, e *env, method, path, body string, want int, out any) []byte {
	t.Helper()
	code, b := curlAMT(t, e, method, path, body)
	if code != want {
		t.Fatalf("%s %s = %d %s; want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return b
}

// wantRefusal checks an error answer: its status, the MPS's error body and
// the sentence.
func wantRefusal(t testing.TB, e *env, method, path, body string, code int, sentence string) api.AMTError {
	t.Helper()
	var ae api.AMTError
	amtCall(t, e, method, path, body, code, &ae)
	if ae.Error == "" || ae.Message != sentence || ae.ErrorDescription != sentence {
		t.Fatalf("%s %s answered %+v; want the sentence %q", method, path, ae, sentence)
	}
	return ae
}

// callNames returns the device's calls after the first n, each as
// "Action Class.Method".
func callNames(d *amtsim.Device, n int) []string {
	var s []string
	for _, c := range d.Calls()[n:] {
		x := c.Action + " " + c.Class
		if c.Method != "" {
			x += "." + c.Method
		}
		s = append(s, x)
	}
	return s
}

// capsString lists capabilities as "Label=N, ...".
func capsString(c api.AMTCapabilities) string {
	s := make([]string, len(c))
	for i, e := range c {
		s[i] = fmt.Sprintf("%s=%d", e.Label, e.Action)
	}
	return strings.Join(s, ", ")
}

// TestAMTAPIEveryRoute runs every route against a simulated AMT 16 in admin
// control mode with an OS agent, by GUID, host name and alias.
func TestAMTAPIEveryRoute(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1, device: func(_ int, c *amtsim.Config) {
		c.AMT = &amtsim.AMTConfig{Version: "16", OSAgent: true, EventLogRecords: 25}
	}})
	d, guid := e.devs[0], e.guid(0)
	p := func(route, name string) string { return "/api/v1/amt/" + route + "/" + name }

	t.Run("power state", func(t *testing.T) {
		// Any name of the device: GUID in upper case without dashes, host
		// name, alias.
		if err := e.in.Server.SetAlias("front-desk", guid); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{guid, strings.ToUpper(strings.ReplaceAll(guid, "-", "")), e.hostname(0), "front-desk"} {
			var ps api.AMTPowerState
			amtCall(t, e, "GET", p("power/state", name), "", 200, &ps)
			if ps.PowerState != 2 || ps.OSPowerSavingState == nil || *ps.OSPowerSavingState != 2 {
				t.Fatalf("power state by %q = %+v; want on, OS at full power", name, ps)
			}
		}
		raw := amtCall(t, e, "GET", p("power/state", guid), "", 200, nil)
		if !strings.Contains(string(raw), `"powerstate": 2`) {
			t.Errorf("the answer does not have the MPS's key powerstate: %s", raw)
		}
	})

	t.Run("capabilities", func(t *testing.T) {
		var caps api.AMTCapabilities
		amtCall(t, e, "GET", p("power/capabilities", guid), "", 200, &caps)
		want := "Reset=10, Power cycle=5, Power down=8, Soft-reset=14, Soft-off=12, Sleep=4, Hibernate=7, Reset to BIOS=101, Reset to PXE=400"
		if capsString(caps) != want {
			t.Fatalf("capabilities of a device that is on = %v; want %v", caps, want)
		}
	})

	t.Run("version", func(t *testing.T) {
		var v api.AMTVersion
		amtCall(t, e, "GET", p("version", guid), "", 200, &v)
		i := slices.IndexFunc(v.SoftwareIdentity.Responses, func(s api.AMTSoftwareIdentity) bool { return s.InstanceID == "AMT" })
		if i < 0 || v.SoftwareIdentity.Responses[i].VersionString != d.Platform().Version() || v.SoftwareIdentity.Status != 200 {
			t.Fatalf("version = %+v; want AMT %s", v, d.Platform().Version())
		}
		if v.SetupAndConfig.Response.ProvisioningMode != 1 || v.SetupAndConfig.Response.ProvisioningState != 2 {
			t.Errorf("setup and configuration = %+v; want ACM (1), post-provisioning (2)", v.SetupAndConfig)
		}
	})

	t.Run("hardware", func(t *testing.T) {
		var h api.AMTHardware
		amtCall(t, e, "GET", p("hardwareInfo", guid), "", 200, &h)
		hw, _ := amtsim.HardwareProfile("desktop")
		if h.Chassis.Response == nil || h.Chassis.Response.Manufacturer != hw.Manufacturer || h.Chassis.Status != 200 {
			t.Errorf("CIM_Chassis = %+v; want %s", h.Chassis, hw.Manufacturer)
		}
		if len(h.PhysicalMemory.Responses) != len(hw.Memory) || len(h.MediaAccess.Responses) != len(hw.Disks) {
			t.Errorf("memory %d, disks %d; want %d and %d", len(h.PhysicalMemory.Responses), len(h.MediaAccess.Responses), len(hw.Memory), len(hw.Disks))
		}
		if len(h.Chip.Responses) != 1 || h.Chip.Responses[0].Version != hw.CPU || h.BIOSElement.Response.Version != hw.BIOSVersion {
			t.Errorf("chip %+v, BIOS %+v; want %s, %s", h.Chip, h.BIOSElement, hw.CPU, hw.BIOSVersion)
		}
		if got := h.BIOSElement.Response.ReleaseDate["Datetime"]; got != hw.BIOSDate.Format(time.RFC3339) {
			t.Errorf("BIOS ReleaseDate %v; want %s", got, hw.BIOSDate.Format(time.RFC3339))
		}
	})

	t.Run("general settings", func(t *testing.T) {
		var g api.AMTGeneralSettings
		amtCall(t, e, "GET", p("generalSettings", guid), "", 200, &g)
		if g.Body.HostName != e.hostname(0) || !strings.HasSuffix(g.Header.ResourceURI, "AMT_GeneralSettings") {
			t.Fatalf("general settings = %+v; want host %s", g, e.hostname(0))
		}
	})

	t.Run("features", func(t *testing.T) {
		var f api.AMTFeatures
		amtCall(t, e, "GET", p("features", guid), "", 200, &f)
		if !f.SOL || !f.IDER || !f.KVM || !f.KVMAvailable || !f.Redirection || f.UserConsent != "none" || f.EnableSOL != f.SOL {
			t.Fatalf("features = %+v; want all on, no consent", f)
		}
		// Switch IDE-R and KVM off and ask for consent for KVM; SOL,
		// left out, stays on.
		amtCall(t, e, "POST", p("features", guid), `{"enableIDER": false, "enableKVM": false, "userConsent": "kvm"}`, 200, &f)
		if !f.SOL || f.IDER || f.KVM || f.UserConsent != "kvm" || f.Status != "Updated AMT Features" {
			t.Fatalf("features after the change = %+v", f)
		}
		var again api.AMTFeatures
		amtCall(t, e, "GET", p("features", guid), "", 200, &again)
		if again.IDER || again.KVM || !again.SOL || again.UserConsent != "kvm" {
			t.Fatalf("features read again = %+v", again)
		}
		amtCall(t, e, "POST", p("features", guid), `{"enableIDER": true, "enableKVM": true, "userConsent": "none", "enableSOL": true}`, 200, &f)
		if !f.IDER || !f.KVM || f.UserConsent != "none" {
			t.Fatalf("features restored = %+v", f)
		}
		wantRefusal(t, e, "POST", p("features", guid), `{"userConsent": "maybe"}`, 400, "userConsent must be none, kvm or all.")
		wantRefusal(t, e, "POST", p("features", guid), `{"ocr": true}`, 501, "Presence does not switch on one-click recovery or remote platform erase.")
	})

	t.Run("power actions", func(t *testing.T) {
		var res api.AMTMethodResult
		amtCall(t, e, "POST", p("power/action", guid), `{"action": 8}`, 200, &res)
		if res.Body.ReturnValue != 0 || res.Body.ReturnValueStr != "SUCCESS" || d.PowerState() != amtsim.PowerOffSoft {
			t.Fatalf("power off = %+v; the device is in state %d", res, d.PowerState())
		}
		var caps api.AMTCapabilities
		amtCall(t, e, "GET", p("power/capabilities", guid), "", 200, &caps)
		if want := "Power up=2, Power up to BIOS=100, Power on to PXE=401"; capsString(caps) != want {
			t.Fatalf("capabilities of a device that is off = %v; want %v", caps, want)
		}
		wantRefusal(t, e, "POST", p("power/action", guid), `{"action": 10}`, 400, "Reset is not possible now: the device is off, not on.")
		amtCall(t, e, "POST", p("power/action", guid), `{"action": 2}`, 200, &res)
		if d.PowerState() != amtsim.PowerOn {
			t.Fatalf("power on left the device in state %d", d.PowerState())
		}
		wantRefusal(t, e, "POST", p("power/action", guid), `{"action": 2}`, 400, "Power on is not possible now: the device is on already.")
		// The audit log has the two actions, newest first.
		var al api.AMTAuditLog
		amtCall(t, e, "GET", p("log/audit", guid)+"?startIndex=0", "", 200, &al)
		if len(al.Records) < 2 || al.Records[0].Event != "Performed power up" || al.Records[1].Event != "Performed power down" ||
			al.Records[0].Initiator != amtUser {
			t.Fatalf("the audit log's newest records are %+v", al.Records[:min(2, len(al.Records))])
		}
	})

	t.Run("boot sequence", func(t *testing.T) {
		// Read the status once, so that the version and boot capabilities
		// are cached and the record below is the action's alone.
		amtCall(t, e, "GET", p("power/capabilities", guid), "", 200, nil)
		for _, tc := range []struct {
			route  string
			action int
			source string
			put    string
			boot   string
		}{
			{"power/bootOptions", 101, "", "BIOSSetup", "bios setup"},
			{"power/action", 400, wsman.SourcePXE, "", "pxe"}, // the boot numbers on /power/action too
		} {
			n := len(d.Calls())
			var res api.AMTMethodResult
			amtCall(t, e, "POST", p(tc.route, guid), fmt.Sprintf(`{"action": %d, "useSOL": false}`, tc.action), 200, &res)
			if res.Body.ReturnValue != 0 {
				t.Fatalf("boot %d = %+v", tc.action, res)
			}
			want := []string{
				// The toolbox's status: power state and consent (version and
				// boot capabilities cached).
				"Enumerate CIM_ServiceAvailableToElement", "Pull CIM_ServiceAvailableToElement", "Get IPS_OptInService",
				// The boot sequence.
				"Get AMT_BootCapabilities", "Invoke CIM_BootConfigSetting.ChangeBootOrder",
				"Get AMT_BootSettingData", "Put AMT_BootSettingData", "Invoke CIM_BootService.SetBootConfigRole",
			}
			if tc.source != "" {
				want = append(want, "Invoke CIM_BootConfigSetting.ChangeBootOrder")
			}
			want = append(want, "Invoke CIM_PowerManagementService.RequestPowerStateChange")
			if got := callNames(d, n); !slices.Equal(got, want) {
				t.Fatalf("boot %d made the calls\n%s\nwant\n%s", tc.action, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			byName := simenv.CheckBoot(t, d.Calls()[n:], tc.source, tc.put)
			if put := byName["Put AMT_BootSettingData."][0].Args; tc.put == "" && put["BIOSSetup"] != "false" {
				t.Errorf("the Put has %v; want BIOSSetup false", put)
			}
			if _, last := d.Platform().Boots(); last != tc.boot {
				t.Errorf("the host's last boot is %q; want %q", last, tc.boot)
			}
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		n := len(d.Calls())
		const body = `The body must be JSON like {"action": 10}.`
		wantRefusal(t, e, "POST", p("power/action", guid), `{"action": 999}`, 400,
			"999 is not a power action: use 2 on, 5 cycle, 8 off, 10 reset, 4, 7, 12, 14, 100/101 (BIOS) or 400/401 (PXE).")
		wantRefusal(t, e, "POST", p("power/action", guid), `{"action": 202}`, 501,
			"Presence does not do power action 202; it does 2, 5, 8, 10, 4, 7, 12, 14, 100/101 (BIOS) and 400/401 (PXE).")
		wantRefusal(t, e, "POST", p("power/action", guid), `{"action": 101, "useSOL": true}`, 501,
			"Presence does not start a boot with SOL redirected (useSOL); open a SOL session through the relay to watch it.")
		wantRefusal(t, e, "POST", p("power/action", guid), `{"action": "reset"}`, 400, body)
		wantRefusal(t, e, "POST", p("power/action", guid), `{}`, 400, body)
		wantRefusal(t, e, "POST", p("power/action", guid), `{"action": 10, "pad": "`+strings.Repeat("x", 5000)+`"}`, 400, body)
		wantRefusal(t, e, "GET", p("log/audit", guid)+"?startIndex=-1", "", 400, "startIndex must be a whole number from 0 to 10000.")
		wantRefusal(t, e, "POST", p("userConsentCode", guid), `{"consentCode": "12a456"}`, 400,
			`The body must be JSON like {"consentCode": 123456}: the six digits the device shows.`)
		ae := wantRefusal(t, e, "GET", p("power/state", "nosuch"), "", 404, `No connected device is named "nosuch".`)
		if ae.Error != "Device not found/connected. Please connect again using CIRA." {
			t.Errorf("404 error %q; want the MPS's", ae.Error)
		}
		if got := callNames(d, n); len(got) != 0 {
			t.Errorf("bad requests reached the device: %v", got)
		}
		if code, _ := curlAMT(t, e, "PUT", p("power/state", guid), ""); code != 405 {
			t.Errorf("PUT power/state = %d; want 405", code)
		}
		// Without a login: refused before the device is looked up.
		if code := apiDo(t, e, "GET", p("power/state", guid), "", "", nil, nil); code != 401 {
			t.Errorf("power state without a login = %d; want 401", code)
		}
	})

	t.Run("event log", func(t *testing.T) {
		var evs []api.AMTEvent
		raw := amtCall(t, e, "GET", p("log/event", guid), "", 200, &evs)
		want := d.Platform().EventRecords()
		if len(evs) != len(want) || len(evs) < 25 {
			t.Fatalf("%d events; the device has %d (25 prefilled)", len(evs), len(want))
		}
		// In the device's order, each record as the device holds it.
		for i, ev := range evs {
			w := want[i]
			if len(ev.EventData) != 8 || ev.Desc == "" || ev.EntityStr == "" || !ev.Time.Equal(ev.TimeStamp) ||
				ev.Time.Unix() != int64(w.TimeStamp) || ev.EventSensorType != w.EventSensorType || ev.Entity != w.Entity ||
				ev.EventData[1] != int(w.EventData[1]) {
				t.Fatalf("event %d = %+v; the device has %+v", i, ev, w)
			}
		}
		for _, k := range []string{`"EventSensorType"`, `"EventOffset"`, `"EventSeverity"`, `"EntityStr"`, `"Desc"`, `"TimeStamp"`} {
			if !strings.Contains(string(raw), k) {
				t.Errorf("the event log lacks the MPS's field %s", k)
			}
		}
	})

	t.Run("audit log pages", func(t *testing.T) {
		total := len(d.Platform().AuditRecords())
		var first, page, all api.AMTAuditLog
		amtCall(t, e, "GET", p("log/audit", guid), "", 200, &first)
		if first.TotalCount != total || len(first.Records) != min(10, total) {
			t.Fatalf("the first page has %d of %d records; the device has %d", len(first.Records), first.TotalCount, total)
		}
		amtCall(t, e, "GET", p("log/audit", guid)+"?count=10000", "", 200, &all)
		if len(all.Records) != total {
			t.Fatalf("count=10000 gave %d of %d records", len(all.Records), total)
		}
		for i := 1; i < len(all.Records); i++ {
			if all.Records[i].Time.After(all.Records[i-1].Time) {
				t.Fatalf("record %d is newer than record %d", i, i-1)
			}
		}
		amtCall(t, e, "GET", p("log/audit", guid)+fmt.Sprintf("?startIndex=%d", total-3), "", 200, &page)
		if len(page.Records) != 3 || page.Records[2].Event != all.Records[total-1].Event {
			t.Fatalf("the last page has %d records: %+v", len(page.Records), page.Records)
		}
		prov := all.Records[total-1] // the oldest: the simulator's provisioning record
		if prov.AuditApp != "Security Admin" || prov.Desc == "" {
			t.Errorf("the oldest record = %+v", prov)
		}
	})
}

// TestAMTAPIConsent: in client control mode a boot option needs consent
// (403, the host does not boot); the code the device shows is asked for,
// a wrong one refused as the MPS refuses it, the right one accepted, and
// the boot goes through; cancel works by DELETE and by the MPS's GET.
func TestAMTAPIConsent(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1, device: func(_ int, c *amtsim.Config) {
		c.AMT = &amtsim.AMTConfig{Version: "16", ControlMode: amtsim.CCM}
	}})
	d, guid := e.devs[0], e.guid(0)
	p := func(route string) string { return "/api/v1/amt/" + route + "/" + guid }

	wantRefusal(t, e, "POST", p("power/bootOptions"), `{"action": 101}`, 403, "The user at the device has to consent first.")
	if boots, _ := d.Platform().Boots(); boots != 0 {
		t.Fatalf("the host booted %d times without consent", boots)
	}
	// Plain power actions need no consent.
	amtCall(t, e, "POST", p("power/action"), `{"action": 10}`, 200, nil)

	var res api.AMTMethodResult
	amtCall(t, e, "GET", p("userConsentCode"), "", 200, &res)
	code := d.ConsentCode()
	if res.Body.ReturnValueStr != "SUCCESS" || code == "" || res.OptInState == nil || *res.OptInState == 0 {
		t.Fatalf("consent request = %+v; the device shows %q", res, code)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	ae := wantRefusal(t, e, "POST", p("userConsentCode"), `{"consentCode": `+strings.TrimLeft(wrong, "0")+`0}`, 422, "The device did not take that code: check the six digits it shows and send them again.")
	if ae.Error != "Unprocessable Entity" || ae.Details == nil || ae.Details.ReturnValue != wsman.StatusUnsupported || ae.AMTResponse == nil {
		t.Fatalf("wrong code answered %+v", ae)
	}
	amtCall(t, e, "POST", p("userConsentCode"), `{"consentCode": "`+code+`"}`, 200, &res)
	if d.Platform().OptInState() != wsman.OptInReceived {
		t.Fatalf("after the code the device's consent state is %d", d.Platform().OptInState())
	}
	n, _ := d.Platform().Boots()
	amtCall(t, e, "POST", p("power/bootOptions"), `{"action": 101}`, 200, &res)
	if boots, last := d.Platform().Boots(); boots != n+1 || last != "bios setup" || res.Body.ReturnValue != 0 {
		t.Fatalf("after consent: %d boots, the last %q; answer %+v", boots, last, res)
	}
	// Cancel ends the consent; a second cancel has nothing to end.
	amtCall(t, e, "DELETE", p("userConsentCode"), "", 200, nil)
	if st := d.Platform().OptInState(); st != wsman.OptInNotStarted {
		t.Fatalf("after cancel the consent state is %d", st)
	}
	amtCall(t, e, "GET", p("userConsentCode"), "", 200, nil)
	amtCall(t, e, "GET", "/api/v1/amt/userConsentCode/cancel/"+guid, "", 200, nil)
	if d.ConsentCode() != "" {
		t.Fatal("the MPS's cancel left a code on the screen")
	}
	// In CCM the policy cannot be changed.
	if code, b := curlAMT(t, e, "POST", p("features"), `{"userConsent": "none"}`); code < 400 {
		t.Fatalf("changing the consent policy in CCM = %d %s", code, b)
	}
}

// TestAMTAPIRefusals: wrong AMT credentials (asked once, never again, with
// no retry storm), no AMT account, an unsupported class, an old platform.
func TestAMTAPIRefusals(t *testing.T) {
	hw, _ := amtsim.HardwareProfile("headless")
	e := newEnv(t, envOptions{devices: 3, device: func(i int, c *amtsim.Config) {
		switch i {
		case 0:
			c.AMTPassword = []byte("Not-the-vaults-1")
		case 1:
			c.AMT = &amtsim.AMTConfig{Version: "16", Hardware: &hw}
		case 2:
			c.AMT = &amtsim.AMTConfig{Version: "9"}
		}
	}})
	p := func(route string, i int) string { return "/api/v1/amt/" + route + "/" + e.guid(i) }

	t.Run("wrong credentials", func(t *testing.T) {
		d := e.devs[0]
		wantRefusal(t, e, "GET", p("power/state", 0), "", 502, "The device rejected the AMT user name or password.")
		for range 5 {
			wantRefusal(t, e, "GET", p("power/state", 0), "", 502,
				"The device rejected this AMT user name or password before; Presence does not try it again until it is changed.")
		}
		wantRefusal(t, e, "POST", p("power/action", 0), `{"action": 10}`, 502,
			"The device rejected this AMT user name or password before; Presence does not try it again until it is changed.")
		failed := 0
		for _, r := range d.Platform().AuditRecords() {
			if r.AuditAppID == 16 && r.EventID == 5 { // ACL access with invalid credentials
				failed++
			}
		}
		if failed != 1 || len(d.Calls()) != 0 {
			t.Fatalf("the device recorded %d failed logins and answered %d calls; want 1 and none", failed, len(d.Calls()))
		}
		if d.PowerState() != amtsim.PowerOn {
			t.Fatal("a refused power action reached the device")
		}
	})

	t.Run("unsupported class", func(t *testing.T) {
		var f api.AMTFeatures
		amtCall(t, e, "GET", p("features", 1), "", 200, &f)
		if f.KVMAvailable || f.KVM || !f.SOL {
			t.Fatalf("features of a platform without KVM = %+v", f)
		}
		wantRefusal(t, e, "POST", p("features", 1), `{"enableKVM": true}`, 501, "This device's platform does not support that.")
		var calls []string
		for _, c := range e.devs[1].Calls() {
			if c.Fault != "" {
				calls = append(calls, c.Class[strings.LastIndexByte(c.Class, '/')+1:]+" "+c.Fault)
			}
		}
		if !slices.Contains(calls, "CIM_KVMRedirectionSAP DestinationUnreachable") {
			t.Errorf("the faults the device answered: %v", calls)
		}
		// An AMT 9 has no IPS_PowerManagementService: the power state
		// comes without the OS's, and the OS agent's actions are not
		// offered.
		var ps api.AMTPowerState
		amtCall(t, e, "GET", p("power/state", 2), "", 200, &ps)
		if ps.PowerState != 2 || ps.OSPowerSavingState != nil {
			t.Fatalf("power state of an AMT 9 = %+v", ps)
		}
		wantRefusal(t, e, "POST", p("power/action", 2), `{"action": 4}`, 400,
			"Sleep is not possible now: it needs AMT 10 or later, and the device has AMT 9.0.0.")
	})

	t.Run("no AMT account", func(t *testing.T) {
		ctx := context.Background()
		if err := e.in.Accounts().Remove(ctx, vault.KindAMT, amtUser); err != nil {
			t.Fatal(err)
		}
		defer e.in.Accounts().Add(ctx, vault.KindAMT, amtUser, amtPass)
		wantRefusal(t, e, "GET", p("generalSettings", 1), "", 502,
			"Presence has no AMT account for this device: add one with presence account add --kind amt NAME (password on standard input).")
	})
}

// budgetConn is a device's TCP connection that dies once the device has
// written more than a budget after it was armed: the device goes away in
// the middle of an answer.
type budgetConn struct {
	net.Conn
	armed atomic.Bool
	left  atomic.Int64
}

func (c *budgetConn) Write(b []byte) (int, error) {
	if c.armed.Load() && c.left.Add(-int64(len(b))) < 0 {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

// TestAMTAPIDeviceGoneMidCall: a device whose tunnel ends in the middle of
// the event log (after about one page of 390 records) fails the call at
// once with 504, and is then unknown (404).
func TestAMTAPIDeviceGoneMidCall(t *testing.T) {
	var (
		mu   sync.Mutex
		conn *budgetConn
	)
	e := newEnv(t, envOptions{devices: 1, device: func(_ int, c *amtsim.Config) {
		c.AMT = &amtsim.AMTConfig{EventLogRecords: 2000}
		c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			conn = &budgetConn{Conn: nc}
			return conn, nil
		}
	}})
	guid := e.guid(0)
	amtCall(t, e, "GET", "/api/v1/amt/power/state/"+guid, "", 200, nil)
	mu.Lock()
	conn.left.Store(30 << 10) // a page of 390 records is about 20 KB of TLS records
	conn.armed.Store(true)
	mu.Unlock()
	start := time.Now()
	wantRefusal(t, e, "GET", "/api/v1/amt/log/event/"+guid, "", 504, "The device is not connected, or its tunnel went away.")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the call failed after %v; want at once, not at the deadline", d)
	}
	if n := len(e.devs[0].Calls()); e.devs[0].Calls()[n-1].Method != "GetRecords" {
		t.Errorf("the device's last call is %+v; want GetRecords", e.devs[0].Calls()[n-1])
	}
	e.waitFor("the tunnel closed", func() bool { return e.in.Server.Stats().Tunnels == 0 })
	wantRefusal(t, e, "GET", "/api/v1/amt/power/state/"+guid, "", 404, fmt.Sprintf("No connected device is named %q.", guid))
}

// TestAMTAPIPeersDevice: an instance's AMT endpoints reach a device whose
// tunnel is on a peer of its fleet, by host name and by GUID.
func TestAMTAPIPeersDevice(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	b, caB := startPeer(t, root, "inst-b")
	a, _ := startPeer(t, root, "inst-a", b.PeerAddr.String())
	b.Fleet().Add(a.PeerAddr.String())
	d := runDevice(t, b, caB, 0, "peer-host")
	guid := d.UUID().String()
	waitUntil(t, "A knows B's device", func() bool { _, ok := a.Fleet().Lookup("peer-host"); return ok })
	ea := &env{t: t, in: a}
	for _, name := range []string{"peer-host", strings.ToUpper(guid)} {
		var ps api.AMTPowerState
		amtCall(t, ea, "GET", "/api/v1/amt/power/state/"+name, "", 200, &ps)
		if ps.PowerState != d.PowerState() {
			t.Fatalf("power state through the peer by %q = %+v; the device is in %d", name, ps, d.PowerState())
		}
	}
	amtCall(t, ea, "POST", "/api/v1/amt/power/action/peer-host", `{"action": 8}`, 200, nil)
	if d.PowerState() != amtsim.PowerOffSoft {
		t.Fatalf("power off through the peer left the device in state %d", d.PowerState())
	}
}

// TestAMTAPICrossSite: a request that changes a device, sent by a browser
// for a page of another site, is refused even with a login (a browser
// adds one it remembers), unless it carries the instance's token; reads,
// and programs that send no Origin, are not affected.
func TestAMTAPICrossSite(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	d, guid := e.devs[0], e.guid(0)
	login := fmt.Sprintf("user = \"%s:%s\"\n", consoleUser, consolePass)
	evil := `header = "Origin: http://evil.example"` + "\n"
	for _, tc := range []struct{ method, route, body, config string }{
		{"POST", "power/action", `{"action": 8}`, login + evil},
		{"POST", "power/bootOptions", `{"action": 101}`, login + `header = "Sec-Fetch-Site: cross-site"` + "\n"},
		{"GET", "userConsentCode", "", login + `header = "Sec-Fetch-Site: same-site"` + "\n"},
		{"GET", "userConsentCode/cancel", "", login + evil},
		{"POST", "features", `{"enableSOL": false}`, login + evil},
	} {
		code, b := curlAMTWith(t, e, tc.method, "/api/v1/amt/"+tc.route+"/"+guid, tc.body, tc.config)
		var ae api.AMTError
		json.Unmarshal(b, &ae)
		if code != 403 || ae.Message != "A page of another site may not act on a device; send the instance's token (Authorization: Bearer)." {
			t.Fatalf("cross-site %s %s = %d %s; want 403", tc.method, tc.route, code, b)
		}
	}
	if n := len(d.Calls()); n != 0 || d.PowerState() != amtsim.PowerOn {
		t.Fatalf("refused requests reached the device: %d calls, state %d", n, d.PowerState())
	}
	// A read is answered; so is a change with the token, and one from the
	// page's own origin.
	if code, b := curlAMTWith(t, e, "GET", "/api/v1/amt/power/state/"+guid, "", login+evil); code != 200 {
		t.Fatalf("cross-site read = %d %s", code, b)
	}
	bearer := `header = "Authorization: Bearer ` + e.in.Token() + `"` + "\n"
	if code, b := curlAMTWith(t, e, "POST", "/api/v1/amt/power/action/"+guid, `{"action": 8}`, bearer+evil); code != 200 || d.PowerState() != amtsim.PowerOffSoft {
		t.Fatalf("cross-site change with the token = %d %s", code, b)
	}
	same := `header = "Origin: ` + e.apiURL() + `"` + "\n"
	if code, b := curlAMTWith(t, e, "POST", "/api/v1/amt/power/action/"+guid, `{"action": 2}`, login+same); code != 200 || d.PowerState() != amtsim.PowerOn {
		t.Fatalf("same-origin change = %d %s", code, b)
	}
}

// TestAMTAPIQueueFull: more calls than a device's queue holds get 503 with
// Retry-After and the sentence at once, and the others are answered; the
// device's queue is not stuck after.
func TestAMTAPIQueueFull(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1, device: func(_ int, c *amtsim.Config) {
		c.AMT = &amtsim.AMTConfig{EventLogRecords: 2000}
	}})
	guid := e.guid(0)
	const n = 48 // the queue holds 16 (wsman.DefaultQueueLen)
	codes := make([]int, n)
	retry := make([]string, n)
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", e.apiURL()+"/api/v1/amt/log/event/"+guid, nil)
			req.SetBasicAuth(consoleUser, consolePass)
			resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			codes[i], retry[i] = resp.StatusCode, resp.Header.Get("Retry-After")
			bodies[i], _ = io.ReadAll(resp.Body)
		})
	}
	wg.Wait()
	ok, full := 0, 0
	for i, c := range codes {
		switch c {
		case 200:
			ok++
		case 503:
			full++
			var ae api.AMTError
			if json.Unmarshal(bodies[i], &ae); ae.Message != "The device is busy with other requests; try again in a moment." || retry[i] == "" {
				t.Errorf("503 answer %s, Retry-After %q", bodies[i], retry[i])
			}
		default:
			t.Errorf("request %d = %d %s", i, c, bodies[i])
		}
	}
	if full == 0 || ok < wsman.DefaultQueueLen {
		t.Fatalf("%d answered, %d refused as the queue was full; want some of each, %d answered at least", ok, full, wsman.DefaultQueueLen)
	}
	amtCall(t, e, "GET", "/api/v1/amt/power/state/"+guid, "", 200, nil)
}
