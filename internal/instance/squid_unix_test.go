//go:build unix

package instance_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/proxy"
)

// squid with Presence as its parent (cache_peer, never_direct): the
// classic MPS's proxy chaining.
func TestSquidChaining(t *testing.T) {
	squid := requireTool(t, "squid")
	e := newEnv(t, envOptions{devices: 1})
	dir := t.TempDir()
	px := e.in.ProxyAddr.(*net.TCPAddr)
	port := freePort(t)
	// login= sends Presence's console login to the parent; squid's own
	// port needs none (loopback only).
	conf := fmt.Sprintf(`http_port 127.0.0.1:%d
cache_peer 127.0.0.1 parent %d 0 no-query no-digest default login=%s:%s name=presence
never_direct allow all
http_access allow localhost
http_access deny all
cache deny all
dns_nameservers 127.0.0.1
pid_filename none
cache_log %s/cache.log
access_log none
coredump_dir %s
shutdown_lifetime 0 seconds
`, port, px.Port, consoleUser, consolePass, dir, dir)
	confFile := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	outFile, err := os.Create(filepath.Join(dir, "squid.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	// squid starts helper processes: run it in its own process group and
	// stop the whole group.
	cmd := exec.Command(squid, "-N", "-f", confFile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = outFile, outFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	squidAddr := fmt.Sprintf("127.0.0.1:%d", port)
	e.waitFor("squid listening", func() bool {
		c, err := net.Dial("tcp", squidAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	evs, stop := e.in.Sessions().Subscribe(16)
	defer stop()
	code, body, stderr := curlWSMan(t, e, []string{"-x", "http://" + squidAddr}, "", "http://"+e.hostname(0)+".amt:16992/wsman")
	if code != 200 {
		log, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
		out, _ := os.ReadFile(filepath.Join(dir, "squid.out"))
		t.Fatalf("through squid: status %d, curl %s\nsquid: %s\n%s", code, stderr, out, log)
	}
	wantHost(t, body, e.hostname(0))
	select {
	case ev := <-evs:
		if ev.Session.User != consoleUser || ev.Session.Kind != proxy.KindHTTP || ev.Session.Device != e.guid(0) {
			t.Fatalf("squid's session on Presence: %+v", ev.Session)
		}
	case <-time.After(testTimeout):
		t.Fatal("squid's request made no session on Presence")
	}
}
