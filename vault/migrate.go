package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrExists means that [Migrate] found different values in the destination
// and was not told to overwrite them.
var ErrExists = errors.New("vault: the destination already holds different values")

// MigrateOptions configures [Migrate].
type MigrateOptions struct {
	// Overwrite replaces values that the destination holds for the same keys
	// with the source's. Without it, Migrate refuses before writing anything.
	Overwrite bool
}

// MigrateResult counts what [Migrate] did, by key.
type MigrateResult struct {
	// Copied items were written to the destination and read back intact.
	Copied int
	// Replaced is how many of the Copied items replaced a different value.
	Replaced int
	// Unchanged items already held the same value in the destination.
	Unchanged int
	// Missing keys were listed by the source but had no value when read: a
	// keychain index entry whose item is gone (see the package doc).
	Missing int
}

// Migrate copies every item of from into to: it lists all keys, reads each
// value, writes it, and reads it back to check it. It never deletes or
// changes anything in from; remove the old store yourself once the new one
// works.
//
// Before it writes anything, Migrate reads the destination's value of every
// key. If any differs and opts.Overwrite is false, it returns an error
// wrapping [ErrExists] that names the keys, and to is unchanged. Items that
// are already equal are not written again, so running Migrate twice is
// harmless, and a second run completes an interrupted one.
//
// Items are written in reverse key order, so the parts of a [SetLarge]
// value ("k/…") land before its header ("k").
func Migrate(ctx context.Context, from, to Store, opts MigrateOptions) (MigrateResult, error) {
	var res MigrateResult
	keys, err := from.List(ctx, "")
	if err != nil {
		return res, fmt.Errorf("vault: migrate: list the source: %w", err)
	}
	type item struct {
		key      string
		value    []byte
		replaces bool
	}
	var todo []item
	var differ []string
	for _, key := range keys {
		v, err := from.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			res.Missing++
			continue
		}
		if err != nil {
			return res, fmt.Errorf("vault: migrate: read %q from the source: %w", key, err)
		}
		have, err := to.Get(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			todo = append(todo, item{key: key, value: v})
		case err != nil:
			return res, fmt.Errorf("vault: migrate: read %q from the destination: %w", key, err)
		case bytes.Equal(have, v):
			res.Unchanged++
		default:
			differ = append(differ, key)
			todo = append(todo, item{key: key, value: v, replaces: true})
		}
	}
	if len(differ) > 0 && !opts.Overwrite {
		names := differ
		if len(names) > 5 {
			names = names[:5]
		}
		more := ""
		if len(differ) > len(names) {
			more = fmt.Sprintf(" and %d more", len(differ)-len(names))
		}
		return res, wrapf(ErrExists, "vault: migrate: the destination already holds different values for %d keys (%s%s); nothing was copied",
			len(differ), strings.Join(quoteAll(names), ", "), more)
	}
	for _, it := range slices.Backward(todo) {
		if err := to.Set(ctx, it.key, it.value); err != nil {
			return res, fmt.Errorf("vault: migrate: write %q: %w", it.key, err)
		}
		got, err := to.Get(ctx, it.key)
		if err != nil {
			return res, fmt.Errorf("vault: migrate: read back %q: %w", it.key, err)
		}
		if !bytes.Equal(got, it.value) {
			return res, fmt.Errorf("%w: migrate: %q reads back from the destination different from what was written", ErrCorrupt, it.key)
		}
		res.Copied++
		if it.replaces {
			res.Replaced++
		}
	}
	return res, nil
}

func quoteAll(ss []string) []string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return q
}
