package vault_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/presence-mps/presence/vault"
)

const (
	guidA = "11111111-2222-3333-4444-555555555555"
	guidB = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	guidC = "01234567-89ab-cdef-0123-456789abcdef"
)

func TestAMTForBindingRule(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := vault.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	acc := vault.NewAccounts(st)

	if _, _, err := acc.AMTFor(ctx, guidA); !errors.Is(err, vault.ErrNoAMTAccount) {
		t.Fatalf("no accounts: err = %v, want ErrNoAMTAccount", err)
	}
	// One unbound account is everyone's.
	if err := acc.AddAMT(ctx, "ops", "pw-ops", nil); err != nil {
		t.Fatal(err)
	}
	if name, pw, err := acc.AMTFor(ctx, guidA); err != nil || name != "ops" || pw.Reveal() != "pw-ops" {
		t.Fatalf("AMTFor = %q, %v; want ops", name, err)
	}
	// Bound accounts win for their devices; GUIDs in any form.
	if err := acc.AddAMT(ctx, "home", "pw-home", []string{strings.ToUpper(strings.ReplaceAll(guidB, "-", "")), guidC}); err != nil {
		t.Fatal(err)
	}
	for dev, want := range map[string]string{guidA: "ops", guidB: "home", strings.ToUpper(guidC): "home"} {
		if name, _, err := acc.AMTFor(ctx, dev); err != nil || name != want {
			t.Errorf("AMTFor(%s) = %q, %v; want %q", dev, name, err, want)
		}
	}
	if devs, err := acc.AMTDevices(ctx, "home"); err != nil || !slices.Equal(devs, []string{guidC, guidB}) {
		t.Errorf("AMTDevices(home) = %v, %v", devs, err)
	}
	// One device, one account.
	if err := acc.AddAMT(ctx, "other", "pw", []string{guidB}); err == nil || !strings.Contains(err.Error(), `"home"`) {
		t.Errorf("binding a bound device again: err = %v", err)
	}
	// Two unbound accounts: admin is the default; without admin, none.
	if err := acc.AddAMT(ctx, "zed", "pw-zed", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := acc.AMTFor(ctx, guidA); !errors.Is(err, vault.ErrNoAMTAccount) {
		t.Errorf("two unbound, no admin: err = %v", err)
	}
	if err := acc.AddAMT(ctx, "admin", "pw-admin", nil); err != nil {
		t.Fatal(err)
	}
	if name, _, err := acc.AMTFor(ctx, guidA); err != nil || name != "admin" {
		t.Errorf("AMTFor with admin unbound = %q, %v", name, err)
	}
	// Removing a bound account removes its binding: its devices fall back.
	if err := acc.Remove(ctx, vault.KindAMT, "home"); err != nil {
		t.Fatal(err)
	}
	if name, _, err := acc.AMTFor(ctx, guidB); err != nil || name != "admin" {
		t.Errorf("after removing home: AMTFor(B) = %q, %v", name, err)
	}
	if keys, _ := st.List(ctx, "amt-devices/"); len(keys) != 0 {
		t.Errorf("binding items left: %v", keys)
	}
	// Re-adding without devices unbinds; another process's change is seen
	// after Flush.
	if err := acc.AddAMT(ctx, "zed", "pw-zed", []string{guidA}); err != nil {
		t.Fatal(err)
	}
	other := vault.NewAccounts(st)
	if name, _, _ := other.AMTFor(ctx, guidA); name != "zed" {
		t.Fatalf("second reader: %q", name)
	}
	if err := acc.AddAMT(ctx, "zed", "pw-zed", nil); err != nil {
		t.Fatal(err)
	}
	other.Flush()
	if name, _, err := other.AMTFor(ctx, guidA); err != nil || name != "admin" {
		t.Errorf("after zed unbound elsewhere: %q, %v", name, err)
	}
	if _, _, err := acc.AMTFor(ctx, "not-a-guid"); err == nil {
		t.Error("AMTFor of a bad GUID: no error")
	}
}

func TestAMTErrorsHoldNoPassword(t *testing.T) {
	ctx := context.Background()
	acc := vault.NewAccounts(vault.NewMemory(0))
	err := acc.AddAMT(ctx, "a", "s3cret-pw", []string{"zz"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
	if err := acc.AddAMT(ctx, "a", "s3cret-pw", []string{guidA}); err != nil {
		t.Fatal(err)
	}
	err = acc.AddAMT(ctx, "b", "s3cret-pw2", []string{guidA})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
}
