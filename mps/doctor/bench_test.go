package doctor

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/tunnel"
)

// BenchmarkDoctorRecord is the doctor's cost per failed handshake:
// classifying the tunnel's error and recording it, among 1,000 devices
// that fail again and again (a storm). Compare with
// BenchmarkTLSHandshake: it must stay under 5 % of it.
func BenchmarkDoctorRecord(b *testing.B) {
	d := New(Options{})
	errs := make([]error, 1000)
	remotes := make([]string, len(errs))
	for i := range errs {
		errs[i] = &tunnel.CloseError{Reason: tunnel.ReasonAuthFailed, Handshake: &tunnel.HandshakeFailure{
			Device: apf.UUID{byte(i), byte(i >> 8)}, User: "cira", Auth: tunnel.AuthWrongPassword}}
		remotes[i] = fmt.Sprintf("10.0.%d.%d:4433", i/256, i%256)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if f, ok := FromError(errs[i], remotes[i]); ok {
			d.Record(f)
		}
		i = (i + 1) % len(errs)
	}
}

// BenchmarkDoctorRecordTLS is the same for TLS failures before the
// GUID is known (keyed by remote host).
func BenchmarkDoctorRecordTLS(b *testing.B) {
	d := New(Options{})
	err := &tunnel.CloseError{Reason: tunnel.ReasonTLSError, Err: errors.New("tls: client offered only unsupported versions"),
		Handshake: &tunnel.HandshakeFailure{Hello: tunnel.Hello{MaxVersion: tls.VersionTLS10, Offered: 2, Suites: tunnel.SuiteRSACBC}}}
	remotes := make([]string, 1000)
	for i := range remotes {
		remotes[i] = fmt.Sprintf("10.0.%d.%d:4433", i/256, i%256)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if f, ok := FromError(err, remotes[i]); ok {
			d.Record(f)
		}
		i = (i + 1) % len(remotes)
	}
}

// BenchmarkTLSHandshake is one full TLS 1.2 handshake with the CIRA
// listener's configuration and an RSA-2048 certificate, both sides over
// net.Pipe (the server's share is roughly the RSA signature).
func BenchmarkTLSHandshake(b *testing.B) {
	cert := selfSigned(b, 2048, "127.0.0.1", true)
	srv := tunnel.TLSConfig(cert, false)
	cli := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	for b.Loop() {
		c, s := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- tls.Server(s, srv).Handshake() }()
		if err := tls.Client(c, cli).Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		c.Close()
		s.Close()
	}
}
