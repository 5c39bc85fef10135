// Package instance assembles a whole Presence instance from its parts: the
// CIRA engine, the console proxy with its port mappings, the API and the
// mDNS advertisement, with the wiring between them and one shutdown order.
// `presence serve`, `presence demo` and the desktop app all run this.
package instance

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/doctor"
	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/fleet/etcdstore"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
)

// Config describes an instance. CA and Accounts are required.
type Config struct {
	CA       *vault.CA
	Accounts *vault.Accounts

	// Settings are the admin's choices: the listen addresses (CIRAAddr
	// is required; an empty or "off" ProxyAddr or APIAddr leaves that
	// part off), keepalive and idle timeout (zero: the tunnel package's
	// defaults), legacy TLS, and whether to advertise over mDNS (with
	// Advertise). The instance ignores the window's own settings; Apply
	// changes them while it runs.
	Settings settings.Settings

	// Limits (zero: the defaults of the parts).
	HandshakeTimeout time.Duration
	MaxTunnels       int

	// AllowLoopbackNoAuth lets consoles on this machine use the proxy and
	// the API without logging in.
	AllowLoopbackNoAuth bool

	// Advertise, if set, is called once the listeners are up to announce
	// the instance (mDNS) when Settings.MDNS is on; the function it
	// returns withdraws it. Apply can turn it on and off.
	Advertise func(Announcement) (withdraw func(), err error)

	// InstanceID identifies this instance to peers (default: random).
	InstanceID string
	Version    string
	// Token is the API bearer token (default: random, see Instance.Token).
	Token string
	// History, if set, records every tunnel up and down, auth failure and
	// console session. The caller opens it (it holds the data dir's history
	// file) and closes it after Shutdown.
	History *history.Store
	// Aliases are other names of devices (alias → GUID), set at start;
	// SaveAliases keeps them after a change through the API.
	Aliases     map[string]string
	SaveAliases func(map[string]string) error
	// Fleet, if set, makes the instance one of a fleet: it links to its
	// peers, tells them of its devices and reaches theirs in one hop.
	Fleet *FleetConfig
	// SaveSettings, if set, keeps settings the instance changes itself
	// (a device allowed legacy TLS from the doctor's fix).
	SaveSettings func(settings.Settings) error
	// AccountsRefresh is how often the account cache is dropped, so that
	// accounts added, changed or removed by another process (presence
	// account ...) take effect. Default 15 s.
	AccountsRefresh time.Duration
	Logger          *slog.Logger
}

// Announcement is what an instance advertises about itself.
type Announcement struct {
	ProxyPort, APIPort, CIRAPort int
	// PeerPort is the fleet's peer-link port (0 outside a fleet).
	PeerPort            int
	InstanceID, Version string
	Fingerprint         string // SHA-256 of the MPS root certificate, lowercase hex
}

// Instance is a running Presence.
type Instance struct {
	Server *mps.Server
	Proxy  *proxy.Server // nil without ProxyAddr
	API    *api.API      // nil without APIAddr
	// AMT is the AMT toolbox (power, boot, logs, consent, ...) over the
	// devices' tunnels, this instance's and its peers', with the AMT
	// accounts of this instance's vault.
	AMT *toolbox.Toolbox

	// CIRAAddr, ProxyAddr and APIAddr are the addresses at start (nil
	// for parts left off); Listening tells where the instance listens
	// after Apply, Pause or Resume.
	CIRAAddr, ProxyAddr, APIAddr net.Addr
	// PeerAddr is the fleet's peer-link listener (nil outside a fleet).
	PeerAddr net.Addr

	cfg      Config
	live     sync.Mutex // guards the fields below
	settings settings.Settings
	ciraNow  net.Addr
	proxyNow net.Addr
	proxyLn  net.Listener
	paused   bool
	// advertised is what the mDNS advertisement out there says.
	advertised Announcement

	log       *slog.Logger
	sessions  *proxy.Sessions
	withdraw  func()
	peers     *fleet.Peers                    // nil outside a fleet
	etcd      atomic.Pointer[etcdstore.Store] // nil without etcd; set once
	accts     atomic.Pointer[accountSync]     // nil outside a fleet; set once
	stop      chan struct{}                   // closed by Shutdown
	home      sendHome                        // Send devices home in progress
	enrol     *enrolState                     // set once, by enrolment
	enrolOnce sync.Once
	doctor    *doctor.Doctor
	wg        sync.WaitGroup
	stopOnce  sync.Once
	stopErr   error
}

// ID returns the instance id.
func (in *Instance) ID() string { return in.cfg.InstanceID }

// Token returns the API bearer token: a secret for the local command line,
// never to be logged.
func (in *Instance) Token() string { return in.cfg.Token }

// Sessions returns the table of console sessions.
func (in *Instance) Sessions() *proxy.Sessions { return in.sessions }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Start builds and starts an instance. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (_ *Instance, err error) {
	if cfg.CA == nil || cfg.Accounts == nil {
		return nil, errors.New("instance: Config.CA and Config.Accounts are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = randomHex(8)
	}
	if cfg.Token == "" {
		cfg.Token = randomHex(32)
	}
	log := cfg.Logger
	acc := cfg.Accounts
	checkCIRA := acc.CIRAAuthenticator()
	in := &Instance{cfg: cfg, log: log, sessions: proxy.NewSessions()}
	dopts := doctor.Options{}
	if cfg.History != nil {
		dopts.History = cfg.History
	}
	in.doctor = doctor.New(dopts)
	srv, err := mps.New(mps.Config{
		Doctor:     in.doctor,
		Tunnels:    in.onTunnel,
		TLS:        tunnel.TLSConfig(cfg.CA.TLSCertificate(), cfg.Settings.LegacyTLS),
		MaxTunnels: cfg.MaxTunnels,
		Logger:     log,
		Tunnel: tunnel.Config{
			Auth: func(ctx context.Context, _ apf.UUID, user string, pw []byte) bool {
				ok, err := checkCIRA(ctx, user, pw)
				if err != nil {
					log.Warn("cannot check CIRA credentials", "user", user, "err", err)
				}
				return ok
			},
			// Asked only after a refusal, for the doctor: a wrong
			// password of a known account, or an unknown account.
			UserExists: func(ctx context.Context, user string) bool {
				names, err := acc.List(ctx, vault.KindCIRA)
				return err == nil && slices.Contains(names, user)
			},
			KeepaliveInterval: cfg.Settings.Keepalive,
			IdleTimeout:       cfg.Settings.IdleTimeout,
			HandshakeTimeout:  cfg.HandshakeTimeout,
		},
	})
	if err != nil {
		return nil, err
	}
	if err := srv.SetLegacyDevices(cfg.Settings.LegacyDevices()); err != nil {
		log.Warn("legacy TLS devices ignored", "err", err)
	}
	for alias, guid := range cfg.Aliases {
		if err := srv.SetAlias(alias, guid); err != nil {
			log.Warn("alias ignored", "alias", alias, "device", guid, "err", err)
		}
	}
	in.Server = srv
	if cfg.Fleet != nil {
		if err := in.newPeers(); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			in.Shutdown(sctx)
			cancel()
		}
	}()
	if in.CIRAAddr, err = srv.Listen(cfg.Settings.CIRAAddr); err != nil {
		return in, fmt.Errorf("CIRA listener: %w", err)
	}
	in.ciraNow = in.CIRAAddr
	in.settings = cfg.Settings
	in.settings.Keepalive = cmp.Or(in.settings.Keepalive, tunnel.DefaultKeepalive)
	in.settings.IdleTimeout = cmp.Or(in.settings.IdleTimeout, tunnel.DefaultIdle)
	consoleAuth := func(user, pass string) bool {
		ok, err := acc.Verify(context.Background(), vault.KindConsole, user, []byte(pass))
		if err != nil {
			log.Warn("cannot check console credentials", "user", user, "err", err)
		}
		return ok
	}
	in.Proxy = proxy.New(proxy.Config{
		Dial:                in.dialConsole,
		Auth:                consoleAuth,
		AllowLoopbackNoAuth: cfg.AllowLoopbackNoAuth,
		HandshakeTimeout:    cfg.HandshakeTimeout,
		Sessions:            in.sessions,
		Logger:              log.With("part", "proxy"),
	})
	in.AMT, err = toolbox.New(toolbox.Config{
		Dial:        in.dialConsole,
		Credentials: amtCredentials(acc),
		Logger:      log.With("part", "amt"),
	})
	if err != nil {
		return in, err
	}
	if a := settings.Listen(cfg.Settings.ProxyAddr); a != "" {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return in, fmt.Errorf("proxy listener: %w", err)
		}
		in.ProxyAddr, in.proxyNow, in.proxyLn = ln.Addr(), ln.Addr(), ln
		in.serve(func() error { return in.Proxy.Serve(ln) })
	}
	if apiAddr := settings.Listen(cfg.Settings.APIAddr); apiAddr != "" {
		in.API, err = api.New(api.Config{
			Server: srv, Proxy: in.Proxy, Dial: in.dialConsole, Auth: consoleAuth, Token: cfg.Token,
			AllowLoopbackNoAuth: cfg.AllowLoopbackNoAuth, RootPEM: cfg.CA.RootPEM(),
			ProxyPort: port(in.ProxyAddr), Version: cfg.Version, InstanceID: cfg.InstanceID,
			SaveAliases: cfg.SaveAliases, AMTLogin: amtLogin(acc, log), History: cfg.History,
			Fleet:  in.fleetView(),
			AMT:    in.AMT,
			Enrol:  in,
			Doctor: in,
			Logger: log.With("part", "api"),
		})
		if err != nil {
			return in, err
		}
		ln, err := net.Listen("tcp", apiAddr)
		if err != nil {
			return in, fmt.Errorf("API listener: %w", err)
		}
		in.APIAddr = ln.Addr()
		in.serve(func() error { return in.API.Serve(ln) })
	}
	if cfg.Fleet != nil {
		if err := in.startFleet(); err != nil {
			return in, err
		}
	}
	in.wireEvents()
	in.refreshAccounts()
	if in.peers != nil {
		in.startAccountSync()
		in.startDiscovery()
	}
	in.live.Lock()
	in.advertiseLocked()
	in.live.Unlock()
	return in, nil
}

// amtLogin picks the AMT credentials the relay uses for web consoles that
// leave the redirection login to Presence: the amt account named "admin",
// or the only amt account there is.
func amtLogin(acc *vault.Accounts, log *slog.Logger) func(context.Context, string) (string, string, bool) {
	return func(ctx context.Context, device string) (string, string, bool) {
		name, pw, err := acc.AMTFor(ctx, device)
		if err != nil {
			if !errors.Is(err, vault.ErrNoAMTAccount) {
				log.Warn("cannot read the AMT account of a device", "device", device, "err", err)
			}
			return "", "", false
		}
		return name, pw.Reveal(), true
	}
}

// amtCredentials gives the toolbox the AMT account of a device by the
// vault's rule (the account bound to it, else the default).
func amtCredentials(acc *vault.Accounts) func(context.Context, string) (wsman.Credentials, error) {
	return func(ctx context.Context, device string) (wsman.Credentials, error) {
		name, pw, err := acc.AMTFor(ctx, device)
		if err != nil {
			return wsman.Credentials{}, err
		}
		return wsman.Credentials{User: name, Password: pw.Reveal()}, nil
	}
}

func port(a net.Addr) int {
	if a == nil {
		return 0
	}
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// serve runs a listener loop owned by the instance.
func (in *Instance) serve(loop func() error) {
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		if err := loop(); err != nil && !errors.Is(err, net.ErrClosed) {
			in.log.Error("listener stopped", "err", err)
		}
	}()
}

// eventBuffer is room for engine and session events between their source
// and the instance's consumers: a reconnect storm of 10,000 devices makes
// 20,000 events at once.
const eventBuffer = 1 << 16

// wireEvents frees a device's port mappings when its tunnel ends, and
// records tunnels and sessions in the history.
func (in *Instance) wireEvents() {
	events, _ := in.Server.Subscribe(eventBuffer)
	h := in.cfg.History
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		for ev := range events { // closed by Server.Shutdown
			if ev.Kind == mps.EventConnected {
				// Its firmware or AMT account may have changed meanwhile.
				in.AMT.Forget(ev.Device.UUID)
			}
			if ev.Kind == mps.EventDisconnected {
				if n := in.Proxy.UnmapDevice(ev.Device.UUID); n > 0 {
					in.log.Info("port mappings closed: their device disconnected", "device", ev.Device.UUID, "mappings", n)
				}
			}
			if h != nil {
				h.Add(tunnelRecord(ev))
			}
		}
	}()
	if h == nil {
		return
	}
	sessions, _ := in.sessions.Subscribe(eventBuffer)
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		for ev := range sessions { // closed by Shutdown after the last session ended
			h.AddSession(sessionRecord(ev.Session))
		}
	}()
}

// tunnelRecord turns an engine event into a history record.
func tunnelRecord(ev mps.Event) history.TunnelEvent {
	r := history.TunnelEvent{
		Time: ev.Time, Device: ev.Device.UUID, Hostname: ev.Device.Hostname, Reason: ev.Reason, Detail: ev.Detail,
		Remote: ev.Device.Remote, User: ev.User, TLSVersion: ev.Device.Info.TLSVersion, TLSCipher: ev.Device.Info.TLSCipher,
	}
	switch ev.Kind {
	case mps.EventConnected:
		r.Kind = history.KindUp
	case mps.EventDisconnected:
		r.Kind = history.KindDown
	case mps.EventAuthFailed:
		r.Kind = history.KindAuthFailed
	default:
		r.Kind = ev.Kind.String()
	}
	for _, f := range ev.Device.Info.Forwards {
		r.Ports = append(r.Ports, f.Port)
	}
	return r
}

// sessionRecord turns a console session into a history record.
func sessionRecord(s proxy.SessionInfo) history.SessionRecord {
	return history.SessionRecord{
		ID: s.ID, Kind: s.Kind, Console: s.Console, User: s.User, Device: s.Device, Host: s.Host, Port: s.Port,
		BytesToDevice: s.BytesToDevice, BytesFromDevice: s.BytesFromDevice, Start: s.Start, End: s.End, EndReason: s.EndReason,
		Via: s.Via,
	}
}

// refreshAccounts flushes the account cache periodically until Shutdown.
func (in *Instance) refreshAccounts() {
	every := in.cfg.AccountsRefresh
	if every <= 0 {
		every = 15 * time.Second
	}
	in.stop = make(chan struct{})
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-in.stop:
				return
			case <-t.C:
				in.cfg.Accounts.Flush()
			}
		}
	}()
}

// Shutdown stops the instance: the advertisement first (peers stop
// sending consoles here), then the API and the proxy (their sessions end as
// "shutdown"), then the tunnels. It waits for every goroutine; if ctx ends
// first, what remains is closed hard and ctx's error returned.
func (in *Instance) Shutdown(ctx context.Context) error {
	in.stopOnce.Do(func() {
		in.live.Lock()
		in.settings.MDNS = false
		in.advertiseLocked()
		in.live.Unlock()
		var errs []error
		if st := in.etcdStore(); st != nil {
			// Our devices leave the fleet's table at once (the lease is
			// revoked), not a TTL later.
			st.Close()
		}
		if in.peers != nil {
			// Peers stop forwarding consoles here and drop our rows.
			in.peers.Close()
		}
		if in.API != nil {
			if err := in.API.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if in.Proxy != nil {
			in.Proxy.Close()
		}
		if in.AMT != nil {
			in.AMT.Close()
		}
		if in.stop != nil {
			close(in.stop)
		}
		in.stopSendHome()
		in.sessions.Close()
		if err := in.Server.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		// Every session has ended by now (the API and the proxy wait for
		// their relays), so the last session events are in the channel.
		in.sessions.CloseEvents()
		in.wg.Wait()
		// Its last findings reach history, which the caller closes next.
		in.doctor.Close()
		in.stopErr = errors.Join(errs...)
	})
	return in.stopErr
}
