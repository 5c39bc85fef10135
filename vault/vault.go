package vault

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ItemLimit is the largest value, in bytes, that every [Store] accepts
// for one key. It is the Windows Credential Manager limit, the smallest of
// the OS keychains, so data designed for it fits every store.
const ItemLimit = 2560

// MaxKeyLen is the length limit, in bytes, of a key.
const MaxKeyLen = 200

// Errors returned by stores. Callers branch on them with [errors.Is].
var (
	// ErrNotFound means the key, account or certificate does not exist.
	ErrNotFound = errors.New("vault: not found")
	// ErrLocked means the OS keychain is locked.
	ErrLocked = errors.New("vault: the OS keychain is locked: unlock it (log in to the desktop session) and try again")
	// ErrUnavailable means the chosen secret store cannot be used on this machine.
	ErrUnavailable = errors.New("vault: secret store unavailable: choose another with --vault (file suits a headless machine)")
	// ErrTooLarge means a value exceeds the per-item limit of the store.
	ErrTooLarge = errors.New("vault: value too large for one vault item")
	// ErrInvalidKey means a key is empty, too long, not a relative slash-separated
	// path, or uses a byte outside [A-Za-z0-9._@/-].
	ErrInvalidKey = errors.New("vault: invalid key")
	// ErrCorrupt means stored data is damaged and cannot be used.
	ErrCorrupt = errors.New("vault: stored data is damaged")
)

// Store is a secret store: a flat map from keys to small byte values.
//
// Every implementation is safe for concurrent use, checks keys as described
// at [ErrInvalidKey], rejects values over [ItemLimit] bytes with
// [ErrTooLarge], returns copies (callers may modify what they pass and get),
// and returns ctx.Err() for a done context. The contract is tested by
// vaulttest.Run.
type Store interface {
	// Get returns the value of key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set creates or replaces the value of key.
	Set(ctx context.Context, key string, value []byte) error
	// Delete removes key, or returns an error wrapping ErrNotFound.
	Delete(ctx context.Context, key string) error
	// List returns the keys that start with prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
}

// Open returns the store of the given kind: "file" (the directory
// dataDir/vault), "memory" (empty, gone when the process exits) or
// "keychain" (the OS keychain under [DefaultKeychainService], with its index
// in dataDir/keychain-index).
//
// For "keychain", Open first checks that the OS keychain answers, waiting at
// most five seconds (time to answer an unlock prompt), so that a server
// fails at start rather than at the first device. The error then wraps
// [ErrUnavailable] (no keychain here, or no answer in time) or [ErrLocked]
// and says what to do.
func Open(kind, dataDir string) (Store, error) {
	switch kind {
	case "file":
		if dataDir == "" {
			return nil, errors.New("vault: the file store needs a data directory (--data-dir)")
		}
		return NewFile(filepath.Join(dataDir, "vault"))
	case "memory":
		return NewMemory(ItemLimit), nil
	case "keychain":
		if dataDir == "" {
			return nil, errors.New("vault: the keychain store needs a data directory for its index (--data-dir)")
		}
		return openKeychain(dataDir)
	default:
		return nil, fmt.Errorf("vault: unknown store %q: use keychain, file or memory", kind)
	}
}

// checkCall is what every store method checks first: the context, then
// the key.
func checkCall(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return checkKey(key)
}

// checkSet is checkCall plus the value's size, for Set.
func checkSet(ctx context.Context, key string, value []byte, limit int) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	return checkSize(key, value, limit)
}

// checkList is checkCall for List's prefix.
func checkList(ctx context.Context, prefix string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return checkPrefix(prefix)
}

// checkKey reports why key is not a valid key, or returns nil.
func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key is %d bytes, more than %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	if err := checkKeyBytes(key); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%w: %q has an empty path element (leading, trailing or double slash)", ErrInvalidKey, key)
		case ".", "..":
			return fmt.Errorf("%w: %q has a %q path element", ErrInvalidKey, key, seg)
		}
	}
	return nil
}

// checkPrefix checks a List prefix: any start of a valid key, or "".
func checkPrefix(prefix string) error {
	if len(prefix) > MaxKeyLen {
		return fmt.Errorf("%w: prefix is %d bytes, more than %d", ErrInvalidKey, len(prefix), MaxKeyLen)
	}
	return checkKeyBytes(prefix)
}

func checkKeyBytes(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '@' || c == '/' || c == '-' {
			continue
		}
		return fmt.Errorf("%w: %q: byte %d is not in [A-Za-z0-9._@/-]", ErrInvalidKey, s, i)
	}
	return nil
}

func checkSize(key string, value []byte, limit int) error {
	if len(value) > limit {
		return fmt.Errorf("%w: %d bytes for %q, the limit is %d", ErrTooLarge, len(value), key, limit)
	}
	return nil
}

// wrapError is an error with its own message that still matches err with
// errors.Is, for causes whose text would only repeat the message.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

// wrapf returns an error with the formatted message that wraps err.
func wrapf(err error, format string, args ...any) error {
	return &wrapError{msg: fmt.Sprintf(format, args...), err: err}
}
