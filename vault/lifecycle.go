package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// The certificate authority's life after InitCA: renewing the server
// certificate from the same root, importing an existing CA, checking the
// chain, and encrypted backups (backup.go). The root is what devices trust,
// so nothing here ever replaces it without being told to.

// Items of a renewal in progress: the new server pair is written here first,
// complete, then copied over the current pair. If the copy is interrupted,
// LoadCA finds a current pair that does not match and takes the next one.
const (
	itemNextServerKey  = "ca/server-next.key"
	itemNextServerCert = "ca/server-next.crt"
)

// RenewalWindow is how long before its expiry the server certificate should
// be renewed; [CA.RenewalDue] reports it.
const RenewalWindow = 30 * 24 * time.Hour

// RenewOptions configure [CA.Renew].
type RenewOptions struct {
	// Address is the MPS address for the new certificate; empty keeps the
	// current certificate's common name.
	Address string
	// Validity of the new certificate; zero means 5 years, never past the
	// root's expiry.
	Validity time.Duration
	// Key is used instead of a generated RSA-2048 key (tests).
	Key *rsa.PrivateKey
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Address returns the MPS address the server certificate is for (its
// common name).
func (ca *CA) Address() string { return ca.server.Subject.CommonName }

// RenewalDue reports whether the server certificate expires within
// RenewalWindow of now (or has expired).
func (ca *CA) RenewalDue(now time.Time) bool {
	return !now.Add(RenewalWindow).Before(ca.server.NotAfter)
}

// Renew issues a new server certificate and key from the same root and
// saves them in s, and returns the renewed CA. Devices keep trusting the
// root, so nothing changes on their side.
func (ca *CA) Renew(ctx context.Context, s Store, opts RenewOptions) (*CA, error) {
	addr := opts.Address
	if addr == "" {
		addr = ca.Address()
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	key := opts.Key
	var err error
	if key == nil {
		if key, err = rsa.GenerateKey(rand.Reader, serverKeyBits); err != nil {
			return nil, fmt.Errorf("vault: generate the server key: %w", err)
		}
	}
	if err := checkCAKey("server", key, serverKeyBits); err != nil {
		return nil, err
	}
	server, err := issueServer(ca.root, ca.rootKey, key, addr, now(), opts.Validity)
	if err != nil {
		return nil, err
	}
	if err := saveServerPair(ctx, s, server, key); err != nil {
		return nil, err
	}
	return &CA{SendRoot: ca.SendRoot, root: ca.root, rootKey: ca.rootKey, server: server, serverKey: key}, nil
}

// issueServer makes a server certificate for addr signed by root.
func issueServer(root *x509.Certificate, rootKey, key *rsa.PrivateKey, addr string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	ip, err := checkAddress(addr)
	if err != nil {
		return nil, err
	}
	start := now.UTC().Truncate(time.Second)
	end := start.AddDate(defaultServerYears, 0, 0)
	if validity > 0 {
		end = start.Add(validity)
	}
	if end.After(root.NotAfter) {
		end = root.NotAfter
	}
	if !end.After(start) {
		return nil, fmt.Errorf("vault: the root expired on %s: a new root is needed (presence cert init --force)", root.NotAfter.UTC().Format(time.DateOnly))
	}
	tmpl := serverTemplate(addr, ip, start, end)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("vault: create the server certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// serverTemplate is the server certificate AMT accepts (see InitCA).
func serverTemplate(addr string, ip netip.Addr, start, end time.Time) *x509.Certificate {
	t := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: addr, Organization: []string{"Presence"}},
		NotBefore:             start.Add(-backdate),
		NotAfter:              end,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions:       []pkix.Extension{{Id: oidNetscapeCertType, Value: nsCertTypeSSLServer}},
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	if ip.IsValid() {
		t.IPAddresses = []net.IP{ip.AsSlice()}
	} else {
		t.DNSNames = []string{addr}
	}
	return t
}

// saveServerPair stores a new server key and certificate: first as the
// next pair, complete, then over the current pair, then it drops the next
// pair. An interruption at any point leaves a loadable CA (see LoadCA).
func saveServerPair(ctx context.Context, s Store, cert *x509.Certificate, key *rsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("vault: encode the server key: %w", err)
	}
	for _, it := range []struct {
		key   string
		value []byte
	}{
		{itemNextServerKey, keyDER}, {itemNextServerCert, cert.Raw},
		{itemServerKey, keyDER}, {itemServerCert, cert.Raw},
	} {
		if err := s.Set(ctx, it.key, it.value); err != nil {
			return fmt.Errorf("vault: saving the new server certificate stopped half way (the current one still works; run the command again): %w", err)
		}
	}
	for _, k := range []string{itemNextServerCert, itemNextServerKey} {
		if err := s.Delete(ctx, k); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// loadNextServer reads the next server pair left by an interrupted renewal,
// if it is complete and issued by root.
func loadNextServer(ctx context.Context, s Store, root *x509.Certificate) (*x509.Certificate, *rsa.PrivateKey, bool) {
	certDER, err := s.Get(ctx, itemNextServerCert)
	if err != nil {
		return nil, nil, false
	}
	keyDER, err := s.Get(ctx, itemNextServerKey)
	if err != nil {
		return nil, nil, false
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil || cert.IsCA || cert.CheckSignatureFrom(root) != nil {
		return nil, nil, false
	}
	key, err := parseRSAKey(keyDER, cert)
	if err != nil {
		return nil, nil, false
	}
	return cert, key, true
}

// ImportOptions configure [ImportCA]. Every field is PEM.
type ImportOptions struct {
	// RootCert and RootKey are an existing MPS root (required): a CA
	// certificate and its RSA private key (PKCS#8 or PKCS#1).
	RootCert, RootKey []byte
	// ServerCert and ServerKey are an existing server pair issued by the
	// root; without them a new server certificate is issued for Address.
	ServerCert, ServerKey []byte
	// Address is the MPS address for a new server certificate.
	Address string
	// Force replaces an existing root in the store.
	Force bool
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// ImportCA saves an existing certificate authority in s, for example the
// one an Intel toolkit MPS used, so that devices provisioned with that root
// connect to Presence unchanged. Like InitCA it refuses to replace a
// different root without Force.
func ImportCA(ctx context.Context, s Store, opts ImportOptions) (*CA, error) {
	root, err := parsePEMCert("root certificate", opts.RootCert)
	if err != nil {
		return nil, err
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return nil, errors.New("vault: the root certificate is not a self-signed CA certificate")
	}
	rootKey, err := parsePEMKey("root key", opts.RootKey, root)
	if err != nil {
		return nil, err
	}
	if old, err := s.Get(ctx, itemRootCert); err == nil && !opts.Force && !bytes.Equal(old, root.Raw) {
		msg := "vault: an MPS root certificate already exists"
		if c, err := x509.ParseCertificate(old); err == nil {
			msg += " (SHA-256 " + fingerprint(c) + ")"
		}
		return nil, wrapf(ErrRootExists, "%s: devices trust it; to replace it with the imported one, add --force", msg)
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	var server *x509.Certificate
	var serverKey *rsa.PrivateKey
	switch {
	case len(opts.ServerCert) > 0 || len(opts.ServerKey) > 0:
		if server, err = parsePEMCert("server certificate", opts.ServerCert); err != nil {
			return nil, err
		}
		if server.IsCA || server.CheckSignatureFrom(root) != nil {
			return nil, errors.New("vault: the server certificate is not issued by the root certificate")
		}
		if serverKey, err = parsePEMKey("server key", opts.ServerKey, server); err != nil {
			return nil, err
		}
	case opts.Address == "":
		return nil, errors.New("vault: give the server certificate and key, or the MPS address (--cn) to issue a new one")
	default:
		now := time.Now
		if opts.Now != nil {
			now = opts.Now
		}
		if serverKey, err = rsa.GenerateKey(rand.Reader, serverKeyBits); err != nil {
			return nil, fmt.Errorf("vault: generate the server key: %w", err)
		}
		if server, err = issueServer(root, rootKey, serverKey, opts.Address, now(), 0); err != nil {
			return nil, err
		}
	}
	rootKeyDER, err := x509.MarshalPKCS8PrivateKey(rootKey)
	if err != nil {
		return nil, err
	}
	serverKeyDER, err := x509.MarshalPKCS8PrivateKey(serverKey)
	if err != nil {
		return nil, err
	}
	items := []struct {
		key   string
		value []byte
	}{{itemRootKey, rootKeyDER}, {itemServerKey, serverKeyDER}, {itemServerCert, server.Raw}, {itemRootCert, root.Raw}}
	for _, it := range items {
		if err := checkSize(it.key, it.value, ItemLimit); err != nil {
			return nil, err
		}
	}
	for _, it := range items {
		if err := s.Set(ctx, it.key, it.value); err != nil {
			return nil, fmt.Errorf("vault: saving the imported certificate authority stopped half way, run the import again: %w", err)
		}
	}
	return &CA{root: root, rootKey: rootKey, server: server, serverKey: serverKey}, nil
}

func parsePEMCert(what string, b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("vault: the %s is not a PEM CERTIFICATE", what)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("vault: the %s: %w", what, err)
	}
	return c, nil
}

// parsePEMKey reads an RSA key (PKCS#8 or PKCS#1) that must belong to cert.
// Errors never quote the key.
func parsePEMKey(what string, b []byte, cert *x509.Certificate) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("vault: the %s is not PEM", what)
	}
	der := blk.Bytes
	if blk.Type == "RSA PRIVATE KEY" {
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("vault: the %s is not a valid RSA key", what)
		}
		if der, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			return nil, err
		}
	} else if blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("vault: the %s is a PEM %q block; want PRIVATE KEY or RSA PRIVATE KEY (unencrypted)", what, blk.Type)
	}
	k, err := parseRSAKey(der, cert)
	if err != nil {
		return nil, fmt.Errorf("vault: the %s: %w", what, err)
	}
	return k, nil
}

// Problem is one thing wrong with the certificates, as a plain sentence.
type Problem struct {
	Severe bool // AMT will refuse the MPS, or soon will
	Text   string
}

func (p Problem) String() string { return p.Text }

// Doctor checks the chain as AMT will see it when it connects to address
// (empty: the server certificate's common name): RSA keys, common name and
// SAN, extended key usage, key usage, Netscape certificate type, signature
// algorithm and expiry. No problem means AMT should accept it.
func (ca *CA) Doctor(address string, now time.Time) []Problem {
	var ps []Problem
	add := func(severe bool, format string, a ...any) {
		ps = append(ps, Problem{Severe: severe, Text: fmt.Sprintf(format, a...)})
	}
	root, srv := ca.root, ca.server
	if address == "" {
		address = srv.Subject.CommonName
	}
	if k, ok := root.PublicKey.(*rsa.PublicKey); !ok {
		add(true, "The root key is not RSA; AMT only accepts RSA certificates.")
	} else if k.N.BitLen() < 2048 {
		add(true, "The root key has %d bits; AMT needs at least 2048.", k.N.BitLen())
	}
	if k, ok := srv.PublicKey.(*rsa.PublicKey); !ok {
		add(true, "The server key is not RSA; AMT only accepts RSA certificates.")
	} else if k.N.BitLen() < 2048 {
		add(true, "The server key has %d bits; AMT needs at least 2048.", k.N.BitLen())
	}
	if !strings.EqualFold(srv.Subject.CommonName, address) {
		add(true, "The server certificate's common name is %q, but devices are configured to reach %q; AMT compares the two (presence cert renew --cn %s).", srv.Subject.CommonName, address, address)
	}
	if srv.VerifyHostname(address) != nil {
		add(false, "The server certificate has no subject alternative name for %q (renew it: presence cert renew --cn %s).", address, address)
	}
	if !slices.Contains(srv.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		add(true, "The server certificate lacks the TLS server authentication extended key usage.")
	}
	if srv.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
		add(true, "The server certificate lacks the key encipherment key usage that RSA key exchange needs (older AMT uses it).")
	}
	if srv.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		add(false, "The server certificate lacks the digital signature key usage that ECDHE key exchange needs.")
	}
	hasNS := false
	for _, e := range srv.Extensions {
		hasNS = hasNS || e.Id.Equal(oidNetscapeCertType)
	}
	if !hasNS {
		add(false, "The server certificate has no Netscape certificate type (SSL server); some AMT firmware rejects an MPS without it.")
	}
	for _, c := range []struct {
		name string
		cert *x509.Certificate
	}{{"root", root}, {"server", srv}} {
		switch c.cert.SignatureAlgorithm {
		case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA:
		default:
			add(true, "The %s certificate is signed with %s; AMT 11 and later expect SHA-256 or SHA-384 with RSA.", c.name, c.cert.SignatureAlgorithm)
		}
		switch {
		case now.After(c.cert.NotAfter):
			add(true, "The %s certificate expired on %s.", c.name, c.cert.NotAfter.UTC().Format(time.DateOnly))
		case now.Before(c.cert.NotBefore):
			add(true, "The %s certificate is not valid before %s (check this machine's clock).", c.name, c.cert.NotBefore.UTC().Format(time.DateOnly))
		case c.name == "server" && ca.RenewalDue(now):
			add(false, "The server certificate expires on %s: renew it now (presence cert renew); devices keep trusting the root.", c.cert.NotAfter.UTC().Format(time.DateOnly))
		case c.name == "root" && !now.Add(365*24*time.Hour).Before(c.cert.NotAfter):
			add(false, "The root certificate expires on %s; every device will need a new root before then.", c.cert.NotAfter.UTC().Format(time.DateOnly))
		}
	}
	if srv.CheckSignatureFrom(root) != nil {
		add(true, "The server certificate is not signed by the root.")
	}
	return ps
}
