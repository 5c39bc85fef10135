package launch_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// newConfig returns a start configuration over a new data dir with a file
// vault holding a CA and a CIRA account, listening on loopback.
func newConfig(t *testing.T) launch.Config {
	t.Helper()
	dir := t.TempDir()
	st, err := vault.Open("file", dir)
	if err != nil {
		t.Fatal(err)
	}
	root, server := vaulttest.Keys(t)
	if _, err := vault.InitCA(t.Context(), st, vault.CAOptions{Address: "127.0.0.1", RootKey: root, ServerKey: server}); err != nil {
		t.Fatal(err)
	}
	if err := vault.NewAccounts(st).Add(t.Context(), vault.KindCIRA, "dev", "Cira-P4ssw0rd"); err != nil {
		t.Fatal(err)
	}
	s := settings.Defaults()
	s.CIRAAddr, s.ProxyAddr, s.APIAddr, s.MDNS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", false
	return launch.Config{Dir: launch.Dir(dir), Vault: "file", Store: st, Settings: s, Version: "test",
		HistoryMaxAge: time.Hour, HistoryMaxBytes: 16 << 20, ShutdownTimeout: 5 * time.Second}
}

// closedDown checks that nothing of a start is left: the history file can
// be opened (its lock is free), there are no run files, and addr (if
// any) no longer accepts connections.
func closedDown(t *testing.T, dir launch.Dir, addrs ...string) {
	t.Helper()
	h, err := history.Open(dir.Path(launch.HistoryFile), history.Options{PruneInterval: -1})
	if err != nil {
		t.Fatalf("the history file is still held: %v", err)
	}
	h.Close()
	if _, err := dir.RunInfo(); !errors.Is(err, launch.ErrNotRunning) {
		t.Fatalf("run files left behind: %v", err)
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still accepts connections", a)
		}
	}
}

// A start that fails on a port in use closes the history file it had
// opened, so that a retry in the same process (the window's Try again)
// starts, instead of being told that another Presence runs.
func TestFailedStartThenRetry(t *testing.T) {
	cfg := newConfig(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Settings.CIRAAddr = busy.Addr().String()
	s := launch.NewStarter(cfg)
	defer s.Close()
	_, err = s.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "another program has that port") {
		t.Fatalf("start on a port in use: %v", err)
	}
	closedDown(t, cfg.Dir)
	if s.Running() != nil {
		t.Fatal("a failed start is running")
	}

	busy.Close() // the other program is gone: Try again
	r, err := s.Start(t.Context())
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if r.CIRAAddr.String() != cfg.Settings.CIRAAddr {
		t.Fatalf("listening on %v, want %s", r.CIRAAddr, cfg.Settings.CIRAAddr)
	}
	if again, err := s.Start(t.Context()); err != nil || again != r {
		t.Fatalf("a second Start while running: %v, %v", again, err)
	}
	info, err := cfg.Dir.RunInfo()
	if err != nil || info.PID != os.Getpid() || info.CIRA != cfg.Settings.CIRAAddr || info.Proxy != r.ProxyAddr.String() {
		t.Fatalf("run info %+v, %v", info, err)
	}
	if fi, err := os.Stat(filepath.Join(string(cfg.Dir), launch.RunDir, launch.RunTokenFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v", fi, err)
	}
	proxy, api := r.ProxyAddr.String(), r.APIAddr.String()
	s.Close()
	closedDown(t, cfg.Dir, cfg.Settings.CIRAAddr, proxy, api)
	if _, err := s.Start(t.Context()); !errors.Is(err, launch.ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
}

// gate is a vault store whose List waits until the gate opens (or, if
// honourCtx, until the caller's context ends): a keychain that is slow to
// answer, for fault injection.
type gate struct {
	vault.Store
	honourCtx bool
	blocked   chan struct{} // closed when a List is waiting
	open      chan struct{}
	once      sync.Once
}

func (g *gate) List(ctx context.Context, prefix string) ([]string, error) {
	g.once.Do(func() { close(g.blocked) })
	if g.honourCtx {
		select {
		case <-g.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	} else {
		<-g.open
	}
	return g.Store.List(ctx, prefix)
}

// Quitting while the window says "Starting…" stops cleanly: Close cancels
// the start, waits for it, and closes what it had opened, whether the
// slow call gives up at once (honours the context) or the start runs on
// to the end.
func TestQuitDuringStart(t *testing.T) {
	for _, honour := range []bool{true, false} {
		name := map[bool]string{true: "cancelled", false: "runs-to-the-end"}[honour]
		t.Run(name, func(t *testing.T) {
			cfg := newConfig(t)
			g := &gate{Store: cfg.Store, honourCtx: honour, blocked: make(chan struct{}), open: make(chan struct{})}
			cfg.Store = g
			s := launch.NewStarter(cfg)
			type result struct {
				r   *launch.Running
				err error
			}
			started := make(chan result, 1)
			go func() {
				r, err := s.Start(context.Background())
				started <- result{r, err}
			}()
			select {
			case <-g.blocked: // history is open; the accounts are being read
			case <-time.After(20 * time.Second):
				t.Fatal("the start never reached the vault")
			}
			closed := make(chan struct{})
			go func() { s.Close(); close(closed) }()
			if !honour {
				// Close waits for the start, which goes on once the
				// keychain answers.
				select {
				case <-closed:
					t.Fatal("Close returned while the start was still running")
				case <-time.After(100 * time.Millisecond):
				}
				close(g.open)
			}
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
				t.Fatal("Close did not return")
			}
			res := <-started
			if !errors.Is(res.err, launch.ErrClosed) || res.r != nil {
				t.Fatalf("Start = %v, %v; want ErrClosed", res.r, res.err)
			}
			closedDown(t, cfg.Dir)
			if s.Running() != nil {
				t.Fatal("an instance is left running")
			}
		})
	}
}
