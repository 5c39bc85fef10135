package amtsim

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/redir"
)

// grantConsent starts an opt-in and sends the displayed code, as a
// console does with what the user reads off the screen.
func grantConsent(t *testing.T, p *Platform) {
	t.Helper()
	p.mu.Lock()
	rv := p.startOptIn()
	p.mu.Unlock()
	code := p.ConsentCode()
	if rv != 0 || len(code) != 6 {
		t.Fatalf("StartOptIn = %d, code %q", rv, code)
	}
	var n int64
	for _, c := range code {
		n = n*10 + int64(c-'0')
	}
	p.mu.Lock()
	rv = p.sendOptInCode(n, testUser, "127.0.0.1:1")
	p.mu.Unlock()
	if rv != 0 {
		t.Fatalf("SendOptInCode(%s) = %d", code, rv)
	}
}

func redirWith(t *testing.T, p *Platform, screen SOLScreen) *RedirServer {
	cfg := redirConfig()
	cfg.Platform, cfg.Screen = p, screen
	return NewRedirServer(cfg)
}

// TestRedirConsent: in CCM a SOL session needs consent; it is refused with
// 0x21 status 0xFF until the code is sent, then runs with OptInState 4
// and uses the consent up when it ends. A power cycle or power down is
// refused while it runs.
func TestRedirConsent(t *testing.T) {
	p, err := NewPlatform(&AMTConfig{ControlMode: CCM}, testUUID, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := redirWith(t, p, SOLShell)
	ln := listenRedir(t, s)
	_, err = DialSOL(dialT(t, ln), testUser, testPassword, SOLAuthDigest)
	var se *RedirStatusError
	if !errors.Is(err, ErrConsentRequired) || !errors.As(err, &se) || se.Code != redir.MsgSOLStartReply {
		t.Fatalf("DialSOL without consent = %v; want ErrConsentRequired from 0x21", err)
	}

	grantConsent(t, p)
	r, run := serveOne(t, s, nil)
	c, err := DialSOL(r.c, testUser, testPassword, SOLAuthDigest)
	if err != nil {
		t.Fatalf("DialSOL with consent: %v", err)
	}
	readUntil(t, c, redirHost+"$ ")
	if st := p.OptInState(); st != optInInSession {
		t.Fatalf("OptInState during the session = %d; want 4", st)
	}
	p.mu.Lock()
	off, cycle, reset := p.requestPowerStateChange(PowerOffSoft, testUser, ""), p.requestPowerStateChange(PowerCycle, testUser, ""),
		p.requestPowerStateChange(PowerReset, testUser, "")
	p.mu.Unlock()
	if off != 2 || cycle != 2 || reset != 0 {
		t.Fatalf("during SOL: power down %d, cycle %d, reset %d; want 2, 2, 0", off, cycle, reset)
	}
	if err := c.End(); err != nil {
		t.Fatalf("End: %v", err)
	}
	if err := run.wait(t); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if st := p.OptInState(); st != optInNotStarted {
		t.Fatalf("OptInState after the session = %d; want 0 (consent used up)", st)
	}

	var events []uint16
	for _, r := range p.AuditRecords() {
		if r.AuditAppID == auditRedirection {
			events = append(events, r.EventID)
			if r.Initiator != testUser || r.NetAddress != "127.0.0.1" {
				t.Errorf("SOL audit record %+v; want %s from 127.0.0.1", r, testUser)
			}
		}
	}
	if len(events) != 2 || events[0] != 4 || events[1] != 5 {
		t.Fatalf("redirection audit events %v; want SOL opened, closed [4 5]", events)
	}

	t.Run("ACM needs none", func(t *testing.T) {
		p, _ := NewPlatform(nil, testUUID, nil)
		c, err := DialSOL(dialT(t, listenRedir(t, redirWith(t, p, SOLShell))), testUser, testPassword, SOLAuthClear)
		if err != nil {
			t.Fatalf("ACM: %v", err)
		}
		c.Close()
	})
	t.Run("ACM KVM-only consent does not gate SOL", func(t *testing.T) {
		p, _ := NewPlatform(&AMTConfig{UserConsent: ConsentKVM}, testUUID, nil)
		c, err := DialSOL(dialT(t, listenRedir(t, redirWith(t, p, SOLShell))), testUser, testPassword, SOLAuthDigest)
		if err != nil {
			t.Fatalf("ACM with KVM consent: %v", err)
		}
		c.Close()
	})
	t.Run("ACM all gates SOL", func(t *testing.T) {
		p, _ := NewPlatform(&AMTConfig{UserConsent: ConsentAll}, testUUID, nil)
		_, err := DialSOL(dialT(t, listenRedir(t, redirWith(t, p, SOLShell))), testUser, testPassword, SOLAuthDigest)
		if !errors.Is(err, ErrConsentRequired) {
			t.Fatalf("ACM with consent all: %v; want ErrConsentRequired", err)
		}
	})
}

func TestRedirSOLDisabledAndFailedLogin(t *testing.T) {
	p, _ := NewPlatform(nil, testUUID, nil)
	p.mu.Lock()
	p.redirState = 32769 // IDE-R only
	p.mu.Unlock()
	ln := listenRedir(t, redirWith(t, p, SOLShell))
	if _, err := DialSOL(dialT(t, ln), testUser, testPassword, SOLAuthDigest); !errors.Is(err, ErrRedirUnsupported) {
		t.Fatalf("DialSOL with SOL disabled = %v; want ErrRedirUnsupported (0x11 status 3)", err)
	}
	p.mu.Lock()
	p.redirState = 32771
	p.mu.Unlock()
	for _, auth := range []SOLAuth{SOLAuthDigest, SOLAuthClear} {
		// The device frees its SOL slot just after it has answered the
		// previous wrong login: a console that comes back at once may
		// still find it busy.
		_, err := DialSOL(dialT(t, ln), testUser, "wrong", auth)
		for deadline := time.Now().Add(testTimeout); errors.Is(err, ErrRedirBusy) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			_, err = DialSOL(dialT(t, ln), testUser, "wrong", auth)
		}
		if !errors.Is(err, ErrRedirAuth) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	n := 0
	for _, r := range p.AuditRecords() {
		if r.AuditAppID == auditSecurityAdmin && r.EventID == 5 && r.Initiator == testUser {
			n++
		}
	}
	if n != 2 || p.EventRecords()[0].EventData[1] != 2 {
		t.Fatalf("%d audited failed logins, newest event %+v; want 2, count 2", n, p.EventRecords()[0])
	}
}

// TestDeviceToolbox drives a Device's own platform: WS-Man over its
// handler, the accessors, the fleet summary's consent codes, and a
// redirection channel refused while the listener is off.
func TestDeviceToolbox(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.AMT = &AMTConfig{Version: "16", ControlMode: CCM}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.wsmanHandler())
	defer srv.Close()
	c := &wsClient{t: t, url: srv.URL + "/wsman", h: d.wsmanHandler()}
	if rv, _ := c.invoke("IPS_OptInService", "StartOptIn", ""); rv != 0 || len(d.ConsentCode()) != 6 {
		t.Fatalf("StartOptIn = %d, ConsentCode %q", rv, d.ConsentCode())
	}
	if calls := d.Calls(); len(calls) != 1 || calls[0].Method != "StartOptIn" {
		t.Fatalf("Calls = %+v", calls)
	}
	if got := c.header.Get("Server"); got != "Intel(R) Active Management Technology 16.1.27" {
		t.Fatalf("Server %q", got)
	}
	if d.PowerState() != PowerOn {
		t.Fatalf("PowerState %d", d.PowerState())
	}
	if s := d.Redirection(); s.cfg.FWMajor != 16 || s.cfg.Platform != d.Platform() {
		t.Fatalf("redirection service FW %d, platform shared %v", s.cfg.FWMajor, s.cfg.Platform == d.Platform())
	}

	t.Run("bad AMT config", func(t *testing.T) {
		for _, a := range []*AMTConfig{{Version: "5"}, {Version: "x"}, {Version: "16.01"}, {ControlMode: 9},
			{UserConsent: 7}, {EventLogRecords: -1}, {EventLogRecords: MaxEventLogRecords + 1}, {SOLScreen: 5}} {
			cfg := e.config()
			cfg.AMT = a
			if _, err := New(cfg); err == nil {
				t.Errorf("New with %+v succeeded", *a)
			}
		}
	})
	t.Run("fleet summary", func(t *testing.T) {
		fc := FleetConfig{Device: e.config(), Devices: 3, Seed: t.Name()}
		fc.Device.AMT = &AMTConfig{ControlMode: CCM}
		f, err := NewFleet(fc)
		if err != nil {
			t.Fatal(err)
		}
		if s := f.Summary(); s.ConsentCodes != nil {
			t.Fatalf("consent codes before any request: %v", s.ConsentCodes)
		}
		dev := f.Devices()[1]
		p := dev.Platform()
		p.mu.Lock()
		p.startOptIn()
		p.mu.Unlock()
		s := f.Summary()
		if len(s.ConsentCodes) != 1 || s.ConsentCodes[dev.UUID().String()] != dev.ConsentCode() {
			t.Fatalf("summary consent codes %v; want %s: %s", s.ConsentCodes, dev.UUID(), dev.ConsentCode())
		}
		if f.Devices()[0].platformIfMade() != nil {
			t.Fatal("the summary made a platform for a device nobody asked")
		}
	})
	t.Run("listener off refuses the channel", func(t *testing.T) {
		d, _, peer := connectedPeer(t, func(c *Config) {}, true)
		p := d.Platform()
		p.mu.Lock()
		p.listener = false
		p.mu.Unlock()
		peer.send(channelOpen(9, 4096, PortRedirect))
		if f := nextAs[*apf.ChannelOpenFailure](peer); f.Recipient != 9 || f.Reason != apf.OpenConnectFailed {
			t.Fatalf("open to 16994 with the listener off = %+v; want CONNECT_FAILED", f)
		}
	})
}

// FuzzWSMan feeds request bodies to an authenticated handler: it must not
// panic, must answer 200 or 400, and must answer well-formed XML.
func FuzzWSMan(f *testing.F) {
	c := &wsClient{}
	for _, b := range [][]byte{
		c.envelope(ActionGet, "AMT_GeneralSettings", nil, ""),
		c.envelope(ActionGet, "CIM_SoftwareIdentity", []string{"InstanceID", "AMT"}, ""),
		c.envelope(ActionEnumerate, "CIM_ServiceAvailableToElement", nil, `<Enumerate xmlns="`+nsEnumeration+`"/>`),
		c.envelope(ActionPull, "CIM_ServiceAvailableToElement", nil, `<Pull xmlns="`+nsEnumeration+`"><EnumerationContext>00000001-0000-0000-0000-000000000000</EnumerationContext><MaxElements>999</MaxElements></Pull>`),
		c.envelope(ResourceURI("CIM_PowerManagementService")+"/RequestPowerStateChange", "CIM_PowerManagementService", nil,
			`<h:RequestPowerStateChange_INPUT xmlns:h="`+ResourceURI("CIM_PowerManagementService")+`"><h:PowerState>10</h:PowerState>`+managedSystem+`</h:RequestPowerStateChange_INPUT>`),
		c.envelope(ActionPut, "AMT_BootSettingData", nil, `<h:AMT_BootSettingData xmlns:h="`+ResourceURI("AMT_BootSettingData")+`"><h:BIOSSetup>true</h:BIOSSetup></h:AMT_BootSettingData>`),
		c.envelope(ResourceURI("CIM_BootConfigSetting")+"/ChangeBootOrder", "CIM_BootConfigSetting", nil,
			`<h:ChangeBootOrder_INPUT xmlns:h="`+ResourceURI("CIM_BootConfigSetting")+`">`+eprParam("Source", "CIM_BootSourceSetting", "InstanceID", BootSourcePXE)+`</h:ChangeBootOrder_INPUT>`),
		c.envelope(ResourceURI("AMT_MessageLog")+"/GetRecords", "AMT_MessageLog", nil,
			`<h:GetRecords_INPUT xmlns:h="`+ResourceURI("AMT_MessageLog")+`"><h:IterationIdentifier>1</h:IterationIdentifier><h:MaxReadRecords>390</h:MaxReadRecords></h:GetRecords_INPUT>`),
		c.envelope(ResourceURI("AMT_AuditLog")+"/ReadRecords", "AMT_AuditLog", nil,
			`<h:ReadRecords_INPUT xmlns:h="`+ResourceURI("AMT_AuditLog")+`"><h:StartIndex>1</h:StartIndex></h:ReadRecords_INPUT>`),
		c.envelope(ResourceURI("IPS_OptInService")+"/SendOptInCode", "IPS_OptInService", nil,
			`<h:SendOptInCode_INPUT xmlns:h="`+ResourceURI("IPS_OptInService")+`"><h:OptInCode>123456</h:OptInCode></h:SendOptInCode_INPUT>`),
		c.envelope(ActionPut, "IPS_KVMRedirectionSettingData", nil, `<h:IPS_KVMRedirectionSettingData xmlns:h="`+ResourceURI("IPS_KVMRedirectionSettingData")+`"><h:OptInPolicy>false</h:OptInPolicy></h:IPS_KVMRedirectionSettingData>`),
		[]byte(strings.Repeat("<a>", 40)),
		[]byte(`<Envelope><Header><Action>` + strings.Repeat("x", 100) + `</Action></Header></Envelope>`),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, _ := NewPlatform(&AMTConfig{EventLogRecords: 20, ControlMode: CCM}, testUUID, nil)
		h := makeWSMan(WSManConfig{UUID: testUUID, Password: []byte(testAMTPass), Platform: p})
		for range 2 { // twice: the first may change the state the second sees
			status, out := h.serve(in, "192.0.2.1:1")
			if status != http.StatusOK && status != http.StatusBadRequest {
				t.Fatalf("status %d", status)
			}
			d := xml.NewDecoder(strings.NewReader(out))
			for {
				_, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("the answer is not XML: %v\n%s", err, out)
				}
			}
		}
	})
}
