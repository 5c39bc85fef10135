package enrol_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/enrol"
	"github.com/presence-mps/presence/mps/wsman"
)

var rootDER = []byte("presence root DER bytes")

func fakeClient(t *testing.T, f *fakeAMT, pass string) *wsman.Client {
	t.Helper()
	c, err := wsman.New(wsman.Config{
		Dial: lanDial(f.addr()),
		Credentials: func(context.Context, string) (wsman.Credentials, error) {
			return wsman.Credentials{User: fakeUser, Password: pass}, nil
		},
		Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const ciraPass = "Cira-P@ss1"

func fakeEnroller(t *testing.T, f *fakeAMT, c *wsman.Client) (*enrol.Enroller, *[]string) {
	var order []string
	f.with(func(f *fakeAMT) { f.externalLogs = &order })
	return &enrol.Enroller{
		Client: c, Device: "192.0.2.7", Root: rootDER,
		Primary: enrol.Entry{Address: "MPS.Example.", Port: 4433, CN: "mps.example"},
		Account: func(_ context.Context, guid string) (string, []byte, error) {
			f.with(func(*fakeAMT) { order = append(order, "Account "+guid) })
			return enrol.NewUser(guid), []byte(ciraPass), nil
		},
	}, &order
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestEnrolSequence: the order of enrol.md §9, the account before the
// entry, the shapes AMT expects, and what is recorded.
func TestEnrolSequence(t *testing.T) {
	f := newFakeAMT(t)
	en, order := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	var steps []enrol.Step
	en.Progress = func(s enrol.Step) { steps = append(steps, s) }
	res, err := en.Enrol(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	sap := sapPfx + "1"
	want := []string{
		"Account " + wantGUID, // persisted before the device is given it (§9 step 2)
		"AddTrustedRootCertificate",
		"AddMpServer mps.example",
		"AddRemoteAccessPolicyRule 2 [" + sap + "]",
		"AddRemoteAccessPolicyRule 0 [" + sap + "]",
		"Put AppliesToMPS Periodic " + sap + " 2 0",
		"Put AppliesToMPS User Initiated " + sap + " 2 0",
		"RequestStateChange 32771",
	}
	got := *order
	if len(got) != len(want)+1 || !slices.Equal(got[:len(want)], want) ||
		!regexp.MustCompile(`^Put EnvironmentDetection \["[0-9a-f]{16}\.presence\.invalid"\]$`).MatchString(got[len(want)]) {
		t.Fatalf("writes:\n%s\nwant:\n%s\n+ environment detection last", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.GUID != wantGUID || res.ControlMode != "CCM" || res.Firmware != "16.1" || !slices.Equal(res.SAPs, []string{sap}) ||
		!slices.Equal(res.Rules, []string{"Periodic", "User Initiated"}) || res.UserInitiatedBefore != 32768 || !res.PreviousKnown {
		t.Errorf("result = %+v", res)
	}
	f.with(func(f *fakeAMT) {
		s := f.saps[1]
		if s.access != "mps.example" || s.format != 201 || s.cn != "mps.example" || s.port != 4433 || s.user != enrol.NewUser(wantGUID) || s.pass != ciraPass {
			t.Errorf("SAP = %+v", s)
		}
		if r := f.rules["Periodic"]; r.ext != "AAAAAAAAABk=" || r.lifetime != 0 {
			t.Errorf("periodic = %+v", r)
		}
		if r := f.rules["User Initiated"]; r.lifetime != 300 || r.ext != "" {
			t.Errorf("user initiated = %+v", r)
		}
	})
	for _, s := range steps {
		if s.Sentence == "" || strings.Contains(s.Sentence, ciraPass) {
			t.Errorf("step %+v", s)
		}
	}
	if steps[len(steps)-1].Name != enrol.StepEnvironment || steps[len(steps)-1].State != enrol.Done {
		t.Errorf("last step %+v", steps[len(steps)-1])
	}
}

// TestEnrolShapes: the raw XML of AddRemoteAccessPolicyRule (MpServer EPR
// children directly, Name only) and of the AppliesToMPS Put (header
// selectors wrapped in EndpointReference, body properties not).
func TestEnrolShapes(t *testing.T) {
	f := newFakeAMT(t)
	en, _ := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	en.Backup = &enrol.Entry{Address: "192.0.2.50", Port: 4433, CN: "peer.example"}
	if _, err := en.Enrol(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var rule, put string
	f.with(func(f *fakeAMT) {
		for _, r := range f.raw {
			if strings.Contains(r, "AddRemoteAccessPolicyRule_INPUT") && rule == "" {
				rule = r
			}
			if strings.Contains(r, "AMT_RemoteAccessPolicyAppliesToMPS</w:ResourceURI>") && put == "" {
				put = r
			}
		}
		// The backup is the second server, order 1.
		if got := sapsOf(f.rules["Periodic"]); len(got) != 2 || f.saps[2].access != "192.0.2.50" || f.saps[2].format != 3 || got[1] != sapPfx+"2" {
			t.Errorf("periodic servers %v", got)
		}
		for _, a := range f.rules["Periodic"].servers {
			if a.mpsType != 2 || (a.sap == sapPfx+"2") != (a.order == 1) {
				t.Errorf("association %+v", a)
			}
		}
	})
	if !regexp.MustCompile(`<h:MpServer><a:Address>[^<]+</a:Address><a:ReferenceParameters><w:ResourceURI>[^<]+AMT_ManagementPresenceRemoteSAP</w:ResourceURI><w:SelectorSet><w:Selector Name="Name">Intel\(r\) AMT:Management Presence Server 1</w:Selector></w:SelectorSet></a:ReferenceParameters></h:MpServer><h:MpServer>`).MatchString(rule) {
		t.Errorf("AddRemoteAccessPolicyRule:\n%s", rule)
	}
	if !strings.Contains(rule, "<h:ExtendedData>AAAAAAAAABk=</h:ExtendedData>") {
		t.Errorf("ExtendedData in %s", rule)
	}
	if !regexp.MustCompile(`<w:Selector Name="ManagedElement"><a:EndpointReference><a:Address>`).MatchString(put) ||
		!regexp.MustCompile(`<w:Selector Name="PolicySet"><a:EndpointReference>.*<w:Selector Name="PolicyRuleName">`).MatchString(put) ||
		!strings.Contains(put, "<h:ManagedElement><a:Address>") || !strings.Contains(put, "<h:MpsType>2</h:MpsType>") {
		t.Errorf("AppliesToMPS Put:\n%s", put)
	}
}

// TestEnrolIdempotent: a second run writes nothing and leaves one
// Presence entry and one rule per trigger.
func TestEnrolIdempotent(t *testing.T) {
	f := newFakeAMT(t)
	en, _ := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	first, err := en.Enrol(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	n := len(f.writes())
	res, err := en.Enrol(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if w := f.writes(); len(w) != n {
		t.Errorf("second run wrote %q", w[n:])
	}
	if len(res.Writes) != 0 || res.PreviousKnown || res.DetectionString != first.DetectionString {
		t.Errorf("second result = %+v", res)
	}
	for _, s := range res.Steps {
		if s.State == enrol.Done && s.Name != enrol.StepRead && s.Name != enrol.StepAccount {
			t.Errorf("step %+v; want skipped", s)
		}
	}
	f.with(func(f *fakeAMT) {
		if len(f.saps) != 1 || len(f.rules) != 2 || len(f.certs) != 1 {
			t.Errorf("%d SAPs, %d rules, %d certs", len(f.saps), len(f.rules), len(f.certs))
		}
	})
}

// TestEnrolReplacesOlderPresenceEntry: Presence's older entry (same
// address, port and format, another CN) goes with its rules first; another
// MPS's entry and its Alert rule stay, an Alert rule naming both is
// re-added with the other only.
func TestEnrolReplacesOlderPresenceEntry(t *testing.T) {
	f := newFakeAMT(t)
	var old, other string
	f.with(func(f *fakeAMT) {
		old = f.addSAP(&fakeSAP{access: "mps.example", cn: "old-cn", format: 201, port: 4433})
		other = f.addSAP(&fakeSAP{access: "other.example", cn: "other.example", format: 201, port: 4433})
		f.rules["Periodic"] = &fakeRule{trigger: 2, ext: "AAAAAAAAAAo=", servers: []fakeAssoc{{sap: old}}}
		f.rules["Alert"] = &fakeRule{trigger: 1, servers: []fakeAssoc{{sap: old}, {sap: other, order: 1}}}
	})
	en, _ := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	if _, err := en.Enrol(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w := f.writes()
	iRule, iSAP := slices.Index(w, "Delete AMT_RemoteAccessPolicyRule Periodic"), slices.Index(w, "Delete AMT_ManagementPresenceRemoteSAP "+old)
	if iRule < 0 || iSAP < 0 || iRule > iSAP {
		t.Errorf("writes %q; want the old rule deleted, then the old entry", w)
	}
	if !slices.Contains(w, "AddRemoteAccessPolicyRule 1 ["+other+"]") {
		t.Errorf("writes %q; want the Alert rule re-added with the other MPS only", w)
	}
	f.with(func(f *fakeAMT) {
		if len(f.saps) != 2 || f.saps[1] == nil || f.saps[1].access != "other.example" {
			t.Errorf("SAPs %v", f.saps)
		}
		if got := sapsOf(f.rules["Alert"]); !slices.Equal(got, []string{other}) {
			t.Errorf("Alert servers %v", got)
		}
		if got := sapsOf(f.rules["Periodic"]); len(got) != 1 || got[0] == old || got[0] == other {
			t.Errorf("Periodic servers %v", got)
		}
	})
}

// TestEnrolForeignRule: another MPS's Periodic rule stops enrolment
// without Replace, before any write; with Replace it goes, with the entry
// it leaves unused.
func TestEnrolForeignRule(t *testing.T) {
	f := newFakeAMT(t)
	var other string
	f.with(func(f *fakeAMT) {
		other = f.addSAP(&fakeSAP{access: "rps.example", cn: "rps.example", format: 201, port: 4433})
		f.rules["Periodic"] = &fakeRule{trigger: 2, ext: "AAAAAAAAABk=", servers: []fakeAssoc{{sap: other}}}
	})
	en, _ := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	_, err := en.Enrol(ctxT(t))
	if !errors.Is(err, enrol.ErrForeignRule) || !strings.Contains(err.Error(), "--replace") || !strings.Contains(err.Error(), "rps.example:4433") || !strings.Contains(err.Error(), "Nothing was written") {
		t.Fatalf("Enrol = %v", err)
	}
	if w := f.writes(); len(w) != 0 {
		t.Fatalf("refused enrolment wrote %q", w)
	}
	en.Replace = true
	if _, err := en.Enrol(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	f.with(func(f *fakeAMT) {
		if len(f.saps) != 1 || f.saps[0] != nil {
			t.Errorf("SAPs %v; want the other MPS's gone", f.saps)
		}
	})
}

// TestEnrolForeignEntryKept: another MPS's entry without a rule of ours
// stays.
func TestEnrolForeignEntryKept(t *testing.T) {
	f := newFakeAMT(t)
	f.with(func(f *fakeAMT) {
		f.addSAP(&fakeSAP{access: "other.example", cn: "other.example", format: 201, port: 4433})
	})
	en, _ := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	if _, err := en.Enrol(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	f.with(func(f *fakeAMT) {
		if len(f.saps) != 2 || f.saps[0].access != "other.example" {
			t.Errorf("SAPs %v", f.saps)
		}
	})
}

// TestEnrolFailHalfway: the error names the step, what was written and
// how to finish or undo.
func TestEnrolFailHalfway(t *testing.T) {
	f := newFakeAMT(t)
	f.with(func(f *fakeAMT) { f.rv["RequestStateChange"] = 4099 })
	en, _ := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	var last enrol.Step
	en.Progress = func(s enrol.Step) { last = s }
	_, err := en.Enrol(ctxT(t))
	var ee *enrol.Error
	var se *wsman.StatusError
	if !errors.As(err, &ee) || ee.Step != enrol.StepUIC || !errors.As(err, &se) || se.Value != 4099 {
		t.Fatalf("Enrol = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"busy (4099)", "the root certificate (Intel(r) AMT Certificate: Handle: 0)", `the MPS entry "Intel(r) AMT:Management Presence Server 1"`, `the rule "Periodic"`,
		"presence enrol 192.0.2.7", "presence unenrol 192.0.2.7"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if last.State != enrol.Failed || last.Name != enrol.StepUIC {
		t.Errorf("last step %+v", last)
	}
}

// TestEnrolWrongPassword: the client's typed error at once, one failed
// login on the device, nothing more.
func TestEnrolWrongPassword(t *testing.T) {
	f := newFakeAMT(t)
	en, _ := fakeEnroller(t, f, fakeClient(t, f, "wrong"))
	_, err := en.Enrol(ctxT(t))
	var ce *wsman.CredentialsError
	if !errors.As(err, &ce) || !errors.Is(err, wsman.ErrCredentials) || strings.Contains(err.Error(), "wrong\"") {
		t.Fatalf("Enrol = %v; want the credentials error", err)
	}
	_, err = en.Enrol(ctxT(t)) // refused by the client without asking
	if !errors.As(err, &ce) || !ce.Refused {
		t.Fatalf("second Enrol = %v; want refused", err)
	}
	f.with(func(f *fakeAMT) {
		if f.failedLogins != 1 || f.requests != 2 {
			t.Errorf("failed logins %d, requests %d; want 1 and 2 (challenge, one try)", f.failedLogins, f.requests)
		}
	})
}

func TestEnrolUnprovisioned(t *testing.T) {
	f := newFakeAMT(t)
	f.with(func(f *fakeAMT) { f.provState = 0 })
	en, _ := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	_, err := en.Enrol(ctxT(t))
	if !errors.Is(err, enrol.ErrNotProvisioned) || !strings.Contains(err.Error(), "not provisioned: activate it in CCM or ACM first") {
		t.Fatalf("Enrol = %v", err)
	}
	if len(f.writes()) != 0 {
		t.Error("wrote")
	}
}

func TestEnrolNoCIRA(t *testing.T) {
	f := newFakeAMT(t)
	f.with(func(f *fakeAMT) { f.noUIC = true })
	en, _ := fakeEnroller(t, f, fakeClient(t, f, fakePass))
	if _, err := en.Enrol(ctxT(t)); !errors.Is(err, enrol.ErrNoCIRA) || !strings.Contains(err.Error(), "does not support CIRA") {
		t.Fatalf("Enrol = %v", err)
	}
}

// TestUnenrolOrder: environment detection first, then the rules (one also
// naming another MPS re-added with that one only), the entry, the root
// (Presence's only), the user-initiated state; a second run writes
// nothing.
func TestUnenrolOrder(t *testing.T) {
	f := newFakeAMT(t)
	c := fakeClient(t, f, fakePass)
	en, _ := fakeEnroller(t, f, c)
	res, err := en.Enrol(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	var other string
	f.with(func(f *fakeAMT) {
		f.certs[99] = []byte("another root")
		other = f.addSAP(&fakeSAP{access: "other.example", cn: "other.example", format: 201, port: 4433})
		f.rules["Alert"] = &fakeRule{trigger: 1, servers: []fakeAssoc{{sap: res.SAPs[0]}, {sap: other, order: 1}}}
	})
	n := len(f.writes())
	_, err = en.Unenrol(ctxT(t), enrol.UnenrolOptions{DetectionStrings: []string{"office.example"}, UserInitiated: res.UserInitiatedBefore})
	if err != nil {
		t.Fatal(err)
	}
	w := f.writes()[n:]
	if len(w) != 8 || w[0] != `Put EnvironmentDetection ["office.example"]` ||
		!slices.Contains(w[1:5], "Delete AMT_RemoteAccessPolicyRule Periodic") || !slices.Contains(w[1:5], "Delete AMT_RemoteAccessPolicyRule User Initiated") ||
		!slices.Contains(w[1:5], "Delete AMT_RemoteAccessPolicyRule Alert") || !slices.Contains(w[1:6], "AddRemoteAccessPolicyRule 1 ["+other+"]") ||
		w[5] != "Delete AMT_ManagementPresenceRemoteSAP "+res.SAPs[0] || w[6] != "Delete AMT_PublicKeyCertificate "+res.RootID || w[7] != "RequestStateChange 32768" {
		t.Fatalf("removal writes:\n%s", strings.Join(w, "\n"))
	}
	f.with(func(f *fakeAMT) {
		if len(f.certs) != 1 || f.certs[99] == nil || len(f.saps) != 1 || !slices.Equal(sapsOf(f.rules["Alert"]), []string{other}) {
			t.Errorf("after removal: certs %d saps %v rules %v", len(f.certs), f.saps, f.rules)
		}
	})
	n = len(f.writes())
	if _, err := en.Unenrol(ctxT(t), enrol.UnenrolOptions{DetectionStrings: []string{"office.example"}, UserInitiated: 32768}); err != nil {
		t.Fatal(err)
	}
	if w := f.writes(); len(w) != n {
		t.Errorf("second removal wrote %q", w[n:])
	}
}

func TestNewPassword(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		p := enrol.NewPassword()
		if len(p) != enrol.PasswordLen {
			t.Fatalf("len %d", len(p))
		}
		var u, l, d, o bool
		for _, c := range p {
			switch {
			case 'A' <= c && c <= 'Z':
				u = true
			case 'a' <= c && c <= 'z':
				l = true
			case '0' <= c && c <= '9':
				d = true
			case strings.IndexByte("!@#$%^*()", c) >= 0:
				o = true
			default:
				t.Fatalf("%q has %q", p, c)
			}
		}
		if !u || !l || !d || !o {
			t.Fatalf("%q lacks a class", p)
		}
		if seen[string(p)] {
			t.Fatalf("%q twice", p)
		}
		seen[string(p)] = true
	}
}

func TestNewUser(t *testing.T) {
	a := enrol.NewUser("00112233-4455-6677-8899-AABBCCDDEEFF")
	if a != enrol.NewUser("00112233445566778899aabbccddeeff") {
		t.Error("dashes or case change the name")
	}
	if !regexp.MustCompile(`^[a-z0-9]{1,16}$`).MatchString(a) {
		t.Errorf("NewUser = %q", a)
	}
	if a == enrol.NewUser("00112233-4455-6677-8899-aabbccddeef0") {
		t.Error("two GUIDs, one name")
	}
}

func TestAccessInfo(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		format  int
	}{
		{"192.0.2.1", "192.0.2.1", 3},
		{"::ffff:192.0.2.1", "192.0.2.1", 3},
		{"2001:db8::1", "2001:db8::1", 4},
		{"[2001:db8::1]", "2001:db8::1", 4},
		{"MPS.Example.ORG.", "mps.example.org", 201},
	} {
		got, f, err := enrol.AccessInfo(tc.in)
		if err != nil || got != tc.out || f != tc.format {
			t.Errorf("AccessInfo(%q) = %q, %d, %v", tc.in, got, f, err)
		}
	}
	for _, bad := range []string{"", "a..b", "-a.example", "a b", "fe80::1%eth0", "x_y.example"} {
		if _, _, err := enrol.AccessInfo(bad); err == nil {
			t.Errorf("AccessInfo(%q) accepted", bad)
		}
	}
}
