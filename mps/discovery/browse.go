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

	"github.com/miekg/dns"
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
	// PeerPort is the fleet's peer-link port, or 0 if absent or malformed.
	PeerPort int `json:"peer_port,omitempty"`
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
// An instance that says goodbye (TTL 0) during the round is left out, as
// are answers that are malformed or incomplete, and anything beyond 256
// instances. It returns ctx's error if ctx ends before the round does, and
// [ErrNoInterface] if no socket could join the multicast group on the
// interfaces. Its sockets are closed and its goroutines have exited when
// it returns.
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
	query, err := browseQuery()
	if err != nil {
		return nil, err
	}
	l, err := openLink(ifaces)
	if err != nil {
		return nil, err
	}
	defer l.close()

	// Each reader keeps what its socket hears in a state of its own: a
	// responder sends its goodbye on a socket after every answer it sent
	// on that socket, but an IPv4 goodbye may overtake an IPv6 answer.
	var states []*browseState
	l.serve(func(*msock) func(packet) {
		st := newBrowseState()
		states = append(states, st)
		return func(p packet) {
			// RFC 6762 section 18: only responses with opcode and
			// response code 0 count.
			m := p.msg
			if m.Response && m.Opcode == dns.OpcodeQuery && m.Rcode == dns.RcodeSuccess {
				st.add(m)
			}
		}
	})
	send := func() {
		// Best effort: a socket that cannot send may still hear the
		// answers to the other one's query.
		for _, s := range l.socks {
			_ = s.multicastAll(query, 0)
		}
	}

	round := time.NewTimer(timeout)
	defer round.Stop()
	// Query at once, again 1 s later, then at doubling intervals (RFC 6762
	// section 5.2).
	gap := time.Second
	again := time.NewTimer(gap)
	defer again.Stop()
	send()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-again.C:
			send()
			gap *= 2
			again.Reset(gap)
		case <-round.C:
			done = true
		}
	}
	// The readers have exited when stop returns, leaving their states to
	// this goroutine.
	l.stop()
	c := newCollector(ifaces, cfg.SkipID)
	for _, st := range states {
		st.collect(c)
	}
	return c.list(), nil
}

// browseQuery returns the query of a browse round: the PTR records of the
// service type, with the multicast-response (QM) question that zeroconf's
// server also answers, and ID 0 (RFC 6762 section 18.1).
func browseQuery() ([]byte, error) {
	m := new(dns.Msg)
	m.SetQuestion(serviceName, dns.TypePTR)
	m.Id = 0
	m.RecursionDesired = false
	b, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("discovery: pack browse query: %v", err)
	}
	return b, nil
}

// serviceName is the DNS-SD service name browsed for, and its labels.
var (
	serviceName   = ServiceType + "." + Domain
	serviceLabels = dns.SplitDomainName(serviceName)
)

// Caps on what one browse round keeps from the network, beyond which new
// names are ignored. The collector applies the caps of the result.
const (
	maxBrowseNames = 4 * maxInstances // per kind of record
	maxHostAddrs   = 4 * maxAddrs     // per host name
)

// browseState is what one browse round has heard: the records of the
// service type, keyed by lower-cased name, as miekg/dns decodes them. A
// record with TTL 0 (a goodbye) removes what it names. It is not safe for
// concurrent use.
type browseState struct {
	ptr  map[string]string // instance name -> its first label
	srv  map[string]srvTarget
	txt  map[string][]string
	addr map[string][]net.IP // host name -> addresses
}

type srvTarget struct {
	port   uint16
	target string
}

func newBrowseState() *browseState {
	return &browseState{
		ptr:  make(map[string]string),
		srv:  make(map[string]srvTarget),
		txt:  make(map[string][]string),
		addr: make(map[string][]net.IP),
	}
}

// add records the answers and additional records of a response.
func (st *browseState) add(m *dns.Msg) {
	for _, rr := range m.Answer {
		st.addRR(rr)
	}
	for _, rr := range m.Extra {
		st.addRR(rr)
	}
}

func (st *browseState) addRR(rr dns.RR) {
	h := rr.Header()
	if h.Class&^cacheFlush != dns.ClassINET {
		return
	}
	gone := h.Ttl == 0
	switch rr := rr.(type) {
	case *dns.PTR:
		if !strings.EqualFold(h.Name, serviceName) {
			return
		}
		label, ok := instanceLabel(rr.Ptr)
		if !ok {
			return
		}
		putCapped(st.ptr, strings.ToLower(rr.Ptr), label, gone)
	case *dns.SRV:
		if _, ok := instanceLabel(h.Name); ok {
			putCapped(st.srv, strings.ToLower(h.Name), srvTarget{rr.Port, rr.Target}, gone)
		}
	case *dns.TXT:
		if _, ok := instanceLabel(h.Name); ok {
			putCapped(st.txt, strings.ToLower(h.Name), rr.Txt, gone)
		}
	case *dns.A:
		st.addAddr(h.Name, rr.A, gone)
	case *dns.AAAA:
		st.addAddr(h.Name, rr.AAAA, gone)
	}
}

// putCapped sets m[k] to v, or deletes it if gone. A new key is ignored
// once m holds maxBrowseNames.
func putCapped[V any](m map[string]V, k string, v V, gone bool) {
	if gone {
		delete(m, k)
		return
	}
	if _, ok := m[k]; ok || len(m) < maxBrowseNames {
		m[k] = v
	}
}

func (st *browseState) addAddr(host string, ip net.IP, gone bool) {
	k := strings.ToLower(host)
	list, ok := st.addr[k]
	i := slices.IndexFunc(list, ip.Equal)
	switch {
	case gone:
		if i >= 0 {
			st.addr[k] = slices.Delete(list, i, i+1)
		}
	case i >= 0 || len(list) >= maxHostAddrs || !ok && len(st.addr) >= maxBrowseNames:
	default:
		st.addr[k] = append(list, ip)
	}
}

// collect hands every instance with a PTR and an SRV record to c, which
// validates them.
func (st *browseState) collect(c *collector) {
	for k, label := range st.ptr {
		srv, ok := st.srv[k]
		if !ok {
			continue
		}
		c.add(label, srv.target, int(srv.port), st.txt[k], st.addr[strings.ToLower(srv.target)], nil)
	}
}

// instanceLabel returns the first label of name, in presentation form, if
// name is an instance of the service type: one label followed by
// serviceName.
func instanceLabel(name string) (string, bool) {
	labels := dns.SplitDomainName(name)
	if len(labels) != len(serviceLabels)+1 || labels[0] == "" {
		return "", false
	}
	for i, l := range serviceLabels {
		if !strings.EqualFold(labels[i+1], l) {
			return "", false
		}
	}
	return labels[0], true
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

// add validates one instance as a browse round heard it: names and TXT
// strings in miekg/dns presentation form (escaped). An instance seen again
// under the same name gains the new addresses and keeps everything else.
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
	inst.ProxyPort, inst.APIPort, inst.PeerPort = f.ProxyPort, f.APIPort, f.PeerPort
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
