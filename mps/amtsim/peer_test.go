package amtsim

// This file holds the scripted APF peer the device tests run against. It
// plays the MPS side of one connection step by step, asserts the exact bytes
// the device sends during the handshake, and is test code only. The
// end-to-end tests of the simulator against the real server (mps/tunnel)
// live in the mps package, except those of AMT's MPS order (mpsorder_test.go),
// which need the real server too.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// testUUID is the UUID of apf.md §9 vector 2.
var testUUID = func() apf.UUID {
	u, err := apf.ParseUUID("4c4c4544-0048-3310-8039-c8c04f335231")
	if err != nil {
		panic(err)
	}
	return u
}()

const (
	testHost     = "amt-test.example.com"
	testUser     = "admin"
	testPassword = "P@ssw0rd" // apf.md §9 vector 4
	testAMTPass  = "Amt-Adm1n!"
)

// --- bytes, built by hand rather than with the apf encoders ---

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func str(s string) []byte { return append(u32(uint32(len(s))), s...) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func wantVersion(t testing.TB) []byte {
	return cat(unhex(t, "c0 00000001 00000000 00000000 44454c4c480010338039c8c04f335231"), make([]byte, 64))
}

func wantServiceRequest(t testing.TB, name string) []byte {
	switch name {
	case apf.ServiceAuth:
		return unhex(t, "05 00000012 6175746840616d742e696e74656c2e636f6d")
	case apf.ServicePfwd:
		return unhex(t, "05 00000012 7066776440616d742e696e74656c2e636f6d")
	}
	t.Fatalf("no vector for %q", name)
	return nil
}

func serviceAccept(name string) []byte { return cat([]byte{apf.MsgServiceAccept}, str(name)) }

// wantUserauth is apf.md §9 vector 4 (user admin, password P@ssw0rd).
func wantUserauth(t testing.TB) []byte {
	return unhex(t, "32 00000005 61646d696e 00000012 7066776440616d742e696e74656c2e636f6d 00000008 70617373776f7264 00 00000008 5040737377307264")
}

func wantForward(host string, port uint32) []byte {
	return cat([]byte{apf.MsgGlobalRequest}, str("tcpip-forward"), []byte{1}, str(host), u32(port))
}

func requestSuccess(port uint32) []byte { return cat([]byte{apf.MsgRequestSuccess}, u32(port)) }

// --- TLS ---

// testPKI is a root CA and an MPS certificate for 127.0.0.1 signed by it.
type testPKI struct {
	roots  *x509.CertPool
	server tls.Certificate
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// issue signs a certificate for name (CN and DNS SAN) with the root.
func (p testPKI) issue(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

var (
	pkiOnce sync.Once
	pki     testPKI
	pkiErr  error
)

func getPKI(t testing.TB) testPKI {
	t.Helper()
	pkiOnce.Do(func() { pki, pkiErr = makePKI() })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pki
}

func makePKI() (testPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testPKI{}, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "amtsim test root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return testPKI{}, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return testPKI{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return testPKI{}, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"mps.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return testPKI{}, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	return testPKI{roots: roots, server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, ca: caCert, caKey: caKey}, nil
}

// --- the environment: a TLS listener and a device ---

type testEnv struct {
	t   *testing.T
	pki testPKI
	ln  net.Listener
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	p := getPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &testEnv{t: t, pki: p, ln: ln}
}

// config is a well-behaved device for this environment.
func (e *testEnv) config() Config {
	return Config{
		UUID:             testUUID,
		Hostname:         testHost,
		User:             testUser,
		Password:         []byte(testPassword),
		MPSAddr:          e.ln.Addr().String(),
		RootCAs:          e.pki.roots,
		HandshakeTimeout: testTimeout,
		AMTPassword:      []byte(testAMTPass),
	}
}

// devRun is a running Device.Run.
type devRun struct {
	done chan struct{}
	err  error // set before done closes
}

// startDevice runs a device until the test ends.
func startDevice(t *testing.T, cfg Config) (*Device, *devRun, context.CancelFunc) {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &devRun{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(testTimeout):
			t.Error("Device.Run did not return after cancel")
		}
	})
	return d, r, cancel
}

// runErr waits for Run's result.
func runErr(t *testing.T, r *devRun) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(testTimeout):
		t.Fatal("Device.Run did not return")
	}
	return nil
}

func waitConnected(t *testing.T, d *Device) {
	t.Helper()
	select {
	case <-d.Connected():
	case <-time.After(testTimeout):
		t.Fatalf("device not connected; stats %+v", d.Stats())
	}
}

// accept takes the device's next connection and completes the TLS handshake.
func (e *testEnv) accept() *peer {
	e.t.Helper()
	if tl, ok := e.ln.(*net.TCPListener); ok {
		tl.SetDeadline(time.Now().Add(testTimeout))
	}
	raw, err := e.ln.Accept()
	if err != nil {
		e.t.Fatalf("accept: %v", err)
	}
	c := tlsServer(raw, e.pki)
	c.SetDeadline(time.Now().Add(testTimeout))
	if err := c.Handshake(); err != nil {
		raw.Close()
		e.t.Fatalf("TLS handshake: %v", err)
	}
	p := &peer{t: e.t, conn: c, msgs: make(chan apf.Message, 1<<14), readDone: make(chan struct{})}
	e.t.Cleanup(p.close)
	return p
}

func tlsServer(c net.Conn, p testPKI) *tls.Conn {
	return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{p.server}})
}

// --- the peer ---

type peer struct {
	t    *testing.T
	conn *tls.Conn
	wmu  sync.Mutex

	// Message mode (after startReader).
	reading  bool
	autoKA   atomic.Bool // answer the device's KEEPALIVE_REQUESTs unseen
	kaSeen   atomic.Int64
	msgs     chan apf.Message
	readErr  error // set before readDone closes
	readDone chan struct{}
	closed   sync.Once
}

func (p *peer) close() {
	p.closed.Do(func() { p.conn.Close() })
	if p.reading {
		<-p.readDone
	}
}

func (p *peer) write(b []byte) {
	p.t.Helper()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.conn.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

func (p *peer) send(ms ...apf.Message) {
	p.t.Helper()
	var b []byte
	for _, m := range ms {
		b = m.Append(b)
	}
	p.write(b)
}

// expect reads len(want) bytes and compares them (raw mode).
func (p *peer) expect(what string, want []byte) {
	p.t.Helper()
	got := make([]byte, len(want))
	p.conn.SetReadDeadline(time.Now().Add(testTimeout))
	if n, err := io.ReadFull(p.conn, got); err != nil {
		p.t.Fatalf("%s: read %d of %d bytes: %v (got % x)", what, n, len(want), err, got[:n])
	}
	if !bytes.Equal(got, want) {
		p.t.Fatalf("%s:\n got % x\nwant % x", what, got, want)
	}
}

// handshake plays the MPS side of a normal handshake (raw mode), asserting
// every byte, and returns when the last REQUEST_SUCCESS is sent.
func (p *peer) handshake(cfg Config, ports []uint32) {
	p.t.Helper()
	p.expect("PROTOCOL_VERSION", wantVersion(p.t))
	p.expect("SERVICE_REQUEST auth", wantServiceRequest(p.t, apf.ServiceAuth))
	p.write(serviceAccept(apf.ServiceAuth))
	p.expect("USERAUTH_REQUEST", wantUserauth(p.t))
	p.write([]byte{apf.MsgUserauthSuccess})
	p.expect("SERVICE_REQUEST pfwd", wantServiceRequest(p.t, apf.ServicePfwd))
	p.write(serviceAccept(apf.ServicePfwd))
	for _, port := range ports {
		p.expect("tcpip-forward", wantForward(cfg.Hostname, port))
		p.write(requestSuccess(port))
	}
}

// startReader switches to message mode: a goroutine parses what the device
// sends, answers its keepalives while autoKA is set, and queues the rest.
func (p *peer) startReader() {
	p.reading = true
	p.conn.SetReadDeadline(time.Time{})
	go func() {
		defer close(p.readDone)
		defer close(p.msgs)
		buf := make([]byte, 0, 64<<10)
		tmp := make([]byte, 32<<10)
		for {
			for len(buf) > 0 {
				m, n, err := apf.Parse(buf)
				if errors.Is(err, apf.ErrIncomplete) {
					break
				}
				if err != nil {
					p.readErr = err
					return
				}
				if d, ok := m.(*apf.ChannelData); ok {
					d.Data = append([]byte(nil), d.Data...)
				}
				buf = buf[:copy(buf, buf[n:])]
				if ka, ok := m.(*apf.KeepaliveRequest); ok {
					p.kaSeen.Add(1)
					if p.autoKA.Load() {
						p.wmu.Lock()
						p.conn.Write((&apf.KeepaliveReply{Cookie: ka.Cookie}).Append(nil))
						p.wmu.Unlock()
						continue
					}
				}
				p.msgs <- m
			}
			n, err := p.conn.Read(tmp)
			buf = append(buf, tmp[:n]...)
			if err != nil {
				p.readErr = err
				return
			}
		}
	}()
}

// next returns the device's next queued message (message mode).
func (p *peer) next() apf.Message {
	p.t.Helper()
	select {
	case m, ok := <-p.msgs:
		if !ok {
			p.t.Fatalf("device connection ended: %v", p.readErr)
		}
		return m
	case <-time.After(testTimeout):
		p.t.Fatal("no message from the device")
	}
	return nil
}

// nextAs returns the next message, which must have type T.
func nextAs[T apf.Message](p *peer) T {
	p.t.Helper()
	m := p.next()
	v, ok := m.(T)
	if !ok {
		p.t.Fatalf("got %s %+v; want %T", apf.TypeName(m.Type()), m, v)
	}
	return v
}

// barrier sends a KEEPALIVE_REQUEST with cookie and requires the reply to
// be the next message: everything the device sent in answer to earlier
// messages has arrived, and nothing else.
func (p *peer) barrier(cookie uint32) {
	p.t.Helper()
	p.send(&apf.KeepaliveRequest{Cookie: cookie})
	if r := nextAs[*apf.KeepaliveReply](p); r.Cookie != cookie {
		p.t.Fatalf("KEEPALIVE_REPLY cookie %#x; want %#x", r.Cookie, cookie)
	}
}

// expectEnd waits for the device to close the connection (message mode)
// and fails on any message but the allowed types.
func (p *peer) expectEnd(allowed ...byte) {
	p.t.Helper()
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				return
			}
			if !bytes.Contains(allowed, []byte{m.Type()}) {
				p.t.Fatalf("got %s before the end", apf.TypeName(m.Type()))
			}
		case <-time.After(testTimeout):
			p.t.Fatal("the device did not close the connection")
		}
	}
}

func channelOpen(sender, window, port uint32) *apf.ChannelOpen {
	return &apf.ChannelOpen{
		ChannelType: apf.ChannelForwardedTCPIP, Sender: sender, Window: window, MaxPacket: 0xFFFFFFFF,
		ConnectedAddress: "", ConnectedPort: port, OriginatorAddress: "1.2.3.4", OriginatorPort: 1024,
	}
}
