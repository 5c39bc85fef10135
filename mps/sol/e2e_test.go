package sol_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/amtsim/simenv"
	"github.com/presence-mps/presence/mps/redir"
	"github.com/presence-mps/presence/mps/sol"
	"github.com/presence-mps/presence/mps/wsman"
)

// End to end: the real server over real TLS on 127.0.0.1, simulated AMT
// devices, and sessions opened on APF channels to port 16994 through the
// tunnels.

const amtPass = simenv.AMTPass

// env is simenv's server and devices.
type env struct {
	*simenv.Env
	t testing.TB
}

func newEnv(t testing.TB) *env { return &env{simenv.New(t), t} }

// device starts simulated device i on amt and waits for its tunnel; stop
// ends it and waits for it.
func (e *env) device(i int, amt *amtsim.AMTConfig) (*amtsim.Device, func()) {
	e.t.Helper()
	return e.Device(i, func(c *amtsim.Config) { c.AMT = amt })
}

// dial opens a channel to the device's redirection port.
func (e *env) dial(d *amtsim.Device) net.Conn {
	e.t.Helper()
	c, err := e.Srv.Dial(ctxT(e.t), d.UUID().String(), amtsim.PortRedirect)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// open opens a session on the device with password pw.
func (e *env) open(d *amtsim.Device, pw string, opts ...sol.Option) (*sol.Session, error) {
	return sol.Open(ctxT(e.t), e.dial(d), amtsim.DefaultAMTUser, pw, opts...)
}

func ctxT(t testing.TB) context.Context { return simenv.Ctx(t) }

// readUntil reads the session's output until it contains want.
func readUntil(t *testing.T, s *sol.Session, want string) string {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer s.SetReadDeadline(time.Time{})
	var got []byte
	buf := make([]byte, 100)
	for !bytes.Contains(got, []byte(want)) {
		n, err := s.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("Read: %v after %q; want %q", err, got, want)
		}
	}
	return string(got)
}

// audit returns the event IDs of the device's audit records of app.
func audit(d *amtsim.Device, app uint16) []uint16 {
	var ev []uint16
	for _, r := range d.Platform().AuditRecords() {
		if r.AuditAppID == app {
			ev = append(ev, r.EventID)
		}
	}
	return ev
}

// Audit applications of the simulator's records (AMT's values).
const (
	auditSecurityAdmin = 16 // event 5: a login with invalid credentials
	auditRedirection   = 18 // events 4 and 5: SOL opened, closed
)

// TestShellThroughTunnel: the shell's banner arrives, keystrokes reach the
// host and its echo comes back, and Close ends the session on the device
// so that the next one can start.
func TestShellThroughTunnel(t *testing.T) {
	e := newEnv(t)
	d, _ := e.device(0, nil)
	s, err := e.open(d, amtPass)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if in := s.Info(); in.Auth != redir.AuthDigest || in.ProtocolMajor != 1 || in.FWMajor != 11 || in.OEM != 343 {
		t.Errorf("Info = %+v; want digest (type 4) with AMT 11 of Intel", in)
	}
	readUntil(t, s, "Presence simulated AMT serial console on sim-000000\r\nsim-000000$ ")
	if _, err := s.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, s, "you typed: hello\r\nsim-000000$ ")
	if got := string(d.SOLInput()); got != "hello\r" {
		t.Errorf("the device received %q", got)
	}
	// A second session is refused while the first runs.
	if _, err := e.open(d, amtPass); !errors.Is(err, sol.ErrBusy) || !errors.Is(err, sol.ErrRefused) {
		t.Fatalf("a second Open = %v; want ErrBusy", err)
	}
	// Outlast a few heartbeats: the session stays up.
	time.Sleep(2500 * time.Millisecond)
	s.Write([]byte("x\r"))
	readUntil(t, s, "you typed: x")

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, sol.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v; want ErrClosed", err)
	}
	if _, err := s.Write([]byte("y")); !errors.Is(err, sol.ErrClosed) {
		t.Errorf("Write after Close = %v; want ErrClosed", err)
	}
	s2 := waitOpen(t, e, d)
	s2.Close()
	// The device records the end once it has read the 0x12.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ev := audit(d, auditRedirection)
		if len(ev) == 4 && ev[0] == 4 && ev[1] == 5 && ev[3] == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redirection audit events %v; want two sessions opened and closed", ev)
		}
	}
}

// openFree opens a session, waiting a little while the device is busy:
// it frees its only SOL slot just after it has answered the end of the
// previous session (or a wrong login).
func openFree(t *testing.T, e *env, d *amtsim.Device, pw string, opts ...sol.Option) (*sol.Session, error) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := e.open(d, pw, opts...)
		if !errors.Is(err, sol.ErrBusy) || time.Now().After(deadline) {
			return s, err
		}
	}
}

// waitOpen opens a session with the right password once the device is
// free.
func waitOpen(t *testing.T, e *env, d *amtsim.Device, opts ...sol.Option) *sol.Session {
	t.Helper()
	s, err := openFree(t, e, d, amtPass, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// TestBIOSThroughTunnel: a device configured with the BIOS screen paints
// it with cursor addressing, colours and DEC line drawing.
func TestBIOSThroughTunnel(t *testing.T) {
	e := newEnv(t)
	d, _ := e.device(0, &amtsim.AMTConfig{SOLScreen: amtsim.SOLBIOS})
	s, err := e.open(d, amtPass)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := readUntil(t, s, "\x1b[20;10H") // the cursor parked at the keys field
	for _, want := range []string{"Setup Utility", "\x1b(0", "lqqqq", "\x1b[0;30;47m"} {
		if !strings.Contains(out, want) {
			t.Errorf("the screen lacks %q", want)
		}
	}
	s.Write([]byte("ab"))
	readUntil(t, s, "ab")
}

// TestWrongPassword: one login, refused with ErrCredentials, the password
// in no error, and no second try at the device.
func TestWrongPassword(t *testing.T) {
	e := newEnv(t)
	d, _ := e.device(0, nil)
	const wrong = "Wr0ng-Secret"
	for _, opts := range [][]sol.Option{nil, {sol.WithAuth(redir.AuthDigestRFC2069)}, {sol.WithAuth(redir.AuthPassword)},
		{sol.WithAuth(redir.AuthPassword), sol.WithoutQuery()}} {
		before := len(audit(d, auditSecurityAdmin))
		_, err := openFree(t, e, d, wrong, opts...)
		var ce *sol.CredentialsError
		if !errors.Is(err, sol.ErrCredentials) || !errors.As(err, &ce) || ce.User != amtsim.DefaultAMTUser || errors.Is(err, sol.ErrRefused) {
			t.Fatalf("Open with a wrong password = %v; want a CredentialsError", err)
		}
		if strings.Contains(err.Error(), wrong) {
			t.Fatalf("the error %q holds the password", err)
		}
		if n := len(audit(d, auditSecurityAdmin)) - before; n != 1 {
			t.Fatalf("the device saw %d failed logins; want exactly 1 (no retry)", n)
		}
	}
	// The right password still works afterwards, by every type.
	for _, typ := range []redir.AuthType{redir.AuthDigest, redir.AuthDigestRFC2069, redir.AuthPassword} {
		s := waitOpen(t, e, d, sol.WithAuth(typ))
		if s.Info().Auth != typ {
			t.Errorf("authenticated with %v; want %d", s.Info().Auth, typ)
		}
		s.Close()
	}
}

// TestRefusals: SOL switched off over WS-Man (0x11 status 3), and a CCM
// device without consent (0x21 refused).
func TestRefusals(t *testing.T) {
	e := newEnv(t)
	d, _ := e.device(0, nil)
	w, err := wsman.New(wsman.Config{
		Dial: func(ctx context.Context, device string) (net.Conn, error) {
			return e.Srv.Dial(ctx, device, amtsim.PortWSMan)
		},
		Credentials: func(context.Context, string) (wsman.Credentials, error) {
			return wsman.Credentials{User: amtsim.DefaultAMTUser, Password: amtPass}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.SetFeatures(ctxT(t), d.UUID().String(), wsman.FeatureSwitches{IDER: true, KVM: true}); err != nil {
		t.Fatalf("SetFeatures: %v", err)
	}
	_, err = e.open(d, amtPass)
	var re *sol.ReplyError
	if !errors.Is(err, sol.ErrDisabled) || !errors.Is(err, sol.ErrRefused) || !errors.As(err, &re) || re.Status != 3 {
		t.Fatalf("Open with SOL disabled = %v; want ErrDisabled (status 3)", err)
	}
	if err := w.SetFeatures(ctxT(t), d.UUID().String(), wsman.FeatureSwitches{SOL: true, IDER: true, KVM: true}); err != nil {
		t.Fatal(err)
	}
	s, err := e.open(d, amtPass)
	if err != nil {
		t.Fatalf("Open with SOL enabled again: %v", err)
	}
	s.Close()

	ccm, _ := e.device(1, &amtsim.AMTConfig{ControlMode: amtsim.CCM})
	if _, err := e.open(ccm, amtPass); !errors.Is(err, sol.ErrStartRefused) || !errors.Is(err, sol.ErrRefused) {
		t.Fatalf("Open without consent = %v; want ErrStartRefused", err)
	}
}

// TestDeviceVanishes: the device goes away mid-session; Read and Write
// report ErrDeviceGone, and Close returns at once.
func TestDeviceVanishes(t *testing.T) {
	e := newEnv(t)
	d, stop := e.device(0, nil)
	s, err := e.open(d, amtPass)
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, s, "$ ")
	stop()
	s.SetReadDeadline(time.Now().Add(20 * time.Second))
	var rerr error
	for rerr == nil {
		_, rerr = s.Read(make([]byte, 100))
	}
	if !errors.Is(rerr, sol.ErrDeviceGone) {
		t.Fatalf("Read after the device left = %v; want ErrDeviceGone", rerr)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, sol.ErrDeviceGone) {
		t.Errorf("Write after the device left = %v; want ErrDeviceGone", err)
	}
	t0 := time.Now()
	s.Close()
	if d := time.Since(t0); d > time.Second {
		t.Errorf("Close took %v after the device left", d)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, sol.ErrClosed) {
		t.Errorf("Read after Close = %v", err)
	}
}

var _ io.ReadWriteCloser = (*sol.Session)(nil)
