package amtsim

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

func TestFaultWrongPassword(t *testing.T) {
	wrong := cat([]byte{apf.MsgUserauthRequest}, str(testUser), str(apf.ServicePfwd), str("password"), []byte{0}, str(testPassword+"-wrong"))
	failure14 := unhex(t, "33 00000008 70617373776f7264 00")
	for _, tt := range []struct {
		name    string
		fault   Fault
		reply   []byte
		want    error
		wantMsg []byte // what the device sends as USERAUTH_REQUEST
	}{
		{"refused", FaultWrongPassword, failure14, ErrAuthFailed, wrong},
		{"refused with the 15-byte form", FaultWrongPassword, append(failure14, 0), ErrAuthFailed, wrong},
		{"accepted", FaultWrongPassword, []byte{apf.MsgUserauthSuccess}, ErrWrongPasswordAccepted, wrong},
		{"right password refused", FaultNone, failure14, ErrAuthFailed, wantUserauth(t)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config()
			cfg.Fault = tt.fault
			d, run, _ := startDevice(t, cfg)
			p := e.accept()
			p.expect("PROTOCOL_VERSION", wantVersion(t))
			p.expect("SERVICE_REQUEST auth", wantServiceRequest(t, apf.ServiceAuth))
			p.write(serviceAccept(apf.ServiceAuth))
			p.expect("USERAUTH_REQUEST", tt.wantMsg)
			p.write(tt.reply)
			err := runErr(t, run)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run = %v; want %v", err, tt.want)
			}
			if tt.want == ErrAuthFailed && Reason(err) != "auth" {
				t.Fatalf("Reason = %q; want auth", Reason(err))
			}
			if st := d.Stats(); st.Handshakes != 0 {
				t.Fatalf("Handshakes = %d; want 0", st.Handshakes)
			}
			// The device closes without sending anything else.
			p.startReader()
			p.expectEnd()
		})
	}
}

func TestFaultGarbage(t *testing.T) {
	for _, after := range []bool{false, true} {
		name := "instead of the version"
		if after {
			name = "after the version"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config()
			cfg.Fault = FaultGarbage
			cfg.GarbageAfterVersion = after
			_, run, _ := startDevice(t, cfg)
			p := e.accept()
			if after {
				p.expect("PROTOCOL_VERSION", wantVersion(t))
			}
			g := make([]byte, garbageLen)
			p.conn.SetReadDeadline(time.Now().Add(testTimeout))
			if _, err := io.ReadFull(p.conn, g); err != nil {
				t.Fatal(err)
			}
			var pe *apf.ParseError
			if _, _, err := apf.Parse(g); !errors.As(err, &pe) {
				t.Fatalf("apf.Parse(garbage) = %v; want a ParseError at once", err)
			}
			if after {
				// The MPS rejects it with DISCONNECT.
				p.send(&apf.Disconnect{Reason: apf.DisconnectProtocolError})
				var de *DisconnectError
				if err := runErr(t, run); !errors.As(err, &de) || de.Reason != apf.DisconnectProtocolError {
					t.Fatalf("Run = %v; want DisconnectError(protocol error)", err)
				}
			} else {
				// The MPS just closes.
				p.close()
				if err := runErr(t, run); !errors.Is(err, io.EOF) {
					t.Fatalf("Run = %v; want io.EOF", err)
				}
			}
		})
	}
}

func TestFaultTrickle(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Fault = FaultTrickle
	cfg.TrickleGap = 200 * time.Microsecond
	d, _, _ := startDevice(t, cfg)
	p := e.accept()
	start := time.Now()
	gaps := 0
	// expect1 requires every byte in its own TLS record (one per Read).
	expect1 := func(what string, want []byte) {
		t.Helper()
		buf := make([]byte, 256)
		for i := range want {
			n, err := p.conn.Read(buf)
			if err != nil || n != 1 || buf[0] != want[i] {
				t.Fatalf("%s byte %d: read % x (%v); want the single byte %02x", what, i, buf[:n], err, want[i])
			}
		}
	}
	first := cat(wantVersion(t), wantServiceRequest(t, apf.ServiceAuth))
	expect1("PROTOCOL_VERSION and SERVICE_REQUEST", first)
	gaps += len(first) - 1
	p.write(serviceAccept(apf.ServiceAuth))
	expect1("USERAUTH_REQUEST", wantUserauth(t))
	gaps += len(wantUserauth(t)) - 1
	p.write([]byte{apf.MsgUserauthSuccess})
	expect1("SERVICE_REQUEST pfwd", wantServiceRequest(t, apf.ServicePfwd))
	gaps += len(wantServiceRequest(t, apf.ServicePfwd)) - 1
	p.write(serviceAccept(apf.ServicePfwd))
	for _, port := range DefaultPorts() {
		expect1("tcpip-forward", wantForward(testHost, port))
		gaps += len(wantForward(testHost, port)) - 1
		p.write(requestSuccess(port))
	}
	waitConnected(t, d)
	if elapsed, min := time.Since(start), time.Duration(gaps)*cfg.TrickleGap; elapsed < min {
		t.Fatalf("handshake took %v; a gap of %v between bytes needs at least %v", elapsed, cfg.TrickleGap, min)
	}
	// After the handshake the device writes whole messages again.
	p.write((&apf.KeepaliveRequest{Cookie: 9}).Append(nil))
	buf := make([]byte, 16)
	if n, err := p.conn.Read(buf); err != nil || n != 5 {
		t.Fatalf("keepalive reply: read %d bytes (%v); want 5 in one record", n, err)
	}
}

func TestFaultSilent(t *testing.T) {
	d, run, p := connectedPeer(t, func(c *Config) {
		c.Fault = FaultSilent
		c.KeepaliveInterval = 20 * time.Millisecond
		c.EchoPort = PortRedirect
	}, false)
	p.send(&apf.KeepaliveOptionsRequest{Interval: 1}, &apf.KeepaliveRequest{Cookie: 3}, channelOpen(4, 4096, PortRedirect))
	// A live device would send about 15 keepalives and three replies in
	// this time; a silent one sends nothing.
	select {
	case m, ok := <-p.msgs:
		t.Fatalf("silent device sent %v (open %v)", m, ok)
	case <-time.After(300 * time.Millisecond):
	}
	p.close()
	if err := runErr(t, run); !errors.Is(err, io.EOF) {
		t.Fatalf("Run = %v; want io.EOF", err)
	}
	if st := d.Stats(); st.KeepalivesSent != 0 || st.ChannelsOpened != 0 || st.Handshakes != 1 {
		t.Fatalf("stats = %+v; want one handshake and nothing sent", st)
	}
}

func TestFaultDropAfter(t *testing.T) {
	_, run, p := connectedPeer(t, func(c *Config) {
		c.Fault = FaultDropAfter
		c.Hold = 50 * time.Millisecond
	}, true)
	p.expectEnd() // no DISCONNECT, just the end of the stream
	if err := runErr(t, run); !errors.Is(err, ErrDropped) || Reason(err) != "dropped" {
		t.Fatalf("Run = %v; want ErrDropped", err)
	}
}

func TestFaultReconnectLoop(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.Fault = FaultReconnectLoop
	d, run, cancel := startDevice(t, cfg)
	const rounds = 3
	for range rounds {
		p := e.accept()
		p.handshake(cfg, DefaultPorts())
		// The device drops the connection right after the handshake.
		buf := make([]byte, 16)
		p.conn.SetReadDeadline(time.Now().Add(testTimeout))
		if n, err := p.conn.Read(buf); n != 0 || err == nil || isTimeout(err) {
			t.Fatalf("read after the handshake = %d, %v; want the end of the stream", n, err)
		}
		p.close()
	}
	// The next connection waits in the backlog for a TLS handshake that
	// never comes; cancel ends it.
	cancel()
	if err := runErr(t, run); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v; want context.Canceled", err)
	}
	if st := d.Stats(); st.Handshakes != rounds {
		t.Fatalf("Handshakes = %d; want %d", st.Handshakes, rounds)
	}
}

func TestFaultText(t *testing.T) {
	for f := FaultNone; f <= FaultReconnectLoop; f++ {
		b, _ := f.MarshalText()
		var g Fault
		if err := g.UnmarshalText(b); err != nil || g != f {
			t.Errorf("round trip of %v = %v, %v", f, g, err)
		}
	}
	var g Fault
	if err := g.UnmarshalText([]byte("nope")); err == nil {
		t.Error("UnmarshalText(nope) succeeded")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
