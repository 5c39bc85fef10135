//go:build linux

package discovery

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
)

// Environment variables between this test binary and its copies.
const (
	// envNetns is set in the copy of the test binary that reexecInNetns
	// runs under unshare -n.
	envNetns = "PRESENCE_DISCOVERY_NETNS"
	// envHelper makes TestHelperProcess act as one side of
	// TestTwoNamespaces: "advertise" or "browse".
	envHelper = "PRESENCE_DISCOVERY_HELPER"
	// envHelperID is the instance ID the helpers advertise and look for.
	envHelperID = "PRESENCE_DISCOVERY_HELPER_ID"
)

// privateNetns reports whether this process is in a network namespace of
// its own, judged by what it can see: no interface but loopback ones, or
// only those plus the ones listed in extra. It also returns the names seen.
func privateNetns(extra ...string) (bool, []string) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return false, []string{"error: " + err.Error()}
	}
	ok := true
	var names []string
	for _, ifi := range ifaces {
		names = append(names, ifi.Name)
		if ifi.Flags&net.FlagLoopback == 0 && !slices.Contains(extra, ifi.Name) {
			ok = false
		}
	}
	return ok, names
}

// canUnshare reports whether this process can create network namespaces
// and configure them: root, with unshare, nsenter and ip on PATH.
func canUnshare() bool {
	if os.Geteuid() != 0 {
		return false
	}
	for _, tool := range []string{"unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return false
		}
	}
	return exec.Command("unshare", "-n", "--", "true").Run() == nil
}

// reexecInNetns runs this test binary again, with the same arguments,
// inside a new network namespace (unshare -n), when this one is not
// private and we are allowed to, and returns its exit code with done set.
// The copy has only a loopback interface, so nothing it sends can leave
// the machine. scripts/test.sh already runs go test inside unshare -n, and
// then there is nothing to do.
func reexecInNetns() (code int, done bool) {
	if os.Getenv(envHelper) != "" || os.Getenv(envNetns) != "" {
		return 0, false
	}
	if ok, _ := privateNetns(); ok || !canUnshare() {
		return 0, false
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "discovery test: cannot re-run in a private network namespace:", err)
		return 1, true
	}
	cmd := exec.Command("unshare", append([]string{"-n", "--", exe}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envNetns+"=1")
	// If go test kills us (timeout), the copy goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), true
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "discovery test: unshare -n:", err)
		return 1, true
	}
	return 0, true
}

// requireNetns skips t unless this process is in a private network
// namespace (it fails t instead if it was re-executed to be in one), and
// brings the loopback interface up.
func requireNetns(t *testing.T) {
	t.Helper()
	if ok, names := privateNetns(); !ok {
		if os.Getenv(envNetns) != "" {
			t.Fatalf("re-executed under unshare -n, yet interfaces %q are visible", names)
		}
		t.Skipf("not in a private network namespace (interfaces %q): mDNS must not reach a real network; "+
			"run as root with unshare, nsenter and ip available, or through scripts/test.sh", names)
	}
	run(t, "ip", "link", "set", "lo", "up")
}

// run runs a command and fails t if it fails.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}
