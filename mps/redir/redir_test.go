package redir

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
)

// The digest vector of redirection.md §5 (6).
const (
	vecUser     = "admin"
	vecPassword = "P@ssw0rd"
	vecRealm    = "Digest:F3EB554784E729164447A89F60B641C5"
	vecNonce    = "Ym9ndXNub25jZTAxMjM0NTY3ODlhYmNk"
	vecCNonce   = "232555f36a0bb24f621267ffeed5c06e"
	vecNC       = "00000002"
	vecResponse = "e925b529e0947751c5e97973f0b53b6d"
	// vecResponse69 is MD5(HA1:nonce:HA2) of the same values, by Python's
	// hashlib.
	vecResponse69 = "1cefefb8c3be48ce976f78571b719ec7"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

var vecDigest = Digest{User: vecUser, Realm: vecRealm, Nonce: vecNonce, URI: DigestURI,
	CNonce: vecCNonce, NC: vecNC, Response: vecResponse, QOP: QOPAuth}

// vectors are the wire vectors of redirection.md §5 (their numbers in the
// names) and the messages amtsim sends, with what they decode to.
var vectors = []struct {
	name string
	hex  string
	msg  Message
}{
	{"1 start SOL", "10 00 00 00 53 4f 4c 20", &StartSession{Kind: KindSOL}},
	{"1 start KVM", "10 01 00 00 4b 56 4d 52", &StartSession{Flag: 1, Kind: KindKVM}},
	{"1 start IDER", "10 00 00 00 49 44 45 52", &StartSession{Kind: KindIDER}},
	{"2 start reply AMT 11.8", "11 00 00 00 01 00 0b 08 57 01 00 00 00",
		&StartSessionReply{ProtocolMajor: 1, FWMajor: 11, FWMinor: 8, OEM: 343, OEMData: []byte{}}},
	{"2 start reply AMT 12.0", "11 00 00 00 01 00 0c 00 57 01 00 00 00",
		&StartSessionReply{ProtocolMajor: 1, FWMajor: 12, OEM: 343, OEMData: []byte{}}},
	{"start reply with OEM data", "11 00 00 00 01 00 0c 00 57 01 00 00 03 61 62 63",
		&StartSessionReply{ProtocolMajor: 1, FWMajor: 12, OEM: 343, OEMData: []byte("abc")}},
	{"start reply busy", "11 02 00 00 01 00 0b 08 57 01 00 00 00",
		&StartSessionReply{Status: StatusBusy, ProtocolMajor: 1, FWMajor: 11, FWMinor: 8, OEM: 343, OEMData: []byte{}}},
	{"3 query", "13 00 00 00 00 00 00 00 00", &Authenticate{Type: AuthQuery, Data: []byte{}}},
	{"3 query reply AMT 12", "14 00 00 00 00 01 00 00 00 04", &AuthenticateReply{Type: AuthQuery, Data: []byte{4}}},
	{"query reply amtsim", "14 00 00 00 00 03 00 00 00 04 03 01", &AuthenticateReply{Type: AuthQuery, Data: []byte{4, 3, 1}}},
	{"4 password", "13 00 00 00 01 0f 00 00 00 05 61 64 6d 69 6e 08 50 40 73 73 77 30 72 64",
		&Authenticate{Type: AuthPassword, Data: PasswordAuth{User: vecUser, Password: []byte(vecPassword)}.Append(nil)}},
	{"4 password accepted", "14 00 00 00 01 00 00 00 00", &AuthenticateReply{Type: AuthPassword, Data: []byte{}}},
	{"empty Kerberos ticket", "13 00 00 00 02 00 00 00 00", &Authenticate{Type: AuthKerberos, Data: []byte{}}},
	{"5 digest step 1", "13 00 00 00 04 20 00 00 00 05 61 64 6d 69 6e 00 00 13 2f 52 65 64 69 72 65 63 74 69 6f 6e 53 65 72 76 69 63 65 00 00 00 00",
		&Authenticate{Type: AuthDigest, Data: Digest{User: vecUser, URI: DigestURI}.Append(nil, AuthDigest)}},
	{"6 digest challenge", "14 01 00 00 04 4e 00 00 00" + hex.EncodeToString(Challenge{vecRealm, vecNonce, QOPAuth}.Append(nil)),
		&AuthenticateReply{Status: StatusAuthFailed, Type: AuthDigest, Data: Challenge{vecRealm, vecNonce, QOPAuth}.Append(nil)}},
	{"6 digest response", "13 00 00 00 04 b3 00 00 00" + hex.EncodeToString(vecDigest.Append(nil, AuthDigest)),
		&Authenticate{Type: AuthDigest, Data: vecDigest.Append(nil, AuthDigest)}},
	{"digest accepted", "14 00 00 00 04 00 00 00 00", &AuthenticateReply{Type: AuthDigest, Data: []byte{}}},
	{"7 SOL start amtterm", "20 00 00 00 00 00 00 00 e8 03 64 00 00 00 10 27 00 00 88 13 00 00 00 00",
		&SOLStart{Settings: SOLSettings{1000, 100, 0, 10000, 0, 5000}}},
	{"8 SOL start MeshCommander", "20 00 00 00 01 00 00 00 10 27 64 00 00 00 10 27 64 00 00 00 00 00 00 00",
		&SOLStart{SOLHeader: SOLHeader{Seq: 1}, Settings: SOLSettings{10000, 100, 0, 10000, 100, 0}}},
	{"8 SOL open", "27 00 00 00 02 00 00 00 00 00 1b 00 00 00", &SOLOpen{SOLHeader: SOLHeader{Seq: 2}, Data: [6]byte{2: 0x1b}}},
	{"SOL start reply amtsim", "21 00 00 00 01 00 00 00 e8 03 64 00 00 00 10 27 00 00 88 13 00 00 00",
		&SOLStartReply{SOLHeader: SOLHeader{Seq: 1}, Settings: SOLSettings{1000, 100, 0, 10000, 0, 5000}}},
	{"9 SOL data from host", "2a 00 00 00 02 00 00 00 05 00 48 65 6c 6c 6f",
		&SOLDataFromHost{SOLHeader: SOLHeader{Seq: 2}, Data: []byte("Hello")}},
	{"10 heartbeat", "2b 00 00 00 03 00 00 00", &SOLHeartbeat{SOLHeader{Seq: 3}}},
	{"keys to host", "28 00 00 00 00 00 00 00 03 00 61 62 0d", &SOLDataToHost{Data: []byte("ab\r")}},
	{"11 SOL end", "22 00 00 00 00 00 00 00", &SOLEnd{}},
	{"11 ^] after the end", "28 00 00 00 00 00 00 00 01 00 1d", &SOLDataToHost{Data: []byte{0x1d}}},
	{"11 SOL end reply", "23 00 00 00 05 00 00 00", &SOLEndReply{SOLHeader{Seq: 5}}},
	{"11 end session", "12 00 00 00", &EndSession{}},
	{"ping", "24 00 00 00 07 00 00 00", &SOLPing{SOLHeader{Seq: 7}}},
	{"pong", "25 00 00 00 07 00 00 00", &SOLPong{SOLHeader{Seq: 7}}},
	{"controls", "29 00 00 00 04 00 00 00 03 04", &SOLControls{SOLHeader: SOLHeader{Seq: 4}, Lines: LineRTS | LineDTR, State: StatePowerOn}},
	{"reserved bytes kept", "13 01 02 03 00 00 00 00 00", &Authenticate{Reserved: [3]byte{1, 2, 3}, Data: []byte{}}},
	{"recording notice", "f0", &Recording{}},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			wire := unhex(t, v.hex)
			if got := Marshal(v.msg); !bytes.Equal(got, wire) {
				t.Errorf("Marshal = % x; want % x", got, wire)
			}
			// Whole, followed by the first byte of another message.
			in := append(append([]byte{}, wire...), MsgSOLHeartbeat)
			got, n, err := Parse(in)
			if err != nil || n != len(wire) {
				t.Fatalf("Parse = %v, %d, %v; want %d bytes", got, n, err, len(wire))
			}
			if !reflect.DeepEqual(got, v.msg) {
				t.Errorf("Parse = %#v; want %#v", got, v.msg)
			}
			if got.Code() != wire[0] || strings.HasPrefix(Name(wire[0]), "message 0x") {
				t.Errorf("Code() = %#x, Name %q; want %#x with a name", got.Code(), Name(wire[0]), wire[0])
			}
			// Every proper prefix is incomplete, never malformed.
			for i := range len(wire) {
				if _, _, err := Parse(wire[:i]); err != ErrIncomplete {
					t.Fatalf("Parse(first %d of %d bytes) = %v; want ErrIncomplete", i, len(wire), err)
				}
			}
			// The header alone gives the length.
			h, _ := headerLen(wire[0])
			if l, err := Len(wire[:h]); err != nil || l != len(wire) {
				t.Errorf("Len(first %d bytes) = %d, %v; want %d", h, l, err, len(wire))
			}
			// ReadMessage reads exactly the message.
			r := bytes.NewReader(in)
			rm, raw, err := ReadMessage(r, wire[0])
			if err != nil || !bytes.Equal(raw, wire) || !reflect.DeepEqual(rm, v.msg) || r.Len() != 1 {
				t.Errorf("ReadMessage = %v, % x, %v with %d bytes left; want % x and 1 byte left", rm, raw, err, r.Len(), wire)
			}
		})
	}
}

func TestDigestVector(t *testing.T) {
	if got := vecDigest.ResponseFor(AuthDigest, []byte(vecPassword)); got != vecResponse {
		t.Errorf("ResponseFor(AuthDigest) = %s; want %s", got, vecResponse)
	}
	d := vecDigest
	d.CNonce, d.NC, d.QOP = "", "", ""
	if got := d.ResponseFor(AuthDigestRFC2069, []byte(vecPassword)); got != vecResponse69 {
		t.Errorf("ResponseFor(AuthDigestRFC2069) = %s; want %s", got, vecResponse69)
	}
	// The qop and uri are AMT's whatever the fields say.
	d = vecDigest
	d.QOP, d.URI = "auth-int", ""
	if got := d.ResponseFor(AuthDigest, []byte(vecPassword)); got != vecResponse {
		t.Errorf("ResponseFor with another qop and uri = %s; want %s", got, vecResponse)
	}
}

func TestAuthData(t *testing.T) {
	lv := func(fields ...string) []byte {
		var b []byte
		for _, f := range fields {
			b = AppendLV(b, f)
		}
		return b
	}
	seven := lv("admin", vecRealm, vecNonce, DigestURI, "", "", "r")
	tests := []struct {
		name  string
		parse func([]byte) (any, error)
		in    []byte
		want  any
		off   int // of the ParseError, -1 for none
	}{
		{"password", passwordAny, lv("admin", "pw"), PasswordAuth{"admin", []byte("pw")}, -1},
		{"empty password", passwordAny, lv("admin", ""), PasswordAuth{"admin", []byte{}}, -1},
		{"password: one field", passwordAny, lv("admin"), nil, 9},
		{"password: three fields", passwordAny, lv("a", "b", "c"), nil, 13},
		{"password: truncated", passwordAny, []byte{5, 'a', 'd'}, nil, 9},
		{"password: empty", passwordAny, nil, nil, 9},
		{"digest step 1", digestAny(AuthDigest), lv("admin", "", "", DigestURI, "", "", "", ""), Digest{User: "admin", URI: DigestURI}, -1},
		{"digest response", digestAny(AuthDigest), vecDigest.Append(nil, AuthDigest), vecDigest, -1},
		{"digest: seven fields", digestAny(AuthDigest), seven, nil, 9},
		{"digest: nine fields", digestAny(AuthDigest), lv("a", "b", "c", "d", "e", "f", "g", "h", "i"), nil, 25},
		{"digest: truncated field", digestAny(AuthDigest), append(lv("a", "b"), 9, 'x'), nil, 13},
		{"RFC 2069: seven fields", digestAny(AuthDigestRFC2069), seven,
			Digest{User: "admin", Realm: vecRealm, Nonce: vecNonce, URI: DigestURI, Response: "r"}, -1},
		{"RFC 2069: a qop is ignored", digestAny(AuthDigestRFC2069), append(seven, lv("auth")...),
			Digest{User: "admin", Realm: vecRealm, Nonce: vecNonce, URI: DigestURI, Response: "r"}, -1},
		{"RFC 2069: six fields", digestAny(AuthDigestRFC2069), lv("a", "b", "c", "d", "e", "f"), nil, 9},
		{"challenge", challengeAny, lv(vecRealm, vecNonce, "auth"), Challenge{vecRealm, vecNonce, "auth"}, -1},
		{"challenge without qop", challengeAny, lv(vecRealm, vecNonce), Challenge{vecRealm, vecNonce, ""}, -1},
		{"challenge: one field", challengeAny, lv(vecRealm), nil, 9},
		{"challenge: four fields", challengeAny, lv("a", "b", "c", "d"), nil, 15},
		{"challenge: truncated", challengeAny, []byte{3, 'a', 2}, nil, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.in)
			if tt.off < 0 {
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("parse(% x) = %#v, %v; want %#v", tt.in, got, err, tt.want)
				}
				return
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Off != tt.off {
				t.Fatalf("parse(% x) error = %v; want a ParseError at byte %d", tt.in, err, tt.off)
			}
		})
	}
}

func passwordAny(b []byte) (any, error)  { return ParsePasswordAuth(b) }
func challengeAny(b []byte) (any, error) { return ParseChallenge(b) }
func digestAny(typ AuthType) func([]byte) (any, error) {
	return func(b []byte) (any, error) { return ParseDigest(typ, b) }
}

// TestRoundTrip: whatever fits the fields decodes to itself.
func TestRoundTrip(t *testing.T) {
	cut := func(s string) string { return s[:min(len(s), MaxLV)] }
	digest := func(d Digest) bool {
		d = Digest{cut(d.User), cut(d.Realm), cut(d.Nonce), cut(d.URI), cut(d.CNonce), cut(d.NC), cut(d.Response), cut(d.QOP)}
		got, err := ParseDigest(AuthDigest, d.Append(nil, AuthDigest))
		return err == nil && got == d
	}
	challenge := func(c Challenge) bool {
		c = Challenge{cut(c.Realm), cut(c.Nonce), cut(c.QOP)}
		got, err := ParseChallenge(c.Append(nil))
		return err == nil && got == c
	}
	password := func(user string, pass []byte) bool {
		a := PasswordAuth{cut(user), []byte(cut(string(pass)))}
		got, err := ParsePasswordAuth(a.Append(nil))
		return err == nil && got.User == a.User && bytes.Equal(got.Password, a.Password)
	}
	for name, f := range map[string]any{"Digest": digest, "Challenge": challenge, "PasswordAuth": password} {
		if err := quick.Check(f, nil); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestAppendCuts(t *testing.T) {
	long := strings.Repeat("x", 300)
	if b := AppendLV(nil, long); len(b) != 1+MaxLV || b[0] != MaxLV {
		t.Errorf("AppendLV(300 bytes) = %d bytes, length %d; want %d", len(b), b[0], 1+MaxLV)
	}
	m := &SOLDataFromHost{Data: make([]byte, 70000)}
	if b := Marshal(m); len(b) != 10+0xFFFF || b[8] != 0xFF || b[9] != 0xFF {
		t.Errorf("SOLDataFromHost with 70000 bytes encodes to %d bytes; want %d", len(b), 10+0xFFFF)
	}
	r := &StartSessionReply{OEMData: make([]byte, 300)}
	if b := Marshal(r); len(b) != 13+255 || b[12] != 255 {
		t.Errorf("StartSessionReply with 300 bytes of OEM data encodes to %d bytes; want %d", len(b), 13+255)
	}
	if b := Marshal(&StartSession{Kind: "SO"}); !bytes.Equal(b[4:], []byte{'S', 'O', 0, 0}) {
		t.Errorf("StartSession with a short kind ends % x; want 53 4f 00 00", b[4:])
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name string
		in   string
		off  int
	}{
		{"unknown code", "99 00 00", 0},
		{"code zero", "00", 0},
		{"IDE-R and KVM are not framed", "40 00 00 00 00 00 00 00", 0},
		{"auth data over the limit", "13 00 00 00 01 01 04 00 00", 5},
		{"huge auth data", "14 00 00 00 04 ff ff ff ff", 5},
		{"SOL data over the limit", "28 00 00 00 00 00 00 00 ff ff", 8},
		{"SOL output over the limit", "2a 00 00 00 00 00 00 00 01 40", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := unhex(t, tt.in)
			for name, f := range map[string]func([]byte) error{
				"Len":   func(b []byte) error { _, err := Len(b); return err },
				"Parse": func(b []byte) error { _, _, err := Parse(b); return err },
				"ReadMessage": func(b []byte) error {
					// Only the given bytes: an error, not a wait for more.
					_, raw, err := ReadMessage(bytes.NewReader(b))
					if len(raw) == 0 || !bytes.HasPrefix(b, raw) {
						t.Errorf("ReadMessage returned % x; want what it read of % x", raw, b)
					}
					return err
				},
			} {
				var pe *ParseError
				if err := f(in); !errors.As(err, &pe) || pe.Code != in[0] || pe.Off != tt.off {
					t.Errorf("%s(% x) error = %v; want a ParseError at byte %d", name, in, err, tt.off)
				} else if !strings.HasPrefix(err.Error(), "redir: ") {
					t.Errorf("%s error %q does not start with \"redir: \"", name, err)
				}
			}
		})
	}
}

func TestLimitsAreConfigurable(t *testing.T) {
	msg := Marshal(&SOLDataToHost{Data: make([]byte, 100)})
	l := Limits{MaxAuthData: 10, MaxSOLData: 99}
	if _, _, err := l.Parse(msg); err == nil || err == ErrIncomplete {
		t.Fatalf("Parse with MaxSOLData 99 of 100 bytes: %v; want a ParseError", err)
	}
	if _, err := l.Len(msg[:10]); err == nil || err == ErrIncomplete {
		t.Fatalf("Len of the header with MaxSOLData 99: %v; want a ParseError", err)
	}
	l.MaxSOLData = 100
	if _, n, err := l.Parse(msg); err != nil || n != len(msg) {
		t.Fatalf("Parse with MaxSOLData 100: %d, %v; want %d bytes", n, err, len(msg))
	}
	auth := Marshal(&Authenticate{Type: AuthPassword, Data: make([]byte, 11)})
	if _, _, err := l.ReadMessage(bytes.NewReader(auth)); err == nil {
		t.Fatal("ReadMessage with MaxAuthData 10 of 11 bytes: no error")
	}
}

// stingyReader fails the test if more than n bytes are read from it.
type stingyReader struct {
	t *testing.T
	r io.Reader
	n int
}

func (s *stingyReader) Read(p []byte) (int, error) {
	k, err := s.r.Read(p)
	if s.n -= k; s.n < 0 {
		s.t.Fatalf("read %d bytes beyond the limit", -s.n)
	}
	return k, err
}

func TestReadMessage(t *testing.T) {
	t.Run("unexpected code", func(t *testing.T) {
		in := unhex(t, "20 00 00 00 00 00 00 00 e8 03")
		r := &stingyReader{t: t, r: bytes.NewReader(in), n: 1}
		_, raw, err := ReadMessage(r, MsgAuthenticate, MsgEndSession)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Code != MsgSOLStart || !bytes.Equal(raw, in[:1]) {
			t.Fatalf("ReadMessage = % x, %v; want the code and an unexpected-message error", raw, err)
		}
		if want := "redir: StartSOLRedirection at byte 0: unexpected message"; err.Error() != want {
			t.Errorf("error %q; want %q", err, want)
		}
	})
	t.Run("oversized data is not read", func(t *testing.T) {
		in := append(unhex(t, "13 00 00 00 01 00 10 00 00"), make([]byte, 4096)...)
		r := &stingyReader{t: t, r: bytes.NewReader(in), n: 9}
		m, raw, err := ReadMessage(r)
		var pe *ParseError
		if !errors.As(err, &pe) || !bytes.Equal(raw, in[:9]) {
			t.Fatalf("ReadMessage = % x, %v; want the 9-byte header and an error", raw, err)
		}
		// Decoded without its data, so that it can be answered.
		if a, ok := m.(*Authenticate); !ok || a.Type != AuthPassword || len(a.Data) != 0 {
			t.Fatalf("ReadMessage returned %#v; want the Authenticate without data", m)
		}
	})
	for _, tt := range []struct {
		name string
		in   string
		want error
	}{
		{"nothing", "", io.EOF},
		{"end in the header", "13 00 00", io.ErrUnexpectedEOF},
		{"end after the header", "13 00 00 00 01 05 00 00 00", io.ErrUnexpectedEOF},
		{"end in the data", "2a 00 00 00 00 00 00 00 05 00 48 65", io.ErrUnexpectedEOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := unhex(t, tt.in)
			_, raw, err := ReadMessage(bytes.NewReader(in))
			if err != tt.want || !bytes.Equal(raw, in) && len(in) > 0 {
				t.Fatalf("ReadMessage(% x) = % x, %v; want what it read and %v", in, raw, err, tt.want)
			}
		})
	}
}

func TestStringsHideSecrets(t *testing.T) {
	a := PasswordAuth{User: "admin", Password: []byte("hunter22")}
	m := &Authenticate{Type: AuthPassword, Data: a.Append(nil)}
	d := vecDigest
	for _, tt := range []struct {
		what   string
		s      string
		secret string
	}{
		{"PasswordAuth.String", a.String(), "hunter22"},
		{"PasswordAuth.GoString", a.GoString(), "hunter22"},
		{"Authenticate.String", m.String(), "hunter22"},
		{"Authenticate.GoString", m.GoString(), "hunter22"},
		{"Digest.String", d.String(), vecResponse},
		{"Digest.GoString", d.GoString(), vecResponse},
	} {
		if strings.Contains(tt.s, tt.secret) {
			t.Errorf("%s = %q; it shows %q", tt.what, tt.s, tt.secret)
		}
	}
	// Peer text is quoted.
	if s := (Digest{User: "a\x1b[2J"}).String(); strings.Contains(s, "\x1b") {
		t.Errorf("Digest.String = %q; want the escape quoted", s)
	}
}

func TestNames(t *testing.T) {
	if got := Name(0x99); got != "message 0x99" {
		t.Errorf("Name(0x99) = %q; want %q", got, "message 0x99")
	}
	for typ, want := range map[AuthType]string{AuthQuery: "query", AuthDigest: "digest (RFC 2617)", 9: "auth type 9"} {
		if got := typ.String(); got != want {
			t.Errorf("AuthType(%d).String() = %q; want %q", byte(typ), got, want)
		}
	}
}

// FuzzParse: decoding never panics, whatever decodes re-encodes to the
// bytes it consumed, and Len and ReadMessage agree with Parse.
func FuzzParse(f *testing.F) {
	for _, v := range vectors {
		f.Add(unhex(f, v.hex))
	}
	f.Add([]byte{0x99})
	f.Add(unhex(f, "13 00 00 00 01 ff ff ff ff"))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, n, err := Parse(in)
		rm, raw, rerr := ReadMessage(bytes.NewReader(in))
		if err != nil {
			if m != nil || n != 0 {
				t.Fatalf("error %v with message %v, n %d", err, m, n)
			}
			if rerr == nil {
				t.Fatalf("Parse: %v; ReadMessage read % x", err, raw)
			}
			if err == ErrIncomplete && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
				t.Fatalf("Parse: incomplete; ReadMessage: %v", rerr)
			}
			return
		}
		if n <= 0 || n > len(in) {
			t.Fatalf("consumed %d of %d", n, len(in))
		}
		if got := Marshal(m); !bytes.Equal(got, in[:n]) {
			t.Fatalf("re-encoded % x; consumed % x", got, in[:n])
		}
		if l, err := Len(in); err != nil || l != n {
			t.Fatalf("Len = %d, %v; Parse consumed %d", l, err, n)
		}
		if rerr != nil || !bytes.Equal(raw, in[:n]) || !reflect.DeepEqual(rm, m) {
			t.Fatalf("ReadMessage = %v, % x, %v; Parse gave %v", rm, raw, rerr, m)
		}
	})
}

// FuzzAuthData: the parsers of authentication data never panic, and what
// they decode encodes to data that decodes to the same.
func FuzzAuthData(f *testing.F) {
	for _, v := range vectors {
		switch m := v.msg.(type) {
		case *Authenticate:
			f.Add(byte(m.Type), m.Data)
		case *AuthenticateReply:
			f.Add(byte(m.Type), m.Data)
		}
	}
	f.Add(byte(AuthDigestRFC2069), Digest{User: "u", Nonce: "n"}.Append(nil, AuthDigestRFC2069))
	f.Add(byte(AuthPassword), []byte{5, 'a', 'd'})
	f.Fuzz(func(t *testing.T, typ byte, data []byte) {
		if a, err := ParsePasswordAuth(data); err == nil {
			got, err := ParsePasswordAuth(a.Append(nil))
			if err != nil || got.User != a.User || !bytes.Equal(got.Password, a.Password) {
				t.Fatalf("PasswordAuth %#v re-parsed as %#v, %v", a, got, err)
			}
			if b := a.Append(nil); !bytes.Equal(b, data) {
				t.Fatalf("PasswordAuth re-encoded % x; parsed % x", b, data)
			}
		}
		if d, err := ParseDigest(AuthType(typ), data); err == nil {
			if got, err := ParseDigest(AuthType(typ), d.Append(nil, AuthType(typ))); err != nil || got != d {
				t.Fatalf("Digest %#v re-parsed as %#v, %v", d, got, err)
			}
		}
		if c, err := ParseChallenge(data); err == nil {
			if got, err := ParseChallenge(c.Append(nil)); err != nil || got != c {
				t.Fatalf("Challenge %#v re-parsed as %#v, %v", c, got, err)
			}
		}
	})
}

func TestNewNonce(t *testing.T) {
	a, b := NewNonce(), NewNonce()
	if _, err := hex.DecodeString(a); err != nil || len(a) != 32 || strings.ToLower(a) != a {
		t.Errorf("NewNonce() = %q; want 32 lower-case hex digits", a)
	}
	if a == b {
		t.Errorf("NewNonce() twice = %q; want two nonces", a)
	}
}
