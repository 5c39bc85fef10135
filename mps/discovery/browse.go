package discovery

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/grandcat/zeroconf"
)

// DefaultBrowseTimeout is the length of a browse round when
// [BrowseConfig].Timeout is zero.
const DefaultBrowseTimeout = 2 * time.Second

// BrowseConfig configures [Browse]. The zero value browses every multicast
// interface for [DefaultBrowseTimeout].
type BrowseConfig struct {
	// Ifaces are the interfaces to query. Nil means every interface that is
	// up and has the MULTICAST flag.
	Ifaces []net.Interface
	// Timeout is how long the round lasts; zero means DefaultBrowseTimeout.
	Timeout time.Duration
	// SkipID, if not empty, leaves out instances with this ID: pass the
	// instance's own ID ([Advertiser.ID]) so that it does not find itself.
	SkipID string
}

// Instance is a Presence instance found by [Browse]. Everything in it came
// from the network and was validated, but strings are still untrusted text.
type Instance struct {
	// Name is the instance name, unescaped: printable UTF-8, 1 to 63 bytes.
	Name string `json:"name"`
	// Host is the SRV target without the trailing dot, such as
	// "ws12.local"; empty if it was not a valid host name.
	Host string `json:"host,omitempty"`
	// Addrs are the addresses published for Host (at most 16), sorted. Loopback
	// addresses are kept only when every browsed interface is a loopback
	// interface. An IPv6 link-local address carries the interface as its
	// zone when exactly one interface was browsed.
	Addrs []netip.Addr `json:"addrs"`
	// ProxyPort is the console proxy port (the SRV port and the proxy key).
	ProxyPort int `json:"proxy_port"`
	// APIPort is the REST API port, or 0 if absent or malformed.
	APIPort int `json:"api_port,omitempty"`
	// ID is the instance ID.
	ID string `json:"id"`
	// Version is the Presence version, or "" if absent or malformed.
	Version string `json:"version,omitempty"`
	// Fingerprint is the SHA-256 of the instance's MPS root certificate in
	// lowercase hex, or "" if absent or malformed.
	Fingerprint string `json:"fp,omitempty"`
	// Text is the TXT record as received, unescaped: at most 32 strings of
	// at most 255 bytes each, any bytes at all.
	Text []string `json:"txt"`
}

// Browse queries for Presence instances for the length of one round
// (cfg.Timeout) and returns those that answered, each once, sorted by name.
// Answers that are malformed or incomplete are left out, as is anything
// beyond 256 instances. It returns ctx's error if ctx ends before the
// round does, and [ErrNoInterface] if no socket could join the multicast
// group on the interfaces.
func Browse(ctx context.Context, cfg BrowseConfig) ([]Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultBrowseTimeout
	}
	ifaces := cfg.Ifaces
	if len(ifaces) == 0 {
		ifaces = multicastInterfaces()
		if len(ifaces) == 0 {
			return nil, ErrNoInterface
		}
	}
	r, err := newResolver(ifaces)
	if err != nil {
		return nil, err
	}

	c := newCollector(ifaces, cfg.SkipID)
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Unbuffered is fine: we receive until zeroconf closes the channel.
	entries := make(chan *zeroconf.ServiceEntry)
	// Browse starts the receive loop before it sends the first query, and
	// the loop closes entries and the sockets when rctx ends, even when
	// Browse returns an error (it then cancels rctx itself).
	err = r.Browse(rctx, ServiceType, Domain, entries)
	if err != nil {
		cancel()
	}
	for e := range entries {
		c.add(e.Instance, e.HostName, e.Port, e.Text, e.AddrIPv4, e.AddrIPv6)
	}
	if err != nil {
		return nil, fmt.Errorf("discovery: browse: %v", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.list(), nil
}

// newResolver creates a zeroconf resolver for the IP versions that the
// interfaces have addresses for. zeroconf's client fails as a whole if
// either version cannot join the group (and then leaves the IPv4 socket to
// the garbage collector), so it is only asked for what looks usable, and
// asked again for IPv4 alone if both fail together.
func newResolver(ifaces []net.Interface) (*zeroconf.Resolver, error) {
	var has4, has6 bool
	for i := range ifaces {
		as, err := ifaces[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			if pfx, ok := a.(*net.IPNet); ok {
				if pfx.IP.To4() != nil {
					has4 = true
				} else {
					has6 = true
				}
			}
		}
	}
	var ipt zeroconf.IPType
	switch {
	case has4 && !has6:
		ipt = zeroconf.IPv4
	case has6 && !has4:
		ipt = zeroconf.IPv6
	default:
		ipt = zeroconf.IPv4AndIPv6
	}
	r, err := zeroconf.NewResolver(zeroconf.SelectIfaces(ifaces), zeroconf.SelectIPTraffic(ipt))
	if err != nil && ipt == zeroconf.IPv4AndIPv6 {
		r, err = zeroconf.NewResolver(zeroconf.SelectIfaces(ifaces), zeroconf.SelectIPTraffic(zeroconf.IPv4))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoInterface, err)
	}
	return r, nil
}

// collector validates and de-duplicates the entries of one browse round.
type collector struct {
	skipID  string
	loopOK  bool   // keep loopback addresses
	zone    string // for IPv6 link-local addresses; "" if several interfaces
	byName  map[string]*Instance
	dropped int // entries refused, for tests
}

func newCollector(ifaces []net.Interface, skipID string) *collector {
	c := &collector{
		skipID: skipID,
		loopOK: allLoopback(ifaces),
		byName: make(map[string]*Instance),
	}
	if len(ifaces) == 1 {
		c.zone = ifaces[0].Name
	}
	return c
}

// add validates one entry as zeroconf delivers it: names and TXT strings in
// miekg/dns presentation form (escaped). An instance seen again under the
// same name gains the new addresses and keeps everything else.
func (c *collector) add(name, host string, port int, txt []string, v4, v6 []net.IP) {
	inst, ok := c.parse(name, host, port, txt, append(v4[:len(v4):len(v4)], v6...))
	if !ok || (c.skipID != "" && inst.ID == c.skipID) {
		c.dropped++
		return
	}
	if old, ok := c.byName[inst.Name]; ok {
		for _, a := range inst.Addrs {
			if len(old.Addrs) < maxAddrs && !slices.Contains(old.Addrs, a) {
				old.Addrs = append(old.Addrs, a)
			}
		}
		return
	}
	if len(c.byName) >= maxInstances {
		c.dropped++
		return
	}
	c.byName[inst.Name] = &inst
}

func (c *collector) parse(name, host string, port int, txt []string, ips []net.IP) (Instance, bool) {
	var inst Instance
	var ok bool
	if inst.Name, ok = unescape(name, false); !ok || !validInstanceName(inst.Name) {
		return Instance{}, false
	}
	if !validPort(port) {
		return Instance{}, false
	}
	for _, s := range txt {
		if len(inst.Text) == maxTXTStrings {
			break
		}
		if u, ok := unescape(s, true); ok && len(u) <= maxTXTString {
			inst.Text = append(inst.Text, u)
		}
	}
	f, err := parseTXT(inst.Text)
	if err != nil || f.ProxyPort != port {
		return Instance{}, false
	}
	inst.ProxyPort, inst.APIPort = f.ProxyPort, f.APIPort
	inst.ID, inst.Version, inst.Fingerprint = f.ID, f.Version, f.Fingerprint

	if h, ok := unescape(strings.TrimSuffix(host, "."), true); ok && hostLabelsOK(h) {
		inst.Host = h
	}
	for _, ip := range ips {
		if len(inst.Addrs) == maxAddrs {
			break
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a = a.Unmap()
		switch {
		case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}),
			a.IsLoopback() && !c.loopOK:
			continue
		}
		if a.Is6() && a.IsLinkLocalUnicast() && c.zone != "" {
			a = a.WithZone(c.zone)
		}
		if !slices.Contains(inst.Addrs, a) {
			inst.Addrs = append(inst.Addrs, a)
		}
	}
	if len(inst.Addrs) == 0 {
		return Instance{}, false
	}
	return inst, true
}

// list returns the instances sorted by name.
func (c *collector) list() []Instance {
	out := make([]Instance, 0, len(c.byName))
	for _, inst := range c.byName {
		slices.SortFunc(inst.Addrs, netip.Addr.Compare)
		out = append(out, *inst)
	}
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
