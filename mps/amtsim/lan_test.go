package amtsim

// Tests of the LAN side of CIRA enrolment: an unconfigured device serving
// WS-Man on 127.0.0.1 (plain and TLS), the enrolment classes' state and
// validations, and the CIRA the device then opens to real mps.Servers
// (mpsorder_test.go's sites).

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps"
)

// lanClient is a WS-Man client of one device: over the LAN (plain or
// TLS) or through a tunnel, one connection per request so that a closed
// LAN shows.
type lanClient struct {
	t         *testing.T
	hc        *http.Client
	url       string
	challenge string
	nc        int
	msgID     int
}

func newLANClient(t *testing.T, url string, tr *http.Transport) *lanClient {
	tr.DisableKeepAlives = true
	return &lanClient{t: t, hc: &http.Client{Transport: tr, Timeout: testTimeout}, url: url}
}

func plainClient(t *testing.T, d *Device) *lanClient {
	return newLANClient(t, "http://"+d.LANAddr()+"/wsman", &http.Transport{})
}

// tunnelClient talks to the device's 16992 through s's tunnel.
func tunnelClient(t *testing.T, s *site, d *Device) *lanClient {
	return newLANClient(t, "http://amt:16992/wsman", &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return s.srv.Dial(ctx, d.UUID().String(), PortWSMan)
		},
	})
}

// try sends body, answering the digest challenge; it returns an error
// when the connection fails.
func (c *lanClient) try(body []byte) (int, string, error) {
	do := func(auth string) (*http.Response, string, error) {
		req, err := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
		if err != nil {
			return nil, "", err
		}
		req.Header.Set("Content-Type", "application/soap+xml;charset=UTF-8")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	for range 2 {
		if c.challenge == "" {
			resp, _, err := do("")
			if err != nil {
				return 0, "", err
			}
			c.challenge = resp.Header.Get("WWW-Authenticate")
		}
		c.nc++
		resp, out, err := do(digestAuthorization(c.t, c.challenge, "POST", "/wsman", testUser, testAMTPass, c.nc))
		if err != nil {
			return 0, "", err
		}
		if resp.StatusCode != http.StatusUnauthorized {
			return resp.StatusCode, out, nil
		}
		c.challenge = "" // stale: once more with a fresh nonce
	}
	return http.StatusUnauthorized, "", nil
}

func (c *lanClient) send(body []byte) (int, string) {
	c.t.Helper()
	status, out, err := c.try(body)
	if err != nil {
		c.t.Fatalf("WS-Man to %s: %v", c.url, err)
	}
	return status, out
}

// envelope builds a request; selectors is the SelectorSet's inner XML.
func (c *lanClient) envelope(action, class, selectors, body string) []byte {
	c.msgID++
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">`)
	fmt.Fprintf(&b, `<Header><a:Action>%s</a:Action><a:To>/wsman</a:To><w:ResourceURI>%s</w:ResourceURI><a:MessageID>%d</a:MessageID><a:ReplyTo><a:Address>%s</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout>`,
		action, ResourceURI(class), c.msgID, anonymous)
	if selectors != "" {
		b.WriteString(`<w:SelectorSet>` + selectors + `</w:SelectorSet>`)
	}
	b.WriteString(`</Header><Body>` + body + `</Body></Envelope>`)
	return []byte(b.String())
}

func sel(name, value string) string {
	return fmt.Sprintf(`<w:Selector Name=%q>%s</w:Selector>`, name, value)
}

func (c *lanClient) get(class, selectors string) (int, xitem) {
	c.t.Helper()
	status, out := c.send(c.envelope(ActionGet, class, selectors, ""))
	if status != http.StatusOK {
		return status, xitem{fields: map[string][]string{"Body": {out}}}
	}
	return status, bodyItem(c.t, out)
}

// invoke calls a method: HTTP status, ReturnValue (-1 without) and the answer.
func (c *lanClient) invoke(class, method, input string) (int, int, string) {
	c.t.Helper()
	body := fmt.Sprintf(`<h:%s_INPUT xmlns:h=%q>%s</h:%s_INPUT>`, method, ResourceURI(class), input, method)
	status, out := c.send(c.envelope(ResourceURI(class)+"/"+method, class, "", body))
	if status != http.StatusOK {
		return status, -1, out
	}
	rv, err := strconv.Atoi(bodyItem(c.t, out).get("ReturnValue"))
	if err != nil {
		c.t.Fatalf("%s.%s: no ReturnValue in %s", class, method, out)
	}
	return status, rv, out
}

func (c *lanClient) enumerate(class string) []xitem {
	c.t.Helper()
	status, out := c.send(c.envelope(ActionEnumerate, class, "", `<Enumerate xmlns="`+nsEnumeration+`"/>`))
	if status != http.StatusOK {
		c.t.Fatalf("Enumerate %s: %d %s", class, status, out)
	}
	ctx := xmlText(c.t, out, "EnumerationContext")
	status, out = c.send(c.envelope(ActionPull, class, "", `<Pull xmlns="`+nsEnumeration+`"><EnumerationContext>`+ctx+`</EnumerationContext><MaxElements>999</MaxElements></Pull>`))
	if status != http.StatusOK || !strings.Contains(out, "EndOfSequence") {
		c.t.Fatalf("Pull %s: %d %s", class, status, out)
	}
	return items(c.t, out)
}

func (c *lanClient) del(class, key, value string) (int, string) {
	c.t.Helper()
	return c.send(c.envelope(ActionDelete, class, sel(key, value), ""))
}

// putEnv sets the detection strings as enrolment does: the whole instance.
func (c *lanClient) putEnv(strs ...string) (int, string) {
	c.t.Helper()
	var b strings.Builder
	cls := "AMT_EnvironmentDetectionSettingData"
	fmt.Fprintf(&b, `<h:%s xmlns:h=%q><h:DetectionAlgorithm>0</h:DetectionAlgorithm>`, cls, ResourceURI(cls))
	for _, s := range strs {
		b.WriteString(`<h:DetectionStrings>` + s + `</h:DetectionStrings>`)
	}
	fmt.Fprintf(&b, `<h:ElementName>%s</h:ElementName><h:InstanceID>%s</h:InstanceID></h:%s>`, EnvDetectionID, EnvDetectionID, cls)
	return c.send(c.envelope(ActionPut, cls, sel("InstanceID", EnvDetectionID), b.String()))
}

// --- enrolment steps, shaped as enrol.md §12 says ---

type sapArgs struct {
	access       string
	format, port int
	user, pass   string
	cn           string
}

func (c *lanClient) addRoot(der []byte) (int, string) {
	c.t.Helper()
	_, rv, out := c.invoke("AMT_PublicKeyManagementService", "AddTrustedRootCertificate",
		`<h:CertificateBlob>`+base64.StdEncoding.EncodeToString(der)+`</h:CertificateBlob>`)
	return rv, out
}

func (c *lanClient) addSAP(a sapArgs) (status, rv int, out string) {
	c.t.Helper()
	in := fmt.Sprintf(`<h:AccessInfo>%s</h:AccessInfo><h:InfoFormat>%d</h:InfoFormat><h:Port>%d</h:Port><h:AuthMethod>2</h:AuthMethod><h:Username>%s</h:Username><h:Password>%s</h:Password><h:CN>%s</h:CN>`,
		a.access, a.format, a.port, a.user, a.pass, a.cn)
	return c.invoke("AMT_RemoteAccessService", "AddMpServer", in)
}

// mpServer is an MpServer parameter: the EPR without a wrapper.
func mpServer(name string) string {
	return `<h:MpServer><a:Address>` + anonymous + `</a:Address><a:ReferenceParameters><w:ResourceURI>` +
		ResourceURI("AMT_ManagementPresenceRemoteSAP") + `</w:ResourceURI><w:SelectorSet>` + sel("Name", name) +
		`</w:SelectorSet></a:ReferenceParameters></h:MpServer>`
}

func (c *lanClient) addRule(trigger int, ext string, saps ...string) (int, string) {
	c.t.Helper()
	in := fmt.Sprintf(`<h:Trigger>%d</h:Trigger><h:TunnelLifeTime>0</h:TunnelLifeTime><h:ExtendedData>%s</h:ExtendedData>`, trigger, ext)
	for _, s := range saps {
		in += mpServer(s)
	}
	_, rv, out := c.invoke("AMT_RemoteAccessService", "AddRemoteAccessPolicyRule", in)
	return rv, out
}

// wrappedEPR is an EPR inside a header Selector: wrapped in
// EndpointReference, with all four keys.
func wrappedEPR(class, key, value string) string {
	return `<a:EndpointReference><a:Address>` + anonymous + `</a:Address><a:ReferenceParameters><w:ResourceURI>` + ResourceURI(class) +
		`</w:ResourceURI><w:SelectorSet>` + sel("CreationClassName", class) + sel(key, value) + sel("SystemCreationClassName", "CIM_ComputerSystem") +
		sel("SystemName", "Intel(r) AMT") + `</w:SelectorSet></a:ReferenceParameters></a:EndpointReference>`
}

func (c *lanClient) putApplies(sap, rule string, mpsType, order int) (int, string) {
	c.t.Helper()
	cls := "AMT_RemoteAccessPolicyAppliesToMPS"
	selectors := `<w:Selector Name="ManagedElement">` + wrappedEPR("AMT_ManagementPresenceRemoteSAP", "Name", sap) + `</w:Selector>` +
		`<w:Selector Name="PolicySet">` + wrappedEPR("AMT_RemoteAccessPolicyRule", "PolicyRuleName", rule) + `</w:Selector>`
	body := fmt.Sprintf(`<h:%s xmlns:h=%q><h:ManagedElement><a:Address>%s</a:Address></h:ManagedElement><h:MpsType>%d</h:MpsType><h:OrderOfAccess>%d</h:OrderOfAccess></h:%s>`,
		cls, ResourceURI(cls), anonymous, mpsType, order, cls)
	return c.send(c.envelope(ActionPut, cls, selectors, body))
}

// interval25 is ExtendedData for a 25 s periodic rule (enrol.md §5).
const interval25 = "AAAAAAAAABk="

// --- devices ---

// lanDevice starts a LAN device for the test.
func lanDevice(t *testing.T, edit func(*Config)) *Device {
	t.Helper()
	cfg := Config{
		UUID:             DeviceUUID(t.Name(), 0),
		Hostname:         testHost,
		AMTPassword:      []byte(testAMTPass),
		HandshakeTimeout: testTimeout,
		LAN:              &LANConfig{Addr: "127.0.0.1:0", Interval: 20 * time.Millisecond},
	}
	if edit != nil {
		edit(&cfg)
	}
	d, _, _ := startDevice(t, cfg)
	return d
}

// testDial dials the test's names (*.test) on 127.0.0.1 and logs the dials.
func testDial(log *dialLog) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h, p, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(h, ".test") {
			addr = net.JoinHostPort("127.0.0.1", p)
		}
		return log.dial(ctx, network, addr)
	}
}

func sitePort(t *testing.T, s *site) int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitLAN waits until the device's LAN ports are open (or closed).
func waitLAN(t *testing.T, d *Device, open bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for d.Enrolment().LANOpen != open {
		if time.Now().After(deadline) {
			t.Fatalf("LAN open %v; want %v", !open, open)
		}
		time.Sleep(time.Millisecond) // polls a state the device has no event for
	}
}

// --- tests ---

// TestLANUnconfigured: a device without MPS entries answers WS-Man on the
// LAN, plain and over TLS with its own pinned certificate.
func TestLANUnconfigured(t *testing.T) {
	d := lanDevice(t, func(c *Config) { c.LAN.TLSAddr = "127.0.0.1:0"; c.AMT = &AMTConfig{ControlMode: CCM} })
	c := plainClient(t, d)
	status, s := c.get("AMT_SetupAndConfigurationService", "")
	if status != 200 || s.get("ProvisioningState") != "2" || s.get("ProvisioningMode") != "4" || s.get("DhcpDNSSuffix") != "office.example" {
		t.Fatalf("setup service: %d %+v", status, s.fields)
	}
	if _, caps := c.get("AMT_RemoteAccessCapabilities", ""); caps.get("MaxTotalMpServers") != "4" || caps.get("MaxMpsPerPolicy") != "2" || caps.get("MaxTotalPolicies") != "3" {
		t.Fatalf("capabilities %+v", caps.fields)
	}
	if _, ra := c.get("AMT_RemoteAccessService", ""); ra.get("IsRemoteTunnelConnected") != "false" {
		t.Fatalf("remote access service %+v", ra.fields)
	}
	if _, uic := c.get("AMT_UserInitiatedConnectionService", ""); uic.get("EnabledState") != "32768" {
		t.Fatalf("UIC %+v", uic.fields)
	}
	if _, env := c.get("AMT_EnvironmentDetectionSettingData", sel("InstanceID", EnvDetectionID)); env.get("InstanceID") != EnvDetectionID || len(env.fields["DetectionStrings"]) != 0 {
		t.Fatalf("environment detection %+v", env.fields)
	}
	if it := c.enumerate("AMT_EthernetPortSettings"); len(it) != 1 || it[0].get("DHCPEnabled") != "true" {
		t.Fatalf("ethernet ports %+v", it)
	}
	for _, cls := range []string{"AMT_ManagementPresenceRemoteSAP", "AMT_RemoteAccessPolicyRule", "AMT_RemoteAccessPolicyAppliesToMPS", "AMT_PublicKeyCertificate"} {
		if it := c.enumerate(cls); len(it) != 0 {
			t.Fatalf("%s has %d instances on a new device", cls, len(it))
		}
	}
	if status, out := c.get("AMT_ManagementPresenceRemoteSAP", sel("Name", SAPNamePrefix+"0")); status != 400 || !strings.Contains(out.get("Body"), "DestinationUnreachable") {
		t.Fatalf("Get of a missing SAP: %d %v", status, out.fields)
	}

	pool := x509.NewCertPool()
	pool.AddCert(d.LANCertificate())
	tc := newLANClient(t, "https://"+d.LANTLSAddr()+"/wsman", &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}})
	if status, g := tc.get("AMT_GeneralSettings", ""); status != 200 || g.get("HostName") != testHost {
		t.Fatalf("TLS GeneralSettings: %d %+v", status, g.fields)
	}
	// Another certificate is refused: the pin means something.
	other := newLANClient(t, "https://"+d.LANTLSAddr()+"/wsman", &http.Transport{TLSClientConfig: &tls.Config{RootCAs: getPKI(t).roots}})
	if _, _, err := other.try(other.envelope(ActionGet, "AMT_GeneralSettings", "", "")); err == nil {
		t.Fatal("TLS WS-Man verified against an unrelated root")
	}
	if st := d.Enrolment(); !st.LANOpen || st.ProvisioningState != 2 || len(st.Writes) != 0 {
		t.Fatalf("state %+v", st)
	}
}

// TestLANEnrolValidation: writes are kept and read back, and AMT's
// validations answer as AMT does.
func TestLANEnrolValidation(t *testing.T) {
	d := lanDevice(t, nil)
	c := plainClient(t, d)
	root := getPKI(t).ca.Raw

	if rv, out := c.addRoot(root); rv != 0 || !strings.Contains(out, CertIDPrefix+"0") {
		t.Fatalf("AddTrustedRootCertificate = %d %s", rv, out)
	}
	if rv, _ := c.addRoot(root); rv != 2058 {
		t.Fatalf("duplicate root = %d; want 2058", rv)
	}
	if rv, _ := c.addRoot([]byte("not a certificate")); rv != 2063 {
		t.Fatalf("garbage root = %d; want 2063", rv)
	}
	good := sapArgs{access: "127.0.0.1", format: 3, port: 4433, user: "cira-a", pass: "Pass-A-1", cn: "mps-a.test"}
	for _, tt := range []struct {
		name   string
		edit   func(*sapArgs)
		status int
		rv     int
	}{
		{"password of 17", func(a *sapArgs) { a.pass = "Pass-A-1Pass-A-12" }, 400, -1},
		{"password of 7", func(a *sapArgs) { a.pass = "Pass-A1" }, 200, 36},
		{"weak password", func(a *sapArgs) { a.pass = "password1" }, 200, 36},
		{"password without a symbol", func(a *sapArgs) { a.pass = "Passw0rd_x" }, 200, 36},
		{"username of 17", func(a *sapArgs) { a.user = strings.Repeat("u", 17) }, 200, 36},
		{"empty username", func(a *sapArgs) { a.user = "" }, 200, 36},
		{"InfoFormat 5", func(a *sapArgs) { a.format = 5 }, 200, 36},
		{"port 0", func(a *sapArgs) { a.port = 0 }, 200, 36},
		{"AccessInfo of 257", func(a *sapArgs) { a.access = strings.Repeat("a", 257) }, 200, 36},
	} {
		a := good
		tt.edit(&a)
		status, rv, out := c.addSAP(a)
		if status != tt.status || rv != tt.rv {
			t.Errorf("AddMpServer with %s = %d, %d; want %d, %d", tt.name, status, rv, tt.status, tt.rv)
		}
		if status == 400 && out != "" {
			t.Errorf("AddMpServer with %s: a body: %s", tt.name, out)
		}
	}
	if n := len(d.Enrolment().MPS); n != 0 {
		t.Fatalf("%d SAPs after refused adds", n)
	}
	status, rv, out := c.addSAP(good)
	sap0 := SAPNamePrefix + "0"
	if status != 200 || rv != 0 || !strings.Contains(out, sap0) || !strings.Contains(out, "MpServer") {
		t.Fatalf("AddMpServer = %d %d %s", status, rv, out)
	}
	if !d.PasswordMatches(sap0, []byte("Pass-A-1")) || d.PasswordMatches(sap0, []byte("Pass-A-2")) {
		t.Fatal("the SAP's password was not kept")
	}
	for _, call := range d.Calls() {
		for _, v := range call.Args {
			if strings.Contains(v, "Pass-A-1") {
				t.Fatalf("the call record holds the MPS password: %+v", call)
			}
		}
	}
	if rv, _ := c.addRule(2, "", sap0); rv != 36 {
		t.Fatalf("periodic rule without an interval = %d; want 36", rv)
	}
	if rv, _ := c.addRule(2, interval25, SAPNamePrefix+"7"); rv != 36 {
		t.Fatalf("rule for a missing SAP = %d; want 36", rv)
	}
	if rv, out := c.addRule(2, interval25, sap0); rv != 0 || !strings.Contains(out, "Periodic") {
		t.Fatalf("AddRemoteAccessPolicyRule = %d %s", rv, out)
	}
	if rv, _ := c.addRule(2, "AAAAAAAAAAo=", sap0); rv != 2058 {
		t.Fatalf("second periodic rule = %d; want 2058", rv)
	}
	if rv, _ := c.addRule(0, "", sap0); rv != 0 {
		t.Fatalf("user initiated rule = %d", rv)
	}
	if status, out := c.putApplies(sap0, "Periodic", 2, 0); status != 200 || !strings.Contains(out, "<h:MpsType>2</h:MpsType>") {
		t.Fatalf("Put AppliesToMPS = %d %s", status, out)
	}
	if status, out := c.putApplies(sap0, "Alert", 2, 0); status != 400 || !strings.Contains(out, "DestinationUnreachable") {
		t.Fatalf("Put of a missing association = %d %s", status, out)
	}
	if _, rv, _ := c.invoke("AMT_UserInitiatedConnectionService", "RequestStateChange", "<h:RequestedState>32771</h:RequestedState>"); rv != 0 {
		t.Fatalf("UIC RequestStateChange = %d", rv)
	}
	if status, out := c.del("AMT_ManagementPresenceRemoteSAP", "Name", sap0); status != 400 || !strings.Contains(out, "NOT_PERMITTED") {
		t.Fatalf("Delete of a referenced SAP = %d %s", status, out)
	}

	// Read back.
	saps := c.enumerate("AMT_ManagementPresenceRemoteSAP")
	if len(saps) != 1 || saps[0].get("Name") != sap0 || saps[0].get("AccessInfo") != "127.0.0.1" || saps[0].get("CN") != "mps-a.test" ||
		saps[0].get("Port") != "4433" || saps[0].get("InfoFormat") != "3" || strings.Contains(fmt.Sprint(saps[0].fields), "Pass-A-1") {
		t.Fatalf("SAPs %+v", saps)
	}
	rules := c.enumerate("AMT_RemoteAccessPolicyRule")
	if len(rules) != 2 || rules[0].get("PolicyRuleName") != "Periodic" || rules[0].get("ExtendedData") != interval25 || rules[1].get("PolicyRuleName") != "User Initiated" {
		t.Fatalf("rules %+v", rules)
	}
	if as := c.enumerate("AMT_RemoteAccessPolicyAppliesToMPS"); len(as) != 2 || as[0].get("MpsType") != "2" || as[1].get("MpsType") != "0" {
		t.Fatalf("associations %+v", as)
	}
	certs := c.enumerate("AMT_PublicKeyCertificate")
	if len(certs) != 1 || certs[0].get("X509Certificate") != base64.StdEncoding.EncodeToString(root) || certs[0].get("TrustedRootCertficate") != "true" {
		t.Fatalf("certificates %+v", certs)
	}
	st := d.Enrolment()
	if len(st.Roots) != 1 || len(st.MPS) != 1 || st.MPS[0].Username != "cira-a" || len(st.Rules) != 2 ||
		st.Rules[0].Associations[0] != (EnrolAssociation{MPS: sap0, MpsType: 2}) || st.UserInitiated != 32771 {
		t.Fatalf("state %+v", st)
	}
	want := map[string]int{"AddTrustedRootCertificate": 1, "AddMpServer": 1, "AddRemoteAccessPolicyRule": 2,
		"PutRemoteAccessPolicyAppliesToMPS": 1, "RequestStateChange": 1}
	if fmt.Sprint(st.Writes) != fmt.Sprint(want) {
		t.Fatalf("writes %v; want %v", st.Writes, want)
	}

	// Removal, in the order of enrol.md §10.
	for _, rm := range [][3]string{
		{"AMT_RemoteAccessPolicyRule", "PolicyRuleName", "Periodic"},
		{"AMT_RemoteAccessPolicyRule", "PolicyRuleName", "User Initiated"},
		{"AMT_ManagementPresenceRemoteSAP", "Name", sap0},
		{"AMT_PublicKeyCertificate", "InstanceID", CertIDPrefix + "0"},
	} {
		if status, out := c.del(rm[0], rm[1], rm[2]); status != 200 || !strings.Contains(out, ActionDeleteResponse) {
			t.Fatalf("Delete %s %s = %d %s", rm[0], rm[2], status, out)
		}
		if status, out := c.del(rm[0], rm[1], rm[2]); status != 400 || !strings.Contains(out, "DestinationUnreachable") {
			t.Fatalf("second Delete %s = %d %s", rm[0], status, out)
		}
	}
	if st := d.Enrolment(); len(st.Roots)+len(st.MPS)+len(st.Rules) != 0 {
		t.Fatalf("state after removal %+v", st)
	}
	if status, rv, _ := c.addSAP(good); status != 200 || rv != 0 || len(d.Enrolment().MPS) != 1 || d.Enrolment().MPS[0].Name != SAPNamePrefix+"1" {
		t.Fatalf("AddMpServer after removal = %d %d %+v", status, rv, d.Enrolment().MPS)
	}
}

// enrol configures CIRA to a primary (an IPv4 SAP with a CN) and a
// backup (an FQDN SAP), as enrol.md §9 orders it, and returns the SAP
// names.
func enrol(t *testing.T, c *lanClient, root []byte, saps ...sapArgs) []string {
	t.Helper()
	if root != nil {
		if rv, out := c.addRoot(root); rv != 0 {
			t.Fatalf("AddTrustedRootCertificate = %d %s", rv, out)
		}
	}
	var names []string
	for _, a := range saps {
		_, rv, out := c.addSAP(a)
		name := SAPNamePrefix + strconv.Itoa(len(names))
		if rv != 0 || !strings.Contains(out, ">"+name+"<") {
			t.Fatalf("AddMpServer %s = %d %s", a.access, rv, out)
		}
		names = append(names, name)
	}
	if rv, out := c.addRule(2, interval25, names...); rv != 0 {
		t.Fatalf("AddRemoteAccessPolicyRule = %d %s", rv, out)
	}
	for i, n := range names {
		if status, out := c.putApplies(n, "Periodic", 0, i); status != 200 {
			t.Fatalf("Put AppliesToMPS = %d %s", status, out)
		}
	}
	return names
}

// TestLANEnrolOpensCIRA: environment detection closes the LAN and the
// device dials its backup while the primary is down, then the primary,
// with each SAP's credentials; over the tunnel, clearing detection
// reopens the LAN and, the device being inside, ends the tunnel; removal
// then finishes on the LAN.
func TestLANEnrolOpensCIRA(t *testing.T) {
	a := newSite(t, "mps-a.test", "cira-a", "Pass-A-1")
	b := newSite(t, "mps-b.test", "cira-b", "Pass-B-1")
	b.up()
	log := newDialLog()
	d := lanDevice(t, func(c *Config) { c.Dial = testDial(log) })
	c := plainClient(t, d)
	lanAddr := d.LANAddr()
	names := enrol(t, c, getPKI(t).ca.Raw,
		sapArgs{access: "127.0.0.1", format: 3, port: sitePort(t, a), user: a.user, pass: a.pass, cn: a.name},
		sapArgs{access: b.name, format: 201, port: sitePort(t, b), user: b.user, pass: b.pass})
	if len(log.snapshot()) != 0 {
		t.Fatal("the device dialed before environment detection")
	}
	if status, out := c.putEnv("elsewhere.example"); status != 200 || !strings.Contains(out, "elsewhere.example") {
		t.Fatalf("Put environment detection = %d %s", status, out)
	}
	waitLAN(t, d, false)
	if _, _, err := c.try(c.envelope(ActionGet, "AMT_GeneralSettings", "", "")); err == nil {
		t.Fatal("LAN WS-Man answered outside the enterprise")
	}
	b.await(1, d)
	if got := addrs(log.snapshot(), a, b); got != "AAB" {
		t.Fatalf("dials %s; want AAB (primary twice, then the backup)", got)
	}

	// The primary comes back; the backup sends the device home.
	a.up()
	b.closeTunnels()
	a.await(0, d)

	tc := tunnelClient(t, a, d)
	if _, ra := tc.get("AMT_RemoteAccessService", ""); ra.get("IsRemoteTunnelConnected") != "true" {
		t.Fatalf("over the tunnel: %+v", ra.fields)
	}
	if it := tc.enumerate("AMT_ManagementPresenceRemoteSAP"); len(it) != 2 {
		t.Fatalf("over the tunnel: %d SAPs", len(it))
	}
	// Clearing detection over the tunnel: the answer arrives, the LAN
	// reopens on its address, and the tunnel ends (inside, MpsType 0).
	if status, _ := tc.putEnv(); status != 200 {
		t.Fatalf("Put environment detection over the tunnel = %d", status)
	}
	waitLAN(t, d, true)
	if d.LANAddr() != lanAddr {
		t.Fatalf("LAN reopened on %s; want %s", d.LANAddr(), lanAddr)
	}
	awaitDisconnect(t, a)
	if status, _ := c.get("AMT_GeneralSettings", ""); status != 200 {
		t.Fatalf("LAN after clearing detection: %d", status)
	}
	for _, rm := range [][3]string{
		{"AMT_RemoteAccessPolicyRule", "PolicyRuleName", "Periodic"},
		{"AMT_ManagementPresenceRemoteSAP", "Name", names[0]},
		{"AMT_ManagementPresenceRemoteSAP", "Name", names[1]},
		{"AMT_PublicKeyCertificate", "InstanceID", CertIDPrefix + "0"},
	} {
		if status, out := c.del(rm[0], rm[1], rm[2]); status != 200 {
			t.Fatalf("Delete %s = %d %s", rm[2], status, out)
		}
	}
	st := d.Enrolment()
	if len(st.MPS) != 0 || st.Writes["PutEnvironmentDetectionSettingData"] != 2 || st.Writes["AddMpServer"] != 2 {
		t.Fatalf("state %+v", st)
	}
}

// awaitDisconnect waits for s to see a tunnel end.
func awaitDisconnect(t *testing.T, s *site) {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case ev := <-s.events:
			if ev.Kind == mps.EventDisconnected {
				return
			}
		case <-deadline:
			t.Fatalf("%s saw no tunnel end", s.name)
		}
	}
}

// TestLANEnrolDeleteEndsTunnel: deleting the rule over the tunnel answers,
// then ends the tunnel, and the device stops dialing.
func TestLANEnrolDeleteEndsTunnel(t *testing.T) {
	a := newSite(t, "mps-a.test", "cira-a", "Pass-A-1")
	a.up()
	log := newDialLog()
	d := lanDevice(t, func(c *Config) { c.Dial = testDial(log) })
	c := plainClient(t, d)
	enrol(t, c, getPKI(t).ca.Raw, sapArgs{access: "127.0.0.1", format: 3, port: sitePort(t, a), user: a.user, pass: a.pass, cn: a.name})
	// MpsType 2: the device dials while still inside, its LAN open (§8 option B).
	if status, _ := c.putApplies(SAPNamePrefix+"0", "Periodic", 2, 0); status != 200 {
		t.Fatal("Put AppliesToMPS")
	}
	a.await(0, d)
	if !d.Enrolment().LANOpen {
		t.Fatal("LAN closed while inside")
	}
	tc := tunnelClient(t, a, d)
	if status, out := tc.del("AMT_RemoteAccessPolicyRule", "PolicyRuleName", "Periodic"); status != 200 {
		t.Fatalf("Delete rule over the tunnel = %d %s", status, out)
	}
	awaitDisconnect(t, a)
	// The MPS sees the end before the device's dialer has wound down.
	for deadline := time.Now().Add(5 * time.Second); d.Stats().State == StateConnected; {
		if time.Now().After(deadline) {
			t.Fatal("the device still has a tunnel 5 s after the rule was deleted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	n := len(log.snapshot())
	// A write that does not change the plan must not make it dial either.
	if _, rv, _ := c.invoke("AMT_UserInitiatedConnectionService", "RequestStateChange", "<h:RequestedState>32768</h:RequestedState>"); rv != 0 {
		t.Fatal("RequestStateChange")
	}
	if got := len(log.snapshot()); got != n || d.Stats().State == StateConnected {
		t.Fatalf("dials %d → %d, state %s after the rule was deleted", n, got, d.Stats().State)
	}
}

// tlsRecorder is an MPS address that completes no APF handshake: it
// records how each TLS handshake ended on the server side, which is what
// the MPS's doctor sees.
type tlsRecorder struct {
	ln   net.Listener
	mu   sync.Mutex
	errs []string
	more chan struct{}
}

func newTLSRecorder(t *testing.T, cert tls.Certificate) *tlsRecorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tlsRecorder{ln: ln, more: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
			tc.SetDeadline(time.Now().Add(testTimeout))
			err = tc.Handshake()
			if err == nil {
				_, err = tc.Read(make([]byte, 1)) // the client's verdict may follow
			}
			tc.Close()
			r.mu.Lock()
			r.errs = append(r.errs, fmt.Sprint(err))
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
		}
	})
	return r
}

// wait returns the first n handshake results.
func (r *tlsRecorder) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		r.mu.Lock()
		errs := append([]string(nil), r.errs...)
		r.mu.Unlock()
		if len(errs) >= n {
			return errs
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("%d handshakes; want %d", len(errs), n)
		}
	}
}

// TestLANCIRAVerification: no root, an untrusted root or a CN mismatch fail
// the handshake from the device's side with a bad_certificate alert, and a
// wrong password is refused by the MPS; each time the device retries after
// the interval, and never connects.
func TestLANCIRAVerification(t *testing.T) {
	otherPKI, err := makePKI()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		root []byte
		cn   string
	}{
		{"no root", nil, "mps-a.test"},
		{"untrusted root", otherPKI.ca.Raw, "mps-a.test"},
		{"CN mismatch", getPKI(t).ca.Raw, "mps-elsewhere.test"},
		{"CN differs in case", getPKI(t).ca.Raw, "MPS-A.test"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := newTLSRecorder(t, getPKI(t).issue(t, "mps-a.test"))
			_, port, _ := net.SplitHostPort(rec.ln.Addr().String())
			p, _ := strconv.Atoi(port)
			d := lanDevice(t, nil)
			c := plainClient(t, d)
			enrol(t, c, tt.root, sapArgs{access: "127.0.0.1", format: 3, port: p, user: "cira-a", pass: "Pass-A-1", cn: tt.cn})
			c.putEnv("elsewhere.example")
			for i, e := range rec.wait(t, 3) {
				if !strings.Contains(e, "bad certificate") {
					t.Fatalf("handshake %d ended with %q; want the device's bad_certificate alert", i, e)
				}
			}
			if d.Stats().Handshakes != 0 {
				t.Fatal("the device completed an APF handshake")
			}
		})
	}
	t.Run("FQDN matches AccessInfo", func(t *testing.T) {
		rec := newTLSRecorder(t, getPKI(t).issue(t, "mps-a.test"))
		_, port, _ := net.SplitHostPort(rec.ln.Addr().String())
		p, _ := strconv.Atoi(port)
		d := lanDevice(t, func(c *Config) { c.Dial = testDial(newDialLog()) })
		c := plainClient(t, d)
		enrol(t, c, getPKI(t).ca.Raw, sapArgs{access: "mps-a.test", format: 201, port: p, user: "cira-a", pass: "Pass-A-1"})
		c.putEnv("elsewhere.example")
		// The device accepts the certificate and sends APF, which the
		// recorder reads: no alert.
		if e := rec.wait(t, 1)[0]; e != "<nil>" {
			t.Fatalf("handshake ended with %q; want the device to accept it", e)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		a := newSite(t, "mps-a.test", "cira-a", "Pass-A-1")
		a.up()
		log := newDialLog()
		d := lanDevice(t, func(c *Config) { c.Dial = testDial(log) })
		c := plainClient(t, d)
		enrol(t, c, getPKI(t).ca.Raw, sapArgs{access: "127.0.0.1", format: 3, port: sitePort(t, a), user: a.user, pass: "Pass-A-2", cn: a.name})
		c.putEnv("elsewhere.example")
		ds := log.waitFor(t, "three attempts", func(ds []dialed) bool { return len(ds) >= 3 })
		if gap := ds[2].at.Sub(ds[1].at); gap < 20*time.Millisecond {
			t.Fatalf("retry after %s; want the 20 ms interval", gap)
		}
		if d.Stats().Handshakes != 0 {
			t.Fatal("a wrong password got a tunnel")
		}
	})
}

// TestLANFailAt: fault injection fails the named operation and writes
// nothing.
func TestLANFailAt(t *testing.T) {
	d := lanDevice(t, func(c *Config) { c.LAN.FailAt = "AddMpServer" })
	c := plainClient(t, d)
	good := sapArgs{access: "127.0.0.1", format: 3, port: 4433, user: "cira-a", pass: "Pass-A-1", cn: "mps-a.test"}
	if status, rv, _ := c.addSAP(good); status != 200 || rv != 1 {
		t.Fatalf("AddMpServer with FailAt = %d %d; want 200, 1", status, rv)
	}
	d.SetFailAt("AddMpServer:bare400")
	if status, _, out := c.addSAP(good); status != 400 || out != "" {
		t.Fatalf("AddMpServer with bare400 = %d %q", status, out)
	}
	d.SetFailAt("PutEnvironmentDetection")
	if status, out := c.putEnv("elsewhere.example"); status != 400 || !strings.Contains(out, "InternalError") {
		t.Fatalf("Put environment detection with FailAt = %d %s", status, out)
	}
	if st := d.Enrolment(); len(st.MPS) != 0 || len(st.DetectionStrings) != 0 || !st.LANOpen || len(st.Writes) != 0 {
		t.Fatalf("state after failures %+v", st)
	}
	d.SetFailAt("")
	if status, rv, _ := c.addSAP(good); status != 200 || rv != 0 {
		t.Fatalf("AddMpServer without FailAt = %d %d", status, rv)
	}
}

// TestLANPreProvisioning: an unprovisioned device answers state 0 and
// refuses the rest.
func TestLANPreProvisioning(t *testing.T) {
	log := newDialLog()
	d := lanDevice(t, func(c *Config) { c.LAN.PreProvisioning = true; c.Dial = log.dial })
	c := plainClient(t, d)
	if status, s := c.get("AMT_SetupAndConfigurationService", ""); status != 200 || s.get("ProvisioningState") != "0" {
		t.Fatalf("setup service %d %+v", status, s.fields)
	}
	if status, g := c.get("AMT_GeneralSettings", ""); status != 400 || !strings.Contains(g.get("Body"), "AccessDenied") {
		t.Fatalf("GeneralSettings = %d", status)
	}
	if status, _, _ := c.addSAP(sapArgs{access: "127.0.0.1", format: 3, port: 4433, user: "u", pass: "Pass-A-1"}); status != 400 {
		t.Fatalf("AddMpServer = %d", status)
	}
	if d.Enrolment().ProvisioningState != 0 || len(d.Enrolment().MPS) != 0 {
		t.Fatal("an unprovisioned device took a write")
	}
}

// TestNewLAN: LAN devices need no MPS, refuse one, and cannot be a fleet.
func TestNewLAN(t *testing.T) {
	base := Config{UUID: testUUID, AMTPassword: []byte(testAMTPass), LAN: &LANConfig{Addr: "127.0.0.1:0"}}
	d, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	if d.LANAddr() == "" || d.LANTLSAddr() != "" || d.LANCertificate() != nil {
		t.Fatalf("LAN %q TLS %q", d.LANAddr(), d.LANTLSAddr())
	}
	d.Close()
	if _, err := net.Dial("tcp", d.LANAddr()); err == nil {
		t.Fatal("LAN still listening after Close")
	}
	bad := base
	bad.MPSAddr = "127.0.0.1:4433"
	if _, err := New(bad); err == nil {
		t.Fatal("New accepted LAN with MPSAddr")
	}
	bad = base
	bad.LAN = &LANConfig{Addr: "nowhere"}
	if _, err := New(bad); err == nil {
		t.Fatal("New accepted a bad LAN address")
	}
	if _, err := NewFleet(FleetConfig{Device: base, Devices: 2}); err == nil {
		t.Fatal("NewFleet accepted LAN devices")
	}
}

// FuzzEnrolment feeds enrolment requests to an authenticated handler: it
// must not panic and must answer 200 or 400 with XML or, for a bare 400,
// nothing.
func FuzzEnrolment(f *testing.F) {
	c := &lanClient{}
	ra := ResourceURI("AMT_RemoteAccessService")
	for _, b := range [][]byte{
		c.envelope(ResourceURI("AMT_PublicKeyManagementService")+"/AddTrustedRootCertificate", "AMT_PublicKeyManagementService", "",
			`<h:AddTrustedRootCertificate_INPUT xmlns:h="`+ResourceURI("AMT_PublicKeyManagementService")+`"><h:CertificateBlob>MIIB</h:CertificateBlob></h:AddTrustedRootCertificate_INPUT>`),
		c.envelope(ra+"/AddMpServer", "AMT_RemoteAccessService", "",
			`<h:AddMpServer_INPUT xmlns:h="`+ra+`"><h:AccessInfo>127.0.0.1</h:AccessInfo><h:InfoFormat>3</h:InfoFormat><h:Port>4433</h:Port><h:AuthMethod>2</h:AuthMethod><h:Username>u</h:Username><h:Password>Pass-A-1</h:Password><h:CN>x</h:CN></h:AddMpServer_INPUT>`),
		c.envelope(ra+"/AddRemoteAccessPolicyRule", "AMT_RemoteAccessService", "",
			`<h:AddRemoteAccessPolicyRule_INPUT xmlns:h="`+ra+`"><h:Trigger>2</h:Trigger><h:TunnelLifeTime>0</h:TunnelLifeTime><h:ExtendedData>`+interval25+`</h:ExtendedData>`+mpServer(SAPNamePrefix+"0")+`</h:AddRemoteAccessPolicyRule_INPUT>`),
		c.envelope(ActionPut, "AMT_RemoteAccessPolicyAppliesToMPS", `<w:Selector Name="ManagedElement">`+wrappedEPR("AMT_ManagementPresenceRemoteSAP", "Name", SAPNamePrefix+"0")+`</w:Selector><w:Selector Name="PolicySet">`+wrappedEPR("AMT_RemoteAccessPolicyRule", "PolicyRuleName", "Periodic")+`</w:Selector>`,
			`<h:AMT_RemoteAccessPolicyAppliesToMPS xmlns:h="`+ResourceURI("AMT_RemoteAccessPolicyAppliesToMPS")+`"><h:MpsType>2</h:MpsType><h:OrderOfAccess>0</h:OrderOfAccess></h:AMT_RemoteAccessPolicyAppliesToMPS>`),
		c.envelope(ActionPut, "AMT_EnvironmentDetectionSettingData", sel("InstanceID", EnvDetectionID),
			`<h:AMT_EnvironmentDetectionSettingData xmlns:h="`+ResourceURI("AMT_EnvironmentDetectionSettingData")+`"><h:DetectionStrings>a.example</h:DetectionStrings></h:AMT_EnvironmentDetectionSettingData>`),
		c.envelope(ActionDelete, "AMT_ManagementPresenceRemoteSAP", sel("Name", SAPNamePrefix+"0"), ""),
		c.envelope(ActionDelete, "AMT_RemoteAccessPolicyRule", sel("PolicyRuleName", "Periodic"), ""),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, _ := NewPlatform(nil, testUUID, nil)
		h := makeWSMan(WSManConfig{UUID: testUUID, Password: []byte(testAMTPass), Platform: p})
		for range 3 {
			status, out := h.serve(in, "192.0.2.1:1")
			if status != http.StatusOK && status != http.StatusBadRequest {
				t.Fatalf("status %d", status)
			}
			if out == "" && status == http.StatusBadRequest {
				continue
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
