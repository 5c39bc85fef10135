package launch_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

const joinPassphrase = "correct horse battery"

// inviteBundle is a join bundle of a fleet whose inviting instance is
// a.example.test:4433, with a CIRA and a console account, and that
// instance's root fingerprint.
func inviteBundle(t *testing.T) ([]byte, string) {
	t.Helper()
	st := vault.NewMemory(0)
	root, server := vaulttest.Keys(t)
	ca, err := vault.InitCA(t.Context(), st, vault.CAOptions{Address: "a.example.test", RootKey: root, ServerKey: server})
	if err != nil {
		t.Fatal(err)
	}
	acc := vault.NewAccounts(st)
	acc.Add(t.Context(), vault.KindCIRA, "amt-devices", "Cira-P4ssw0rd")
	acc.Add(t.Context(), vault.KindConsole, "alice", "Console-P4ss")
	b, err := vault.Invite(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = b.WithInviter("a.example.test:4433"); err != nil {
		t.Fatal(err)
	}
	sealed, err := b.Seal(joinPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	return sealed, ca.RootFingerprintSHA256()
}

// The window's join does what presence fleet join does: the fleet's root
// and accounts and a server certificate of this instance's own, and the
// result names both MPS entries; the data dir then starts as an instance
// of the fleet. A wrong passphrase or a damaged bundle writes nothing, and
// a data dir with another root is refused.
func TestJoin(t *testing.T) {
	bundle, rootSHA := inviteBundle(t)
	dir := t.TempDir()
	st, err := vault.Open("file", dir)
	if err != nil {
		t.Fatal(err)
	}

	_, err = launch.Join(t.Context(), st, bytes.NewReader(bundle), "wrong passphrase", "b.example.test", 4433)
	if !errors.Is(err, vault.ErrBadBundle) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	damaged := bytes.Replace(bundle, []byte("A"), []byte("B"), 1)
	if _, err = launch.Join(t.Context(), st, bytes.NewReader(damaged), joinPassphrase, "b.example.test", 4433); !errors.Is(err, vault.ErrBadBundle) {
		t.Fatalf("damaged bundle: %v", err)
	}
	huge := bytes.NewReader(make([]byte, vault.MaxBundleLen+10))
	if _, err = launch.Join(t.Context(), st, huge, joinPassphrase, "b.example.test", 4433); !errors.Is(err, vault.ErrBadBundle) {
		t.Fatalf("a file too large: %v", err)
	}
	if _, err := vault.LoadCA(t.Context(), st); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("a failed join wrote a CA: %v", err)
	}

	r, err := launch.Join(t.Context(), st, bytes.NewReader(bundle), joinPassphrase, "b.example.test", 14433)
	if err != nil {
		t.Fatal(err)
	}
	if r.Address != "b.example.test" || r.Port != 14433 || r.RootSHA256 != rootSHA || r.Backup != "a.example.test:4433" ||
		len(r.Fleet) != 32 || r.User != "amt-devices" || len(r.CIRAUsers) != 1 || !strings.Contains(r.RootPEM, "BEGIN CERTIFICATE") {
		t.Fatalf("first run %+v", r)
	}
	ca, err := vault.LoadCA(t.Context(), st)
	if err != nil || ca.Address() != "b.example.test" || ca.RootFingerprintSHA256() != rootSHA {
		t.Fatalf("joined CA: %v", err)
	}
	if names, err := vault.NewAccounts(st).List(t.Context(), vault.KindConsole); err != nil || len(names) != 1 || names[0] != "alice" {
		t.Fatalf("console accounts %v, %v", names, err)
	}

	// The data dir starts as an instance of the fleet.
	s := settings.Defaults()
	s.CIRAAddr, s.ProxyAddr, s.APIAddr, s.MDNS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", false
	starter := launch.NewStarter(launch.Config{Dir: launch.Dir(dir), Vault: "file", Store: st, Settings: s, Version: "test",
		PeerAddr: "127.0.0.1:0", HistoryMaxAge: time.Hour, HistoryMaxBytes: 16 << 20, ShutdownTimeout: 5 * time.Second})
	defer starter.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := starter.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if run.Fleet() == nil || run.PeerAddr == nil || run.Fleet().Self().Name != "b.example.test" {
		t.Fatalf("the joined instance is not in the fleet: %v", run.Fleet())
	}
	starter.Close()

	// Another fleet's bundle finds this root here and is refused.
	other, _ := inviteBundle(t)
	if _, err := launch.Join(t.Context(), st, bytes.NewReader(other), joinPassphrase, "b.example.test", 4433); !errors.Is(err, vault.ErrRootExists) {
		t.Fatalf("another fleet's bundle: %v", err)
	}
}
