// Package etcdtest runs a throwaway etcd for tests: Debian's etcd-server
// binary (3.4.23, installed by scripts/setup.sh) on two free 127.0.0.1
// ports, with its data in the test's temporary directory. The recipe is
// ../../../../shared/fleet.md §4.
//
// A fresh data dir preallocates 123 MB of WAL, so start few servers per
// test run: one per test, shared by its subtests.
package etcdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the etcd server the tests run.
const Binary = "/usr/bin/etcd"

const (
	// startTimeout bounds how long a start waits for /health.
	startTimeout = 30 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before it kills.
	stopTimeout = 10 * time.Second
	// portTries is how often Start picks new ports when etcd cannot bind.
	portTries = 3
)

// Server is one etcd process. Its methods are safe for concurrent use. A
// Server is made by [Start]; the test's cleanup kills it and removes its
// data.
type Server struct {
	t       testing.TB
	dir     string // data dir, and etcd.log beside it
	client  string // http://127.0.0.1:P1
	peer    string // http://127.0.0.1:P2
	healthc *http.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited and been waited for
}

// Required reports whether a missing etcd fails the test instead of
// skipping it: in CI (CI=true) and with PRESENCE_REQUIRE_ETCD=1.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("PRESENCE_REQUIRE_ETCD") == "1"
}

// Start runs a new etcd and returns once it answers /health. It skips the
// test when [Binary] is missing, unless [Required] says otherwise, and
// fails it when etcd does not come up.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		msg := fmt.Sprintf("etcdtest: %s not found (Debian's etcd-server; bash scripts/setup.sh installs it)", Binary)
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	base := t.TempDir()
	s := &Server{
		t:   t,
		dir: base,
		healthc: &http.Client{
			Timeout:   time.Second,
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		},
	}
	t.Cleanup(s.Kill)
	var err error
	for try := 0; try < portTries; try++ {
		var p1, p2 int
		if p1, p2, err = freePorts(); err != nil {
			break
		}
		s.client = fmt.Sprintf("http://127.0.0.1:%d", p1)
		s.peer = fmt.Sprintf("http://127.0.0.1:%d", p2)
		if err = s.start(); err == nil {
			return s
		}
		// Another process may have taken a port between our probe and
		// etcd's bind: try new ones on a fresh data dir.
		s.Kill()
		if rerr := os.RemoveAll(s.dataDir()); rerr != nil {
			t.Fatalf("etcdtest: %v", rerr)
		}
	}
	t.Fatalf("etcdtest: %v", err)
	return nil
}

// Endpoint returns the client URL, http://127.0.0.1:PORT.
func (s *Server) Endpoint() string { return s.client }

// Stop sends SIGTERM and waits for etcd to exit (it is killed after 10 s).
// It does nothing when etcd is not running.
func (s *Server) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGTERM, stopTimeout)
}

// Kill kills etcd (SIGKILL) and waits for it to exit. It does nothing when
// etcd is not running.
func (s *Server) Kill() { s.signal(syscall.SIGKILL, stopTimeout) }

// Restart stops etcd if it runs, then starts it again on the same data
// dir and ports, and returns once it answers /health.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v", err)
	}
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "etcd") }

// signal sends sig to a running etcd and waits up to wait for it to exit,
// then kills it.
func (s *Server) signal(sig syscall.Signal, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("etcdtest: signal %v: %v", sig, err)
	}
	select {
	case <-s.done:
	case <-time.After(wait):
		s.t.Errorf("etcdtest: etcd still running %v after %v; killing it", wait, sig)
		_ = s.cmd.Process.Kill() // it may have exited in between
		<-s.done
	}
	s.cmd = nil
}

// start runs etcd and waits until it is healthy; on failure it leaves it
// killed and says why, with the end of etcd's log.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	logPath := filepath.Join(s.dir, "etcd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(Binary,
		"--name", "t",
		"--data-dir", s.dataDir(),
		"--listen-client-urls", s.client,
		"--advertise-client-urls", s.client,
		"--listen-peer-urls", s.peer,
		"--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "t="+s.peer,
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
	)
	// Only what etcd needs: no ETCD_* settings of the caller's leak in.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + s.dir}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cmd.Wait() // its exit is reported through done
		logf.Close()
	}()
	s.cmd, s.done = cmd, done

	if err := s.waitHealthy(done); err != nil {
		_ = cmd.Process.Kill() // it may have exited already
		<-done
		s.cmd = nil
		return fmt.Errorf("%v; etcd.log ends:\n%s", err, tail(logPath, 2048))
	}
	return nil
}

// waitHealthy polls /health until it says {"health":"true"}, etcd exits,
// or startTimeout passes.
func (s *Server) waitHealthy(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = s.health(ctx); last == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("etcd exited before it was healthy")
		case <-ctx.Done():
			return fmt.Errorf("etcd not healthy after %v: %v", startTimeout, last)
		case <-tick.C:
		}
	}
}

func (s *Server) health(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.client+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := s.healthc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&h); err != nil {
		return fmt.Errorf("/health: %v", err)
	}
	if h.Health != "true" {
		return fmt.Errorf("/health: %q", h.Health)
	}
	return nil
}

// freePorts returns two distinct ports that were free on 127.0.0.1 a
// moment ago (etcd's advertise URLs must name concrete ports).
func freePorts() (int, int, error) {
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

// tail returns the last n bytes of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
