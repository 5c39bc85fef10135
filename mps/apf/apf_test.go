package apf

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// loadVectors reads testdata/vectors.hex: "name: hex with spaces" per line.
func loadVectors(t testing.TB) map[string][]byte {
	t.Helper()
	f, err := os.Open("testdata/vectors.hex")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, hx, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad vector line %q", line)
		}
		b, err := hex.DecodeString(strings.ReplaceAll(hx, " ", ""))
		if err != nil {
			t.Fatalf("vector %s: %v", name, err)
		}
		out[name] = b
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func pv() *ProtocolVersion {
	u, err := ParseUUID("4c4c4544-0048-3310-8039-c8c04f335231")
	if err != nil {
		panic(err)
	}
	return &ProtocolVersion{Major: 1, UUID: u}
}

var vectorMessages = map[string]Message{
	"protocol-version":     pv(),
	"service-request-auth": &ServiceRequest{Service: ServiceAuth},
	"service-request-pfwd": &ServiceRequest{Service: ServicePfwd},
	"service-accept-auth":  &ServiceAccept{Service: ServiceAuth},
	"userauth-request": &UserauthRequest{Username: "admin", Service: ServicePfwd, Method: MethodPassword,
		Password: []byte("P@ssw0rd")},
	"userauth-failure":              &UserauthFailure{Methods: MethodPassword},
	"userauth-success":              &UserauthSuccess{},
	"tcpip-forward":                 &TCPIPForward{WantReply: true, Address: "myhost.example.com", Port: 16993},
	"tcpip-forward-reply":           &RequestSuccess{Port: 16993},
	"tcpip-forward-gwm":             &TCPIPForward{Address: "\x00\x00\x00", Port: 16992},
	"cancel-tcpip-forward":          &TCPIPForward{Cancel: true, WantReply: true, Address: "myhost.example.com", Port: 16993},
	"keepalive-options-request-mps": &KeepaliveOptionsRequest{Interval: 30},
	"keepalive-options-request-con": &KeepaliveOptionsRequest{Interval: 30, Timeout: 90},
	"keepalive-options-reply":       &KeepaliveOptionsReply{Interval: 30, Timeout: 10},
	"keepalive-request":             &KeepaliveRequest{Cookie: 0x42},
	"keepalive-reply":               &KeepaliveReply{Cookie: 0x42},
	"keepalive-request-255":         &KeepaliveRequest{Cookie: 255},
	"channel-open-mps": &ChannelOpen{ChannelType: ChannelForwardedTCPIP, Sender: 4, Window: 81920, MaxPacket: 0xffffffff,
		ConnectedAddress: "", ConnectedPort: 16992, OriginatorAddress: "1.2.3.4", OriginatorPort: 1024},
	"channel-open-gwm": &ChannelOpen{ChannelType: ChannelForwardedTCPIP, Sender: 1, Window: 4096, MaxPacket: 0xffffffff,
		ConnectedAddress: "::1", ConnectedPort: 16992, OriginatorAddress: "::1", OriginatorPort: 123},
	"channel-open-confirmation": &ChannelOpenConfirmation{Recipient: 4, Sender: 2, Window: 4096, Reserved: 0xffffffff},
	"channel-open-failure":      &ChannelOpenFailure{Recipient: 4, Reason: OpenUnknownChannelType},
	"channel-data":              &ChannelData{Recipient: 1, Data: []byte{1, 2, 3, 4, 5}},
	"window-adjust":             &WindowAdjust{Recipient: 2, BytesToAdd: 40960},
	"channel-close":             &ChannelClose{Recipient: 2},
	"disconnect-by-application": &Disconnect{Reason: DisconnectByApplication},
	"udp-send-to": &UDPSendTo{Address: "10.0.0.1", Port: 162, OriginatorAddress: "10.0.0.2", OriginatorPort: 1024,
		Data: []byte{0xaa, 0xbb}},
	"json-control": &JSONControl{Data: []byte(`{"action":"connType","value":2}`)},
}

func TestVectors(t *testing.T) {
	vecs := loadVectors(t)
	if len(vecs) != len(vectorMessages) {
		t.Fatalf("%d vectors in testdata, %d expectations", len(vecs), len(vectorMessages))
	}
	for name, wire := range vecs {
		t.Run(name, func(t *testing.T) {
			want, ok := vectorMessages[name]
			if !ok {
				t.Fatalf("no expectation for vector %s", name)
			}
			if got := Marshal(want); !bytes.Equal(got, wire) {
				t.Errorf("Marshal = %x; want %x", got, wire)
			}
			// Parse it whole, followed by the next message's first byte.
			got, n, err := Parse(append(append([]byte{}, wire...), MsgKeepaliveRequest))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if _, isGlobal := got.(*GlobalRequest); !isGlobal && n != len(wire) {
				t.Errorf("Parse consumed %d bytes; want %d", n, len(wire))
			}
			if !reflect.DeepEqual(normalize(got), normalize(want)) {
				t.Errorf("Parse = %#v; want %#v", got, want)
			}
			// Every proper prefix is incomplete, never malformed.
			for i := range len(wire) {
				if _, _, err := Parse(wire[:i]); err != ErrIncomplete {
					t.Fatalf("Parse(first %d of %d bytes) = %v; want ErrIncomplete", i, len(wire), err)
				}
			}
		})
	}
}

// normalize makes empty and nil byte slices compare equal.
func normalize(m Message) Message {
	switch v := m.(type) {
	case *UserauthRequest:
		c := *v
		if len(c.MethodData) == 0 {
			c.MethodData = nil
		}
		return &c
	case *ChannelData:
		c := *v
		if len(c.Data) == 0 {
			c.Data = nil
		}
		return &c
	}
	return m
}

func TestUserauthFailureIs14Bytes(t *testing.T) {
	if n := len(Marshal(&UserauthFailure{Methods: MethodPassword})); n != 14 {
		t.Fatalf("USERAUTH_FAILURE is %d bytes; want 14", n)
	}
}

func TestUUIDRendering(t *testing.T) {
	wire, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF")
	var u UUID
	copy(u[:], wire)
	const want = "33221100-5544-7766-8899-AABBCCDDEEFF"
	if got := u.String(); got != strings.ToLower(want) {
		t.Fatalf("UUID(%x).String() = %s; want %s", wire, got, strings.ToLower(want))
	}
	for _, s := range []string{want, strings.ToLower(want), strings.ReplaceAll(want, "-", ""), "3322110055447766" + "8899aabbccddeeff"} {
		got, err := ParseUUID(s)
		if err != nil || got != u {
			t.Errorf("ParseUUID(%q) = %x, %v; want %x", s, got, err, wire)
		}
	}
	for _, s := range []string{"", "33221100-5544-7766-8899-AABBCCDDEEF", "33221100-5544-7766-8899AABBCCDDEEFF0",
		"3322110-05544-7766-8899-AABBCCDDEEFF", "g3221100-5544-7766-8899-AABBCCDDEEFF", "33221100554477668899AABBCCDDEEFF00"} {
		if _, err := ParseUUID(s); !errors.Is(err, ErrBadUUID) {
			t.Errorf("ParseUUID(%q) error = %v; want ErrBadUUID", s, err)
		}
	}
	if p := pv(); p.UUID.String() != "4c4c4544-0048-3310-8039-c8c04f335231" {
		t.Fatalf("round trip of the MeshCentral UUID gave %s", p.UUID)
	}
}

func TestMalformed(t *testing.T) {
	long := func(typ byte, n uint32) []byte { return be.AppendUint32([]byte{typ}, n) }
	tests := []struct {
		name string
		in   []byte
		off  int
	}{
		{"unknown type", []byte{0x99, 0, 0}, 0},
		{"type zero", []byte{0}, 0},
		{"service name over limit", long(MsgServiceRequest, 2049), 1},
		{"huge string length", long(MsgServiceRequest, 0xffffffff), 1},
		{"data over limit", be.AppendUint32(long(MsgChannelData, 1), 1<<20+1), 5},
		{"json over limit", long(MsgJSONControl, 4096), 1},
		{"bool not 0/1", append(appendString([]byte{MsgGlobalRequest}, "tcpip-forward"), 2), 18},
		{"username over limit", long(MsgUserauthRequest, 1<<31), 1},
		{"password over limit", be.AppendUint32(append(appendString(appendString(appendString([]byte{MsgUserauthRequest}, "u"), ServicePfwd), MethodPassword), 0), 5000), 41},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse(tt.in)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%x) error = %v; want *ParseError", tt.in, err)
			}
			if pe.Off != tt.off || pe.Type != tt.in[0] {
				t.Errorf("ParseError{Type %d, Off %d}; want {Type %d, Off %d}", pe.Type, pe.Off, tt.in[0], tt.off)
			}
		})
	}
}

func TestLimitsAreConfigurable(t *testing.T) {
	msg := Marshal(&ChannelData{Recipient: 1, Data: make([]byte, 100)})
	if _, _, err := (Limits{MaxString: 10, MaxData: 99}).Parse(msg); err == nil || err == ErrIncomplete {
		t.Fatalf("Parse with MaxData 99 of 100 bytes: %v; want ParseError", err)
	}
	// The limit is checked from the 9-byte header alone.
	if _, _, err := (Limits{MaxString: 10, MaxData: 99}).Parse(msg[:9]); err == nil || err == ErrIncomplete {
		t.Fatalf("Parse of header only: %v; want ParseError", err)
	}
	if _, n, err := (Limits{MaxString: 10, MaxData: 100}).Parse(msg); err != nil || n != len(msg) {
		t.Fatalf("Parse with MaxData 100: n=%d err=%v", n, err)
	}
}

func TestUnknownGlobalRequestConsumedWhole(t *testing.T) {
	in := append(appendString([]byte{MsgGlobalRequest}, "keepalive@openssh.com"), 1, 0xde, 0xad, 0xbe, 0xef)
	m, n, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := m.(*GlobalRequest)
	if !ok || g.Name != "keepalive@openssh.com" || !g.WantReply || !bytes.Equal(g.Data, []byte{0xde, 0xad, 0xbe, 0xef}) || n != len(in) {
		t.Fatalf("Parse = %#v, %d; want unknown request with 4 data bytes consuming %d", m, n, len(in))
	}
	if got := Marshal(g); !bytes.Equal(got, in) {
		t.Fatalf("re-encoded %x; want %x", got, in)
	}
}

func TestRequestSuccessForms(t *testing.T) {
	m, n, err := ParseRequestSuccess([]byte{0x51, 0x34}, false)
	if err != nil || n != 1 || !m.NoPort || len(Marshal(m)) != 1 {
		t.Fatalf("short form: %+v %d %v", m, n, err)
	}
	if _, _, err := ParseRequestSuccess([]byte{0x51, 0, 0}, true); err != ErrIncomplete {
		t.Fatalf("long form prefix: %v; want ErrIncomplete", err)
	}
	m, n, err = ParseRequestSuccess([]byte{0x51, 0, 0, 0x42, 0x60}, true)
	if err != nil || n != 5 || m.Port != 16992 {
		t.Fatalf("long form: %+v %d %v", m, n, err)
	}
	if _, _, err := ParseRequestSuccess([]byte{0x52}, true); err == nil {
		t.Fatal("REQUEST_FAILURE accepted as success")
	}
}

func TestUserauthRequestHidesPassword(t *testing.T) {
	m := &UserauthRequest{Username: "admin", Service: ServicePfwd, Method: MethodPassword, Password: []byte("hunter22")}
	for _, s := range []string{m.String(), m.GoString()} {
		if strings.Contains(s, "hunter22") || !strings.Contains(s, "admin") {
			t.Errorf("rendering %q leaks the password or lacks the user", s)
		}
	}
}

func TestMethodNoneHasNoData(t *testing.T) {
	in := appendString(appendString(appendString([]byte{MsgUserauthRequest}, "dev"), ServicePfwd), MethodNone)
	m, n, err := Parse(append(in, MsgServiceRequest))
	if err != nil || n != len(in) {
		t.Fatalf("Parse = %v, %d, %v; want %d bytes", m, n, err, len(in))
	}
}

func TestTypeNames(t *testing.T) {
	for name, m := range vectorMessages {
		if strings.HasPrefix(TypeName(m.Type()), "message type") {
			t.Errorf("%s: no name for type %d", name, m.Type())
		}
	}
	if TypeName(0x99) != "message type 153" {
		t.Errorf("TypeName(0x99) = %q", TypeName(0x99))
	}
	if DisconnectProtocolError.String() != "protocol error" || DisconnectReason(99).String() != "reason 99" {
		t.Error("DisconnectReason.String")
	}
	if OpenResourceShortage.String() != "resource shortage" || OpenFailureReason(9).String() != "reason 9" {
		t.Error("OpenFailureReason.String")
	}
}

// FuzzParse: decoding never panics, and whatever decodes re-encodes to the
// bytes it consumed.
func FuzzParse(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v)
	}
	f.Add([]byte{0x99})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, n, err := Parse(in)
		if err != nil {
			if m != nil || n != 0 {
				t.Fatalf("error %v with message %v, n %d", err, m, n)
			}
			return
		}
		if n <= 0 || n > len(in) {
			t.Fatalf("consumed %d of %d", n, len(in))
		}
		if got := Marshal(m); !bytes.Equal(got, in[:n]) {
			t.Fatalf("re-encoded %x; consumed %x", got, in[:n])
		}
	})
}
