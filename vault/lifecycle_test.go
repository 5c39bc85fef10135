package vault_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// newCA makes a CA in a fresh memory store with the cached test keys.
func newCA(t *testing.T, address string, mod func(*vault.CAOptions)) (vault.Store, *vault.CA) {
	t.Helper()
	st := vault.NewMemory(vault.ItemLimit)
	opts := cachedKeyOpts(t, address)
	if mod != nil {
		mod(&opts)
	}
	ca, err := vault.InitCA(context.Background(), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st, ca
}

func TestRenewKeepsRoot(t *testing.T) {
	ctx := context.Background()
	st, ca := newCA(t, "mps.example.com", nil)
	_, key := vaulttest.Keys(t)
	later := time.Now().Add(24 * time.Hour)
	renewed, err := ca.Renew(ctx, st, vault.RenewOptions{Key: key, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	if renewed.RootFingerprintSHA256() != ca.RootFingerprintSHA256() {
		t.Fatal("renewal changed the root")
	}
	if renewed.Server().Equal(ca.Server()) || renewed.Address() != "mps.example.com" || !renewed.Server().NotAfter.After(ca.Server().NotAfter) {
		t.Fatalf("renewed server certificate: %+v", renewed.Info().Server)
	}
	loaded, err := vault.LoadCA(ctx, st)
	if err != nil || !loaded.Server().Equal(renewed.Server()) {
		t.Fatalf("LoadCA after renew: %v", err)
	}
	if keys, _ := st.List(ctx, "ca/server-next"); len(keys) != 0 {
		t.Fatalf("renewal left %v behind", keys)
	}
	// A new address.
	moved, err := ca.Renew(ctx, st, vault.RenewOptions{Key: key, Address: "10.1.2.3"})
	if err != nil || moved.Address() != "10.1.2.3" || moved.Server().VerifyHostname("10.1.2.3") != nil {
		t.Fatalf("renew to a new address: %v", err)
	}
}

// failAfter fails every Set after n of them: a renewal cut short.
type failAfter struct {
	vault.Store
	n int
}

func (f *failAfter) Set(ctx context.Context, k string, v []byte) error {
	if f.n == 0 {
		return errors.New("disk full")
	}
	f.n--
	return f.Store.Set(ctx, k, v)
}

// A renewal interrupted at any write leaves a CA that loads, with either
// the old or the new server certificate, and the same root.
func TestRenewInterrupted(t *testing.T) {
	ctx := context.Background()
	_, key := vaulttest.Keys(t)
	for n := range 4 {
		st, ca := newCA(t, "mps.example.com", nil)
		if _, err := ca.Renew(ctx, &failAfter{st, n}, vault.RenewOptions{Key: key}); err == nil {
			t.Fatalf("n=%d: renew succeeded", n)
		} else if !strings.Contains(err.Error(), "run the command again") {
			t.Fatalf("n=%d: %v", n, err)
		}
		loaded, err := vault.LoadCA(ctx, st)
		if err != nil {
			t.Fatalf("n=%d: LoadCA after an interrupted renewal: %v", n, err)
		}
		if loaded.RootFingerprintSHA256() != ca.RootFingerprintSHA256() {
			t.Fatalf("n=%d: root changed", n)
		}
	}
}

func TestRenewalDue(t *testing.T) {
	_, ca := newCA(t, "mps.example.com", func(o *vault.CAOptions) { o.ServerValidity = 60 * 24 * time.Hour })
	if ca.RenewalDue(time.Now()) {
		t.Fatal("due 60 days before expiry")
	}
	if !ca.RenewalDue(time.Now().Add(31 * 24 * time.Hour)) {
		t.Fatal("not due 29 days before expiry")
	}
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestImportCA(t *testing.T) {
	ctx := context.Background()
	root, server := vaulttest.Keys(t)
	_, src := newCA(t, "old-mps.example.com", nil)
	rootKeyDER, _ := x509.MarshalPKCS8PrivateKey(root)
	serverKeyPKCS1 := x509.MarshalPKCS1PrivateKey(server)

	// The whole pair set, with a PKCS#1 server key.
	dst := vault.NewMemory(vault.ItemLimit)
	ca, err := vault.ImportCA(ctx, dst, vault.ImportOptions{
		RootCert: pemOf("CERTIFICATE", src.Root().Raw), RootKey: pemOf("PRIVATE KEY", rootKeyDER),
		ServerCert: pemOf("CERTIFICATE", src.Server().Raw), ServerKey: pemOf("RSA PRIVATE KEY", serverKeyPKCS1),
	})
	if err != nil {
		t.Fatal(err)
	}
	if ca.RootFingerprintSHA256() != src.RootFingerprintSHA256() || !ca.Server().Equal(src.Server()) {
		t.Fatal("imported CA differs")
	}
	if _, err := vault.LoadCA(ctx, dst); err != nil {
		t.Fatal(err)
	}
	// Only the root: a server certificate is issued for the address.
	dst2 := vault.NewMemory(vault.ItemLimit)
	ca2, err := vault.ImportCA(ctx, dst2, vault.ImportOptions{
		RootCert: pemOf("CERTIFICATE", src.Root().Raw), RootKey: pemOf("PRIVATE KEY", rootKeyDER), Address: "192.0.2.10",
	})
	if err != nil || ca2.Address() != "192.0.2.10" || ca2.Server().CheckSignatureFrom(src.Root()) != nil {
		t.Fatalf("import with a new server certificate: %v", err)
	}
	// Refusals.
	_, otherCA := newCA(t, "y.example.com", nil)
	for name, opts := range map[string]vault.ImportOptions{
		"key of another certificate": {RootCert: pemOf("CERTIFICATE", src.Root().Raw), RootKey: pemOf("RSA PRIVATE KEY", serverKeyPKCS1), Address: "a.example"},
		"server cert as root":        {RootCert: pemOf("CERTIFICATE", src.Server().Raw), RootKey: pemOf("PRIVATE KEY", rootKeyDER), Address: "a.example"},
		"not PEM":                    {RootCert: []byte("hello"), RootKey: pemOf("PRIVATE KEY", rootKeyDER), Address: "a.example"},
		"no address":                 {RootCert: pemOf("CERTIFICATE", src.Root().Raw), RootKey: pemOf("PRIVATE KEY", rootKeyDER)},
		"different root in store":    {RootCert: pemOf("CERTIFICATE", otherCA.Root().Raw), RootKey: pemOf("PRIVATE KEY", rootKeyDER), Address: "a.example"},
	} {
		if _, err := vault.ImportCA(ctx, dst, opts); err == nil {
			t.Errorf("%s: imported", name)
		} else if strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("%s: error quotes a key", name)
		}
	}
	if loaded, _ := vault.LoadCA(ctx, dst); loaded.RootFingerprintSHA256() != src.RootFingerprintSHA256() {
		t.Fatal("a refused import changed the store")
	}
}

func TestDoctor(t *testing.T) {
	_, ca := newCA(t, "mps.example.com", nil)
	if ps := ca.Doctor("", time.Now()); len(ps) != 0 {
		t.Fatalf("fresh CA: %v", ps)
	}
	ps := ca.Doctor("other.example.com", time.Now())
	if len(ps) != 2 || !ps[0].Severe || !strings.Contains(ps[0].Text, `"other.example.com"`) {
		t.Fatalf("wrong address: %v", ps)
	}
	ps = ca.Doctor("", ca.Server().NotAfter.Add(-10*24*time.Hour))
	if len(ps) != 1 || ps[0].Severe || !strings.Contains(ps[0].Text, "renew it now") {
		t.Fatalf("near expiry: %v", ps)
	}
	ps = ca.Doctor("", ca.Server().NotAfter.Add(time.Hour))
	if len(ps) != 1 || !ps[0].Severe || !strings.Contains(ps[0].Text, "server certificate expired") {
		t.Fatalf("expired: %v", ps)
	}
}

func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	_, ca := newCA(t, "mps.example.com", nil)
	const pass = "correct horse battery"
	b, err := ca.Backup(pass)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, ca.Root().Raw[:64]) || !bytes.Contains(b, []byte(ca.RootFingerprintSHA256())) {
		t.Fatal("backup is not encrypted, or lacks the fingerprint header")
	}
	if _, err := ca.Backup("short"); err == nil {
		t.Fatal("short passphrase accepted")
	}
	dst := vault.NewMemory(vault.ItemLimit)
	if _, err := vault.RestoreCA(ctx, dst, b, "wrong passphrase!", vault.RestoreOptions{}); !errors.Is(err, vault.ErrBadBackup) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	tampered := bytes.Replace(b, []byte("Root-SHA256: "), []byte("Root-SHA256: 00"), 1)
	if _, err := vault.RestoreCA(ctx, dst, tampered, pass, vault.RestoreOptions{}); !errors.Is(err, vault.ErrBadBackup) {
		t.Fatalf("tampered header: %v", err)
	}
	hostile := bytes.Replace(b, []byte("N=32768"), []byte("N=1073741824"), 1)
	if _, err := vault.RestoreCA(ctx, dst, hostile, pass, vault.RestoreOptions{}); !errors.Is(err, vault.ErrBadBackup) {
		t.Fatalf("huge KDF cost: %v", err)
	}
	if keys, _ := dst.List(ctx, ""); len(keys) != 0 {
		t.Fatalf("failed restores wrote %v", keys)
	}
	got, err := vault.RestoreCA(ctx, dst, b, pass, vault.RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := vault.LoadCA(ctx, dst)
	if err != nil || loaded.RootFingerprintSHA256() != ca.RootFingerprintSHA256() || !got.Server().Equal(ca.Server()) {
		t.Fatalf("restored CA: %v", err)
	}
	// Restoring the same root again is fine; a different one needs Force.
	if _, err := vault.RestoreCA(ctx, dst, b, pass, vault.RestoreOptions{}); err != nil {
		t.Fatalf("restore again: %v", err)
	}
	otherSt, _ := newCA(t, "other.example.com", nil)
	if _, err := vault.RestoreCA(ctx, otherSt, b, pass, vault.RestoreOptions{}); !errors.Is(err, vault.ErrRootExists) {
		t.Fatalf("restore over another root: %v", err)
	}
	if _, err := vault.RestoreCA(ctx, otherSt, b, pass, vault.RestoreOptions{Force: true}); err != nil {
		t.Fatalf("forced restore: %v", err)
	}
}
