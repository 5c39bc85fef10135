package vault

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/scrypt"
)

// A CA backup is one PEM block, "PRESENCE CA BACKUP", whose headers name the
// format and the key derivation (scrypt) and carry the root's fingerprint
// (not secret, so an admin can tell backups apart), and whose body is the CA
// items encrypted with AES-256-GCM under a key derived from the passphrase.
// The headers are authenticated as GCM's additional data. A join bundle
// (bundle.go) is sealed the same way, by the same code ([sealedFormat]).

const (
	backupPEMType = "PRESENCE CA BACKUP"
	backupVersion = "1"
	// MinPassphrase is the shortest passphrase a backup or a join bundle
	// accepts.
	MinPassphrase = 10
	scryptN       = 1 << 15
	scryptR       = 8
	scryptP       = 1
)

// ErrBadBackup means a backup cannot be opened: a wrong passphrase or a
// damaged file (GCM cannot tell the two apart).
var ErrBadBackup = errors.New("vault: wrong passphrase, or the backup is damaged")

// backupItems are the CA items, the root certificate last (see InitCA).
var backupItems = []string{itemRootKey, itemServerKey, itemServerCert, itemRootCert}

// sealedFormat is a kind of PEM file sealed with a passphrase: the CA
// backup here, and the join bundle (bundle.go). Both have the headers
// Version, KDF and Salt, plus the ones named in authenticated; all of them
// are GCM's additional data, in that order.
type sealedFormat struct {
	pemType, version string
	// what names the file in messages: "CA backup", "join bundle".
	what          string
	authenticated []string
	// maxSealed caps the decoded PEM body (nonce, ciphertext and tag).
	maxSealed int
	// bad is the sentinel every failure to open wraps.
	bad error
}

var caBackup = sealedFormat{
	pemType: backupPEMType, version: backupVersion, what: "CA backup",
	authenticated: []string{"Root-SHA256"}, maxSealed: 64 << 10, bad: ErrBadBackup,
}

// seal encrypts plain under passphrase and returns it as a PEM block with
// hdr (which must hold every authenticated header) plus Version, KDF and
// Salt.
func (f sealedFormat) seal(passphrase string, hdr map[string]string, plain []byte) ([]byte, error) {
	if len(passphrase) < MinPassphrase {
		return nil, fmt.Errorf("vault: the %s passphrase needs at least %d characters", f.what, MinPassphrase)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	h := map[string]string{
		"Version": f.version, "KDF": fmt.Sprintf("scrypt N=%d r=%d p=%d", scryptN, scryptR, scryptP),
		"Salt": hex.EncodeToString(salt),
	}
	for k, v := range hdr {
		h[k] = v
	}
	aead, err := backupAEAD(passphrase, salt, scryptN, scryptR, scryptP)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, plain, f.aad(h))
	return pem.EncodeToMemory(&pem.Block{Type: f.pemType, Headers: h, Bytes: sealed}), nil
}

// open checks and decrypts a PEM block made by seal. Every error wraps
// f.bad: a wrong passphrase and a damaged file look the same to GCM. The
// caller should clear the plaintext when done with it.
func (f sealedFormat) open(data []byte, passphrase string) ([]byte, map[string]string, error) {
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != f.pemType {
		return nil, nil, fmt.Errorf("%w: not a Presence %s (no %q PEM block)", f.bad, f.what, f.pemType)
	}
	if blk.Headers["Version"] != f.version {
		return nil, nil, fmt.Errorf("%w: %s format version %q is not known to this Presence", f.bad, f.what, blk.Headers["Version"])
	}
	n, r, p, err := parseKDF(blk.Headers["KDF"], f.bad)
	if err != nil {
		return nil, nil, err
	}
	salt, err := hex.DecodeString(blk.Headers["Salt"])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return nil, nil, fmt.Errorf("%w: bad salt", f.bad)
	}
	// AES-GCM's standard nonce and tag: check the size before paying for
	// scrypt.
	const nonceSize, overhead = 12, 16
	if len(blk.Bytes) < nonceSize+overhead || len(blk.Bytes) > f.maxSealed {
		return nil, nil, fmt.Errorf("%w: wrong size", f.bad)
	}
	aead, err := backupAEAD(passphrase, salt, n, r, p)
	if err != nil {
		return nil, nil, err
	}
	nonce, sealed := blk.Bytes[:nonceSize], blk.Bytes[nonceSize:]
	plain, err := aead.Open(nil, nonce, sealed, f.aad(blk.Headers))
	if err != nil {
		return nil, nil, f.bad
	}
	return plain, blk.Headers, nil
}

// aad binds the headers to the ciphertext. For the CA backup it is the
// format's first version: type, Version, KDF, Salt and Root-SHA256.
func (f sealedFormat) aad(h map[string]string) []byte {
	parts := []string{f.pemType, h["Version"], h["KDF"], h["Salt"]}
	for _, k := range f.authenticated {
		parts = append(parts, h[k])
	}
	return []byte(strings.Join(parts, "\n"))
}

// Backup returns the certificate authority's items, encrypted with
// passphrase, as PEM text.
func (ca *CA) Backup(passphrase string) ([]byte, error) {
	rootKeyDER, err := marshalKey(ca.rootKey)
	if err != nil {
		return nil, err
	}
	serverKeyDER, err := marshalKey(ca.serverKey)
	if err != nil {
		return nil, err
	}
	items := map[string][]byte{
		itemRootKey: rootKeyDER, itemRootCert: ca.root.Raw,
		itemServerKey: serverKeyDER, itemServerCert: ca.server.Raw,
	}
	plain, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	return caBackup.seal(passphrase, map[string]string{"Root-SHA256": ca.RootFingerprintSHA256()}, plain)
}

func marshalKey(k any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("vault: encode a key for the backup: %w", err)
	}
	return der, nil
}

func backupAEAD(passphrase string, salt []byte, n, r, p int) (cipher.AEAD, error) {
	key, err := scrypt.Key([]byte(passphrase), salt, n, r, p, 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// parseKDF reads "scrypt N=.. r=.. p=.." and caps the cost, so a hostile
// file cannot make restore use gigabytes of memory. Its errors wrap bad.
func parseKDF(s string, bad error) (n, r, p int, err error) {
	f := strings.Fields(s)
	if len(f) != 4 || f[0] != "scrypt" {
		return 0, 0, 0, fmt.Errorf("%w: unknown key derivation %q", bad, s)
	}
	vals := make([]int, 3)
	for i, name := range []string{"N=", "r=", "p="} {
		v, ok := strings.CutPrefix(f[i+1], name)
		if !ok {
			return 0, 0, 0, fmt.Errorf("%w: key derivation %q", bad, s)
		}
		if vals[i], err = strconv.Atoi(v); err != nil || vals[i] < 1 {
			return 0, 0, 0, fmt.Errorf("%w: key derivation %q", bad, s)
		}
	}
	n, r, p = vals[0], vals[1], vals[2]
	if n > 1<<20 || r > 16 || p > 4 || n&(n-1) != 0 {
		return 0, 0, 0, fmt.Errorf("%w: key derivation cost %q is out of range", bad, s)
	}
	return n, r, p, nil
}

// RestoreOptions configure [RestoreCA].
type RestoreOptions struct {
	// Force replaces a different root already in the store.
	Force bool
}

// RestoreCA decrypts a backup made by [CA.Backup], checks that it holds a
// complete, consistent CA, and saves it in s. Like InitCA it refuses to
// replace a different root without Force; restoring the same root again is
// allowed.
func RestoreCA(ctx context.Context, s Store, backup []byte, passphrase string, opts RestoreOptions) (*CA, error) {
	plain, _, err := caBackup.open(backup, passphrase)
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var items map[string][]byte
	if err := json.Unmarshal(plain, &items); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	// Check the CA as LoadCA would, in memory, before touching s.
	staging := NewMemory(ItemLimit)
	for _, k := range backupItems {
		v, ok := items[k]
		if !ok {
			return nil, fmt.Errorf("%w: it lacks %s", ErrBadBackup, k)
		}
		if err := staging.Set(ctx, k, v); err != nil {
			return nil, err
		}
	}
	ca, err := LoadCA(ctx, staging)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	if old, err := s.Get(ctx, itemRootCert); err == nil && !opts.Force && !bytes.Equal(old, ca.root.Raw) {
		return nil, wrapf(ErrRootExists, "vault: this vault holds a different MPS root, which devices may trust; to replace it with the backup's (SHA-256 %s), add --force", ca.RootFingerprintSHA256())
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	for _, k := range backupItems { // the root certificate last
		if err := s.Set(ctx, k, items[k]); err != nil {
			return nil, fmt.Errorf("vault: restoring stopped half way, run the restore again: %w", err)
		}
	}
	return ca, nil
}
