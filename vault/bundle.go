package vault

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A join bundle carries what a new instance needs to join a fleet, a set of
// instances sharing one MPS root (../../shared/fleet.md, "Design
// implications" 2): the root certificate and key, the CIRA and console
// accounts, and the fleet id. AMT admin credentials stay behind: they
// belong to devices, not to the fleet.
//
// It is sealed exactly as a CA backup is (backup.go, [sealedFormat]): one
// PEM block, "PRESENCE JOIN BUNDLE", with the headers Version, KDF, Salt,
// Root-SHA256 and Fleet-ID (not secret, so an admin can tell bundles apart,
// and bound to the ciphertext as GCM's additional data), and a body of JSON
// (bundlePayload) encrypted with AES-256-GCM under a key scrypt derives
// from the passphrase.

const (
	bundlePEMType = "PRESENCE JOIN BUNDLE"
	bundleVersion = "1"
	// MaxBundleLen is the largest join bundle, in bytes, that [OpenBundle]
	// reads and [Bundle.Seal] writes. Read a bundle file through an
	// io.LimitReader of one byte more.
	MaxBundleLen = 1 << 20
	// maxBundleAccounts bounds the accounts of a bundle. At the longest
	// names and passwords one takes about 600 bytes of PEM, so a bundle of
	// this many stays under MaxBundleLen.
	maxBundleAccounts = 1000
)

// itemFleetID holds the fleet id: 32 lowercase hex digits.
const itemFleetID = "fleet/id"

// fleetIDLen is the length of a fleet id in hex digits (128 random bits).
const fleetIDLen = 32

var joinBundle = sealedFormat{
	pemType: bundlePEMType, version: bundleVersion, what: "join bundle",
	authenticated: []string{"Root-SHA256", "Fleet-ID"}, maxSealed: MaxBundleLen, bad: ErrBadBundle,
}

// Errors of joining a fleet.
var (
	// ErrBadBundle means a join bundle cannot be opened: a wrong
	// passphrase or a damaged file (GCM cannot tell the two apart), or
	// contents that are not a fleet's.
	ErrBadBundle = errors.New("vault: wrong passphrase, or the join bundle is damaged")
	// ErrOtherFleet means [Bundle.Join] found that this instance already
	// belongs to another fleet, and was not told to leave it.
	ErrOtherFleet = errors.New("vault: this instance belongs to another fleet")
)

// bundleKinds are the account kinds a bundle carries, in this order.
var bundleKinds = []string{KindCIRA, KindConsole}

// bundlePayload is the plaintext of a bundle. Byte slices are base64 in
// JSON, so passwords of any bytes survive.
type bundlePayload struct {
	Fleet    string          `json:"fleet"`
	RootCert []byte          `json:"root_cert"` // DER
	RootKey  []byte          `json:"root_key"`  // PKCS#8 DER
	Accounts []bundleAccount `json:"accounts"`
	// Inviter is the inviting instance's MPS entry (HOST:PORT), the
	// backup a new instance's devices can be given; absent in bundles of
	// older versions.
	Inviter string `json:"inviter,omitempty"`
	// InviterPeer is the inviting instance's peer-link listener
	// (HOST:PORT), which the new instance links to; absent in bundles of
	// older versions.
	InviterPeer string `json:"inviter_peer,omitempty"`
}

type bundleAccount struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Password []byte `json:"password"`
}

// Bundle is what a join bundle holds: a fleet's root and key, its CIRA and
// console accounts, and its id. It is made by [Invite] on an instance of
// the fleet, or by [OpenBundle] from a sealed file, and is safe for
// concurrent use (nothing changes it).
//
// A Bundle holds secrets, so fmt (every verb, %#v included) and log/slog
// print only the description [Bundle.String] gives, for a Bundle and a
// *Bundle alike (its methods have value receivers for that reason).
type Bundle struct {
	fleetID  string
	root     *x509.Certificate
	rootKey  *rsa.PrivateKey
	accounts []bundleAccount // sorted by kind (bundleKinds order), then name
	inviter  string          // HOST:PORT or ""
	peer     string          // the inviter's peer listener, HOST:PORT or ""
}

// FleetID returns the id of the fleet s belongs to: made by its first
// [Invite], or taken from the bundle it joined with. If there is none, the
// error wraps [ErrNotFound]; if the stored id is damaged, [ErrCorrupt].
func FleetID(ctx context.Context, s Store) (string, error) {
	b, err := s.Get(ctx, itemFleetID)
	if errors.Is(err, ErrNotFound) {
		return "", wrapf(err, "vault: this instance is in no fleet yet: run `presence fleet invite` on it, or `presence fleet join` with another's bundle")
	}
	if err != nil {
		return "", err
	}
	id := string(b)
	if !validFleetID(id) {
		return "", fmt.Errorf("%w: the fleet id %q is not %d hex digits", ErrCorrupt, id, fleetIDLen)
	}
	return id, nil
}

// ensureFleetID returns the fleet id of s, and makes one if there is none.
// Two invites racing on one vault may make two; both then return the one
// written last, unless a read falls between the writes.
func ensureFleetID(ctx context.Context, s Store) (string, error) {
	id, err := FleetID(ctx, s)
	if !errors.Is(err, ErrNotFound) {
		return id, err
	}
	b := make([]byte, fleetIDLen/2)
	rand.Read(b) // never fails
	if err := s.Set(ctx, itemFleetID, []byte(hex.EncodeToString(b))); err != nil {
		return "", err
	}
	return FleetID(ctx, s)
}

func validFleetID(id string) bool {
	if len(id) != fleetIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Invite gathers what a new instance needs to join the fleet of s: the
// root of its certificate authority, its CIRA and console accounts, and
// the fleet id, which the first Invite of an instance makes and keeps in s
// (so every invite of a fleet carries the same id). Seal the result to
// write it out.
func Invite(ctx context.Context, s Store) (*Bundle, error) {
	ca, err := LoadCA(ctx, s)
	if err != nil {
		return nil, err
	}
	acc := NewAccounts(s)
	b := &Bundle{root: ca.root, rootKey: ca.rootKey}
	for _, kind := range bundleKinds {
		names, err := acc.List(ctx, kind)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			if !ValidAccountName(name) {
				continue // an item that Accounts did not write
			}
			pw, err := acc.Password(ctx, kind, name)
			if errors.Is(err, ErrNotFound) {
				continue // removed meanwhile, or a keychain index name without its item
			}
			if err != nil {
				return nil, err
			}
			b.accounts = append(b.accounts, bundleAccount{Kind: kind, Name: name, Password: []byte(pw.Reveal())})
		}
	}
	if len(b.accounts) > maxBundleAccounts {
		return nil, fmt.Errorf("vault: a join bundle holds at most %d accounts, and this instance has %d CIRA and console accounts", maxBundleAccounts, len(b.accounts))
	}
	// The id last: a failed invite leaves no fleet behind.
	if b.fleetID, err = ensureFleetID(ctx, s); err != nil {
		return nil, err
	}
	return b, nil
}

// Seal returns the bundle encrypted with passphrase (at least
// [MinPassphrase] characters), as PEM text of at most [MaxBundleLen] bytes.
func (b Bundle) Seal(passphrase string) ([]byte, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(b.rootKey)
	if err != nil {
		return nil, fmt.Errorf("vault: encode the root key: %w", err)
	}
	defer clear(keyDER)
	plain, err := json.Marshal(bundlePayload{Fleet: b.fleetID, RootCert: b.root.Raw, RootKey: keyDER, Accounts: b.accounts, Inviter: b.inviter, InviterPeer: b.peer})
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	out, err := joinBundle.seal(passphrase, map[string]string{"Root-SHA256": fingerprint(b.root), "Fleet-ID": b.fleetID}, plain)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxBundleLen {
		return nil, fmt.Errorf("vault: the join bundle would be %d bytes, more than the %d a bundle may have", len(out), MaxBundleLen)
	}
	return out, nil
}

// OpenBundle decrypts and checks a bundle made by [Bundle.Seal]. Every
// failure wraps [ErrBadBundle]: a wrong passphrase, a damaged or tampered
// file, one larger than [MaxBundleLen], and contents that are not a whole
// fleet's (a root that is not a self-signed CA, a key that is not its key,
// a bad fleet id, bad or repeated accounts). It never touches a store.
func OpenBundle(data []byte, passphrase string) (*Bundle, error) {
	if len(data) > MaxBundleLen {
		return nil, fmt.Errorf("%w: %d bytes is larger than a join bundle can be (%d)", ErrBadBundle, len(data), MaxBundleLen)
	}
	plain, hdr, err := joinBundle.open(data, passphrase)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	b, err := parseBundle(plain)
	if err != nil {
		return nil, err
	}
	if hdr["Fleet-ID"] != b.fleetID || hdr["Root-SHA256"] != fingerprint(b.root) {
		return nil, fmt.Errorf("%w: its headers do not match its contents", ErrBadBundle)
	}
	return b, nil
}

// parseBundle checks a bundle's plaintext. Whoever made the bundle knows
// the passphrase, so this is hostile input too.
func parseBundle(plain []byte) (*Bundle, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadBundle}, a...)...)
	}
	var p bundlePayload
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, bad("its contents are not a join bundle's")
	}
	defer clear(p.RootKey)
	if !validFleetID(p.Fleet) {
		return nil, bad("the fleet id %q is not %d hex digits", p.Fleet, fleetIDLen)
	}
	if len(p.RootCert) > ItemLimit || len(p.RootKey) > ItemLimit {
		return nil, bad("the root certificate or key is larger than a vault item (%d bytes)", ItemLimit)
	}
	root, err := x509.ParseCertificate(p.RootCert)
	if err != nil {
		return nil, bad("the root certificate: %v", err)
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return nil, bad("the root certificate is not a self-signed CA certificate")
	}
	key, err := parseRSAKey(p.RootKey, root)
	if err != nil {
		return nil, bad("the root key: %v", err)
	}
	if len(p.Accounts) > maxBundleAccounts {
		return nil, bad("%d accounts, more than %d", len(p.Accounts), maxBundleAccounts)
	}
	seen := make(map[string]bool, len(p.Accounts))
	for _, a := range p.Accounts {
		if !slices.Contains(bundleKinds, a.Kind) {
			return nil, bad("an account of kind %q; a bundle carries cira and console accounts", a.Kind)
		}
		if !ValidAccountName(a.Name) {
			return nil, bad("the %s account name %q is not valid", a.Kind, a.Name)
		}
		if n := len(a.Password); n == 0 || n > MaxPasswordLen {
			return nil, bad("the password of %s account %q is %d bytes, not 1 to %d", a.Kind, a.Name, n, MaxPasswordLen)
		}
		k := a.Kind + "/" + a.Name
		if seen[k] {
			return nil, bad("the %s account %q appears twice", a.Kind, a.Name)
		}
		seen[k] = true
	}
	if p.Inviter != "" && !validEntry(p.Inviter) {
		return nil, bad("the inviting instance's address %q is not HOST:PORT", p.Inviter)
	}
	if p.InviterPeer != "" && !validEntry(p.InviterPeer) {
		return nil, bad("the inviting instance's peer address %q is not HOST:PORT", p.InviterPeer)
	}
	slices.SortFunc(p.Accounts, func(a, b bundleAccount) int {
		return cmp.Or(cmp.Compare(slices.Index(bundleKinds, a.Kind), slices.Index(bundleKinds, b.Kind)), cmp.Compare(a.Name, b.Name))
	})
	return &Bundle{fleetID: p.Fleet, root: root, rootKey: key, accounts: p.Accounts, inviter: p.Inviter, peer: p.InviterPeer}, nil
}

// validEntry reports whether addr is a printable HOST:PORT of at most 261
// bytes, with a port from 1 to 65535.
func validEntry(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || len(addr) > 261 {
		return false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return false
	}
	return !strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// WithInviter returns a copy of b that names the inviting instance's MPS
// entry, addr (HOST:PORT: the address AMT reaches it at and its CIRA
// port), so that the joining instance can show it as its devices' backup
// MPS. An invalid addr is an error.
func (b Bundle) WithInviter(addr string) (*Bundle, error) {
	if !validEntry(addr) {
		return nil, fmt.Errorf("vault: the inviting instance's MPS entry %q is not HOST:PORT", addr)
	}
	b.inviter = addr
	return &b, nil
}

// Inviter returns the inviting instance's MPS entry (HOST:PORT), or "" for
// a bundle that does not name it.
func (b Bundle) Inviter() string { return b.inviter }

// WithInviterPeer returns a copy of b that names the inviting instance's
// peer-link listener, addr (HOST:PORT), which the joining instance then
// links to. An invalid addr is an error.
func (b Bundle) WithInviterPeer(addr string) (*Bundle, error) {
	if !validEntry(addr) {
		return nil, fmt.Errorf("vault: the inviting instance's peer address %q is not HOST:PORT", addr)
	}
	b.peer = addr
	return &b, nil
}

// InviterPeer returns the inviting instance's peer listener (HOST:PORT), or
// "" for a bundle that does not name it.
func (b Bundle) InviterPeer() string { return b.peer }

// FleetID returns the id of the bundle's fleet.
func (b Bundle) FleetID() string { return b.fleetID }

// Root returns the fleet's root certificate. The caller must not modify it.
func (b Bundle) Root() *x509.Certificate { return b.root }

// RootFingerprintSHA256 returns the SHA-256 of the root certificate as
// colon-separated uppercase hex, as [CA.RootFingerprintSHA256] does.
func (b Bundle) RootFingerprintSHA256() string { return fingerprint(b.root) }

// AccountNames returns the names of the bundle's accounts of kind, sorted.
func (b Bundle) AccountNames(kind string) []string {
	var names []string
	for _, a := range b.accounts {
		if a.Kind == kind {
			names = append(names, a.Name)
		}
	}
	return names
}

// String describes the bundle without its secrets.
func (b Bundle) String() string {
	if b.root == nil {
		return "empty join bundle"
	}
	return fmt.Sprintf("join bundle of fleet %s (root SHA-256 %s, %d CIRA and %d console accounts)",
		b.fleetID, fingerprint(b.root), len(b.AccountNames(KindCIRA)), len(b.AccountNames(KindConsole)))
}

// GoString returns the description of String, so %#v shows no secret.
func (b Bundle) GoString() string { return b.String() }

// Format writes the description of String for every verb (quoted for %q),
// so that no verb can print the root key or a password.
func (b Bundle) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		io.WriteString(f, strconv.Quote(b.String())) // fmt.State records write errors itself
		return
	}
	io.WriteString(f, b.String())
}

// LogValue implements [slog.LogValuer] with the description of String.
func (b Bundle) LogValue() slog.Value { return slog.StringValue(b.String()) }

// JoinOptions configure [Bundle.Join].
type JoinOptions struct {
	// Address is this instance's MPS address (required): the IP address or
	// DNS name in this instance's MPS entry in AMT. It becomes the common
	// name of this instance's own server certificate, which AMT compares
	// with that entry's address.
	Address string
	// Force replaces a different root, or another fleet's id, already in
	// the store. Devices that trust the old root must then be provisioned
	// again with the fleet's.
	Force bool
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Join makes s an instance of the bundle's fleet: it stores the root, a new
// server certificate for opts.Address issued by that root (RSA-2048, as
// [InitCA] makes), the accounts (replacing the passwords of accounts of the
// same names, keeping the others) and the fleet id, and returns the CA.
//
// It refuses, and writes nothing, if opts.Address is not a valid MPS
// address, or if s holds a different root (the error wraps
// [ErrRootExists]) or another fleet's id ([ErrOtherFleet]) and opts.Force
// is not set. Joining the same fleet again is allowed: it issues a new
// server certificate and rewrites the accounts.
func (b Bundle) Join(ctx context.Context, s Store, opts JoinOptions) (*CA, error) {
	if _, err := checkAddress(opts.Address); err != nil {
		return nil, err
	}
	if !opts.Force {
		old, err := s.Get(ctx, itemRootCert)
		switch {
		case err == nil && !bytes.Equal(old, b.root.Raw):
			msg := "vault: this instance already has a different MPS root"
			if c, err := x509.ParseCertificate(old); err == nil {
				msg += " (SHA-256 " + fingerprint(c) + ")"
			}
			return nil, wrapf(ErrRootExists, "%s: devices provisioned with it trust only that root, and would have to be provisioned again with the fleet's root (SHA-256 %s) to reach this instance; to join anyway, add --force",
				msg, fingerprint(b.root))
		case err != nil && !errors.Is(err, ErrNotFound):
			return nil, err
		}
		switch id, err := FleetID(ctx, s); {
		case err == nil && id != b.fleetID:
			return nil, wrapf(ErrOtherFleet, "vault: this instance belongs to fleet %s, under the same root; to move it to fleet %s, add --force", id, b.fleetID)
		case err != nil && !errors.Is(err, ErrNotFound):
			return nil, err
		}
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(b.rootKey)
	if err != nil {
		return nil, fmt.Errorf("vault: encode the root key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	// ImportCA checks everything before it writes, issues the server
	// certificate, and writes the root certificate last.
	ca, err := ImportCA(ctx, s, ImportOptions{
		RootCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.root.Raw}), RootKey: keyPEM,
		Address: opts.Address, Force: opts.Force, Now: opts.Now,
	})
	clear(keyPEM)
	if err != nil {
		return nil, err
	}
	acc := NewAccounts(s)
	for _, a := range b.accounts {
		if err := acc.Add(ctx, a.Kind, a.Name, Secret(a.Password)); err != nil {
			return nil, fmt.Errorf("vault: joining stopped half way, after the certificates; run the join again: %w", err)
		}
	}
	// The fleet id last: it marks a finished join.
	if err := s.Set(ctx, itemFleetID, []byte(b.fleetID)); err != nil {
		return nil, fmt.Errorf("vault: joining stopped half way, before the fleet id; run the join again: %w", err)
	}
	return ca, nil
}
