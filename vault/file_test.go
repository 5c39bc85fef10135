package vault_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/vault"
)

func newFile(t *testing.T, dir string) *vault.File {
	t.Helper()
	s, err := vault.NewFile(dir)
	if err != nil {
		t.Fatalf("NewFile(%s) = %v", dir, err)
	}
	return s
}

func skipOnWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes do not control access on Windows")
	}
}

func TestFilePermissions(t *testing.T) {
	skipOnWindows(t)
	dir := filepath.Join(t.TempDir(), "data", "vault")
	s := newFile(t, dir)
	if err := s.Set(t.Context(), "ca/root.key", []byte("key")); err != nil {
		t.Fatal(err)
	}
	wantMode(t, dir, 0o700)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].IsDir() {
		t.Fatalf("vault dir holds %v; want one file", entries)
	}
	item := filepath.Join(dir, entries[0].Name())
	wantMode(t, item, 0o600)

	// A store opened on a directory and files that others can read tightens them.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(item, 0o644); err != nil {
		t.Fatal(err)
	}
	newFile(t, dir)
	wantMode(t, dir, 0o700)
	wantMode(t, item, 0o600)

	// An overwrite keeps the file private.
	if err := os.Chmod(item, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(t.Context(), "ca/root.key", []byte("new key")); err != nil {
		t.Fatal(err)
	}
	wantMode(t, item, 0o600)
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %v; want %v", path, got, want)
	}
}

func TestFileSurvivesReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := newFile(t, dir)
	value := []byte{0, 1, '\n', 0xff}
	for _, k := range []string{"ca/root.key", "account/cira/admin", "account/cira/Admin"} {
		if err := s.Set(ctx, k, append(value, k...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "account/cira/Admin"); err != nil {
		t.Fatal(err)
	}

	r := newFile(t, dir)
	if got, err := r.Get(ctx, "ca/root.key"); err != nil || !bytes.Equal(got, append(value, "ca/root.key"...)) {
		t.Errorf("Get after reopen = %q, %v", got, err)
	}
	keys, err := r.List(ctx, "")
	if want := []string{"account/cira/admin", "ca/root.key"}; err != nil || !slices.Equal(keys, want) {
		t.Errorf("List after reopen = %q, %v; want %q", keys, err, want)
	}
}

func TestFileKeysStayInDir(t *testing.T) {
	ctx := t.Context()
	parent := t.TempDir()
	dir := filepath.Join(parent, "vault")
	s := newFile(t, dir)
	for _, k := range []string{"a/b/c", "..x/y", "x/..y"} {
		if err := s.Set(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"../escape", "/etc/passwd", "a/../../b"} {
		if err := s.Set(ctx, k, []byte("v")); !errors.Is(err, vault.ErrInvalidKey) {
			t.Errorf("Set(%q) = %v; want ErrInvalidKey", k, err)
		}
	}
	if entries, err := os.ReadDir(parent); err != nil || len(entries) != 1 || entries[0].Name() != "vault" {
		t.Errorf("parent dir holds %v, %v; want only vault", entries, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("vault dir holds %d entries; want 3 files", len(entries))
	}
	for _, e := range entries {
		if e.IsDir() || strings.Contains(e.Name(), "..") {
			t.Errorf("vault dir entry %q: want a plain file named by hash", e.Name())
		}
	}
}

func TestFileLeftoverTempFiles(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := newFile(t, dir)
	if err := s.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// What a crash between CreateTemp and Rename leaves behind: an old one and
	// one that may belong to a write in progress.
	stale := filepath.Join(dir, ".tmp-123456")
	fresh := filepath.Join(dir, ".tmp-654321")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("presence-vault 1\nk\nhalf"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.List(ctx, ""); err != nil || !slices.Equal(keys, []string{"k"}) {
		t.Errorf("List with temp files = %q, %v; want [k]", keys, err)
	}
	r := newFile(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temp file after NewFile: %v; want it removed", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file after NewFile: %v; want it kept", err)
	}
	if v, err := r.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Errorf("Get = %q, %v; want v", v, err)
	}
}

func TestFileForeignAndDamagedFiles(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := newFile(t, dir)
	if err := s.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not an item"), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.List(ctx, ""); err != nil || !slices.Equal(keys, []string{"k"}) {
		t.Errorf("List with a foreign file = %q, %v; want [k]", keys, err)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var item string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".item") {
			item = filepath.Join(dir, e.Name())
		}
	}
	for name, content := range map[string][]byte{
		"bad magic":  []byte("something else\nk\nv"),
		"wrong key":  []byte("presence-vault 1\nother\nv"),
		"no newline": []byte("presence-vault 1\nk"),
		"too large":  append([]byte("presence-vault 1\nk\n"), make([]byte, vault.ItemLimit+1)...),
	} {
		if err := os.WriteFile(item, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, "k"); !errors.Is(err, vault.ErrCorrupt) {
			t.Errorf("%s: Get = %d bytes, %v; want ErrCorrupt", name, len(v), err)
		}
		if name != "too large" {
			if keys, err := s.List(ctx, ""); !errors.Is(err, vault.ErrCorrupt) {
				t.Errorf("%s: List = %q, %v; want ErrCorrupt", name, keys, err)
			}
		}
	}
}

func TestNewFileOnAFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.NewFile(p); err == nil {
		t.Error("NewFile on a regular file succeeded")
	}
	if _, err := vault.NewFile(""); err == nil {
		t.Error(`NewFile("") succeeded`)
	}
}
