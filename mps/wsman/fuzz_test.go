package wsman

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// envelopeSeeds are answers of the fake device, the shapes the decoders meet.
func envelopeSeeds() [][]byte {
	f := &fakeDevice{realm: "Digest:X", power: 2}
	var seeds [][]byte
	add := func(fr *fakeReq, action, body string) {
		rec := httptest.NewRecorder()
		f.write(rec, 200, fr, action, body)
		seeds = append(seeds, rec.Body.Bytes())
	}
	for _, class := range []string{"AMT_GeneralSettings", "AMT_BootSettingData", "IPS_OptInService", "CIM_BIOSElement", "AMT_AuditLog"} {
		add(&fakeReq{Resource: baseAMT + class, MessageID: "uuid:1"}, actionGet+"Response", f.get(class))
	}
	for _, class := range []string{"CIM_ServiceAvailableToElement", "CIM_SoftwareIdentity", "CIM_PhysicalPackage"} {
		add(&fakeReq{Resource: baseCIM + class, MessageID: "uuid:2"}, actionPull+"Response",
			`<g:PullResponse><g:Items>`+strings.Join(f.instances(class), "")+`</g:Items><g:EndOfSequence/></g:PullResponse>`)
	}
	add(&fakeReq{Resource: resMessageLog}, "x", `<h:GetRecords_OUTPUT><h:IterationIdentifier>2</h:IterationIdentifier><h:NoMoreRecords>true</h:NoMoreRecords><h:RecordArray>AAECAwQFBgcICQoLDA0ODxAREhMU</h:RecordArray><h:ReturnValue>0</h:ReturnValue></h:GetRecords_OUTPUT>`)
	add(&fakeReq{Resource: resPowerManagementService}, "x", `<a:Fault><a:Code><a:Value>a:Sender</a:Value><a:Subcode><a:Value>b:DestinationUnreachable</a:Value></a:Subcode></a:Code><a:Reason><a:Text>x</a:Text></a:Reason><a:Detail><c:FaultDetail>http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI</c:FaultDetail></a:Detail></a:Fault>`)
	return seeds
}

// FuzzDecodeEnvelope: decoding any answer into any of the toolbox's shapes
// never panics, and fails only with ErrMalformed or a *Fault.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range envelopeSeeds() {
		f.Add(s)
	}
	f.Add([]byte(`<a:Envelope xmlns:a="x"><a:Body>` + strings.Repeat("<b>", 40) + `</a:Body></a:Envelope>`))
	lim := DefaultLimits
	lim.MaxTokens = 20_000
	f.Fuzz(func(t *testing.T, b []byte) {
		targets := []struct {
			want string
			out  any
		}{
			{"", nil},
			{"AMT_GeneralSettings", &GeneralSettings{}},
			{"AMT_BootSettingData", &BootSettingData{}},
			{"CIM_BIOSElement", &biosXML{}},
			{"AMT_AuditLog", &auditLogHeaderXML{}},
			{"PullResponse", &pullResponse[associatedPowerService]{}},
			{"PullResponse", &pullResponse[physicalPackageXML]{}},
			{"EnumerateResponse", &enumerateResponse{}},
			{"GetRecords_OUTPUT", &getRecordsOutput{}},
			{"ReadRecords_OUTPUT", &readRecordsOutput{}},
		}
		for _, tg := range targets {
			_, err := lim.decodeEnvelope(b, 200, tg.want, tg.out)
			var fe *Fault
			if err != nil && !errors.Is(err, ErrMalformed) && !errors.As(err, &fe) {
				t.Fatalf("decodeEnvelope(%q) = %v; want ErrMalformed or a Fault", tg.want, err)
			}
			if fe != nil && (len(fe.Reason) > 256 || len(fe.Detail) > 256) {
				t.Fatalf("a fault with %d bytes of reason", len(fe.Reason))
			}
		}
	})
}

// FuzzDecodeChallenge: any WWW-Authenticate value parses or fails without a
// panic, and what parses makes an Authorization header with no control
// characters that carries the challenge's realm and nonce back.
func FuzzDecodeChallenge(f *testing.F) {
	f.Add(`Digest realm="Digest:0123", nonce="abc", stale="false", qop="auth"`)
	f.Add(`Digest realm="a\"b", nonce=xyz, qop="auth,auth-int", opaque="o", algorithm=MD5`)
	f.Add(`Basic realm="x"`)
	f.Add(`Digest realm="x", nonce="n", qop="auth", algorithm=MD5-sess`)
	f.Fuzz(func(t *testing.T, v string) {
		ch, err := parseChallenge([]string{v})
		if err != nil {
			if !errors.Is(err, errNoDigest) {
				t.Fatalf("parseChallenge = %v; want errNoDigest", err)
			}
			return
		}
		d := digest{ch: ch}
		h, err := d.authorization(Credentials{User: "admin", Password: "pw"}, "POST", "/wsman")
		if err != nil {
			t.Fatal(err)
		}
		if !printable(h) {
			t.Fatalf("Authorization %q has control characters", h)
		}
		p, err := parseDigestParamsForTest(strings.TrimPrefix(h, "Digest "))
		if err != nil || p["realm"] != ch.realm || p["nonce"] != ch.nonce || p["opaque"] != ch.opaque {
			t.Fatalf("Authorization %q parsed as %v, %v; want realm %q nonce %q", h, p, err, ch.realm, ch.nonce)
		}
	})
}

// FuzzDecodeEventRecord: any record decodes or fails without a panic; a
// 21-byte one always decodes.
func FuzzDecodeEventRecord(f *testing.F) {
	f.Add([]byte{0x80, 0x96, 0x2d, 0x69, 0, 15, 0x6f, 2, 0x68, 2, 0, 34, 0, 0, 19, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0, 0xAA, 1, 2, 3, 4, 5, 6, 4})
	f.Add([]byte{1, 0, 0, 0, 0, 6})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, skip, err := parseEventRecord(b)
		if (err == nil) != (len(b) == eventRecordLen) {
			t.Fatalf("parseEventRecord of %d bytes: %v", len(b), err)
		}
		if err == nil && !skip && (e.Description == "" || e.EntityName() == "" || e.SeverityName() == "") {
			t.Fatalf("event %+v has no description", e)
		}
	})
}

// FuzzDecodeAuditRecord: any record decodes or fails without a panic, and
// what decodes re-encodes (for a digest or local initiator) to the input.
func FuzzDecodeAuditRecord(f *testing.F) {
	f.Add([]byte{0, 17, 0, 3, 0, 5, 'a', 'd', 'm', 'i', 'n', 0x69, 0x2d, 0x96, 0x80, 5, 3, '1', '.', '2', 0})
	f.Add([]byte{0, 30, 0, 0, 2, 0x69, 0x2d, 0x96, 0x80, 0, 0, 2, 0, 2})
	f.Add([]byte{0, 16, 0, 2, 1, 0, 0, 0, 0, 12, 1, 1, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 19, 0, 0, 3, 0, 0, 0, 0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 9, 0, 16, 0, 1, 0, 0, 0, 10})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseAuditRecord(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parseAuditRecord = %v", err)
			}
			return
		}
		if r.Description == "" {
			t.Fatalf("record %+v has no description", r)
		}
		if r.InitiatorType == 2 || r.InitiatorType == 3 {
			var e []byte
			e = append(e, b[:5]...)
			e = append(e, b[5:11]...) // time, location, address length
			e = append(e, b[11:11+int(b[10])]...)
			e = append(e, byte(len(r.Extended)))
			e = append(e, r.Extended...)
			if !bytes.Equal(e, b[:len(e)]) {
				t.Fatalf("re-encoded % x; decoded from % x", e, b)
			}
		}
	})
}

// FuzzDecodeResponse: any bytes as the device's HTTP answer give a response
// or an error, never a panic; the body never exceeds the limit.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nbody"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newConn(&scriptConn{r: bytes.NewReader(b)})
		resp, err := c.roundTrip(context.Background(), "amt:16992", "", []byte("<x/>"), 1<<10)
		var ie *ioError
		switch {
		case err == nil:
			if len(resp.body) > 1<<10 {
				t.Fatalf("a body of %d bytes", len(resp.body))
			}
		case !errors.Is(err, ErrMalformed) && !errors.As(err, &ie):
			t.Fatalf("roundTrip = %v", err)
		}
	})
}

// scriptConn is a net.Conn whose reads come from r and whose writes vanish.
type scriptConn struct {
	r io.Reader
}

func (c *scriptConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
