package vault_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/presence-mps/presence/vault"
)

func TestLargeDamage(t *testing.T) {
	value := bytes.Repeat([]byte("0123456789"), 800) // 8000 bytes: 4 parts
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, s vault.Store, parts []string)
	}{
		{"changed part", func(t *testing.T, s vault.Store, parts []string) {
			set(t, s, parts[1], bytes.Repeat([]byte("x"), vault.ItemLimit))
		}},
		{"short part", func(t *testing.T, s vault.Store, parts []string) { set(t, s, parts[3], []byte("short")) }},
		{"missing part", func(t *testing.T, s vault.Store, parts []string) {
			if err := s.Delete(t.Context(), parts[0]); err != nil {
				t.Fatal(err)
			}
		}},
		{"plain item", func(t *testing.T, s vault.Store, _ []string) { set(t, s, "big", []byte("not a header")) }},
		{"bad length", func(t *testing.T, s vault.Store, _ []string) {
			h, err := s.Get(t.Context(), "big")
			if err != nil {
				t.Fatal(err)
			}
			set(t, s, "big", bytes.Replace(h, []byte(" 8000 "), []byte(" 99999999 "), 1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := vault.NewMemory(0)
			if err := vault.SetLarge(t.Context(), s, "big", value); err != nil {
				t.Fatal(err)
			}
			parts, err := s.List(t.Context(), "big/")
			if err != nil || len(parts) != 4 {
				t.Fatalf("parts = %q, %v; want 4", parts, err)
			}
			tc.damage(t, s, parts)
			if v, err := vault.GetLarge(t.Context(), s, "big"); !errors.Is(err, vault.ErrCorrupt) {
				t.Errorf("GetLarge = %d bytes, %v; want ErrCorrupt", len(v), err)
			}
		})
	}
}

func TestLargeInterrupted(t *testing.T) {
	ctx := t.Context()
	s := vault.NewMemory(0)
	old := bytes.Repeat([]byte("old "), 1000)
	if err := vault.SetLarge(ctx, s, "big", old); err != nil {
		t.Fatal(err)
	}
	// What a SetLarge that stopped before its header leaves behind: parts of
	// a new generation, and an item of its own that shares the prefix.
	set(t, s, vault.LargeChunkKeyForTest("big", "0123456789abcdef", 0), []byte("new part"))
	set(t, s, "big/notes", []byte("an item of its own"))
	if got, err := vault.GetLarge(ctx, s, "big"); err != nil || !bytes.Equal(got, old) {
		t.Errorf("GetLarge after an interrupted replace = %d bytes, %v; want the old value", len(got), err)
	}
	if err := vault.DeleteLarge(ctx, s, "big"); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.List(ctx, ""); err != nil || !slices.Equal(keys, []string{"big/notes"}) {
		t.Errorf("List after DeleteLarge = %q, %v; want only the unrelated item", keys, err)
	}
	if err := vault.DeleteLarge(ctx, s, "big"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("second DeleteLarge = %v; want ErrNotFound", err)
	}
}

func TestLargeLimits(t *testing.T) {
	ctx := t.Context()
	s := vault.NewMemory(0)
	for _, n := range []int{0, 1, vault.ItemLimit, vault.ItemLimit + 1, vault.MaxLargeLen} {
		v := bytes.Repeat([]byte{0xEE}, n)
		if err := vault.SetLarge(ctx, s, "v", v); err != nil {
			t.Fatalf("SetLarge(%d bytes) = %v", n, err)
		}
		if got, err := vault.GetLarge(ctx, s, "v"); err != nil || !bytes.Equal(got, v) {
			t.Errorf("GetLarge(%d bytes) = %d bytes, %v", n, len(got), err)
		}
	}
	if err := vault.SetLarge(ctx, s, "v", make([]byte, vault.MaxLargeLen+1)); !errors.Is(err, vault.ErrTooLarge) {
		t.Errorf("SetLarge(MaxLargeLen+1) = %v; want ErrTooLarge", err)
	}
	long := strings.Repeat("k", vault.MaxKeyLen-20)
	if err := vault.SetLarge(ctx, s, long, []byte("v")); !errors.Is(err, vault.ErrInvalidKey) {
		t.Errorf("SetLarge(key of %d bytes) = %v; want ErrInvalidKey", len(long), err)
	}
	if err := vault.SetLarge(ctx, s, long[1:], []byte("v")); err != nil {
		t.Errorf("SetLarge(key of %d bytes) = %v", len(long)-1, err)
	}
	if _, err := vault.GetLarge(ctx, s, "a b"); !errors.Is(err, vault.ErrInvalidKey) {
		t.Errorf("GetLarge(bad key) = %v; want ErrInvalidKey", err)
	}
}

func set(t *testing.T, s vault.Store, key string, v []byte) {
	t.Helper()
	if err := s.Set(t.Context(), key, v); err != nil {
		t.Fatal(err)
	}
}
