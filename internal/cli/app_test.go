package cli

import (
	"context"
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
