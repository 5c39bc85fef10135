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

	xproxy "golang.org/x/net/proxy"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/settings"
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
	c.registerDir(fs)
	s := settings.Defaults()
	s.CIRAAddr, s.ProxyAddr, s.APIAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	s.LogLevel = "warn" // the demo's own lines tell the story; -log-level info shows the engine's
	s.Register(fs, settings.Server)
	f.register(fs)
	// On loopback only, the demo's consoles need no account.
	fs.Set("proxy-allow-loopback-noauth", "true")
	devices := fs.Int("devices", 5, "how many simulated AMT devices to connect")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until interrupted)")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if err := f.check(s); err != nil {
		return err
	}
	c.logLevel = s.LogLevel
	if *devices < 0 || *devices > 5000 {
		return usageError{"--devices must be between 0 and 5000 (use presence simulate for more)"}
	}
	for name, a := range map[string]string{"cira-addr": s.CIRAAddr, "proxy-addr": s.ProxyAddr, "api-addr": s.APIAddr} {
		if a == settings.Off && name != "cira-addr" {
			continue
		}
		if host, _, err := net.SplitHostPort(a); err != nil || !net.ParseIP(host).IsLoopback() {
			return usageError{fmt.Sprintf("--%s %q: the demo listens on loopback only (127.0.0.1:PORT)", name, a)}
		}
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
	st := vault.NewMemory(vault.ItemLimit)
	fmt.Fprintln(env.Stdout, "Creating a throwaway MPS certificate authority for 127.0.0.1 ...")
	ca, err := vault.InitCA(ctx, st, vault.CAOptions{Address: "127.0.0.1"})
	if err != nil {
		return err
	}
	acc := vault.NewAccounts(st)
	ciraPW := randomSecret()
	if err := acc.Add(ctx, vault.KindCIRA, "demo", vault.Secret(ciraPW)); err != nil {
		return err
	}
	// The simulated devices' AMT account, so that the toolbox (the
	// window's device pane, presence amt, the API) and the relay's SOL
	// login reach them.
	if err := acc.AddAMT(ctx, amtsim.DefaultAMTUser, demoAMTPassword, nil); err != nil {
		return err
	}
	cfg := f.instanceConfig(s, ca, acc, log)
	cfg.Advertise = advertiser(log, true) // loopback only: nothing leaves the machine
	in, err := instance.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), f.shutdownMax)
		defer cancel()
		in.Shutdown(sctx)
	}()
	srv, addr := in.Server, in.CIRAAddr
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
			AMTPassword: []byte(demoAMTPassword), EchoPort: 7, MaxVersion: tls.VersionTLS12},
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

	// One WS-Man request through the console proxy, as a console would
	// send it (or straight through a tunnel with the proxy off).
	first := fleet.Devices()[0]
	dial := func(ctx context.Context) (net.Conn, error) {
		return srv.Dial(ctx, first.UUID().String(), amtsim.PortWSMan)
	}
	via := "its tunnel"
	if in.ProxyAddr != nil {
		socks, err := xproxy.SOCKS5("tcp", in.ProxyAddr.String(), nil, xproxy.Direct)
		if err != nil {
			return err
		}
		dial = func(ctx context.Context) (net.Conn, error) {
			return socks.(xproxy.ContextDialer).DialContext(ctx, "tcp", net.JoinHostPort(first.Hostname(), "16992"))
		}
		via = "the SOCKS5 proxy"
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	res, err := amtsim.WSManGet(dctx, dial, amtsim.DefaultAMTUser, demoAMTPassword, amtsim.ResourceGeneralSettings)
	cancel()
	if err != nil {
		return fmt.Errorf("WS-Man to %s through %s: %w", first.UUID(), via, err)
	}
	fmt.Fprintf(env.Stdout, "WS-Man AMT_GeneralSettings of %s through %s: HostName=%s (HTTP %d, digest auth)\n",
		first.UUID(), via, res.HostName, res.Status)
	printDemoConsoles(env, in, first.Hostname())

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

// demoAMTPassword is the AMT admin password of the demo's simulated
// devices: a published, well-known value (the one Intel's documentation
// uses), not a secret, so the demo can tell consoles what to type.
const demoAMTPassword = "P@ssw0rd"

// printDemoConsoles tells the user how to reach a simulated device with
// ordinary tools.
func printDemoConsoles(env Env, in *instance.Instance, host string) {
	w := env.Stdout
	if in.ProxyAddr != nil {
		px := in.ProxyAddr.String()
		fmt.Fprintf(w, "Console proxy (HTTP and SOCKS5, no login from this machine in the demo): %s\n", px)
		fmt.Fprintf(w, "  try: curl -si -X POST -x http://%s http://%s:16992/wsman   (the device's WS-Man answers 401 and asks for digest auth)\n", px, host)
	}
	if in.APIAddr != nil {
		api := in.APIAddr.String()
		fmt.Fprintf(w, "API: http://%s/api/v1/devices  (also /api/v1/sessions, /metrics, /proxy.pac)\n", api)
		fmt.Fprintf(w, "  try: presence devices --api-addr %s\n", api)
		fmt.Fprintf(w, "  AMT: presence amt power --api-addr %s %s   (also info, hardware, log, consent, features)\n", api, host)
		fmt.Fprintf(w, "  Serial-over-LAN: presence map --api-addr %s %s 16994   then: AMT_PASSWORD='%s' amtterm 127.0.0.1 PORT\n", api, host, demoAMTPassword)
	}
}

func randomSecret() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
