package instance

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Finding peers on the LAN over mDNS: an instance in a fleet browses for
// other instances that advertise a peer-link port, and links to those
// that advertise this fleet's root. The fingerprint is only a hint, to
// avoid dialling strangers; trust comes from the peer link's mutual TLS.

// FoundPeer is an instance found over mDNS, as FleetConfig.Discover
// returns it. Everything in it came from the network.
type FoundPeer struct {
	ID          string
	Fingerprint string // SHA-256 of its MPS root, lowercase hex
	Addrs       []netip.Addr
	PeerPort    int
}

// discoverEvery is the pause between two browse rounds once the first has
// run; a peer that comes up later is linked within this plus a round.
const discoverEvery = 10 * time.Second

// startDiscovery runs the browse loop until Shutdown, if the fleet has a
// Discover function.
func (in *Instance) startDiscovery() {
	discover := in.cfg.Fleet.Discover
	if discover == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.wg.Add(2)
	go func() {
		defer in.wg.Done()
		<-in.stop
		cancel()
	}()
	go func() {
		defer in.wg.Done()
		linked := map[string]string{} // instance id → the address we added
		for ctx.Err() == nil {
			in.live.Lock()
			on := in.settings.MDNS && !in.paused
			in.live.Unlock()
			if on {
				found, err := discover(ctx)
				if err != nil && ctx.Err() == nil {
					in.log.Debug("mDNS browse for peers failed", "err", err)
				}
				in.linkFound(found, in.rootFingerprint(), linked)
			}
			select {
			case <-ctx.Done():
			case <-time.After(discoverEvery):
			}
		}
	}()
}

// linkFound links to the instances of this fleet in found that no link
// reaches yet. A peer that moved to another address is linked there, and
// the link to its old address is dropped.
func (in *Instance) linkFound(found []FoundPeer, fp string, linked map[string]string) {
	links := in.peers.Links()
	reached := map[string]int{} // instance id → up links to it
	byAddr := map[string]bool{}
	up := map[string]bool{} // by address
	for _, l := range links {
		byAddr[l.Addr] = true
		if l.Up && l.Member.ID != "" {
			reached[l.Member.ID]++
			up[l.Addr] = true
		}
	}
	// A peer reached twice, at the address we found and at the one it
	// announces (a name, say, through its link back to us), or reached at
	// another address while ours stays down: keep the other.
	for id, addr := range linked {
		if reached[id] > 1 || reached[id] == 1 && !up[addr] {
			in.peers.Remove(addr)
			delete(linked, id)
			delete(byAddr, addr)
		}
	}
	for _, f := range found {
		if f.ID == in.cfg.InstanceID || f.Fingerprint != fp || f.PeerPort <= 0 || f.PeerPort > 65535 || reached[f.ID] > 0 {
			continue
		}
		ip, ok := bestAddr(f.Addrs)
		if !ok {
			continue
		}
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(f.PeerPort))
		if byAddr[addr] {
			continue // a link is trying it already
		}
		if old, ok := linked[f.ID]; ok && old != addr {
			in.peers.Remove(old)
		}
		linked[f.ID] = addr
		in.log.Info("peer found over mDNS; linking", "peer", f.ID, "addr", addr)
		in.peers.Add(addr)
	}
}

// bestAddr picks the address to dial: a global or private IPv4 address
// first, then IPv6 that is not link-local, then anything.
func bestAddr(addrs []netip.Addr) (netip.Addr, bool) {
	rank := func(a netip.Addr) int {
		switch {
		case a.Is4() && !a.IsLinkLocalUnicast():
			return 0
		case !a.IsLinkLocalUnicast():
			return 1
		}
		return 2
	}
	var best netip.Addr
	for _, a := range addrs {
		if !best.IsValid() || rank(a) < rank(best) {
			best = a
		}
	}
	return best, best.IsValid()
}
