package vault_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

func TestMemoryContract(t *testing.T) {
	vaulttest.Run(t, func(t *testing.T) vault.Store { return vault.NewMemory(vault.ItemLimit) })
}

func TestFileContract(t *testing.T) {
	vaulttest.Run(t, func(t *testing.T) vault.Store {
		s, err := vault.NewFile(filepath.Join(t.TempDir(), "vault"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestMemoryLimit(t *testing.T) {
	ctx := t.Context()
	s := vault.NewMemory(10)
	if err := s.Set(ctx, "k", make([]byte, 10)); err != nil {
		t.Errorf("Set(10 bytes) with limit 10 = %v", err)
	}
	if err := s.Set(ctx, "k", make([]byte, 11)); !errors.Is(err, vault.ErrTooLarge) {
		t.Errorf("Set(11 bytes) with limit 10 = %v; want ErrTooLarge", err)
	}
	d := vault.NewMemory(0)
	if err := d.Set(ctx, "k", make([]byte, vault.ItemLimit+1)); !errors.Is(err, vault.ErrTooLarge) {
		t.Errorf("NewMemory(0).Set(limit+1) = %v; want ErrTooLarge", err)
	}
}

func TestOpen(t *testing.T) {
	ctx := t.Context()
	dataDir := t.TempDir()
	s, err := vault.Open("file", dataDir)
	if err != nil {
		t.Fatalf("Open(file) = %v", err)
	}
	if err := s.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if f, ok := s.(*vault.File); !ok || f.Dir() != filepath.Join(dataDir, "vault") {
		t.Errorf("Open(file) = %T in %v; want *File in dataDir/vault", s, s)
	}
	again, err := vault.Open("file", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := again.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("reopened Get = %q, %v; want v", v, err)
	}

	if m, err := vault.Open("memory", ""); err != nil {
		t.Errorf("Open(memory) = %v", err)
	} else if _, ok := m.(*vault.Memory); !ok {
		t.Errorf("Open(memory) = %T; want *Memory", m)
	}
	// Open("keychain") is tested in keychain_test.go.
	if _, err := vault.Open("file", ""); err == nil {
		t.Error("Open(file, no data dir) succeeded")
	}
	if _, err := vault.Open("plaintext", dataDir); err == nil {
		t.Error("Open(plaintext) succeeded")
	}
}
