// Package vaulttest provides the contract test of [vault.Store] and a
// certificate authority for tests of other packages.
package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/presence-mps/presence/vault"
)

// Run tests that the stores newStore returns keep the [vault.Store]
// contract. newStore must return a new, empty store on every call.
func Run(t *testing.T, newStore func(t *testing.T) vault.Store) {
	t.Run("GetMissing", func(t *testing.T) {
		s := newStore(t)
		if v, err := s.Get(t.Context(), "a/missing"); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Get(missing) = %q, %v; want ErrNotFound", v, err)
		}
	})

	t.Run("SetGetOverwrite", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		mustSet(t, s, "ca/root.key", []byte("one"))
		wantGet(t, s, "ca/root.key", []byte("one"))
		mustSet(t, s, "ca/root.key", []byte("two, longer"))
		wantGet(t, s, "ca/root.key", []byte("two, longer"))
		mustSet(t, s, "ca/root.key", []byte("3"))
		wantGet(t, s, "ca/root.key", []byte("3"))
		if keys, err := s.List(ctx, ""); err != nil || !slices.Equal(keys, []string{"ca/root.key"}) {
			t.Errorf("List after overwrites = %q, %v; want one key", keys, err)
		}
	})

	t.Run("Copies", func(t *testing.T) {
		s := newStore(t)
		in := []byte("secret")
		mustSet(t, s, "k", in)
		in[0] = 'X'
		wantGet(t, s, "k", []byte("secret"))
		out, err := s.Get(t.Context(), "k")
		if err != nil {
			t.Fatal(err)
		}
		out[0] = 'Y'
		wantGet(t, s, "k", []byte("secret"))
	})

	t.Run("BinaryAndEmptyValues", func(t *testing.T) {
		s := newStore(t)
		all := make([]byte, 256*3)
		for i := range all {
			all[i] = byte(i)
		}
		values := map[string][]byte{
			"bin/all":      all,
			"bin/newlines": []byte("\n\nline\r\n\x00\n"),
			"bin/empty":    {},
			"bin/nul":      {0},
		}
		for k, v := range values {
			mustSet(t, s, k, v)
		}
		for k, v := range values {
			wantGet(t, s, k, v)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		mustSet(t, s, "a/x", []byte("x"))
		mustSet(t, s, "a/y", []byte("y"))
		if err := s.Delete(ctx, "a/x"); err != nil {
			t.Fatalf("Delete(a/x) = %v", err)
		}
		if v, err := s.Get(ctx, "a/x"); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Get after Delete = %q, %v; want ErrNotFound", v, err)
		}
		if err := s.Delete(ctx, "a/x"); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("second Delete = %v; want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "never/set"); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Delete(never set) = %v; want ErrNotFound", err)
		}
		wantGet(t, s, "a/y", []byte("y"))
		mustSet(t, s, "a/x", []byte("again"))
		wantGet(t, s, "a/x", []byte("again"))
	})

	t.Run("List", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		if keys, err := s.List(ctx, ""); err != nil || len(keys) != 0 {
			t.Errorf("List of an empty store = %q, %v; want none", keys, err)
		}
		keys := []string{
			"account/cira/b", "account/cira/a", "account/cira/B", "account/console/a",
			"accountx", "ca/root.crt", "ca/root.key", "z",
		}
		for _, k := range keys {
			mustSet(t, s, k, []byte(k))
		}
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"", slices.Sorted(slices.Values(keys))},
			{"account/", []string{"account/cira/B", "account/cira/a", "account/cira/b", "account/console/a"}},
			{"account/cira/", []string{"account/cira/B", "account/cira/a", "account/cira/b"}},
			{"account", []string{"account/cira/B", "account/cira/a", "account/cira/b", "account/console/a", "accountx"}},
			{"ca/root.", []string{"ca/root.crt", "ca/root.key"}},
			{"account/amt/", nil},
			{"nothing", nil},
		} {
			got, err := s.List(ctx, tc.prefix)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("List(%q) = %q, %v; want %q", tc.prefix, got, err, tc.want)
			}
		}
		if _, err := s.List(ctx, "bad prefix"); !errors.Is(err, vault.ErrInvalidKey) {
			t.Errorf("List(bad prefix) = %v; want ErrInvalidKey", err)
		}
	})

	t.Run("CaseSensitiveKeys", func(t *testing.T) {
		s := newStore(t)
		mustSet(t, s, "account/cira/Admin", []byte("upper"))
		mustSet(t, s, "account/cira/admin", []byte("lower"))
		wantGet(t, s, "account/cira/Admin", []byte("upper"))
		wantGet(t, s, "account/cira/admin", []byte("lower"))
	})

	t.Run("Keys", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		long := strings.Repeat("k", vault.MaxKeyLen)
		valid := []string{long, "a", "ca/root.key", "account/cira/x@y.example", "A-Z_0.9/-.-/..x", ".hidden"}
		for _, k := range valid {
			mustSet(t, s, k, []byte(k))
			wantGet(t, s, k, []byte(k))
		}
		invalid := []string{
			"", long + "k", "/abs", "a/", "a//b", "..", ".", "a/../b", "a/./b", "../x",
			"a b", "a\\b", "a:b", "a\x00b", "a\nb", "ä", "a%2Fb", "C:/x", "~/x",
		}
		for _, k := range invalid {
			if err := s.Set(ctx, k, []byte("v")); !errors.Is(err, vault.ErrInvalidKey) {
				t.Errorf("Set(%q) = %v; want ErrInvalidKey", k, err)
			}
			if _, err := s.Get(ctx, k); !errors.Is(err, vault.ErrInvalidKey) {
				t.Errorf("Get(%q) = %v; want ErrInvalidKey", k, err)
			}
			if err := s.Delete(ctx, k); !errors.Is(err, vault.ErrInvalidKey) {
				t.Errorf("Delete(%q) = %v; want ErrInvalidKey", k, err)
			}
		}
		got, err := s.List(ctx, "")
		if err != nil || !slices.Equal(got, slices.Sorted(slices.Values(valid))) {
			t.Errorf("List after invalid keys = %q, %v; want only the valid keys", got, err)
		}
	})

	t.Run("SizeLimit", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		limit := bytes.Repeat([]byte{0xA5}, vault.ItemLimit)
		mustSet(t, s, "big/max", limit)
		wantGet(t, s, "big/max", limit)
		over := append(bytes.Clone(limit), 1)
		if err := s.Set(ctx, "big/over", over); !errors.Is(err, vault.ErrTooLarge) {
			t.Errorf("Set(limit+1 bytes) = %v; want ErrTooLarge", err)
		}
		if _, err := s.Get(ctx, "big/over"); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Get after a rejected Set = %v; want ErrNotFound", err)
		}
		if err := s.Set(ctx, "big/max", over); !errors.Is(err, vault.ErrTooLarge) {
			t.Errorf("overwrite with limit+1 bytes = %v; want ErrTooLarge", err)
		}
		wantGet(t, s, "big/max", limit)
	})

	t.Run("LargeValue16KiB", func(t *testing.T) {
		// A value over the per-item limit, such as a PEM bundle, goes
		// through vault.SetLarge in items every store accepts.
		s := newStore(t)
		ctx := t.Context()
		big := make([]byte, 16<<10)
		for i := range big {
			big[i] = byte(i*7 + i>>8)
		}
		if err := vault.SetLarge(ctx, s, "tls/bundle.pem", big); err != nil {
			t.Fatalf("SetLarge(16 KiB) = %v", err)
		}
		if got, err := vault.GetLarge(ctx, s, "tls/bundle.pem"); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("GetLarge = %d bytes, %v; want the 16 KiB written", len(got), err)
		}
		keys, err := s.List(ctx, "tls/")
		if want := 1 + (len(big)+vault.ItemLimit-1)/vault.ItemLimit; err != nil || len(keys) != want {
			t.Errorf("List after SetLarge = %d keys, %v; want %d (a header and the parts)", len(keys), err, want)
		}
		small := []byte("replaced by a short value")
		if err := vault.SetLarge(ctx, s, "tls/bundle.pem", small); err != nil {
			t.Fatalf("SetLarge(replace) = %v", err)
		}
		wantLarge := func(want []byte) {
			t.Helper()
			if got, err := vault.GetLarge(ctx, s, "tls/bundle.pem"); err != nil || !bytes.Equal(got, want) {
				t.Errorf("GetLarge = %q, %v; want %q", trim(got), err, trim(want))
			}
		}
		wantLarge(small)
		if keys, err := s.List(ctx, "tls/"); err != nil || len(keys) != 2 {
			t.Errorf("List after replacing = %q, %v; want the header and one part", keys, err)
		}
		if err := vault.DeleteLarge(ctx, s, "tls/bundle.pem"); err != nil {
			t.Fatalf("DeleteLarge = %v", err)
		}
		if keys, err := s.List(ctx, "tls/"); err != nil || len(keys) != 0 {
			t.Errorf("List after DeleteLarge = %q, %v; want none", keys, err)
		}
		if _, err := vault.GetLarge(ctx, s, "tls/bundle.pem"); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("GetLarge after DeleteLarge = %v; want ErrNotFound", err)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := newStore(t)
		mustSet(t, s, "k", []byte("v"))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
			t.Errorf("Get = %v; want context.Canceled", err)
		}
		if err := s.Set(ctx, "k", []byte("new")); !errors.Is(err, context.Canceled) {
			t.Errorf("Set = %v; want context.Canceled", err)
		}
		if err := s.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
			t.Errorf("Delete = %v; want context.Canceled", err)
		}
		if _, err := s.List(ctx, ""); !errors.Is(err, context.Canceled) {
			t.Errorf("List = %v; want context.Canceled", err)
		}
		wantGet(t, s, "k", []byte("v"))
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := newStore(t)
		ctx := t.Context()
		const workers, rounds = 8, 12
		var wg sync.WaitGroup
		errs := make(chan error, workers*rounds*8)
		for w := range workers {
			wg.Go(func() {
				for r := range rounds {
					own := fmt.Sprintf("c/own%d", w)
					val := fmt.Appendf(nil, "%d-%d", w, r)
					if err := s.Set(ctx, own, val); err != nil {
						errs <- err
						return
					}
					if got, err := s.Get(ctx, own); err != nil || !bytes.Equal(got, val) {
						errs <- fmt.Errorf("Get(%s) = %q, %v; want %q", own, got, err, val)
					}
					// Everyone writes the shared key; a reader sees some writer's whole value.
					if err := s.Set(ctx, "c/shared", val); err != nil {
						errs <- err
					}
					if got, err := s.Get(ctx, "c/shared"); err != nil || !validShared(got, workers, rounds) {
						errs <- fmt.Errorf("Get(c/shared) = %q, %v", got, err)
					}
					tmp := fmt.Sprintf("c/tmp%d", w)
					if err := s.Set(ctx, tmp, val); err != nil {
						errs <- err
					}
					if err := s.Delete(ctx, tmp); err != nil {
						errs <- err
					}
					if _, err := s.List(ctx, "c/"); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		keys, err := s.List(ctx, "c/")
		if err != nil || len(keys) != workers+1 {
			t.Errorf("List after concurrent use = %q, %v; want %d own keys and c/shared", keys, err, workers)
		}
		for w := range workers {
			wantGet(t, s, fmt.Sprintf("c/own%d", w), fmt.Appendf(nil, "%d-%d", w, rounds-1))
		}
	})
}

func validShared(v []byte, workers, rounds int) bool {
	var w, r int
	n, err := fmt.Sscanf(string(v), "%d-%d", &w, &r)
	return err == nil && n == 2 && w < workers && r < rounds && string(v) == fmt.Sprintf("%d-%d", w, r)
}

func mustSet(t *testing.T, s vault.Store, key string, value []byte) {
	t.Helper()
	if err := s.Set(t.Context(), key, value); err != nil {
		t.Fatalf("Set(%q, %d bytes) = %v", key, len(value), err)
	}
}

func wantGet(t *testing.T, s vault.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("Get(%q) = %q, %v; want %q", key, trim(got), err, trim(want))
	}
}

func trim(b []byte) []byte {
	if len(b) > 40 {
		return append(b[:40:40], "..."...)
	}
	return b
}

var keys struct {
	once         sync.Once
	root, server *rsa.PrivateKey
	err          error
}

// Keys returns an RSA-3072 root key and an RSA-2048 server key, generated
// once per test binary because RSA key generation is slow. Every caller gets
// the same keys; they must not be used outside tests.
func Keys(t testing.TB) (root, server *rsa.PrivateKey) {
	t.Helper()
	keys.once.Do(func() {
		if keys.root, keys.err = rsa.GenerateKey(rand.Reader, 3072); keys.err != nil {
			return
		}
		keys.server, keys.err = rsa.GenerateKey(rand.Reader, 2048)
	})
	if keys.err != nil {
		t.Fatalf("vaulttest: generate keys: %v", keys.err)
	}
	return keys.root, keys.server
}

// CA returns a new certificate authority for address (an IP literal or DNS
// name) in a fresh memory store, made with the keys of [Keys]. Every CA has
// its own root certificate, but all share the same keys.
func CA(t testing.TB, address string) *vault.CA {
	t.Helper()
	root, server := Keys(t)
	ca, err := vault.InitCA(t.Context(), vault.NewMemory(vault.ItemLimit), vault.CAOptions{
		Address: address, RootKey: root, ServerKey: server,
	})
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	return ca
}
