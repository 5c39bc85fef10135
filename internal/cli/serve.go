package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault"
)

// serverFlags are the engine settings of serve and demo.
type serverFlags struct {
	ciraAddr    string
	proxyAddr   string
	apiAddr     string
	mdns        bool
	keepalive   time.Duration
	idle        time.Duration
	handshake   time.Duration
	legacyTLS   bool
	maxTunnels  int
	shutdownMax time.Duration
	debugAddr   string
}

func (f *serverFlags) register(fs *flag.FlagSet, ciraDefault string) {
	fs.StringVar(&f.ciraAddr, "cira-addr", ciraDefault, "address the CIRA listener binds (AMT devices connect here)")
	fs.StringVar(&f.proxyAddr, "proxy-addr", ":1080", "console proxy address (HTTP + SOCKS; used once console access is released)")
	fs.StringVar(&f.apiAddr, "api-addr", "127.0.0.1:16990", "REST API address (used once console access is released)")
	fs.BoolVar(&f.mdns, "mdns", true, "advertise the proxy over mDNS (used once console access is released)")
	fs.DurationVar(&f.keepalive, "keepalive", 30*time.Second, "keepalive interval AMT is asked to use")
	fs.DurationVar(&f.idle, "idle-timeout", 90*time.Second, "drop a tunnel from which nothing arrived for this long")
	fs.DurationVar(&f.handshake, "handshake-timeout", 10*time.Second, "limit for TLS + APF up to authentication")
	fs.BoolVar(&f.legacyTLS, "legacy-tls", false, "also allow TLS 1.0 and 1.1, for AMT 11 and older")
	fs.IntVar(&f.maxTunnels, "max-tunnels", 50000, "most tunnels held at once")
	fs.DurationVar(&f.shutdownMax, "shutdown-timeout", 5*time.Second, "how long a graceful stop may take")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "serve Go's pprof profiles on this loopback address, for diagnosing memory and CPU (off by default)")
}

func (f *serverFlags) check() error {
	for name, d := range map[string]time.Duration{"keepalive": f.keepalive, "idle-timeout": f.idle,
		"handshake-timeout": f.handshake, "shutdown-timeout": f.shutdownMax} {
		if err := positive(name, d); err != nil {
			return err
		}
	}
	if f.debugAddr != "" {
		host, _, err := net.SplitHostPort(f.debugAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return usageError{fmt.Sprintf("--debug-addr %q: profiles are served on loopback only (127.0.0.1:PORT)", f.debugAddr)}
		}
	}
	if f.idle <= f.keepalive {
		return usageError{fmt.Sprintf("--idle-timeout (%s) must be longer than --keepalive (%s), or devices are dropped between keepalives", f.idle, f.keepalive)}
	}
	return nil
}

// newServer builds the engine from the vault's CA and CIRA accounts.
func newServer(ca *vault.CA, acc *vault.Accounts, f *serverFlags, log *slog.Logger) (*mps.Server, error) {
	check := acc.CIRAAuthenticator()
	auth := func(ctx context.Context, _ apf.UUID, user string, pw []byte) bool {
		ok, err := check(ctx, user, pw)
		if err != nil {
			log.Warn("cannot check CIRA credentials", "user", user, "err", err)
		}
		return ok
	}
	return mps.New(mps.Config{
		TLS:        tunnel.TLSConfig(ca.TLSCertificate(), f.legacyTLS),
		MaxTunnels: f.maxTunnels,
		Logger:     log,
		Tunnel: tunnel.Config{
			Auth:              auth,
			KeepaliveInterval: f.keepalive,
			IdleTimeout:       f.idle,
			HandshakeTimeout:  f.handshake,
		},
	})
}

// startServer builds the engine and starts its CIRA listener.
func startServer(ca *vault.CA, acc *vault.Accounts, f *serverFlags, log *slog.Logger) (*mps.Server, net.Addr, error) {
	srv, err := newServer(ca, acc, f, log)
	if err != nil {
		return nil, nil, err
	}
	addr, err := srv.Listen(f.ciraAddr)
	if err != nil {
		return nil, nil, err
	}
	return srv, addr, nil
}

func runServe(ctx context.Context, args []string, env Env) error {
	var c common
	var f serverFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.register(fs)
	f.register(fs, ":4433")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	log, err := c.logger(env.Stderr)
	if err != nil {
		return err
	}
	st, ca, err := c.loadCA(ctx)
	if err != nil {
		return err
	}
	acc := vault.NewAccounts(st)
	if names, err := acc.List(ctx, vault.KindCIRA); err != nil {
		return err
	} else if len(names) == 0 {
		log.Warn("no CIRA account yet: devices cannot log in until you add one (presence account add --kind cira NAME)")
	}
	srv, addr, err := startServer(ca, acc, &f, log)
	if err != nil {
		return err
	}
	if f.debugAddr != "" {
		stop, err := serveDebug(f.debugAddr)
		if err != nil {
			srv.Shutdown(context.Background())
			return err
		}
		defer stop()
		log.Info("pprof profiles served", "addr", f.debugAddr)
	}
	go releaseMemoryAfterBursts(ctx, srv)
	log.Info("Presence MPS serving", "cira", addr.String(), "root_sha256", ca.RootFingerprintSHA256(), "version", Version)
	<-ctx.Done()
	log.Info("stopping", "tunnels", srv.Stats().Tunnels)
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownMax)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// releaseMemoryAfterBursts returns free memory to the OS once a burst of
// handshakes (devices coming back after an outage, a reconnect storm) has
// passed. The Go runtime otherwise keeps the heap the burst needed for a
// long time: at 19,000 idle tunnels that was 7 KiB of RSS per tunnel. It
// costs one garbage collection per burst.
func releaseMemoryAfterBursts(ctx context.Context, srv *mps.Server) {
	const (
		every = 10 * time.Second
		burst = 1000 // handshakes since the last release that make it worth one
		quiet = 50   // at most this many in the last period: the burst is over
	)
	t := time.NewTicker(every)
	defer t.Stop()
	var last, since uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := srv.Stats().Accepted
		since += n - last
		if n-last <= quiet && since >= burst {
			debug.FreeOSMemory()
			since = 0
		}
		last = n
	}
}
