// Package instancetest starts whole Presence instances for tests: a test
// CA for 127.0.0.1, accounts of every kind with known credentials, and
// every listener on a free loopback port.
package instancetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// The accounts Start makes.
const (
	CIRAUser    = "cira"
	CIRAPass    = "Cira-P@ss1"
	ConsoleUser = "console"
	ConsolePass = "Console-P@ss1"
	AMTUser     = "admin" // the AMT login the relay uses for web consoles that leave it to Presence
	AMTPass     = "Amt-P@ss1"
)

// Start starts an instance on loopback (CIRA, proxy and API on free ports)
// with a fresh CA and the accounts above; cfg, if not nil, may change the
// configuration first. The instance is shut down when the test ends.
func Start(tb testing.TB, cfg func(*instance.Config)) (*instance.Instance, *vault.CA) {
	tb.Helper()
	ca := vaulttest.CA(tb, "127.0.0.1")
	acc := vault.NewAccounts(vault.NewMemory(0))
	ctx := context.Background()
	for _, a := range []struct{ kind, user, pass string }{
		{vault.KindCIRA, CIRAUser, CIRAPass},
		{vault.KindConsole, ConsoleUser, ConsolePass},
		{vault.KindAMT, AMTUser, AMTPass},
	} {
		if err := acc.Add(ctx, a.kind, a.user, vault.Secret(a.pass)); err != nil {
			tb.Fatal(err)
		}
	}
	c := instance.Config{
		CA: ca, Accounts: acc,
		Settings: settings.Settings{CIRAAddr: "127.0.0.1:0", ProxyAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0"},
		Version:  "test",
	}
	if cfg != nil {
		cfg(&c)
	}
	in, err := instance.Start(ctx, c)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := in.Shutdown(sctx); err != nil {
			tb.Errorf("instance Shutdown: %v", err)
		}
	})
	return in, ca
}

// LoopDevice runs simulated device n of seed (host name host, an echo
// service on port 7) with the MPS entries mps in AMT's order, trusting
// ca, reconnecting from the first entry whenever its tunnel ends, until
// the test ends. It returns the device's GUID.
func LoopDevice(tb testing.TB, ca *vault.CA, seed string, n int, host string, mps ...string) string {
	tb.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	entries := make([]amtsim.MPSEntry, len(mps))
	for i, m := range mps {
		entries[i] = amtsim.MPSEntry{Addr: m, ServerName: "127.0.0.1"}
	}
	d, err := amtsim.New(amtsim.Config{
		UUID: amtsim.DeviceUUID(seed, n), Hostname: host, User: CIRAUser, Password: []byte(CIRAPass),
		MPS: entries, RootCAs: roots, MaxVersion: tls.VersionTLS12, EchoPort: 7,
	})
	if err != nil {
		tb.Fatal(err)
	}
	RunLoop(tb, d)
	return d.UUID().String()
}

// RunLoop runs the device, reconnecting whenever its tunnel ends, until
// the test ends.
func RunLoop(tb testing.TB, d *amtsim.Device) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			d.Run(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
}
