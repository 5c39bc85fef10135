package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/internal/single"
	"github.com/presence-mps/presence/vault"
)

// serverFlags are the engine's options of serve, demo and the window that
// are not settings (settings.Register makes those flags).
type serverFlags struct {
	noAuthLocal bool
	handshake   time.Duration
	maxTunnels  int
	shutdownMax time.Duration
	debugAddr   string
	historyAge  time.Duration
	historyMiB  int64
	peerAddr    string
	peers       stringList
	etcd        string
	etcdPrefix  string
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func (f *serverFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.noAuthLocal, "proxy-allow-loopback-noauth", false, "let consoles on this machine use the proxy and API without a console account")
	fs.DurationVar(&f.handshake, "handshake-timeout", 10*time.Second, "limit for TLS + APF up to authentication, and for a console's proxy handshake")
	fs.IntVar(&f.maxTunnels, "max-tunnels", 50000, "most tunnels held at once")
	fs.DurationVar(&f.shutdownMax, "shutdown-timeout", 5*time.Second, "how long a graceful stop may take")
	fs.DurationVar(&f.historyAge, "history-max-age", 90*24*time.Hour, "keep tunnel and session history this long (serve)")
	fs.Int64Var(&f.historyMiB, "history-max-size", 256, "keep the history file under this many MiB, dropping the oldest records (serve)")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "serve Go's pprof profiles on this loopback address, for diagnosing memory and CPU (off by default)")
	fs.StringVar(&f.peerAddr, "peer-addr", ":16991", "the fleet's peer-link listener (mutual TLS; only for an instance in a fleet: presence fleet invite/join)")
	fs.Var(&f.peers, "peer", "`HOST:PORT` of another instance's peer listener to link to (repeatable)")
	fs.StringVar(&f.etcd, "etcd", "", "`URL[,URL...]` of the etcd that holds the fleet's device ownership (off by default: peers push their tables)")
	fs.StringVar(&f.etcdPrefix, "etcd-prefix", "/presence/", "the fleet's key prefix in etcd")
}

// etcdEndpoints splits --etcd.
func (f *serverFlags) etcdEndpoints() []string {
	var out []string
	for e := range strings.SplitSeq(f.etcd, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// check checks the flags and the settings in force, naming the flags.
func (f *serverFlags) check(s settings.Settings) error {
	for name, d := range map[string]time.Duration{"keepalive": s.Keepalive, "idle-timeout": s.IdleTimeout,
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
	for name, a := range map[string]string{"cira-addr": s.CIRAAddr, "proxy-addr": s.ProxyAddr, "api-addr": s.APIAddr} {
		if a == settings.Off && name != "cira-addr" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return usageError{fmt.Sprintf("--%s %q: want HOST:PORT or :PORT", name, a)}
		}
	}
	for _, a := range append([]string{f.peerAddr}, f.peers...) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return usageError{fmt.Sprintf("--peer-addr or --peer %q: want HOST:PORT or :PORT", a)}
		}
	}
	for _, e := range f.etcdEndpoints() {
		if u, err := url.Parse(e); err != nil || u.Scheme != "http" || u.Host == "" {
			return usageError{fmt.Sprintf("--etcd %q: want http://HOST:PORT (TLS to etcd is not supported yet)", e)}
		}
	}
	if f.historyAge <= 0 || f.historyMiB <= 0 {
		return usageError{"--history-max-age and --history-max-size must be positive"}
	}
	if s.IdleTimeout <= s.Keepalive {
		return usageError{fmt.Sprintf("--idle-timeout (%s) must be longer than --keepalive (%s), or devices are dropped between keepalives", s.IdleTimeout, s.Keepalive)}
	}
	return nil
}

// instanceConfig turns the flags and settings into an instance
// configuration, for the demo (serve and the window start through
// launch.Starter).
func (f *serverFlags) instanceConfig(s settings.Settings, ca *vault.CA, acc *vault.Accounts, log *slog.Logger) instance.Config {
	return instance.Config{
		CA: ca, Accounts: acc, Settings: s,
		HandshakeTimeout: f.handshake, MaxTunnels: f.maxTunnels,
		AllowLoopbackNoAuth: f.noAuthLocal,
		Version:             Version,
		Logger:              log,
	}
}

// server is what serve and the window share: the flags, the settings in
// force, the data dir and its lock.
type server struct {
	c     common
	f     serverFlags
	s     settings.Settings
	saved launch.Saved
}

// parse parses the flags of serve (scope settings.Server) or the window
// (also settings.Window), and takes the data dir's saved settings for
// those not given.
func (sv *server) parse(name string, args []string, env Env, scope settings.Scope) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	sv.c.registerDir(fs)
	sv.s = settings.Defaults()
	sv.s.Register(fs, scope)
	sv.f.register(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	var err error
	if sv.saved, err = launch.Dir(sv.c.dataDir).Load(); err != nil {
		return err
	}
	if sv.saved.Server != nil {
		sv.s.FillUnset(fs, *sv.saved.Server)
	}
	sv.c.logLevel = sv.s.LogLevel
	return sv.f.check(sv.s)
}

// starter makes the Starter for store, with the given mDNS hook.
func (sv *server) starter(st vault.Store, ca *vault.CA, log *slog.Logger) *launch.Starter {
	return launch.NewStarter(launch.Config{
		Dir: launch.Dir(sv.c.dataDir), Vault: sv.c.vault, Store: st, CA: ca, Settings: sv.s,
		HandshakeTimeout: sv.f.handshake, MaxTunnels: sv.f.maxTunnels, AllowLoopbackNoAuth: sv.f.noAuthLocal,
		ShutdownTimeout: sv.f.shutdownMax, HistoryMaxAge: sv.f.historyAge, HistoryMaxBytes: sv.f.historyMiB << 20,
		DebugAddr: sv.f.debugAddr, Advertise: advertiser(log, false), Discover: peerFinder(), Version: Version, Logger: log,
		PeerAddr: sv.f.peerAddr, Peers: sv.f.peers, Etcd: sv.f.etcdEndpoints(), EtcdPrefix: sv.f.etcdPrefix,
	})
}

// lock takes the data dir's single-instance lock.
func (sv *server) lock() (*single.Lock, error) {
	lock, err := single.Acquire(sv.c.dataDir)
	if errors.Is(err, single.ErrRunning) {
		return nil, launch.Dir(sv.c.dataDir).RunningError()
	}
	return lock, err
}

// runServe is `presence serve`: the engine with no window, in every
// build, until ctx ends.
func runServe(ctx context.Context, args []string, env Env) error {
	var sv server
	if err := sv.parse("serve", args, env, settings.Server); err != nil {
		return err
	}
	log, err := sv.c.logger(env.Stderr)
	if err != nil {
		return err
	}
	lock, err := sv.lock()
	if err != nil {
		return err
	}
	defer lock.Release()
	st, err := sv.c.store()
	if err != nil {
		return err
	}
	s := sv.starter(st, nil, log)
	defer s.Close()
	if _, err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// runWindow is `presence` with no command: the desktop window, with the
// server inside it, until the window closes or ctx ends.
func runWindow(ctx context.Context, args []string, env Env) error {
	if env.App == nil {
		return usageError{"this build has no window (built with -tags nogui): use presence serve"}
	}
	var sv server
	if err := sv.parse("presence", args, env, settings.Server|settings.Window); err != nil {
		return err
	}
	if env.Display != nil {
		if err := env.Display(); err != nil {
			return err
		}
	}
	// The window keeps the latest log lines for its Log screen, at a level
	// its Settings can change.
	var level slog.LevelVar
	level.UnmarshalText([]byte(sv.s.LogLevel)) // checked by the flag
	ring := logring.New(launch.LogLines)
	log := slog.New(ring.Handler(&level, slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: &level})))
	dir := launch.Dir(sv.c.dataDir)
	var err error
	if sv.c.vault, err = dir.DesktopVault(sv.c.vault, log); err != nil {
		return err
	}
	lock, err := sv.lock()
	if err != nil {
		return err
	}
	defer lock.Release()
	st, ca, err := sv.c.loadCA(ctx)
	needSetup := errors.Is(err, vault.ErrNotFound) && st != nil
	if err != nil && !needSetup {
		return err
	}
	s := sv.starter(st, ca, log)
	defer s.Close() // also a start the window left in progress
	w := launch.Window{Start: s.Start, CIRAPort: port(sv.s.CIRAAddr), Log: ring, LogLevel: &level, Logger: log,
		Settings: sv.s, SaveSettings: dir.SaveServer}
	if needSetup {
		acc := vault.NewAccounts(st)
		w.Setup = func(address, user, password string) (launch.FirstRun, error) {
			return launch.Setup(ctx, st, acc, address, user, password, port(sv.s.CIRAAddr))
		}
		w.Join = func(bundle io.Reader, passphrase, address string) (launch.FirstRun, error) {
			r, err := launch.Join(ctx, st, bundle, passphrase, address, port(sv.s.CIRAAddr))
			if err == nil && r.Peer != "" {
				if err := dir.AddPeer(r.Peer); err != nil {
					log.Warn("cannot keep the inviting instance's peer address; give it with --peer", "peer", r.Peer, "err", err)
				}
			}
			return r, err
		}
	}
	return env.App(ctx, w)
}

func port(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
