package launch

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/internal/single"
	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault"
)

// Config is what a [Starter] starts from: the data dir, its secrets, the
// settings and the engine's limits.
type Config struct {
	Dir Dir
	// Vault names the kind of Store, for the run files.
	Vault string
	Store vault.Store
	// CA, if nil, is loaded from Store at each start (the window's first
	// run creates it after the Starter is made).
	CA       *vault.CA
	Settings settings.Settings

	// The engine's limits (zero: the instance's defaults).
	HandshakeTimeout    time.Duration
	MaxTunnels          int
	AllowLoopbackNoAuth bool
	// ShutdownTimeout bounds a graceful stop (default 5 s).
	ShutdownTimeout time.Duration
	// History keeps records this long and the file under this size.
	HistoryMaxAge   time.Duration
	HistoryMaxBytes int64
	// DebugAddr, if set, serves Go's pprof profiles there (loopback).
	DebugAddr string
	// PeerAddr is the fleet's peer-link listener and Peers the peers to
	// link to; an instance is in a fleet when its vault holds a fleet id
	// (presence fleet invite or join).
	PeerAddr string
	Peers    []string
	// Etcd are the endpoints of the fleet's etcd, if it has one, and
	// EtcdPrefix its keys' prefix.
	Etcd       []string
	EtcdPrefix string
	// Advertise, if set, announces the instance over mDNS (the settings'
	// MDNS says whether it starts on).
	Advertise func(instance.Announcement) (withdraw func(), err error)
	// Discover, if set, browses for peers of the fleet over mDNS (see
	// instance.FleetConfig.Discover).
	Discover func(context.Context) ([]instance.FoundPeer, error)
	Version  string
	Logger   *slog.Logger
}

// ErrClosed is returned by [Starter.Start] once the Starter is closed.
var ErrClosed = errors.New("presence is stopping")

// Starter starts an instance and owns what a start opens: the history
// store, the instance, the run files and the debug server. A start that
// fails closes everything it opened, so a later Start (the window's Try
// again) finds the data dir as it was. Close stops the instance; a Start
// still in progress is cancelled and waited for, and what it opened is
// closed too, so quitting during a start leaves nothing behind.
//
// A Starter is safe for concurrent use; at most one instance runs at a
// time, and Start while one runs returns it.
type Starter struct {
	cfg Config

	mu       sync.Mutex // guards the fields below
	closed   bool
	starting chan struct{}      // closed when the start in progress returns
	cancel   context.CancelFunc // cancels the start in progress
	run      *parts             // what the running instance holds
}

// NewStarter returns a Starter for cfg; nothing is opened until Start.
func NewStarter(cfg Config) *Starter {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Starter{cfg: cfg}
}

// parts are what one start opened, closed last first by close.
type parts struct {
	cfg     *Config
	hist    *history.Store
	in      *instance.Instance
	debug   *debugServer
	stop    context.CancelFunc // ends the instance's background work
	wg      sync.WaitGroup     // that work
	running *Running
}

// Start starts the instance, or returns the one running. It may block on
// the keychain, the history file's lock and listening: call it off the UI
// goroutine.
func (s *Starter) Start(ctx context.Context) (*Running, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, ErrClosed
	case s.run != nil:
		r := s.run.running
		s.mu.Unlock()
		return r, nil
	case s.starting != nil:
		s.mu.Unlock()
		return nil, errors.New("presence is already starting")
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	s.starting, s.cancel = done, cancel
	s.mu.Unlock()

	p, err := s.open(ctx)

	s.mu.Lock()
	defer s.mu.Unlock()
	close(done)
	cancel()
	s.starting, s.cancel = nil, nil
	if err == nil && s.closed {
		p.close() // Close came during the start
		return nil, ErrClosed
	}
	if err != nil {
		if s.closed {
			return nil, ErrClosed
		}
		return nil, err
	}
	s.run = p
	return p.running, nil
}

// Running returns the running instance, or nil.
func (s *Starter) Running() *Running {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return nil
	}
	return s.run.running
}

// Close stops the running instance, and a start in progress, and waits
// until everything they opened is closed. Later starts fail with
// [ErrClosed].
func (s *Starter) Close() {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	starting := s.starting
	s.mu.Unlock()
	if starting != nil {
		<-starting
	}
	s.mu.Lock()
	p := s.run
	s.run = nil
	s.mu.Unlock()
	if p != nil {
		p.close()
	}
}

// open does one start; on error it has closed all it opened.
func (s *Starter) open(ctx context.Context) (_ *parts, err error) {
	cfg := &s.cfg
	log := cfg.Logger
	p := &parts{cfg: cfg}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	ca := cfg.CA
	if ca == nil {
		if ca, err = vault.LoadCA(ctx, cfg.Store); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.hist, err = history.Open(cfg.Dir.Path(HistoryFile), history.Options{
		MaxAge: cfg.HistoryMaxAge, MaxBytes: cfg.HistoryMaxBytes, Logger: log.With("part", "history"),
	})
	if errors.Is(err, history.ErrLocked) {
		return nil, cfg.Dir.RunningError()
	}
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	// Offer renewal before expiry, and say what AMT would object to.
	certProblems := ca.Doctor("", time.Now())
	for _, pr := range certProblems {
		log.Warn("certificate: " + pr.Text)
	}
	acc := vault.NewAccounts(cfg.Store)
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
	ic := instance.Config{
		CA: ca, Accounts: acc, Settings: cfg.Settings,
		HandshakeTimeout: cfg.HandshakeTimeout, MaxTunnels: cfg.MaxTunnels,
		AllowLoopbackNoAuth: cfg.AllowLoopbackNoAuth,
		Advertise:           cfg.Advertise,
		Version:             cfg.Version,
		History:             p.hist,
		SaveAliases:         cfg.Dir.SaveAliases,
		SaveSettings:        cfg.Dir.SaveServer,
		Logger:              log,
	}
	if ic.Aliases, err = cfg.Dir.Aliases(); err != nil {
		return nil, err
	}
	if ic.Fleet, ic.InstanceID, err = s.fleet(ctx, ca); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.in, err = instance.Start(ctx, ic)
	if errors.Is(err, syscall.EADDRINUSE) {
		if IsPresenceCIRA(cfg.Settings.CIRAAddr) {
			return nil, fmt.Errorf("another Presence is already serving CIRA on %s (with another data dir): only one MPS may run on a machine; stop it first", cfg.Settings.CIRAAddr)
		}
		return nil, fmt.Errorf("%w (another program has that port: choose another with --cira-addr, --proxy-addr or --api-addr, or turn the proxy or API off with \"off\")", err)
	}
	if err != nil {
		return nil, err
	}
	started := time.Now()
	p.running = &Running{Instance: p.in, CA: ca, CertProblems: certProblems, Accounts: acc, History: p.hist,
		Store: cfg.Store, Dir: cfg.Dir, started: started, vaultKind: cfg.Vault, version: cfg.Version}
	if err := p.running.ListenersMoved(); err != nil {
		return nil, err
	}
	if cfg.DebugAddr != "" {
		if p.debug, err = serveDebug(cfg.DebugAddr); err != nil {
			return nil, fmt.Errorf("debug server: %w", err)
		}
		log.Info("pprof profiles served", "addr", cfg.DebugAddr)
	}
	var life context.Context
	life, p.stop = context.WithCancel(context.Background())
	p.wg.Go(func() { releaseMemoryAfterBursts(life, p.in.Server) })
	log.Info("Presence MPS serving", "cira", p.in.CIRAAddr.String(), "proxy", addrString(p.in.ProxyAddr),
		"api", addrString(p.in.APIAddr), "root_sha256", ca.RootFingerprintSHA256(), "version", cfg.Version)
	return p, nil
}

// fleet returns the instance's part in its fleet, or nil when its vault
// holds no fleet id; and the instance id (saved in the data dir).
func (s *Starter) fleet(ctx context.Context, ca *vault.CA) (*instance.FleetConfig, string, error) {
	cfg := &s.cfg
	id, err := cfg.Dir.InstanceID()
	if err != nil {
		return nil, "", err
	}
	fleetID, err := vault.FleetID(ctx, cfg.Store)
	if errors.Is(err, vault.ErrNotFound) {
		if len(cfg.Peers) > 0 || len(cfg.Etcd) > 0 {
			return nil, "", errors.New("--peer and --etcd need a fleet: run presence fleet invite on an instance, and presence fleet join with its bundle on the others")
		}
		return nil, id, nil
	}
	if err != nil {
		return nil, "", err
	}
	pid, err := vault.NewPeerIdentity(ca, id, vault.PeerOptions{})
	if err != nil {
		return nil, "", err
	}
	stls, ctls := pid.TLSConfigs()
	name := id
	if srv := ca.Server(); srv != nil {
		name = srv.Subject.CommonName
	}
	peers := slices.Clone(cfg.Peers)
	if saved, err := cfg.Dir.Load(); err == nil {
		for _, a := range saved.Peers {
			if !slices.Contains(peers, a) {
				peers = append(peers, a)
			}
		}
	}
	cfg.Logger.Info("in a fleet", "fleet", fleetID, "instance", id, "peer_addr", cfg.PeerAddr, "peers", len(peers))
	return &instance.FleetConfig{PeerAddr: cfg.PeerAddr, Peers: peers, ServerTLS: stls, ClientTLS: ctls,
		PeerID: pid.PeerID, Name: name, Etcd: cfg.Etcd, EtcdPrefix: cfg.EtcdPrefix, Discover: cfg.Discover}, id, nil
}

// close closes what the start opened, last first: the debug server, the
// run files, the instance (its last events go to history), history.
func (p *parts) close() {
	if p.stop != nil {
		p.stop()
		p.wg.Wait()
	}
	if p.debug != nil {
		p.debug.close()
	}
	if p.running != nil && p.running.written.Load() {
		p.cfg.Dir.removeRun(p.running.runInfo())
	}
	if p.in != nil {
		log := p.cfg.Logger
		log.Info("stopping", "tunnels", p.in.Server.Stats().Tunnels, "sessions", p.in.Sessions().Stats().Active)
		sctx, cancel := context.WithTimeout(context.Background(), cmp.Or(p.cfg.ShutdownTimeout, 5*time.Second))
		if err := p.in.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			log.Error("stopping", "err", err)
		}
		cancel()
	}
	if p.hist != nil {
		p.hist.Close()
	}
}

// Running is a started instance with the parts the window's screens use.
type Running struct {
	*instance.Instance
	CA *vault.CA
	// CertProblems are the doctor's findings at start, for the window.
	CertProblems []vault.Problem
	Accounts     *vault.Accounts
	History      *history.Store
	Store        vault.Store
	Dir          Dir

	started   time.Time
	vaultKind string
	version   string
	written   atomic.Bool // the run files were written
}

// runInfo is what the run files say of r now.
func (r *Running) runInfo() RunInfo {
	l := r.Listening()
	info := RunInfo{
		PID: os.Getpid(), ID: r.ID(), Version: r.version, Vault: r.vaultKind,
		CIRA: addrString(l.CIRA), Started: r.started.UTC().Truncate(time.Second),
	}
	if l.Proxy != nil {
		info.Proxy = l.Proxy.String()
	}
	if l.API != nil {
		info.API = l.API.String()
	}
	if r.PeerAddr != nil {
		info.Peer = r.PeerAddr.String()
	}
	return info
}

// ListenersMoved writes the run files again, with the addresses the
// instance listens on now: call it after Apply, Pause or Resume, so that
// the command line finds the instance.
func (r *Running) ListenersMoved() error {
	if err := r.Dir.writeRun(r.runInfo(), r.Token()); err != nil {
		return err
	}
	r.written.Store(true)
	return nil
}

// RunningError names the instance that holds the data dir.
func (d Dir) RunningError() error {
	info, err := d.RunInfo()
	if err != nil {
		return fmt.Errorf("%w (%s); only one may run per data dir", single.ErrRunning, string(d))
	}
	return fmt.Errorf("%w: pid %d, started %s, CIRA on %s, proxy on %s (data dir %s); only one may run: stop it first, or use another --data-dir",
		single.ErrRunning, info.PID, info.Started.Local().Format(time.DateTime), info.CIRA, cmp.Or(info.Proxy, "off"), string(d))
}

// IsPresenceCIRA reports whether a Presence CIRA listener answers on
// addr: it answers an HTTPS request with [tunnel.ProbeAnswer]. The probe
// only identifies the listener, sends nothing secret, and so does not
// verify the certificate.
func IsPresenceCIRA(addr string) bool {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", Dialable(addr))
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
