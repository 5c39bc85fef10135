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

	"github.com/grandcat/zeroconf"
	"github.com/miekg/dns"
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
	// link: zeroconf v1.0.0 does not probe for conflicts, and browsers keep
	// one instance per name.
	Instance string

	// ProxyPort is the console proxy port (1..65535). It is the SRV port and
	// the proxy TXT key.
	ProxyPort int
	// APIPort is the REST API port; 0 leaves the api key out.
	APIPort int
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
	// of Ifaces, chosen as zeroconf does (IPv4, and global IPv6 or else
	// link-local IPv6), leaving out loopback addresses unless every one of
	// Ifaces is a loopback interface. Demo mode uses
	// Ifaces: the loopback interface, IPs: ["127.0.0.1"].
	IPs []string
}

// Advertiser is a running mDNS advertisement. Its methods are safe for
// concurrent use.
type Advertiser struct {
	srv      *zeroconf.Server
	instance string
	id       string
	once     sync.Once
}

// Advertise starts answering mDNS queries for this instance on cfg.Ifaces
// and announces it. It returns an error, and advertises nothing, if the
// configuration is invalid or no socket could join the multicast group.
// Call [Advertiser.Close] to withdraw the advertisement.
func Advertise(cfg AdvertiseConfig) (*Advertiser, error) {
	f := txtFields{
		ProxyPort: cfg.ProxyPort,
		APIPort:   cfg.APIPort,
		ID:        cfg.ID,
		Version:   cfg.Version,
	}
	if !validPort(f.ProxyPort) {
		return nil, fmt.Errorf("discovery: proxy port %d out of range", f.ProxyPort)
	}
	if f.APIPort != 0 && !validPort(f.APIPort) {
		return nil, fmt.Errorf("discovery: API port %d out of range", f.APIPort)
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
	// zeroconf's client trims dots off both ends of the name it received,
	// escaped or not, so a final dot would reach browsers as a stray "\".
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
	ips := make([]string, len(addrs))
	for i, a := range addrs {
		ips[i] = a.String()
	}

	name := escapeLabel(instance)
	txt := encodeTXT(f)
	// zeroconf's Shutdown gives up, leaking sockets and goroutines, if the
	// goodbye does not pack; make sure now that it will.
	if err := packCheck(name, host, f.ProxyPort, txt, addrs); err != nil {
		return nil, fmt.Errorf("discovery: records for %q do not pack: %v", instance, err)
	}

	// RegisterProxy, not Register: Register drops loopback addresses and
	// appends ".local" to a host name that already has it.
	srv, err := zeroconf.RegisterProxy(name, ServiceType, Domain, f.ProxyPort, host, ips, txt, ifaces)
	if err != nil {
		// The only failure after the checks above is that no socket
		// could join the group; zeroconf says so in plain text.
		return nil, fmt.Errorf("%w: %v", ErrNoInterface, err)
	}
	// Otherwise a Close right away could panic inside zeroconf.
	waitServersStarted()
	return &Advertiser{srv: srv, instance: instance, id: f.ID}, nil
}

// Instance returns the advertised instance name.
func (a *Advertiser) Instance() string { return a.instance }

// ID returns the advertised instance ID.
func (a *Advertiser) ID() string { return a.id }

// Close withdraws the advertisement: it sends goodbye packets (TTL 0) and
// closes the sockets. It is idempotent and always returns nil. The receive
// goroutines have exited when it returns; zeroconf's announcement goroutine
// ends on its own within about 3.5 s of Advertise, without sending anything
// more (see the package documentation).
func (a *Advertiser) Close() error {
	a.once.Do(a.srv.Shutdown)
	return nil
}

// packCheck packs the records zeroconf's server sends, with the names it
// derives from its arguments (see composeLookupAnswers in zeroconf's
// server.go), so that a message that would not pack is refused up front.
func packCheck(instance, host string, port int, txt []string, addrs []netip.Addr) error {
	rec := zeroconf.NewServiceRecord(instance, ServiceType, Domain)
	target := host + ".local."
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET}
	}
	m := &dns.Msg{Compress: true}
	m.Response = true
	m.Answer = []dns.RR{
		&dns.SRV{Hdr: hdr(rec.ServiceInstanceName(), dns.TypeSRV), Port: uint16(port), Target: target},
		&dns.TXT{Hdr: hdr(rec.ServiceInstanceName(), dns.TypeTXT), Txt: txt},
		&dns.PTR{Hdr: hdr(rec.ServiceName(), dns.TypePTR), Ptr: rec.ServiceInstanceName()},
		&dns.PTR{Hdr: hdr(rec.ServiceTypeName(), dns.TypePTR), Ptr: rec.ServiceName()},
	}
	for _, a := range addrs {
		if a.Is4() {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(target, dns.TypeA), A: a.AsSlice()})
		} else {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(target, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	_, err := m.Pack()
	return err
}

// multicastInterfaces returns the interfaces zeroconf uses by default: up,
// with the MULTICAST flag.
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
