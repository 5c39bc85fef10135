package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads, which can wait for a string to appear.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	ch chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{ch: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) waitFor(t *testing.T, sub string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(s.String(), sub) {
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("no %q in output:\n%s", sub, s.String())
		}
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	return result{code, out.String(), errb.String()}
}

// dataDir is a data dir with a CA for 127.0.0.1 and a CIRA account, made
// once per test binary through the commands themselves.
var (
	dataOnce sync.Once
	dataPath string
	dataInit result
)

const ciraPW = "s3cret-Cira-pw"

func dataDir(t *testing.T) string {
	t.Helper()
	dataOnce.Do(func() {
		dir, err := os.MkdirTemp("", "presence-cli-test")
		if err != nil {
			t.Fatal(err)
		}
		dataPath = dir
		dataInit = run(t, "", "cert", "init", "--cn", "127.0.0.1", "--data-dir", dir)
		if r := run(t, ciraPW+"\n", "account", "add", "--kind", "cira", "--data-dir", dir, "dev"); r.code != 0 {
			t.Fatalf("account add: %+v", r)
		}
	})
	if dataInit.code != 0 {
		t.Fatalf("cert init: %+v", dataInit)
	}
	return dataPath
}

// privateNetns reports whether the test runs in a network namespace of its
// own (only a loopback interface), where multicast cannot leave the machine.
func privateNetns() bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return true
}

// mdnsFlag turns mDNS on only inside a private network namespace: on the
// host it would advertise on the real network.
func mdnsFlag() string {
	if privateNetns() {
		return "--mdns=true"
	}
	return "--mdns=false"
}

func TestMain(m *testing.M) {
	code := m.Run()
	if dataPath != "" {
		os.RemoveAll(dataPath)
	}
	os.Exit(code)
}

func TestCertCommands(t *testing.T) {
	dir := dataDir(t)
	if !strings.Contains(dataInit.stdout, "MPS address:       127.0.0.1") || !strings.Contains(dataInit.stdout, "Root SHA-256:") {
		t.Fatalf("cert init printed:\n%s", dataInit.stdout)
	}
	show := run(t, "", "cert", "show", "--data-dir", dir)
	if show.code != 0 || !strings.Contains(show.stdout, "IP:127.0.0.1") || !strings.Contains(show.stdout, "RSA 3072") {
		t.Fatalf("cert show: %+v", show)
	}
	exp := run(t, "", "cert", "export-root", "--data-dir", dir)
	block, _ := pem.Decode([]byte(exp.stdout))
	if exp.code != 0 || block == nil {
		t.Fatalf("export-root: %+v", exp)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !root.IsCA {
		t.Fatalf("exported root: %v", err)
	}
	// A second init refuses and changes nothing.
	again := run(t, "", "cert", "init", "--cn", "10.0.0.1", "--data-dir", dir)
	if again.code != 1 || !strings.Contains(again.stderr, "already exists") {
		t.Fatalf("second cert init: %+v", again)
	}
	if after := run(t, "", "cert", "export-root", "--data-dir", dir); after.stdout != exp.stdout {
		t.Fatal("the root changed after a refused init")
	}
	if r := run(t, "", "cert", "init", "--data-dir", dir); r.code != 2 || !strings.Contains(r.stderr, "--cn") {
		t.Fatalf("init without --cn: %+v", r)
	}
}

func TestAccountCommands(t *testing.T) {
	dir := t.TempDir()
	if r := run(t, "", "account", "add", "--data-dir", dir, "x"); r.code != 2 || !strings.Contains(r.stderr, "standard input") {
		t.Fatalf("add without password: %+v", r)
	}
	r := run(t, "pw-one-two\r\n", "account", "add", "--kind", "console", "--data-dir", dir, "alice")
	if r.code != 0 || strings.Contains(r.stdout+r.stderr, "pw-one-two") {
		t.Fatalf("add: %+v", r)
	}
	if l := run(t, "", "account", "list", "--kind", "console", "--data-dir", dir); l.stdout != "alice\n" {
		t.Fatalf("list: %+v", l)
	}
	if l := run(t, "", "account", "list", "--kind", "cira", "--data-dir", dir); l.code != 0 || l.stdout != "" {
		t.Fatalf("list cira: %+v", l)
	}
	if r := run(t, "", "account", "remove", "--kind", "console", "--data-dir", dir, "alice"); r.code != 0 {
		t.Fatalf("remove: %+v", r)
	}
	if r := run(t, "", "account", "remove", "--kind", "console", "--data-dir", dir, "alice"); r.code != 1 {
		t.Fatalf("remove twice: %+v", r)
	}
	// No file in the data dir holds the password in a name.
	filepath.WalkDir(dir, func(p string, _ os.DirEntry, _ error) error {
		if strings.Contains(p, "pw-one-two") {
			t.Errorf("path %s holds the password", p)
		}
		return nil
	})
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"cert"}, {"serve", "--keepalive", "30s", "--idle-timeout", "30s"},
		{"simulate", "--devices", "3"}, {"serve", "--debug-addr", "0.0.0.0:6060"}, {"demo", "--cira-addr", "0.0.0.0:4433"}} {
		if r := run(t, "", args...); r.code != 2 {
			t.Errorf("presence %v: exit %d; want 2 (%s)", args, r.code, r.stderr)
		}
	}
	if r := run(t, "", "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "presence ") {
		t.Errorf("version: %+v", r)
	}
}

func TestServeWithoutCertificate(t *testing.T) {
	r := run(t, "", "serve", "--data-dir", t.TempDir(), "--cira-addr", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "presence cert init --cn") {
		t.Fatalf("serve without CA: %+v", r)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeAndSimulate runs `presence serve` and `presence simulate`
// against it, in process, as a user would run them in two terminals.
func TestServeAndSimulate(t *testing.T) {
	dir := dataDir(t)
	addr := freePort(t)
	root := filepath.Join(t.TempDir(), "root.pem")
	exp := run(t, "", "cert", "export-root", "--data-dir", dir)
	if err := os.WriteFile(root, []byte(exp.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	serveErr := newSyncBuffer()
	served := make(chan int, 1)
	go func() {
		served <- Run(ctx, []string{"serve", "--data-dir", dir, "--cira-addr", addr, "--proxy-addr", "127.0.0.1:0",
			"--api-addr", "127.0.0.1:0", mdnsFlag()}, Env{Stdout: &bytes.Buffer{}, Stderr: serveErr})
	}()
	serveErr.waitFor(t, "Presence MPS serving")

	sim := run(t, ciraPW+"\n", "simulate", "--mps", addr, "--ca", root, "--user", "dev", "--devices", "4", "--duration", "3s", "--echo-port", "7")
	if sim.code != 0 {
		t.Fatalf("simulate: %+v", sim)
	}
	var sum amtsim.Summary
	if err := json.Unmarshal([]byte(sim.stdout), &sum); err != nil {
		t.Fatalf("summary %q: %v", sim.stdout, err)
	}
	if sum.Handshakes != 4 || len(sum.Failed) != 0 {
		t.Fatalf("summary %+v", sum)
	}
	bad := run(t, "wrong\n", "simulate", "--mps", addr, "--ca", root, "--user", "dev", "--devices", "2", "--no-retry", "--duration", "10s")
	if err := json.Unmarshal([]byte(bad.stdout), &sum); err != nil || sum.Failed["auth"] != 2 {
		t.Fatalf("wrong-password simulate: %+v (%v)", bad, err)
	}
	stop()
	if code := <-served; code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, serveErr.String())
	}
	logs := serveErr.String()
	if strings.Contains(logs, ciraPW) || strings.Contains(logs, "wrong\n") {
		t.Fatalf("serve logs hold a password:\n%s", logs)
	}
	if !strings.Contains(logs, "CIRA authentication failed") {
		t.Fatalf("serve logs lack the auth failure:\n%s", logs)
	}
}

func TestDemo(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	out := newSyncBuffer()
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"demo", "--devices", "3", "--data-dir", t.TempDir(), mdnsFlag()}, Env{Stdout: out, Stderr: out})
	}()
	out.waitFor(t, "Press Ctrl+C")
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("demo exit %d:\n%s", code, out.String())
	}
	s := out.String()
	for _, want := range []string{"All 3 devices are connected.", "HostName=sim-000000 (HTTP 200, digest auth)", "3 tunnels up"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
}
