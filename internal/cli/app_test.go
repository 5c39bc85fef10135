package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/internal/settings"
)

// `presence` with no arguments and a window: with no certificate yet, the
// window gets the first-run setup, which makes the CA and the CIRA
// account; then the server starts; it stops when the window returns. It
// uses the default ports and mDNS, so it runs only in a private network
// namespace (scripts/test.sh runs the tests in one).
func TestAppLaunchFirstRun(t *testing.T) {
	if !privateNetns() {
		t.Skip("uses the default ports and mDNS: only in a private network namespace")
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	// The window would take the OS keychain: keep this test out of the
	// real one (TestDesktopVaultChoice uses a private one).
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "disabled:")
	called := false
	app := func(ctx context.Context, l launch.Window) error {
		called = true
		if l.Setup == nil || l.CIRAPort != 4433 {
			t.Errorf("launch: setup %v, port %d", l.Setup != nil, l.CIRAPort)
			return nil
		}
		if _, err := l.Setup("127.0.0.1", "dev", "short"); err == nil {
			t.Error("a 5-byte CIRA password was accepted")
		}
		r, err := l.Setup("127.0.0.1", "dev", "Cira-P4ssw0rd")
		if err != nil {
			t.Errorf("setup: %v", err)
			return nil
		}
		if r.Address != "127.0.0.1" || r.User != "dev" || r.Port != 4433 || !strings.Contains(r.RootPEM, "BEGIN CERTIFICATE") || len(r.RootSHA256) != 95 {
			t.Errorf("first run result %+v", r)
		}
		in, err := l.Start(ctx)
		if err != nil {
			t.Errorf("start: %v", err)
			return nil
		}
		if in.CIRAAddr == nil || in.ProxyAddr == nil || in.APIAddr == nil {
			t.Errorf("instance listeners: %v %v %v", in.CIRAAddr, in.ProxyAddr, in.APIAddr)
		}
		// The window moves the proxy: the run files follow, so that the
		// command line finds it.
		s := in.Settings()
		s.ProxyAddr = "127.0.0.1:1081"
		if err := in.Apply(s); err != nil {
			t.Errorf("apply: %v", err)
		} else if err := in.ListenersMoved(); err != nil {
			t.Errorf("run files: %v", err)
		} else if info, err := in.Dir.RunInfo(); err != nil || info.Proxy != "127.0.0.1:1081" {
			t.Errorf("run info after the move: %+v, %v", info, err)
		}
		return nil
	}
	var out, errb strings.Builder
	code := Run(context.Background(), nil, Env{Stdout: &out, Stderr: &errb, App: app})
	if code != 0 || !called {
		t.Fatalf("exit %d, window called %v:\n%s", code, called, errb.String())
	}
	// The second start needs no setup.
	again := false
	code = Run(context.Background(), nil, Env{Stdout: &out, Stderr: &errb, App: func(ctx context.Context, l launch.Window) error {
		again = l.Setup == nil
		return nil
	}})
	if code != 0 || !again {
		t.Fatalf("second start: exit %d, setup offered again: %v", code, !again)
	}
}

// The window's settings live in the data dir's settings.json: serve and
// the window take them as flag defaults, a flag given wins, and saving
// them keeps the rest of the file.
func TestServerSettingsPersist(t *testing.T) {
	dir := t.TempDir()
	saved := settings.Defaults()
	saved.CIRAAddr, saved.ProxyAddr, saved.APIAddr = "127.0.0.1:0", "off", "off"
	saved.Keepalive, saved.IdleTimeout, saved.LegacyTLS, saved.MDNS = 20*time.Second, 70*time.Second, true, false
	saved.LogLevel, saved.StartMinimised = "warn", true
	if err := launch.Dir(dir).SaveVault("memory"); err != nil {
		t.Fatal(err)
	}
	if err := launch.Dir(dir).SaveServer(saved); err != nil {
		t.Fatal(err)
	}
	var got launch.Window
	app := func(_ context.Context, l launch.Window) error { got = l; return nil }
	var errb strings.Builder
	if err := runWindow(context.Background(), []string{"--data-dir", dir, "--keepalive", "10s"}, Env{Stderr: &errb, App: app}); err != nil {
		t.Fatalf("window: %v\n%s", err, errb.String())
	}
	want := saved
	want.Keepalive = 10 * time.Second
	if got.Settings != want {
		t.Fatalf("settings in force:\n%+v\nwant\n%+v", got.Settings, want)
	}
	if got.LogLevel.Level() != slog.LevelWarn || got.Log == nil {
		t.Fatalf("log level %v, ring %v", got.LogLevel.Level(), got.Log)
	}
	s := got.Settings
	s.CloseToTray = false
	s.Keepalive = 15 * time.Second
	if err := got.SaveSettings(s); err != nil {
		t.Fatal(err)
	}
	st, err := launch.Dir(dir).Load()
	if err != nil || st.Vault != "memory" || *st.Server != s {
		t.Fatalf("saved: %+v %v", st, err)
	}
	// A bad value names the file and the flag.
	b, _ := os.ReadFile(filepath.Join(dir, launch.SettingsFile))
	os.WriteFile(filepath.Join(dir, launch.SettingsFile), bytes.Replace(b, []byte(`"1m10s"`), []byte(`"soon"`), 1), 0o600)
	if !bytes.Contains(b, []byte(`"idle_timeout": "1m10s"`)) {
		t.Fatalf("settings.json does not keep the idle timeout as a duration:\n%s", b)
	}
	err = runServe(context.Background(), []string{"--data-dir", dir}, Env{Stderr: &errb})
	if err == nil || !strings.Contains(err.Error(), "settings.json") || !strings.Contains(err.Error(), "--idle-timeout") {
		t.Fatalf("bad setting: %v", err)
	}
}

// serve never opens the window, in any build: with a window on offer it
// serves headless; `presence` with flags is the window with those flags;
// a window that cannot open (no display) is exit 1 with its sentence.
func TestServeIsHeadlessAndTheWindowTakesFlags(t *testing.T) {
	dir, _ := fileCA(t)
	errb := newSyncBuffer()
	opened := make(chan launch.Window, 1)
	app := func(_ context.Context, l launch.Window) error {
		opened <- l
		return errors.New("there is no display to open the window on; use presence serve")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"serve", "--data-dir", dir, "--cira-addr", "127.0.0.1:0", "--proxy-addr", "off", "--api-addr", "off", "--mdns=false"},
			Env{Stderr: errb, App: app})
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := launch.Dir(dir).RunInfo(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start")
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve: exit %d", code)
	}
	select {
	case <-opened:
		t.Fatal("serve opened the window")
	default:
	}
	var stderr strings.Builder
	code := Run(context.Background(), []string{"--data-dir", dir, "--cira-addr", "127.0.0.1:0", "--proxy-addr", "off"}, Env{Stderr: &stderr, App: app})
	l := <-opened
	if l.Settings.CIRAAddr != "127.0.0.1:0" || l.Settings.ProxyAddr != "off" || l.Setup != nil {
		t.Fatalf("window launched with %+v (setup %v)", l.Settings, l.Setup != nil)
	}
	if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "presence serve") {
		t.Fatalf("no display: exit %d, stderr %q", code, stderr.String())
	}
	if _, err := launch.Dir(dir).RunInfo(); !errors.Is(err, launch.ErrNotRunning) {
		t.Fatalf("run files left behind: %v", err)
	}
	// No display: the window says so before it touches the data dir.
	fresh := filepath.Join(t.TempDir(), "presence")
	stderr.Reset()
	noDisplay := func() error { return errors.New("there is no display; use presence serve") }
	code = Run(context.Background(), []string{"--data-dir", fresh}, Env{Stderr: &stderr, App: app, Display: noDisplay})
	if code != 1 || stderr.String() != "presence: there is no display; use presence serve\n" || len(opened) != 0 {
		t.Fatalf("no display: exit %d, stderr %q, window opened %v", code, stderr.String(), len(opened) != 0)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the data dir was touched without a display: %v", err)
	}
}
