package cli

import (
	"context"
	"log/slog"
	"strings"
	"testing"
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
	app := func(ctx context.Context, l AppLaunch) error {
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
		in, err := l.Start()
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
		} else if info, err := readRunInfo(in.DataDir); err != nil || info.Proxy != "127.0.0.1:1081" {
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
	code = Run(context.Background(), nil, Env{Stdout: &out, Stderr: &errb, App: func(ctx context.Context, l AppLaunch) error {
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
	if err := saveSettings(dir, settings{Vault: "memory", Server: &ServerSettings{
		CIRAAddr: "127.0.0.1:0", ProxyAddr: "off", APIAddr: "off", Keepalive: "20s", IdleTimeout: "70s",
		LegacyTLS: new(true), MDNS: new(false), LogLevel: "warn", StartMinimised: true,
	}}); err != nil {
		t.Fatal(err)
	}
	var got AppLaunch
	app := func(_ context.Context, l AppLaunch) error { got = l; return nil }
	var errb strings.Builder
	if err := runServe(context.Background(), []string{"--data-dir", dir, "--keepalive", "10s"}, Env{Stderr: &errb, App: app}); err != nil {
		t.Fatalf("serve: %v\n%s", err, errb.String())
	}
	s := got.Settings
	if s.CIRAAddr != "127.0.0.1:0" || s.ProxyAddr != "off" || s.Keepalive != "10s" || s.IdleTimeout != "1m10s" ||
		!*s.LegacyTLS || *s.MDNS || s.LogLevel != "warn" || !s.StartMinimised || !*s.CloseToTray {
		t.Fatalf("settings in force: %+v", s)
	}
	if got.LogLevel.Level() != slog.LevelWarn || got.Log == nil {
		t.Fatalf("log level %v, ring %v", got.LogLevel.Level(), got.Log)
	}
	s.CloseToTray = new(false)
	s.Keepalive = "15s"
	if err := got.SaveSettings(s); err != nil {
		t.Fatal(err)
	}
	st, err := loadSettings(dir)
	if err != nil || st.Vault != "memory" || st.Server.Keepalive != "15s" || *st.Server.CloseToTray {
		t.Fatalf("saved: %+v %v", st, err)
	}
	// A bad value names the file and the flag.
	st.Server.IdleTimeout = "soon"
	if err := saveSettings(dir, st); err != nil {
		t.Fatal(err)
	}
	err = runServe(context.Background(), []string{"--data-dir", dir}, Env{Stderr: &errb, App: app})
	if err == nil || !strings.Contains(err.Error(), "settings.json") || !strings.Contains(err.Error(), "--idle-timeout") {
		t.Fatalf("bad setting: %v", err)
	}
}
