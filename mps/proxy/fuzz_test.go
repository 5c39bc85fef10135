package proxy

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzHandshake feeds arbitrary console bytes to a connection handler with
// login required: it must never panic, and must always end once the console
// has gone (a handshake that reaches the one known device relays to an
// echo until then).
func FuzzHandshake(f *testing.F) {
	for _, seed := range []string{
		"\x05\x01\x02\x01\x07console\x06s3cret\x05\x01\x00\x03\x04dev1\x42\x60ping",
		"\x05\x02\x00\x02\x01\x07console\x03bad",
		"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
		"\x04\x01\x42\x60\x00\x00\x00\x01u\x00dev1\x00",
		"CONNECT dev1:16992 HTTP/1.1\r\nProxy-Authorization: Basic Y29uc29sZTpzM2NyZXQ=\r\n\r\nhello",
		"GET http://dev1:16992/x HTTP/1.1\r\nHost: dev1\r\nProxy-Authorization: Basic Y29uc29sZTpzM2NyZXQ=\r\n\r\n",
		"GET http://127.0.0.1:16990/ HTTP/1.1\r\nProxy-Authorization: Basic Y29uc29sZTpzM2NyZXQ=\r\n\r\n",
		"\x05\xff", "\x04", "G", "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dial := func(ctx context.Context, host string, port uint32) (net.Conn, error) {
			if host != "dev1" || port != 16992 {
				return nil, ErrUnknownHost
			}
			a, b := net.Pipe()
			go func() { io.Copy(b, b); b.Close() }()
			return a, nil
		}
		s := New(Config{Dial: dial, Auth: checkAuth, HandshakeTimeout: 100 * time.Millisecond})
		defer s.Close()
		client, done := handleFrom(s, net.IPv4(192, 0, 2, 9))
		go io.Copy(io.Discard, client)
		wrote := make(chan struct{})
		go func() { client.Write(data); close(wrote) }()
		select {
		case <-wrote:
		case <-done:
		case <-time.After(time.Second):
		}
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("handler still running after the console left")
		}
	})
}
