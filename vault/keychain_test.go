package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	dbus "github.com/godbus/dbus/v5"
	"github.com/zalando/go-keyring"

	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// fakeKeyring is an OS keychain in memory, for fault injection: calls fail
// with err if set, and calls for the user block until release is closed.
type fakeKeyring struct {
	mu    sync.Mutex
	m     map[string]string // service + "\x00" + user → password; guarded by mu
	err   error             // guarded by mu
	calls int               // guarded by mu

	block   string        // a user whose calls wait for release
	release chan struct{} // closed to let blocked calls go on
	started chan struct{} // receives once per blocked call that started
}

func newFakeKeyring() *fakeKeyring { return &fakeKeyring{m: make(map[string]string)} }

func (f *fakeKeyring) enter(user string) error {
	if f.block != "" && user == f.block {
		f.started <- struct{}{}
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.err
}

func (f *fakeKeyring) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeKeyring) Get(service, user string) (string, error) {
	if err := f.enter(user); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[service+"\x00"+user]
	if !ok {
		return "", keyring.ErrNotFound
	}
	return v, nil
}

func (f *fakeKeyring) Set(service, user, pw string) error {
	if err := f.enter(user); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[service+"\x00"+user] = pw
	return nil
}

func (f *fakeKeyring) Delete(service, user string) error {
	if err := f.enter(user); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[service+"\x00"+user]; !ok {
		return keyring.ErrNotFound
	}
	delete(f.m, service+"\x00"+user)
	return nil
}

// remove deletes an item behind the store's back, as another tool would.
func (f *fakeKeyring) remove(service, user string) {
	f.mu.Lock()
	delete(f.m, service+"\x00"+user)
	f.mu.Unlock()
}

func newFakeKeychain(t *testing.T, kr *fakeKeyring, timeout time.Duration) *vault.Keychain {
	t.Helper()
	k, err := vault.NewKeychainForTest(vault.KeychainOptions{
		Service: "presence-test", IndexDir: t.TempDir(), Timeout: timeout,
	}, kr)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKeychainContractFake checks the index and locking of the keychain
// store everywhere, with the OS keychain replaced by a map.
func TestKeychainContractFake(t *testing.T) {
	vaulttest.Run(t, func(t *testing.T) vault.Store { return newFakeKeychain(t, newFakeKeyring(), 0) })
}

// newRealKeychain returns a keychain store in the OS keychain under a
// service of its own, which the test removes at the end.
func newRealKeychain(t *testing.T) *vault.Keychain {
	t.Helper()
	service := "presence-test " + rand.Text()[:10] + " " + t.Name()
	k, err := vault.NewKeychain(vault.KeychainOptions{Service: service, IndexDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := keyring.DeleteAll(service); err != nil {
			t.Errorf("DeleteAll(%q) = %v", service, err)
		}
	})
	return k
}

// TestKeychainReal runs against gnome-keyring in a private D-Bus session
// (see vaulttest.SecretService).
func TestKeychainReal(t *testing.T) {
	if !vaulttest.SecretService(t) {
		return
	}
	t.Run("Contract", func(t *testing.T) {
		vaulttest.Run(t, func(t *testing.T) vault.Store { return newRealKeychain(t) })
	})

	t.Run("Probe", func(t *testing.T) {
		if err := newRealKeychain(t).Probe(t.Context()); err != nil {
			t.Errorf("Probe = %v", err)
		}
	})

	t.Run("Open", func(t *testing.T) {
		ctx := t.Context()
		dir := t.TempDir()
		s, err := vault.Open("keychain", dir)
		if err != nil {
			t.Fatalf("Open(keychain) = %v", err)
		}
		k, ok := s.(*vault.Keychain)
		if !ok || k.Service() != vault.DefaultKeychainService {
			t.Fatalf("Open(keychain) = %T; want *Keychain for service %q", s, vault.DefaultKeychainService)
		}
		t.Cleanup(func() {
			if err := keyring.DeleteAll(vault.DefaultKeychainService); err != nil {
				t.Error(err)
			}
		})
		if err := vault.NewAccounts(s).Add(ctx, vault.KindConsole, "alice", "pw-of-alice"); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(dir, "keychain-index")); err != nil || !fi.IsDir() {
			t.Errorf("index dir: %v; want dataDir/keychain-index", err)
		}
		again, err := vault.Open("keychain", dir)
		if err != nil {
			t.Fatal(err)
		}
		if names, err := vault.NewAccounts(again).List(ctx, vault.KindConsole); err != nil || !slices.Equal(names, []string{"alice"}) {
			t.Errorf("List after reopening = %q, %v; want [alice]", names, err)
		}
		if pw, err := vault.NewAccounts(again).Password(ctx, vault.KindConsole, "alice"); err != nil || pw.Reveal() != "pw-of-alice" {
			t.Errorf("Password after reopening: %v", err)
		}
	})

	t.Run("MigrateFileKeychainMemory", func(t *testing.T) {
		ctx := t.Context()
		src := newFile(t, t.TempDir())
		want := fillStore(t, src)
		k := newRealKeychain(t)
		res, err := vault.Migrate(ctx, src, k, vault.MigrateOptions{})
		if err != nil || res.Copied != len(want) {
			t.Fatalf("Migrate(file → keychain) = %+v, %v; want %d copied", res, err, len(want))
		}
		back := vault.NewMemory(0)
		if res, err := vault.Migrate(ctx, k, back, vault.MigrateOptions{}); err != nil || res.Copied != len(want) {
			t.Fatalf("Migrate(keychain → memory) = %+v, %v", res, err)
		}
		wantItems(t, back, want)
		if got, err := vault.GetLarge(ctx, back, "tls/bundle"); err != nil || len(got) != 16<<10 {
			t.Errorf("GetLarge after two migrations = %d bytes, %v; want 16 KiB", len(got), err)
		}
	})
}

// TestKeychainLocked locks the login collection of a private gnome-keyring
// (no one can answer the unlock prompt: there is no display) and checks
// what each method reports.
func TestKeychainLocked(t *testing.T) {
	if !vaulttest.SecretService(t) {
		return
	}
	ctx := t.Context()
	// No cleanup: the keyring cannot be unlocked again, and it goes away
	// with the private session.
	k, err := vault.NewKeychain(vault.KeychainOptions{Service: "presence-test-locked", IndexDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(ctx, "a/kept", []byte("before locking")); err != nil {
		t.Fatal(err)
	}
	conn, err := dbus.SessionBus()
	if err != nil {
		t.Fatal(err)
	}
	var locked []dbus.ObjectPath
	var prompt dbus.ObjectPath
	err = conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets").
		Call("org.freedesktop.Secret.Service.Lock", 0, []dbus.ObjectPath{"/org/freedesktop/secrets/collection/login"}).
		Store(&locked, &prompt)
	if err != nil || len(locked) != 1 {
		t.Fatalf("Lock(login) = %v, %v", locked, err)
	}

	wantLocked := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, vault.ErrLocked) || !strings.Contains(err.Error(), "unlock") {
			t.Errorf("%s on a locked keychain = %v; want ErrLocked saying to unlock it", what, err)
		}
	}
	wantLocked("Probe", k.Probe(ctx))
	_, err = k.Get(ctx, "a/kept")
	wantLocked("Get", err)
	wantLocked("Set", k.Set(ctx, "a/new", []byte("secret while locked")))
	wantLocked("Delete", k.Delete(ctx, "a/kept"))
	_, err = vault.Open("keychain", t.TempDir())
	wantLocked("Open", err)
	if keys, err := k.List(ctx, ""); err != nil || !slices.Equal(keys, []string{"a/kept"}) {
		t.Errorf("List after failed calls = %q, %v; want only a/kept (a refused Set is not listed)", keys, err)
	}
	if err := keyring.DeleteAll(k.Service()); err == nil {
		t.Error("DeleteAll succeeded on a locked keychain")
	}
}

// TestKeychainNoSessionBus uses the real go-keyring with a session bus
// address that leads nowhere, as on a headless server.
func TestKeychainNoSessionBus(t *testing.T) {
	if os.Getenv("PRESENCE_TEST_SECRET_SERVICE") == "1" {
		t.Skip("inside a private Secret Service session, which may already be connected")
	}
	ctx := t.Context()
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
	wantUnavailable := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, vault.ErrUnavailable) || !strings.Contains(err.Error(), "--vault file") ||
			!strings.Contains(err.Error(), "desktop session") {
			t.Errorf("%s without a session bus = %v; want ErrUnavailable saying to log in or use --vault file", what, err)
		}
	}
	dir := t.TempDir()
	_, err := vault.Open("keychain", dir)
	wantUnavailable("Open", err)
	if _, err := os.Stat(filepath.Join(dir, "keychain-index")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(keychain) that failed left an index dir: %v", err)
	}
	k, err := vault.NewKeychain(vault.KeychainOptions{Service: "presence-test", IndexDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	wantUnavailable("Probe", k.Probe(ctx))
	_, err = k.Get(ctx, "k")
	wantUnavailable("Get", err)
	wantUnavailable("Set", k.Set(ctx, "k", []byte("value")))
	wantUnavailable("Delete", k.Delete(ctx, "k"))
	if keys, err := k.List(ctx, ""); err != nil || len(keys) != 0 {
		t.Errorf("List after a refused Set = %q, %v; want none", keys, err)
	}

	// With no address at all, godbus tries dbus-launch, which a server
	// without X11 lacks.
	if _, err := exec.LookPath("dbus-launch"); err == nil {
		return
	}
	if _, err := os.Stat(fmt.Sprintf("/run/user/%d/bus", os.Getuid())); err == nil {
		return
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	_, err = k.Get(ctx, "k")
	wantUnavailable("Get with no bus address", err)
}

func TestKeychainErrors(t *testing.T) {
	const secret = "hunter2-Secret-Value"
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"locked", errors.New("failed to unlock correct collection '/org/freedesktop/secrets/aliases/default'"), vault.ErrLocked},
		{"no dbus-launch", errors.New(`exec: "dbus-launch": executable file not found in $PATH`), vault.ErrUnavailable},
		{"no secret service", errors.New("The name org.freedesktop.secrets was not provided by any .service files"), vault.ErrUnavailable},
		{"bus gone", errors.New("dial unix /run/user/1000/bus: connect: no such file or directory"), vault.ErrUnavailable},
		{"unsupported", keyring.ErrUnsupportedPlatform, vault.ErrUnavailable},
		{"windows no session", errors.New("A specified logon session does not exist. It may already have been terminated."), vault.ErrUnavailable},
		{"too big", keyring.ErrSetDataTooBig, vault.ErrTooLarge},
		{"other, echoing the value", fmt.Errorf("strange failure storing %s", secret), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			kr := newFakeKeyring()
			k := newFakeKeychain(t, kr, 0)
			if err := k.Set(ctx, "a/old", []byte(secret)); err != nil {
				t.Fatal(err)
			}
			kr.setErr(tc.err)
			// Only Set knows the value to keep out of a message.
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s = nil; want an error", what)
				}
				for _, s := range []error{vault.ErrLocked, vault.ErrUnavailable, vault.ErrTooLarge, vault.ErrNotFound} {
					if got, want := errors.Is(err, s), s == tc.want; got != want {
						t.Errorf("%s = %v: errors.Is(%v) = %v; want %v", what, err, s, got, want)
					}
				}
				if strings.HasPrefix(what, "Set") && strings.Contains(err.Error(), secret) {
					t.Errorf("%s = %q; the value is in the message", what, err)
				}
			}
			_, err := k.Get(ctx, "a/old")
			check("Get", err)
			check("Set(new)", k.Set(ctx, "a/new", []byte(secret)))
			check("Set(existing)", k.Set(ctx, "a/old", []byte(secret)))
			check("Delete", k.Delete(ctx, "a/old"))

			// A refused Set of a new key does not list it; after an unknown
			// error the item may exist, so the name stays.
			keys, err := k.List(ctx, "")
			want := []string{"a/old"}
			if tc.want == nil {
				want = []string{"a/new", "a/old"}
			}
			if err != nil || !slices.Equal(keys, want) {
				t.Errorf("List = %q, %v; want %q", keys, err, want)
			}
			kr.setErr(nil)
			if v, err := k.Get(ctx, "a/old"); err != nil || string(v) != secret {
				t.Errorf("Get after the fault = %q, %v; want the old value", v, err)
			}
		})
	}

	t.Run("short value withheld", func(t *testing.T) {
		kr := newFakeKeyring()
		k := newFakeKeychain(t, kr, 0)
		kr.setErr(errors.New("refused xyz for no reason"))
		err := k.Set(t.Context(), "k", []byte("xyz"))
		if err == nil || strings.Contains(err.Error(), "xyz") {
			t.Errorf("Set = %v; want an error without the value", err)
		}
	})
}

func TestNewKeychainOptions(t *testing.T) {
	for _, opts := range []vault.KeychainOptions{
		{},
		{IndexDir: t.TempDir(), Service: "bad\nservice"},
		{IndexDir: t.TempDir(), Service: strings.Repeat("s", 201)},
	} {
		if _, err := vault.NewKeychain(opts); err == nil {
			t.Errorf("NewKeychain(%+v) succeeded", opts)
		}
	}
	if _, err := vault.Open("keychain", ""); err == nil {
		t.Error(`Open("keychain", "") succeeded`)
	}
	k, err := vault.NewKeychain(vault.KeychainOptions{IndexDir: t.TempDir()})
	if err != nil || k.Service() != vault.DefaultKeychainService {
		t.Errorf("NewKeychain with defaults = %v; service %q", err, k.Service())
	}
}

// TestKeychainStaleIndex covers the names a crash between the item and the
// index leaves behind, and items whose names the index lost.
func TestKeychainStaleIndex(t *testing.T) {
	ctx := t.Context()
	kr := newFakeKeyring()
	k := newFakeKeychain(t, kr, 0)
	for _, key := range []string{"a/gone", "a/kept"} {
		if err := k.Set(ctx, key, []byte("v-"+key)); err != nil {
			t.Fatal(err)
		}
	}
	kr.remove(k.Service(), "a/gone") // a crash inside Delete, or another tool
	if keys, err := k.List(ctx, "a/"); err != nil || !slices.Equal(keys, []string{"a/gone", "a/kept"}) {
		t.Errorf("List = %q, %v; want the stale name listed", keys, err)
	}
	if _, err := k.Get(ctx, "a/gone"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Get(stale) = %v; want ErrNotFound", err)
	}
	dst := vault.NewMemory(0)
	res, err := vault.Migrate(ctx, k, dst, vault.MigrateOptions{})
	if err != nil || res != (vault.MigrateResult{Copied: 1, Missing: 1}) {
		t.Errorf("Migrate with a stale name = %+v, %v; want 1 copied, 1 missing", res, err)
	}
	if err := k.Delete(ctx, "a/gone"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Delete(stale) = %v; want ErrNotFound", err)
	}
	if keys, err := k.List(ctx, "a/"); err != nil || !slices.Equal(keys, []string{"a/kept"}) {
		t.Errorf("List after deleting the stale name = %q, %v; want [a/kept]", keys, err)
	}

	// An item the index does not know (another data dir, a lost index) is
	// still found by Get, and Delete removes it.
	if err := kr.Set(k.Service(), "b/unlisted", "v"); err != nil {
		t.Fatal(err)
	}
	if v, err := k.Get(ctx, "b/unlisted"); err != nil || string(v) != "v" {
		t.Errorf("Get(unlisted) = %q, %v; want v", v, err)
	}
	if err := k.Delete(ctx, "b/unlisted"); err != nil {
		t.Errorf("Delete(unlisted) = %v", err)
	}
	if err := kr.Set(k.Service(), "b/huge", strings.Repeat("x", vault.ItemLimit+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Get(ctx, "b/huge"); !errors.Is(err, vault.ErrCorrupt) {
		t.Errorf("Get(item over the limit) = %v; want ErrCorrupt", err)
	}
}

// TestKeychainTimeout checks that a keychain call that never returns (an
// unlock prompt nobody answers) does not block the caller past the timeout,
// and that the lingering call still holds its key.
func TestKeychainTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		kr := newFakeKeyring()
		const timeout = 10 * time.Second
		k := newFakeKeychain(t, kr, timeout)
		if err := kr.Set(k.Service(), "slow", "v"); err != nil {
			t.Fatal(err)
		}
		kr.block, kr.release, kr.started = "slow", make(chan struct{}), make(chan struct{}, 4)

		start := time.Now()
		_, err := k.Get(ctx, "slow")
		if !errors.Is(err, vault.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get(blocked) = %v; want ErrUnavailable and DeadlineExceeded", err)
		}
		if d := time.Since(start); d != timeout {
			t.Errorf("Get(blocked) returned after %v; want %v", d, timeout)
		}
		<-kr.started

		// The next call for the same key waits for the lingering one, up to
		// the timeout, and never reaches the keychain.
		start = time.Now()
		err = k.Set(ctx, "slow", []byte("new"))
		if !errors.Is(err, vault.ErrUnavailable) || !strings.Contains(err.Error(), "earlier call") || time.Since(start) != timeout {
			t.Errorf("Set(same key) = %v after %v; want a timeout after %v naming the earlier call", err, time.Since(start), timeout)
		}

		// The caller's context ends a wait earlier.
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := k.Get(short, "slow"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("Get with a 1s context = %v; want the context's error", err)
		}

		// Other keys do not wait.
		other := "fast"
		for i := 0; k.SameLockForTest(other, "slow"); i++ {
			other = fmt.Sprintf("fast%d", i)
		}
		start = time.Now()
		if err := k.Set(ctx, other, []byte("v")); err != nil || time.Since(start) != 0 {
			t.Errorf("Set(%s) = %v after %v; want no wait", other, err, time.Since(start))
		}

		// Once the OS call returns, the key is usable again.
		close(kr.release)
		synctest.Wait()
		if v, err := k.Get(ctx, "slow"); err != nil || string(v) != "v" {
			t.Errorf("Get after release = %q, %v; want v", v, err)
		}
	})
}

// fillStore writes small items and a 16 KiB large value into s and returns
// the items.
func fillStore(t *testing.T, s vault.Store) map[string][]byte {
	t.Helper()
	ctx := t.Context()
	items := map[string][]byte{
		"account/console/alice": []byte("alice-pw"),
		"account/cira/admin":    []byte("Cira-Admin-1"),
		"ca/root.key":           bytes.Repeat([]byte{0x30, 0x82}, 900),
		"empty":                 {},
	}
	for k, v := range items {
		if err := s.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := vault.SetLarge(ctx, s, "tls/bundle", bytes.Repeat([]byte("PEM-"), 4<<10)); err != nil {
		t.Fatal(err)
	}
	keys, err := s.List(ctx, "tls/")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		items[k] = v
	}
	return items
}

// wantItems checks that s holds exactly the items want.
func wantItems(t *testing.T, s vault.Store, want map[string][]byte) {
	t.Helper()
	ctx := t.Context()
	keys, err := s.List(ctx, "")
	if err != nil || len(keys) != len(want) {
		t.Errorf("List = %d keys, %v; want %d", len(keys), err, len(want))
	}
	for k, w := range want {
		if v, err := s.Get(ctx, k); err != nil || !bytes.Equal(v, w) {
			t.Errorf("Get(%q) = %d bytes, %v; want %d bytes", k, len(v), err, len(w))
		}
	}
}
