package enrol_test

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeAMT is a stateful WS-Man device written for these tests: digest
// (MD5, qop=auth) over loopback HTTP, the enrolment classes with their
// state, and a log of every write in order.
type fakeAMT struct {
	srv   *httptest.Server
	realm string
	user  string
	pass  string

	mu           sync.Mutex
	nonces       map[string]bool
	failedLogins int
	requests     int
	log          []string             // writes, in order: "AddMpServer", "Delete AMT_...=key", ...
	raw          []string             // raw envelopes of writes
	rv           map[string]uint32    // method → ReturnValue to answer (nothing written)
	provState    int                  // ProvisioningState
	noUIC        bool                 // the UIC class is missing
	server       string               // the Server header
	certs        map[int][]byte       // handle → DER
	saps         map[int]*fakeSAP     // handle → SAP
	rules        map[string]*fakeRule // name → rule
	uic          int
	detect       []string
	nextHandle   int
	externalLogs *[]string // also receives the writes (to order them with the Account callback)
}

type fakeSAP struct {
	access, cn string
	format     int
	port       int
	user, pass string
}

type fakeRule struct {
	trigger  int
	lifetime uint32
	ext      string
	servers  []fakeAssoc
}

type fakeAssoc struct {
	sap            string
	mpsType, order int
}

var ruleNames = map[int]string{0: "User Initiated", 1: "Alert", 2: "Periodic"}

const (
	fakeUser = "admin"
	fakePass = "Amt-P@ss1"
	sapPfx   = "Intel(r) AMT:Management Presence Server "
	certPfx  = "Intel(r) AMT Certificate: Handle: "
	platGUID = "33221100554477668899AABBCCDDEEFF"
	wantGUID = "00112233-4455-6677-8899-aabbccddeeff"
)

func newFakeAMT(t *testing.T) *fakeAMT {
	f := &fakeAMT{realm: "Digest:FAKE", user: fakeUser, pass: fakePass, nonces: map[string]bool{},
		rv: map[string]uint32{}, provState: 2, server: "Intel(R) Active Management Technology 16.1.25",
		certs: map[int][]byte{}, saps: map[int]*fakeSAP{}, rules: map[string]*fakeRule{}, uic: 32768}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAMT) addr() string { return f.srv.Listener.Addr().String() }

func (f *fakeAMT) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func (f *fakeAMT) with(fn func(f *fakeAMT)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAMT) addSAP(s *fakeSAP) string {
	h := f.nextHandle
	f.nextHandle++
	f.saps[h] = s
	return sapPfx + strconv.Itoa(h)
}

func (f *fakeAMT) sapByName(name string) (int, *fakeSAP) {
	for h, s := range f.saps {
		if sapPfx+strconv.Itoa(h) == name {
			return h, s
		}
	}
	return -1, nil
}

// node is a generic XML element.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Kids    []node     `xml:",any"`
}

func (n *node) kid(local string) *node {
	if n == nil {
		return nil
	}
	for i := range n.Kids {
		if n.Kids[i].XMLName.Local == local {
			return &n.Kids[i]
		}
	}
	return nil
}

func (n *node) all(local string) []node {
	if n == nil {
		return nil
	}
	var out []node
	for _, k := range n.Kids {
		if k.XMLName.Local == local {
			out = append(out, k)
		}
	}
	return out
}

func (n *node) text(local string) string {
	if k := n.kid(local); k != nil {
		return strings.TrimSpace(k.Text)
	}
	return ""
}

func (n *node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// selectors of an EPR element (Address + ReferenceParameters inside).
func eprSelectors(n *node) map[string]string {
	m := map[string]string{}
	for _, s := range n.kid("ReferenceParameters").kid("SelectorSet").all("Selector") {
		m[s.attr("Name")] = strings.TrimSpace(s.Text)
	}
	return m
}

func md5hex(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

func digestParams(s string) map[string]string {
	p := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			p[k] = strings.Trim(v, `"`)
		}
	}
	return p
}

func (f *fakeAMT) challenge(w http.ResponseWriter) {
	var b [12]byte
	rand.Read(b[:])
	n := hex.EncodeToString(b[:])
	f.nonces[n] = true
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Digest realm="%s", nonce="%s", stale="false", qop="auth"`, f.realm, n))
	w.WriteHeader(http.StatusUnauthorized)
}

func (f *fakeAMT) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	h := r.Header.Get("Authorization")
	if h == "" {
		f.challenge(w)
		return
	}
	p := digestParams(strings.TrimPrefix(h, "Digest "))
	want := md5hex(md5hex(f.user+":"+f.realm+":"+f.pass) + ":" + p["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":auth:" + md5hex(r.Method+":"+p["uri"]))
	if !f.nonces[p["nonce"]] || p["response"] != want || p["username"] != f.user {
		f.failedLogins++
		f.challenge(w)
		return
	}
	var env node
	if err := xml.Unmarshal(body, &env); err != nil {
		w.WriteHeader(400)
		return
	}
	hd := env.kid("Header")
	action, res, id := hd.text("Action"), hd.text("ResourceURI"), hd.text("MessageID")
	class := res[strings.LastIndexByte(res, '/')+1:]
	method := action[strings.LastIndexByte(action, '/')+1:]
	w.Header().Set("Server", f.server)
	reply := func(status int, inner string) {
		w.Header().Set("Content-Type", "application/soap+xml;charset=UTF-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope" xmlns:b="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:c="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:g="http://schemas.xmlsoap.org/ws/2004/09/enumeration" xmlns:h="%s"><a:Header><b:RelatesTo>%s</b:RelatesTo><b:Action>%sResponse</b:Action></a:Header><a:Body>%s</a:Body></a:Envelope>`, res, id, action, inner)
	}
	fault := func(sub string) {
		reply(400, `<a:Fault><a:Code><a:Value>a:Sender</a:Value><a:Subcode><a:Value>b:`+sub+`</a:Value></a:Subcode></a:Code><a:Reason><a:Text>fault `+sub+`</a:Text></a:Reason></a:Fault>`)
	}
	if f.provState != 2 && !(class == "AMT_SetupAndConfigurationService" && method == "Get") {
		fault("AccessDenied")
		return
	}
	in := func(props ...string) string {
		var b strings.Builder
		b.WriteString("<h:" + class + ">")
		for i := 0; i+1 < len(props); i += 2 {
			b.WriteString("<h:" + props[i] + ">" + props[i+1] + "</h:" + props[i] + ">")
		}
		b.WriteString("</h:" + class + ">")
		return b.String()
	}
	switch method {
	case "Get":
		switch class {
		case "AMT_SetupAndConfigurationService":
			reply(200, in("ProvisioningMode", "4", "ProvisioningState", strconv.Itoa(f.provState), "DhcpDNSSuffix", "office.example"))
		case "CIM_ComputerSystemPackage":
			reply(200, in("PlatformGUID", platGUID))
		case "AMT_RemoteAccessCapabilities":
			reply(200, in("MaxMpsPerPolicy", "2", "MaxTotalMpServers", "4", "MaxTotalPolicies", "3"))
		case "AMT_UserInitiatedConnectionService":
			if f.noUIC {
				fault("DestinationUnreachable")
				return
			}
			reply(200, in("EnabledState", strconv.Itoa(f.uic)))
		case "AMT_EnvironmentDetectionSettingData":
			var ds string
			for _, d := range f.detect {
				ds += "<h:DetectionStrings>" + d + "</h:DetectionStrings>"
			}
			reply(200, "<h:"+class+"><h:DetectionAlgorithm>0</h:DetectionAlgorithm>"+ds+"<h:ElementName>Intel(r) AMT Environment Detection Settings</h:ElementName><h:InstanceID>Intel(r) AMT Environment Detection Settings</h:InstanceID></h:"+class+">")
		default:
			fault("DestinationUnreachable")
		}
	case "Enumerate":
		reply(200, `<g:EnumerateResponse><g:EnumerationContext>ctx</g:EnumerationContext></g:EnumerateResponse>`)
	case "Pull":
		reply(200, `<g:PullResponse><g:Items>`+f.items(class)+`</g:Items><g:EndOfSequence/></g:PullResponse>`)
	default:
		f.raw = append(f.raw, string(body))
		f.write(env.kid("Body"), hd, class, method, reply, fault)
	}
}

func epr(class string, kv ...string) string {
	var b strings.Builder
	b.WriteString(`<b:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</b:Address><b:ReferenceParameters><c:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/` + class + `</c:ResourceURI><c:SelectorSet>`)
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(`<c:Selector Name="` + kv[i] + `">` + kv[i+1] + `</c:Selector>`)
	}
	b.WriteString(`</c:SelectorSet></b:ReferenceParameters>`)
	return b.String()
}

func (f *fakeAMT) items(class string) string {
	var b strings.Builder
	switch class {
	case "AMT_PublicKeyCertificate":
		for _, h := range sortedKeys(f.certs) {
			fmt.Fprintf(&b, `<h:%s><h:InstanceID>%s%d</h:InstanceID><h:X509Certificate>%s</h:X509Certificate><h:TrustedRootCertficate>true</h:TrustedRootCertficate></h:%s>`, class, certPfx, h, base64.StdEncoding.EncodeToString(f.certs[h]), class)
		}
	case "AMT_ManagementPresenceRemoteSAP":
		for _, h := range sortedKeys(f.saps) {
			s := f.saps[h]
			fmt.Fprintf(&b, `<h:%s><h:AccessInfo>%s</h:AccessInfo><h:CN>%s</h:CN><h:InfoFormat>%d</h:InfoFormat><h:Name>%s%d</h:Name><h:Port>%d</h:Port></h:%s>`, class, s.access, s.cn, s.format, sapPfx, h, s.port, class)
		}
	case "AMT_RemoteAccessPolicyRule":
		for _, n := range sortedKeys(f.rules) {
			r := f.rules[n]
			fmt.Fprintf(&b, `<h:%s><h:ExtendedData>%s</h:ExtendedData><h:PolicyRuleName>%s</h:PolicyRuleName><h:Trigger>%d</h:Trigger><h:TunnelLifeTime>%d</h:TunnelLifeTime></h:%s>`, class, r.ext, n, r.trigger, r.lifetime, class)
		}
	case "AMT_RemoteAccessPolicyAppliesToMPS":
		for _, n := range sortedKeys(f.rules) {
			for _, a := range f.rules[n].servers {
				fmt.Fprintf(&b, `<h:%s><h:ManagedElement>%s</h:ManagedElement><h:MpsType>%d</h:MpsType><h:OrderOfAccess>%d</h:OrderOfAccess><h:PolicySet>%s</h:PolicySet></h:%s>`, class,
					epr("AMT_ManagementPresenceRemoteSAP", "CreationClassName", "AMT_ManagementPresenceRemoteSAP", "Name", a.sap, "SystemCreationClassName", "CIM_ComputerSystem", "SystemName", "Intel(r) AMT"),
					a.mpsType, a.order, epr("AMT_RemoteAccessPolicyRule", "CreationClassName", "AMT_RemoteAccessPolicyRule", "PolicyRuleName", n, "SystemCreationClassName", "CIM_ComputerSystem", "SystemName", "Intel(r) AMT"), class)
			}
		}
	}
	return b.String()
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	var ks []K
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (f *fakeAMT) logw(s string) {
	f.log = append(f.log, s)
	if f.externalLogs != nil {
		*f.externalLogs = append(*f.externalLogs, s)
	}
}

// write applies a method, Put or Delete. f.mu is held.
func (f *fakeAMT) write(body, hd *node, class, method string, reply func(int, string), fault func(string)) {
	out := func(rv uint32, extra string) {
		reply(200, fmt.Sprintf(`<h:%s_OUTPUT>%s<h:ReturnValue>%d</h:ReturnValue></h:%s_OUTPUT>`, method, extra, rv, method))
	}
	if rv, ok := f.rv[method]; ok {
		out(rv, "")
		return
	}
	headerSel := map[string]*node{}
	for i, s := range hd.kid("SelectorSet").all("Selector") {
		headerSel[s.attr("Name")] = &hd.kid("SelectorSet").all("Selector")[i]
	}
	var input *node
	if len(body.Kids) > 0 {
		input = &body.Kids[0]
	}
	switch method {
	case "AddTrustedRootCertificate":
		der, _ := base64.StdEncoding.DecodeString(input.text("CertificateBlob"))
		for _, c := range f.certs {
			if string(c) == string(der) {
				out(2058, "")
				return
			}
		}
		h := f.nextHandle
		f.nextHandle++
		f.certs[h] = der
		f.logw("AddTrustedRootCertificate")
		out(0, `<h:CreatedCertificate>`+epr("AMT_PublicKeyCertificate", "InstanceID", certPfx+strconv.Itoa(h))+`</h:CreatedCertificate>`)
	case "AddMpServer":
		fmtv, _ := strconv.Atoi(input.text("InfoFormat"))
		port, _ := strconv.Atoi(input.text("Port"))
		name := f.addSAP(&fakeSAP{access: input.text("AccessInfo"), cn: input.text("CN"), format: fmtv, port: port, user: input.text("Username"), pass: input.text("Password")})
		f.logw("AddMpServer " + input.text("AccessInfo"))
		out(0, `<h:MpServer>`+epr("AMT_ManagementPresenceRemoteSAP", "CreationClassName", "AMT_ManagementPresenceRemoteSAP", "Name", name, "SystemCreationClassName", "CIM_ComputerSystem", "SystemName", "Intel(r) AMT")+`</h:MpServer>`)
	case "AddRemoteAccessPolicyRule":
		trig, _ := strconv.Atoi(input.text("Trigger"))
		life, _ := strconv.Atoi(input.text("TunnelLifeTime"))
		name := ruleNames[trig]
		if f.rules[name] != nil {
			out(2058, "")
			return
		}
		r := &fakeRule{trigger: trig, lifetime: uint32(life), ext: input.text("ExtendedData")}
		for i, m := range input.all("MpServer") {
			if m.kid("EndpointReference") != nil {
				out(36, "") // AMT wants the EPR's children directly
				return
			}
			n := eprSelectors(&m)["Name"]
			if _, s := f.sapByName(n); s == nil {
				out(36, "")
				return
			}
			r.servers = append(r.servers, fakeAssoc{sap: n, order: i})
		}
		f.rules[name] = r
		f.logw(fmt.Sprintf("AddRemoteAccessPolicyRule %d %v", trig, sapsOf(r)))
		out(0, `<h:PolicyRule>`+epr("AMT_RemoteAccessPolicyRule", "PolicyRuleName", name)+`</h:PolicyRule>`)
	case "RequestStateChange":
		f.uic, _ = strconv.Atoi(input.text("RequestedState"))
		f.logw("RequestStateChange " + input.text("RequestedState"))
		out(0, "")
	case "Put":
		switch class {
		case "AMT_RemoteAccessPolicyAppliesToMPS":
			me, ps := headerSel["ManagedElement"].kid("EndpointReference"), headerSel["PolicySet"].kid("EndpointReference")
			if me == nil || ps == nil {
				fault("InvalidSelectors")
				return
			}
			r := f.rules[eprSelectors(ps)["PolicyRuleName"]]
			sap := eprSelectors(me)["Name"]
			if r == nil {
				fault("DestinationUnreachable")
				return
			}
			for i := range r.servers {
				if r.servers[i].sap == sap {
					r.servers[i].mpsType, _ = strconv.Atoi(input.text("MpsType"))
					r.servers[i].order, _ = strconv.Atoi(input.text("OrderOfAccess"))
					f.logw(fmt.Sprintf("Put AppliesToMPS %s %s %d %d", eprSelectors(ps)["PolicyRuleName"], sap, r.servers[i].mpsType, r.servers[i].order))
					reply(200, "")
					return
				}
			}
			fault("DestinationUnreachable")
		case "AMT_EnvironmentDetectionSettingData":
			if strings.TrimSpace(headerSel["InstanceID"].Text) != "Intel(r) AMT Environment Detection Settings" {
				fault("InvalidSelectors")
				return
			}
			f.detect = nil
			for _, d := range input.all("DetectionStrings") {
				f.detect = append(f.detect, strings.TrimSpace(d.Text))
			}
			f.logw(fmt.Sprintf("Put EnvironmentDetection %q", f.detect))
			reply(200, "")
		default:
			fault("ActionNotSupported")
		}
	case "Delete":
		if len(headerSel) != 1 {
			fault("InvalidSelectors")
			return
		}
		var key, val string
		for k, v := range headerSel {
			key, val = k, strings.TrimSpace(v.Text)
		}
		switch {
		case class == "AMT_RemoteAccessPolicyRule" && key == "PolicyRuleName" && f.rules[val] != nil:
			delete(f.rules, val)
		case class == "AMT_ManagementPresenceRemoteSAP" && key == "Name":
			h, s := f.sapByName(val)
			if s == nil {
				fault("DestinationUnreachable")
				return
			}
			for _, r := range f.rules {
				if slices.Contains(sapsOf(r), val) {
					fault("AccessDenied") // NOT_PERMITTED: a rule uses it
					return
				}
			}
			delete(f.saps, h)
		case class == "AMT_PublicKeyCertificate" && key == "InstanceID" && strings.HasPrefix(val, certPfx):
			h, _ := strconv.Atoi(strings.TrimPrefix(val, certPfx))
			if f.certs[h] == nil {
				fault("DestinationUnreachable")
				return
			}
			delete(f.certs, h)
		default:
			fault("DestinationUnreachable")
			return
		}
		f.logw("Delete " + class + " " + val)
		reply(200, "")
	default:
		fault("ActionNotSupported")
	}
}

func sapsOf(r *fakeRule) []string {
	var out []string
	for _, a := range r.servers {
		out = append(out, a.sap)
	}
	return out
}
