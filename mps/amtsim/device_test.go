package amtsim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// TestDeviceSession drives one whole connection against the scripted peer:
// the byte-exact handshake (with a PROTOCOL_VERSION echo and keepalive
// options arriving mid-forwards), keepalives both ways, a 1 MB echo through
// 1 KiB windows, refused opens, accept-then-close, WS-Man over a channel
// with pipelined requests, the close handshake and a DISCONNECT.
func TestDeviceSession(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.EchoPort = PortRedirect // SOL stand-in, also announced
	cfg.Window = 1024
	d, run, _ := startDevice(t, cfg)
	p := e.accept()

	p.expect("PROTOCOL_VERSION", wantVersion(t))
	p.expect("SERVICE_REQUEST auth", wantServiceRequest(t, apf.ServiceAuth))
	// A CON-style server echoes PROTOCOL_VERSION; the device ignores it.
	p.write(cat(wantVersion(t), serviceAccept(apf.ServiceAuth)))
	p.expect("USERAUTH_REQUEST", wantUserauth(t))
	p.write([]byte{apf.MsgUserauthSuccess})
	p.expect("SERVICE_REQUEST pfwd", wantServiceRequest(t, apf.ServicePfwd))
	p.write(serviceAccept(apf.ServicePfwd))
	ports := DefaultPorts()
	for i, port := range ports {
		p.expect(fmt.Sprintf("tcpip-forward %d", port), wantForward(testHost, port))
		if i == 4 {
			// The device answered the options after announcing this port.
			p.expect("KEEPALIVE_OPTIONS_REPLY", unhex(t, "d3 00000001 00000003"))
		}
		reply := requestSuccess(port)
		if i == 3 {
			// Like CON: keepalive options after the 4th forward.
			reply = cat(reply, unhex(t, "d2 00000001 00000003"))
		}
		select {
		case <-d.Connected():
			t.Fatalf("connected before the forward of port %d was answered", port)
		default:
		}
		p.write(reply)
	}
	waitConnected(t, d)
	if st := d.Stats(); st.State != StateConnected || st.Handshakes != 1 || st.KeepaliveInterval != time.Second {
		t.Fatalf("stats after handshake = %+v", st)
	}
	p.startReader()

	// Keepalives: the device sends one within 1.5 × the interval the peer
	// set, and answers the peer's.
	ka := nextAs[*apf.KeepaliveRequest](p)
	p.send(&apf.KeepaliveReply{Cookie: ka.Cookie})
	p.autoKA.Store(true)
	p.barrier(0x42)
	if st := d.Stats(); st.KeepalivesAnswered < 1 || st.KeepaliveBadReplies != 0 || st.ServerKeepalives != 1 {
		t.Fatalf("keepalive stats = %+v", st)
	}

	t.Run("echo", func(t *testing.T) { p.t = t; echoThroughWindows(t, p, 4, PortRedirect, 1<<20) })
	p.t = t

	// Refusals: an unannounced port and an unknown channel type.
	p.send(channelOpen(5, 4096, 5900))
	if f := nextAs[*apf.ChannelOpenFailure](p); f.Recipient != 5 || f.Reason != apf.OpenAdministrativelyProhibited {
		t.Fatalf("open to 5900 = %+v; want ADMINISTRATIVELY_PROHIBITED to 5", f)
	}
	op := channelOpen(6, 4096, PortWSMan)
	op.ChannelType = apf.ChannelDirectTCPIP
	p.send(op)
	if f := nextAs[*apf.ChannelOpenFailure](p); f.Recipient != 6 || f.Reason != apf.OpenUnknownChannelType {
		t.Fatalf("direct-tcpip open = %+v; want UNKNOWN_CHANNEL_TYPE to 6", f)
	}

	// An announced port without a service: confirmed, then closed by the
	// device; the peer's answer completes the close.
	p.send(channelOpen(7, 4096, PortRMCPSecure))
	c7 := nextAs[*apf.ChannelOpenConfirmation](p)
	if cl := nextAs[*apf.ChannelClose](p); cl.Recipient != 7 {
		t.Fatalf("CHANNEL_CLOSE to %d; want 7", cl.Recipient)
	}
	p.send(&apf.ChannelClose{Recipient: c7.Sender})
	p.barrier(0x43) // no second CLOSE

	t.Run("wsman", func(t *testing.T) { p.t = t; wsmanOverChannel(t, p, 8) })
	p.t = t

	if st := d.Stats(); st.ChannelsOpened != 3 || st.ChannelsRefused != 2 {
		t.Fatalf("channel stats = %+v; want 3 opened, 2 refused", st)
	}

	p.send(&apf.Disconnect{Reason: apf.DisconnectByApplication})
	err := runErr(t, run)
	var de *DisconnectError
	if !errors.As(err, &de) || de.Reason != apf.DisconnectByApplication {
		t.Fatalf("Run = %v; want DisconnectError(by application)", err)
	}
	if st := d.Stats(); st.State != StateDisconnected || st.LastDisconnect != apf.DisconnectByApplication {
		t.Fatalf("stats after DISCONNECT = %+v", st)
	}
	select {
	case <-d.Connected():
		t.Fatal("Connected() still closed after the tunnel ended")
	default:
	}
	p.expectEnd()
}

// echoThroughWindows opens an echo channel with a 1 KiB window on both sides
// and pushes n bytes through it, checking that the device never exceeds the
// peer's window and returns every byte intact, then closes it.
func echoThroughWindows(t *testing.T, p *peer, sender, port uint32, n int) {
	const peerWindow = 1024
	p.send(channelOpen(sender, peerWindow, port))
	conf := nextAs[*apf.ChannelOpenConfirmation](p)
	if conf.Recipient != sender || conf.Window != 1024 || conf.Reserved != 0xFFFFFFFF {
		t.Fatalf("confirmation = %+v; want recipient %d, window 1024, reserved 0xFFFFFFFF", conf, sender)
	}
	id := conf.Sender
	payload := make([]byte, n)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	devCredit := conf.Window // what the device lets us send
	peerAvail := uint32(peerWindow)
	var got []byte
	sent, unacked := 0, uint32(0)
	for steps := 0; len(got) < n; steps++ {
		if steps > 100*n {
			t.Fatal("echo does not progress")
		}
		for sent < n && devCredit > 0 {
			k := min(n-sent, int(devCredit), 700) // odd sizes on purpose
			p.send(&apf.ChannelData{Recipient: id, Data: payload[sent : sent+k]})
			sent += k
			devCredit -= uint32(k)
		}
		switch m := p.next().(type) {
		case *apf.WindowAdjust:
			if m.Recipient != sender {
				t.Fatalf("WINDOW_ADJUST to %d; want %d", m.Recipient, sender)
			}
			devCredit += m.BytesToAdd
			if devCredit > 1024 {
				t.Fatalf("device granted %d bytes, more than its 1024 window", devCredit)
			}
		case *apf.ChannelData:
			if m.Recipient != sender {
				t.Fatalf("CHANNEL_DATA to %d; want %d", m.Recipient, sender)
			}
			if uint32(len(m.Data)) > peerAvail {
				t.Fatalf("device sent %d bytes with %d left in the peer's window", len(m.Data), peerAvail)
			}
			peerAvail -= uint32(len(m.Data))
			got = append(got, m.Data...)
			unacked += uint32(len(m.Data))
			if unacked >= peerWindow/2 {
				p.send(&apf.WindowAdjust{Recipient: id, BytesToAdd: unacked})
				peerAvail += unacked
				unacked = 0
			}
		default:
			t.Fatalf("unexpected %s during the echo", apf.TypeName(m.Type()))
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo returned %d bytes that differ from the %d sent", len(got), n)
	}
	p.send(&apf.ChannelClose{Recipient: id})
	if cl := nextAs[*apf.ChannelClose](p); cl.Recipient != sender {
		t.Fatalf("CHANNEL_CLOSE to %d; want %d", cl.Recipient, sender)
	}
	// A duplicate CLOSE is not answered again.
	p.send(&apf.ChannelClose{Recipient: id})
	p.barrier(0x100 + sender)
}

// peerChan is the peer's end of a channel for stream-style tests: writes
// respect the device's window, and reads gather CHANNEL_DATA.
type peerChan struct {
	p      *peer
	sender uint32 // the peer's id
	id     uint32 // the device's id
	credit uint32
	stream []byte // received, not yet consumed
}

func openPeerChan(p *peer, sender, port uint32) *peerChan {
	p.send(channelOpen(sender, 1<<16, port)) // big enough for every test response
	c := nextAs[*apf.ChannelOpenConfirmation](p)
	return &peerChan{p: p, sender: sender, id: c.Sender, credit: c.Window}
}

// pump handles one message for the channel.
func (pc *peerChan) pump() {
	switch m := pc.p.next().(type) {
	case *apf.WindowAdjust:
		pc.credit += m.BytesToAdd
	case *apf.ChannelData:
		if m.Recipient != pc.sender {
			pc.p.t.Fatalf("CHANNEL_DATA to %d; want %d", m.Recipient, pc.sender)
		}
		pc.stream = append(pc.stream, m.Data...)
	default:
		pc.p.t.Fatalf("unexpected %s", apf.TypeName(m.Type()))
	}
}

func (pc *peerChan) write(data []byte) {
	for steps := 0; len(data) > 0; steps++ {
		if steps > 10000 {
			pc.p.t.Fatal("the device grants no window")
		}
		if pc.credit == 0 {
			pc.pump()
			continue
		}
		k := min(len(data), int(pc.credit))
		pc.p.send(&apf.ChannelData{Recipient: pc.id, Data: data[:k]})
		pc.credit -= uint32(k)
		data = data[k:]
	}
}

// responses reads n whole HTTP responses.
func (pc *peerChan) responses(n int) []*http.Response {
	for steps := 0; steps < 1000; steps++ {
		rd := bytes.NewReader(pc.stream)
		br := bufio.NewReader(rd)
		var out []*http.Response
		used := 0
		for len(out) < n {
			r, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			body, err := io.ReadAll(r.Body)
			if err != nil {
				break
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			out = append(out, r)
			used = len(pc.stream) - br.Buffered() - rd.Len()
		}
		if len(out) == n {
			pc.stream = pc.stream[used:]
			return out
		}
		pc.pump()
	}
	pc.p.t.Fatal("no complete HTTP response")
	return nil
}

func (pc *peerChan) close() {
	pc.p.send(&apf.ChannelClose{Recipient: pc.id})
	for steps := 0; steps < 1000; steps++ {
		if cl, ok := pc.p.next().(*apf.ChannelClose); ok {
			if cl.Recipient != pc.sender {
				pc.p.t.Fatalf("CHANNEL_CLOSE to %d; want %d", cl.Recipient, pc.sender)
			}
			return
		}
	}
}

// wsmanOverChannel pipelines two unauthenticated requests, then sends an
// authenticated Get on the same keep-alive channel.
func wsmanOverChannel(t *testing.T, p *peer, sender uint32) {
	pc := openPeerChan(p, sender, PortWSMan)
	body := WSManGetRequest(ResourceGeneralSettings, "uuid:1")
	req := func(auth string) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "POST /wsman HTTP/1.1\r\nHost: %s:16992\r\nContent-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: %d\r\n", PlatformGUID(testUUID), len(body))
		if auth != "" {
			fmt.Fprintf(&b, "Authorization: %s\r\n", auth)
		}
		b.WriteString("\r\n")
		b.Write(body)
		return b.Bytes()
	}
	pc.write(cat(req(""), req("")))
	resps := pc.responses(2)
	for _, r := range resps {
		if r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unauthenticated request: status %d; want 401", r.StatusCode)
		}
	}
	auth := digestAuthorization(t, resps[1].Header.Get("WWW-Authenticate"), "POST", "/wsman", testUser, testAMTPass, 1)
	pc.write(req(auth))
	r := pc.responses(1)[0]
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("<g:HostName>"+testHost+"</g:HostName>")) {
		t.Fatalf("authenticated Get: status %d, body %s", r.StatusCode, b)
	}
	pc.close()
}

// connectedPeer starts a device with the test configuration changed by
// edit, plays the handshake and switches the peer to message mode, where it
// answers the device's keepalives if autoKA.
func connectedPeer(t *testing.T, edit func(*Config), autoKA bool) (*Device, *devRun, *peer) {
	t.Helper()
	e := newEnv(t)
	cfg := e.config()
	edit(&cfg)
	d, run, _ := startDevice(t, cfg)
	p := e.accept()
	dev, _ := New(cfg)
	p.handshake(cfg, dev.Ports())
	waitConnected(t, d)
	p.autoKA.Store(autoKA)
	p.startReader()
	return d, run, p
}

func TestDeviceSendBlocksOnCredit(t *testing.T) {
	d, _, p := connectedPeer(t, func(c *Config) {
		c.EchoPort = 7
	}, true)
	if got := d.Ports(); got[len(got)-1] != 7 {
		t.Fatalf("Ports() = %v; want the echo port appended", got)
	}
	p.send(channelOpen(4, 100, 7))
	id := nextAs[*apf.ChannelOpenConfirmation](p).Sender
	data := bytes.Repeat([]byte("0123456789"), 100)
	p.send(&apf.ChannelData{Recipient: id, Data: data})
	var got []byte
	credit := 100
	for steps := 0; len(got) < len(data) && steps < 1000; steps++ {
		switch m := p.next().(type) {
		case *apf.ChannelData:
			if len(m.Data) > credit {
				t.Fatalf("device sent %d bytes with a credit of %d", len(m.Data), credit)
			}
			credit -= len(m.Data)
			got = append(got, m.Data...)
			if credit == 0 && len(got) == 100 {
				// The writer is now blocked: nothing but the barrier
				// reply may arrive until the peer grants more.
				p.barrier(1)
				p.send(&apf.WindowAdjust{Recipient: id, BytesToAdd: 900})
				credit += 900
			}
		case *apf.WindowAdjust:
		default:
			t.Fatalf("unexpected %s", apf.TypeName(m.Type()))
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo = %q...; want %q...", got[:min(len(got), 20)], data[:20])
	}
}

func TestDeviceMaxChannels(t *testing.T) {
	_, _, p := connectedPeer(t, func(c *Config) {
		c.EchoPort = PortRedirect
		c.MaxChannels = 2
	}, true)
	p.send(channelOpen(1, 4096, PortRedirect), channelOpen(2, 4096, PortRedirect), channelOpen(3, 4096, PortRedirect))
	c1 := nextAs[*apf.ChannelOpenConfirmation](p)
	nextAs[*apf.ChannelOpenConfirmation](p)
	if f := nextAs[*apf.ChannelOpenFailure](p); f.Recipient != 3 || f.Reason != apf.OpenResourceShortage {
		t.Fatalf("third open = %+v; want RESOURCE_SHORTAGE to 3", f)
	}
	p.send(&apf.ChannelClose{Recipient: c1.Sender})
	nextAs[*apf.ChannelClose](p)
	p.send(channelOpen(4, 4096, PortRedirect))
	if c := nextAs[*apf.ChannelOpenConfirmation](p); c.Recipient != 4 {
		t.Fatalf("open after a close = %+v; want a confirmation to 4", c)
	}
}

func TestDeviceProtocolErrors(t *testing.T) {
	tests := []struct {
		name string
		send func(p *peer, id uint32)
	}{
		// 664 has no service: the device closes the channel and reads
		// nothing, so the second message overruns its 1024-byte window.
		{"window overrun", func(p *peer, id uint32) {
			p.send(&apf.ChannelData{Recipient: id, Data: make([]byte, 600)}, &apf.ChannelData{Recipient: id, Data: make([]byte, 600)})
		}},
		{"data longer than the window", func(p *peer, id uint32) {
			p.send(&apf.ChannelData{Recipient: id, Data: make([]byte, 1025)})
		}},
		{"window adjust overflow", func(p *peer, id uint32) {
			p.send(&apf.WindowAdjust{Recipient: id, BytesToAdd: 0xFFFFFFFF})
		}},
		{"unknown message type", func(p *peer, id uint32) { p.write([]byte{0xEE, 0, 0, 0, 0}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, run, p := connectedPeer(t, func(c *Config) {
				c.Window = 1024
			}, true)
			p.send(channelOpen(9, 4096, PortRMCPSecure))
			id := nextAs[*apf.ChannelOpenConfirmation](p).Sender
			tt.send(p, id)
			for {
				m := p.next()
				if dc, ok := m.(*apf.Disconnect); ok {
					if dc.Reason != apf.DisconnectProtocolError {
						t.Fatalf("DISCONNECT reason %v; want protocol error", dc.Reason)
					}
					break
				}
				if m.Type() != apf.MsgChannelClose {
					t.Fatalf("got %s; want DISCONNECT", apf.TypeName(m.Type()))
				}
			}
			if err := runErr(t, run); !errors.Is(err, ErrProtocol) || Reason(err) != "protocol" {
				t.Fatalf("Run = %v; want ErrProtocol", err)
			}
			p.expectEnd()
		})
	}
}

func TestDeviceForwardReplyForWrongPort(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	_, run, _ := startDevice(t, cfg)
	p := e.accept()
	p.expect("PROTOCOL_VERSION", wantVersion(t))
	p.expect("SERVICE_REQUEST auth", wantServiceRequest(t, apf.ServiceAuth))
	p.write(serviceAccept(apf.ServiceAuth))
	p.expect("USERAUTH_REQUEST", wantUserauth(t))
	p.write([]byte{apf.MsgUserauthSuccess})
	p.expect("SERVICE_REQUEST pfwd", wantServiceRequest(t, apf.ServicePfwd))
	p.write(serviceAccept(apf.ServicePfwd))
	p.expect("tcpip-forward", wantForward(testHost, PortWSManTLS))
	p.write(requestSuccess(1))
	p.expect("DISCONNECT", unhex(t, "01 00000002 0000"))
	if err := runErr(t, run); !errors.Is(err, ErrProtocol) {
		t.Fatalf("Run = %v; want ErrProtocol", err)
	}
}

func TestDeviceKeepaliveTimeout(t *testing.T) {
	_, run, p := connectedPeer(t, func(c *Config) {
		c.KeepaliveInterval = 10 * time.Millisecond
	}, false)
	var cookies []uint32
	for range 3 {
		cookies = append(cookies, nextAs[*apf.KeepaliveRequest](p).Cookie)
	}
	if cookies[1] != cookies[0]+1 || cookies[2] != cookies[1]+1 {
		t.Fatalf("cookies %v; want consecutive", cookies)
	}
	if err := runErr(t, run); !errors.Is(err, ErrKeepaliveTimeout) {
		t.Fatalf("Run = %v; want ErrKeepaliveTimeout", err)
	}
}

func TestDeviceBadKeepaliveCookie(t *testing.T) {
	d, _, p := connectedPeer(t, func(c *Config) {
		c.KeepaliveInterval = 10 * time.Millisecond
	}, false)
	ka := nextAs[*apf.KeepaliveRequest](p)
	p.send(&apf.KeepaliveReply{Cookie: ka.Cookie + 1000})
	p.autoKA.Store(true)
	p.barrier(5)
	if st := d.Stats(); st.KeepaliveBadReplies != 1 {
		t.Fatalf("KeepaliveBadReplies = %d; want 1", st.KeepaliveBadReplies)
	}
}

func TestDeviceHandshakeTimeoutAndCancel(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.config()
		cfg.HandshakeTimeout = time.Second
		_, run, _ := startDevice(t, cfg)
		p := e.accept()
		p.expect("PROTOCOL_VERSION", wantVersion(t)) // then never answer
		if err := runErr(t, run); !errors.Is(err, ErrHandshakeTimeout) || Reason(err) != "timeout" {
			t.Fatalf("Run = %v; want ErrHandshakeTimeout", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		e := newEnv(t)
		_, run, cancel := startDevice(t, e.config())
		p := e.accept()
		p.expect("PROTOCOL_VERSION", wantVersion(t))
		cancel()
		if err := runErr(t, run); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v; want context.Canceled", err)
		}
	})
}

func TestDeviceTLSVerification(t *testing.T) {
	e := newEnv(t)
	// The listener side only needs to attempt the handshake.
	go func() {
		for {
			c, err := e.ln.Accept()
			if err != nil {
				return
			}
			s := tlsServer(c, e.pki)
			s.SetDeadline(time.Now().Add(testTimeout))
			s.Handshake()
			s.Close()
		}
	}()
	for _, tt := range []struct {
		name string
		edit func(*Config)
	}{
		{"unknown root", func(c *Config) { c.RootCAs = nil }},
		{"wrong name", func(c *Config) { c.ServerName = "other.example" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.config()
			tt.edit(&cfg)
			d, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = d.Run(context.Background())
			var te *TLSError
			if !errors.As(err, &te) || Reason(err) != "tls" {
				t.Fatalf("Run = %v; want a TLSError", err)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Fatal("error text contains the password")
			}
		})
	}
	t.Run("dial", func(t *testing.T) {
		cfg := e.config()
		cfg.MPSAddr = "127.0.0.1:1"
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Run(context.Background()); !errors.Is(err, ErrDial) || Reason(err) != "dial" {
			t.Fatalf("Run = %v; want ErrDial", err)
		}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{UUID: testUUID, User: "u", Password: []byte("p"), MPSAddr: "127.0.0.1:4433"}
	if _, err := New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"no uuid":      func(c *Config) { c.UUID = apf.UUID{} },
		"no password":  func(c *Config) { c.Password = nil },
		"bad address":  func(c *Config) { c.MPSAddr = "nohost" },
		"dup port":     func(c *Config) { c.Ports = []uint32{1, 1} },
		"big window":   func(c *Config) { c.Window = MaxWindow + 1 },
		"bad fault":    func(c *Config) { c.Fault = 99 },
		"port too big": func(c *Config) { c.Ports = []uint32{70000} },
	} {
		c := good
		edit(&c)
		if _, err := New(c); err == nil {
			t.Errorf("New with %s succeeded", name)
		}
	}
}

func TestReason(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.Canceled, "canceled"},
		{fmt.Errorf("x: %w", ErrAuthFailed), "auth"},
		{&DisconnectError{Reason: apf.DisconnectInvalidCredentials}, "disconnect: invalid credentials"},
		{io.EOF, "eof"},
		{ErrDropped, "dropped"},
		{errors.New("?"), "other"},
	} {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q; want %q", tt.err, got, tt.want)
		}
	}
}
