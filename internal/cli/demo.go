package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/vault"
)

// runDemo starts the engine and simulated devices on loopback, shows one
// WS-Man request answered through a tunnel, and reports until interrupted.
func runDemo(ctx context.Context, args []string, env Env) error {
	var c common
	var f serverFlags
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	c.register(fs)
	f.register(fs, "127.0.0.1:0")
	fs.Set("log-level", "warn") // the demo's own lines tell the story; -log-level info shows the engine's
	devices := fs.Int("devices", 5, "how many simulated AMT devices to connect")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until interrupted)")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	if *devices < 0 || *devices > 5000 {
		return usageError{"--devices must be between 0 and 5000 (use presence simulate for more)"}
	}
	if host, _, err := net.SplitHostPort(f.ciraAddr); err != nil || !net.ParseIP(host).IsLoopback() {
		return usageError{fmt.Sprintf("--cira-addr %q: the demo listens on loopback only (127.0.0.1:PORT)", f.ciraAddr)}
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	log, err := c.logger(env.Stderr)
	if err != nil {
		return err
	}
	// Everything lives in memory: the demo leaves no certificate, account or
	// file behind and never touches the real data dir.
	st := vault.NewMemory(vault.MemoryItemLimit)
	fmt.Fprintln(env.Stdout, "Creating a throwaway MPS certificate authority for 127.0.0.1 ...")
	ca, err := vault.InitCA(ctx, st, vault.CAOptions{Address: "127.0.0.1"})
	if err != nil {
		return err
	}
	acc := vault.NewAccounts(st)
	ciraPW, amtPW := randomSecret(), randomSecret()
	if err := acc.Add(ctx, vault.KindCIRA, "demo", vault.Secret(ciraPW)); err != nil {
		return err
	}
	srv, addr, err := startServer(ca, acc, &f, log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), f.shutdownMax)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	events, _ := srv.Subscribe(4 * (*devices + 16))
	fmt.Fprintf(env.Stdout, "CIRA listener on %s (root SHA-256 %s)\n", addr, ca.RootFingerprintSHA256())
	if *devices == 0 {
		<-ctx.Done()
		return nil
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	fleet, err := amtsim.NewFleet(amtsim.FleetConfig{
		// TLS 1.2, as AMT 12 and later speak it.
		Device: amtsim.Config{MPSAddr: addr.String(), RootCAs: roots, User: "demo", Password: []byte(ciraPW),
			AMTPassword: []byte(amtPW), EchoPort: 7, MaxVersion: tls.VersionTLS12},
		Devices: *devices, Seed: "demo",
	})
	if err != nil {
		return err
	}
	fctx, stopFleet := context.WithCancel(context.WithoutCancel(ctx)) // stopped after the final report
	fleetDone := make(chan amtsim.Summary, 1)
	go func() { fleetDone <- fleet.Run(fctx) }()
	defer func() { stopFleet(); <-fleetDone }()

	fmt.Fprintf(env.Stdout, "Starting %d simulated AMT devices ...\n", *devices)
	up := 0
	for up < *devices {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if ev.Kind == mps.EventConnected {
				up++
				if up <= 10 {
					fmt.Fprintf(env.Stdout, "  connected: %s %s (%s, %s)\n", ev.Device.UUID, ev.Device.Hostname,
						ev.Device.Info.TLSVersion, ev.Device.Info.TLSCipher)
				}
			}
		case <-ctx.Done():
			return nil
		}
	}
	if up > 10 {
		fmt.Fprintf(env.Stdout, "  ... and %d more\n", up-10)
	}
	fmt.Fprintf(env.Stdout, "All %d devices are connected.\n", up)

	// One WS-Man request through a tunnel, as a console would send it.
	first := fleet.Devices()[0]
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	res, err := amtsim.WSManGet(dctx, func(ctx context.Context) (net.Conn, error) {
		return srv.Dial(ctx, first.UUID().String(), amtsim.PortWSMan)
	}, amtsim.DefaultAMTUser, amtPW, amtsim.ResourceGeneralSettings)
	cancel()
	if err != nil {
		return fmt.Errorf("WS-Man through the tunnel of %s: %w", first.UUID(), err)
	}
	fmt.Fprintf(env.Stdout, "WS-Man AMT_GeneralSettings of %s through its tunnel: HostName=%s (HTTP %d, digest auth)\n",
		first.UUID(), res.HostName, res.Status)

	fmt.Fprintln(env.Stdout, "Press Ctrl+C to stop.")
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			st := srv.Stats()
			fmt.Fprintf(env.Stdout, "Stopping: %d tunnels up, %d handshakes completed.\n", st.Tunnels, st.Accepted)
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if ev.Kind != mps.EventConnected {
				fmt.Fprintf(env.Stdout, "  %s: %s %s %s\n", ev.Kind, ev.Device.UUID, ev.Reason, ev.Detail)
			}
		case <-t.C:
			st := srv.Stats()
			fmt.Fprintf(env.Stdout, "  %d tunnels up, %d handshakes completed\n", st.Tunnels, st.Accepted)
		}
	}
}

func randomSecret() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
