package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// fileCA makes a data dir whose file vault holds a CA for 127.0.0.1.
func fileCA(t *testing.T) (dir string, ca *vault.CA) {
	t.Helper()
	dir = t.TempDir()
	st, err := vault.NewFile(filepath.Join(dir, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	root, server := vaulttest.Keys(t)
	ca, err = vault.InitCA(context.Background(), st, vault.CAOptions{Address: "127.0.0.1", RootKey: root, ServerKey: server})
	if err != nil {
		t.Fatal(err)
	}
	return dir, ca
}

func serveArgs(t *testing.T, dir string, extra ...string) []string {
	return append([]string{"serve", "--data-dir", dir, "--cira-addr", freePort(t), "--proxy-addr", "off", "--api-addr", "off", "--mdns=false"}, extra...)
}

// With no keychain to reach, serve refuses to start and says why; it makes
// no root anywhere, and the one the admin has is unchanged.
func TestServeKeychainUnavailable(t *testing.T) {
	dir, ca := fileCA(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	r := run(t, "", serveArgs(t, dir, "--vault", "keychain")...)
	if r.code != 1 || !strings.Contains(r.stderr, "no OS keychain") || !strings.Contains(r.stderr, "--vault file") || strings.Contains(r.stderr, "serving") {
		t.Fatalf("serve --vault keychain without a keychain: %+v", r)
	}
	if r := run(t, "", "cert", "init", "--cn", "127.0.0.1", "--vault", "keychain", "--data-dir", dir); r.code != 1 {
		t.Fatalf("cert init on an unreachable keychain: %+v", r)
	}
	if got := run(t, "", "cert", "export-root", "--vault", "file", "--data-dir", dir).stdout; got != string(ca.RootPEM()) {
		t.Fatal("the root changed")
	}
}

// With the keychain locked, serve refuses to start and says how to fix
// it, cert init makes no new root, and nothing in the keyring changed.
func TestServeKeychainLocked(t *testing.T) {
	if !vaulttest.SecretService(t) {
		return
	}
	dir, ca := fileCA(t)
	if r := run(t, "", "vault", "migrate", "--from", "file", "--to", "keychain", "--data-dir", dir); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	if err := os.RemoveAll(filepath.Join(dir, "vault")); err != nil { // the keychain holds the only copy
		t.Fatal(err)
	}
	if got := run(t, "", "cert", "export-root", "--data-dir", dir).stdout; got != string(ca.RootPEM()) {
		t.Fatal("the keychain does not hold the root")
	}
	keyring := filepath.Join(os.Getenv("XDG_DATA_HOME"), "keyrings", "login.keyring")
	sum := func() [32]byte {
		b, err := os.ReadFile(keyring)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	before := sum()
	indexBefore, _ := os.ReadDir(filepath.Join(dir, "keychain-index"))

	conn, err := dbus.SessionBus()
	if err != nil {
		t.Fatal(err)
	}
	var locked []dbus.ObjectPath
	var prompt dbus.ObjectPath
	if err := conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets").
		Call("org.freedesktop.Secret.Service.Lock", 0, []dbus.ObjectPath{"/org/freedesktop/secrets/collection/login"}).
		Store(&locked, &prompt); err != nil || len(locked) != 1 {
		t.Fatalf("Lock(login) = %v, %v", locked, err)
	}

	r := run(t, "", serveArgs(t, dir)...) // the data dir's setting says keychain
	if r.code != 1 || !strings.Contains(r.stderr, "locked") || !strings.Contains(r.stderr, "unlock") || strings.Contains(r.stderr, "serving") {
		t.Fatalf("serve with a locked keychain: %+v", r)
	}
	if r := run(t, "", "cert", "init", "--cn", "127.0.0.1", "--data-dir", dir); r.code != 1 || !strings.Contains(r.stderr, "locked") {
		t.Fatalf("cert init with a locked keychain: %+v", r)
	}
	if after := sum(); !bytes.Equal(before[:], after[:]) {
		t.Fatal("the keyring changed while locked")
	}
	if indexAfter, _ := os.ReadDir(filepath.Join(dir, "keychain-index")); len(indexAfter) != len(indexBefore) {
		t.Fatalf("the keychain index changed: %d → %d names", len(indexBefore), len(indexAfter))
	}
}

// The window keeps a new data dir's secrets in the OS keychain and says so
// in settings.json; a data dir whose secrets are already in files keeps
// them there.
func TestDesktopVaultChoice(t *testing.T) {
	if !vaulttest.SecretService(t) {
		return
	}
	dir := t.TempDir()
	var got launch.Window
	app := func(_ context.Context, l launch.Window) error { got = l; return nil }
	var errb strings.Builder
	args := []string{"--data-dir", dir, "--cira-addr", "127.0.0.1:0", "--proxy-addr", "off", "--api-addr", "off", "--mdns=false"}
	if err := runWindow(context.Background(), args, Env{Stderr: &errb, App: app}); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if got.Setup == nil {
		t.Fatal("no setup offered for a new data dir")
	}
	if _, err := got.Setup("127.0.0.1", "dev", "Cira-P4ssw0rd"); err != nil {
		t.Fatal(err)
	}
	if st, err := launch.Dir(dir).Load(); err != nil || st.Vault != "keychain" {
		t.Fatalf("settings %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "vault")); err == nil {
		t.Fatal("secrets were written to files")
	}
	if r := run(t, "", "cert", "show", "--data-dir", dir); r.code != 0 {
		t.Fatalf("the CLI does not find the window's CA in the keychain: %+v", r)
	}
	// Made with the CLI (files): the window leaves it there.
	fdir, _ := fileCA(t)
	if err := runWindow(context.Background(), []string{"--data-dir", fdir, "--cira-addr", "127.0.0.1:0", "--proxy-addr", "off", "--api-addr", "off", "--mdns=false"},
		Env{Stderr: &errb, App: app}); err != nil {
		t.Fatal(err)
	}
	if st, _ := launch.Dir(fdir).Load(); got.Setup != nil || st.Vault != "" {
		t.Fatalf("file data dir: setup offered %v, vault setting %q", got.Setup != nil, st.Vault)
	}
}
