package vault

import (
	"bytes"
	"context"
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
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"time"
)

// Store keys of the certificate authority. The root certificate is written
// last and is what marks a CA as present.
const (
	itemRootKey    = "ca/root.key"
	itemRootCert   = "ca/root.crt"
	itemServerKey  = "ca/server.key"
	itemServerCert = "ca/server.crt"
)

// Key sizes. The root is RSA-3072 as in the Intel toolkit's MPS; the server
// key is RSA-2048, the size both the toolkit's MPS and MeshCentral present
// to AMT. AMT does not take ECDSA MPS certificates as far as anyone has
// verified, so RSA it is.
const (
	rootKeyBits   = 3072
	serverKeyBits = 2048
)

// Default validity periods.
//
// The server certificate is seen by nothing but AMT firmware, so browser
// rules (398 days) do not apply. When it expires every device fails to
// connect and AMT shows no error, on machines nobody is watching; and its key
// is kept beside the root key, so a short life would limit little that a
// thief of the vault could not redo. Five years balances that against key
// rotation; renewing it keeps the root, so devices are not touched.
const (
	defaultRootYears   = 20
	defaultServerYears = 5
	// backdate allows for AMT clocks that run behind: the platform RTC is often
	// hours off, for example when it holds local time rather than UTC.
	backdate = 24 * time.Hour
)

// oidNetscapeCertType is the Netscape certificate type extension, and
// nsCertTypeSSLServer its DER value: BIT STRING {sslServer(1)}. AMT 12.0.92
// was reported to reject an MPS certificate without it (alert 46).
var (
	oidNetscapeCertType = asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 1}
	nsCertTypeSSLServer = []byte{0x03, 0x02, 0x06, 0x40}
)

// ErrRootExists means [InitCA] found a root certificate and was not told to
// replace it.
var ErrRootExists = errors.New("vault: an MPS root certificate already exists")

// CAOptions configure [InitCA].
type CAOptions struct {
	// Address is the MPS address AMT devices are configured with: an IP
	// literal or a DNS name. It becomes the server certificate's common name,
	// which AMT compares with that address, and its subject alternative name.
	Address string
	// Force replaces an existing root. Every device trusting the old root must
	// then be provisioned with the new one.
	Force bool
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// RootValidity and ServerValidity are how long the certificates are valid
	// from now; zero means 20 years for the root and 5 for the server
	// certificate. The server certificate never outlives the root.
	RootValidity, ServerValidity time.Duration
	// RootKey and ServerKey, if set, are used instead of generated keys (of at
	// least 3072 and 2048 bits) — for importing keys, and for tests, since
	// RSA key generation is slow.
	RootKey, ServerKey *rsa.PrivateKey
}

// CA is the MPS certificate authority: a root certificate, which AMT devices
// trust, and the server certificate the CIRA listener presents. It is safe
// for concurrent use once SendRoot is set.
type CA struct {
	// SendRoot makes TLSCertificate send the root after the server
	// certificate. AMT accepts the server certificate alone, and that is the
	// default.
	SendRoot bool

	root, server       *x509.Certificate
	rootKey, serverKey *rsa.PrivateKey
}

// InitCA creates a root and a server certificate for opts.Address and saves
// them in s. If s already holds a root, InitCA returns an error wrapping
// [ErrRootExists] unless opts.Force is set.
//
// Both certificates are signed with SHA-256 with RSA. The Intel toolkit's MPS
// uses SHA-384; AMT 11 and later accept both, and SHA-256 is the choice that
// older firmware is most likely to accept.
func InitCA(ctx context.Context, s Store, opts CAOptions) (*CA, error) {
	ip, err := checkAddress(opts.Address)
	if err != nil {
		return nil, err
	}
	if err := checkCAKey("root", opts.RootKey, rootKeyBits); err != nil {
		return nil, err
	}
	if err := checkCAKey("server", opts.ServerKey, serverKeyBits); err != nil {
		return nil, err
	}
	old, err := s.Get(ctx, itemRootCert)
	switch {
	case err == nil && !opts.Force:
		msg := "vault: an MPS root certificate already exists"
		if c, err := x509.ParseCertificate(old); err == nil {
			msg += " (SHA-256 " + fingerprint(c) + ")"
		}
		return nil, wrapf(ErrRootExists, "%s: devices trust it, so keep it; to replace it and re-provision every device, run `presence cert init --force`", msg)
	case err != nil && !errors.Is(err, ErrNotFound):
		return nil, err
	}

	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	start := now().UTC().Truncate(time.Second)
	rootEnd := start.AddDate(defaultRootYears, 0, 0)
	if opts.RootValidity > 0 {
		rootEnd = start.Add(opts.RootValidity)
	}
	serverEnd := start.AddDate(defaultServerYears, 0, 0)
	if opts.ServerValidity > 0 {
		serverEnd = start.Add(opts.ServerValidity)
	}
	if serverEnd.After(rootEnd) {
		serverEnd = rootEnd
	}

	rootKey, serverKey := opts.RootKey, opts.ServerKey
	if rootKey == nil {
		if rootKey, err = rsa.GenerateKey(rand.Reader, rootKeyBits); err != nil {
			return nil, fmt.Errorf("vault: generate the root key: %w", err)
		}
	}
	if serverKey == nil {
		if serverKey, err = rsa.GenerateKey(rand.Reader, serverKeyBits); err != nil {
			return nil, fmt.Errorf("vault: generate the server key: %w", err)
		}
	}

	id := make([]byte, 4)
	rand.Read(id) // never fails, see crypto/rand.Read
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Presence MPS Root " + hex.EncodeToString(id), Organization: []string{"Presence"}},
		NotBefore:             start.Add(-backdate),
		NotAfter:              rootEnd,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("vault: create the root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, fmt.Errorf("vault: parse the new root certificate: %w", err)
	}

	serverTmpl := serverTemplate(opts.Address, ip, start, serverEnd)
	serverDER, err := x509.CreateCertificate(rand.Reader, serverTmpl, root, &serverKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("vault: create the server certificate: %w", err)
	}
	server, err := x509.ParseCertificate(serverDER)
	if err != nil {
		return nil, fmt.Errorf("vault: parse the new server certificate: %w", err)
	}

	rootKeyDER, err := x509.MarshalPKCS8PrivateKey(rootKey)
	if err != nil {
		return nil, fmt.Errorf("vault: encode the root key: %w", err)
	}
	serverKeyDER, err := x509.MarshalPKCS8PrivateKey(serverKey)
	if err != nil {
		return nil, fmt.Errorf("vault: encode the server key: %w", err)
	}
	// Check every size before writing anything, and write the root
	// certificate last: until it is written there is no CA.
	items := []struct {
		key   string
		value []byte
	}{
		{itemRootKey, rootKeyDER},
		{itemServerKey, serverKeyDER},
		{itemServerCert, serverDER},
		{itemRootCert, rootDER},
	}
	for _, it := range items {
		if err := checkSize(it.key, it.value, ItemLimit); err != nil {
			return nil, err
		}
	}
	for i, it := range items {
		if err := s.Set(ctx, it.key, it.value); err != nil {
			if i > 0 && opts.Force {
				return nil, fmt.Errorf("vault: saving the new certificate authority stopped half way, run `presence cert init --force` again: %w", err)
			}
			return nil, err
		}
	}
	return &CA{root: root, server: server, rootKey: rootKey, serverKey: serverKey}, nil
}

// LoadCA reads the certificate authority from s. If there is none, the error
// wraps [ErrNotFound]; if it is incomplete, damaged or inconsistent, the
// error wraps [ErrCorrupt]. LoadCA never creates or repairs anything.
func LoadCA(ctx context.Context, s Store) (*CA, error) {
	rootDER, err := s.Get(ctx, itemRootCert)
	if errors.Is(err, ErrNotFound) {
		return nil, wrapf(err, "vault: no MPS certificate yet: run `presence cert init --cn ADDRESS`")
	}
	if err != nil {
		return nil, caItemError(itemRootCert, err)
	}
	get := func(key string) ([]byte, error) {
		b, err := s.Get(ctx, key)
		if err != nil {
			return nil, caItemError(key, err)
		}
		return b, nil
	}
	rootKeyDER, err := get(itemRootKey)
	if err != nil {
		return nil, err
	}
	serverDER, err := get(itemServerCert)
	if err != nil {
		return nil, err
	}
	serverKeyDER, err := get(itemServerKey)
	if err != nil {
		return nil, err
	}

	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, damagedCA(itemRootCert, err)
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return nil, damagedCA(itemRootCert, errors.New("not a valid self-signed CA certificate"))
	}
	rootKey, err := parseRSAKey(rootKeyDER, root)
	if err != nil {
		return nil, damagedCA(itemRootKey, err)
	}
	server, serverKey, err := parseServerPair(serverDER, serverKeyDER, root)
	if err != nil {
		// A renewal interrupted while it overwrote the current pair left
		// the complete new pair beside it.
		if next, nextKey, ok := loadNextServer(ctx, s, root); ok {
			return &CA{root: root, server: next, rootKey: rootKey, serverKey: nextKey}, nil
		}
		return nil, err
	}
	return &CA{root: root, server: server, rootKey: rootKey, serverKey: serverKey}, nil
}

// parseServerPair checks a stored server certificate and key against root.
func parseServerPair(serverDER, serverKeyDER []byte, root *x509.Certificate) (*x509.Certificate, *rsa.PrivateKey, error) {
	server, err := x509.ParseCertificate(serverDER)
	if err != nil {
		return nil, nil, damagedCA(itemServerCert, err)
	}
	if server.IsCA || !bytes.Equal(server.RawIssuer, root.RawSubject) || server.CheckSignatureFrom(root) != nil {
		return nil, nil, damagedCA(itemServerCert, errors.New("not a server certificate issued by the root"))
	}
	serverKey, err := parseRSAKey(serverKeyDER, server)
	if err != nil {
		return nil, nil, damagedCA(itemServerKey, err)
	}
	return server, serverKey, nil
}

// TLSCertificate returns the server certificate and key for the CIRA
// listener's tls.Config, followed by the root if SendRoot is set.
func (ca *CA) TLSCertificate() tls.Certificate {
	chain := [][]byte{ca.server.Raw}
	if ca.SendRoot {
		chain = append(chain, ca.root.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: ca.serverKey, Leaf: ca.server}
}

// Root returns the root certificate. The caller must not modify it.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Server returns the server certificate. The caller must not modify it.
func (ca *CA) Server() *x509.Certificate { return ca.server }

// RootPEM returns the root certificate in PEM, as AMT's
// AddTrustedRootCertificate and `presence cert export-root` want it.
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
}

// RootFingerprintSHA256 returns the SHA-256 of the root certificate as
// colon-separated uppercase hex.
func (ca *CA) RootFingerprintSHA256() string { return fingerprint(ca.root) }

// CAInfo describes the two certificates of a [CA].
type CAInfo struct {
	Root, Server CertInfo
}

// CertInfo describes a certificate for people.
type CertInfo struct {
	Subject   string
	Issuer    string
	SANs      []string // "DNS:name" or "IP:address"
	Serial    string   // hex
	NotBefore time.Time
	NotAfter  time.Time
	Key       string // for example "RSA 3072"
	Signature string // signature algorithm
	SHA256    string // fingerprint, colon-separated uppercase hex
}

// Info describes the certificates.
func (ca *CA) Info() CAInfo {
	return CAInfo{Root: certInfo(ca.root), Server: certInfo(ca.server)}
}

// String renders the information as text, as `presence cert show` prints it.
func (i CAInfo) String() string {
	var b strings.Builder
	i.Root.write(&b, "Root certificate (install it in AMT as a trusted root)")
	b.WriteByte('\n')
	i.Server.write(&b, "Server certificate (the CIRA listener presents it to AMT)")
	return b.String()
}

func (c CertInfo) write(b *strings.Builder, title string) {
	const layout = "2006-01-02 15:04:05 UTC"
	fmt.Fprintf(b, "%s\n", title)
	fmt.Fprintf(b, "  Subject:    %s\n", c.Subject)
	fmt.Fprintf(b, "  Issuer:     %s\n", c.Issuer)
	if len(c.SANs) > 0 {
		fmt.Fprintf(b, "  Names:      %s\n", strings.Join(c.SANs, ", "))
	}
	fmt.Fprintf(b, "  Valid:      %s to %s\n", c.NotBefore.UTC().Format(layout), c.NotAfter.UTC().Format(layout))
	fmt.Fprintf(b, "  Key:        %s, signed with %s\n", c.Key, c.Signature)
	fmt.Fprintf(b, "  Serial:     %s\n", c.Serial)
	fmt.Fprintf(b, "  SHA-256:    %s\n", c.SHA256)
}

func certInfo(c *x509.Certificate) CertInfo {
	i := CertInfo{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    strings.ToUpper(c.SerialNumber.Text(16)),
		NotBefore: c.NotBefore,
		NotAfter:  c.NotAfter,
		Key:       c.PublicKeyAlgorithm.String(),
		Signature: c.SignatureAlgorithm.String(),
		SHA256:    fingerprint(c),
	}
	if k, ok := c.PublicKey.(*rsa.PublicKey); ok {
		i.Key = fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	for _, n := range c.DNSNames {
		i.SANs = append(i.SANs, "DNS:"+n)
	}
	for _, ip := range c.IPAddresses {
		i.SANs = append(i.SANs, "IP:"+ip.String())
	}
	return i
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return strings.ReplaceAll(fmt.Sprintf("% X", sum[:]), " ", ":")
}

// serial returns a random positive 128-bit serial number.
func serial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b) // never fails, see crypto/rand.Read
	b[0] |= 0x01 // never zero
	return new(big.Int).SetBytes(b)
}

// checkAddress checks an MPS address and returns it as an IP if it is one.
func checkAddress(addr string) (netip.Addr, error) {
	bad := func(why string) error {
		return fmt.Errorf("vault: invalid MPS address %q: %s; give the IP address or DNS name AMT is configured with", addr, why)
	}
	switch {
	case addr == "":
		return netip.Addr{}, bad("empty")
	case len(addr) > 64:
		// ub-common-name in RFC 5280; AMT matches the address against the CN.
		return netip.Addr{}, bad("longer than 64 characters, the limit for a certificate common name")
	}
	if ip, err := netip.ParseAddr(addr); err == nil {
		if ip.Zone() != "" {
			return netip.Addr{}, bad("an IPv6 zone is not allowed")
		}
		return ip, nil
	}
	if strings.ContainsAny(addr, ":[]/") {
		return netip.Addr{}, bad("not a bare host name or IP address (no port, brackets or URL)")
	}
	labels := strings.Split(addr, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return netip.Addr{}, bad("not a valid DNS name")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return netip.Addr{}, bad("not a valid DNS name")
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return netip.Addr{}, bad("neither an IP address nor a DNS name (the last label is numeric)")
	}
	return netip.Addr{}, nil
}

func checkCAKey(which string, k *rsa.PrivateKey, minBits int) error {
	if k == nil {
		return nil
	}
	if err := k.Validate(); err != nil {
		return fmt.Errorf("vault: the given %s key is invalid: %w", which, err)
	}
	if n := k.N.BitLen(); n < minBits {
		return fmt.Errorf("vault: the given %s key has %d bits; it needs at least %d", which, n, minBits)
	}
	return nil
}

func parseRSAKey(der []byte, cert *x509.Certificate) (*rsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an RSA key", k)
	}
	if !rk.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("the key does not match its certificate")
	}
	return rk, nil
}

func caItemError(key string, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return damagedCA(key, errors.New("missing"))
	case errors.Is(err, ErrCorrupt):
		return damagedCA(key, err)
	}
	return err
}

func damagedCA(item string, cause error) error {
	return wrapf(ErrCorrupt, "vault: the MPS certificate authority is damaged (%s: %v): restore the vault from a backup; "+
		"as a last resort `presence cert init --force` makes a new root, and every device must then be provisioned again", item, cause)
}
