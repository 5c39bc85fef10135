package term

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/sol"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// End to end: the terminal attached to a real mps/sol session with a
// simulated device over a real TLS tunnel through the server.

const (
	ciraUser = "cira"
	ciraPass = "Cira-P@ss1"
	amtPass  = "Amt-P@ss1"
)

// tunnelDevice starts a server and one simulated device on amt, and
// returns an open SOL session to it with the device and a stop function
// that makes it vanish.
func tunnelDevice(t *testing.T, amt *amtsim.AMTConfig) (*sol.Session, *amtsim.Device, func()) {
	t.Helper()
	ca := vaulttest.CA(t, "127.0.0.1")
	srv, err := mps.New(mps.Config{
		TLS: tunnel.TLSConfig(ca.TLSCertificate(), false),
		Tunnel: tunnel.Config{Auth: func(_ context.Context, _ apf.UUID, user string, pw []byte) bool {
			return user == ciraUser && string(pw) == ciraPass
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	up := make(chan struct{})
	ev, _ := srv.Subscribe(100)
	go func() {
		var once sync.Once
		for x := range ev {
			if x.Kind == mps.EventConnected {
				once.Do(func() { close(up) })
			}
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	d, err := amtsim.New(amtsim.Config{
		UUID: amtsim.DeviceUUID(t.Name(), 0), Hostname: amtsim.DeviceHostname(0),
		User: ciraUser, Password: []byte(ciraPass), MPSAddr: addr.String(), RootCAs: roots,
		MaxVersion: tls.VersionTLS12, AMTPassword: []byte(amtPass), AMT: amt,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	select {
	case <-up:
	case <-time.After(60 * time.Second):
		t.Fatal("the device did not connect")
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer dcancel()
	ch, err := srv.Dial(dctx, d.UUID().String(), amtsim.PortRedirect)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sol.Open(dctx, ch, amtsim.DefaultAMTUser, amtPass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, d, stop
}

// waitText waits until the screen contains all of want.
func waitText(t *testing.T, tm *Terminal, want ...string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		txt := tm.Text()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(txt, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the screen lacks %q:\n%s", want, txt)
		}
	}
}

func typeText(tm *Terminal, s string) {
	for _, r := range s {
		tm.TypedRune(r)
	}
}

func key(tm *Terminal, n fyne.KeyName) { tm.TypedKey(&fyne.KeyEvent{Name: n}) }

// TestSessionShell: the device's shell appears in Text, typed keys reach
// the device and its echo comes back; Detach leaves the session open.
func TestSessionShell(t *testing.T) {
	test.NewTempApp(t)
	s, d, _ := tunnelDevice(t, nil)
	tm := New()
	tm.Attach(s)
	waitText(t, tm, "Presence simulated AMT serial console on sim-000000", "sim-000000$")
	typeText(tm, "hello")
	key(tm, fyne.KeyReturn)
	waitText(t, tm, "sim-000000$ hello", "you typed: hello")
	if got := string(d.SOLInput()); got != "hello\r" {
		t.Fatalf("the device received %q", got)
	}
	if err := tm.Detach(); err != nil {
		t.Fatalf("Detach = %v", err)
	}
	// The session outlives the terminal's attachment.
	if _, err := s.Write([]byte("x\r")); err != nil {
		t.Fatalf("Write after Detach: %v", err)
	}
}

// TestSessionBIOS: the simulator's BIOS screen is drawn from the live
// session, and arrows, Enter, typed keys and F10 work it.
func TestSessionBIOS(t *testing.T) {
	test.NewTempApp(t)
	s, _, _ := tunnelDevice(t, &amtsim.AMTConfig{SOLScreen: amtsim.SOLBIOS})
	tm := New()
	tm.Attach(s)
	defer tm.Detach()
	waitText(t, tm, "Setup Utility - Presence Simulated Systems", "┌────", "│  Boot Mode                   [UEFI]")
	// The paint ends with the cursor parked at the keys field.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		row, col, vis := tm.Cursor()
		if row == 19 && col == 9 && vis {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor at %d;%d; want parked at the keys field (19;9)", row, col)
		}
	}
	for range 4 {
		key(tm, fyne.KeyDown)
	}
	key(tm, fyne.KeyReturn)
	waitText(t, tm, "Boot Mode                   [Legacy]", "Boot Mode set to [Legacy].")
	key(tm, fyne.KeyUp)
	typeText(tm, "ab")
	waitText(t, tm, "Keys: ab")
	key(tm, fyne.KeyF10)
	waitText(t, tm, "Configuration saved. Exiting setup...")
}

// TestSessionDeviceGone: a device that vanishes ends the attachment by
// itself, and OnEnded hears why.
func TestSessionDeviceGone(t *testing.T) {
	test.NewTempApp(t)
	s, _, stop := tunnelDevice(t, nil)
	tm := New()
	ended := make(chan error, 1)
	tm.OnEnded = func(err error) { ended <- err }
	tm.Attach(s)
	waitText(t, tm, "sim-000000$")
	stop()
	select {
	case err := <-ended:
		if !errors.Is(err, sol.ErrDeviceGone) {
			t.Fatalf("OnEnded(%v); want ErrDeviceGone", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("OnEnded was not called")
	}
	if err := tm.Detach(); err != nil {
		t.Fatalf("Detach after the end = %v; want nil (nothing attached)", err)
	}
	waitText(t, tm, "sim-000000$") // the screen keeps the last output
}
