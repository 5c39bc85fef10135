//go:build linux

package discovery

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests send real multicast, so each starts with requireNetns: they
// run only in a private network namespace (TestMain re-executes the test
// binary under unshare -n when it can).

// bound is the limit on every wait in these tests.
const bound = 10 * time.Second

func TestAdvertiseBrowseLoopback(t *testing.T) {
	requireNetns(t)
	lo := loopbackIfaces(t)
	baseline := runtime.NumGoroutine()

	fp := Fingerprint([]byte("test root certificate"))
	cfg := AdvertiseConfig{
		Instance:    `Presence test (lo) é.x\`,
		ProxyPort:   1080,
		APIPort:     16990,
		ID:          NewID(),
		Version:     "1.2.3-test+abc",
		Fingerprint: strings.ToUpper(fp),
		Ifaces:      lo,
		Host:        "presence-test",
		IPs:         []string{"127.0.0.1"},
	}
	start := time.Now()
	a, err := Advertise(cfg)
	if err != nil {
		t.Fatalf("Advertise: %v", err)
	}
	defer a.Close()

	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	got, err := Browse(ctx, BrowseConfig{Ifaces: lo, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("Browse: %v", err)
	}
	t.Logf("advertise + browse round: %v", time.Since(start))
	want := Instance{
		Name:        cfg.Instance,
		Host:        "presence-test.local",
		Addrs:       []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		ProxyPort:   1080,
		APIPort:     16990,
		ID:          cfg.ID,
		Version:     cfg.Version,
		Fingerprint: fp,
		Text: []string{
			"txtvers=1", "proxy=1080", "api=16990", "id=" + cfg.ID,
			"version=1.2.3-test+abc", "fp=" + fp,
		},
	}
	inst, ok := findID(got, cfg.ID)
	if !ok {
		t.Fatalf("Browse = %+v; want an instance with ID %q", got, cfg.ID)
	}
	if !sameInstance(inst, want) {
		t.Errorf("Browse found\n %+v\nwant\n %+v", inst, want)
	}

	// Close withdraws it; Browse keeps nothing between rounds, so the next
	// round sees only what still answers.
	closed := time.Now()
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	t.Logf("Close: %v", time.Since(closed))
	got, err = Browse(ctx, BrowseConfig{Ifaces: lo, Timeout: time.Second})
	if err != nil {
		t.Fatalf("Browse after Close: %v", err)
	}
	if inst, ok := findID(got, cfg.ID); ok {
		t.Errorf("Browse after Close found %+v; want nothing with ID %q", inst, cfg.ID)
	}

	waitGoroutines(t, baseline)
	t.Logf("goroutines back to %d after %v since Advertise", runtime.NumGoroutine(), time.Since(start))
}

// TestTwoNamespaces advertises in one network namespace and browses in
// another, joined by a veth pair, with default interfaces and addresses on
// both sides: real multicast between two "hosts". Each side is a copy of
// this test binary (TestHelperProcess) started under unshare -n, so the
// namespaces, and the veth pair with them, vanish when the copies exit;
// nothing is created in this process's namespace or under /run/netns.
func TestTwoNamespaces(t *testing.T) {
	requireNetns(t)
	start := time.Now()
	id := NewID()
	adv := startHelper(t, "advertise", id)
	br := startHelper(t, "browse", id)
	adv.expect(t, "ready")
	br.expect(t, "ready")

	a, b := strconv.Itoa(adv.pid()), strconv.Itoa(br.pid())
	run(t, "ip", "link", "add", "v1", "netns", a, "type", "veth", "peer", "name", "v2", "netns", b)
	for _, c := range [][]string{
		{a, "link", "set", "lo", "up"},
		{a, "addr", "add", "198.18.1.1/24", "dev", "v1"},
		{a, "link", "set", "v1", "up"},
		{b, "link", "set", "lo", "up"},
		{b, "addr", "add", "198.18.1.2/24", "dev", "v2"},
		{b, "link", "set", "v2", "up"},
	} {
		run(t, "nsenter", append([]string{"-t", c[0], "-n", "ip"}, c[1:]...)...)
	}

	adv.send(t, "go")
	adv.expect(t, "advertised")
	br.send(t, "go")
	found := br.expect(t, "found")
	t.Logf("setup, advertise and one browse round: %v", time.Since(start))

	var got []Instance
	if err := json.Unmarshal([]byte(found), &got); err != nil {
		t.Fatalf("helper's result %q: %v", found, err)
	}
	inst, ok := findID(got, id)
	if !ok {
		t.Fatalf("browser in the other namespace found %+v; want ID %q", got, id)
	}
	if inst.Name != defaultInstance() || inst.ProxyPort != 4433 || inst.APIPort != 16990 ||
		inst.Version != "9.9.9" || inst.Fingerprint != Fingerprint([]byte("two")) {
		t.Errorf("browser found %+v; want name %q, ports 4433 and 16990, version 9.9.9, fp of \"two\"", inst, defaultInstance())
	}
	if !slices.Contains(inst.Addrs, netip.MustParseAddr("198.18.1.1")) {
		t.Errorf("browser found addresses %v; want 198.18.1.1 among them", inst.Addrs)
	}
	if inst.Host != defaultHost()+".local" {
		t.Errorf("browser found host %q; want %q", inst.Host, defaultHost()+".local")
	}

	adv.send(t, "stop")
	adv.expect(t, "closed")
}

// TestHelperProcess is one side of TestTwoNamespaces, when started by it;
// otherwise it skips. It talks to the test over stdin (commands) and fd 3
// (replies, one line each).
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(envHelper)
	if role == "" {
		t.Skip("helper process for TestTwoNamespaces")
	}
	ctl := os.NewFile(3, "ctl")
	defer ctl.Close()
	in := bufio.NewScanner(os.Stdin)
	say := func(words ...string) {
		if _, err := ctl.WriteString(strings.Join(words, " ") + "\n"); err != nil {
			t.Fatalf("write to test: %v", err)
		}
	}
	await := func(cmd string) {
		if !in.Scan() || in.Text() != cmd {
			t.Fatalf("waiting for %q from the test: got %q, %v", cmd, in.Text(), in.Err())
		}
	}
	// unshare -n ran us in a new namespace: only lo, until the test adds
	// our end of the veth pair.
	if ok, names := privateNetns(); !ok {
		t.Fatalf("helper sees interfaces %q; want only loopback", names)
	}
	say("ready")
	await("go")
	if ok, names := privateNetns("v1", "v2"); !ok {
		t.Fatalf("helper sees interfaces %q; want loopback and one veth end", names)
	}

	switch role {
	case "advertise":
		a, err := Advertise(AdvertiseConfig{
			ProxyPort:   4433,
			APIPort:     16990,
			ID:          os.Getenv(envHelperID),
			Version:     "9.9.9",
			Fingerprint: Fingerprint([]byte("two")),
		})
		if err != nil {
			t.Fatalf("Advertise: %v", err)
		}
		say("advertised")
		await("stop")
		a.Close()
		say("closed")
	case "browse":
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		got, err := Browse(ctx, BrowseConfig{Timeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("Browse: %v", err)
		}
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		say("found", string(b))
	default:
		t.Fatalf("unknown helper role %q", role)
	}
}

// helper is a running TestHelperProcess.
type helper struct {
	role  string
	cmd   *exec.Cmd
	stdin *os.File // commands to the helper
	ctl   *os.File // replies from the helper
	lines *bufio.Scanner
	out   bytes.Buffer // the helper's stdout and stderr
}

// startHelper starts this test binary under unshare -n as TestHelperProcess
// in the given role. A cleanup stops it and reports its output if t failed.
func startHelper(t *testing.T, role, id string) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{role: role}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdin, h.ctl = inW, ctlR
	h.lines = bufio.NewScanner(ctlR)
	h.lines.Buffer(nil, 1<<20)
	h.cmd = exec.Command("unshare", "-n", "--", exe, "-test.run=^TestHelperProcess$", "-test.v", "-test.timeout=60s")
	h.cmd.Env = append(os.Environ(), envHelper+"="+role, envHelperID+"="+id)
	h.cmd.Stdin = inR
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	h.cmd.ExtraFiles = []*os.File{ctlW}
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = h.cmd.Start()
	inR.Close()
	ctlW.Close()
	if err != nil {
		inW.Close()
		ctlR.Close()
		t.Fatalf("start %s helper: %v", role, err)
	}
	t.Cleanup(func() {
		h.stdin.Close() // EOF: a helper still waiting for a command fails and exits
		done := make(chan error, 1)
		go func() { done <- h.cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(bound):
			h.cmd.Process.Kill()
			err = <-done
			t.Errorf("%s helper did not exit within %v; killed", role, bound)
		}
		h.ctl.Close()
		if err != nil {
			t.Errorf("%s helper: %v", role, err)
		}
		if t.Failed() {
			t.Logf("%s helper output:\n%s", role, h.out.String())
		}
	})
	return h
}

func (h *helper) pid() int { return h.cmd.Process.Pid }

func (h *helper) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := h.stdin.WriteString(cmd + "\n"); err != nil {
		t.Fatalf("send %q to %s helper: %v", cmd, h.role, err)
	}
}

// expect reads the helper's next reply, which must start with word, and
// returns the rest of it.
func (h *helper) expect(t *testing.T, word string) string {
	t.Helper()
	if err := h.ctl.SetReadDeadline(time.Now().Add(bound)); err != nil {
		t.Fatal(err)
	}
	if !h.lines.Scan() {
		t.Fatalf("%s helper: no %q reply: %v", h.role, word, h.lines.Err())
	}
	first, rest, _ := strings.Cut(h.lines.Text(), " ")
	if first != word {
		t.Fatalf("%s helper replied %q; want %q", h.role, h.lines.Text(), word)
	}
	return rest
}

// loopbackIfaces returns the loopback interface, which requireNetns has
// brought up.
func loopbackIfaces(t *testing.T) []net.Interface {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagLoopback != 0 {
			if ifi.Flags&net.FlagUp == 0 {
				t.Fatalf("interface %s is down", ifi.Name)
			}
			return []net.Interface{ifi}
		}
	}
	t.Fatal("no loopback interface")
	return nil
}

func findID(list []Instance, id string) (Instance, bool) {
	i := slices.IndexFunc(list, func(inst Instance) bool { return inst.ID == id })
	if i < 0 {
		return Instance{}, false
	}
	return list[i], true
}

// waitGoroutines waits, within bound, until there are no more goroutines
// than baseline. Close and Browse wait for the goroutines they started, but
// a goroutine that has told its WaitGroup it is done may still be on its
// way out. On failure it reports the goroutines of this package.
func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			var ours []string
			for g := range strings.SplitSeq(allStacks(), "\n\n") {
				if strings.Contains(g, "presence/mps/discovery.") && !strings.Contains(g, "discovery.waitGoroutines") {
					ours = append(ours, g)
				}
			}
			t.Fatalf("%d goroutines after %v; want at most %d. Goroutines in this package:\n%s",
				n, bound, baseline, strings.Join(ours, "\n\n"))
		}
		<-tick.C
	}
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestWatchLoopback checks that Watch reports an instance that appears and
// drops it once it stops answering.
func TestWatchLoopback(t *testing.T) {
	requireNetns(t)
	lo := loopbackIfaces(t)
	baseline := runtime.NumGoroutine()
	id := NewID()
	a, err := Advertise(AdvertiseConfig{ProxyPort: 1080, ID: id, Ifaces: lo, Host: "watch-test", IPs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatalf("Advertise: %v", err)
	}
	defer a.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan []Instance, 1)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, WatchConfig{
			Browse:    BrowseConfig{Ifaces: lo, Timeout: 500 * time.Millisecond},
			Interval:  500 * time.Millisecond,
			MaxMissed: 1,
		}, func(list []Instance) { updates <- list })
	}()
	waitUpdate := func(present bool) {
		t.Helper()
		timeout := time.After(bound)
		for {
			select {
			case list := <-updates:
				if _, ok := findID(list, id); ok == present {
					return
				}
			case err := <-done:
				t.Fatalf("Watch returned early: %v", err)
			case <-timeout:
				t.Fatalf("no update with the instance present=%v within %v", present, bound)
			}
		}
	}
	start := time.Now()
	waitUpdate(true)
	t.Logf("seen after %v", time.Since(start))
	a.Close()
	closed := time.Now()
	waitUpdate(false)
	t.Logf("dropped %v after Close", time.Since(closed))

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch = %v; want context.Canceled", err)
		}
	case <-time.After(bound):
		t.Fatalf("Watch did not return within %v of cancel", bound)
	}
	waitGoroutines(t, baseline)
}
