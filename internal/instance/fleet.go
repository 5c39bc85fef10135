package instance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/fleet/etcdstore"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault"
)

// FleetConfig is an instance's part in a fleet of instances (mps/fleet):
// its peer-link listener, the peers it links to, and the mutual TLS both
// use.
type FleetConfig struct {
	// PeerAddr is the peer-link listener (--peer-addr); required.
	PeerAddr string
	// Peers are other instances' peer listeners to link to (--peer).
	Peers []string
	// ServerTLS, ClientTLS and PeerID: see fleet.Config.
	ServerTLS, ClientTLS *tls.Config
	PeerID               func(tls.ConnectionState) (string, error)
	// Name is what this instance is called in the fleet (its address);
	// it is also the host peers reach a wildcard peer listener at.
	Name string
	// Etcd, if set, are the endpoints of the etcd the fleet keeps its
	// ownership table in (--etcd), under EtcdPrefix (default
	// "/presence/"). Peers are then also found through it.
	Etcd       []string
	EtcdPrefix string
	// EtcdTTL is the instance's lease (default 10 s; tests use less).
	EtcdTTL time.Duration
	// Discover, if set, browses the LAN (mDNS) for other instances; the
	// instance links to those of its fleet while Settings.MDNS is on
	// (discover.go). One call is one browse round.
	Discover func(context.Context) ([]FoundPeer, error)
}

// Accounts returns the instance's account store.
func (in *Instance) Accounts() *vault.Accounts { return in.cfg.Accounts }

// Fleet returns the instance's peer links, or nil outside a fleet.
func (in *Instance) Fleet() *fleet.Peers { return in.peers }

// fleetView is the API's view of the fleet: nil outside one (not a nil
// *fleet.Peers in an interface).
func (in *Instance) fleetView() api.Fleet {
	if in.peers == nil {
		return nil
	}
	return fleetView{in.peers, in}
}

// fleetView adds the etcd status to the peers, for the API.
type fleetView struct {
	*fleet.Peers
	in *Instance
}

func (v fleetView) EtcdStatus() (configured, connected bool, since time.Time, err error) {
	return v.in.EtcdStatus()
}

func (v fleetView) Lookup(name string) (fleet.Owner, bool) { return v.in.lookupOwner(name) }

func (v fleetView) Disconnect(ctx context.Context, name, user string) (string, string, error) {
	return v.in.Disconnect(ctx, name, user)
}

func (v fleetView) SendHome(rate float64) (int, error) { return v.in.SendHome(rate) }

// startFleet opens the peer listener and links to the configured peers.
func (in *Instance) startFleet() error {
	fc := in.cfg.Fleet
	ln, err := net.Listen("tcp", fc.PeerAddr)
	if err != nil {
		return fmt.Errorf("peer listener: %w", err)
	}
	in.PeerAddr = ln.Addr()
	// A wildcard listener is announced under the instance's name (its
	// MPS address), which peers on other machines can reach.
	announce := ln.Addr().String()
	if fc.Name != "" {
		announce, _ = fleet.WithHost(announce, fc.Name)
	}
	in.peers.SetPeerAddr(announce)
	if in.CIRAAddr != nil {
		// What AMT is given for this instance's MPS entry: the name its
		// certificate carries (AMT checks the CN against the entry), and
		// the port it listens on.
		cira := in.CIRAAddr.String()
		if _, p, err := net.SplitHostPort(cira); err == nil && fc.Name != "" {
			cira = net.JoinHostPort(fc.Name, p)
		}
		in.peers.SetCIRAAddr(cira)
	}
	in.serve(func() error { return in.peers.Serve(ln) })
	for _, a := range fc.Peers {
		in.peers.Add(a)
	}
	if len(fc.Etcd) > 0 {
		self := in.peers.Self()
		store, err := etcdstore.Open(etcdstore.Config{
			Endpoints: fc.Etcd, Prefix: fc.EtcdPrefix, Self: self, TTL: fc.EtcdTTL, Logger: in.log.With("part", "etcd"),
			Moved: in.moved,
			// Members announce their peer listeners: link to each.
			Changed: in.linkMembers,
		})
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		in.etcd.Store(store)
		in.linkMembers()
		// Devices that came up before the store existed.
		for _, d := range in.Server.Devices() {
			if seq, ok := in.Server.TunnelNumber(d.UUID); ok {
				store.Claim(in.owner(d, seq))
			}
		}
	}
	return nil
}

// linkMembers links to every member etcd names (once each: Add ignores
// an address it knows).
func (in *Instance) linkMembers() {
	st := in.etcdStore()
	if st == nil {
		return
	}
	for _, m := range st.Members() {
		if m.ID != in.cfg.InstanceID && m.PeerAddr != "" {
			in.peers.Add(m.PeerAddr)
		}
	}
}

// moved closes our tunnel of a device whose newer connection is on
// another instance: the newest connection wins fleet-wide.
func (in *Instance) moved(mine, newer fleet.Owner) {
	detail := fmt.Sprintf("a newer connection of the device is on instance %s", newer.Instance)
	if in.Server.CloseTunnel(mine.GUID, mine.Conn, tunnel.ReasonMoved, detail) {
		in.log.Info("tunnel closed: the device moved", "device", mine.GUID, "to", newer.Instance)
	}
}

// EtcdStatus reports whether the fleet's etcd answers (true outside an
// etcd fleet), since when, and the last error.
func (in *Instance) EtcdStatus() (configured, connected bool, since time.Time, err error) {
	st := in.etcdStore()
	if st == nil {
		return false, true, time.Time{}, nil
	}
	connected, since, err = st.Status()
	return true, connected, since, err
}

func (in *Instance) owner(d mps.Device, conn uint64) fleet.Owner {
	return fleet.Owner{GUID: d.UUID, Host: d.Hostname, Instance: in.cfg.InstanceID, Conn: conn, Since: d.Info.ConnectedAt}
}

// newPeers makes the instance's fleet side, before its listeners open.
func (in *Instance) newPeers() error {
	fc := in.cfg.Fleet
	self := fleet.Member{ID: in.cfg.InstanceID, Name: fc.Name, PeerAddr: fc.PeerAddr, Version: in.cfg.Version,
		ProxyAddr: in.cfg.Settings.ProxyAddr, APIAddr: in.cfg.Settings.APIAddr}
	p, err := fleet.New(fleet.Config{
		Self: self, Local: fleetLocal{in}, ServerTLS: fc.ServerTLS, ClientTLS: fc.ClientTLS, PeerID: fc.PeerID,
		Moved: in.moved,
		Accounts: func(from string, set fleet.AccountSet) {
			if a := in.accts.Load(); a != nil {
				a.adopt(from, set)
			}
		},
		Logger: in.log,
	})
	in.peers = p
	return err
}

// onTunnel tells the fleet of a tunnel that came up or ended here.
func (in *Instance) onTunnel(up bool, d mps.Device, conn uint64) {
	if in.peers == nil {
		return
	}
	o := in.owner(d, conn)
	if up {
		in.peers.Up(o)
	} else {
		in.peers.Down(o)
	}
	if st := in.etcdStore(); st != nil {
		if up {
			st.Claim(o)
		} else {
			st.Release(o)
		}
	}
}

// etcdStore returns the etcd ownership store, or nil.
func (in *Instance) etcdStore() *etcdstore.Store { return in.etcd.Load() }

// lookupOwner finds the instance of the fleet that holds the device
// named name: the peers' tables first, then etcd.
func (in *Instance) lookupOwner(name string) (fleet.Owner, bool) {
	if o, ok := in.peers.Lookup(name); ok {
		return o, true
	}
	st := in.etcdStore()
	if st == nil {
		return fleet.Owner{}, false
	}
	if o, ok := st.Lookup(fleet.NormalizeGUID(name)); ok && o.Instance != in.cfg.InstanceID {
		return o, true
	}
	if o, ok := st.LookupHost(name); ok && o.Instance != in.cfg.InstanceID {
		return o, true
	}
	return fleet.Owner{}, false
}

// dialConsole is the proxy's and the relay's dial function: a device of
// this instance is dialled here; one a peer holds is reached through that
// peer, in one hop. A peer that no longer holds it gets one fresh lookup,
// then the proxy's own refusal.
func (in *Instance) dialConsole(ctx context.Context, host string, port uint32) (net.Conn, error) {
	c, err := in.Server.DialConsole(ctx, host, port)
	if in.peers == nil || !errors.Is(err, proxy.ErrUnknownHost) {
		return c, err
	}
	name := host
	if g, ok := in.Server.Alias(host); ok {
		name = g
	}
	pc := proxy.ConsoleFrom(ctx)
	console := fleet.Console{User: pc.User, Addr: pc.Addr}
	var fc net.Conn
	o, found, ferr := in.atOwner(name, func(o fleet.Owner) (err error) {
		fc, err = in.peers.Dial(ctx, o, port, console)
		return err
	})
	switch {
	case !found:
		return nil, err
	case ferr == nil:
		return forwardedConn{fc, o.GUID}, nil
	case errors.Is(ferr, fleet.ErrNoPort):
		return nil, fmt.Errorf("%w: device %s (on %s) does not offer port %d", proxy.ErrPortNotAllowed, o.GUID, o.Instance, port)
	case errors.Is(ferr, fleet.ErrBusy):
		return nil, fmt.Errorf("%w: device %s (on %s) has no channel free for port %d", proxy.ErrDeviceBusy, o.GUID, o.Instance, port)
	}
	return nil, ferr
}

// atOwner calls do with the peer that holds the device named name. When
// that peer no longer holds it, or its link is down, the table has moved
// on: it looks again, once. found is false when no peer holds it (any
// more); otherwise err is do's.
func (in *Instance) atOwner(name string, do func(fleet.Owner) error) (o fleet.Owner, found bool, err error) {
	for try := 0; try < 2; try++ {
		o, ok := in.lookupOwner(name)
		if !ok {
			break
		}
		if err := do(o); !errors.Is(err, fleet.ErrNotHere) && !errors.Is(err, fleet.ErrNoPeer) {
			return o, true, err
		}
	}
	return fleet.Owner{}, false, nil
}

// forwardedConn is a console connection forwarded to a peer; it names its
// device for the session record.
type forwardedConn struct {
	net.Conn
	id string
}

func (c forwardedConn) DeviceID() string { return c.id }

// fleetLocal serves the consoles peers forward to this instance.
type fleetLocal struct{ in *Instance }

// DialLocal dials a device this instance holds, never a peer's: a
// forwarded console makes exactly one hop.
func (l fleetLocal) DialLocal(ctx context.Context, guid string, port uint32, c fleet.Console) (net.Conn, error) {
	if _, err := apf.ParseUUID(guid); err != nil {
		return nil, fmt.Errorf("%w: %q is not a GUID", fleet.ErrNotHere, guid)
	}
	dc, err := l.in.Server.DialConsole(ctx, guid, port)
	switch {
	case errors.Is(err, proxy.ErrUnknownHost):
		return nil, fmt.Errorf("%w: %v", fleet.ErrNotHere, err)
	case errors.Is(err, proxy.ErrPortNotAllowed):
		return nil, fmt.Errorf("%w: %v", fleet.ErrNoPort, err)
	case errors.Is(err, proxy.ErrDeviceBusy):
		return nil, fmt.Errorf("%w: %v", fleet.ErrBusy, err)
	}
	return dc, err
}

// Relay records the forwarded console as a session of this instance,
// marked with the instance it came through, and relays it.
func (l fleetLocal) Relay(stream, dc net.Conn, f fleet.Forward) {
	info := proxy.SessionInfo{Kind: proxy.KindFleet, Console: f.Addr, User: f.User, Via: f.Via,
		Device: f.GUID, Host: f.GUID, Port: f.Port}
	sess := l.in.sessions.Begin(info, stream, dc)
	if sess == nil {
		stream.Close()
		dc.Close()
		return
	}
	proxy.Relay(sess, stream, nil, dc)
}

// startAccountSync starts keeping the fleet's accounts in step (after
// in.stop exists).
func (in *Instance) startAccountSync() {
	a := &accountSync{in: in}
	in.accts.Store(a)
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		a.run()
	}()
}
