package instance_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
)

// TestAMTAccountPerDevice: the instance's toolbox logs in to each device
// with the AMT account bound to it, and to the others with the default;
// a wrong bound password is refused without a retry storm, and a fixed
// one is used at the next call.
func TestAMTAccountPerDevice(t *testing.T) {
	e := newEnv(t, envOptions{devices: 3, device: func(i int, c *amtsim.Config) {
		if i == 1 {
			c.AMTUser, c.AMTPassword = "home", []byte("Home-P@ss2")
		}
	}})
	ctx := context.Background()
	acc := e.in.Accounts()
	if err := acc.AddAMT(ctx, "home", "Home-P@ss2", []string{e.guid(1)}); err != nil {
		t.Fatal(err)
	}
	call := func(i int) error {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := e.in.AMT.Status(cctx, e.guid(i))
		return err
	}
	for i := range 3 {
		if err := call(i); err != nil {
			t.Errorf("device %d: %v", i, err)
		}
	}
	// Device 2 gets its own account with a wrong password.
	if err := acc.AddAMT(ctx, "other", "Wrong-P@ss", []string{e.guid(2)}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		err := call(2)
		var ce *wsman.CredentialsError
		if !errors.As(err, &ce) || ce.User != "other" || ce.Refused != (i > 0) {
			t.Fatalf("call %d with a wrong bound password: %v", i, err)
		}
	}
	// Rebinding device 2 to no account: the default (admin) is used, and
	// it is a new credential, so the device is asked again.
	if err := acc.Remove(ctx, vault.KindAMT, "other"); err != nil {
		t.Fatal(err)
	}
	if err := call(2); err != nil {
		t.Fatalf("after removing the wrong account: %v", err)
	}
}
