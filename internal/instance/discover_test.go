package instance_test

import (
	"context"
	"net"
	"os"
	"testing"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/discovery"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// mdnsOnLoopback returns the instance's advertiser and peer browser over
// real mDNS, on the loopback interface only.
func mdnsOnLoopback(t *testing.T) (func(instance.Announcement) (func(), error), func(context.Context) ([]instance.FoundPeer, error)) {
	t.Helper()
	if os.Getenv("PRESENCE_NETNS") != "1" {
		t.Skip("mDNS runs only in a private network namespace (scripts/test.sh sets PRESENCE_NETNS=1 there)")
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var lo []net.Interface
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagLoopback != 0 {
			lo = append(lo, ifi)
		}
	}
	advertise := func(a instance.Announcement) (func(), error) {
		adv, err := discovery.Advertise(discovery.AdvertiseConfig{ProxyPort: a.ProxyPort, APIPort: a.APIPort, PeerPort: a.PeerPort,
			ID: a.InstanceID, Fingerprint: a.Fingerprint, Ifaces: lo, IPs: []string{"127.0.0.1"}, Instance: "Presence " + a.InstanceID})
		if err != nil {
			return nil, err
		}
		return func() { adv.Close() }, nil
	}
	browse := func(ctx context.Context) ([]instance.FoundPeer, error) {
		found, err := discovery.Browse(ctx, discovery.BrowseConfig{Ifaces: lo})
		var out []instance.FoundPeer
		for _, f := range found {
			out = append(out, instance.FoundPeer{ID: f.ID, Fingerprint: f.Fingerprint, Addrs: f.Addrs, PeerPort: f.PeerPort})
		}
		return out, err
	}
	return advertise, browse
}

// Two instances of one fleet, told of no peer, find each other over mDNS
// (the peer port in TXT, the root's fingerprint as a hint) and link; an
// instance of another fleet, advertising too, is not linked to.
func TestFleetPeersFoundOverMDNS(t *testing.T) {
	advertise, browse := mdnsOnLoopback(t)
	root := fleettest.NewRoot(t, "fleet")
	ca := vaulttest.CA(t, "127.0.0.1")
	start := func(id string, ca *vault.CA, root *fleettest.Root) *instance.Instance {
		stls, ctls := root.TLS(root.Peer(t, id))
		in, _ := instancetest.Start(t, func(c *instance.Config) {
			c.InstanceID, c.CA = id, ca
			c.Settings.MDNS = true
			c.Advertise = advertise
			c.Fleet = &instance.FleetConfig{PeerAddr: "127.0.0.1:0", ServerTLS: stls, ClientTLS: ctls, PeerID: fleettest.PeerID,
				Name: id, Discover: browse}
		})
		return in
	}
	a := start("inst-a", ca, root)
	b := start("inst-b", ca, root)
	other := fleettest.NewRoot(t, "another fleet")
	x := start("inst-x", vaulttest.CA(t, "127.0.0.1"), other)

	linked := func(in *instance.Instance, id string) bool {
		for _, l := range in.Fleet().Links() {
			if l.Up && l.Member.ID == id {
				return true
			}
		}
		return false
	}
	waitUntil(t, "A and B to link over mDNS", func() bool { return linked(a, "inst-b") && linked(b, "inst-a") })
	for _, in := range []*instance.Instance{a, b, x} {
		for _, l := range in.Fleet().Links() {
			if l.Member.ID == "inst-x" || in == x {
				t.Fatalf("%s linked across fleets: %+v", in.ID(), l)
			}
		}
	}
}
