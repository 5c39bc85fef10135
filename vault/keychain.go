package vault

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/zalando/go-keyring"
)

// DefaultKeychainService is the service name [Open] keeps its items under in
// the OS keychain. Each item's account (user) name is its key.
const DefaultKeychainService = "Presence"

// DefaultKeychainTimeout bounds each call to the OS keychain unless
// [KeychainOptions] says otherwise.
const DefaultKeychainTimeout = 10 * time.Second

// openProbeTimeout bounds the availability check of [Open]. It is shorter
// than [DefaultKeychainTimeout] so that a server fails at start quickly, yet
// long enough for a desktop user to answer an unlock prompt.
const openProbeTimeout = 5 * time.Second

// probeUser is the account name [Keychain.Probe] looks up. The colon makes it
// an invalid key, so it never names a real item.
const probeUser = "presence:probe"

// keychainStripes is the number of locks that serialize operations on the
// same key (see [Keychain]).
const keychainStripes = 16

// keyringAPI is the part of go-keyring the [Keychain] uses. Tests replace it
// to inject faults; everything else uses osKeyring.
type keyringAPI interface {
	Get(service, user string) (string, error)
	Set(service, user, password string) error
	Delete(service, user string) error
}

// osKeyring is the OS keychain, through go-keyring's package functions.
type osKeyring struct{}

func (osKeyring) Get(service, user string) (string, error) { return keyring.Get(service, user) }
func (osKeyring) Set(service, user, pw string) error       { return keyring.Set(service, user, pw) }
func (osKeyring) Delete(service, user string) error        { return keyring.Delete(service, user) }

// KeychainOptions configures [NewKeychain].
type KeychainOptions struct {
	// Service is the service name the items are kept under; "" means
	// [DefaultKeychainService]. It is at most 200 printable ASCII bytes.
	// Tests use a service of their own.
	Service string
	// IndexDir is the directory of the key index that List reads (see the
	// package doc). It is required, and belongs to one service.
	IndexDir string
	// Timeout bounds each call to the OS keychain. Zero means
	// [DefaultKeychainTimeout]; a negative value means no bound but the
	// caller's context.
	Timeout time.Duration

	keyring keyringAPI // nil means osKeyring; set by tests through export_test.go
}

// Keychain is a [Store] in the OS keychain: the Secret Service (GNOME
// Keyring, KWallet) over D-Bus on Linux and the BSDs, the login keychain on
// macOS, the Credential Manager on Windows, through
// github.com/zalando/go-keyring. It is safe for concurrent use. Use
// [NewKeychain] or [Open]; the zero value is not usable.
//
// The OS keychain cannot list its items, so the store keeps the names of its
// keys (never the values) in an index directory; see the package doc.
//
// Every call to the OS keychain runs in a goroutine of its own and is bounded
// by the timeout and the caller's context, because the OS may block on an
// unlock prompt or a stuck D-Bus service. When the bound expires the method
// returns, but the goroutine lingers until the OS call returns, and the
// operation (with its index update) may still complete. Operations on the same
// key are serialized, including with such a lingering call, so an abandoned
// Set cannot overwrite a later one.
type Keychain struct {
	service string
	timeout time.Duration
	kr      keyringAPI
	index   *File // key → empty item; see the package doc

	// stripes serialize the operations on keys that hash alike. A token in
	// the channel is a held lock; the goroutine that runs the operation
	// removes it, so a lock outlives a timed-out caller.
	stripes [keychainStripes]chan struct{}
}

var _ Store = (*Keychain)(nil)

// NewKeychain returns the keychain store that opts describes. It creates the
// index directory if needed but does not contact the OS keychain; see
// [Keychain.Probe].
func NewKeychain(opts KeychainOptions) (*Keychain, error) {
	k, err := newKeychain(opts)
	if err != nil {
		return nil, err
	}
	if err := k.openIndex(opts.IndexDir); err != nil {
		return nil, err
	}
	return k, nil
}

func newKeychain(opts KeychainOptions) (*Keychain, error) {
	if opts.IndexDir == "" {
		return nil, errors.New("vault: the keychain store needs a directory for its index (--data-dir)")
	}
	k := &Keychain{service: opts.Service, timeout: opts.Timeout, kr: opts.keyring}
	if k.service == "" {
		k.service = DefaultKeychainService
	}
	if len(k.service) > 200 || strings.IndexFunc(k.service, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		return nil, fmt.Errorf("vault: keychain service %q: want 1 to 200 printable ASCII bytes", k.service)
	}
	if k.timeout == 0 {
		k.timeout = DefaultKeychainTimeout
	}
	if k.kr == nil {
		k.kr = osKeyring{}
	}
	for i := range k.stripes {
		k.stripes[i] = make(chan struct{}, 1)
	}
	return k, nil
}

func (k *Keychain) openIndex(dir string) error {
	idx, err := NewFile(dir)
	if err != nil {
		return fmt.Errorf("vault: keychain index: %w", err)
	}
	k.index = idx
	return nil
}

// openKeychain is [Open] for "keychain": it checks that the OS keychain
// answers before it creates the index, so that `presence serve --vault
// keychain` fails at start, not at the first device.
func openKeychain(dataDir string) (*Keychain, error) {
	k, err := newKeychain(KeychainOptions{IndexDir: keychainIndexDir(dataDir)})
	if err != nil {
		return nil, err
	}
	if err := k.probe(context.Background(), openProbeTimeout); err != nil {
		return nil, err
	}
	if err := k.openIndex(keychainIndexDir(dataDir)); err != nil {
		return nil, err
	}
	return k, nil
}

func keychainIndexDir(dataDir string) string {
	if dataDir == "" {
		return ""
	}
	return filepath.Join(dataDir, "keychain-index")
}

// Service returns the service name the items are kept under.
func (k *Keychain) Service() string { return k.service }

// Probe checks that the OS keychain answers and is unlocked, by looking up an
// item that does not exist. On a desktop with a locked keychain it may show
// the unlock prompt. It returns nil, or an error wrapping [ErrUnavailable] or
// [ErrLocked] that says what to do.
func (k *Keychain) Probe(ctx context.Context) error {
	return k.probe(ctx, k.timeout)
}

func (k *Keychain) probe(ctx context.Context, timeout time.Duration) error {
	_, err := call(ctx, k, "check", probeUser, timeout, func() (struct{}, error) {
		_, err := k.kr.Get(k.service, probeUser)
		if errors.Is(err, keyring.ErrNotFound) {
			return struct{}{}, nil
		}
		return struct{}{}, k.mapError("check", probeUser, err, nil)
	})
	return err
}

// Get implements [Store]. It asks the OS keychain directly, so it finds an
// item even if the index has lost its name.
func (k *Keychain) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, err
	}
	return call(ctx, k, "get", key, k.timeout, func() ([]byte, error) {
		v, err := k.kr.Get(k.service, key)
		if err != nil {
			return nil, k.mapError("get", key, err, nil)
		}
		if len(v) > ItemLimit {
			return nil, fmt.Errorf("%w: the keychain item %q (service %q) is larger than any vault item", ErrCorrupt, key, k.service)
		}
		return []byte(v), nil
	})
}

// Set implements [Store]. It adds the key to the index before it writes the
// item, so that every item of the store is listed; see the package doc.
func (k *Keychain) Set(ctx context.Context, key string, value []byte) error {
	if err := checkSet(ctx, key, value, ItemLimit); err != nil {
		return err
	}
	pw := string(value) // a copy: the caller may change value while the call lingers
	_, err := call(ctx, k, "set", key, k.timeout, func() (struct{}, error) {
		return struct{}{}, k.set(key, pw)
	})
	return err
}

func (k *Keychain) set(key, pw string) error {
	// The index is updated to completion even if the caller has gone, so it
	// never disagrees with the keychain because of a timeout.
	ctx := context.Background()
	_, err := k.index.Get(ctx, key)
	listed := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("vault: keychain index: %w", err)
	}
	if !listed {
		if err := k.index.Set(ctx, key, nil); err != nil {
			return fmt.Errorf("vault: keychain index: %w", err)
		}
	}
	err = k.mapError("set", key, k.kr.Set(k.service, key, pw), []byte(pw))
	if err != nil && !listed && nothingWritten(err) {
		// Take the new name out again. After other errors the item may or may
		// not exist; a listed name whose Get says ErrNotFound is harmless, an
		// item nobody lists is not.
		if rerr := k.index.Delete(ctx, key); rerr != nil && !errors.Is(rerr, ErrNotFound) {
			err = errors.Join(err, fmt.Errorf("vault: keychain index: %w", rerr))
		}
	}
	return err
}

// nothingWritten reports whether a mapped keychain error means that the OS
// refused before it stored anything.
func nothingWritten(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrLocked) || errors.Is(err, ErrTooLarge)
}

// Delete implements [Store]. It removes the item, then its name from the
// index. A listed name without an item (left by a crash, or by an item
// deleted with another tool) is removed too, and Delete reports
// [ErrNotFound].
func (k *Keychain) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	_, err := call(ctx, k, "delete", key, k.timeout, func() (struct{}, error) {
		err := k.kr.Delete(k.service, key)
		missing := errors.Is(err, keyring.ErrNotFound)
		if err != nil && !missing {
			return struct{}{}, k.mapError("delete", key, err, nil)
		}
		if ierr := k.index.Delete(context.Background(), key); ierr != nil && !errors.Is(ierr, ErrNotFound) {
			return struct{}{}, fmt.Errorf("vault: keychain index: %w", ierr)
		}
		if missing {
			return struct{}{}, fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		return struct{}{}, nil
	})
	return err
}

// List implements [Store]. It reads the index only, without asking the OS
// keychain, so it may include a name whose item is gone (see the package
// doc); Get then reports [ErrNotFound] for it.
func (k *Keychain) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkList(ctx, prefix); err != nil {
		return nil, err
	}
	keys, err := k.index.List(ctx, prefix)
	if err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("vault: keychain index: %w", err)
	}
	return keys, err
}

// result is what an operation in a keychain goroutine hands back.
type result[T any] struct {
	v   T
	err error
}

// call runs op, which uses the OS keychain for key, under key's lock in a
// goroutine of its own, and waits for it until ctx is done or timeout (if
// positive) expires. The goroutine holds the lock until op returns, even
// after call has given up on it.
func call[T any](ctx context.Context, k *Keychain, op, key string, timeout time.Duration, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	lock := k.stripe(key)
	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-expired:
		return zero, &timeoutError{op: op, key: key, after: timeout, queued: true}
	}
	done := make(chan result[T], 1)
	go keychainCall(lock, done, f)
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	case <-expired:
	}
	select {
	case r := <-done: // finished at the same moment: use it
		return r.v, r.err
	default:
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	return zero, &timeoutError{op: op, key: key, after: timeout}
}

// keychainCall runs f and releases lock when f returns. It is a named
// function so that a lingering call is easy to spot in a stack dump.
func keychainCall[T any](lock chan struct{}, done chan<- result[T], f func() (T, error)) {
	defer func() { <-lock }()
	v, err := f()
	done <- result[T]{v, err}
}

func (k *Keychain) stripe(key string) chan struct{} {
	h := fnv.New32a()
	h.Write([]byte(key)) // never fails
	return k.stripes[h.Sum32()%keychainStripes]
}

// timeoutError is a keychain call that did not return in time. It matches
// both [ErrUnavailable] and [context.DeadlineExceeded] with errors.Is.
type timeoutError struct {
	op, key string
	after   time.Duration
	queued  bool // still waiting for an earlier call on the same key
}

func (e *timeoutError) Error() string {
	what := "the OS keychain did not answer"
	if e.queued {
		what = "an earlier call to the OS keychain for the same key has not returned"
	}
	return fmt.Sprintf("vault: %s: %s within %v: it may be waiting for you to unlock it; unlock it and try again, or use --vault file", opName(e.op, e.key), what, e.after)
}

func (e *timeoutError) Unwrap() []error { return []error{ErrUnavailable, context.DeadlineExceeded} }

// Timeout reports true: the error is a timeout.
func (e *timeoutError) Timeout() bool { return true }

// Messages of the OS keychains (lower case) and what they mean. go-keyring
// returns only ErrNotFound and ErrSetDataTooBig as values; everything else
// comes from D-Bus, the macOS security tool or the Windows API as text.
var (
	lockedMessages = []string{
		"failed to unlock correct collection",   // go-keyring: the unlock prompt was dismissed or could not be shown
		"org.freedesktop.secret.error.islocked", // Secret Service
		"prompt dismissed",
	}
	unavailableMessages = []string{
		`"dbus-launch"`, // godbus autolaunch without a session bus
		"couldn't determine address of session bus",
		"org.freedesktop.dbus.error.serviceunknown", // a bus, but no Secret Service
		"was not provided by any .service files",
		"org.freedesktop.dbus.error.noserver",
		"dial unix", // DBUS_SESSION_BUS_ADDRESS names a socket that is gone
		"unsupported platform",
		"logon session does not exist", // Windows service account without a profile
	}
	// macOS: security(1) exits with 36 (errSecInteractionNotAllowed) when
	// the keychain is locked and cannot prompt.
	darwinLockedMessages = []string{"exit status 36"}
)

// mapError turns an error from the OS keychain into one that wraps the
// package's sentinels and says what to do. secret is the value being
// written, if any: it is removed from the message.
func (k *Keychain) mapError(op, key string, err error, secret []byte) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keyring.ErrNotFound):
		return fmt.Errorf("%w: %q", ErrNotFound, key)
	case errors.Is(err, keyring.ErrSetDataTooBig):
		return wrapf(ErrTooLarge, "vault: the OS keychain refused the value of %q as too large", key)
	case errors.Is(err, keyring.ErrUnsupportedPlatform):
		return wrapf(ErrUnavailable, "vault: %s: go-keyring does not support the OS keychain of %s: use --vault file", opName(op, key), runtime.GOOS)
	}
	msg := redact(err.Error(), secret)
	lower := strings.ToLower(msg)
	switch {
	case containsAny(lower, lockedMessages), runtime.GOOS == "darwin" && containsAny(lower, darwinLockedMessages):
		return wrapf(ErrLocked, "vault: %s: the OS keychain is locked (%s): unlock it (log in to the desktop session, or unlock the login keyring) and try again", opName(op, key), msg)
	case containsAny(lower, unavailableMessages):
		return wrapf(ErrUnavailable, "vault: %s: no OS keychain here (%s): log in to a desktop session, or use --vault file on a headless server", opName(op, key), msg)
	}
	// The cause is not API: callers branch on the sentinels only.
	return fmt.Errorf("vault: %s (service %q): %s", opName(op, key), k.service, msg)
}

// opName names a keychain operation in messages.
func opName(op, key string) string {
	if key == probeUser {
		return "keychain " + op
	}
	return fmt.Sprintf("keychain %s %q", op, key)
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// redact removes secret from msg. A secret of fewer than four bytes would
// match by chance, so a message containing one is withheld instead.
func redact(msg string, secret []byte) string {
	if len(secret) == 0 || !strings.Contains(msg, string(secret)) {
		return msg
	}
	if len(secret) < 4 {
		return "cause withheld: it may contain the value"
	}
	return strings.ReplaceAll(msg, string(secret), redacted)
}
