package vault_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/presence-mps/presence/vault"
)

// spyStore counts Gets and can fail or hold them.
type spyStore struct {
	vault.Store
	gets  atomic.Int64
	mu    sync.Mutex
	err   error            // returned by Get when set
	onGet func(key string) // called after the inner Get, before returning
}

func (s *spyStore) Get(ctx context.Context, key string) ([]byte, error) {
	s.gets.Add(1)
	s.mu.Lock()
	err, hook := s.err, s.onGet
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	v, err := s.Store.Get(ctx, key)
	if hook != nil {
		hook(key)
	}
	return v, err
}

func (s *spyStore) set(err error, hook func(string)) {
	s.mu.Lock()
	s.err, s.onGet = err, hook
	s.mu.Unlock()
}

func verify(t *testing.T, a *vault.Accounts, kind, name, pw string, want bool) {
	t.Helper()
	got, err := a.Verify(t.Context(), kind, name, []byte(pw))
	if err != nil || got != want {
		t.Errorf("Verify(%s, %q, %q) = %v, %v; want %v", kind, name, pw, got, err, want)
	}
}

func TestAccounts(t *testing.T) {
	ctx := t.Context()
	store, err := vault.NewFile(filepath.Join(t.TempDir(), "vault"))
	if err != nil {
		t.Fatal(err)
	}
	a := vault.NewAccounts(store)
	for _, acc := range []struct{ kind, name, pw string }{
		{vault.KindCIRA, "admin", "P@ssw0rd-cira"},
		{vault.KindCIRA, "branch-7@shop.example", "other"},
		{vault.KindConsole, "admin", "console password that is long"},
		{vault.KindAMT, "admin", "amt"},
	} {
		if err := a.Add(ctx, acc.kind, acc.name, vault.Secret(acc.pw)); err != nil {
			t.Fatalf("Add(%s, %s) = %v", acc.kind, acc.name, err)
		}
	}

	verify(t, a, vault.KindCIRA, "admin", "P@ssw0rd-cira", true)
	verify(t, a, vault.KindCIRA, "admin", "P@ssw0rd-cir", false)
	verify(t, a, vault.KindCIRA, "admin", "P@ssw0rd-ciraX", false)
	verify(t, a, vault.KindCIRA, "admin", "", false)
	verify(t, a, vault.KindCIRA, "Admin", "P@ssw0rd-cira", false)
	verify(t, a, vault.KindCIRA, "nobody", "P@ssw0rd-cira", false)
	verify(t, a, vault.KindCIRA, "../admin", "P@ssw0rd-cira", false)
	verify(t, a, vault.KindCIRA, "admin", "console password that is long", false)
	verify(t, a, vault.KindConsole, "admin", "console password that is long", true)
	verify(t, a, vault.KindAMT, "admin", "amt", true)

	if names, err := a.List(ctx, vault.KindCIRA); err != nil || !slices.Equal(names, []string{"admin", "branch-7@shop.example"}) {
		t.Errorf("List(cira) = %q, %v", names, err)
	}
	if names, err := a.List(ctx, vault.KindConsole); err != nil || !slices.Equal(names, []string{"admin"}) {
		t.Errorf("List(console) = %q, %v", names, err)
	}
	if pw, err := a.Password(ctx, vault.KindAMT, "admin"); err != nil || pw.Reveal() != "amt" {
		t.Errorf("Password(amt, admin) = %q, %v; want amt", pw.Reveal(), err)
	}

	// Replacing a password takes effect at once, though the old one was cached.
	if err := a.Add(ctx, vault.KindCIRA, "admin", "new-password"); err != nil {
		t.Fatal(err)
	}
	verify(t, a, vault.KindCIRA, "admin", "P@ssw0rd-cira", false)
	verify(t, a, vault.KindCIRA, "admin", "new-password", true)

	if err := a.Remove(ctx, vault.KindCIRA, "admin"); err != nil {
		t.Fatal(err)
	}
	verify(t, a, vault.KindCIRA, "admin", "new-password", false)
	if _, err := a.Password(ctx, vault.KindCIRA, "admin"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Password after Remove = %v; want ErrNotFound", err)
	}
	if err := a.Remove(ctx, vault.KindCIRA, "admin"); !errors.Is(err, vault.ErrNotFound) || !strings.Contains(err.Error(), `"admin"`) {
		t.Errorf("second Remove = %v; want ErrNotFound naming the account", err)
	}
	verify(t, a, vault.KindConsole, "admin", "console password that is long", true)

	// Another value over the same store sees the change.
	b := vault.NewAccounts(store)
	verify(t, b, vault.KindCIRA, "admin", "new-password", false)
	verify(t, b, vault.KindCIRA, "branch-7@shop.example", "other", true)
}

func TestAccountsValidation(t *testing.T) {
	ctx := t.Context()
	a := vault.NewAccounts(vault.NewMemory(vault.ItemLimit))
	const secret = "do-not-print-me"
	for _, name := range []string{"", ".", "..", "a/b", "a b", "é", strings.Repeat("n", vault.MaxNameLen+1), "a:b"} {
		if err := a.Add(ctx, vault.KindCIRA, name, secret); err == nil {
			t.Errorf("Add(name %q) succeeded", name)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("Add(name %q) error shows the password: %v", name, err)
		}
	}
	if err := a.Add(ctx, vault.KindCIRA, strings.Repeat("n", vault.MaxNameLen), secret); err != nil {
		t.Errorf("Add(name of %d bytes) = %v", vault.MaxNameLen, err)
	}
	for _, kind := range []string{"", "CIRA", "admin", "account"} {
		if err := a.Add(ctx, kind, "x", secret); err == nil {
			t.Errorf("Add(kind %q) succeeded", kind)
		}
		if _, err := a.Verify(ctx, kind, "x", []byte(secret)); err == nil {
			t.Errorf("Verify(kind %q) succeeded", kind)
		}
		if _, err := a.List(ctx, kind); err == nil {
			t.Errorf("List(kind %q) succeeded", kind)
		}
	}
	long := strings.Repeat(secret, vault.MaxPasswordLen/len(secret)+1)
	for _, pw := range []string{"", long} {
		err := a.Add(ctx, vault.KindConsole, "user", vault.Secret(pw))
		if err == nil {
			t.Errorf("Add(password of %d bytes) succeeded", len(pw))
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("Add error shows the password: %v", err)
		}
	}
	maxPW := strings.Repeat("p", vault.MaxPasswordLen)
	if err := a.Add(ctx, vault.KindConsole, "user", vault.Secret(maxPW)); err != nil {
		t.Errorf("Add(password of %d bytes) = %v", vault.MaxPasswordLen, err)
	}
	verify(t, a, vault.KindConsole, "user", maxPW, true)
	verify(t, a, vault.KindConsole, "user", maxPW+"p", false)
}

func TestAccountsCache(t *testing.T) {
	ctx := t.Context()
	spy := &spyStore{Store: vault.NewMemory(vault.ItemLimit)}
	a := vault.NewAccounts(spy)
	if err := a.Add(ctx, vault.KindCIRA, "admin", "pw"); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		verify(t, a, vault.KindCIRA, "admin", "pw", true)
		verify(t, a, vault.KindCIRA, "admin", "wrong", false)
		verify(t, a, vault.KindCIRA, "ghost", "pw", false)
	}
	if n := spy.gets.Load(); n != 2 {
		t.Errorf("store Gets for 300 Verifies of 2 names = %d; want 2", n)
	}

	// A change behind the cache's back is seen after Flush.
	if err := spy.Store.Set(ctx, "account/cira/ghost", []byte("boo")); err != nil {
		t.Fatal(err)
	}
	verify(t, a, vault.KindCIRA, "ghost", "boo", false)
	a.Flush()
	verify(t, a, vault.KindCIRA, "ghost", "boo", true)

	// Store errors are returned and not cached.
	a.Flush()
	spy.set(vault.ErrLocked, nil)
	if ok, err := a.Verify(ctx, vault.KindCIRA, "admin", []byte("pw")); ok || !errors.Is(err, vault.ErrLocked) {
		t.Errorf("Verify with a locked store = %v, %v; want false, ErrLocked", ok, err)
	}
	spy.set(nil, nil)
	verify(t, a, vault.KindCIRA, "admin", "pw", true)
}

func TestAccountsUnknownCacheIsBounded(t *testing.T) {
	a := vault.NewAccounts(vault.NewMemory(vault.ItemLimit))
	if err := a.Add(t.Context(), vault.KindCIRA, "admin", "pw"); err != nil {
		t.Fatal(err)
	}
	verify(t, a, vault.KindCIRA, "admin", "pw", true)
	for i := range 3 * vault.MaxUnknownForTest {
		verify(t, a, vault.KindCIRA, fmt.Sprintf("made-up-%d", i), "pw", false)
	}
	known, unknown := a.CacheSizeForTest()
	if known != 1 || unknown > vault.MaxUnknownForTest || unknown == 0 {
		t.Errorf("cache holds %d present and %d absent accounts; want 1 and 1..%d", known, unknown, vault.MaxUnknownForTest)
	}
}

// TestAccountsCacheNotStale checks that a Verify that read the store before
// an Add does not put the old password back in the cache after it.
func TestAccountsCacheNotStale(t *testing.T) {
	ctx := t.Context()
	spy := &spyStore{Store: vault.NewMemory(vault.ItemLimit)}
	a := vault.NewAccounts(spy)
	if err := spy.Store.Set(ctx, "account/cira/admin", []byte("old")); err != nil {
		t.Fatal(err)
	}
	read, release := make(chan struct{}), make(chan struct{})
	spy.set(nil, func(string) {
		close(read)
		<-release
	})
	done := make(chan bool, 1)
	go func() {
		ok, err := a.Verify(ctx, vault.KindCIRA, "admin", []byte("old"))
		if err != nil {
			t.Error(err)
		}
		done <- ok
	}()
	<-read // the Verify has read "old" from the store
	spy.set(nil, nil)
	err := a.Add(ctx, vault.KindCIRA, "admin", "new")
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if !<-done {
		t.Error("Verify that read before the Add = false; want true (it read the old password)")
	}
	verify(t, a, vault.KindCIRA, "admin", "old", false)
	verify(t, a, vault.KindCIRA, "admin", "new", true)
}

func TestCIRAAuthenticator(t *testing.T) {
	ctx := t.Context()
	a := vault.NewAccounts(vault.NewMemory(vault.ItemLimit))
	if err := a.Add(ctx, vault.KindCIRA, "dev", "cira-pw"); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(ctx, vault.KindConsole, "con", "console-pw"); err != nil {
		t.Fatal(err)
	}
	auth := a.CIRAAuthenticator()
	for _, tc := range []struct {
		user, pw string
		want     bool
	}{
		{"dev", "cira-pw", true},
		{"dev", "console-pw", false},
		{"con", "console-pw", false}, // console accounts cannot log in as devices
		{"", "", false},
		{"dev\x00", "cira-pw", false},
	} {
		if ok, err := auth(ctx, tc.user, []byte(tc.pw)); ok != tc.want || err != nil {
			t.Errorf("auth(%q, %q) = %v, %v; want %v", tc.user, tc.pw, ok, err, tc.want)
		}
	}
}

// benchAccounts is a file store with one CIRA account, and its password.
func benchAccounts(b *testing.B) (*vault.Accounts, []byte) {
	b.Helper()
	store, err := vault.NewFile(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	a := vault.NewAccounts(store)
	if err := a.Add(b.Context(), vault.KindCIRA, "admin", "P@ssw0rd-cira"); err != nil {
		b.Fatal(err)
	}
	pw := []byte("P@ssw0rd-cira")
	return a, pw
}

// BenchmarkVerify measures the CIRA handshake path: many devices sharing one
// account, so every call after the first is a cache hit.
func BenchmarkVerify(b *testing.B) {
	a, pw := benchAccounts(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, err := a.Verify(context.Background(), vault.KindCIRA, "admin", pw); !ok || err != nil {
				b.Errorf("Verify = %v, %v", ok, err)
				return
			}
		}
	})
}

// BenchmarkVerifyUncached measures a Verify that reads the file store.
func BenchmarkVerifyUncached(b *testing.B) {
	a, pw := benchAccounts(b)
	b.ReportAllocs()
	for b.Loop() {
		a.Flush()
		if ok, err := a.Verify(b.Context(), vault.KindCIRA, "admin", pw); !ok || err != nil {
			b.Fatalf("Verify = %v, %v", ok, err)
		}
	}
}
