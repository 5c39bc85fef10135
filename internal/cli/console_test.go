package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/proxy"
)

// startServe runs `presence serve` on loopback ports until the test ends
// and returns its stderr.
func startServe(t *testing.T, dir string, extra ...string) (cira string, logs *syncBuffer) {
	t.Helper()
	cira = freePort(t)
	ctx, stop := context.WithCancel(context.Background())
	logs = newSyncBuffer()
	served := make(chan int, 1)
	args := append([]string{"serve", "--data-dir", dir, "--cira-addr", cira, "--proxy-addr", "127.0.0.1:0",
		"--api-addr", "127.0.0.1:0", mdnsFlag()}, extra...)
	go func() { served <- Run(ctx, args, Env{Stdout: io.Discard, Stderr: logs}) }()
	t.Cleanup(func() {
		stop()
		select {
		case code := <-served:
			if code != 0 {
				t.Errorf("serve exit %d:\n%s", code, logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	logs.waitFor(t, "Presence MPS serving")
	return cira, logs
}

// TestConsoleCommands drives a running instance with devices, sessions and
// map, as an admin would from a second terminal.
func TestConsoleCommands(t *testing.T) {
	dir := dataDir(t)
	cira, logs := startServe(t, dir)
	root := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(root, []byte(run(t, "", "cert", "export-root", "--data-dir", dir).stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	// The run files: the token is the user's alone.
	if st, err := os.Stat(filepath.Join(dir, launch.RunDir, launch.RunTokenFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	ctx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan int, 1)
	go func() {
		simDone <- Run(ctx, []string{"simulate", "--mps", cira, "--ca", root, "--user", "dev", "--devices", "2", "--duration", "60s", "--echo-port", "7"},
			Env{Stdin: strings.NewReader(ciraPW + "\n"), Stdout: io.Discard, Stderr: io.Discard})
	}()
	defer func() { stopSim(); <-simDone }()

	var devs []api.DeviceInfo
	for deadline := time.Now().Add(20 * time.Second); len(devs) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("devices never listed 2: %+v", devs)
		}
		r := run(t, "", "devices", "--data-dir", dir, "--format", "json")
		if r.code != 0 {
			t.Fatalf("devices: %+v", r)
		}
		devs = nil
		json.Unmarshal([]byte(r.stdout), &devs)
	}
	table := run(t, "", "devices", "--data-dir", dir)
	if !strings.HasPrefix(table.stdout, "GUID") || !strings.Contains(table.stdout, devs[0].Hostname) || !strings.Contains(table.stdout, "TLS 1.") {
		t.Fatalf("devices table:\n%s", table.stdout)
	}

	// An alias names the device from now on, and is kept in the data dir.
	if r := run(t, "", "alias", "--data-dir", dir, "Front-Desk", devs[0].UUID); r.code != 0 || !strings.Contains(r.stdout, "front-desk  "+devs[0].UUID) {
		t.Fatalf("alias: %+v", r)
	}
	defer run(t, "", "alias", "--data-dir", dir, "--remove", "front-desk")
	if r := run(t, "", "alias", "--data-dir", dir, "not an alias", devs[0].UUID); r.code != 1 || !strings.Contains(r.stderr, "HTTP 400") {
		t.Fatalf("bad alias: %+v", r)
	}
	if saved, err := launch.Dir(dir).Aliases(); err != nil || saved["front-desk"] != devs[0].UUID {
		t.Fatalf("saved aliases %v, %v", saved, err)
	}
	m := run(t, "", "map", "--data-dir", dir, "front-desk.amt", "7")
	match := regexp.MustCompile(`^(127\.0\.0\.1:\d+) -> ` + devs[0].UUID + ` port 7 \(mapping (\d+);`).FindStringSubmatch(m.stdout)
	if m.code != 0 || match == nil {
		t.Fatalf("map: %+v", m)
	}
	c, err := net.Dial("tcp", match[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "ping")
	if b := make([]byte, 4); func() bool { _, err := io.ReadFull(c, b); return err != nil || string(b) != "ping" }() {
		t.Fatal("no echo through the mapping")
	}
	var ss []proxy.SessionInfo
	json.Unmarshal([]byte(run(t, "", "sessions", "--data-dir", dir, "--format", "json").stdout), &ss)
	if len(ss) != 1 || ss[0].Kind != proxy.KindMapping || ss[0].Device != devs[0].UUID {
		t.Fatalf("sessions: %+v", ss)
	}
	csv := run(t, "", "sessions", "--data-dir", dir, "--csv")
	if !strings.HasPrefix(csv.stdout, "ID,KIND,CONSOLE") || !strings.Contains(csv.stdout, ",mapping,") {
		t.Fatalf("sessions csv:\n%s", csv.stdout)
	}
	if r := run(t, "", "sessions", "--data-dir", dir, "--kill", "999"); r.code != 1 || !strings.Contains(r.stderr, "no live session") {
		t.Fatalf("kill of no session: %+v", r)
	}
	if r := run(t, "", "sessions", "--data-dir", dir, "--kill", strconv.FormatUint(ss[0].ID, 10)); r.code != 0 {
		t.Fatalf("kill: %+v", r)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("killed session still open")
	}
	if r := run(t, "", "map", "--data-dir", dir, "--list"); !strings.Contains(r.stdout, match[1]) {
		t.Fatalf("map --list: %+v", r)
	}
	if r := run(t, "", "map", "--data-dir", dir, "--remove", match[2]); r.code != 0 {
		t.Fatalf("map --remove: %+v", r)
	}
	if r := run(t, "", "map", "--data-dir", dir, "nosuch", "7"); r.code != 1 || !strings.Contains(r.stderr, "no connected device") {
		t.Fatalf("map of an unknown device: %+v", r)
	}
	if r := run(t, "", "map", "--data-dir", dir, devs[0].UUID, "70000"); r.code != 2 {
		t.Fatalf("map to port 70000: %+v", r)
	}
	// A console account that does not exist is refused by the API.
	if r := run(t, "nope\n", "devices", "--data-dir", dir, "--user", "nobody"); r.code != 1 || !strings.Contains(r.stderr, "HTTP 401") {
		t.Fatalf("devices as an unknown console user: %+v", r)
	}
	if strings.Contains(logs.String(), ciraPW) {
		t.Fatal("a password reached the log")
	}
}

func TestControlWithoutInstance(t *testing.T) {
	r := run(t, "", "sessions", "--data-dir", t.TempDir())
	if r.code != 1 || !strings.Contains(r.stderr, "no Presence instance is running") {
		t.Fatalf("%+v", r)
	}
}

// With mDNS inside a private network namespace, `presence discover` finds
// the demo's loopback advertisement.
func TestDiscoverDemo(t *testing.T) {
	if !privateNetns() {
		t.Skip("mDNS runs only in a private network namespace (scripts/test.sh runs the tests in one)")
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	out := newSyncBuffer()
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"demo", "--devices", "1", "--data-dir", t.TempDir(), "--mdns=true", "--log-level", "info"}, Env{Stdout: out, Stderr: out})
	}()
	out.waitFor(t, "Press Ctrl+C")
	r := run(t, "", "discover", "--loopback", "--timeout", "2s", "--format", "json")
	type instance struct {
		Name      string `json:"name"`
		ProxyPort int    `json:"proxy_port"`
		Version   string `json:"version"`
		FP        string `json:"fp"`
	}
	var found []instance
	if err := json.Unmarshal([]byte(r.stdout), &found); err != nil {
		t.Fatalf("discover: %+v (%v)\ndemo: %s", r, err, out.String())
	}
	// Other packages' tests may advertise on this namespace's loopback at
	// the same time: the demo is the one named so, found once.
	demos := slices.DeleteFunc(slices.Clone(found), func(f instance) bool { return !strings.HasPrefix(f.Name, "Presence demo ") })
	if len(demos) != 1 || demos[0].Version != Version || len(demos[0].FP) != 64 ||
		!bytes.Contains([]byte(out.String()), []byte("127.0.0.1:")) {
		t.Fatalf("found %+v", found)
	}
	stop()
	<-done
}

// A taken port is a clear error, and nothing is left running.
func TestServePortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := run(t, "", "serve", "--data-dir", dataDir(t), "--cira-addr", freePort(t), "--proxy-addr", ln.Addr().String(),
		"--api-addr", "127.0.0.1:0", "--mdns=false")
	if r.code != 1 || !strings.Contains(r.stderr, "proxy listener") || !strings.Contains(r.stderr, "--proxy-addr") {
		t.Fatalf("%+v", r)
	}
}

// One Presence per data dir, and per CIRA port: a second one exits at once
// naming the first.
func TestSecondInstance(t *testing.T) {
	dir := dataDir(t)
	cira, _ := startServe(t, dir)
	start := time.Now()
	r := run(t, "", "serve", "--data-dir", dir, "--cira-addr", freePort(t), "--proxy-addr", "off", "--api-addr", "off", "--mdns=false")
	if r.code != 1 || !strings.Contains(r.stderr, "already running") || !strings.Contains(r.stderr, "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second serve on the same data dir: %+v", r)
	}
	// Another data dir (a copy of the vault), the same CIRA port.
	other := t.TempDir()
	if err := os.CopyFS(filepath.Join(other, "vault"), os.DirFS(filepath.Join(dir, "vault"))); err != nil {
		t.Fatal(err)
	}
	r = run(t, "", "serve", "--data-dir", other, "--cira-addr", cira, "--proxy-addr", "off", "--api-addr", "off", "--mdns=false")
	if r.code != 1 || !strings.Contains(r.stderr, "another Presence is already serving CIRA on "+cira) {
		t.Fatalf("second serve on the same CIRA port: %+v", r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the refusals took %v", d)
	}
}

// presence history reads the running instance's history through its API,
// and the file itself once the instance has stopped, shutdown included.
func TestHistoryCommand(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "vault"), os.DirFS(filepath.Join(dataDir(t), "vault"))); err != nil {
		t.Fatal(err)
	}
	cira := freePort(t)
	ctx, stop := context.WithCancel(context.Background())
	logs := newSyncBuffer()
	served := make(chan int, 1)
	go func() {
		served <- Run(ctx, []string{"serve", "--data-dir", dir, "--cira-addr", cira, "--proxy-addr", "127.0.0.1:0",
			"--api-addr", "127.0.0.1:0", mdnsFlag()}, Env{Stdout: io.Discard, Stderr: logs})
	}()
	defer func() { stop(); <-served }()
	logs.waitFor(t, "Presence MPS serving")
	root := filepath.Join(t.TempDir(), "root.pem")
	os.WriteFile(root, []byte(run(t, "", "cert", "export-root", "--data-dir", dir).stdout), 0o600)
	sim := run(t, ciraPW+"\n", "simulate", "--mps", cira, "--ca", root, "--user", "dev", "--devices", "2", "--duration", "1s", "--seed", "history")
	if sim.code != 0 {
		t.Fatalf("simulate: %+v", sim)
	}
	var evs []struct {
		Device, Hostname, Kind, Reason string
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := run(t, "", "history", "--data-dir", dir, "--format", "json")
		if r.code != 0 {
			t.Fatalf("history through the API: %+v", r)
		}
		json.Unmarshal([]byte(r.stdout), &evs)
		if len(evs) >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history: %s", r.stdout)
		}
	}
	host := evs[0].Hostname
	table := run(t, "", "history", "--data-dir", dir, "--device", host, "--since", "1h")
	if table.code != 0 || !strings.Contains(table.stdout, " up ") || !strings.Contains(table.stdout, "reachable ") {
		t.Fatalf("history --device %s:\n%+v", host, table)
	}
	stop()
	if code := <-served; code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, logs.String())
	}
	served <- 0 // for the deferred wait
	// The instance is gone: the file is read directly.
	r := run(t, "", "history", "--data-dir", dir, "--csv")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "TIME,DEVICE,HOSTNAME,EVENT") || strings.Count(r.stdout, ",up,") != 2 {
		t.Fatalf("history from the file: %+v", r)
	}
	if r := run(t, "", "history", "--data-dir", dir, "--sessions"); r.code != 0 || !strings.HasPrefix(r.stdout, "START") {
		t.Fatalf("history --sessions: %+v", r)
	}
}
