package wsman

import (
	"context"
	"encoding/xml"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The enrolment calls' shapes and answers (enrol.md §12).

func enrolSeeds() [][]byte {
	f := &fakeDevice{realm: "Digest:X"}
	var seeds [][]byte
	add := func(res, body string) {
		rec := httptest.NewRecorder()
		f.write(rec, 200, &fakeReq{Resource: res, MessageID: "uuid:1"}, "x", body)
		seeds = append(seeds, rec.Body.Bytes())
	}
	sap := `<b:Address>` + anonymous + `</b:Address><b:ReferenceParameters><c:ResourceURI>` + resMPSSAP + `</c:ResourceURI><c:SelectorSet><c:Selector Name="CreationClassName">AMT_ManagementPresenceRemoteSAP</c:Selector><c:Selector Name="Name">Intel(r) AMT:Management Presence Server 0</c:Selector></c:SelectorSet></b:ReferenceParameters>`
	add(resRemoteAccessService, `<h:AddMpServer_OUTPUT><h:MpServer>`+sap+`</h:MpServer><h:ReturnValue>0</h:ReturnValue></h:AddMpServer_OUTPUT>`)
	add(resAppliesToMPS, `<g:PullResponse><g:Items><h:AMT_RemoteAccessPolicyAppliesToMPS><h:ManagedElement>`+sap+`</h:ManagedElement><h:MpsType>0</h:MpsType><h:OrderOfAccess>0</h:OrderOfAccess><h:PolicySet>`+strings.ReplaceAll(sap, "Name\">Intel(r) AMT:Management Presence Server 0", "PolicyRuleName\">Periodic")+`</h:PolicySet></h:AMT_RemoteAccessPolicyAppliesToMPS></g:Items><g:EndOfSequence/></g:PullResponse>`)
	add(resEnvironmentDetection, `<h:AMT_EnvironmentDetectionSettingData><h:DetectionAlgorithm>0</h:DetectionAlgorithm><h:DetectionStrings>a.example</h:DetectionStrings><h:DetectionStrings>b.example</h:DetectionStrings><h:ElementName>x</h:ElementName><h:InstanceID>Intel(r) AMT Environment Detection Settings</h:InstanceID></h:AMT_EnvironmentDetectionSettingData>`)
	return seeds
}

// FuzzDecodeEnrol: decoding any answer into the enrolment shapes never
// panics, fails only with ErrMalformed or a *Fault, and the EPRs decoded
// stay within their cap.
func FuzzDecodeEnrol(f *testing.F) {
	for _, s := range enrolSeeds() {
		f.Add(s)
	}
	lim := DefaultLimits
	lim.MaxTokens = 20_000
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			mp  mpServerOutput
			pr  policyRuleOutput
			cc  createdCertificateOutput
			ap  pullResponse[appliesXML]
			env EnvironmentDetection
			sap pullResponse[MPServer]
			pk  computerSystemPackage
		)
		targets := []struct {
			want string
			out  any
		}{
			{"AddMpServer_OUTPUT", &mp}, {"AddRemoteAccessPolicyRule_OUTPUT", &pr},
			{"AddTrustedRootCertificate_OUTPUT", &cc}, {"PullResponse", &ap},
			{"AMT_EnvironmentDetectionSettingData", &env}, {"PullResponse", &sap},
			{"CIM_ComputerSystemPackage", &pk},
		}
		for _, tg := range targets {
			_, err := lim.decodeEnvelope(b, 200, tg.want, tg.out)
			var fe *Fault
			if err != nil && !errors.Is(err, ErrMalformed) && !errors.As(err, &fe) {
				t.Fatalf("decodeEnvelope(%q) = %v", tg.want, err)
			}
		}
		for _, x := range []eprXML{mp.MpServer, pr.PolicyRule, cc.CreatedCertificate} {
			if e, err := x.epr(); err == nil && len(e.Selectors) > maxSelectors {
				t.Fatalf("%d selectors", len(e.Selectors))
			}
		}
		for _, it := range ap.Items.List {
			it.ManagedElement.epr()
			it.PolicySet.epr()
		}
	})
}

func TestEnrolDecoders(t *testing.T) {
	seeds := enrolSeeds()
	lim := DefaultLimits
	var mp mpServerOutput
	if _, err := lim.decodeEnvelope(seeds[0], 200, "AddMpServer_OUTPUT", &mp); err != nil {
		t.Fatal(err)
	}
	e, _ := mp.MpServer.epr()
	if e.Selector("Name") != "Intel(r) AMT:Management Presence Server 0" || e.ResourceURI != resMPSSAP || *mp.ReturnValue != 0 {
		t.Errorf("MpServer = %+v", e)
	}
	var ap pullResponse[appliesXML]
	if _, err := lim.decodeEnvelope(seeds[1], 200, "PullResponse", &ap); err != nil || len(ap.Items.List) != 1 {
		t.Fatal(err, ap)
	}
	ps, _ := ap.Items.List[0].PolicySet.epr()
	if ps.Selector("PolicyRuleName") != "Periodic" {
		t.Errorf("PolicySet = %+v", ps)
	}
	var env EnvironmentDetection
	if _, err := lim.decodeEnvelope(seeds[2], 200, "AMT_EnvironmentDetectionSettingData", &env); err != nil {
		t.Fatal(err)
	}
	if len(env.DetectionStrings) != 2 || env.DetectionStrings[1] != "b.example" || env.InstanceID != EnvironmentDetectionID {
		t.Errorf("env = %+v", env)
	}
}

// xmlNode is a generic element for checking shapes.
type xmlNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Kids    []xmlNode  `xml:",any"`
}

func (n *xmlNode) kid(local string) *xmlNode {
	for i := range n.Kids {
		if n.Kids[i].XMLName.Local == local {
			return &n.Kids[i]
		}
	}
	return nil
}

// TestEPRShapes: an EPR as a method parameter or a property holds Address
// and ReferenceParameters directly; as a header selector it is wrapped in
// an addressing EndpointReference (enrol.md §12).
func TestEPRShapes(t *testing.T) {
	a := PolicyAppliesToMPS{ManagedElement: SAPRef("Intel(r) AMT:Management Presence Server 1"), PolicySet: RuleRef("Periodic"), MpsType: 2, OrderOfAccess: 1}
	sel := `<w:SelectorSet><w:Selector Name="ManagedElement">` + a.ManagedElement.wrapped() + `</w:Selector><w:Selector Name="PolicySet">` + a.PolicySet.wrapped() + `</w:Selector></w:SelectorSet>`
	r := &request{action: actionPut, resource: resAppliesToMPS, selectors: sel, body: a.ManagedElement.param("ManagedElement")}
	var env xmlNode
	if err := xml.Unmarshal(r.envelope("uuid:1"), &env); err != nil {
		t.Fatal(err)
	}
	set := env.kid("Header").kid("SelectorSet")
	if set == nil || set.XMLName.Space != nsWSMan || len(set.Kids) != 2 {
		t.Fatalf("header SelectorSet = %+v", set)
	}
	ref := set.Kids[0].kid("EndpointReference")
	if ref == nil || ref.XMLName.Space != nsAddressing || ref.kid("Address").Text != anonymous {
		t.Fatalf("ManagedElement selector = %+v; want an EndpointReference", set.Kids[0])
	}
	rp := ref.kid("ReferenceParameters")
	if rp.kid("ResourceURI").Text != resMPSSAP || len(rp.kid("SelectorSet").Kids) != 4 {
		t.Errorf("ReferenceParameters = %+v", rp)
	}
	prop := env.kid("Body").kid("ManagedElement")
	if prop == nil || prop.kid("EndpointReference") != nil || prop.kid("Address") == nil || prop.kid("ReferenceParameters") == nil {
		t.Errorf("ManagedElement property = %+v; want Address and ReferenceParameters directly", prop)
	}
	// The header's order: OperationTimeout, then the SelectorSet.
	h := env.kid("Header").Kids
	if h[len(h)-2].XMLName.Local != "OperationTimeout" || h[len(h)-1].XMLName.Local != "SelectorSet" {
		t.Errorf("header order %v", h)
	}
}

// TestDeleteAbsentAndDuplicate: a Delete of a missing instance is
// ErrAbsent; AddTrustedRootCertificate's 2058 finds the existing root.
func TestDeleteAbsentAndDuplicate(t *testing.T) {
	f := newFakeDevice(t)
	der := []byte("not really DER but bytes")
	f.set(func(f *fakeDevice) {
		f.raw = func(w http.ResponseWriter, r *fakeReq) bool {
			switch {
			case r.Action == actionDelete:
				f.fault(w, r, "DestinationUnreachable")
			case r.Method() == "AddTrustedRootCertificate":
				f.write(w, 200, r, "x", `<h:AddTrustedRootCertificate_OUTPUT><h:ReturnValue>2058</h:ReturnValue></h:AddTrustedRootCertificate_OUTPUT>`)
			case r.Action == actionEnumerate:
				f.write(w, 200, r, "x", `<g:EnumerateResponse><g:EnumerationContext>c</g:EnumerationContext></g:EnumerateResponse>`)
			case r.Action == actionPull:
				f.write(w, 200, r, "x", `<g:PullResponse><g:Items><h:AMT_PublicKeyCertificate><h:InstanceID>Intel(r) AMT Certificate: Handle: 0</h:InstanceID><h:X509Certificate>b3RoZXI=</h:X509Certificate></h:AMT_PublicKeyCertificate><h:AMT_PublicKeyCertificate><h:InstanceID>Intel(r) AMT Certificate: Handle: 3</h:InstanceID><h:X509Certificate>bm90IHJlYWxseSBERVIgYnV0IGJ5dGVz</h:X509Certificate></h:AMT_PublicKeyCertificate></g:Items><g:EndOfSequence/></g:PullResponse>`)
			case r.Method() == "AddMpServer":
				w.WriteHeader(400) // AMT 19's bare 400
			default:
				return false
			}
			return true
		}
	})
	c := testClient(t, f, nil)
	err := c.Do(context.Background(), "d", func(ctx context.Context, s *Session) error {
		err := s.DeletePolicyRule(ctx, "Periodic")
		var ae *AbsentError
		if !errors.Is(err, ErrAbsent) || !errors.As(err, &ae) || ae.Key != "Periodic" {
			t.Errorf("DeletePolicyRule = %v; want ErrAbsent", err)
		}
		id, existed, err := s.AddTrustedRootCertificate(ctx, der)
		if err != nil || !existed || id != "Intel(r) AMT Certificate: Handle: 3" {
			t.Errorf("AddTrustedRootCertificate = %q, %v, %v", id, existed, err)
		}
		_, err = s.AddMpServer(ctx, MPServerEntry{AccessInfo: "mps.example", InfoFormat: InfoFormatFQDN, Port: 4433, CN: "mps.example", Username: "u", Password: []byte("Secret-pass1")})
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != 400 || he.Body != "" || strings.Contains(err.Error(), "Secret-pass1") {
			t.Errorf("AddMpServer = %v; want a bare HTTP 400", err)
		}
		if _, err := s.AddMpServer(ctx, MPServerEntry{AccessInfo: "mps.example", InfoFormat: InfoFormatFQDN, Port: 4433, Username: "u", Password: []byte("a-password-of-32-characters-long")}); err == nil || strings.Contains(err.Error(), "32-char") {
			t.Errorf("AddMpServer with a long password = %v; want a refusal without the password", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range f.requests() {
		if strings.Contains(r.Body, "a-password-of-32") {
			t.Error("the over-long password was sent")
		}
	}
}

func TestFirmwareVersion(t *testing.T) {
	for _, tc := range []struct {
		in     string
		ma, mi int
		ok     bool
	}{
		{"Intel(R) Active Management Technology 16.1.25", 16, 1, true},
		{"Intel(R) Active Management Technology 11.8.55", 11, 8, true},
		{"Intel(R) Active Management Technology 11", 0, 0, false},
		{"nginx", 0, 0, false},
		{"", 0, 0, false},
	} {
		ma, mi, ok := FirmwareVersion(tc.in)
		if ma != tc.ma || mi != tc.mi || ok != tc.ok {
			t.Errorf("FirmwareVersion(%q) = %d, %d, %v", tc.in, ma, mi, ok)
		}
	}
}

func TestPeriodicInterval(t *testing.T) {
	if got := PeriodicInterval(25); string(got) != "\x00\x00\x00\x00\x00\x00\x00\x19" {
		t.Errorf("PeriodicInterval(25) = %x", got)
	}
}
