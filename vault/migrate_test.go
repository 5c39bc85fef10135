package vault_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/presence-mps/presence/vault"
)

func TestMigrate(t *testing.T) {
	ctx := t.Context()
	src := newFile(t, t.TempDir())
	want := fillStore(t, src)
	dst := newFile(t, t.TempDir())

	res, err := vault.Migrate(ctx, src, dst, vault.MigrateOptions{})
	if err != nil || res != (vault.MigrateResult{Copied: len(want)}) {
		t.Fatalf("Migrate = %+v, %v; want %d copied", res, err, len(want))
	}
	wantItems(t, dst, want)
	wantItems(t, src, want) // the source is never changed

	// A second run has nothing to do.
	res, err = vault.Migrate(ctx, src, dst, vault.MigrateOptions{})
	if err != nil || res != (vault.MigrateResult{Unchanged: len(want)}) {
		t.Errorf("second Migrate = %+v, %v; want all unchanged", res, err)
	}

	// A different value in the destination stops the migration before it
	// writes anything.
	set(t, src, "account/cira/admin", []byte("changed in the source"))
	set(t, src, "account/cira/new", []byte("new in the source"))
	res, err = vault.Migrate(ctx, src, dst, vault.MigrateOptions{})
	if !errors.Is(err, vault.ErrExists) || !strings.Contains(err.Error(), `"account/cira/admin"`) || res.Copied != 0 {
		t.Errorf("Migrate over a different value = %+v, %v; want ErrExists naming the key", res, err)
	}
	wantItems(t, dst, want)

	res, err = vault.Migrate(ctx, src, dst, vault.MigrateOptions{Overwrite: true})
	if err != nil || res.Copied != 2 || res.Replaced != 1 || res.Unchanged != len(want)-1 {
		t.Errorf("Migrate with Overwrite = %+v, %v; want 2 copied, 1 replaced", res, err)
	}
	want["account/cira/admin"] = []byte("changed in the source")
	want["account/cira/new"] = []byte("new in the source")
	wantItems(t, dst, want)
	if got, err := vault.GetLarge(ctx, dst, "tls/bundle"); err != nil || len(got) != 16<<10 {
		t.Errorf("GetLarge in the destination = %d bytes, %v", len(got), err)
	}
}

// TestMigrateManyConflicts checks that the error names a few keys, not all.
func TestMigrateManyConflicts(t *testing.T) {
	ctx := t.Context()
	src, dst := vault.NewMemory(0), vault.NewMemory(0)
	for _, k := range strings.Fields("a b c d e f g h") {
		set(t, src, k, []byte("src"))
		set(t, dst, k, []byte("dst"))
	}
	_, err := vault.Migrate(ctx, src, dst, vault.MigrateOptions{})
	if !errors.Is(err, vault.ErrExists) || !strings.Contains(err.Error(), "8 keys") || !strings.Contains(err.Error(), "and 3 more") {
		t.Errorf("Migrate = %v; want ErrExists for 8 keys naming 5", err)
	}
}

// failingStore fails Set after n successful ones, or reads back wrong values.
type failingStore struct {
	*vault.Memory
	setsLeft int
	garble   bool
}

func (s *failingStore) Set(ctx context.Context, key string, v []byte) error {
	if s.setsLeft == 0 {
		return errors.New("disk full")
	}
	s.setsLeft--
	if s.garble {
		v = append([]byte("garbled"), v...)
	}
	return s.Memory.Set(ctx, key, v)
}

func TestMigrateFailures(t *testing.T) {
	ctx := t.Context()
	src := vault.NewMemory(0)
	want := fillStore(t, src)

	dst := &failingStore{Memory: vault.NewMemory(0), setsLeft: 3}
	res, err := vault.Migrate(ctx, src, dst, vault.MigrateOptions{})
	if err == nil || res.Copied != 3 {
		t.Errorf("Migrate into a store that fails = %+v, %v; want an error after 3 copies", res, err)
	}
	// The interrupted migration completes when run again.
	dst.setsLeft = -1
	res, err = vault.Migrate(ctx, src, dst, vault.MigrateOptions{})
	if err != nil || res.Copied != len(want)-3 || res.Unchanged != 3 {
		t.Errorf("Migrate again = %+v, %v; want the rest copied", res, err)
	}
	wantItems(t, dst, want)

	garbling := &failingStore{Memory: vault.NewMemory(0), setsLeft: -1, garble: true}
	if _, err := vault.Migrate(ctx, src, garbling, vault.MigrateOptions{}); !errors.Is(err, vault.ErrCorrupt) {
		t.Errorf("Migrate into a store that changes values = %v; want ErrCorrupt", err)
	}
}
