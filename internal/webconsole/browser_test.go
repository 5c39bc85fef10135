package webconsole_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The browser side of the tests: Debian's Chromium, the toolkit's bundle,
// and what the DevTools protocol shows of the page's websocket.

const (
	chromiumPath = "/usr/bin/chromium" // Debian's package (scripts/setup.sh)
	// uitoolkitVersion is the version scripts/uitoolkit.sh fetches.
	uitoolkitVersion = "3.3.12"
	// browserLife bounds everything a browser does in one test, its start
	// included: the allocator's context ends then, and Chromium is killed.
	browserLife = 2 * time.Minute
)

// required reports whether a missing browser or bundle fails the tests
// rather than skipping them.
func required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("PRESENCE_REQUIRE_CHROMIUM") == "1"
}

// missing skips the test, or fails it when the browser test is required.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if required() {
		t.Fatalf("%s (CI=true or PRESENCE_REQUIRE_CHROMIUM=1: the browser test must run)", msg)
	}
	t.Skip(msg)
}

// uitoolkitDir finds the unpacked toolkit: $PRESENCE_UITOOLKIT, else where
// scripts/uitoolkit.sh puts it ($PRESENCE_CACHE or ~/.cache/presence,
// ui-toolkit/<version>). It checks that the bundle is there and that the
// package is a 3.3.x of the toolkit.
func uitoolkitDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PRESENCE_UITOOLKIT")
	if dir == "" {
		cache := os.Getenv("PRESENCE_CACHE")
		if cache == "" {
			if c, err := os.UserCacheDir(); err == nil {
				cache = filepath.Join(c, "presence")
			}
		}
		dir = filepath.Join(cache, "ui-toolkit", uitoolkitVersion)
	}
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		missing(t, "the ui-toolkit bundle is not in %s: run bash scripts/uitoolkit.sh (scripts/test.sh does, and sets PRESENCE_UITOOLKIT)", dir)
	}
	var pkg struct{ Name, Version string }
	if err := json.Unmarshal(b, &pkg); err != nil || pkg.Name != "@device-management-toolkit/ui-toolkit" || !strings.HasPrefix(pkg.Version, "3.3.") {
		t.Fatalf("%s holds %q %q, not @device-management-toolkit/ui-toolkit 3.3.x (%v): run bash scripts/uitoolkit.sh", dir, pkg.Name, pkg.Version, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bundles", "core.bundle.js")); err != nil {
		t.Fatalf("ui-toolkit %s has no bundle: %v (run bash scripts/uitoolkit.sh)", pkg.Version, err)
	}
	return dir
}

// capped keeps the first max bytes written to it; Chromium's output is
// shown when a test fails.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// startBrowser starts a headless Chromium for the test and returns its
// first context (tabs are opened from it with chromedp.NewContext). The
// browser is closed, and its processes are checked gone, when the test
// ends.
//
// The flags are those of amt-toolbox.md §3 and ecosystem.md on top of
// chromedp's defaults (which already have --headless, --no-first-run,
// --disable-background-networking, --disable-sync and
// --disable-dev-shm-usage):
//   - --no-sandbox only when we are root, which is how scripts/test.sh
//     runs the tests (in a network namespace made by unshare -n): Chromium
//     refuses to start as root with its sandbox on ("Running as root
//     without --no-sandbox is not supported"). Inside the namespace nothing
//     else is needed; loopback is all the page reaches.
//   - --disable-gpu: no GPU process on a machine without a display.
//   - --disable-component-update: no component downloads at start.
//
// The user data directory is a fresh one that chromedp makes for this
// browser alone (--user-data-dir in /tmp) and removes when the browser
// ends, after killing any of Chromium's child processes that outlive it;
// XDG_CONFIG_HOME and XDG_CACHE_HOME point into the test's own directory,
// so nothing lands in $HOME. DevTools runs over a pipe, not a port.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		missing(t, "%s is not installed: run bash scripts/setup.sh (it installs Debian's chromium)", chromiumPath)
	}
	home := t.TempDir()
	out := &capped{max: 64 << 10}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Env("XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_CACHE_HOME="+filepath.Join(home, "cache")),
		chromedp.CombinedOutput(out),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	life, lifeCancel := context.WithTimeout(context.Background(), browserLife)
	actx, acancel := chromedp.NewExecAllocator(life, opts...)
	bctx, _ := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	// The first call starts the browser; it must not be given a shorter
	// context (the browser would die with it), so browserLife bounds it.
	if err := chromedp.Do(bctx); err != nil {
		acancel()
		lifeCancel()
		t.Fatalf("starting %s: %v\nits output:\n%s", chromiumPath, err, out)
	}
	c := chromedp.FromContext(bctx)
	pid := c.Browser.Process().Pid
	dataDir := userDataDir(pid)
	t.Logf("chromium pid %d, user data %s", pid, dataDir)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(bctx, 15*time.Second)
		if err := chromedp.Cancel(cctx); err != nil {
			t.Logf("closing chromium: %v", err)
		}
		cancel()
		acancel() // waits for the allocator: the process and its directory
		lifeCancel()
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && !zombie(pid) {
			t.Errorf("chromium %d still runs after the test", pid)
		}
		if dataDir != "" {
			if left := processesUsing(dataDir); len(left) > 0 {
				t.Errorf("chromium processes %v outlived the browser", left)
			}
			if _, err := os.Stat(dataDir); err == nil {
				t.Errorf("chromium's user data directory %s is still there", dataDir)
			}
		}
		if t.Failed() {
			t.Logf("chromium's output (without its complaints that there is no D-Bus):\n%s", withoutDBus(out.String()))
		}
	})
	return bctx
}

// withoutDBus drops Chromium's D-Bus errors (there is no bus in the test's
// namespace, and nothing needs one) from its output.
func withoutDBus(out string) string {
	var b strings.Builder
	for l := range strings.Lines(out) {
		if !strings.Contains(l, ":ERROR:dbus/") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// userDataDir reads --user-data-dir from a process's command line.
func userDataDir(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	for a := range bytes.SplitSeq(b, []byte{0}) {
		if d, ok := bytes.CutPrefix(a, []byte("--user-data-dir=")); ok {
			return string(d)
		}
	}
	return ""
}

// processesUsing lists the processes started with dir as their user data
// directory.
func processesUsing(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte("--user-data-dir="+dir+"\x00")) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// zombie reports whether pid has exited and only waits to be reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, ok := bytes.Cut(b, []byte(") "))
	return ok && len(rest) > 0 && rest[0] == 'Z'
}

// frame is one websocket message the page sent or received, as DevTools
// reports it.
type frame struct {
	at      float64 // DevTools' monotonic clock, seconds
	seen    time.Time
	payload []byte
}

// wsLog collects what DevTools reports about a tab: its websockets, their
// handshake answers and frames, and the page's console and exceptions.
// The listener fills it on chromedp's reading goroutine; the test reads it
// under the lock.
type wsLog struct {
	mu         sync.Mutex
	urls       []string
	handshakes []*network.WebSocketResponse
	sent       []frame
	received   []frame
	closed     int
	console    []string // "type: args"
	exceptions []string
}

func (l *wsLog) listen(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	switch ev := ev.(type) {
	case *network.EventWebSocketCreated:
		l.urls = append(l.urls, ev.URL)
	case *network.EventWebSocketHandshakeResponseReceived:
		l.handshakes = append(l.handshakes, ev.Response)
	case *network.EventWebSocketFrameSent:
		l.sent = append(l.sent, frame{float64(ev.Timestamp), now, bytes.Clone(ev.Response.PayloadData)})
	case *network.EventWebSocketFrameReceived:
		l.received = append(l.received, frame{float64(ev.Timestamp), now, bytes.Clone(ev.Response.PayloadData)})
	case *network.EventWebSocketClosed:
		l.closed++
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		l.console = append(l.console, string(ev.Type)+": "+strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		l.exceptions = append(l.exceptions, msg)
	}
}

// sentOf returns the frames the page sent whose first byte is code.
func (l *wsLog) sentOf(code byte) []frame {
	l.mu.Lock()
	defer l.mu.Unlock()
	return framesOf(l.sent, code)
}

func (l *wsLog) receivedOf(code byte) []frame {
	l.mu.Lock()
	defer l.mu.Unlock()
	return framesOf(l.received, code)
}

func framesOf(fs []frame, code byte) []frame {
	var out []frame
	for _, f := range fs {
		if len(f.payload) > 0 && f.payload[0] == code {
			out = append(out, f)
		}
	}
	return out
}

func (l *wsLog) snapshot() (sent int, last time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.sent); n > 0 {
		return n, l.sent[n-1].seen
	}
	return 0, time.Time{}
}

// dump describes the log for a failure message.
func (l *wsLog) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "websockets %d, handshakes %d, frames sent %d, received %d, closed %d\n",
		len(l.urls), len(l.handshakes), len(l.sent), len(l.received), l.closed)
	for _, f := range l.sent {
		fmt.Fprintf(&b, "  sent %.3f 0x%02X (%d bytes)\n", f.at, f.payload[0], len(f.payload))
	}
	for _, c := range l.console {
		fmt.Fprintf(&b, "  console %s\n", c)
	}
	for _, e := range l.exceptions {
		fmt.Fprintf(&b, "  exception %s\n", e)
	}
	return b.String()
}

// header looks a header up in a DevTools header map, ignoring case.
func header(h network.Headers, name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, ok := v.(string)
			return s, ok
		}
	}
	return "", false
}
