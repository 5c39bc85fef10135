package tunnel

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/presence-mps/presence/mps/apf"
)

// The tests drive the server side with a scripted device (peer) writing raw
// APF, so that malformed and out-of-order input can be injected: over
// loopback TCP (start), or over an in-memory transport (startMem) inside a
// testing/synctest bubble, where timeouts pass in fake time without
// sleeping. The end-to-end tests with the simulated AMT device (mps/amtsim)
// over real TLS live in package mps.

const testUser, testPass = "admin", "P@ssw0rd"

var testUUID = apf.UUID{0x44, 0x45, 0x4c, 0x4c, 0x48, 0, 0x10, 0x33, 0x80, 0x39, 0xc8, 0xc0, 0x4f, 0x33, 0x52, 0x31}

func testAuth(_ context.Context, _ apf.UUID, user string, pw []byte) bool {
	return user == testUser && string(pw) == testPass
}

// peer is the device end of a test tunnel.
type peer struct {
	t    testing.TB
	conn net.Conn
	buf  []byte
	wait time.Duration // for each message from the server; 0 means 5 s
}

func (p *peer) send(ms ...apf.Message) {
	p.t.Helper()
	var b []byte
	for _, m := range ms {
		b = m.Append(b)
	}
	p.raw(b)
}

func (p *peer) raw(b []byte) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

// next returns the next message from the server, or the read error.
func (p *peer) next() (apf.Message, error) {
	wait := p.wait
	if wait == 0 {
		wait = 5 * time.Second
	}
	p.conn.SetReadDeadline(time.Now().Add(wait))
	tmp := make([]byte, 64<<10)
	for {
		if len(p.buf) > 0 {
			var m apf.Message
			var n int
			var err error
			if p.buf[0] == apf.MsgRequestSuccess && len(p.buf) < 5 {
				m, n, err = apf.ParseRequestSuccess(p.buf, false)
			} else {
				m, n, err = apf.Parse(p.buf)
			}
			if err == nil {
				if cd, ok := m.(*apf.ChannelData); ok {
					cd.Data = bytes.Clone(cd.Data)
				}
				p.buf = p.buf[n:]
				return m, nil
			}
			if err != apf.ErrIncomplete {
				return nil, err
			}
		}
		n, err := p.conn.Read(tmp)
		p.buf = append(p.buf, tmp[:n]...)
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

func recv[T apf.Message](p *peer) T {
	p.t.Helper()
	m, err := p.next()
	if err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	v, ok := m.(T)
	if !ok {
		var zero T
		p.t.Fatalf("peer got %T %+v; want %T", m, m, zero)
	}
	return v
}

// expectClosed reads until EOF and returns the last message before it.
func (p *peer) expectClosed() apf.Message {
	p.t.Helper()
	var last apf.Message
	for {
		m, err := p.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
				return last
			}
			p.t.Fatalf("peer: %v; want EOF", err)
		}
		last = m
	}
}

func (p *peer) login(user, pass string) {
	p.t.Helper()
	p.send(&apf.ProtocolVersion{Major: 1, UUID: testUUID}, &apf.ServiceRequest{Service: apf.ServiceAuth})
	recv[*apf.ServiceAccept](p)
	p.send(&apf.UserauthRequest{Username: user, Service: apf.ServicePfwd, Method: apf.MethodPassword, Password: []byte(pass)})
}

// up completes the handshake and announces ports.
func (p *peer) up(ports ...uint32) {
	p.t.Helper()
	p.login(testUser, testPass)
	recv[*apf.UserauthSuccess](p)
	p.send(&apf.ServiceRequest{Service: apf.ServicePfwd})
	recv[*apf.ServiceAccept](p)
	for _, port := range ports {
		p.send(&apf.TCPIPForward{WantReply: true, Address: "dev.example", Port: port})
		if got := recv[*apf.RequestSuccess](p); got.Port != port {
			p.t.Fatalf("REQUEST_SUCCESS port %d; want %d", got.Port, port)
		}
	}
}

type result struct {
	c   *Conn
	err error
}

type harness struct {
	t     testing.TB
	cfg   Config
	peer  *peer
	res   chan result
	serve chan error
}

func newHarness(t testing.TB, cfg Config) *harness {
	if cfg.Auth == nil {
		cfg.Auth = testAuth
	}
	if cfg.Poller == nil {
		cfg.Poller = testPoller // set by TestParked's subtests
	}
	return &harness{t: t, cfg: cfg, res: make(chan result, 1), serve: make(chan error, 1)}
}

// run reports how the handshake ended and then, if it succeeded, runs
// Serve and reports why it returned.
func (h *harness) run(c *Conn, err error) {
	h.res <- result{c, err}
	if err == nil {
		if h.cfg.Poller != nil {
			if perr := c.Park(h.cfg.Poller, func(err error) { h.serve <- err }); perr == nil {
				return
			}
		}
		h.serve <- c.Serve()
	}
}

// start listens on 127.0.0.1:0, connects a peer and runs Accept then Serve.
func start(t testing.TB, cfg Config) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := newHarness(t, cfg)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			h.res <- result{err: err}
			return
		}
		h.run(Accept(context.Background(), raw, &h.cfg))
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS != nil {
		conn = tls.Client(conn, &tls.Config{RootCAs: testPool(t), ServerName: "127.0.0.1"})
	}
	t.Cleanup(func() { conn.Close() })
	h.peer = &peer{t: t, conn: conn}
	return h
}

func (h *harness) conn() *Conn {
	h.t.Helper()
	select {
	case r := <-h.res:
		if r.err != nil {
			h.t.Fatalf("Accept: %v", r.err)
		}
		h.t.Cleanup(func() { r.c.CloseWithReason(ReasonShutdown, ""); r.c.writer.Wait() })
		return r.c
	case <-time.After(10 * time.Second):
		h.t.Fatal("Accept did not return")
	}
	return nil
}

func (h *harness) acceptErr() *CloseError {
	h.t.Helper()
	select {
	case r := <-h.res:
		var ce *CloseError
		if r.err == nil || !errors.As(r.err, &ce) {
			h.t.Fatalf("Accept = %v; want *CloseError", r.err)
		}
		return ce
	case <-time.After(10 * time.Second):
		h.t.Fatal("Accept did not return")
	}
	return nil
}

func (h *harness) serveErr() Reason {
	h.t.Helper()
	select {
	case err := <-h.serve:
		return ReasonOf(err)
	case <-time.After(10 * time.Second):
		h.t.Fatal("Serve did not return")
	}
	return 0
}

var (
	certOnce sync.Once
	certTLS  tls.Certificate
	certPool *x509.CertPool
)

func testPool(t testing.TB) *x509.CertPool { testCert(t); return certPool }

// testCert is a self-signed RSA-2048 server certificate for 127.0.0.1.
func testCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		certTLS = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		cert, _ := x509.ParseCertificate(der)
		certPool = x509.NewCertPool()
		certPool.AddCert(cert)
	})
	return certTLS
}

func TestHandshakeOverTLS(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		h := start(t, Config{TLS: TLSConfig(testCert(t), legacy)})
		h.peer.up(16992, 16993)
		c := h.conn()
		if c.UUID() != testUUID {
			t.Errorf("UUID = %s; want %s", c.UUID(), testUUID)
		}
		recv[*apf.KeepaliveOptionsRequest](h.peer)
		info := c.Info()
		if info.User != testUser || info.TLSVersion != "TLS 1.3" || len(info.Forwards) != 2 || !info.Ready {
			t.Errorf("Info = %+v", info)
		}
	}
}

// TestTLSVersionsAndSuites checks what AMT generations need: RSA key
// exchange with TLS 1.2, and TLS 1.0 only with legacy on.
func TestTLSVersionsAndSuites(t *testing.T) {
	cert := testCert(t)
	tests := []struct {
		name     string
		legacy   bool
		max      uint16
		suite    uint16
		wantFail bool
	}{
		{"TLS1.2 RSA-AES128-GCM", false, tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false},
		{"TLS1.2 RSA-AES256-CBC", false, tls.VersionTLS12, tls.TLS_RSA_WITH_AES_256_CBC_SHA, false},
		{"TLS1.2 ECDHE-RSA-AES256-GCM", false, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, false},
		{"TLS1.0 refused by default", false, tls.VersionTLS10, tls.TLS_RSA_WITH_AES_128_CBC_SHA, true},
		{"TLS1.0 RSA-AES128-CBC legacy", true, tls.VersionTLS10, tls.TLS_RSA_WITH_AES_128_CBC_SHA, false},
		{"TLS1.1 ECDHE-RSA-AES128-CBC legacy", true, tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false},
		{"3DES never", true, tls.VersionTLS12, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, true},
		{"RC4 never", true, tls.VersionTLS12, tls.TLS_RSA_WITH_RC4_128_SHA, true},
	}
	srv := TLSConfig(cert, false)
	legacySrv := TLSConfig(cert, true)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := srv
			if tt.legacy {
				cfg = legacySrv
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			errc := make(chan error, 1)
			go func() { errc <- tls.Server(a, cfg).Handshake() }()
			cl := tls.Client(b, &tls.Config{RootCAs: testPool(t), ServerName: "127.0.0.1",
				MinVersion: tls.VersionTLS10, MaxVersion: tt.max, CipherSuites: []uint16{tt.suite}})
			err := cl.Handshake()
			if tt.wantFail {
				if err == nil {
					t.Fatalf("handshake succeeded with %s", tls.CipherSuiteName(cl.ConnectionState().CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if st := cl.ConnectionState(); st.CipherSuite != tt.suite || st.Version != tt.max {
				t.Fatalf("negotiated %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
			}
			<-errc
		})
	}
	for _, s := range CipherSuites() {
		name := tls.CipherSuiteName(s)
		if strings.Contains(name, "NULL") || strings.Contains(name, "RC4") || strings.Contains(name, "3DES") {
			t.Errorf("offers %s", name)
		}
	}
}

func TestOutOfOrderIsProtocolError(t *testing.T) {
	tests := []struct {
		name string
		msgs []apf.Message
		want apf.DisconnectReason
	}{
		{"userauth before version", []apf.Message{&apf.UserauthRequest{Username: "a", Service: apf.ServicePfwd, Method: apf.MethodPassword}}, apf.DisconnectProtocolError},
		{"pfwd before auth", []apf.Message{&apf.ProtocolVersion{Major: 1}, &apf.ServiceRequest{Service: apf.ServicePfwd}}, apf.DisconnectServiceNotAvailable},
		{"unknown service", []apf.Message{&apf.ProtocolVersion{Major: 1}, &apf.ServiceRequest{Service: "ssh-connection"}}, apf.DisconnectServiceNotAvailable},
		{"version 2", []apf.Message{&apf.ProtocolVersion{Major: 2}}, apf.DisconnectVersionNotSupported},
		{"channel open before auth", []apf.Message{&apf.ProtocolVersion{Major: 1}, &apf.ChannelOpen{ChannelType: "x"}}, apf.DisconnectProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, Config{})
			h.peer.send(tt.msgs...)
			last := h.peer.expectClosed()
			d, ok := last.(*apf.Disconnect)
			if !ok || d.Reason != tt.want {
				t.Fatalf("last message %#v; want DISCONNECT(%s)", last, tt.want)
			}
			if ce := h.acceptErr(); ce.Reason != ReasonProtocolError {
				t.Fatalf("reason %s; want protocol-error", ce.Reason)
			}
		})
	}
}

func TestGarbageAndHTTPProbe(t *testing.T) {
	h := start(t, Config{})
	h.peer.raw([]byte{0x99, 0x13, 0x37, 0x00, 0x01})
	if d, ok := h.peer.expectClosed().(*apf.Disconnect); !ok || d.Reason != apf.DisconnectProtocolError {
		t.Fatalf("garbage: got %#v; want DISCONNECT(protocol error)", d)
	}
	h.acceptErr()

	h = start(t, Config{})
	h.peer.raw([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	h.peer.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(h.peer.conn)
	if !bytes.HasPrefix(reply, []byte("HTTP/1.1 400")) || !bytes.Contains(reply, []byte("APF")) {
		t.Fatalf("HTTP probe reply %q", reply)
	}
}

func TestAuthFailures(t *testing.T) {
	var mu sync.Mutex
	var offered []string
	h := start(t, Config{MaxAuthAttempts: 2, OnAuthFailure: func(_ apf.UUID, user, _ string) {
		mu.Lock()
		offered = append(offered, user)
		mu.Unlock()
	}})
	h.peer.login("admin", "wrong-secret-1")
	f := recv[*apf.UserauthFailure](h.peer)
	if n := len(apf.Marshal(f)); n != 14 || f.Methods != "password" {
		t.Fatalf("USERAUTH_FAILURE %+v, %d bytes; want 14 bytes listing password", f, n)
	}
	h.peer.send(&apf.UserauthRequest{Username: "intruder", Service: apf.ServicePfwd, Method: apf.MethodPassword, Password: []byte("wrong-secret-2")})
	recv[*apf.UserauthFailure](h.peer)
	if d, ok := h.peer.expectClosed().(*apf.Disconnect); !ok || d.Reason != apf.DisconnectNoMoreAuthMethods {
		t.Fatalf("after 2 failures: %#v; want DISCONNECT(no more auth methods)", d)
	}
	ce := h.acceptErr()
	if ce.Reason != ReasonAuthFailed {
		t.Fatalf("reason %s; want auth-failed", ce.Reason)
	}
	if strings.Contains(ce.Error(), "wrong-secret") {
		t.Fatalf("error %q contains the password", ce.Error())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(offered, ",") != "admin,intruder" {
		t.Fatalf("OnAuthFailure users %v", offered)
	}
}

func TestForwardCap(t *testing.T) {
	h := start(t, Config{MaxForwards: 2})
	h.peer.up(1, 2)
	h.peer.send(&apf.TCPIPForward{WantReply: true, Port: 3})
	recv[*apf.RequestFailure](h.peer)
}

func TestHandshakeTimeout(t *testing.T) {
	h := start(t, Config{HandshakeTimeout: 300 * time.Millisecond})
	h.peer.send(&apf.ProtocolVersion{Major: 1})
	if ce := h.acceptErr(); ce.Reason != ReasonHandshakeTimeout {
		t.Fatalf("reason %s; want handshake-timeout", ce.Reason)
	}
}

// TestTrickledHandshake sends the whole handshake one byte per write.
func TestTrickledHandshake(t *testing.T) {
	h := start(t, Config{})
	var b []byte
	for _, m := range []apf.Message{&apf.ProtocolVersion{Major: 1, UUID: testUUID}, &apf.ServiceRequest{Service: apf.ServiceAuth},
		&apf.UserauthRequest{Username: testUser, Service: apf.ServicePfwd, Method: apf.MethodPassword, Password: []byte(testPass)}} {
		b = m.Append(b)
	}
	for i := range b {
		h.peer.raw(b[i : i+1])
	}
	recv[*apf.ServiceAccept](h.peer)
	recv[*apf.UserauthSuccess](h.peer)
	if c := h.conn(); c.Info().User != testUser {
		t.Fatal("user not recorded")
	}
}

// dialPair opens a channel: the server dials, the peer confirms with window.
func dialPair(t testing.TB, h *harness, c *Conn, port, window uint32) (*Channel, uint32) {
	t.Helper()
	type dr struct {
		ch  *Channel
		err error
	}
	done := make(chan dr, 1)
	go func() {
		ch, err := c.Dial(context.Background(), port)
		done <- dr{ch, err}
	}()
	open := recv[*apf.ChannelOpen](h.peer)
	if open.ChannelType != apf.ChannelForwardedTCPIP || open.ConnectedPort != port || open.MaxPacket != 0xffffffff ||
		open.ConnectedAddress != "dev.example" || open.Window != c.cfg.Window {
		t.Fatalf("CHANNEL_OPEN %+v", open)
	}
	const peerID = 900
	h.peer.send(&apf.ChannelOpenConfirmation{Recipient: open.Sender, Sender: peerID, Window: window, Reserved: 0xffffffff})
	r := <-done
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	return r.ch, open.Sender
}

func TestChannelDataAndWindows(t *testing.T) {
	h := start(t, Config{Window: 8 << 10})
	h.peer.up(16992)
	c := h.conn()
	recv[*apf.KeepaliveOptionsRequest](h.peer)
	ch, id := dialPair(t, h, c, 16992, 3000)

	// Server → device: 5000 bytes with 3000 credit: 3000 go, the rest waits.
	msg := bytes.Repeat([]byte("x"), 5000)
	wrote := make(chan error, 1)
	go func() { _, err := ch.Write(msg); wrote <- err }()
	if d := recv[*apf.ChannelData](h.peer); d.Recipient != 900 || len(d.Data) != 3000 {
		t.Fatalf("first DATA to %d with %d bytes; want 3000 to 900", d.Recipient, len(d.Data))
	}
	h.peer.send(&apf.WindowAdjust{Recipient: id, BytesToAdd: 10000})
	if d := recv[*apf.ChannelData](h.peer); len(d.Data) != 2000 {
		t.Fatalf("second DATA %d bytes; want 2000", len(d.Data))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}

	// Device → server: WINDOW_ADJUST once half of 8 KiB has been read.
	h.peer.send(&apf.ChannelData{Recipient: id, Data: bytes.Repeat([]byte("y"), 4096)})
	got := make([]byte, 4096)
	if _, err := io.ReadFull(ch, got); err != nil {
		t.Fatal(err)
	}
	if a := recv[*apf.WindowAdjust](h.peer); a.Recipient != 900 || a.BytesToAdd != 4096 {
		t.Fatalf("WINDOW_ADJUST %+v; want 4096 to 900", a)
	}

	// Close handshake: the device closes, we answer once, Read sees EOF.
	h.peer.send(&apf.ChannelData{Recipient: id, Data: []byte("tail")}, &apf.ChannelClose{Recipient: id})
	if cl := recv[*apf.ChannelClose](h.peer); cl.Recipient != 900 {
		t.Fatalf("CHANNEL_CLOSE to %d", cl.Recipient)
	}
	rest, err := io.ReadAll(ch)
	if err != nil || string(rest) != "tail" {
		t.Fatalf("ReadAll = %q, %v", rest, err)
	}
	if _, err := ch.Write([]byte("late")); !errors.Is(err, ErrChannelClosed) {
		t.Fatalf("Write after device close: %v", err)
	}
	ch.Close() // no second CHANNEL_CLOSE
	h.peer.send(&apf.KeepaliveRequest{Cookie: 5})
	recv[*apf.KeepaliveReply](h.peer)
	if n := c.Info().Channels; n != 0 {
		t.Fatalf("%d channels left", n)
	}
}

func TestWindowOverrunIsProtocolError(t *testing.T) {
	h := start(t, Config{Window: 4096})
	h.peer.up(16992)
	c := h.conn()
	recv[*apf.KeepaliveOptionsRequest](h.peer)
	ch, id := dialPair(t, h, c, 16992, 1000)
	h.peer.send(&apf.ChannelData{Recipient: id, Data: make([]byte, 3000)}, &apf.ChannelData{Recipient: id, Data: make([]byte, 1097)})
	if d, ok := h.peer.expectClosed().(*apf.Disconnect); !ok || d.Reason != apf.DisconnectProtocolError {
		t.Fatalf("got %#v; want DISCONNECT(protocol error)", d)
	}
	if r := h.serveErr(); r != ReasonProtocolError {
		t.Fatalf("reason %s", r)
	}
	if _, err := ch.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write on dead tunnel: %v", err)
	}
}

func TestWindowAdjustOverflow(t *testing.T) {
	h := start(t, Config{})
	h.peer.up(16992)
	c := h.conn()
	recv[*apf.KeepaliveOptionsRequest](h.peer)
	_, id := dialPair(t, h, c, 16992, 0xffff0000)
	h.peer.send(&apf.WindowAdjust{Recipient: id, BytesToAdd: 0x10000})
	if d, ok := h.peer.expectClosed().(*apf.Disconnect); !ok || d.Reason != apf.DisconnectProtocolError {
		t.Fatalf("got %#v", d)
	}
}

// TestDialWaitsForForwards: a Dial that comes as the device has just
// authenticated, before its ports are announced, waits: it opens the
// channel as soon as the port is announced, and a port the device does
// not announce is refused once the forwards have settled.
func TestDialWaitsForForwards(t *testing.T) {
	h := start(t, Config{ForwardSettle: 500 * time.Millisecond})
	h.peer.login(testUser, testPass)
	recv[*apf.UserauthSuccess](h.peer)
	c := h.conn()
	opened, refused := make(chan error, 1), make(chan error, 1)
	go func() { _, err := c.Dial(context.Background(), 16992); opened <- err }()
	go func() { _, err := c.Dial(context.Background(), 5900); refused <- err }()
	select {
	case err := <-opened:
		t.Fatalf("Dial before the forwards returned at once: %v", err)
	case err := <-refused:
		t.Fatalf("Dial before the forwards returned at once: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	h.peer.send(&apf.ServiceRequest{Service: apf.ServicePfwd})
	recv[*apf.ServiceAccept](h.peer)
	h.peer.send(&apf.TCPIPForward{WantReply: true, Address: "dev.example", Port: 16992})
	recv[*apf.RequestSuccess](h.peer)
	open := recv[*apf.ChannelOpen](h.peer)
	if open.ConnectedPort != 16992 {
		t.Fatalf("CHANNEL_OPEN %+v", open)
	}
	h.peer.send(&apf.ChannelOpenConfirmation{Recipient: open.Sender, Sender: 900, Window: 4096, Reserved: 0xffffffff})
	if err := <-opened; err != nil {
		t.Fatalf("Dial 16992: %v", err)
	}
	select {
	case err := <-refused:
		t.Fatalf("Dial 5900 returned before the forwards settled: %v", err)
	default:
	}
	recv[*apf.KeepaliveOptionsRequest](h.peer) // ready
	select {
	case err := <-refused:
		if !errors.Is(err, ErrPortNotAnnounced) {
			t.Fatalf("Dial 5900: %v; want ErrPortNotAnnounced", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Dial 5900 did not return after the forwards settled")
	}
}

func TestDialErrors(t *testing.T) {
	h := start(t, Config{MaxChannels: 1})
	h.peer.up(16992, 16994)
	c := h.conn()
	recv[*apf.KeepaliveOptionsRequest](h.peer)
	if _, err := c.Dial(context.Background(), 5900); !errors.Is(err, ErrPortNotAnnounced) {
		t.Fatalf("Dial unannounced: %v", err)
	}
	errc := make(chan error, 1)
	go func() { _, err := c.Dial(context.Background(), 16994); errc <- err }()
	open := recv[*apf.ChannelOpen](h.peer)
	h.peer.send(&apf.ChannelOpenFailure{Recipient: open.Sender, Reason: apf.OpenResourceShortage})
	var oe *OpenError
	if err := <-errc; !errors.As(err, &oe) || oe.Reason != apf.OpenResourceShortage || oe.Port != 16994 {
		t.Fatalf("Dial refused: %v; want OpenError(resource shortage)", err)
	}
	ch, id := dialPair(t, h, c, 16992, 100)
	if _, err := c.Dial(context.Background(), 16992); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("Dial over cap: %v", err)
	}
	ch.Close()
	recv[*apf.ChannelClose](h.peer)
	// The slot is free only once the device answers the close.
	if _, err := c.Dial(context.Background(), 16992); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("Dial before the close is answered: %v", err)
	}
	h.peer.send(&apf.ChannelClose{Recipient: id})
	h.peer.send(&apf.KeepaliveRequest{Cookie: 1})
	recv[*apf.KeepaliveReply](h.peer)

	// A Dial given up before the device answers is closed once it does.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, err := c.Dial(ctx, 16994); errc <- err }()
	open = recv[*apf.ChannelOpen](h.peer)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Dial: %v", err)
	}
	h.peer.send(&apf.ChannelOpenConfirmation{Recipient: open.Sender, Sender: 5, Window: 10})
	if cl := recv[*apf.ChannelClose](h.peer); cl.Recipient != 5 {
		t.Fatalf("close of abandoned channel to %d", cl.Recipient)
	}
}

// TestBulkEcho echoes 10 MB through a channel with a small device window,
// the device echoing what it receives.
func TestBulkEcho(t *testing.T) {
	h := start(t, Config{TLS: TLSConfig(testCert(t), false), Window: 16 << 10})
	h.peer.up(7)
	c := h.conn()
	recv[*apf.KeepaliveOptionsRequest](h.peer)
	ch, id := dialPair(t, h, c, 7, 4096)
	// The device echoes what it receives within the server's window
	// (16 KiB) and re-grants its own window as it echoes.
	go func() {
		credit := c.cfg.Window
		var pending []byte
		for {
			m, err := h.peer.next()
			if err != nil {
				return
			}
			switch m := m.(type) {
			case *apf.ChannelData:
				pending = append(pending, m.Data...)
			case *apf.WindowAdjust:
				credit += m.BytesToAdd
			}
			n := min(uint32(len(pending)), credit)
			if n == 0 {
				continue
			}
			var out []apf.Message
			for off := uint32(0); off < n; off += 1000 {
				out = append(out, &apf.ChannelData{Recipient: id, Data: pending[off:min(off+1000, n)]})
			}
			out = append(out, &apf.WindowAdjust{Recipient: id, BytesToAdd: n})
			h.peer.send(out...)
			credit -= n
			pending = pending[n:]
		}
	}()
	data := make([]byte, 10<<20)
	rand.Read(data)
	go ch.Write(data)
	got := make([]byte, len(data))
	if _, err := io.ReadFull(ch, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echoed data differs")
	}
}

func TestKeepaliveSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want uint32
	}{{time.Millisecond, 1}, {500 * time.Millisecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2}, {30 * time.Second, 30}} {
		if got := keepaliveSeconds(tt.d); got != tt.want {
			t.Errorf("keepaliveSeconds(%s) = %d; want %d", tt.d, got, tt.want)
		}
	}
}

// TestDeviceGivesUpAfterFailure: a device that closes after one refused
// password ends the handshake as an auth failure, not a plain close.
func TestDeviceGivesUpAfterFailure(t *testing.T) {
	h := start(t, Config{})
	h.peer.login(testUser, "wrong")
	recv[*apf.UserauthFailure](h.peer)
	h.peer.conn.Close()
	if ce := h.acceptErr(); ce.Reason != ReasonAuthFailed {
		t.Fatalf("reason %s; want auth-failed", ce.Reason)
	}
}

// countingSigner records the most signatures in progress at once.
type countingSigner struct {
	crypto.Signer
	now, most atomic.Int32
}

func (c *countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	n := c.now.Add(1)
	defer c.now.Add(-1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	time.Sleep(2 * time.Millisecond) // a slow RSA signature
	return c.Signer.Sign(r, d, o)
}

// In a storm of handshakes the key signs at most GOMAXPROCS at once, and
// every handshake still completes.
func TestKeyPacedInStorm(t *testing.T) {
	cert := testCert(t)
	cs := &countingSigner{Signer: cert.PrivateKey.(crypto.Signer)}
	cert.PrivateKey = cs
	cfg := TLSConfig(cert, false)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go tls.Server(a, cfg).Handshake()
			errs <- tls.Client(b, &tls.Config{RootCAs: testPool(t), ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12}).Handshake()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if most := int(cs.most.Load()); most < 1 || most > runtime.GOMAXPROCS(0) {
		t.Fatalf("%d signatures at once, want 1 to %d", most, runtime.GOMAXPROCS(0))
	}
}

// TestConnSize keeps a tunnel's struct, plus the 8-byte header the Go
// allocator puts before objects over 512 bytes that hold pointers, within
// the 768-byte size class: idle tunnels are mostly this struct, and 19,000
// of them are the README's figure.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}) + 8; n > 768 {
		t.Fatalf("Conn takes %d bytes with its allocation header; the size class is 768", n)
	}
}
