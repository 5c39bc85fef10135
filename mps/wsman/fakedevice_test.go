package wsman

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDevice is a WS-Man service written for these tests: HTTP/1.1 digest
// (MD5, qop=auth) over real loopback TCP, canned answers for the toolbox's
// classes, and knobs for faults. It records every request.
type fakeDevice struct {
	t     testing.TB
	srv   *httptest.Server
	realm string
	user  string

	mu         sync.Mutex
	pass       string
	nonces     map[string]*nonceUse
	staleAfter int // a nonce used this many times answers stale=true (0: never)
	rechallAt  int // a nonce used this many times is challenged again, not stale (0: never)
	reqs       []fakeReq
	conns      int // connections accepted
	closed     int // connections closed
	closedCh   chan struct{}
	inFlight   int
	maxFlight  int
	closeEach  bool                                                     // answer with Connection: close
	hangUp     bool                                                     // close the connection instead of answering, once
	block      chan struct{}                                            // answers wait for it to close
	blocked    chan struct{}                                            // gets a value when an answer starts waiting
	faults     map[string]string                                        // class → fault subcode for any request
	rv         map[string]uint32                                        // method → ReturnValue
	raw        func(w http.ResponseWriter, r *fakeReq) bool             // replaces the answer when it returns true
	pullBatch  int                                                      // items per Pull (0: all)
	noEnd      bool                                                     // Pull never says EndOfSequence
	power      int                                                      // the power state
	events     [][]byte                                                 // event log records
	audits     [][]byte                                                 // audit log records
	logPage    int                                                      // records per GetRecords (0: 390)
	hook       func(w http.ResponseWriter, r *http.Request, f *fakeReq) // runs before the answer, if set
}

type nonceUse struct {
	uses   int
	lastNC uint64
}

// fakeReq is one request as the device saw it.
type fakeReq struct {
	Authorized bool
	Nonce      string
	NC         uint64
	Action     string
	Resource   string
	MessageID  string
	Body       string // the inner XML of the SOAP Body
	Conn       string // the client's address
}

// Class returns the last segment of the resource URI.
func (r fakeReq) Class() string { return className(r.Resource) }

// Method returns the last segment of the action.
func (r fakeReq) Method() string { return r.Action[strings.LastIndexByte(r.Action, '/')+1:] }

const (
	testUser = "admin"
	testPass = "P@ssw0rd-amt"
)

func newFakeDevice(t testing.TB) *fakeDevice {
	f := &fakeDevice{
		t: t, realm: "Digest:0123456789ABCDEF0123456789ABCDEF", user: testUser, pass: testPass,
		nonces: map[string]*nonceUse{}, faults: map[string]string{}, rv: map[string]uint32{},
		power: 2, closedCh: make(chan struct{}, 100),
	}
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.Config.ConnState = func(c net.Conn, st http.ConnState) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch st {
		case http.StateNew:
			f.conns++
		case http.StateClosed, http.StateHijacked:
			f.closed++
			select {
			case f.closedCh <- struct{}{}:
			default:
			}
		}
	}
	f.srv.Start()
	t.Cleanup(func() {
		f.mu.Lock()
		if f.block != nil {
			select {
			case <-f.block:
			default:
				close(f.block)
			}
		}
		f.mu.Unlock()
		f.srv.Close()
	})
	return f
}

// dial is a Config.Dial to the device, whatever the name.
func (f *fakeDevice) dial(ctx context.Context, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", f.srv.Listener.Addr().String())
}

func (f *fakeDevice) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.reqs...)
}

func (f *fakeDevice) counts() (conns, closed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, f.closed
}

func (f *fakeDevice) set(fn func(f *fakeDevice)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func newNonce() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (f *fakeDevice) challenge(w http.ResponseWriter, stale bool) {
	n := newNonce()
	f.nonces[n] = &nonceUse{}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Digest realm="%s", nonce="%s", stale="%t", qop="auth"`, f.realm, n, stale))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusUnauthorized)
}

// authorize checks the digest; it answers and returns false when the request
// is not authorized.
func (f *fakeDevice) authorize(w http.ResponseWriter, r *http.Request, fr *fakeReq) bool {
	h := r.Header.Get("Authorization")
	if h == "" {
		f.challenge(w, false)
		return false
	}
	scheme, rest, _ := strings.Cut(h, " ")
	ch, err := parseDigestParamsForTest(rest)
	if !strings.EqualFold(scheme, "Digest") || err != nil {
		f.t.Errorf("device: bad Authorization %q: %v", h, err)
		f.challenge(w, false)
		return false
	}
	nu := f.nonces[ch["nonce"]]
	nc, _ := strconv.ParseUint(ch["nc"], 16, 64)
	fr.Nonce, fr.NC = ch["nonce"], nc
	want := md5hex(md5hex(f.user+":"+f.realm+":"+f.pass) + ":" + ch["nonce"] + ":" + ch["nc"] + ":" + ch["cnonce"] + ":auth:" + md5hex(r.Method+":"+ch["uri"]))
	switch {
	case nu == nil || ch["realm"] != f.realm || ch["qop"] != "auth" || ch["uri"] != "/wsman":
		f.challenge(w, false)
		return false
	case ch["response"] != want || ch["username"] != f.user:
		f.challenge(w, false)
		return false
	case nc <= nu.lastNC:
		f.t.Errorf("device: nc %d after %d on one nonce", nc, nu.lastNC)
		f.challenge(w, false)
		return false
	}
	nu.lastNC = nc
	nu.uses++
	if f.staleAfter > 0 && nu.uses > f.staleAfter {
		f.challenge(w, true)
		return false
	}
	if f.rechallAt > 0 && nu.uses > f.rechallAt {
		f.challenge(w, false)
		return false
	}
	fr.Authorized = true
	return true
}

// parseDigestParamsForTest splits Digest parameters (the test's own parser).
func parseDigestParamsForTest(s string) (map[string]string, error) {
	p := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, ", ") {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("no = in %q", s)
		}
		if strings.HasPrefix(v, `"`) {
			end := 1
			for end < len(v) && v[end] != '"' {
				if v[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(v) {
				return nil, fmt.Errorf("unterminated %q", v)
			}
			p[strings.TrimSpace(k)] = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(v[1:end])
			s = v[end+1:]
		} else {
			val, rest, _ := strings.Cut(v, ",")
			p[strings.TrimSpace(k)] = strings.TrimSpace(val)
			s = rest
		}
	}
	return p, nil
}

type fakeEnvelope struct {
	Header struct {
		Action      string `xml:"Action"`
		ResourceURI string `xml:"ResourceURI"`
		MessageID   string `xml:"MessageID"`
	} `xml:"Header"`
	Body struct {
		Inner string `xml:",innerxml"`
	} `xml:"Body"`
}

func (f *fakeDevice) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/wsman" || r.Method != http.MethodPost {
		f.t.Errorf("device: %s %s", r.Method, r.URL)
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var env fakeEnvelope
	if err := xml.Unmarshal(body, &env); err != nil {
		f.t.Errorf("device: the request is not XML: %v\n%s", err, body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	fr := fakeReq{Action: env.Header.Action, Resource: env.Header.ResourceURI, MessageID: env.Header.MessageID,
		Body: env.Body.Inner, Conn: r.RemoteAddr}

	f.mu.Lock()
	ok := f.authorize(w, r, &fr)
	f.reqs = append(f.reqs, fr)
	if !ok {
		f.mu.Unlock()
		return
	}
	f.inFlight++
	f.maxFlight = max(f.maxFlight, f.inFlight)
	block, blocked, hook, raw := f.block, f.blocked, f.hook, f.raw
	hangUp := f.hangUp
	f.hangUp = false
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if hook != nil {
		hook(w, r, &fr)
	}
	if block != nil {
		if blocked != nil {
			blocked <- struct{}{}
		}
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if hangUp {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
		return
	}
	if raw != nil && raw(w, &fr) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closeEach {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Server", "Intel(R) Active Management Technology 16.1.25")
	if sub, ok := f.faults[fr.Class()]; ok {
		f.fault(w, &fr, sub)
		return
	}
	f.answer(w, &fr)
}

func (f *fakeDevice) write(w http.ResponseWriter, status int, fr *fakeReq, action, body string) {
	w.Header().Set("Content-Type", "application/soap+xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope" xmlns:b="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:c="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:g="http://schemas.xmlsoap.org/ws/2004/09/enumeration" xmlns:h="%s"><a:Header><b:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</b:To><b:RelatesTo>%s</b:RelatesTo><b:Action a:mustUnderstand="true">%s</b:Action><b:MessageID>uuid:00000000-8086-8086-8086-000000000001</b:MessageID></a:Header><a:Body>%s</a:Body></a:Envelope>`,
		fr.Resource, esc(fr.MessageID), action, body)
}

func (f *fakeDevice) fault(w http.ResponseWriter, fr *fakeReq, subcode string) {
	f.write(w, http.StatusBadRequest, fr, "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault",
		`<a:Fault><a:Code><a:Value>a:Sender</a:Value><a:Subcode><a:Value>b:`+subcode+`</a:Value></a:Subcode></a:Code><a:Reason><a:Text xml:lang="en-US">The fault `+subcode+`.</a:Text></a:Reason></a:Fault>`)
}

// instances returns the items of an enumeration of class.
func (f *fakeDevice) instances(class string) []string {
	in := func(class string, props ...string) string {
		var b strings.Builder
		b.WriteString("<h:" + class + ">")
		for i := 0; i+1 < len(props); i += 2 {
			b.WriteString("<h:" + props[i] + ">" + esc(props[i+1]) + "</h:" + props[i] + ">")
		}
		b.WriteString("</h:" + class + ">")
		return b.String()
	}
	switch class {
	case "CIM_ServiceAvailableToElement":
		return []string{`<h:CIM_AssociatedPowerManagementService><h:AvailableRequestedPowerStates>8</h:AvailableRequestedPowerStates><h:AvailableRequestedPowerStates>10</h:AvailableRequestedPowerStates><h:PowerState>` +
			strconv.Itoa(f.power) + `</h:PowerState><h:ServiceProvided><b:Address>x</b:Address></h:ServiceProvided></h:CIM_AssociatedPowerManagementService>`}
	case "CIM_SoftwareIdentity":
		return []string{
			in(class, "InstanceID", "Flash", "IsEntity", "true", "VersionString", "16.1.25"),
			in(class, "InstanceID", "AMT", "IsEntity", "true", "VersionString", "16.1.25"),
			in(class, "InstanceID", "Sku", "IsEntity", "true", "VersionString", "16392"),
			in(class, "InstanceID", "Build Number", "IsEntity", "true", "VersionString", "2008"),
		}
	case "AMT_SetupAndConfigurationService":
		return []string{in(class, "ElementName", "Intel(r) AMT Setup and Configuration Service", "EnabledState", "5", "ProvisioningMode", "4", "ProvisioningState", "2")}
	case "CIM_PhysicalMemory":
		return []string{
			in(class, "BankLabel", "BANK 0", "Capacity", "17179869184", "FormFactor", "13", "Manufacturer", "Samsung", "MemoryType", "26", "PartNumber", "M471A2K43EB1-CWE", "SerialNumber", "1234ABCD", "Speed", "3200"),
			in(class, "BankLabel", "BANK 2", "Capacity", "17179869184", "FormFactor", "13", "Manufacturer", "Samsung", "MemoryType", "26", "PartNumber", "M471A2K43EB1-CWE", "SerialNumber", "5678ABCD", "Speed", "3200"),
		}
	case "CIM_Chip":
		return []string{in(class, "ElementName", "Managed System Processor Chip", "Manufacturer", "Intel(R) Corporation", "Version", "12th Gen Intel(R) Core(TM) i7-1265U")}
	case "CIM_Processor":
		return []string{in(class, "CurrentClockSpeed", "1800", "DeviceID", "CPU 0", "Family", "198", "MaxClockSpeed", "4800", "Stepping", "4")}
	case "CIM_MediaAccessDevice":
		return []string{in(class, "DeviceID", "MEDIA DEV 0", "MaxMediaSize", "500107862")}
	case "CIM_PhysicalPackage":
		return []string{
			in("CIM_Card", "Manufacturer", "LENOVO", "Model", "21AH"),
			in(class, "ElementName", "Managed System Media Package", "Model", "SAMSUNG MZVL2512", "SerialNumber", "S6ABC123"),
		}
	}
	return nil
}

// get returns the instance of a Get.
func (f *fakeDevice) get(class string) string {
	in := func(props ...string) string {
		var b strings.Builder
		b.WriteString("<h:" + class + ">")
		for i := 0; i+1 < len(props); i += 2 {
			b.WriteString("<h:" + props[i] + ">" + esc(props[i+1]) + "</h:" + props[i] + ">")
		}
		b.WriteString("</h:" + class + ">")
		return b.String()
	}
	switch class {
	case "AMT_GeneralSettings":
		return in("AMTNetworkEnabled", "1", "DigestRealm", f.realm, "DomainName", "example.org", "HostName", "laptop-7",
			"NetworkInterfaceEnabled", "true", "PingResponseEnabled", "true", "PowerSource", "0", "PrivacyLevel", "0")
	case "CIM_Chassis":
		return in("Manufacturer", "LENOVO", "Model", "ThinkPad T14", "PackageType", "3", "SerialNumber", "PF3ABCDE", "Tag", "CIM_Chassis", "Version", "")
	case "CIM_Card":
		return in("Manufacturer", "LENOVO", "Model", "21AH", "SerialNumber", "L1HF2AB", "Tag", "CIM_Card", "Version", "SDK0T76530 WIN")
	case "CIM_BIOSElement":
		return `<h:CIM_BIOSElement><h:Manufacturer>LENOVO</h:Manufacturer><h:Name>Primary BIOS</h:Name><h:PrimaryBIOS>true</h:PrimaryBIOS><h:ReleaseDate><h:Datetime>2023-03-15T00:00:00Z</h:Datetime></h:ReleaseDate><h:Version>N3MET18W (1.17 )</h:Version></h:CIM_BIOSElement>`
	case "AMT_BootCapabilities":
		return in("BIOSSetup", "true", "ForceCDorDVDBoot", "true", "ForceDiagnosticBoot", "false", "ForceHardDriveBoot", "true", "ForcePXEBoot", "true", "IDER", "true", "SOL", "true")
	case "AMT_BootSettingData":
		return in("BIOSLastStatus", "2", "BIOSLastStatus", "0", "BIOSPause", "false", "BIOSSetup", "false", "BootMediaIndex", "0",
			"ElementName", "Intel(r) AMT Boot Configuration Settings", "InstanceID", "Intel(r) AMT:BootSettingData 0",
			"OwningEntity", "Intel(r) AMT", "UseIDER", "false", "UseSOL", "false", "LockKeyboard", "true")
	case "IPS_OptInService":
		return in("CanModifyOptInPolicy", "1", "CreationClassName", "IPS_OptInService", "ElementName", "Intel(r) AMT OptIn Service",
			"Name", "Intel(r) AMT OptIn Service", "OptInCodeTimeout", "120", "OptInDisplayTimeout", "300", "OptInRequired", "4294967295",
			"OptInState", "0", "SystemCreationClassName", "CIM_ComputerSystem", "SystemName", "Intel(r) AMT")
	case "AMT_RedirectionService":
		return in("CreationClassName", "AMT_RedirectionService", "ElementName", "Intel(r) AMT Redirection Service", "EnabledState", "32771",
			"ListenerEnabled", "true", "Name", "Intel(r) AMT Redirection Service", "SystemCreationClassName", "CIM_ComputerSystem", "SystemName", "Intel(r) AMT")
	case "CIM_KVMRedirectionSAP":
		return in("ElementName", "KVM Redirection Service Access Point", "EnabledState", "6", "KVMProtocol", "4", "Name", "KVM Redirection Service Access Point", "RequestedState", "2")
	case "IPS_KVMRedirectionSettingData":
		return in("DefaultScreen", "0", "ElementName", "Intel(r) KVM Redirection Settings", "EnabledByMEBx", "true", "InstanceID", "Intel(r) KVM Redirection Settings",
			"Is5900PortEnabled", "false", "OptInPolicy", "true", "OptInPolicyTimeout", "120", "RFBPassword", "", "SessionTimeout", "0")
	case "AMT_AuditLog":
		return `<h:AMT_AuditLog><h:CurrentNumberOfRecords>` + strconv.Itoa(len(f.audits)) + `</h:CurrentNumberOfRecords><h:MaxNumberOfRecords>0</h:MaxNumberOfRecords><h:PercentageFree>88</h:PercentageFree><h:StoragePolicy>1</h:StoragePolicy><h:TimeOfLastRecord><h:Datetime>2026-12-01T10:00:00Z</h:Datetime></h:TimeOfLastRecord></h:AMT_AuditLog>`
	case "IPS_PowerManagementService":
		return in("OSPowerSavingState", "2")
	}
	return ""
}

// answer writes the canned answer of a request. f.mu is held.
func (f *fakeDevice) answer(w http.ResponseWriter, fr *fakeReq) {
	class := fr.Class()
	switch fr.Action {
	case actionGet:
		body := f.get(class)
		if body == "" {
			f.fault(w, fr, "DestinationUnreachable")
			return
		}
		f.write(w, 200, fr, actionGet+"Response", body)
	case actionPut:
		f.write(w, 200, fr, actionPut+"Response", f.get(class))
	case actionEnumerate:
		f.write(w, 200, fr, actionEnumerate+"Response", `<g:EnumerateResponse><g:EnumerationContext>ctx-`+class+`-0</g:EnumerationContext></g:EnumerateResponse>`)
	case actionPull:
		items := f.instances(class)
		page := 0
		if i := strings.Index(fr.Body, "ctx-"+class+"-"); i >= 0 {
			rest := fr.Body[i+len("ctx-"+class+"-"):]
			page, _ = strconv.Atoi(rest[:strings.IndexByte(rest, '<')])
		}
		from, to := 0, len(items)
		if f.pullBatch > 0 {
			from, to = min(page*f.pullBatch, len(items)), min((page+1)*f.pullBatch, len(items))
		}
		end := `<g:EndOfSequence/>`
		if f.noEnd || to < len(items) {
			end = fmt.Sprintf(`<g:EnumerationContext>ctx-%s-%d</g:EnumerationContext>`, class, page+1)
		}
		f.write(w, 200, fr, actionPull+"Response", `<g:PullResponse><g:Items>`+strings.Join(items[from:to], "")+`</g:Items>`+end+`</g:PullResponse>`)
	default:
		f.method(w, fr)
	}
}

// method answers a method call. f.mu is held.
func (f *fakeDevice) method(w http.ResponseWriter, fr *fakeReq) {
	m := fr.Method()
	rv := f.rv[m]
	out := func(extra string) {
		f.write(w, 200, fr, fr.Action+"Response", fmt.Sprintf(`<h:%s_OUTPUT>%s<h:ReturnValue>%d</h:ReturnValue></h:%s_OUTPUT>`, m, extra, rv, m))
	}
	switch m {
	case "RequestPowerStateChange":
		if rv == 0 {
			if i := strings.Index(fr.Body, "PowerState>"); i >= 0 {
				f.power, _ = strconv.Atoi(fr.Body[i+len("PowerState>") : i+len("PowerState>")+strings.IndexByte(fr.Body[i+len("PowerState>"):], '<')])
			}
		}
		out("")
	case "GetRecords":
		id := 1
		if i := strings.Index(fr.Body, "IterationIdentifier>"); i >= 0 {
			s := fr.Body[i+len("IterationIdentifier>"):]
			id, _ = strconv.Atoi(s[:strings.IndexByte(s, '<')])
		}
		page := f.logPage
		if page == 0 {
			page = 390
		}
		from := min(id-1, len(f.events))
		to := min(from+page, len(f.events))
		var b strings.Builder
		fmt.Fprintf(&b, "<h:IterationIdentifier>%d</h:IterationIdentifier><h:NoMoreRecords>%t</h:NoMoreRecords>", to+1, to == len(f.events))
		for _, r := range f.events[from:to] {
			b.WriteString("<h:RecordArray>" + base64.StdEncoding.EncodeToString(r) + "</h:RecordArray>")
		}
		out(b.String())
	case "ReadRecords":
		start := 1
		if i := strings.Index(fr.Body, "StartIndex>"); i >= 0 {
			s := fr.Body[i+len("StartIndex>"):]
			start, _ = strconv.Atoi(s[:strings.IndexByte(s, '<')])
		}
		from := min(start-1, len(f.audits))
		to := min(from+10, len(f.audits))
		var b strings.Builder
		fmt.Fprintf(&b, "<h:TotalRecordCount>%d</h:TotalRecordCount><h:RecordsReturned>%d</h:RecordsReturned>", len(f.audits), to-from)
		for _, r := range f.audits[from:to] {
			b.WriteString("<h:EventRecords>" + base64.StdEncoding.EncodeToString(r) + "</h:EventRecords>")
		}
		out(b.String())
	default:
		out("")
	}
}

// testClient returns a client of the device, closed at the end of the test.
func testClient(t testing.TB, f *fakeDevice, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Dial: f.dial,
		Credentials: func(context.Context, string) (Credentials, error) {
			return Credentials{User: testUser, Password: testPass}, nil
		},
		Timeout: 10 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
