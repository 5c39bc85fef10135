package instance_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/sol"
	"github.com/presence-mps/presence/vault"
)

// TestOpenSOL: Presence's own terminal session reaches the simulated
// host's serial console through its tunnel, with the device's AMT account,
// and is a console session of kind terminal from open to close.
func TestOpenSOL(t *testing.T) {
	e := newEnv(t, envOptions{devices: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	evs, stop := e.in.Sessions().Subscribe(16)
	defer stop()

	s, err := e.in.OpenSOL(ctx, e.hostname(0), "admin-at-window")
	if err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(screen.String(), e.hostname(0)+"$") {
		n, err := s.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, screen.String())
		}
		screen.Write(buf[:n])
	}
	if _, err := io.WriteString(s, "uptime\r"); err != nil {
		t.Fatal(err)
	}
	if err := e.devs[0].Redirection().WaitSOLInput(ctx, []byte("uptime\r")); err != nil {
		t.Fatalf("the keys did not reach the device: %v", err)
	}
	live := e.in.Sessions().List()
	if len(live) != 1 || live[0].Kind != proxy.KindTerminal || live[0].Device != e.guid(0) || live[0].User != "admin-at-window" || live[0].Port != 16994 {
		t.Fatalf("live sessions = %+v", live)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for ended := false; !ended; {
		select {
		case ev := <-evs:
			if ev.Ended {
				ended = true
				if ev.Session.EndReason != proxy.EndConsole || ev.Session.BytesToDevice == 0 || ev.Session.BytesFromDevice == 0 {
					t.Errorf("ended session = %+v", ev.Session)
				}
			}
		case <-ctx.Done():
			t.Fatal("the session did not end")
		}
	}

	// Refusals, each with its sentence: no AMT account for the device,
	// then a wrong one.
	if err := e.in.Accounts().Remove(ctx, vault.KindAMT, amtUser); err != nil {
		t.Fatal(err)
	}
	_, err = e.in.OpenSOL(ctx, e.guid(1), "w")
	if !errors.Is(err, vault.ErrNoAMTAccount) || !strings.Contains(instance.SOLSentence(err), "no AMT account") {
		t.Fatalf("without an account: %v", err)
	}
	if err := e.in.Accounts().AddAMT(ctx, amtUser, "Wrong-P@ss", nil); err != nil {
		t.Fatal(err)
	}
	_, err = e.in.OpenSOL(ctx, e.guid(1), "w")
	if !errors.Is(err, sol.ErrCredentials) || strings.Contains(err.Error(), "Wrong-P@ss") {
		t.Fatalf("a wrong password: %v", err)
	}
	_, err = e.in.OpenSOL(ctx, "no-such-device", "w")
	if !errors.Is(err, sol.ErrDeviceGone) || instance.SOLSentence(err) == "" {
		t.Fatalf("an unknown device: %v", err)
	}
	if n := len(e.in.Sessions().List()); n != 0 {
		t.Errorf("%d sessions left live", n)
	}
}
