package api

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
)

// interceptPair runs the interceptor between a console end and a simulated
// AMT device over pipes, then relays raw bytes, and returns the console's
// end of the connection.
func interceptPair(t *testing.T, devPass, storedPass string) net.Conn {
	t.Helper()
	srv := amtsim.NewRedirServer(amtsim.RedirConfig{Password: []byte(devPass), Hostname: "pipe-dev"})
	devC, devS := net.Pipe()
	go srv.Serve(devS)
	conC, conS := net.Pipe()
	t.Cleanup(func() { conC.Close(); conS.Close(); devC.Close() })
	go func() {
		br := bufio.NewReader(conS)
		err := interceptRedirLogin(conS, br, devC, "admin", storedPass, 5*time.Second)
		if err != nil {
			conS.Close()
			devC.Close()
			return
		}
		go io.Copy(devC, br)
		io.Copy(conS, devC)
		conS.Close()
	}()
	conC.SetDeadline(time.Now().Add(10 * time.Second))
	return conC
}

func TestInterceptRedirLogin(t *testing.T) {
	// The console logs in with an empty user: the stored login is used.
	sol, err := amtsim.DialSOL(interceptPair(t, "Amt-P@ss1", "Amt-P@ss1"), "", "", amtsim.SOLAuthDigest)
	if err != nil {
		t.Fatalf("intercepted login: %v", err)
	}
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.Contains(got, []byte("pipe-dev")) {
		n, err := sol.Read(buf)
		if err != nil {
			t.Fatalf("reading the console: %v (%q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	sol.Close()

	// A console with its own login is left alone: right and wrong.
	if s, err := amtsim.DialSOL(interceptPair(t, "Amt-P@ss1", "other"), "admin", "Amt-P@ss1", amtsim.SOLAuthDigest); err != nil {
		t.Fatalf("console's own login: %v", err)
	} else {
		s.Close()
	}
	if _, err := amtsim.DialSOL(interceptPair(t, "Amt-P@ss1", "Amt-P@ss1"), "admin", "wrong", amtsim.SOLAuthDigest); err == nil {
		t.Fatal("a wrong password of the console's own got in")
	}
	// A wrong stored password: the device refuses, the console is told.
	if _, err := amtsim.DialSOL(interceptPair(t, "Amt-P@ss1", "stale"), "", "", amtsim.SOLAuthDigest); !errors.Is(err, amtsim.ErrRedirAuth) {
		t.Fatalf("a wrong stored password: %v, want the device's refusal", err)
	}
}

// FuzzInterceptRedirLogin: arbitrary bytes from the console and from the
// device never make the interceptor panic or hang.
func FuzzInterceptRedirLogin(f *testing.F) {
	f.Add([]byte("\x10\x00\x00\x00SOL \x13\x00\x00\x00\x04\x20\x00\x00\x00\x00"), []byte("\x11\x00\x00\x00\x01\x00\x0b\x08\x57\x01\x00\x00\x00\x14\x01\x00\x00\x04\x05\x00\x00\x00\x01r\x01n\x00"))
	f.Add([]byte("\x10\x00\x00\x00SOL \x13\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("\x11\x00\x00\x00\x01\x00\x0b\x08\x57\x01\x00\x00\x05abc"))
	f.Add([]byte("\x13\x00\x00\x00\x04\xff\xff\xff\xff"), []byte{})
	f.Fuzz(func(t *testing.T, console, device []byte) {
		conC, conS := net.Pipe()
		devC, devS := net.Pipe()
		defer conC.Close()
		defer devS.Close()
		go func() { conC.Write(console); conC.Close() }()
		go io.Copy(io.Discard, conC)
		go func() { devS.Write(device); devS.Close() }()
		go io.Copy(io.Discard, devS)
		done := make(chan struct{})
		go func() {
			defer close(done)
			interceptRedirLogin(conS, bufio.NewReader(conS), devC, "admin", "pw", time.Second)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("interceptor hung")
		}
	})
}
