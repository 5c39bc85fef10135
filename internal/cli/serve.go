package cli

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/internal/single"
	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault"
)

// serverFlags are the engine settings of serve and demo.
type serverFlags struct {
	ciraAddr    string
	proxyAddr   string
	apiAddr     string
	mdns        bool
	noAuthLocal bool
	keepalive   time.Duration
	idle        time.Duration
	handshake   time.Duration
	legacyTLS   bool
	maxTunnels  int
	shutdownMax time.Duration
	debugAddr   string
	historyAge  time.Duration
	historyMiB  int64
}

// serverDefaults are the listen addresses a command starts from.
type serverDefaults struct{ cira, proxy, api string }

func (f *serverFlags) register(fs *flag.FlagSet, def serverDefaults) {
	fs.StringVar(&f.ciraAddr, "cira-addr", def.cira, "address the CIRA listener binds (AMT devices connect here)")
	fs.StringVar(&f.proxyAddr, "proxy-addr", def.proxy, "console proxy address: HTTP (CONNECT and absolute URLs) and SOCKS5/4a on one port; \"off\" disables it")
	fs.StringVar(&f.apiAddr, "api-addr", def.api, "REST API, websocket relay, /proxy.pac and /metrics; \"off\" disables it")
	fs.BoolVar(&f.mdns, "mdns", true, "advertise the proxy on the LAN over mDNS (_amt-mps._tcp)")
	fs.BoolVar(&f.noAuthLocal, "proxy-allow-loopback-noauth", false, "let consoles on this machine use the proxy and API without a console account")
	fs.DurationVar(&f.keepalive, "keepalive", 30*time.Second, "keepalive interval AMT is asked to use")
	fs.DurationVar(&f.idle, "idle-timeout", 90*time.Second, "drop a tunnel from which nothing arrived for this long")
	fs.DurationVar(&f.handshake, "handshake-timeout", 10*time.Second, "limit for TLS + APF up to authentication, and for a console's proxy handshake")
	fs.BoolVar(&f.legacyTLS, "legacy-tls", false, "also allow TLS 1.0 and 1.1, for AMT 11 and older")
	fs.IntVar(&f.maxTunnels, "max-tunnels", 50000, "most tunnels held at once")
	fs.DurationVar(&f.shutdownMax, "shutdown-timeout", 5*time.Second, "how long a graceful stop may take")
	fs.DurationVar(&f.historyAge, "history-max-age", 90*24*time.Hour, "keep tunnel and session history this long (serve)")
	fs.Int64Var(&f.historyMiB, "history-max-size", 256, "keep the history file under this many MiB, dropping the oldest records (serve)")
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
	for name, a := range map[string]string{"cira-addr": f.ciraAddr, "proxy-addr": f.proxyAddr, "api-addr": f.apiAddr} {
		if a == "off" && name != "cira-addr" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return usageError{fmt.Sprintf("--%s %q: want HOST:PORT or :PORT", name, a)}
		}
	}
	if f.historyAge <= 0 || f.historyMiB <= 0 {
		return usageError{"--history-max-age and --history-max-size must be positive"}
	}
	if f.idle <= f.keepalive {
		return usageError{fmt.Sprintf("--idle-timeout (%s) must be longer than --keepalive (%s), or devices are dropped between keepalives", f.idle, f.keepalive)}
	}
	return nil
}

func offOr(a string) string {
	if a == "off" {
		return ""
	}
	return a
}

// instanceConfig turns the flags into an instance configuration.
func (f *serverFlags) instanceConfig(ca *vault.CA, acc *vault.Accounts, log *slog.Logger) instance.Config {
	return instance.Config{
		CA: ca, Accounts: acc,
		CIRAAddr: f.ciraAddr, ProxyAddr: offOr(f.proxyAddr), APIAddr: offOr(f.apiAddr),
		Keepalive: f.keepalive, IdleTimeout: f.idle, HandshakeTimeout: f.handshake,
		LegacyTLS: f.legacyTLS, MaxTunnels: f.maxTunnels,
		AllowLoopbackNoAuth: f.noAuthLocal,
		Version:             Version,
		Logger:              log,
	}
}

func runServe(ctx context.Context, args []string, env Env) error {
	var c common
	var f serverFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.register(fs)
	f.register(fs, serverDefaults{cira: ":4433", proxy: ":1080", api: "127.0.0.1:16990"})
	if err := parse(fs, args, env); err != nil {
		return err
	}
	saved, err := applySettings(fs, c.dataDir)
	if err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	log, err := c.logger(env.Stderr)
	if err != nil {
		return err
	}
	// The window keeps the latest log lines for its Log screen, at a level
	// its Settings can change.
	var ring *logring.Ring
	var level slog.LevelVar
	if env.App != nil {
		level.UnmarshalText([]byte(c.logLevel)) // checked by c.logger
		ring = logring.New(logLines)
		log = slog.New(ring.Handler(&level, slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: &level})))
		if err := c.chooseDesktopVault(log); err != nil {
			return err
		}
	}
	lock, err := single.Acquire(c.dataDir)
	if errors.Is(err, single.ErrRunning) {
		return runningError(c.dataDir)
	}
	if err != nil {
		return err
	}
	defer lock.Release()
	st, ca, err := c.loadCA(ctx)
	needSetup := errors.Is(err, vault.ErrNotFound) && st != nil && env.App != nil
	if err != nil && !needSetup {
		return err
	}
	acc := vault.NewAccounts(st)

	// What runs the server, and what stops it again, last first.
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	start := func() (*Running, error) {
		if ca == nil {
			if ca, err = vault.LoadCA(ctx, st); err != nil {
				return nil, err
			}
		}
		hist, err := history.Open(filepath.Join(c.dataDir, historyFile), history.Options{
			MaxAge: f.historyAge, MaxBytes: f.historyMiB << 20, Logger: log.With("part", "history"),
		})
		if errors.Is(err, history.ErrLocked) {
			return nil, runningError(c.dataDir)
		}
		if err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		cleanups = append(cleanups, func() { hist.Close() }) // after the instance: its last events are kept
		// Offer renewal before expiry, and say what AMT would object to.
		certProblems := ca.Doctor("", time.Now())
		for _, p := range certProblems {
			log.Warn("certificate: " + p.Text)
		}
		for _, k := range []struct{ kind, why string }{
			{vault.KindCIRA, "devices cannot log in until you add one (presence account add --kind cira NAME)"},
			{vault.KindConsole, "consoles cannot use the proxy or the API until you add one (presence account add --kind console NAME)"},
		} {
			if names, err := acc.List(ctx, k.kind); err != nil {
				return nil, err
			} else if len(names) == 0 {
				log.Warn("no "+k.kind+" account yet: "+k.why, "kind", k.kind)
			}
		}
		cfg := f.instanceConfig(ca, acc, log)
		cfg.History = hist
		if f.mdns || env.App != nil {
			// The window's Settings can turn mDNS on later.
			cfg.Advertise = advertiser(log, false)
			cfg.AdvertiseOff = !f.mdns
		}
		if cfg.Aliases, err = loadAliases(c.dataDir); err != nil {
			return nil, err
		}
		cfg.SaveAliases = saveAliases(c.dataDir)
		in, err := instance.Start(ctx, cfg)
		if errors.Is(err, syscall.EADDRINUSE) {
			if isPresenceCIRA(f.ciraAddr) {
				return nil, fmt.Errorf("another Presence is already serving CIRA on %s (with another data dir): only one MPS may run on a machine; stop it first", f.ciraAddr)
			}
			return nil, fmt.Errorf("%w (another program has that port: choose another with --cira-addr, --proxy-addr or --api-addr, or turn the proxy or API off with \"off\")", err)
		}
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, func() {
			log.Info("stopping", "tunnels", in.Server.Stats().Tunnels, "sessions", in.Sessions().Stats().Active)
			sctx, cancel := context.WithTimeout(context.Background(), f.shutdownMax)
			defer cancel()
			if err := in.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				log.Error("stopping", "err", err)
			}
		})
		started := time.Now()
		removeRun, err := writeRunFiles(c.dataDir, c.vault, in, started)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, removeRun)
		if f.debugAddr != "" {
			stop, err := serveDebug(f.debugAddr)
			if err != nil {
				return nil, err
			}
			cleanups = append(cleanups, stop)
			log.Info("pprof profiles served", "addr", f.debugAddr)
		}
		go releaseMemoryAfterBursts(ctx, in.Server)
		log.Info("Presence MPS serving", "cira", in.CIRAAddr.String(), "proxy", addrString(in.ProxyAddr),
			"api", addrString(in.APIAddr), "root_sha256", ca.RootFingerprintSHA256(), "version", Version)
		return &Running{Instance: in, CA: ca, CertProblems: certProblems, Accounts: acc, History: hist, Store: st, DataDir: c.dataDir,
			ListenersMoved: func() error { _, err := writeRunFiles(c.dataDir, c.vault, in, started); return err }}, nil
	}

	if env.App != nil {
		// The desktop app: the window runs the first-run setup if there
		// is no certificate yet, then starts the server; both stop when
		// the window closes.
		launch := AppLaunch{Start: start, CIRAPort: port(f.ciraAddr), Log: ring, LogLevel: &level, Logger: log,
			Settings: f.settings(c.logLevel, saved.Server), SaveSettings: func(s ServerSettings) error { return storeServerSettings(c.dataDir, s) }}
		if needSetup {
			launch.Setup = func(address, user, password string) (FirstRun, error) {
				return firstRun(ctx, st, acc, address, user, password, port(f.ciraAddr))
			}
		}
		if err := env.App(ctx, launch); err != nil {
			log.Error("window", "err", err)
		}
		return nil
	}
	if _, err := start(); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// AppLaunch is what the desktop window gets from `presence`: the server to
// start, and the first-run setup when the data dir has no certificate yet.
type AppLaunch struct {
	// Setup, if not nil, must be done first: it creates the certificate
	// authority for address and the CIRA account.
	Setup func(address, user, password string) (FirstRun, error)
	// Start starts the server (call it off the UI goroutine); the server
	// stops when the window's App function returns.
	Start    func() (*Running, error)
	CIRAPort int
	// Settings are those in force at start (every field filled);
	// SaveSettings keeps changed ones in the data dir for the next start.
	Settings     ServerSettings
	SaveSettings func(ServerSettings) error
	// Log holds the latest log lines at LogLevel, which the window may
	// change while running.
	Log      *logring.Ring
	LogLevel *slog.LevelVar
	// Logger is the server's logger, for the window's own errors.
	Logger *slog.Logger
}

// logLines is how many log lines the window keeps.
const logLines = 5000

// Running is a started server with the parts the window's screens use.
type Running struct {
	*instance.Instance
	CA *vault.CA
	// CertProblems are the doctor's findings at start, for the window.
	CertProblems []vault.Problem
	Accounts     *vault.Accounts
	History      *history.Store
	Store        vault.Store
	DataDir      string
	// ListenersMoved updates the run files that tell the command line
	// where this instance listens, after Apply, Pause or Resume.
	ListenersMoved func() error
}

// settings returns the flags' values as server settings; the window's own
// choices come from saved.
func (f *serverFlags) settings(logLevel string, saved *ServerSettings) ServerSettings {
	s := ServerSettings{
		CIRAAddr: f.ciraAddr, ProxyAddr: f.proxyAddr, APIAddr: f.apiAddr,
		Keepalive: f.keepalive.String(), IdleTimeout: f.idle.String(),
		LegacyTLS: new(f.legacyTLS), MDNS: new(f.mdns), LogLevel: logLevel,
	}
	s.CloseToTray = new(true)
	if saved != nil {
		s.StartMinimised = saved.StartMinimised
		if saved.CloseToTray != nil {
			s.CloseToTray = new(*saved.CloseToTray)
		}
	}
	return s
}

// storeServerSettings writes s as the data dir's server settings, keeping
// the rest of the file.
func storeServerSettings(dataDir string, s ServerSettings) error {
	st, err := loadSettings(dataDir)
	if err != nil {
		return err
	}
	st.Server = &s
	return saveSettings(dataDir, st)
}

// FirstRun is what to enter in AMT after the setup.
type FirstRun struct {
	Address, User string
	Port          int
	RootSHA256    string
	RootPEM       string
}

// minCIRAPassword is the shortest CIRA password first-run accepts.
const minCIRAPassword = 8

// firstRun creates the CA and the CIRA account of a new data dir.
// It checks everything before writing anything; a root an earlier,
// interrupted setup made is kept rather than replaced.
func firstRun(ctx context.Context, st vault.Store, acc *vault.Accounts, address, user, password string, cira int) (FirstRun, error) {
	if len(password) < minCIRAPassword {
		return FirstRun{}, fmt.Errorf("the CIRA password needs at least %d characters", minCIRAPassword)
	}
	if strings.TrimSpace(user) == "" {
		return FirstRun{}, errors.New("the CIRA user name is empty")
	}
	ca, err := vault.InitCA(ctx, st, vault.CAOptions{Address: address})
	if errors.Is(err, vault.ErrRootExists) {
		ca, err = vault.LoadCA(ctx, st)
	}
	if err != nil {
		return FirstRun{}, err
	}
	if err := acc.Add(ctx, vault.KindCIRA, user, vault.Secret(password)); err != nil {
		return FirstRun{}, err
	}
	return FirstRun{Address: address, User: user, Port: cira, RootSHA256: ca.RootFingerprintSHA256(), RootPEM: string(ca.RootPEM())}, nil
}

func port(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// runningError names the instance that holds the data dir.
func runningError(dataDir string) error {
	info, err := readRunInfo(dataDir)
	if err != nil {
		return fmt.Errorf("%w (%s); only one may run per data dir", single.ErrRunning, dataDir)
	}
	return fmt.Errorf("%w: pid %d, started %s, CIRA on %s, proxy on %s (data dir %s); only one may run: stop it first, or use another --data-dir",
		single.ErrRunning, info.PID, info.Started.Local().Format(time.DateTime), info.CIRA, cmp.Or(info.Proxy, "off"), dataDir)
}

// isPresenceCIRA reports whether a Presence CIRA listener answers on addr:
// it answers an HTTPS request with a one-line 400 that names it. The probe
// only identifies the listener, sends nothing secret, and so does not
// verify the certificate.
func isPresenceCIRA(addr string) bool {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", dialable(addr))
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(c, 512))
	return bytes.Contains(b, []byte(tunnel.ProbeAnswer))
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
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
