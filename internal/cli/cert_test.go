package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// The certificate lifecycle through the command line: renew keeps the
// root, doctor speaks plainly, backup and restore carry the CA to another
// data dir, and import takes an existing root.
func TestCertLifecycle(t *testing.T) {
	dir := t.TempDir()
	if r := run(t, "", "cert", "init", "--cn", "127.0.0.1", "--data-dir", dir); r.code != 0 ||
		!strings.Contains(r.stdout, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("init: %+v", r)
	}
	root := run(t, "", "cert", "export-root", "--data-dir", dir).stdout
	if r := run(t, "", "cert", "doctor", "--data-dir", dir); r.code != 0 || !strings.Contains(r.stdout, "fine for AMT devices reaching 127.0.0.1") {
		t.Fatalf("doctor: %+v", r)
	}
	if r := run(t, "", "cert", "doctor", "--data-dir", dir, "--cn", "mps.example.com"); r.code != 1 ||
		!strings.Contains(r.stdout, `common name is "127.0.0.1", but devices are configured to reach "mps.example.com"`) {
		t.Fatalf("doctor with another address: %+v", r)
	}
	before := run(t, "", "cert", "show", "--data-dir", dir).stdout
	if r := run(t, "", "cert", "renew", "--data-dir", dir, "--cn", "mps.example.com"); r.code != 0 || !strings.Contains(r.stdout, "devices keep trusting it") {
		t.Fatalf("renew: %+v", r)
	}
	if after := run(t, "", "cert", "export-root", "--data-dir", dir).stdout; after != root {
		t.Fatal("renew changed the root")
	}
	if after := run(t, "", "cert", "show", "--data-dir", dir).stdout; after == before || !strings.Contains(after, "DNS:mps.example.com") {
		t.Fatalf("show after renew:\n%s", after)
	}

	backup := filepath.Join(t.TempDir(), "ca.backup")
	const pass = "a long enough passphrase"
	if r := run(t, pass+"\n", "cert", "backup", "--data-dir", dir, "--out", backup); r.code != 0 || strings.Contains(r.stdout+r.stderr, pass) {
		t.Fatalf("backup: %+v", r)
	}
	other := t.TempDir()
	if r := run(t, "wrong passphrase\n", "cert", "restore", "--data-dir", other, "--in", backup); r.code != 1 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Fatalf("restore with a wrong passphrase: %+v", r)
	}
	if r := run(t, pass+"\n", "cert", "restore", "--data-dir", other, "--in", backup); r.code != 0 {
		t.Fatalf("restore: %+v", r)
	}
	if got := run(t, "", "cert", "export-root", "--data-dir", other).stdout; got != root {
		t.Fatal("restored a different root")
	}

	// Import an existing root (as PEM files) into a third data dir, with a
	// new server certificate for the address.
	rootKey, _ := vaulttest.Keys(t)
	src, err := vault.InitCA(context.Background(), vault.NewMemory(0), vault.CAOptions{Address: "old.example.com", RootKey: rootKey, ServerKey: rootKey})
	if err != nil {
		t.Fatal(err)
	}
	pemDir := t.TempDir()
	keyDER, _ := x509.MarshalPKCS8PrivateKey(rootKey)
	certFile, keyFile := filepath.Join(pemDir, "root.pem"), filepath.Join(pemDir, "root.key")
	os.WriteFile(certFile, src.RootPEM(), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	third := t.TempDir()
	if r := run(t, "", "cert", "import", "--data-dir", third, "--root-cert", certFile, "--root-key", keyFile, "--cn", "10.9.8.7"); r.code != 0 ||
		!strings.Contains(r.stdout, src.RootFingerprintSHA256()) || strings.Contains(r.stdout, "Note:") {
		t.Fatalf("import: %+v", r)
	}
	if got := run(t, "", "cert", "export-root", "--data-dir", third).stdout; got != string(src.RootPEM()) {
		t.Fatal("imported a different root")
	}
	if r := run(t, "", "cert", "import", "--data-dir", third, "--root-cert", backup, "--root-key", keyFile, "--cn", "x"); r.code != 1 ||
		!strings.Contains(r.stderr, "not a PEM CERTIFICATE") {
		t.Fatalf("import of a non-certificate: %+v", r)
	}
	if r := run(t, "", "cert", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, "renew, doctor") {
		t.Fatalf("unknown subcommand: %+v", r)
	}
}
