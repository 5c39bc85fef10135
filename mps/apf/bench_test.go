package apf

import "testing"

func BenchmarkParseChannelData(b *testing.B) {
	msg := Marshal(&ChannelData{Recipient: 7, Data: make([]byte, 16<<10)})
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseKeepalive(b *testing.B) {
	msg := Marshal(&KeepaliveRequest{Cookie: 42})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseHandshake(b *testing.B) {
	var msg []byte
	for _, m := range []Message{&ProtocolVersion{Major: 1}, &ServiceRequest{Service: ServiceAuth},
		&UserauthRequest{Username: "admin", Service: ServicePfwd, Method: MethodPassword, Password: []byte("P@ssw0rd")},
		&ServiceRequest{Service: ServicePfwd}, &TCPIPForward{WantReply: true, Address: "host", Port: 16992}} {
		msg = m.Append(msg)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		for rest := msg; len(rest) > 0; {
			_, n, err := Parse(rest)
			if err != nil {
				b.Fatal(err)
			}
			rest = rest[n:]
		}
	}
}

func BenchmarkAppendChannelData(b *testing.B) {
	m := &ChannelData{Recipient: 7, Data: make([]byte, 16<<10)}
	buf := make([]byte, 0, 32<<10)
	b.SetBytes(int64(len(m.Data)))
	b.ReportAllocs()
	for b.Loop() {
		buf = m.Append(buf[:0])
	}
}
