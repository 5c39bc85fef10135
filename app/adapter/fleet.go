package adapter

import (
	"cmp"
	"net"
	"strconv"
	"time"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/app/ui/admin"
	"github.com/presence-mps/presence/internal/instance"
)

// The window's view of the fleet, and its actions on it.

// desktopUser is who the window acts as, in logs and history.
const desktopUser = "(desktop)"

// disconnectTimeout bounds a disconnect that asks a peer.
const disconnectTimeout = 20 * time.Second

// fleetOf is in's fleet as the window shows it, or nil outside one.
func fleetOf(in *instance.Instance) *ui.Fleet {
	p := in.Fleet()
	if p == nil {
		return nil
	}
	self := p.Self()
	f := &ui.Fleet{
		Self:         ui.Peer{ID: self.ID, Name: self.Name, Addr: self.PeerAddr, CIRAAddr: self.CIRAAddr, Version: self.Version},
		Away:         len(in.Away()),
		SendHomeRate: instance.DefaultSendHomeRate,
	}
	for _, l := range p.Links() {
		f.Peers = append(f.Peers, ui.Peer{ID: l.Member.ID, Name: l.Member.Name, Addr: l.Addr, CIRAAddr: l.Member.CIRAAddr,
			Version: l.Member.Version, Devices: l.Devices, Up: l.Up, Since: l.Since, Contact: l.Contact, Error: l.Error})
	}
	if configured, connected, since, err := in.EtcdStatus(); configured {
		e := &ui.EtcdState{Connected: connected, Since: since}
		if err != nil {
			e.Error = err.Error()
		}
		f.Etcd = e
	}
	owners := p.Owners()
	f.Devices = make([]ui.PeerDevice, len(owners))
	for i, o := range owners {
		f.Devices[i] = ui.PeerDevice{GUID: o.GUID, Host: o.Host, Instance: o.Instance, Since: o.Since}
	}
	return f
}

// SendHome closes, at the instance's default pace, the tunnels of the
// devices here whose home instance is up again.
func (b *Backend) SendHome() (int, error) { return b.In.SendHome(0) }

// entries returns this instance's MPS entry (address and its CIRA port)
// and the entries the other instances of its fleet announced, those whose
// link is up first; inFleet reports whether it is in a fleet.
func entries(in *instance.Instance, address string) (primary admin.MPSEntry, backups []admin.MPSEntry, inFleet bool) {
	primary.Address = address
	a := in.Listening().CIRA
	if a == nil {
		a = in.CIRAAddr // paused: the port it listens on when resumed
	}
	if a != nil {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			primary.Port, _ = strconv.Atoi(p)
		}
	}
	p := in.Fleet()
	if p == nil {
		return primary, nil, false
	}
	links := p.Links()
	for _, up := range []bool{true, false} {
		for _, l := range links {
			if l.Up != up || l.Member.ID == in.ID() {
				continue
			}
			if e, ok := admin.ParseEntry(l.Member.CIRAAddr, cmp.Or(l.Member.ID, l.Member.Name)); ok {
				backups = append(backups, e)
			}
		}
	}
	return primary, backups, true
}
