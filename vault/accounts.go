package vault

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Account kinds.
const (
	// KindCIRA accounts are the username and password AMT devices log in to
	// the MPS with. Many devices usually share one.
	KindCIRA = "cira"
	// KindConsole accounts are the users of the console proxy and the API.
	KindConsole = "console"
	// KindAMT accounts are AMT admin credentials for digest authentication.
	KindAMT = "amt"
)

// Account limits. AMT itself accepts CIRA usernames and passwords of at most
// 16 characters; the limits here are the store's, shared by every kind.
const (
	MaxNameLen     = 64
	MaxPasswordLen = 256
)

// maxUnknown bounds the cache of names known not to exist, which a peer can
// fill with made-up names.
const maxUnknown = 1024

// Accounts keeps passwords in a [Store], one item per account under
// "account/KIND/NAME". It is safe for concurrent use. Use [NewAccounts].
//
// Verify caches a digest of each password it reads, and which names do not
// exist. Add, Remove and Flush on this value update the cache; changes made
// to the store by other means (another Accounts, another process) are seen
// only after [Accounts.Flush].
type Accounts struct {
	store Store

	mu      sync.RWMutex
	gen     uint64                       // bumped on every change; guarded by mu
	known   map[string][sha256.Size]byte // store key → SHA-256 of the password; guarded by mu
	unknown map[string]struct{}          // store keys known to be absent; guarded by mu
	amt     *amtIndex                    // AMT bindings (amt.go), valid while amt.gen == gen; guarded by mu
}

// NewAccounts returns the accounts kept in s.
func NewAccounts(s Store) *Accounts {
	return &Accounts{
		store:   s,
		known:   make(map[string][sha256.Size]byte),
		unknown: make(map[string]struct{}),
	}
}

// Store returns the store the accounts are kept in.
func (a *Accounts) Store() Store { return a.store }

// Add creates the account, or replaces its password if it exists. The name
// is 1 to [MaxNameLen] characters from [A-Za-z0-9._@-]; the password is 1 to
// [MaxPasswordLen] bytes.
func (a *Accounts) Add(ctx context.Context, kind, name string, password Secret) error {
	key, err := accountKey(kind, name)
	if err != nil {
		return err
	}
	if n := len(password.Reveal()); n == 0 || n > MaxPasswordLen {
		return fmt.Errorf("vault: the password for %s account %q must be 1 to %d bytes, not %d", kind, name, MaxPasswordLen, n)
	}
	defer a.forget(key) // even after a failed Set: the store may have changed
	return a.store.Set(ctx, key, []byte(password.Reveal()))
}

// Remove deletes the account. It returns an error wrapping [ErrNotFound] if
// there is no such account.
func (a *Accounts) Remove(ctx context.Context, kind, name string) error {
	key, err := accountKey(kind, name)
	if err != nil {
		return err
	}
	defer a.forget(key)
	err = a.store.Delete(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return wrapf(err, "vault: no %s account %q", kind, name)
	}
	if err == nil && kind == KindAMT {
		// Its binding goes with it (amt.go).
		if err := a.store.Delete(ctx, amtDevicesPrefix+name); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return err
}

// List returns the names of the accounts of kind, sorted.
func (a *Accounts) List(ctx context.Context, kind string) ([]string, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	prefix := "account/" + kind + "/"
	keys, err := a.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = strings.TrimPrefix(k, prefix)
	}
	return names, nil
}

// Password returns the password of the account, or an error wrapping
// [ErrNotFound].
func (a *Accounts) Password(ctx context.Context, kind, name string) (Secret, error) {
	key, err := accountKey(kind, name)
	if err != nil {
		return "", err
	}
	pw, err := a.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return "", wrapf(err, "vault: no %s account %q", kind, name)
	}
	if err != nil {
		return "", err
	}
	return Secret(pw), nil
}

// Verify reports whether password is the password of the account. An
// account that does not exist, or a name that cannot exist, gives false and
// no error; an error means the store could not be read. The comparison takes
// the same time whatever the password and whether the account exists.
func (a *Accounts) Verify(ctx context.Context, kind, name string, password []byte) (bool, error) {
	if err := checkKind(kind); err != nil {
		return false, err
	}
	got := sha256.Sum256(password)
	var want [sha256.Size]byte
	exists := false
	if checkName(name) == nil {
		var err error
		want, exists, err = a.digest(ctx, "account/"+kind+"/"+name)
		if err != nil {
			return false, err
		}
	}
	// Comparing digests rather than passwords keeps the length of the stored
	// password from leaking through the comparison time.
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	return exists && match, nil
}

// CIRAAuthenticator returns a function that checks the username and
// password an AMT device sends in USERAUTH_REQUEST against the CIRA accounts.
// A non-nil error means the vault could not be read (it is locked, for
// example), not that the password is wrong.
func (a *Accounts) CIRAAuthenticator() func(ctx context.Context, user string, password []byte) (bool, error) {
	return func(ctx context.Context, user string, password []byte) (bool, error) {
		return a.Verify(ctx, KindCIRA, user, password)
	}
}

// Flush empties the cache, so that Verify reads the store again. Call it
// after the store was changed by other means than this value.
func (a *Accounts) Flush() {
	a.mu.Lock()
	a.gen++
	clear(a.known)
	clear(a.unknown)
	a.mu.Unlock()
}

// digest returns the SHA-256 of the password stored under key and whether
// it exists, from the cache if it can.
func (a *Accounts) digest(ctx context.Context, key string) (d [sha256.Size]byte, ok bool, err error) {
	a.mu.RLock()
	d, ok = a.known[key]
	_, absent := a.unknown[key]
	gen := a.gen
	a.mu.RUnlock()
	if ok || absent {
		return d, ok, nil
	}

	pw, err := a.store.Get(ctx, key)
	switch {
	case err == nil:
		d, ok = sha256.Sum256(pw), true
		clear(pw)
	case !errors.Is(err, ErrNotFound):
		return d, false, err
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen != gen {
		return d, ok, nil // changed while we read: cache nothing, it may be stale
	}
	if ok {
		a.known[key] = d
		return d, ok, nil
	}
	if len(a.unknown) >= maxUnknown {
		clear(a.unknown)
	}
	a.unknown[key] = struct{}{}
	return d, ok, nil
}

func (a *Accounts) forget(key string) {
	a.mu.Lock()
	a.gen++
	delete(a.known, key)
	delete(a.unknown, key)
	a.mu.Unlock()
}

func accountKey(kind, name string) (string, error) {
	if err := checkKind(kind); err != nil {
		return "", err
	}
	if err := checkName(name); err != nil {
		return "", err
	}
	return "account/" + kind + "/" + name, nil
}

func checkKind(kind string) error {
	switch kind {
	case KindCIRA, KindConsole, KindAMT:
		return nil
	}
	return fmt.Errorf("vault: unknown account kind %q: use cira, console or amt", kind)
}

func checkName(name string) error {
	if !ValidAccountName(name) {
		return fmt.Errorf("vault: invalid account name %q: use 1 to %d characters from A-Z a-z 0-9 . _ @ - (not . or ..)", name, MaxNameLen)
	}
	return nil
}

// ValidAccountName reports whether name can name an account: 1 to
// MaxNameLen characters from A-Z a-z 0-9 . _ @ -, and not . or ..
func ValidAccountName(name string) bool {
	return !(name == "" || len(name) > MaxNameLen || name == "." || name == ".." ||
		strings.Contains(name, "/") || checkKeyBytes(name) != nil)
}
