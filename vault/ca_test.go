package vault_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

var caItems = []string{"ca/root.crt", "ca/root.key", "ca/server.crt", "ca/server.key"}

func cachedKeyOpts(t *testing.T, address string) vault.CAOptions {
	root, server := vaulttest.Keys(t)
	return vault.CAOptions{Address: address, RootKey: root, ServerKey: server}
}

// snapshot returns every item of s.
func snapshot(t *testing.T, s vault.Store) map[string][]byte {
	t.Helper()
	keys, err := s.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string][]byte)
	for _, k := range keys {
		if m[k], err = s.Get(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func sameSnapshot(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// TestInitCAGeneratesKeys is the one test that pays for fresh RSA keys.
func TestInitCAGeneratesKeys(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := vault.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := vault.InitCA(ctx, s, vault.CAOptions{Address: "mps.example.test"})
	if err != nil {
		t.Fatalf("InitCA = %v", err)
	}
	checkCA(t, ca, "mps.example.test", time.Now())
	if n := ca.Root().PublicKey.(*rsa.PublicKey).N.BitLen(); n != 3072 {
		t.Errorf("root key has %d bits; want 3072", n)
	}
	if n := ca.Server().PublicKey.(*rsa.PublicKey).N.BitLen(); n != 2048 {
		t.Errorf("server key has %d bits; want 2048", n)
	}
	for _, k := range caItems {
		v, err := s.Get(ctx, k)
		if err != nil || len(v) == 0 || len(v) > vault.ItemLimit {
			t.Errorf("item %s: %d bytes, %v; want 1..%d", k, len(v), err, vault.ItemLimit)
		}
		t.Logf("%s: %d bytes", k, len(v))
	}

	// The same CA comes back from the disk.
	r, err := vault.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := vault.LoadCA(ctx, r)
	if err != nil {
		t.Fatalf("LoadCA = %v", err)
	}
	if !loaded.Root().Equal(ca.Root()) || !loaded.Server().Equal(ca.Server()) {
		t.Error("LoadCA returned other certificates than InitCA made")
	}
	got, want := loaded.TLSCertificate().PrivateKey.(*rsa.PrivateKey), ca.TLSCertificate().PrivateKey.(*rsa.PrivateKey)
	if !got.Equal(want) {
		t.Error("LoadCA returned another server key than InitCA made")
	}
}

// checkCA checks every property apf.md §6.2 asks of the certificates.
func checkCA(t *testing.T, ca *vault.CA, address string, now time.Time) {
	t.Helper()
	root, server := ca.Root(), ca.Server()

	// Root.
	if !root.IsCA || !root.BasicConstraintsValid || root.MaxPathLen != 0 || !root.MaxPathLenZero {
		t.Errorf("root basic constraints: CA %v valid %v pathlen %d zero %v; want CA with pathlen 0",
			root.IsCA, root.BasicConstraintsValid, root.MaxPathLen, root.MaxPathLenZero)
	}
	if root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("root key usage = %b; want certSign|cRLSign", root.KeyUsage)
	}
	if len(root.ExtKeyUsage) != 0 {
		t.Errorf("root ext key usage = %v; want none", root.ExtKeyUsage)
	}
	if !regexp.MustCompile(`^Presence MPS Root [0-9a-f]{8}$`).MatchString(root.Subject.CommonName) ||
		!slices.Equal(root.Subject.Organization, []string{"Presence"}) {
		t.Errorf("root subject = %q; want CN=Presence MPS Root <id>, O=Presence", root.Subject)
	}
	if !bytes.Equal(root.RawIssuer, root.RawSubject) || root.CheckSignatureFrom(root) != nil {
		t.Error("root is not self-signed")
	}
	if n := root.SerialNumber.BitLen(); n < 121 || n > 128 {
		t.Errorf("root serial has %d bits; want a random 128-bit number", n)
	}

	// Server.
	if server.Subject.CommonName != address {
		t.Errorf("server CN = %q; want %q", server.Subject.CommonName, address)
	}
	if ip := net.ParseIP(address); ip != nil {
		if len(server.IPAddresses) != 1 || !server.IPAddresses[0].Equal(ip) || len(server.DNSNames) != 0 {
			t.Errorf("server SANs = IP %v DNS %q; want only IP %s", server.IPAddresses, server.DNSNames, address)
		}
	} else if !slices.Equal(server.DNSNames, []string{address}) || len(server.IPAddresses) != 0 {
		t.Errorf("server SANs = IP %v DNS %q; want only DNS %s", server.IPAddresses, server.DNSNames, address)
	}
	if len(server.URIs) != 0 || len(server.EmailAddresses) != 0 {
		t.Errorf("server has URI or email SANs: %v %v", server.URIs, server.EmailAddresses)
	}
	if !slices.Equal(server.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || len(server.UnknownExtKeyUsage) != 0 {
		t.Errorf("server ext key usage = %v %v; want serverAuth", server.ExtKeyUsage, server.UnknownExtKeyUsage)
	}
	if server.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("server key usage = %b; want digitalSignature|keyEncipherment", server.KeyUsage)
	}
	if !server.BasicConstraintsValid || server.IsCA {
		t.Errorf("server basic constraints: valid %v CA %v; want CA:false", server.BasicConstraintsValid, server.IsCA)
	}
	if server.CheckSignatureFrom(root) != nil || !bytes.Equal(server.RawIssuer, root.RawSubject) {
		t.Error("server certificate is not issued by the root")
	}
	if n := server.SerialNumber.BitLen(); n < 121 || n > 128 {
		t.Errorf("server serial has %d bits; want a random 128-bit number", n)
	}
	var ns *pkix.Extension
	for i, e := range server.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 1}) {
			ns = &server.Extensions[i]
		}
	}
	if ns == nil {
		t.Error("server certificate lacks the Netscape cert type extension")
	} else if ns.Critical || !bytes.Equal(ns.Value, []byte{0x03, 0x02, 0x06, 0x40}) {
		t.Errorf("Netscape cert type: critical %v value % x; want non-critical 03 02 06 40", ns.Critical, ns.Value)
	}

	// Both.
	for _, c := range []*x509.Certificate{root, server} {
		if c.SignatureAlgorithm != x509.SHA256WithRSA || c.PublicKeyAlgorithm != x509.RSA {
			t.Errorf("%s: %v with %v; want SHA256-RSA with an RSA key", c.Subject.CommonName, c.SignatureAlgorithm, c.PublicKeyAlgorithm)
		}
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			t.Errorf("%s: valid %v to %v; want %v in range", c.Subject.CommonName, c.NotBefore, c.NotAfter, now)
		}
	}
	if server.NotAfter.After(root.NotAfter) {
		t.Errorf("server expires %v, after the root %v", server.NotAfter, root.NotAfter)
	}

	// A verifier that trusts only the root accepts the server certificate for the address.
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := server.Verify(x509.VerifyOptions{DNSName: address, Roots: pool, CurrentTime: now}); err != nil {
		t.Errorf("verify server certificate for %q: %v", address, err)
	}
}

func TestInitCAProperties(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	for _, addr := range []string{"mps.example.test", "MPS-1.Example.Test", "mps", "192.0.2.10", "2001:db8::1"} {
		t.Run(addr, func(t *testing.T) {
			opts := cachedKeyOpts(t, addr)
			opts.Now = func() time.Time { return now }
			ca, err := vault.InitCA(t.Context(), vault.NewMemory(0), opts)
			if err != nil {
				t.Fatalf("InitCA = %v", err)
			}
			checkCA(t, ca, addr, now)
			root, server := ca.Root(), ca.Server()
			if want := now.Add(-24 * time.Hour); !root.NotBefore.Equal(want) || !server.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %v, %v; want %v", root.NotBefore, server.NotBefore, want)
			}
			if want := now.AddDate(20, 0, 0); !root.NotAfter.Equal(want) {
				t.Errorf("root NotAfter = %v; want %v", root.NotAfter, want)
			}
			if want := now.AddDate(5, 0, 0); !server.NotAfter.Equal(want) {
				t.Errorf("server NotAfter = %v; want %v", server.NotAfter, want)
			}
		})
	}
}

func TestInitCAValidity(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := cachedKeyOpts(t, "mps.example.test")
	opts.Now = func() time.Time { return now }
	opts.RootValidity = 365 * 24 * time.Hour
	opts.ServerValidity = 3 * 365 * 24 * time.Hour
	ca, err := vault.InitCA(t.Context(), vault.NewMemory(0), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := now.Add(opts.RootValidity)
	if !ca.Root().NotAfter.Equal(want) || !ca.Server().NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v (root), %v (server); want both %v", ca.Root().NotAfter, ca.Server().NotAfter, want)
	}
}

func TestInitCABadInput(t *testing.T) {
	ctx := t.Context()
	for _, addr := range []string{
		"", "mps.example.test:4433", "https://mps.example.test/", "[::1]", "fe80::1%eth0", "mps.example.test.",
		"-mps.example.test", "mps..example", "mps example", "mps_1.example", "192.168.1", "10.0.0.256",
		strings.Repeat("a", 60) + ".test",
	} {
		s := vault.NewMemory(0)
		if _, err := vault.InitCA(ctx, s, cachedKeyOpts(t, addr)); err == nil {
			t.Errorf("InitCA(address %q) succeeded", addr)
		}
		if keys, _ := s.List(ctx, ""); len(keys) != 0 {
			t.Errorf("InitCA(address %q) wrote %q", addr, keys)
		}
	}
	root, server := vaulttest.Keys(t)
	for name, opts := range map[string]vault.CAOptions{
		"2048-bit root": {Address: "mps.example.test", RootKey: server, ServerKey: server},
		"invalid key":   {Address: "mps.example.test", RootKey: &rsa.PrivateKey{PublicKey: root.PublicKey}, ServerKey: server},
	} {
		if _, err := vault.InitCA(ctx, vault.NewMemory(0), opts); err == nil {
			t.Errorf("InitCA with a %s succeeded", name)
		}
	}
}

func TestInitCARefusesToReplace(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := vault.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	first, err := vault.InitCA(ctx, s, cachedKeyOpts(t, "mps.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)

	_, err = vault.InitCA(ctx, s, cachedKeyOpts(t, "other.example.test"))
	if !errors.Is(err, vault.ErrRootExists) || !strings.Contains(err.Error(), first.RootFingerprintSHA256()) {
		t.Fatalf("second InitCA = %v; want ErrRootExists naming the fingerprint", err)
	}
	if !sameSnapshot(before, snapshot(t, s)) {
		t.Error("a refused InitCA changed the store")
	}

	reopened, err := vault.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := vault.LoadCA(ctx, reopened)
	if err != nil {
		t.Fatalf("LoadCA = %v", err)
	}
	if loaded.RootFingerprintSHA256() != first.RootFingerprintSHA256() || !loaded.Server().Equal(first.Server()) {
		t.Error("LoadCA after a refused InitCA returned another CA")
	}

	opts := cachedKeyOpts(t, "other.example.test")
	opts.Force = true
	replaced, err := vault.InitCA(ctx, reopened, opts)
	if err != nil {
		t.Fatalf("InitCA with Force = %v", err)
	}
	if replaced.RootFingerprintSHA256() == first.RootFingerprintSHA256() {
		t.Error("InitCA with Force kept the old root")
	}
	again, err := vault.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err = vault.LoadCA(ctx, again)
	if err != nil {
		t.Fatalf("LoadCA after Force = %v", err)
	}
	if loaded.RootFingerprintSHA256() != replaced.RootFingerprintSHA256() || loaded.Server().Subject.CommonName != "other.example.test" {
		t.Errorf("LoadCA after Force = root %s, CN %q; want the new CA", loaded.RootFingerprintSHA256(), loaded.Server().Subject.CommonName)
	}
}

func TestLoadCAMissing(t *testing.T) {
	_, err := vault.LoadCA(t.Context(), vault.NewMemory(0))
	if !errors.Is(err, vault.ErrNotFound) || !strings.Contains(err.Error(), "presence cert init --cn ADDRESS") {
		t.Errorf("LoadCA(empty store) = %v; want ErrNotFound telling to run cert init", err)
	}
}

func TestLoadCADamaged(t *testing.T) {
	ctx := t.Context()
	good := vault.NewMemory(0)
	if _, err := vault.InitCA(ctx, good, cachedKeyOpts(t, "mps.example.test")); err != nil {
		t.Fatal(err)
	}
	items := snapshot(t, good)
	// A server certificate from another root with the same keys.
	foreign := vaulttest.CA(t, "mps.example.test").Server().Raw

	flip := func(b []byte) []byte {
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0x01
		return b
	}
	type change struct {
		item  string
		value []byte // nil: delete the item
	}
	cases := map[string]change{
		"server.crt foreign":  {"ca/server.crt", foreign},
		"root.key is server":  {"ca/root.key", items["ca/server.key"]},
		"server.key is root":  {"ca/server.key", items["ca/root.key"]},
		"root.crt is server":  {"ca/root.crt", items["ca/server.crt"]},
		"server.crt is root":  {"ca/server.crt", items["ca/root.crt"]},
		"root.key missing":    {"ca/root.key", nil},
		"server.key missing":  {"ca/server.key", nil},
		"server.crt missing":  {"ca/server.crt", nil},
		"root.key as PKCS#1":  {"ca/root.key", x509.MarshalPKCS1PrivateKey(mustRootKey(t))},
		"server.key is ECDSA": {"ca/server.key", ecdsaPKCS8(t)},
	}
	for _, item := range caItems {
		cases[item+" truncated"] = change{item, items[item][:len(items[item])/2]}
		cases[item+" garbage"] = change{item, []byte("garbage")}
		cases[item+" flipped"] = change{item, flip(items[item])}
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := vault.NewMemory(0)
			for k, v := range items {
				if err := s.Set(ctx, k, v); err != nil {
					t.Fatal(err)
				}
			}
			if c.value == nil {
				if err := s.Delete(ctx, c.item); err != nil {
					t.Fatal(err)
				}
			} else if err := s.Set(ctx, c.item, c.value); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, s)
			ca, err := vault.LoadCA(ctx, s)
			if !errors.Is(err, vault.ErrCorrupt) || !strings.Contains(err.Error(), c.item) {
				t.Errorf("LoadCA = %v, %v; want ErrCorrupt naming %s", ca, err, c.item)
			}
			if _, err := vault.InitCA(ctx, s, cachedKeyOpts(t, "mps.example.test")); !errors.Is(err, vault.ErrRootExists) {
				t.Errorf("InitCA on a damaged CA = %v; want ErrRootExists", err)
			}
			if !sameSnapshot(before, snapshot(t, s)) {
				t.Error("the store changed")
			}
		})
	}
}

func mustRootKey(t *testing.T) *rsa.PrivateKey {
	root, _ := vaulttest.Keys(t)
	return root
}

func ecdsaPKCS8(t *testing.T) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadCADamagedFile(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := vault.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.InitCA(ctx, s, cachedKeyOpts(t, "mps.example.test")); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("ca/server.key"))
	path := filepath.Join(dir, hex.EncodeToString(sum[:])+".item")
	if err := os.WriteFile(path, []byte("zeroed by a disk error"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.LoadCA(ctx, s); !errors.Is(err, vault.ErrCorrupt) || !strings.Contains(err.Error(), "ca/server.key") {
		t.Errorf("LoadCA with a damaged file = %v; want ErrCorrupt naming ca/server.key", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "zeroed by a disk error" {
		t.Errorf("damaged file now holds %q, %v; want it untouched", b, err)
	}
}

func TestCAAccessors(t *testing.T) {
	ca := vaulttest.CA(t, "mps.example.test")
	fp := ca.RootFingerprintSHA256()
	sum := sha256.Sum256(ca.Root().Raw)
	if want := strings.ToUpper(hex.EncodeToString(sum[:])); strings.ReplaceAll(fp, ":", "") != want ||
		!regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Errorf("RootFingerprintSHA256() = %s; want colon-separated %s", fp, want)
	}

	block, rest := pem.Decode(ca.RootPEM())
	if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, ca.Root().Raw) || len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("RootPEM() = %q; want one CERTIFICATE block of the root", ca.RootPEM())
	}

	c := ca.TLSCertificate()
	if len(c.Certificate) != 1 || !bytes.Equal(c.Certificate[0], ca.Server().Raw) || c.Leaf != ca.Server() {
		t.Errorf("TLSCertificate() chain has %d certificates; want the server certificate only", len(c.Certificate))
	}
	if k, ok := c.PrivateKey.(*rsa.PrivateKey); !ok || !k.PublicKey.Equal(ca.Server().PublicKey) {
		t.Error("TLSCertificate() key does not match the server certificate")
	}
	ca.SendRoot = true
	if c := ca.TLSCertificate(); len(c.Certificate) != 2 || !bytes.Equal(c.Certificate[1], ca.Root().Raw) {
		t.Errorf("TLSCertificate() with SendRoot has %d certificates; want server and root", len(c.Certificate))
	}

	info := ca.Info()
	if info.Root.SHA256 != fp || info.Root.Key != "RSA 3072" || info.Server.Key != "RSA 2048" ||
		!slices.Equal(info.Server.SANs, []string{"DNS:mps.example.test"}) || !info.Server.NotAfter.Equal(ca.Server().NotAfter) {
		t.Errorf("Info() = %+v", info)
	}
	text := info.String()
	for _, want := range []string{fp, info.Server.SHA256, "CN=mps.example.test", "DNS:mps.example.test", ca.Root().Subject.CommonName,
		"RSA 3072", "RSA 2048", "SHA256-RSA", ca.Server().NotAfter.UTC().Format("2006-01-02 15:04:05")} {
		if !strings.Contains(text, want) {
			t.Errorf("Info().String() lacks %q:\n%s", want, text)
		}
	}
	if ip := vaulttest.CA(t, "192.0.2.1").Info(); !slices.Equal(ip.Server.SANs, []string{"IP:192.0.2.1"}) {
		t.Errorf("Info().Server.SANs = %q; want [IP:192.0.2.1]", ip.Server.SANs)
	}
}

// handshake runs a TLS handshake over loopback between a server with cfg
// and a client with client, and returns the client's connection state.
func handshake(t *testing.T, cfg, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		srvErr <- tls.Server(c, cfg).HandshakeContext(context.Background())
	}()
	d := tls.Dialer{Config: client}
	conn, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	var st tls.ConnectionState
	if err == nil {
		st = conn.(*tls.Conn).ConnectionState()
		conn.Close()
	}
	serr := <-srvErr
	if err == nil && serr != nil {
		t.Errorf("server handshake: %v", serr)
	}
	return st, err
}

func TestCATLSHandshake(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "mps.example.test"} {
		t.Run(addr, func(t *testing.T) {
			ca := vaulttest.CA(t, addr)
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca.RootPEM()) {
				t.Fatal("RootPEM does not parse")
			}
			server := &tls.Config{
				Certificates: []tls.Certificate{ca.TLSCertificate()},
				MinVersion:   tls.VersionTLS10,
				// What AMT needs: RSA key exchange and ECDHE-RSA, CBC for old firmware.
				CipherSuites: []uint16{
					tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
					tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA,
				},
			}
			for _, tc := range []struct {
				name    string
				version uint16
				suite   uint16
			}{
				{"TLS 1.3", tls.VersionTLS13, 0},
				{"TLS 1.2 RSA key exchange", tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256},
				{"TLS 1.2 ECDHE-RSA", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
				{"TLS 1.0 RSA CBC", tls.VersionTLS10, tls.TLS_RSA_WITH_AES_128_CBC_SHA},
			} {
				client := &tls.Config{RootCAs: pool, ServerName: addr, MinVersion: tc.version, MaxVersion: tc.version}
				if tc.suite != 0 {
					client.CipherSuites = []uint16{tc.suite}
				}
				st, err := handshake(t, server, client)
				if err != nil {
					t.Errorf("%s: handshake = %v", tc.name, err)
					continue
				}
				if st.Version != tc.version || tc.suite != 0 && st.CipherSuite != tc.suite {
					t.Errorf("%s: negotiated %s %s", tc.name, tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
				}
				if len(st.PeerCertificates) != 1 || !st.PeerCertificates[0].Equal(ca.Server()) {
					t.Errorf("%s: server sent %d certificates; want the server certificate", tc.name, len(st.PeerCertificates))
				}
			}

			// A client that trusts another CA refuses the server.
			other := x509.NewCertPool()
			other.AddCert(otherRoot(t))
			_, err := handshake(t, server, &tls.Config{RootCAs: other, ServerName: addr})
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				t.Errorf("handshake trusting another CA = %v; want UnknownAuthorityError", err)
			}

			// So does one that expects another address.
			_, err = handshake(t, server, &tls.Config{RootCAs: pool, ServerName: "elsewhere.example.test"})
			var host x509.HostnameError
			if !errors.As(err, &host) {
				t.Errorf("handshake for another name = %v; want HostnameError", err)
			}

			// With SendRoot, the chain holds the root too.
			ca.SendRoot = true
			server.Certificates = []tls.Certificate{ca.TLSCertificate()}
			st, err := handshake(t, server, &tls.Config{RootCAs: pool, ServerName: addr})
			if err != nil || len(st.PeerCertificates) != 2 || !st.PeerCertificates[1].Equal(ca.Root()) {
				t.Errorf("handshake with SendRoot = %d certificates, %v; want server and root", len(st.PeerCertificates), err)
			}
		})
	}
}

// otherRoot returns an unrelated self-signed CA certificate.
func otherRoot(t *testing.T) *x509.Certificate {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Presence MPS Root 00000000"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
