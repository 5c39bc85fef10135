package webconsole_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/vault"
)

// The stored AMT account the relay logs in with. It is not amtsim's default
// user ("admin"), so a device that accepts the login has been sent this
// name.
const (
	amtUser = "webconsole-admin"
	amtPass = "Web-C0nsole-P@ss"
)

// step bounds each wait of the test.
const step = 15 * time.Second

func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		// Everything the tests started (instance, device, page server,
		// browser and their readers) has an owner that waits for it.
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "webconsole: %d goroutines left behind (%d before the tests):\n%s\n",
				n-before, before, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// env is a running instance (the product's engine, every listener on a free
// loopback port) with one simulated device connected over a real TLS tunnel,
// and a history store.
type env struct {
	in   *instance.Instance
	dev  *amtsim.Device
	hist *history.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	h, err := history.Open(filepath.Join(t.TempDir(), "history.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() }) // after the instance's shutdown (cleanups run last-in first-out)
	in, ca := instancetest.Start(t, func(c *instance.Config) {
		c.History = h
		// The vault's one AMT account, in place of instancetest's "admin".
		ctx := context.Background()
		if err := c.Accounts.Remove(ctx, vault.KindAMT, instancetest.AMTUser); err != nil {
			t.Fatal(err)
		}
		if err := c.Accounts.Add(ctx, vault.KindAMT, amtUser, vault.Secret(amtPass)); err != nil {
			t.Fatal(err)
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	d, err := amtsim.New(amtsim.Config{
		UUID: amtsim.DeviceUUID(t.Name(), 0), Hostname: "webconsole-sim",
		User: instancetest.CIRAUser, Password: []byte(instancetest.CIRAPass),
		MPSAddr: in.CIRAAddr.String(), RootCAs: roots, MaxVersion: tls.VersionTLS12,
		AMTUser: amtUser, AMTPassword: []byte(amtPass),
	})
	if err != nil {
		t.Fatal(err)
	}
	instancetest.RunLoop(t, d) // reconnecting whenever its tunnel ends
	e := &env{in: in, dev: d, hist: h}
	waitFor(t, step, "the device's tunnel", func() bool {
		ds := in.Server.Devices()
		return len(ds) == 1 && ds[0].Info.Ready
	})
	return e
}

// waitFor polls cond every 10 ms until it holds, for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// tab opens a tab with a DevTools log of its websockets and console.
func tab(t *testing.T, browser context.Context) (context.Context, *wsLog) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	log := &wsLog{}
	// Listen opens the tab, with Runtime and Network enabled (chromedp
	// enables them on every target it attaches), before the page loads.
	if err := chromedp.Listen(ctx, log.listen); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return ctx, log
}

// run runs actions on the tab, bounded by step.
func run(t *testing.T, ctx context.Context, what string, log *wsLog, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v\npage state: %s\n%s", what, err, pageState(ctx), log.dump())
	}
}

// pageSOL is window.sol of the test page.
type pageSOL struct {
	State       int    `json:"state"`
	States      []int  `json:"states"`
	Text        string `json:"text"`
	Starts      int    `json:"starts"`
	Errors      int    `json:"errors"`
	TokenEchoed bool   `json:"tokenEchoed"`
	Thrown      string `json:"thrown"`
}

func readSOL(t *testing.T, ctx context.Context) pageSOL {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Evaluate[pageSOL](`window.sol`))
	if err != nil {
		t.Fatalf("reading window.sol: %v", err)
	}
	return s
}

// pageState describes window.sol for failure messages (never the token).
func pageState(ctx context.Context) string {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Evaluate[pageSOL](`window.sol`))
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return fmt.Sprintf("state %d, states %v, errors %d, thrown %q, text %q", s.State, s.States, s.Errors, s.Thrown, s.Text)
}

// termText is the SOL text the page shows, read from its DOM.
func termText(t *testing.T, ctx context.Context) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Evaluate[string](`document.getElementById("term").textContent`))
	if err != nil {
		t.Fatalf("reading the page's terminal: %v", err)
	}
	return s
}

// waitText waits until the page's terminal shows want.
func waitText(t *testing.T, ctx context.Context, log *wsLog, want string) {
	t.Helper()
	run(t, ctx, fmt.Sprintf("waiting for %q on the page", want), log,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.PollFunction[bool](`(want) => document.getElementById("term").textContent.includes(want)`,
				chromedp.WithPollingArgs(want), chromedp.WithPollingInterval(20*time.Millisecond),
				chromedp.WithPollingTimeout(step))(ctx, tg)
			return err
		}))
	if got := termText(t, ctx); !strings.Contains(got, want) {
		t.Fatalf("the page shows %q, without %q", got, want)
	}
}

// relaySession returns the one running session of the instance, a relay.
func relaySession(t *testing.T, e *env) proxy.SessionInfo {
	t.Helper()
	ss := e.in.Sessions().List()
	if len(ss) != 1 {
		t.Fatalf("%d sessions running, want the page's relay: %+v", len(ss), ss)
	}
	return ss[0]
}

// Intel's ui-toolkit, in a real Chromium, runs Serial-over-LAN to a
// simulated device through Presence's relay, with the AMT login left to
// Presence: the page reaches state 3, shows the device's SOL text, and its
// keystrokes reach the device; the device got the stored AMT user; the
// toolkit's 0x2B keepalives flow every 2 s through the relay; the session is
// recorded as a relay and ends, with its reason, when the page closes.
func TestUIToolkitSOLThroughRelay(t *testing.T) {
	bundle := uitoolkitDir(t)
	browser := startBrowser(t)
	e := newEnv(t)
	guid := e.dev.UUID().String()
	server := "ws://" + e.in.APIAddr.String() + "/relay"
	events, unsubscribe := e.in.Sessions().Subscribe(64)
	defer unsubscribe()

	t.Run("SOL", func(t *testing.T) {
		url := servePage(t, bundle, pageConfig{Host: guid, Token: e.in.Token(), Server: server})
		ctx, log := tab(t, browser)
		run(t, ctx, "loading the page", log, chromedp.Navigate(url))
		run(t, ctx, "waiting for state 3", log, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			// 0 is where the toolkit's stop() leaves it.
			_, err := chromedp.Poll[bool](`window.sol.state === 3 || window.sol.state === 0 || window.sol.thrown !== ""`,
				chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(step))(ctx, tg)
			return err
		}))
		s := readSOL(t, ctx)
		if s.Thrown != "" || s.State != 3 {
			t.Fatalf("the redirector did not reach state 3: %s\n%s", pageState(ctx), log.dump())
		}
		// The toolkit's states: 1 started, 2 socket open, 3 SOL running.
		if !slices.Equal(s.States, []int{1, 2, 3}) {
			t.Errorf("states %v, want [1 2 3]", s.States)
		}

		// The URL the toolkit built (clean because server is passed), and
		// the 101 answer naming the token, the only subprotocol offered.
		log.mu.Lock()
		urls, hs := slices.Clone(log.urls), slices.Clone(log.handshakes)
		log.mu.Unlock()
		wantURL := server + "/webrelay.ashx?p=2&host=" + guid + "&port=16994&tls=0&tls1only=0&mode=sol"
		if len(urls) != 1 || urls[0] != wantURL {
			t.Errorf("websocket URLs %q, want [%q]", urls, wantURL)
		}
		if len(hs) != 1 || hs[0].Status != 101 {
			t.Fatalf("handshake answers %+v, want one 101", hs)
		}
		if p, _ := header(hs[0].Headers, "Sec-WebSocket-Protocol"); p != e.in.Token() {
			t.Errorf("the 101 answer's Sec-WebSocket-Protocol is not the token (%d characters, the token has %d)", len(p), len(e.in.Token()))
		}
		if !s.TokenEchoed {
			t.Error("the page's WebSocket.protocol is not the token")
		}

		// SOL text from the device appears on the page.
		waitText(t, ctx, log, "Presence simulated AMT serial console on webconsole-sim")
		waitText(t, ctx, log, "webconsole-sim$ ")

		// Keys sent with the redirector's send() reach the device, whose
		// shell answers on the page.
		run(t, ctx, "send()", log, chromedp.Evaluate[chromedp.Void](`window.redirector.send("status\r")`))
		wctx, cancel := context.WithTimeout(context.Background(), step)
		defer cancel()
		if err := e.dev.Redirection().WaitSOLInput(wctx, []byte("status\r")); err != nil {
			t.Fatalf("the device did not get the keys sent with send(): it has %q (%v)", e.dev.SOLInput(), err)
		}
		waitText(t, ctx, log, "you typed: status")

		// Keys typed on the page (Chromium's own key events, through the
		// page's keydown handler and send()) reach the device too.
		run(t, ctx, "typing", log, chromedp.Focus(chromedp.ID("term")), chromedp.KeyEvent("uptime -p\r"))
		if err := e.dev.Redirection().WaitSOLInput(wctx, []byte("uptime -p\r")); err != nil {
			t.Fatalf("the device did not get the typed keys: it has %q (%v)", e.dev.SOLInput(), err)
		}
		waitText(t, ctx, log, "you typed: uptime -p")

		// The device was logged in with the stored AMT account: its audit
		// log records the SOL session under that user (AMT's redirection
		// manager, app 18, event 4 "session opened"), and no failed login
		// (security admin, app 16, event 5), so the browser's empty name
		// never reached it.
		var opened []string
		for _, r := range e.dev.Platform().AuditRecords() {
			switch {
			case r.AuditAppID == 18 && r.EventID == 4:
				opened = append(opened, r.Initiator)
			case r.AuditAppID == 16 && r.EventID == 5:
				t.Errorf("the device recorded a failed login of %q", r.Initiator)
			}
		}
		if !slices.Equal(opened, []string{amtUser}) {
			t.Errorf("SOL sessions opened on the device by %q, want [%q]", opened, amtUser)
		}

		// The session is a relay of the page's, to the device's port 16994.
		rs := relaySession(t, e)
		if rs.Kind != proxy.KindRelay || rs.Device != guid || rs.Port != 16994 || !strings.HasPrefix(rs.Console, "127.0.0.1:") {
			t.Errorf("session %+v, want a relay of the device's 16994 from loopback", rs)
		}

		// Keepalives: the toolkit sends 0x2B every 2 s (DevTools sees the
		// frames leave the page), and each reaches the device through the
		// relay, which counts 8 bytes to the device for each and nothing
		// else while the page is idle.
		k0, b0 := quietCounts(t, e, log, rs.ID)
		waitFor(t, 10*time.Second, "three more keepalives", func() bool {
			return len(log.sentOf(0x2B)) >= k0+3
		})
		k1, b1 := quietCounts(t, e, log, rs.ID)
		if b1-b0 != int64(8*(k1-k0)) {
			t.Errorf("%d keepalives left the page, and %d bytes reached the device meanwhile, want %d", k1-k0, b1-b0, 8*(k1-k0))
		}
		ka := log.sentOf(0x2B)
		for i := 1; i < len(ka); i++ {
			if d := ka[i].at - ka[i-1].at; d < 1.5 || d > 3 {
				t.Errorf("keepalives %d and %d are %.2f s apart, want about 2", i-1, i, d)
			}
			if len(ka[i].payload) != 8 {
				t.Errorf("keepalive of %d bytes, want 8", len(ka[i].payload))
			}
		}
		// The device's own heartbeats reach the page, which keeps going.
		if n := len(log.receivedOf(0x2B)); n == 0 {
			t.Error("no 0x2B heartbeat of the device reached the page")
		}
		if s := readSOL(t, ctx); s.State != 3 || s.Errors != 0 {
			t.Errorf("after the keepalives: %s", pageState(ctx))
		}
		log.mu.Lock()
		for _, c := range log.console {
			if strings.HasPrefix(c, "error") {
				t.Errorf("the page logged %s", c)
			}
		}
		for _, x := range log.exceptions {
			t.Errorf("the page threw %s", x)
		}
		log.mu.Unlock()
		var gaps []string
		for i := 1; i < len(ka); i++ {
			gaps = append(gaps, fmt.Sprintf("%.3f s", ka[i].at-ka[i-1].at))
		}
		t.Logf("%d keepalives sent (%s apart), %d device heartbeats received", len(ka), strings.Join(gaps, ", "), len(log.receivedOf(0x2B)))

		// Closing the page ends the session, with its reason, in the
		// table's events and in the history.
		cctx, ccancel := context.WithTimeout(ctx, step)
		defer ccancel()
		if err := chromedp.Cancel(cctx); err != nil {
			t.Fatalf("closing the tab: %v", err)
		}
		end := waitEnded(t, events, rs.ID)
		if end.Kind != proxy.KindRelay || end.EndReason != proxy.EndConsole || end.BytesFromDevice == 0 || end.BytesToDevice == 0 || end.End.IsZero() {
			t.Errorf("ended session %+v, want a relay closed by the console, with bytes both ways", end)
		}
		var recs []history.SessionRecord
		waitFor(t, step, "the session in the history", func() bool {
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.hist.Flush(fctx); err != nil {
				t.Fatal(err)
			}
			recs, _ = e.hist.Sessions(history.Filter{Device: guid})
			return len(recs) == 1 && !recs[0].End.IsZero()
		})
		if r := recs[0]; r.Kind != proxy.KindRelay || r.Port != 16994 || r.EndReason != proxy.EndConsole || r.BytesFromDevice == 0 {
			t.Errorf("history record %+v, want the relay, ended by the console", r)
		}
	})

	// A page whose token is wrong is refused before anything reaches the
	// device: the handshake fails, the toolkit stops (state 0), and no
	// session begins.
	t.Run("WrongToken", func(t *testing.T) {
		waitFor(t, step, "the device's SOL slot free", func() bool { return len(e.in.Sessions().List()) == 0 })
		before, input := e.in.Sessions().Stats().Total, len(e.dev.SOLInput())
		url := servePage(t, bundle, pageConfig{Host: guid, Token: strings.Repeat("0", len(e.in.Token())), Server: server})
		ctx, log := tab(t, browser)
		run(t, ctx, "loading the page", log, chromedp.Navigate(url))
		run(t, ctx, "waiting for state 0", log, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](`window.sol.state === 0 || window.sol.thrown !== ""`,
				chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(step))(ctx, tg)
			return err
		}))
		s := readSOL(t, ctx)
		if slices.Contains(s.States, 3) || s.Text != "" || s.Thrown != "" {
			t.Errorf("with a wrong token: %s", pageState(ctx))
		}
		log.mu.Lock()
		for _, h := range log.handshakes {
			if h.Status == 101 {
				t.Error("the relay accepted a wrong token")
			}
		}
		log.mu.Unlock()
		if st := e.in.Sessions().Stats(); st.Total != before || len(e.dev.SOLInput()) != input {
			t.Errorf("a session began (%d, was %d) or the device got keys", st.Total, before)
		}
	})
}

// quietCounts waits for a moment between keepalives (the last frame left
// the page 200 ms to 1.5 s ago) and returns how many keepalives the page
// has sent and how many bytes the relay has sent to the device.
func quietCounts(t *testing.T, e *env, log *wsLog, id uint64) (keepalives int, toDevice int64) {
	t.Helper()
	waitFor(t, step, "a quiet moment between keepalives", func() bool {
		n, last := log.snapshot()
		since := time.Since(last)
		if n == 0 || since < 200*time.Millisecond || since > 1500*time.Millisecond {
			return false
		}
		s, ok := e.in.Sessions().Get(id)
		if !ok {
			t.Fatal("the relay session ended")
		}
		keepalives, toDevice = len(log.sentOf(0x2B)), s.BytesToDevice
		m, _ := log.snapshot()
		return m == n // nothing left the page while we looked
	})
	return keepalives, toDevice
}

// waitEnded waits for the table's event of session id's end.
func waitEnded(t *testing.T, events <-chan proxy.SessionEvent, id uint64) proxy.SessionInfo {
	t.Helper()
	timeout := time.After(step)
	for {
		select {
		case ev := <-events:
			if ev.Ended && ev.Session.ID == id {
				return ev.Session
			}
		case <-timeout:
			t.Fatalf("session %d did not end within %v of the page closing", id, step)
		}
	}
}
