package vaulttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// envInside marks a test process that [SecretService] started inside a
// private D-Bus session.
const envInside = "PRESENCE_TEST_SECRET_SERVICE"

// keyringPassword unlocks the throwaway login keyring of the private session.
const keyringPassword = "presence-test-keyring"

// SecretService runs the calling test against a real Secret Service of its
// own: gnome-keyring in a private D-Bus session, with a new login keyring
// unlocked with a throwaway password. Call it first in a top-level test:
//
//	if !vaulttest.SecretService(t) {
//		return
//	}
//
// In the process go test started, SecretService runs the test binary again
// with -test.run selecting only t, under
//
//	dbus-run-session -- sh -c 'printf %s PW | gnome-keyring-daemon --unlock --components=secrets && exec "$@"'
//
// with XDG_DATA_HOME and XDG_RUNTIME_DIR in a temporary directory, so the
// user's own keyring and session bus are never touched. It reports the
// child's failures (with its output) on t and returns false. In the child,
// it returns true: the OS keychain is the private one, and the test may
// use any service name, [vault.Open] included.
//
// It works inside `unshare -n`, since D-Bus uses a Unix socket. If
// dbus-run-session or gnome-keyring-daemon is missing it skips t, or fails
// it when CI=true; on systems other than Linux it skips t.
func SecretService(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envInside) == "1" {
		if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
			t.Fatalf("vaulttest: %s=1 but no DBUS_SESSION_BUS_ADDRESS", envInside)
		}
		return true
	}
	if runtime.GOOS != "linux" {
		t.Skipf("vaulttest: no private Secret Service on %s", runtime.GOOS)
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("vaulttest: SecretService must be called from a top-level test, not %s", t.Name())
	}
	for _, tool := range []string{"dbus-run-session", "gnome-keyring-daemon"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("vaulttest: %s is missing (scripts/setup.sh installs gnome-keyring and dbus): %v", tool, err)
			}
			t.Skipf("vaulttest: no real Secret Service: %s is missing (apt-get install gnome-keyring dbus)", tool)
		}
	}

	// Not t.TempDir: the keyring daemon may still be writing while the test
	// ends, which would fail its cleanup.
	dir, err := os.MkdirTemp("", "presence-keyring-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("vaulttest: remove %s: %v", dir, err)
		}
	})
	data, run := filepath.Join(dir, "data"), filepath.Join(dir, "run")
	for _, d := range []string{data, run} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}

	budget := 3 * time.Minute
	if dl, ok := t.Deadline(); ok {
		budget = min(budget, time.Until(dl)-5*time.Second)
	}
	if budget < 30*time.Second {
		t.Fatalf("vaulttest: %v left before the test deadline: not enough to start a Secret Service", budget)
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	script := `printf %s "$1" | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>"$2" || { cat "$2" >&2; exit 1; }; shift 2; exec "$@"`
	args := []string{"--", "sh", "-c", script, "sh", keyringPassword, filepath.Join(dir, "gnome-keyring.log"),
		os.Args[0], "-test.run=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count=1", "-test.v=true",
		fmt.Sprintf("-test.timeout=%v", budget-5*time.Second)}
	cmd := exec.CommandContext(ctx, "dbus-run-session", args...)
	cmd.Env = append(childEnv(), envInside+"=1", "XDG_DATA_HOME="+data, "XDG_RUNTIME_DIR="+run)
	cmd.WaitDelay = 5 * time.Second // a daemon that keeps the output pipe open
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vaulttest: %s in a private Secret Service session: %v after %v\n%s", t.Name(), err, time.Since(start).Round(time.Millisecond), out)
	}
	if testing.Verbose() {
		t.Logf("vaulttest: ran in a private Secret Service session in %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	}
	return false
}

// childEnv is the environment without what would reach the user's session:
// the bus address, and the displays an unlock prompt would appear on.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", envInside:
			continue
		}
		env = append(env, kv)
	}
	return env
}
