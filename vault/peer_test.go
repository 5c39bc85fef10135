package vault_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// clock is a settable time for PeerOptions.Now, shared by both ends of a
// link so that they agree.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.set(time.Now())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newPeer(t *testing.T, ca *vault.CA, id string, c *clock) *vault.PeerIdentity {
	t.Helper()
	var opts vault.PeerOptions
	if c != nil {
		opts.Now = c.now
	}
	p, err := vault.NewPeerIdentity(ca, id, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var foreign struct {
	once sync.Once
	key  *rsa.PrivateKey
	err  error
}

// foreignCA returns a CA whose root has a key of its own, unlike those of
// vaulttest.CA, which share one.
func foreignCA(t *testing.T) *vault.CA {
	t.Helper()
	foreign.once.Do(func() { foreign.key, foreign.err = rsa.GenerateKey(rand.Reader, 3072) })
	if foreign.err != nil {
		t.Fatal(foreign.err)
	}
	_, server := vaulttest.Keys(t)
	ca, err := vault.InitCA(t.Context(), vault.NewMemory(vault.ItemLimit), vault.CAOptions{Address: "intruder.example.test", RootKey: foreign.key, ServerKey: server})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// end is what one end of a link saw.
type end struct {
	state tls.ConnectionState
	err   error
}

// peerServer is a listener on 127.0.0.1 that runs handshakes with one
// tls.Config for as long as the test, as a peer-link listener does. After
// a handshake it writes "ok", so that a client refused by the server sees
// the refusal on its first read (in TLS 1.3 the client's handshake ends
// before the server has checked the client's certificate).
type peerServer struct {
	ln   net.Listener
	ends chan end
	done chan struct{}
}

func startPeerServer(t *testing.T, cfg *tls.Config) *peerServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &peerServer{ln: ln, ends: make(chan end, 1), done: make(chan struct{})}
	go s.serve(cfg)
	t.Cleanup(func() {
		ln.Close()
		<-s.done
	})
	return s
}

func (s *peerServer) serve(cfg *tls.Config) {
	defer close(s.done)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(c, cfg)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte("ok"))
		}
		s.ends <- end{tc.ConnectionState(), err}
		tc.Close()
	}
}

// dial runs one handshake with the server and returns both ends.
func (s *peerServer) dial(t *testing.T, cfg *tls.Config) (server, client end) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", s.ln.Addr().String())
	if err == nil {
		tc := c.(*tls.Conn)
		client.state = tc.ConnectionState()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 2))
		c.Close()
	}
	client.err = err
	return <-s.ends, client
}

func TestPeerMutualTLS(t *testing.T) {
	ca := vaulttest.CA(t, "a.example.test")
	a, b := newPeer(t, ca, "instance-a", nil), newPeer(t, ca, "0123456789abcdef", nil)
	srvCfg, _ := a.TLSConfigs()
	_, cliCfg := b.TLSConfigs()
	srv := startPeerServer(t, srvCfg)
	s, c := srv.dial(t, cliCfg)
	if s.err != nil || c.err != nil {
		t.Fatalf("handshake: server %v, client %v", s.err, c.err)
	}
	if id, err := a.PeerID(s.state); id != b.ID() || err != nil {
		t.Errorf("the server learnt %q, %v; want %q", id, err, b.ID())
	}
	if id, err := b.PeerID(c.state); id != a.ID() || err != nil {
		t.Errorf("the client learnt %q, %v; want %q", id, err, a.ID())
	}
	if c.state.Version != tls.VersionTLS13 || c.state.DidResume {
		t.Errorf("negotiated %s, resumed %v; want TLS 1.3, no resumption", tls.VersionName(c.state.Version), c.state.DidResume)
	}
	// And again on the same listener: no session resumption, the
	// certificates are checked in full every time.
	if s, c := srv.dial(t, cliCfg); s.err != nil || c.err != nil || c.state.DidResume || len(s.state.PeerCertificates) != 1 {
		t.Fatalf("second handshake: server %v, client %v, resumed %v", s.err, c.err, c.state.DidResume)
	}

	// A TLS 1.2 client is turned away.
	old := cliCfg.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if s, c := srv.dial(t, old); s.err == nil || c.err == nil {
		t.Fatalf("TLS 1.2: server %v, client %v; want refusals", s.err, c.err)
	}
	// So is a client without a certificate.
	if s, _ := srv.dial(t, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); s.err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

// The peer certificate's profile: fleet.md §5 and peer.go's comment.
func TestIssuePeerProfile(t *testing.T) {
	ca := vaulttest.CA(t, "a.example.test")
	now := time.Now()
	c, err := ca.IssuePeer("instance-a", now, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	k, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T; want ECDSA P-256", leaf.PublicKey)
	}
	if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("private key %T", c.PrivateKey)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != vault.PeerValidity+time.Hour {
		t.Errorf("valid for %s; want a day and the hour of backdating", got)
	}
	if leaf.NotBefore.After(now.Add(-59*time.Minute)) || leaf.NotAfter.Before(now.Add(vault.PeerValidity-time.Second)) {
		t.Errorf("valid %s to %s, issued at %s", leaf.NotBefore, leaf.NotAfter, now)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) ||
		leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA {
		t.Errorf("usages %v, %v, CA %v", leaf.ExtKeyUsage, leaf.KeyUsage, leaf.IsCA)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "presence-peer://instance-a" || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("names %v %v %v", leaf.URIs, leaf.DNSNames, leaf.IPAddresses)
	}
	if leaf.CheckSignatureFrom(ca.Root()) != nil {
		t.Error("not signed by the root")
	}
	c2, err := ca.IssuePeer("instance-a", now, 0)
	if err != nil || c2.PrivateKey.(*ecdsa.PrivateKey).Equal(c.PrivateKey) {
		t.Errorf("a second certificate: %v, or the same key", err)
	}
	for _, id := range []string{"", "Instance-A", "-a", "a-", "a.b", "a_b", "a/b", string(make([]byte, 64))} {
		if _, err := ca.IssuePeer(id, now, 0); err == nil {
			t.Errorf("IssuePeer(%q) accepted the id", id)
		}
	}
	if _, err := ca.IssuePeer("a", ca.Root().NotAfter.Add(time.Second), 0); err == nil {
		t.Error("IssuePeer after the root's expiry succeeded")
	}
	if c, err := ca.IssuePeer("a", ca.Root().NotAfter.Add(-time.Hour), 0); err != nil || !c.Leaf.NotAfter.Equal(ca.Root().NotAfter) {
		t.Errorf("near the root's expiry: %v; want a certificate ending with the root", err)
	}
}

// craft issues a certificate from the root of ca (made by vaulttest.CA,
// whose root key is vaulttest.Keys's) with a peer certificate's profile
// changed by mod.
func craft(t *testing.T, ca *vault.CA, now time.Time, mod func(*x509.Certificate)) tls.Certificate {
	t.Helper()
	rootKey, _ := vaulttest.Keys(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "crafted"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{vault.PeerURI("crafted")},
	}
	mod(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Root(), &key.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}
}

// VerifyPeer takes only a peer certificate of this root.
func TestVerifyPeer(t *testing.T) {
	ca := vaulttest.CA(t, "a.example.test")
	now := time.Now()
	good, err := ca.IssuePeer("instance-a", now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := vault.VerifyPeer([]*x509.Certificate{good.Leaf}, ca.Root(), now); id != "instance-a" || err != nil {
		t.Fatalf("VerifyPeer(good) = %q, %v", id, err)
	}
	if id, err := vault.VerifyPeer([]*x509.Certificate{good.Leaf, ca.Root()}, ca.Root(), now); id != "instance-a" || err != nil {
		t.Fatalf("VerifyPeer(good and root) = %q, %v", id, err)
	}
	issue := func(mod func(*x509.Certificate)) *x509.Certificate {
		t.Helper()
		return craft(t, ca, now, mod).Leaf
	}
	if id, err := vault.VerifyPeer([]*x509.Certificate{issue(func(*x509.Certificate) {})}, ca.Root(), now); id != "crafted" || err != nil {
		t.Fatalf("the crafted template itself: %q, %v", id, err)
	}
	uri := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	expired, err := ca.IssuePeer("instance-a", now.Add(-48*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	other := foreignCA(t)
	otherPeer, err := other.IssuePeer("instance-a", now, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameKeyOther := vaulttest.CA(t, "b.example.test") // another root certificate with the same key
	sameKeyPeer, err := sameKeyOther.IssuePeer("instance-a", now, 0)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		chain []*x509.Certificate
		at    time.Time
	}{
		{"no certificate", nil, now},
		{"a long chain", []*x509.Certificate{good.Leaf, ca.Root(), ca.Root(), ca.Root(), ca.Root()}, now},
		{"expired", []*x509.Certificate{expired.Leaf}, now},
		{"not yet valid", []*x509.Certificate{good.Leaf}, now.Add(-2 * time.Hour)},
		{"another root", []*x509.Certificate{otherPeer.Leaf}, now},
		{"another root with the same key", []*x509.Certificate{sameKeyPeer.Leaf}, now},
		{"another root, sent with its root", []*x509.Certificate{otherPeer.Leaf, other.Root()}, now},
		{"the CIRA server certificate", []*x509.Certificate{ca.Server()}, now},
		{"the root itself", []*x509.Certificate{ca.Root()}, now},
		{"no URI", []*x509.Certificate{issue(func(c *x509.Certificate) { c.URIs = nil })}, now},
		{"two peer URIs", []*x509.Certificate{issue(func(c *x509.Certificate) { c.URIs = append(c.URIs, vault.PeerURI("other")) })}, now},
		{"another scheme", []*x509.Certificate{issue(func(c *x509.Certificate) { c.URIs = []*url.URL{uri("https://crafted")} })}, now},
		{"a path", []*x509.Certificate{issue(func(c *x509.Certificate) { c.URIs = []*url.URL{uri("presence-peer://crafted/x")} })}, now},
		{"a port", []*x509.Certificate{issue(func(c *x509.Certificate) { c.URIs = []*url.URL{uri("presence-peer://crafted:1")} })}, now},
		{"a user", []*x509.Certificate{issue(func(c *x509.Certificate) { c.URIs = []*url.URL{uri("presence-peer://u@crafted")} })}, now},
		{"a query", []*x509.Certificate{issue(func(c *x509.Certificate) { c.URIs = []*url.URL{uri("presence-peer://crafted?x")} })}, now},
		{"an invalid id", []*x509.Certificate{issue(func(c *x509.Certificate) { c.URIs = []*url.URL{uri("presence-peer://Crafted")} })}, now},
		{"server auth only", []*x509.Certificate{issue(func(c *x509.Certificate) { c.ExtKeyUsage = c.ExtKeyUsage[:1] })}, now},
		{"client auth only", []*x509.Certificate{issue(func(c *x509.Certificate) { c.ExtKeyUsage = c.ExtKeyUsage[1:] })}, now},
		{"any usage", []*x509.Certificate{issue(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} })}, now},
		{"a CA", []*x509.Certificate{issue(func(c *x509.Certificate) { c.IsCA = true })}, now},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := vault.VerifyPeer(tc.chain, ca.Root(), tc.at)
			if !errors.Is(err, vault.ErrNotPeer) || id != "" {
				t.Fatalf("VerifyPeer = %q, %v; want ErrNotPeer", id, err)
			}
		})
	}
}

// offering is a client that trusts any server and offers cert whatever the
// server asks for (crypto/tls would otherwise send no certificate that the
// server's list of CAs does not name).
func offering(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	}
}

// A certificate from another root is refused by both ends: a listener
// refuses such a client, and a dialer such a server.
func TestPeerOtherRootRefused(t *testing.T) {
	ca := vaulttest.CA(t, "a.example.test")
	a, b := newPeer(t, ca, "instance-a", nil), newPeer(t, ca, "instance-b", nil)
	srvCfg, _ := a.TLSConfigs()
	_, cliCfg := b.TLSConfigs()
	legit := startPeerServer(t, srvCfg)
	now := time.Now()
	for _, tc := range []struct {
		name string
		ca   *vault.CA
	}{
		{"another key", foreignCA(t)},
		{"the same key, another root certificate", vaulttest.CA(t, "b.example.test")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			intruder, err := tc.ca.IssuePeer("instance-b", now, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Listener: an intruder that trusts any server offers its
			// certificate.
			s, c := legit.dial(t, offering(intruder))
			var unknown x509.UnknownAuthorityError
			if !errors.As(s.err, &unknown) || c.err == nil {
				t.Errorf("the listener: server %v, client %v; want the intruder refused (unknown authority)", s.err, c.err)
			}
			// Dialer: an intruder listener that asks for any client
			// certificate.
			rogue := startPeerServer(t, &tls.Config{Certificates: []tls.Certificate{intruder}, ClientAuth: tls.RequireAnyClientCert})
			s, c = rogue.dial(t, cliCfg)
			if !errors.Is(c.err, vault.ErrNotPeer) || s.err == nil {
				t.Errorf("the dialer: client %v, server %v; want ErrNotPeer", c.err, s.err)
			}
		})
	}
}

// A certificate of this root that is not a peer certificate (the CIRA
// server certificate has no peer SAN and no client usage), or that has
// expired, is refused by both ends too.
func TestPeerNonPeerCertificatesRefused(t *testing.T) {
	ca := vaulttest.CA(t, "a.example.test")
	a, b := newPeer(t, ca, "instance-a", nil), newPeer(t, ca, "instance-b", nil)
	srvCfg, _ := a.TLSConfigs()
	_, cliCfg := b.TLSConfigs()
	legit := startPeerServer(t, srvCfg)
	expired, err := ca.IssuePeer("instance-b", time.Now().Add(-48*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	noSAN := craft(t, ca, time.Now(), func(c *x509.Certificate) { c.URIs = nil })
	for _, tc := range []struct {
		name string
		cert tls.Certificate
	}{
		{"the CIRA server certificate", ca.TLSCertificate()},
		{"both usages but no peer SAN", noSAN},
		{"an expired peer certificate", expired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := legit.dial(t, offering(tc.cert))
			if s.err == nil || c.err == nil {
				t.Errorf("the listener: server %v, client %v; want a refusal", s.err, c.err)
			}
			// crypto/tls refuses the first and last for their usage or
			// expiry; the listener's own check refuses the one it lets by.
			if tc.cert.Leaf == noSAN.Leaf && !errors.Is(s.err, vault.ErrNotPeer) {
				t.Errorf("the listener: %v; want ErrNotPeer", s.err)
			}
			rogue := startPeerServer(t, &tls.Config{Certificates: []tls.Certificate{tc.cert}, ClientAuth: tls.RequireAnyClientCert})
			s, c = rogue.dial(t, cliCfg)
			if !errors.Is(c.err, vault.ErrNotPeer) || s.err == nil {
				t.Errorf("the dialer: client %v, server %v; want ErrNotPeer", c.err, s.err)
			}
		})
	}
}

// Renewal swaps the certificate a running listener and dialer serve, with
// no new tls.Config: explicitly with Renew, and by itself at 2/3 of the
// life, judged at the handshake by the clock (as after a laptop's sleep).
func TestPeerRenewal(t *testing.T) {
	ca := vaulttest.CA(t, "a.example.test")
	clk := newClock()
	start := clk.now()
	a, b := newPeer(t, ca, "instance-a", clk), newPeer(t, ca, "instance-b", clk)
	if got, want := a.RenewAt(), start.Add(16*time.Hour); got.Sub(want).Abs() > time.Second {
		t.Fatalf("RenewAt = %s; want 2/3 of a day after issue, %s", got, want)
	}
	srvCfg, _ := a.TLSConfigs()
	_, cliCfg := b.TLSConfigs()
	srv := startPeerServer(t, srvCfg)
	served := func() (server, client *x509.Certificate) {
		t.Helper()
		s, c := srv.dial(t, cliCfg)
		if s.err != nil || c.err != nil {
			t.Fatalf("handshake at %s: server %v, client %v", clk.now().Sub(start), s.err, c.err)
		}
		return c.state.PeerCertificates[0], s.state.PeerCertificates[0]
	}
	s1, c1 := served()
	clk.advance(time.Hour)
	if s, c := served(); !s.Equal(s1) || !c.Equal(c1) {
		t.Fatal("the certificates changed before renewal")
	}

	if err := a.Renew(clk.now()); err != nil {
		t.Fatal(err)
	}
	s2, c2 := served()
	if s2.Equal(s1) || !c2.Equal(c1) {
		t.Fatal("Renew did not swap the listener's certificate, or changed the dialer's")
	}
	if cert, err := a.Certificate(); err != nil || !cert.Leaf.Equal(s2) {
		t.Fatalf("Certificate after Renew: %v", err)
	}

	// Past 2/3 of the dialer's life (issued at start) but not of the
	// listener's (renewed an hour later): only the dialer renews.
	clk.set(start.Add(16*time.Hour + time.Minute))
	s3, c3 := served()
	if !s3.Equal(s2) || c3.Equal(c2) {
		t.Fatal("at 16 h the dialer's certificate was not renewed, or the listener's was")
	}
	// Days later (the machines slept): both renew at the first handshake.
	clk.advance(72 * time.Hour)
	s4, c4 := served()
	if s4.Equal(s3) || c4.Equal(c3) {
		t.Fatal("after three days the certificates were not renewed")
	}
	if !s4.NotBefore.Equal(clk.now().UTC().Truncate(time.Second).Add(-time.Hour)) {
		t.Errorf("the renewed certificate is valid from %s; want an hour before now, %s", s4.NotBefore, clk.now())
	}
}

// When the root has expired, renewal fails; the current certificate is
// served while it lasts, then Certificate reports the error.
func TestPeerRenewalFailure(t *testing.T) {
	_, ca := newCA(t, "a.example.test", func(o *vault.CAOptions) { o.RootValidity = 30 * time.Hour })
	clk := newClock()
	p := newPeer(t, ca, "instance-a", clk)
	first, err := p.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(29 * time.Hour) // due, and the root ends within the new certificate's day
	second, err := p.Certificate()
	if err != nil || second == first || !second.Leaf.NotAfter.Equal(ca.Root().NotAfter) {
		t.Fatalf("renewal near the root's end: %v", err)
	}
	clk.advance(2 * time.Hour) // past the root: no renewal, and the current one has expired
	if _, err := p.Certificate(); err == nil {
		t.Fatal("Certificate after the root's expiry succeeded")
	}
	if err := p.Renew(clk.now()); err == nil {
		t.Fatal("Renew after the root's expiry succeeded")
	}
}

func TestNewPeerIdentityBadID(t *testing.T) {
	if _, err := vault.NewPeerIdentity(vaulttest.CA(t, "a.example.test"), "Not An Id", vault.PeerOptions{}); err == nil {
		t.Fatal("NewPeerIdentity accepted an invalid id")
	}
}
