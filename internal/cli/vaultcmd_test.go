package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// vaultCmd runs runVault; "vault" is registered in Run by cli.go.
func vaultCmd(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = runVault(context.Background(), args, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
	return out.String(), err
}

func TestVaultMigrateUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "want a subcommand"},
		{[]string{"copy"}, "unknown subcommand"},
		{[]string{"migrate", "--data-dir", dir}, "want --from and --to"},
		{[]string{"migrate", "--from", "file", "--data-dir", dir}, "want --from and --to"},
		{[]string{"migrate", "--from", "plaintext", "--to", "file", "--data-dir", dir}, `--from "plaintext"`},
		{[]string{"migrate", "--from", "file", "--to", "memory", "--data-dir", dir}, "keeps nothing"},
		{[]string{"migrate", "--from", "file", "--to", "cloud", "--data-dir", dir}, `--to "cloud"`},
		{[]string{"migrate", "--from", "file", "--to", "file", "--data-dir", dir}, "both file"},
		{[]string{"migrate", "--from", "file", "--to", "keychain", "--data-dir", dir, "extra"}, "no arguments"},
		{[]string{"migrate", "--bogus"}, "bogus"},
	} {
		_, err := vaultCmd(t, tc.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vault %q = %v; want a usage error with %q", tc.args, err, tc.want)
		}
	}
	if _, err := vaultCmd(t, "migrate", "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("vault migrate -h = %v; want flag.ErrHelp", err)
	}
}

func TestVaultMigrateErrors(t *testing.T) {
	// No file vault in the data dir: an error, and nothing created.
	dir := t.TempDir()
	_, err := vaultCmd(t, "migrate", "--from", "file", "--to", "keychain", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "no file vault") {
		t.Errorf("migrate from a missing file vault = %v; want an error saying so", err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("data dir after a failed migrate: %d entries, %v; want it empty", len(entries), err)
	}

	// No Secret Service: the error says what to do.
	if os.Getenv("PRESENCE_TEST_SECRET_SERVICE") == "1" {
		return
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	fileVault(t, dir, map[string]string{"account/cira/admin": "pw"})
	_, err = vaultCmd(t, "migrate", "--from", "file", "--to", "keychain", "--data-dir", dir)
	if !errors.Is(err, vault.ErrUnavailable) || !strings.Contains(err.Error(), "--vault file") {
		t.Errorf("migrate to an unavailable keychain = %v; want ErrUnavailable with advice", err)
	}
}

// fileVault writes items into the file vault of dataDir.
func fileVault(t *testing.T, dataDir string, items map[string]string) *vault.File {
	t.Helper()
	s, err := vault.NewFile(filepath.Join(dataDir, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range items {
		if err := s.Set(t.Context(), k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestVaultMigrateKeychain moves a file vault into a real (private)
// gnome-keyring and back.
func TestVaultMigrateKeychain(t *testing.T) {
	if !vaulttest.SecretService(t) {
		return
	}
	ctx := t.Context()
	dir := t.TempDir()
	items := map[string]string{
		"account/cira/admin":    "Cira-Admin-1",
		"account/console/alice": "alice-pw",
		"ca/root.key":           strings.Repeat("K", 1800),
	}
	src := fileVault(t, dir, items)

	out, err := vaultCmd(t, "migrate", "--from", "file", "--to", "keychain", "--data-dir", dir)
	if err != nil {
		t.Fatalf("migrate file → keychain = %v", err)
	}
	for _, want := range []string{"copied 3 items from the file store to the keychain store", "uses the keychain store", "Nothing was deleted"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate printed:\n%s\nwant %q", out, want)
		}
	}
	if st, err := launch.Dir(dir).Load(); err != nil || st.Vault != "keychain" {
		t.Errorf("settings after migrating: %+v, %v", st, err)
	}
	kc, err := vault.Open("keychain", dir)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kc.List(ctx, "")
	if err != nil || !slices.Equal(keys, []string{"account/cira/admin", "account/console/alice", "ca/root.key"}) {
		t.Errorf("keychain List = %q, %v", keys, err)
	}
	for k, v := range items {
		if got, err := kc.Get(ctx, k); err != nil || string(got) != v {
			t.Errorf("keychain Get(%q) = %d bytes, %v; want %d bytes", k, len(got), err, len(v))
		}
		if _, err := src.Get(ctx, k); err != nil {
			t.Errorf("file vault lost %q: %v", k, err)
		}
	}

	// Again: nothing to do.
	out, err = vaultCmd(t, "migrate", "--from", "file", "--to", "keychain", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "copied 0 items") || !strings.Contains(out, "3 were already there") {
		t.Errorf("second migrate = %v:\n%s", err, out)
	}

	// A changed file value is not copied over the keychain's without --overwrite.
	if err := src.Set(ctx, "account/cira/admin", []byte("Changed-1")); err != nil {
		t.Fatal(err)
	}
	_, err = vaultCmd(t, "migrate", "--from", "file", "--to", "keychain", "--data-dir", dir)
	if !errors.Is(err, vault.ErrExists) || !strings.Contains(err.Error(), "--overwrite") || !strings.Contains(err.Error(), "account/cira/admin") {
		t.Errorf("migrate over a different value = %v; want ErrExists suggesting --overwrite", err)
	}
	if got, err := kc.Get(ctx, "account/cira/admin"); err != nil || string(got) != "Cira-Admin-1" {
		t.Errorf("keychain value after a refused migrate = %q, %v; want it unchanged", got, err)
	}
	out, err = vaultCmd(t, "migrate", "--from", "file", "--to", "keychain", "--data-dir", dir, "--overwrite")
	if err != nil || !strings.Contains(out, "copied 1 items") || !strings.Contains(out, "replacing 1") {
		t.Errorf("migrate --overwrite = %v:\n%s", err, out)
	}

	// And back into a new file vault.
	if err := os.RemoveAll(filepath.Join(dir, "vault")); err != nil {
		t.Fatal(err)
	}
	out, err = vaultCmd(t, "migrate", "--from", "keychain", "--to", "file", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "copied 3 items") || !strings.Contains(out, "uses the file store") {
		t.Fatalf("migrate keychain → file = %v:\n%s", err, out)
	}
	back := fileVault(t, dir, nil)
	if got, err := back.Get(ctx, "account/cira/admin"); err != nil || string(got) != "Changed-1" {
		t.Errorf("file vault after migrating back: %q, %v", got, err)
	}
}
