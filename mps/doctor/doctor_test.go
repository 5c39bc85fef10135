package doctor

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/tunnel"
)

const guid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

func TestRecordAggregatesAndReports(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := New(Options{})
	d.Record(Finding{Class: WrongPassword, Time: t0, Device: guid, User: "cira", Remote: "10.0.0.1:1000"})
	d.Record(Finding{Class: WrongPassword, Time: t0.Add(time.Minute), Device: guid, User: "cira", Remote: "10.0.0.1:1001"})
	d.Record(Finding{Class: WrongPassword, Time: t0.Add(-time.Minute), Device: guid, Remote: "10.0.0.1:999"})
	// Before the GUID is known, findings are kept per host, not per port.
	d.Record(Finding{Class: LegacyTLS, Time: t0, Remote: "10.0.0.2:5", Hello: tunnel.Hello{MaxVersion: tls.VersionTLS10, Offered: 2, Suites: tunnel.SuiteRSACBC}})
	d.Record(Finding{Class: LegacyTLS, Time: t0.Add(2 * time.Minute), Remote: "10.0.0.2:6"})
	d.Record(Finding{}) // no class: ignored

	r := d.Report(time.Time{}, "")
	if len(r) != 2 {
		t.Fatalf("report %+v", r)
	}
	lt, wp := r[0], r[1] // sorted by class
	if lt.Class != LegacyTLS || lt.Count != 2 || lt.Remote != "10.0.0.2:6" || lt.TLS != "offers up to TLS 1.0 with 2 suites (RSA-CBC)" ||
		!strings.Contains(lt.Fix, "10.0.0.2") {
		t.Errorf("legacy entry %+v", lt)
	}
	if wp.Class != WrongPassword || wp.Count != 3 || !wp.First.Equal(t0.Add(-time.Minute)) || !wp.Last.Equal(t0.Add(time.Minute)) ||
		wp.User != "cira" || wp.Remote != "10.0.0.1:999" || !strings.Contains(wp.Fix, `"cira"`) {
		t.Errorf("password entry %+v", wp)
	}
	if got := d.Report(t0.Add(90*time.Second), ""); len(got) != 1 || got[0].Class != LegacyTLS {
		t.Errorf("since: %+v", got)
	}
	if got := d.Report(time.Time{}, strings.ToUpper(strings.ReplaceAll(guid, "-", ""))); len(got) != 1 || got[0].Class != WrongPassword {
		t.Errorf("one device: %+v", got)
	}
	b, err := json.Marshal(r[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{`"class":"wrong-password"`, `"device":"` + guid + `"`, `"count":3`, `"first":`, `"last":`, `"remote":`, `"fix":`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("JSON %s lacks %s", b, f)
		}
	}
}

func TestUpdatedWakesOnRecord(t *testing.T) {
	d := New(Options{})
	ch := d.Updated()
	select {
	case <-ch:
		t.Fatal("closed before a Record")
	default:
	}
	d.Record(Finding{Class: ProtocolError, Remote: "10.0.0.9:1"})
	<-ch // closed
}

func TestMemoryBoundedOldestEvicted(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	d := New(Options{MaxKeys: 100})
	for i := range 1000 {
		d.Record(Finding{Class: ProtocolError, Time: t0.Add(time.Duration(i) * time.Second), Remote: fmt.Sprintf("10.0.%d.%d:1", i/256, i%256)})
	}
	if n := d.Len(); n > 100 {
		t.Fatalf("%d entries; cap 100", n)
	}
	r := d.Report(time.Time{}, "")
	newest := false
	for _, e := range r {
		if e.Last.Before(t0.Add(800 * time.Second)) {
			t.Errorf("an old entry survived: %+v", e)
		}
		newest = newest || e.Remote == "10.0.3.231:1"
	}
	if !newest {
		t.Error("the newest entry was evicted")
	}
}

type adder struct {
	mu  sync.Mutex
	evs []history.TunnelEvent
}

func (a *adder) Add(ev history.TunnelEvent) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, ev)
	return true
}

func (a *adder) take() []history.TunnelEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	evs := a.evs
	a.evs = nil
	return evs
}

// TestFlushAggregatesAndBoundsWrites: a storm of failed handshakes
// becomes one event per entry, at most MaxWrites per flush.
func TestFlushAggregatesAndBoundsWrites(t *testing.T) {
	h := &adder{}
	d := New(Options{History: h, MaxWrites: 2, FlushInterval: time.Hour})
	defer d.Close()
	for range 500 {
		d.Record(Finding{Class: WrongPassword, Device: guid, User: "cira", Remote: "10.0.0.1:1"})
	}
	d.Record(Finding{Class: ProtocolError, Remote: "10.0.0.2:1"})
	d.Record(Finding{Class: ProtocolError, Remote: "10.0.0.3:1"})
	d.Flush()
	evs := h.take()
	if len(evs) != 2 || evs[0].Kind != history.KindDoctor || evs[0].Reason != string(WrongPassword) ||
		!strings.HasPrefix(evs[0].Detail, "500 times") || evs[0].Device != guid || evs[0].User != "cira" {
		t.Fatalf("first flush %+v", evs)
	}
	d.Flush()
	if evs := h.take(); len(evs) != 1 || evs[0].Reason != string(ProtocolError) {
		t.Fatalf("second flush %+v", evs)
	}
	d.Flush()
	if evs := h.take(); len(evs) != 0 {
		t.Fatalf("nothing changed, yet %+v", evs)
	}
	d.Record(Finding{Class: WrongPassword, Device: guid})
	d.Close() // flushes
	if evs := h.take(); len(evs) != 1 || !strings.HasPrefix(evs[0].Detail, "1 times") {
		t.Fatalf("at Close %+v", evs)
	}
}

func TestFromError(t *testing.T) {
	u := apf.UUID{1, 2, 3}
	hs := func(f tunnel.HandshakeFailure) *tunnel.HandshakeFailure { return &f }
	legacyHello := tunnel.Hello{MaxVersion: tls.VersionTLS10, Suites: tunnel.SuiteRSACBC, Offered: 1}
	remoteAlert := &net.OpError{Op: "remote error", Err: errors.New("tls: unknown certificate authority")}
	for _, tt := range []struct {
		name   string
		err    error
		class  Class
		device string
	}{
		{"legacy hello", &tunnel.CloseError{Reason: tunnel.ReasonTLSError, Err: errors.New("tls: client offered only unsupported versions"), Handshake: hs(tunnel.HandshakeFailure{Hello: legacyHello})}, LegacyTLS, ""},
		{"legacy refused by policy", &tunnel.CloseError{Reason: tunnel.ReasonLegacyTLS, Handshake: hs(tunnel.HandshakeFailure{Device: u, TLSVersion: tls.VersionTLS10})}, LegacyTLS, u.String()},
		{"alert", &tunnel.CloseError{Reason: tunnel.ReasonTLSError, Err: remoteAlert}, CertRejected, ""},
		{"no cipher", &tunnel.CloseError{Reason: tunnel.ReasonTLSError, Err: errors.New("tls: no cipher suite supported by both client and server")}, NoSharedCipher, ""},
		{"not TLS", &tunnel.CloseError{Reason: tunnel.ReasonTLSError, Err: tls.RecordHeaderError{Msg: "x", RecordHeader: [5]byte{'G', 'E', 'T', ' ', '/'}}}, ProtocolError, ""},
		{"wrong password", &tunnel.CloseError{Reason: tunnel.ReasonAuthFailed, Handshake: hs(tunnel.HandshakeFailure{Device: u, User: "cira", Auth: tunnel.AuthWrongPassword})}, WrongPassword, u.String()},
		{"unknown user", &tunnel.CloseError{Reason: tunnel.ReasonAuthFailed, Handshake: hs(tunnel.HandshakeFailure{Device: u, User: "x", Auth: tunnel.AuthUnknownUser})}, UnknownUser, u.String()},
		{"timeout", &tunnel.CloseError{Reason: tunnel.ReasonHandshakeTimeout, Handshake: hs(tunnel.HandshakeFailure{})}, HandshakeTimeout, ""},
		{"trickle", &tunnel.CloseError{Reason: tunnel.ReasonHandshakeTimeout, Handshake: hs(tunnel.HandshakeFailure{Device: u, Trickling: true})}, Trickling, u.String()},
		{"garbage", &tunnel.CloseError{Reason: tunnel.ReasonProtocolError, Err: &apf.ParseError{Msg: "bad"}}, ProtocolError, ""},
		{"hung up after hello", &tunnel.CloseError{Reason: tunnel.ReasonDeviceClosed, Handshake: hs(tunnel.HandshakeFailure{Hello: tunnel.Hello{MaxVersion: tls.VersionTLS12}})}, TLSFailed, ""},
		{"port check", &tunnel.CloseError{Reason: tunnel.ReasonDeviceClosed, Handshake: hs(tunnel.HandshakeFailure{})}, ClosedEarly, ""},
	} {
		f, ok := FromError(tt.err, "10.1.1.1:5")
		if !ok || f.Class != tt.class || f.Device != tt.device || f.Remote != "10.1.1.1:5" {
			t.Errorf("%s: %+v %v; want %s for %q", tt.name, f, ok, tt.class, tt.device)
		}
	}
	if _, ok := FromError(&tunnel.CloseError{Reason: tunnel.ReasonShutdown}, "x:1"); ok {
		t.Error("shutdown classified as a device problem")
	}
	if f, _ := FromError(&tunnel.CloseError{Reason: tunnel.ReasonTLSError, Err: remoteAlert}, ""); !strings.Contains(f.Detail, "unknown certificate authority") {
		t.Errorf("alert detail %q", f.Detail)
	}
}

func selfSigned(t testing.TB, bits int, cn string, ns bool) tls.Certificate {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	if ns {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidNSCertType, Value: []byte{3, 2, 6, 0x40}}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func TestCheckCertificate(t *testing.T) {
	d := New(Options{})
	bad := selfSigned(t, 1024, "", false)
	p := d.CheckCertificate(&tls.Config{Certificates: []tls.Certificate{bad}})
	if len(p) != 3 || !strings.Contains(strings.Join(p, ";"), "1024 bits") {
		t.Errorf("problems %q", p)
	}
	if r := d.Report(time.Time{}, ""); len(r) != 1 || r[0].Class != CertUnsuitable || !strings.Contains(r[0].Detail, "nsCertType") {
		t.Errorf("report %+v", r)
	}
	good := selfSigned(t, 2048, "mps.example", true)
	if p := New(Options{}).CheckCertificate(&tls.Config{Certificates: []tls.Certificate{good}}); len(p) != 0 {
		t.Errorf("a suitable certificate: %q", p)
	}
}
