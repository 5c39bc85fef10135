package adapter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/vault"
)

// liveEnv is a real instance on loopback with a real history file and n
// simulated devices connected over TLS.
type liveEnv struct {
	in    *instance.Instance
	hist  *history.Store
	ca    *vault.CA
	start func(i int) *amtsim.Device
}

func newLive(t *testing.T, n int) *liveEnv {
	t.Helper()
	hist, err := history.Open(filepath.Join(t.TempDir(), "history.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, ca := instancetest.Start(t, func(c *instance.Config) { c.History = hist })
	e := &liveEnv{in: in, hist: hist, ca: ca}
	dctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		in.Shutdown(sctx)
		hist.Close()
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	e.start = func(i int) *amtsim.Device {
		d, err := amtsim.New(amtsim.Config{UUID: amtsim.DeviceUUID(t.Name(), i), Hostname: amtsim.DeviceHostname(i),
			User: instancetest.CIRAUser, Password: []byte(instancetest.CIRAPass), MPSAddr: in.Listening().CIRA.String(), RootCAs: roots, MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { d.Run(dctx) })
		return d
	}
	for i := range n {
		e.start(i)
	}
	waitFor(t, "devices", func() bool { return in.Server.Stats().Tunnels == n })
	return e
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The snapshot of a real instance: devices, listeners, events for the
// overview, samples for its chart, and a device's timeline from the real
// history file.
func TestSnapshotOfARunningInstance(t *testing.T) {
	e := newLive(t, 3)
	var mu sync.Mutex
	var changes []ui.Change
	b := New(e.in, settings.Settings{}, func(c ui.Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() })
	defer b.Close()
	waitFor(t, "three connect events", func() bool { return len(b.Snapshot().Recent) == 3 })
	s := b.Snapshot()
	if len(s.Devices) != 3 || s.CIRA != e.in.CIRAAddr.String() || s.Proxy != e.in.ProxyAddr.String() || s.Paused || s.Accepted != 3 {
		t.Fatalf("snapshot: %d devices, CIRA %q, proxy %q, paused %v, accepted %d", len(s.Devices), s.CIRA, s.Proxy, s.Paused, s.Accepted)
	}
	if s.Recent[0].Kind != "connected" || len(s.Samples) < 2 || s.Samples[len(s.Samples)-1].Devices != 3 {
		t.Fatalf("recent %+v, samples %+v", s.Recent[0], s.Samples)
	}
	guid := s.Devices[0].UUID
	if err := b.Disconnect(guid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the disconnect event", func() bool { return b.Snapshot().Recent[0].Kind == "disconnected" })
	// The desktop notifications are told of the disconnect too.
	mu.Lock()
	last := changes[len(changes)-1]
	mu.Unlock()
	if last.Up || last.Name != s.Devices[0].Hostname {
		t.Fatalf("last change %+v, want %s down", last, s.Devices[0].Hostname)
	}
	b.History = e.hist
	e.hist.Flush(context.Background())
	tl, err := b.Timeline(guid)
	if err != nil || len(tl) < 2 || tl[0].Kind != history.KindDown || tl[len(tl)-1].Kind != history.KindUp {
		t.Fatalf("timeline %+v, %v", tl, err)
	}
	e.in.Pause()
	if s := b.Snapshot(); !s.Paused || s.CIRA != "" {
		t.Fatalf("paused snapshot: %+v", s)
	}
	if err := e.in.Resume(); err != nil {
		t.Fatal(err)
	}
}

// Settings from the window move the real listeners, set the log level and
// are saved; a port in use is an error and nothing is saved.
func TestApplySettings(t *testing.T) {
	e := newLive(t, 1)
	var saved []settings.Settings
	var level slog.LevelVar
	cur := settings.Defaults()
	cur.CIRAAddr, cur.ProxyAddr, cur.APIAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cur.MDNS = false
	b := New(e.in, cur, nil)
	defer b.Close()
	b.Save = func(s settings.Settings) error { saved = append(saved, s); return nil }
	b.Level = &level
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	s := cur
	s.ProxyAddr = "127.0.0.1:" + strconv.Itoa(port)
	s.LogLevel = "debug"
	s.APIAddr = "127.0.0.1:1"
	note, err := b.ApplySettings(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Snapshot().Proxy; got != s.ProxyAddr {
		t.Fatalf("proxy on %s, want %s", got, s.ProxyAddr)
	}
	if level.Level() != slog.LevelDebug || len(saved) != 1 || saved[0] != s || !strings.Contains(note, "API address") {
		t.Fatalf("level %v, saved %+v, note %q", level.Level(), saved, note)
	}
	if b.Snapshot().Devices[0].Info.ConnectedAt.IsZero() || len(b.Snapshot().Devices) != 1 {
		t.Fatal("the device was dropped")
	}
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	s2 := s
	s2.CIRAAddr = busy.Addr().String()
	if _, err := b.ApplySettings(s2); err == nil || !strings.Contains(Explain(err), "in use by another program") {
		t.Fatalf("port in use: %v", err)
	}
	if len(saved) != 1 || b.Settings() != s {
		t.Fatalf("a failed apply was saved or kept: %d saves", len(saved))
	}
	s2 = s
	s2.IdleTimeout = s2.Keepalive
	if _, err := b.ApplySettings(s2); err == nil {
		t.Fatal("an idle timeout as short as the keepalive was applied")
	}
}

// The log screen's source is the ring.
func TestLogSince(t *testing.T) {
	r := logring.New(10)
	b := &Backend{Log: r}
	slog.New(r.Handler(slog.LevelInfo, nil)).Warn("keychain slow")
	if got := b.LogSince(0, slog.LevelInfo); len(got) != 1 || got[0].Message != "keychain slow" {
		t.Fatalf("%+v", got)
	}
}

func TestExplain(t *testing.T) {
	_, inUse := net.Listen("tcp", "127.0.0.1:1") // privileged or refused: either way an error to explain
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("loading the CA: %w", vault.ErrLocked), "The keychain is locked."},
		{fmt.Errorf("CIRA listener: %w", &net.OpError{Op: "listen", Net: "tcp", Addr: &net.TCPAddr{Port: 4433}, Err: syscall.EADDRINUSE}), "A port Presence needs is in use by another program (:4433)."},
		{errors.New("something odd"), "Something odd."},
	} {
		if got := Explain(c.err); !strings.HasPrefix(got, c.want) {
			t.Errorf("Explain(%v) = %q, want it to start %q", c.err, got, c.want)
		}
	}
	if inUse != nil && Explain(inUse) == "" {
		t.Error("no sentence for a listen error")
	}
}

// A kind of account with no account is a problem in the banner until one
// is added.
func TestCheckAccounts(t *testing.T) {
	e := newLive(t, 0)
	b := New(e.in, settings.Settings{}, nil)
	defer b.Close()
	acc := vault.NewAccounts(vault.NewMemory(0))
	ctx := context.Background()
	b.CheckAccounts(ctx, acc)
	if p := b.Snapshot().Problems; len(p) != 2 || !strings.HasPrefix(p[0], "No CIRA account") || !strings.HasPrefix(p[1], "No console account") {
		t.Fatalf("problems %q", p)
	}
	if err := acc.Add(ctx, vault.KindCIRA, "dev", "Cira-P@ss1"); err != nil {
		t.Fatal(err)
	}
	b.CheckAccounts(ctx, acc)
	if p := b.Snapshot().Problems; len(p) != 1 || !strings.HasPrefix(p[0], "No console account") {
		t.Fatalf("after adding a CIRA account: %q", p)
	}
}
