package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	// ServiceType is the DNS-SD service type of a Presence instance.
	ServiceType = "_amt-mps._tcp"
	// Domain is the mDNS domain.
	Domain = "local."
)

// Sentinel errors of [Advertise] and [Browse].
var (
	// ErrNoInterface means no interface was given and none is up with the
	// MULTICAST flag, or multicast could not be joined on any given one.
	ErrNoInterface = errors.New("discovery: no usable multicast interface")
	// ErrNoAddress means no IPs were given and the interfaces have no
	// address to advertise.
	ErrNoAddress = errors.New("discovery: no address to advertise")
)

// AdvertiseConfig configures [Advertise]. Only ProxyPort and ID are
// required.
type AdvertiseConfig struct {
	// Instance is the instance name users see: valid UTF-8, at most 63
	// bytes, no control characters, no final dot. Empty means
	// "Presence on <hostname>", shortened to fit. It must be unique on the
	// link: Advertise does not probe for conflicts (RFC 6762 section 8.1),
	// and browsers keep one instance per name.
	Instance string

	// ProxyPort is the console proxy port (1..65535). It is the SRV port and
	// the proxy TXT key.
	ProxyPort int
	// APIPort is the REST API port; 0 leaves the api key out.
	APIPort int
	// PeerPort is the fleet's peer-link port; 0 (outside a fleet) leaves
	// the peer key out.
	PeerPort int
	// ID identifies this instance, so that it can skip itself when browsing
	// (see [NewID]): 1 to 64 ASCII letters, digits, '.', '_', ':' or '-'.
	ID string
	// Version is the Presence version: up to 64 ASCII letters, digits, '.',
	// '_', '+', '~' or '-'. Empty leaves the version key out.
	Version string
	// Fingerprint is the SHA-256 of the MPS root certificate, in hex (see
	// [Fingerprint]). Empty leaves the fp key out.
	Fingerprint string

	// Ifaces are the interfaces to advertise on. Nil means every interface
	// that is up and has the MULTICAST flag.
	Ifaces []net.Interface
	// Host is the host name in the SRV record, without ".local" (which is
	// appended): labels of letters, digits, '-' or '_'. Empty means the
	// first label of the system's host name.
	Host string
	// IPs are the addresses published for Host. Empty means the addresses
	// of Ifaces, chosen as zeroconf v1.0.0 does (IPv4, and global IPv6 or
	// else link-local IPv6), leaving out loopback addresses unless every
	// one of Ifaces is a loopback interface. Demo mode uses
	// Ifaces: the loopback interface, IPs: ["127.0.0.1"].
	IPs []string
}

// Advertiser is a running mDNS advertisement. Its methods are safe for
// concurrent use.
type Advertiser struct {
	resp     *responder
	instance string
	id       string
	once     sync.Once
}

// Advertise starts answering mDNS queries for this instance on cfg.Ifaces
// and announces it: once before it returns and once more a second later
// (RFC 6762 section 8.3). It returns an error, and advertises nothing, if
// the configuration is invalid or no socket could join the multicast group
// ([ErrNoInterface]). Call [Advertiser.Close] to withdraw the advertisement.
func Advertise(cfg AdvertiseConfig) (*Advertiser, error) {
	f := txtFields{
		ProxyPort: cfg.ProxyPort,
		APIPort:   cfg.APIPort,
		PeerPort:  cfg.PeerPort,
		ID:        cfg.ID,
		Version:   cfg.Version,
	}
	if !validPort(f.ProxyPort) {
		return nil, fmt.Errorf("discovery: proxy port %d out of range", f.ProxyPort)
	}
	if f.APIPort != 0 && !validPort(f.APIPort) {
		return nil, fmt.Errorf("discovery: API port %d out of range", f.APIPort)
	}
	if f.PeerPort != 0 && !validPort(f.PeerPort) {
		return nil, fmt.Errorf("discovery: peer port %d out of range", f.PeerPort)
	}
	if !validID(f.ID) {
		return nil, fmt.Errorf("discovery: invalid instance ID %q", f.ID)
	}
	if f.Version != "" && !validVersion(f.Version) {
		return nil, fmt.Errorf("discovery: invalid version %q", f.Version)
	}
	if cfg.Fingerprint != "" {
		fp, ok := normFingerprint(cfg.Fingerprint)
		if !ok {
			return nil, fmt.Errorf("discovery: fingerprint %q is not 64 hex digits", cfg.Fingerprint)
		}
		f.Fingerprint = fp
	}

	instance := cfg.Instance
	if instance == "" {
		instance = defaultInstance()
	}
	// zeroconf's client (in older Presence versions) trims dots off both
	// ends of the name it received, escaped or not, so a final dot would
	// reach those browsers as a stray "\".
	if !validInstanceName(instance) || strings.HasSuffix(instance, ".") {
		return nil, fmt.Errorf("discovery: invalid instance name %q (want 1 to %d bytes of printable UTF-8, not ending in a dot)", instance, maxInstanceName)
	}

	host := cfg.Host
	if host == "" {
		host = defaultHost()
	}
	host = strings.TrimSuffix(strings.TrimSuffix(host, "."), ".local")
	if !hostLabelsOK(host) || len(host)+len(".local") > maxHostName {
		return nil, fmt.Errorf("discovery: invalid host name %q", cfg.Host)
	}

	ifaces := cfg.Ifaces
	if len(ifaces) == 0 {
		ifaces = multicastInterfaces()
		if len(ifaces) == 0 {
			return nil, ErrNoInterface
		}
	}

	var addrs []netip.Addr
	if len(cfg.IPs) > 0 {
		for _, s := range cfg.IPs {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("discovery: invalid IP %q", s)
			}
			addrs = append(addrs, a.Unmap())
		}
	} else {
		addrs = interfaceAddrs(ifaces)
		if len(addrs) == 0 {
			return nil, ErrNoAddress
		}
	}
	// Every message is packed now, so that none can fail to pack later:
	// the goodbye in Close cannot fail.
	rec, err := newRecords(escapeLabel(instance), host, f.ProxyPort, encodeTXT(f), addrs)
	if err != nil {
		return nil, fmt.Errorf("discovery: records for %q do not pack: %v", instance, err)
	}
	resp, err := startResponder(ifaces, rec)
	if err != nil {
		return nil, err
	}
	return &Advertiser{resp: resp, instance: instance, id: f.ID}, nil
}

// Instance returns the advertised instance name.
func (a *Advertiser) Instance() string { return a.instance }

// ID returns the advertised instance ID.
func (a *Advertiser) ID() string { return a.id }

// Close withdraws the advertisement: it stops answering queries, sends
// goodbye packets (TTL 0) and closes the sockets. Every goroutine that
// Advertise started has exited when it returns. It is idempotent and
// always returns nil.
func (a *Advertiser) Close() error {
	a.once.Do(a.resp.close)
	return nil
}

// multicastInterfaces returns the default interfaces: up, with the
// MULTICAST flag (as zeroconf v1.0.0 chooses them).
func multicastInterfaces() []net.Interface {
	all, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []net.Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 {
			out = append(out, ifi)
		}
	}
	return out
}

// allLoopback reports whether ifaces is non-empty and all loopback.
func allLoopback(ifaces []net.Interface) bool {
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return len(ifaces) > 0
}

// interfaceAddrs returns the addresses to publish for ifaces, following
// zeroconf's addrsForInterface: per interface its IPv4 addresses, and its
// global IPv6 addresses or, if it has none, its link-local ones. Loopback
// addresses count only when every interface is a loopback interface.
func interfaceAddrs(ifaces []net.Interface) []netip.Addr {
	loopOK := allLoopback(ifaces)
	var out []netip.Addr
	for i := range ifaces {
		as, err := ifaces[i].Addrs()
		if err != nil {
			continue
		}
		var v4, v6, v6ll []netip.Addr
		for _, a := range as {
			pfx, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(pfx.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			switch {
			case ip.IsLoopback() && !loopOK:
			case ip.Is4():
				v4 = append(v4, ip)
			case ip.IsLinkLocalUnicast():
				v6ll = append(v6ll, ip)
			case ip.IsGlobalUnicast() || ip.IsLoopback():
				v6 = append(v6, ip)
			}
		}
		if len(v6) == 0 {
			v6 = v6ll
		}
		out = append(append(out, v4...), v6...)
	}
	return out
}

// defaultInstance returns "Presence on <hostname>", cut at a character
// boundary to fit in a label, with non-printing characters left out.
func defaultInstance() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if r < ' ' || r == utf8.RuneError || r == 0x7f {
			return -1
		}
		return r
	}, h)
	name := "Presence"
	if h != "" {
		name += " on " + h
	}
	for len(name) > maxInstanceName {
		_, n := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-n]
	}
	name = strings.TrimRight(name, ". ")
	if !validInstanceName(name) {
		return "Presence"
	}
	return name
}

// defaultHost returns the first label of the system's host name, lowercased,
// with characters other than letters, digits and '-' replaced by '-'; or
// "presence" when nothing usable is left.
func defaultHost() string {
	h, _ := os.Hostname()
	h, _, _ = strings.Cut(h, ".")
	b := []byte(strings.ToLower(h))
	for i, c := range b {
		if !isAlnum(c) && c != '-' {
			b[i] = '-'
		}
	}
	h = strings.Trim(string(b), "-")
	if len(h) > 63 {
		h = strings.Trim(h[:63], "-")
	}
	if h == "" {
		return "presence"
	}
	return h
}
