package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Peer certificates: each instance of a fleet proves itself to the others
// with a certificate it issues itself from the fleet's root, which every
// instance holds (../../shared/fleet.md §5 and "Design implications" 9).
// Trust comes from the mutual-TLS handshake, never from what mDNS
// announces.
//
// The profile:
//   - a new ECDSA P-256 key for every certificate, kept in memory only: it
//     makes handshakes fast, and AMT, which needs RSA, never sees it;
//   - signed by the root (SHA-256 with RSA), valid for [PeerValidity]
//     from an hour before issue;
//   - extended key usage TLS client and server authentication, both, since
//     either end of a peer link may dial;
//   - exactly one subject alternative name, the URI presence-peer://ID,
//     where ID is the instance id, and no other.
//
// Why a day. Any holder of the root can mint peer certificates, so a short
// life cannot stop a thief of the root; what it limits is a peer key taken
// without the root (from a core dump, a debugger or a TLS key log), and how
// long certificates of a replaced root keep working: a day at most. Longer
// would buy nothing, since renewing needs only the root key already in
// memory: no network and no store. Much shorter would leave little slack
// for clocks: renewal comes at 2/3 of the life (after 16 h), so a renewal
// that fails has 8 h to succeed before peers refuse the certificate, and
// the hour of backdating covers peers whose clocks run up to an hour ahead
// (a time zone set wrong, say). AMT's 24 h backdating (ca.go) is not used:
// instances keep NTP time, and a day of backdating would double the life.

const (
	// PeerValidity is the default life of a peer certificate.
	PeerValidity = 24 * time.Hour
	// PeerScheme is the URI scheme of the peer SAN: presence-peer://ID.
	PeerScheme = "presence-peer"
	// MaxPeerIDLen is the longest instance id a peer certificate takes:
	// one DNS label.
	MaxPeerIDLen = 63
	// peerBackdate allows for peers whose clocks run ahead.
	peerBackdate = time.Hour
	// maxPeerChain bounds the certificates a peer may send; a peer sends
	// its own, and the root's path length of 0 allows no intermediate.
	maxPeerChain = 4
)

// ErrNotPeer means a certificate is not a peer certificate of this fleet:
// not issued by its root, expired, lacking the peer usages, or without
// exactly one peer URI SAN.
var ErrNotPeer = errors.New("vault: not a peer certificate of this fleet")

// ValidPeerID reports whether id can name an instance in a peer
// certificate: one lower-case DNS label, 1 to [MaxPeerIDLen] characters
// from a-z 0-9 and -, not starting or ending with -. The default instance
// id, 16 random hex digits, is one.
func ValidPeerID(id string) bool {
	if id == "" || len(id) > MaxPeerIDLen || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// PeerURI returns the URI a peer certificate names instanceID by:
// presence-peer://ID.
func PeerURI(instanceID string) *url.URL {
	return &url.URL{Scheme: PeerScheme, Host: instanceID}
}

// IssuePeer issues a peer certificate for instanceID (see [ValidPeerID])
// from the root, valid from an hour before now for validity (zero means
// [PeerValidity]), never past the root's expiry, with a new ECDSA P-256
// key. The result is ready for a tls.Config; its Leaf is set.
func (ca *CA) IssuePeer(instanceID string, now time.Time, validity time.Duration) (tls.Certificate, error) {
	if !ValidPeerID(instanceID) {
		return tls.Certificate{}, fmt.Errorf("vault: invalid instance id %q for a peer certificate: use 1 to %d of a-z 0-9 -, not starting or ending with -", instanceID, MaxPeerIDLen)
	}
	if validity <= 0 {
		validity = PeerValidity
	}
	start := now.UTC().Truncate(time.Second)
	end := start.Add(validity)
	if end.After(ca.root.NotAfter) {
		end = ca.root.NotAfter
	}
	if !end.After(start) {
		return tls.Certificate{}, fmt.Errorf("vault: the root expired on %s: a new root is needed (presence cert init --force)", ca.root.NotAfter.UTC().Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("vault: generate a peer key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Presence peer " + instanceID, Organization: []string{"Presence"}},
		NotBefore:             start.Add(-peerBackdate),
		NotAfter:              end,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{PeerURI(instanceID)},
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.rootKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("vault: create the peer certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("vault: parse the new peer certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// VerifyPeer checks a certificate chain a peer presented (leaf first, as
// in tls.ConnectionState.PeerCertificates) and returns the instance id it
// names. It accepts only a leaf that chains to root and is valid at now,
// is not a CA, has both the client and the server authentication extended
// key usage, and has exactly one URI SAN, presence-peer://ID with a valid
// ID and nothing else. Every refusal wraps [ErrNotPeer].
func VerifyPeer(chain []*x509.Certificate, root *x509.Certificate, now time.Time) (string, error) {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	return verifyPeer(chain, roots, now)
}

func verifyPeer(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (string, error) {
	refuse := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf("%w: "+format, append([]any{ErrNotPeer}, a...)...)
	}
	switch {
	case len(chain) == 0:
		return refuse("no certificate")
	case len(chain) > maxPeerChain:
		return refuse("a chain of %d certificates", len(chain))
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return refuse("%v", err)
	}
	if leaf.IsCA {
		return refuse("a CA certificate")
	}
	// Verify accepts either usage; a peer certificate has both.
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return refuse("it lacks TLS client and server authentication")
	}
	if len(leaf.URIs) != 1 {
		return refuse("%d URI names, not one %s:// name", len(leaf.URIs), PeerScheme)
	}
	u := leaf.URIs[0]
	if u.Scheme != PeerScheme || u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" ||
		u.ForceQuery || !ValidPeerID(u.Host) {
		return refuse("the URI name %q is not %s://ID", u.String(), PeerScheme)
	}
	return u.Host, nil
}

// PeerOptions configure [NewPeerIdentity].
type PeerOptions struct {
	// Validity is the life of each certificate; zero means [PeerValidity].
	Validity time.Duration
	// Now returns the current time, for issuing and renewing, and for
	// checking peers' certificates; nil means time.Now.
	Now func() time.Time
}

// PeerIdentity is this instance's peer certificate, renewed as it ages,
// and the mutual-TLS configuration of peer links built on it. It is safe
// for concurrent use.
//
// It owns no goroutine. The certificate is renewed when a handshake finds
// it past 2/3 of its life, by the wall clock (so a machine that slept
// renews at its first handshake after waking, which a timer would not), or
// when [PeerIdentity.Renew] is called. Links already up keep the
// certificate they were made with: TLS checks certificates once, at the
// handshake.
type PeerIdentity struct {
	ca       *CA
	id       string
	validity time.Duration
	now      func() time.Time
	roots    *x509.CertPool // the fleet root only

	mu      sync.Mutex
	cert    *tls.Certificate // the one served; guarded by mu
	renewAt time.Time        // when cert reaches 2/3 of its life; guarded by mu
}

// NewPeerIdentity issues the first peer certificate of instanceID from
// ca's root.
func NewPeerIdentity(ca *CA, instanceID string, opts PeerOptions) (*PeerIdentity, error) {
	p := &PeerIdentity{ca: ca, id: instanceID, validity: opts.Validity, now: opts.Now, roots: x509.NewCertPool()}
	if p.now == nil {
		p.now = time.Now
	}
	p.roots.AddCert(ca.root)
	if err := p.Renew(p.now()); err != nil {
		return nil, err
	}
	return p, nil
}

// ID returns the instance id the certificates name.
func (p *PeerIdentity) ID() string { return p.id }

// Renew issues a new certificate at now and serves it from the next
// handshake on.
func (p *PeerIdentity) Renew(now time.Time) error {
	c, err := p.ca.IssuePeer(p.id, now, p.validity)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cert = &c
	p.renewAt = now.Add(c.Leaf.NotAfter.Sub(now) * 2 / 3)
	return nil
}

// RenewAt returns when the current certificate is due for renewal: at 2/3
// of its life.
func (p *PeerIdentity) RenewAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.renewAt
}

// Certificate returns the certificate to serve, renewing it first if it is
// due. If renewing fails, it keeps serving the current certificate while
// that is valid. The caller must not modify the result.
func (p *PeerIdentity) Certificate() (*tls.Certificate, error) {
	now := p.now()
	p.mu.Lock()
	c, due := p.cert, !now.Before(p.renewAt)
	p.mu.Unlock()
	if !due {
		return c, nil
	}
	// Issue outside the lock: concurrent handshakes at the renewal point
	// may each issue one, and the last one stays. That costs a few
	// milliseconds once a renewal, and keeps handshakes from queueing.
	if err := p.Renew(now); err != nil {
		if now.Before(c.Leaf.NotAfter) {
			return c, nil
		}
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cert, nil
}

// PeerID checks the certificates of a peer link's other end, as the
// configurations of [PeerIdentity.TLSConfigs] do at the handshake, and
// returns its instance id. Call it after the handshake to learn who the
// peer is.
func (p *PeerIdentity) PeerID(cs tls.ConnectionState) (string, error) {
	return verifyPeer(cs.PeerCertificates, p.roots, p.now())
}

// TLSConfigs returns the configurations of a peer link's two ends: server
// for the listener, client for the dialer. Both use TLS 1.3 only, serve the
// current certificate at each handshake (so a renewal needs no restart),
// and accept only a peer certificate of this fleet's root ([VerifyPeer]).
// The server requires a client certificate. Session resumption is off, so
// every link is checked in full with the certificates of the day.
//
// The client sets InsecureSkipVerify: that turns off crypto/tls's own
// check of the server's certificate, whose host name check cannot apply
// (peers are named by a URI SAN, not by the address dialled), and
// VerifyConnection makes the whole check against the fleet root instead.
// Compare the id [PeerIdentity.PeerID] returns with the one expected (from
// mDNS, say) to know the right peer answered.
func (p *PeerIdentity) TLSConfigs() (server, client *tls.Config) {
	verify := func(cs tls.ConnectionState) error {
		_, err := p.PeerID(cs)
		return err
	}
	server = &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return p.Certificate()
		},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              p.roots,
		VerifyConnection:       verify,
		SessionTicketsDisabled: true,
		Time:                   p.now,
	}
	client = &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return p.Certificate()
		},
		RootCAs:            p.roots, // what VerifyConnection checks against, through PeerID
		InsecureSkipVerify: true,    // see above: VerifyConnection verifies
		VerifyConnection:   verify,
		Time:               p.now,
	}
	return server, client
}
