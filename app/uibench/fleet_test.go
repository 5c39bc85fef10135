package uibench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
)

// The test harness: a real instance in this process and simulated devices
// in child processes.

const (
	ciraUser = instancetest.CIRAUser
	ciraPass = instancetest.CIRAPass

	// envFleet makes TestHelperFleet run a fleet. Only startFleet sets it,
	// in the environment of the processes it starts.
	envFleet = "PRESENCE_UIBENCH_FLEET"

	// devicesPerProc is the most devices one fleet process runs: one open
	// file each, far below a limit of 20,000, and 10,000 devices make four
	// processes, two per core of the load-test machine.
	devicesPerProc = 2500

	// handshakesPerProc caps each process's handshakes in flight (dial to
	// the last forward reply), as scripts/loadtest.sh does while ramping
	// up: the devices connect as fast as the server takes them, and the
	// server's accept queue never overflows into SYN retries.
	handshakesPerProc = 64

	// readyTimeout bounds a fleet process's start: exec, reading its
	// specification and building its devices.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds a fleet process's exit after its standard input
	// closes; then it is killed.
	stopTimeout = 20 * time.Second
	// procTimeout is the -test.timeout of a fleet process: it ends even if
	// this process neither stops nor kills it.
	procTimeout = 30 * time.Minute
)

// startInstance starts an instance on loopback as the desktop app starts
// its own: CIRA, proxy and API listeners, a real CA (for 127.0.0.1) and a
// CIRA account. It returns the root certificate the devices must trust in
// PEM, and stop, which shuts the instance down; a cleanup calls stop too.
func startInstance(tb testing.TB) (in *instance.Instance, rootPEM []byte, stop func()) {
	tb.Helper()
	in, ca := instancetest.Start(tb, nil)
	// Stopping 10,000 tunnels takes longer than instancetest allows.
	stop = sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := in.Shutdown(ctx); err != nil {
			tb.Errorf("instance Shutdown: %v", err)
		}
	})
	tb.Cleanup(stop)
	return in, ca.RootPEM(), stop
}

// fleetSpec is what a fleet process reads from its standard input, as one
// line of JSON: the CIRA password travels there, never in argv or the
// environment.
type fleetSpec struct {
	Addr          string // the CIRA listener
	RootPEM       []byte // the MPS root the devices trust
	User          string
	Password      string
	First         int // index of the first device; see amtsim.DeviceUUID
	Devices       int
	MaxHandshakes int
}

// fleet is simulated devices in child processes: copies of this test
// binary running TestHelperFleet, each with its own range of device
// indexes. Its methods are for the test's goroutine.
type fleet struct {
	procs  []*proc
	cancel context.CancelFunc // kills every process
	// started is set once every process is ready; until then, stop does
	// not report the processes' failures (startFleet's error does).
	started bool
	// Stop stops the devices and waits for the processes to exit. It is
	// idempotent; a cleanup calls it too.
	Stop func()
}

// proc is one fleet process.
type proc struct {
	name   string // its device range
	stdin  io.WriteCloser
	out    *output
	exited chan struct{} // closed when it has exited and err is set
	err    error
	killed bool // set by Stop before it kills the process
}

// startFleet starts n devices that connect to the CIRA listener at addr,
// in processes of at most devicesPerProc devices, and waits until every
// process has built its devices. They connect when Go is called. The error
// says why the fleet could not start, with what its processes printed.
func startFleet(tb testing.TB, addr string, rootPEM []byte, n int) (_ *fleet, err error) {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this test binary: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{cancel: cancel}
	f.Stop = sync.OnceFunc(func() { f.stop(tb) })
	tb.Cleanup(f.Stop)
	defer func() {
		if err != nil {
			f.Stop() // err says what went wrong
		}
	}()
	for first := 0; first < n; first += devicesPerProc {
		spec := fleetSpec{
			Addr: addr, RootPEM: rootPEM, User: ciraUser, Password: ciraPass,
			First: first, Devices: min(devicesPerProc, n-first), MaxHandshakes: handshakesPerProc,
		}
		p, err := startProc(ctx, exe, spec)
		if p != nil {
			f.procs = append(f.procs, p) // Stop waits for it
		}
		if err != nil {
			return nil, err
		}
	}
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	for _, p := range f.procs {
		select {
		case <-p.out.ready:
		case <-p.exited:
			return nil, fmt.Errorf("fleet process (devices %s) exited before it was ready: %v\n%s", p.name, p.err, p.out.text())
		case <-deadline.C:
			return nil, fmt.Errorf("fleet process (devices %s) not ready after %v\n%s", p.name, readyTimeout, p.out.text())
		}
	}
	f.started = true
	return f, nil
}

func startProc(ctx context.Context, exe string, spec fleetSpec) (*proc, error) {
	line, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestHelperFleet$", "-test.timeout="+procTimeout.String())
	cmd.Env = append(os.Environ(), envFleet+"=1")
	cmd.WaitDelay = 5 * time.Second // after a kill, do not wait for pipes held by grandchildren
	p := &proc{
		name:   fmt.Sprintf("%d-%d", spec.First, spec.First+spec.Devices-1),
		out:    &output{ready: make(chan struct{})},
		exited: make(chan struct{}),
	}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a fleet process: %w", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	// A few kilobytes: the pipe holds them until the process reads them.
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		return p, fmt.Errorf("send the fleet process its devices: %w", err)
	}
	return p, nil
}

// Go lets the devices connect.
func (f *fleet) Go() error {
	for _, p := range f.procs {
		if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
			return fmt.Errorf("fleet process (devices %s): %w\n%s", p.name, err, p.out.text())
		}
	}
	return nil
}

// Err returns an error if a fleet process has exited before Stop.
func (f *fleet) Err() error {
	for _, p := range f.procs {
		select {
		case <-p.exited:
			return fmt.Errorf("fleet process (devices %s) exited: %v\n%s", p.name, p.err, p.out.text())
		default:
		}
	}
	return nil
}

// stop closes the processes' standard input, which stops their devices,
// and waits for them to exit; after stopTimeout it kills the rest. A
// process that failed on its own is a test error.
func (f *fleet) stop(tb testing.TB) {
	for _, p := range f.procs {
		p.stdin.Close()
	}
	deadline := time.NewTimer(stopTimeout)
	defer deadline.Stop()
	expired := false
	for _, p := range f.procs {
		if !expired {
			select {
			case <-p.exited:
				continue
			case <-deadline.C:
				expired = true
			}
		}
		select {
		case <-p.exited:
		default:
			p.killed = true
		}
	}
	f.cancel() // kills the processes still running
	for _, p := range f.procs {
		<-p.exited // bounded: killed, then WaitDelay
		switch {
		case p.killed:
			tb.Logf("fleet process (devices %s) did not stop within %v; killed", p.name, stopTimeout)
		case p.err != nil && f.started:
			tb.Errorf("fleet process (devices %s): %v\n%s", p.name, p.err, p.out.text())
		}
	}
}

// Summary adds up the processes' final summaries (after Stop); the
// handshake latency is the worst process's.
func (f *fleet) Summary() amtsim.Summary {
	var s amtsim.Summary
	s.Failed = map[string]int64{}
	for _, p := range f.procs {
		ps, ok := p.out.summary()
		if !ok {
			continue
		}
		s.Devices += ps.Devices
		s.Started += ps.Started
		s.Attempts += ps.Attempts
		s.Handshakes += ps.Handshakes
		for k, v := range ps.Failed {
			s.Failed[k] += v
		}
		s.HandshakeMS.P50 = max(s.HandshakeMS.P50, ps.HandshakeMS.P50)
		s.HandshakeMS.P99 = max(s.HandshakeMS.P99, ps.HandshakeMS.P99)
		s.HandshakeMS.Max = max(s.HandshakeMS.Max, ps.HandshakeMS.Max)
	}
	return s
}

// describe is a one-line account of a fleet summary for logs.
func describe(s amtsim.Summary) string {
	failed := "none"
	if len(s.Failed) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(s.Failed)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.Failed[k]))
		}
		failed = strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%d devices, %d connection attempts, %d handshakes (worst process: p50 %.0f ms, p99 %.0f ms, max %.0f ms), failed: %s",
		s.Devices, s.Attempts, s.Handshakes, s.HandshakeMS.P50, s.HandshakeMS.P99, s.HandshakeMS.Max, failed)
}

// Protocol lines a fleet process prints on its standard output.
const (
	lineReady   = "uibench: ready"
	lineSummary = "uibench: summary "
)

// output is a fleet process's standard output and error. It acts on the
// protocol lines and keeps the first outputLimit bytes of the rest for
// failure messages. It is safe for concurrent use.
type output struct {
	ready     chan struct{} // closed on lineReady
	mu        sync.Mutex
	partial   []byte // the last line, until its newline
	kept      []byte
	readyOnce sync.Once
	sum       *amtsim.Summary
}

const outputLimit = 64 << 10

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.line(string(o.partial[:i]))
		o.partial = o.partial[i+1:]
	}
	if len(o.partial) > outputLimit { // a line that never ends
		o.keep(string(o.partial))
		o.partial = o.partial[:0]
	}
	return len(p), nil
}

func (o *output) line(s string) {
	switch {
	case s == lineReady:
		o.readyOnce.Do(func() { close(o.ready) })
	case strings.HasPrefix(s, lineSummary):
		var sum amtsim.Summary
		if err := json.Unmarshal([]byte(strings.TrimPrefix(s, lineSummary)), &sum); err != nil {
			o.keep(fmt.Sprintf("(bad summary: %v) %s", err, s))
			return
		}
		o.sum = &sum
	default:
		o.keep(s)
	}
}

func (o *output) keep(s string) {
	if room := outputLimit - len(o.kept); room > 0 {
		o.kept = append(o.kept, s[:min(len(s), room)]...)
		o.kept = append(o.kept, '\n')
	}
}

// text returns what the process printed, but for the protocol lines.
func (o *output) text() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.kept) + string(o.partial)
}

func (o *output) summary() (amtsim.Summary, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sum == nil {
		return amtsim.Summary{}, false
	}
	return *o.sum, true
}

// TestHelperFleet is a fleet process when startFleet starts it; otherwise
// it skips. It reads its fleetSpec from standard input, builds the devices,
// says lineReady, waits for "go", and keeps the devices connected until
// its standard input closes; then it prints lineSummary with the fleet's
// summary.
func TestHelperFleet(t *testing.T) {
	if os.Getenv(envFleet) != "1" {
		t.Skip("a fleet process of the tests in this package; they start it")
	}
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		t.Fatalf("read the fleet specification: %v", err)
	}
	var spec fleetSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		t.Fatalf("fleet specification: %v", err)
	}
	// The Go runtime raises the soft limit to the hard limit at startup on
	// Unix; amtsim.NewFleet refuses a fleet that would not fit.
	raiseOpenFiles()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(spec.RootPEM) {
		t.Fatal("the fleet specification holds no root certificate")
	}
	f, err := amtsim.NewFleet(amtsim.FleetConfig{
		Device: amtsim.Config{
			MPSAddr: spec.Addr, RootCAs: roots, User: spec.User, Password: []byte(spec.Password),
			MaxVersion: tls.VersionTLS12, // AMT 12 and later
		},
		Devices: spec.Devices, First: spec.First, Seed: "uibench",
		MaxHandshakes: spec.MaxHandshakes,
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(lineReady)
	cmd, err := in.ReadString('\n')
	if err != nil || cmd != "go\n" {
		t.Logf("no go from the test (%q, %v): stopping", cmd, err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdinClosed := make(chan struct{})
	go func() {
		defer close(stdinClosed)
		io.Copy(io.Discard, in) // until EOF: the test is done with us, or gone
		cancel()
	}()
	sum := f.Run(ctx) // until ctx ends
	<-stdinClosed
	b, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(lineSummary + string(b))
}

// requireFleet skips tb when the fleet could not start (it should not:
// see err), except under CI, where it fails.
func requireFleet(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("the simulated fleet could not start: %v", err)
	}
	tb.Skipf("skipped: the simulated fleet could not start: %v", err)
}
