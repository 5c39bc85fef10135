package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/grandcat/zeroconf"
	"github.com/miekg/dns"
)

const goodFP = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func goodTXT() []string {
	return []string{"txtvers=1", "proxy=1080", "api=16990", "id=ABC123", "version=1.0.0", "fp=" + goodFP}
}

func TestParseTXT(t *testing.T) {
	with := func(extra ...string) []string { return append(extra, goodTXT()...) }
	without := func(key string) []string {
		return slices.DeleteFunc(goodTXT(), func(s string) bool { return strings.HasPrefix(s, key+"=") })
	}
	tooMany := make([]string, maxTXTStrings)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("x%d=y", i)
	}
	tests := []struct {
		name string
		txt  []string
		want txtFields // zero: rejected
	}{
		{"good", goodTXT(), txtFields{ProxyPort: 1080, APIPort: 16990, ID: "ABC123", Version: "1.0.0", Fingerprint: goodFP}},
		{"minimal", []string{"txtvers=1", "proxy=1", "id=x"}, txtFields{ProxyPort: 1, ID: "x"}},
		{"keys are case-insensitive", []string{"TxtVers=1", "PROXY=65535", "Id=x"}, txtFields{ProxyPort: 65535, ID: "x"}},
		{"first occurrence wins", with("proxy=99", "id=first"), txtFields{ProxyPort: 99, APIPort: 16990, ID: "first", Version: "1.0.0", Fingerprint: goodFP}},
		{"first occurrence wins even if malformed", with("proxy=x"), txtFields{}},
		{"empty and '=' strings ignored", with("", "=proxy=1", "="), txtFields{ProxyPort: 1080, APIPort: 16990, ID: "ABC123", Version: "1.0.0", Fingerprint: goodFP}},
		{"uppercase fingerprint lowered", []string{"txtvers=1", "proxy=1", "id=x", "fp=" + strings.ToUpper(goodFP)}, txtFields{ProxyPort: 1, ID: "x", Fingerprint: goodFP}},

		{"no txtvers", without("txtvers"), txtFields{}},
		{"txtvers 2", with("txtvers=2"), txtFields{}},
		{"txtvers boolean", with("txtvers"), txtFields{}},
		{"no proxy", without("proxy"), txtFields{}},
		{"no id", without("id"), txtFields{}},
		{"nothing", nil, txtFields{}},
		{"keys past the cap", append(tooMany, goodTXT()...), txtFields{}},

		{"proxy 0", with("proxy=0"), txtFields{}},
		{"proxy 65536", with("proxy=65536"), txtFields{}},
		{"proxy negative", with("proxy=-1"), txtFields{}},
		{"proxy plus", with("proxy=+80"), txtFields{}},
		{"proxy space", with("proxy= 80"), txtFields{}},
		{"proxy hex", with("proxy=0x50"), txtFields{}},
		{"proxy huge", with("proxy=99999999999999999999"), txtFields{}},
		{"proxy empty", with("proxy="), txtFields{}},
		{"id empty", with("id="), txtFields{}},
		{"id space", with("id=a b"), txtFields{}},
		{"id too long", with("id=" + strings.Repeat("a", 65)), txtFields{}},
		{"id unicode", with("id=é"), txtFields{}},
		{"id control", with("id=a\x00"), txtFields{}},

		{"api malformed", with("api=http"), txtFields{ProxyPort: 1080, ID: "ABC123", Version: "1.0.0", Fingerprint: goodFP}},
		{"peer malformed", with("peer=99999"), txtFields{ProxyPort: 1080, APIPort: 16990, ID: "ABC123", Version: "1.0.0", Fingerprint: goodFP}},
		{"peer", with("peer=16991"), txtFields{ProxyPort: 1080, APIPort: 16990, PeerPort: 16991, ID: "ABC123", Version: "1.0.0", Fingerprint: goodFP}},
		{"version with control", with("version=1\x1b[2J"), txtFields{ProxyPort: 1080, APIPort: 16990, ID: "ABC123", Fingerprint: goodFP}},
		{"version too long", with("version=" + strings.Repeat("1", 65)), txtFields{ProxyPort: 1080, APIPort: 16990, ID: "ABC123", Fingerprint: goodFP}},
		{"fp short", with("fp=abc"), txtFields{ProxyPort: 1080, APIPort: 16990, ID: "ABC123", Version: "1.0.0"}},
		{"fp not hex", with("fp=" + strings.Repeat("g", 64)), txtFields{ProxyPort: 1080, APIPort: 16990, ID: "ABC123", Version: "1.0.0"}},
		{"key with control ignored", append([]string{"txtvers=1", "proxy=1", "id=x"}, "\x00version=2", "ver\nsion=3"), txtFields{ProxyPort: 1, ID: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTXT(tt.txt)
			if tt.want == (txtFields{}) {
				if !errors.Is(err, errTXT) {
					t.Errorf("parseTXT(%q) = %+v, %v; want an errTXT", tt.txt, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseTXT(%q) = %+v, %v; want %+v", tt.txt, got, err, tt.want)
			}
		})
	}
}

func TestEncodeParseTXT(t *testing.T) {
	for _, f := range []txtFields{
		{ProxyPort: 1080, APIPort: 16990, ID: "ABC123", Version: "1.0.0", Fingerprint: goodFP},
		{ProxyPort: 1080, APIPort: 16990, PeerPort: 16991, ID: "ABC123", Fingerprint: goodFP},
		{ProxyPort: 65535, ID: "a.b:c_d-e"},
	} {
		got, err := parseTXT(encodeTXT(f))
		if err != nil || got != f {
			t.Errorf("parseTXT(encodeTXT(%+v)) = %+v, %v", f, got, err)
		}
	}
}

func ipList(ss ...string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		out = append(out, net.ParseIP(s))
	}
	return out
}

// TestCollectorHostile feeds the collector entries as a browse round hands
// them over from a hostile network: names and TXT strings in miekg/dns
// presentation form.
func TestCollectorHostile(t *testing.T) {
	type entry struct {
		name, host string
		port       int
		txt        []string
		ips        []net.IP
	}
	good := entry{`Presence\ on\ ws1`, "ws1.local.", 1080, goodTXT(), ipList("192.0.2.7")}
	mod := func(f func(*entry)) entry {
		e := good
		e.txt = slices.Clone(good.txt)
		f(&e)
		return e
	}
	var many []net.IP
	for i := range 40 {
		many = append(many, net.IPv4(192, 0, 2, byte(i+1)))
	}
	tests := []struct {
		name   string
		e      entry
		loopOK bool
		check  func(Instance) bool // nil: rejected
	}{
		{"good", good, false, func(i Instance) bool {
			return i.Name == "Presence on ws1" && i.Host == "ws1.local" && i.ProxyPort == 1080 && i.APIPort == 16990 &&
				i.ID == "ABC123" && i.Version == "1.0.0" && i.Fingerprint == goodFP &&
				slices.Equal(i.Addrs, []netip.Addr{netip.MustParseAddr("192.0.2.7")}) && slices.Equal(i.Text, goodTXT())
		}},
		{"escaped name", mod(func(e *entry) { e.name = `a\.b\032\195\169\\` }), false, func(i Instance) bool { return i.Name == `a.b é\` }},
		{"multi-label name", mod(func(e *entry) { e.name = "a.b" }), false, nil},
		{"empty name", mod(func(e *entry) { e.name = "" }), false, nil},
		{"name too long", mod(func(e *entry) { e.name = strings.Repeat("n", 64) }), false, nil},
		{"name invalid UTF-8", mod(func(e *entry) { e.name = `a\255` }), false, nil},
		{"name control", mod(func(e *entry) { e.name = `a\007` }), false, nil},
		{"name escape over 255", mod(func(e *entry) { e.name = `a\256` }), false, nil},
		{"name trailing backslash", mod(func(e *entry) { e.name = `a\` }), false, nil},
		{"SRV port 0", mod(func(e *entry) { e.port = 0 }), false, nil},
		{"SRV port differs from proxy", mod(func(e *entry) { e.port = 1081 }), false, nil},
		{"escaped TXT", mod(func(e *entry) { e.txt[3] = `id\061x\046y` }), false, func(i Instance) bool { return i.ID == "x.y" }},
		{"TXT with bad escape dropped", mod(func(e *entry) { e.txt = append([]string{`proxy=\999`}, e.txt...) }), false, func(i Instance) bool { return i.ProxyPort == 1080 && len(i.Text) == 6 }},
		{"TXT raw kept capped", mod(func(e *entry) {
			for range 100 {
				e.txt = append(e.txt, `junk\000\255`)
			}
		}), false, func(i Instance) bool { return len(i.Text) == maxTXTStrings && i.Text[6] == "junk\x00\xff" }},
		{"bad host dropped", mod(func(e *entry) { e.host = `evil\010host.local.` }), false, func(i Instance) bool { return i.Host == "" }},
		{"host too long dropped", mod(func(e *entry) { e.host = strings.Repeat("a.", 200) }), false, func(i Instance) bool { return i.Host == "" }},
		{"unusable addresses", mod(func(e *entry) {
			e.ips = ipList("0.0.0.0", "224.0.0.251", "255.255.255.255", "::", "ff02::fb", "127.0.0.1", "::1")
		}), false, nil},
		{"loopback on loopback", mod(func(e *entry) { e.ips = ipList("127.0.0.1", "::1") }), true, func(i Instance) bool { return len(i.Addrs) == 2 }},
		{"garbage address", mod(func(e *entry) { e.ips = []net.IP{{1, 2, 3}} }), false, nil},
		{"mapped and duplicate", mod(func(e *entry) { e.ips = ipList("::ffff:192.0.2.9", "192.0.2.9") }), false, func(i Instance) bool {
			return slices.Equal(i.Addrs, []netip.Addr{netip.MustParseAddr("192.0.2.9")})
		}},
		{"addresses capped", mod(func(e *entry) { e.ips = many }), false, func(i Instance) bool { return len(i.Addrs) == maxAddrs }},
		{"link-local gets the zone", mod(func(e *entry) { e.ips = ipList("fe80::1") }), false, func(i Instance) bool {
			return i.Addrs[0] == netip.MustParseAddr("fe80::1%eth9")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &collector{loopOK: tt.loopOK, zone: "eth9", byName: map[string]*Instance{}}
			c.add(tt.e.name, tt.e.host, tt.e.port, tt.e.txt, tt.e.ips, nil)
			got := c.list()
			if tt.check == nil {
				if len(got) != 0 {
					t.Errorf("collector accepted %+v; want it refused", got)
				}
				return
			}
			if len(got) != 1 || !tt.check(got[0]) {
				t.Errorf("collector returned %+v", got)
			}
		})
	}
}

func TestCollectorDedupSkipCap(t *testing.T) {
	c := &collector{skipID: "SELF", byName: map[string]*Instance{}}
	txt := func(id string) []string { return []string{"txtvers=1", "proxy=1080", "id=" + id} }
	c.add("b", "", 1080, txt("B"), ipList("192.0.2.2"), nil)
	c.add("a", "", 1080, txt("A"), ipList("192.0.2.1"), ipList("2001:db8::1"))
	c.add("a", "", 1080, txt("A2"), ipList("192.0.2.1", "192.0.2.3"), nil) // same name: addresses merge
	c.add("me", "", 1080, txt("SELF"), ipList("192.0.2.4"), nil)
	got := c.list()
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Fatalf("list = %+v; want a and b", got)
	}
	wantAddrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::1")}
	if got[0].ID != "A" || !slices.Equal(got[0].Addrs, wantAddrs) {
		t.Errorf("merged a = %+v; want ID A and addresses %v", got[0], wantAddrs)
	}

	for i := range 2 * maxInstances {
		c.add(fmt.Sprintf("n%d", i), "", 1080, txt("X"), ipList("192.0.2.5"), nil)
	}
	if n := len(c.list()); n != maxInstances {
		t.Errorf("after %d names, %d instances; want the cap, %d", 2*maxInstances+2, n, maxInstances)
	}
}

// TestEscapeLabelWire packs instance names as Advertise does, takes them
// apart as Browse does and as zeroconf's client (in older Presence
// versions) does, and checks that both recover the original name.
func TestEscapeLabelWire(t *testing.T) {
	for _, name := range []string{
		"Presence on ws1", "a.b", ".lead", "mid.dle", `back\slash`, `q"uo(te);@`, "é ü 日本", "Tab-less 100%",
		strings.Repeat("x", 63),
	} {
		if got := wireName(t, name); got != name {
			t.Errorf("name %q came back as %q", name, got)
		}
	}
}

func wireName(t *testing.T, name string) string {
	t.Helper()
	rec := zeroconf.NewServiceRecord(escapeLabel(name), ServiceType, Domain)
	m := new(dns.Msg)
	m.Answer = []dns.RR{&dns.PTR{
		Hdr: dns.RR_Header{Name: rec.ServiceName(), Rrtype: dns.TypePTR, Class: dns.ClassINET},
		Ptr: rec.ServiceInstanceName(),
	}}
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack %q: %v", name, err)
	}
	var back dns.Msg
	if err := back.Unpack(b); err != nil {
		t.Fatalf("unpack %q: %v", name, err)
	}
	ptr := back.Answer[0].(*dns.PTR)
	// What zeroconf's client makes of it.
	presented := strings.Trim(strings.Replace(ptr.Ptr, ptr.Hdr.Name, "", -1), ".")
	got, ok := unescape(presented, false)
	if !ok {
		t.Fatalf("unescape(%q) failed", presented)
	}
	// What Browse makes of it.
	label, ok := instanceLabel(ptr.Ptr)
	if !ok {
		t.Fatalf("instanceLabel(%q) failed", ptr.Ptr)
	}
	if ours, ok := unescape(label, false); !ok || ours != got {
		t.Errorf("Browse takes %q to %q, %v; zeroconf to %q", ptr.Ptr, ours, ok, got)
	}
	return got
}

func FuzzEscapeLabel(f *testing.F) {
	for _, s := range []string{"Presence on ws1", "a.b", `\`, "é", "\x00", "\\046"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !validInstanceName(name) || strings.HasSuffix(name, ".") {
			return // Advertise refuses it
		}
		if got := wireName(t, name); got != name {
			t.Errorf("name %q came back as %q", name, got)
		}
	})
}

// FuzzCollector checks that nothing from the network panics the collector
// and that whatever it accepts meets the documented limits.
func FuzzCollector(f *testing.F) {
	f.Add(`Presence\ on\ ws1`, "ws1.local.", 1080, "txtvers=1\x00proxy=1080\x00id=A\x00fp="+goodFP, []byte{192, 0, 2, 1})
	f.Add(`x\.y\255`, `h\000.local.`, 0, "txtvers=1\x00proxy=0", []byte{127, 0, 0, 1})
	f.Fuzz(func(t *testing.T, name, host string, port int, txt string, ip []byte) {
		c := &collector{byName: map[string]*Instance{}}
		c.add(name, host, port, strings.Split(txt, "\x00"), []net.IP{ip}, nil)
		for _, i := range c.list() {
			if !validInstanceName(i.Name) || !validPort(i.ProxyPort) || !validID(i.ID) ||
				(i.APIPort != 0 && !validPort(i.APIPort)) || (i.Version != "" && !validVersion(i.Version)) ||
				(i.Fingerprint != "" && len(i.Fingerprint) != 64) || (i.Host != "" && !hostLabelsOK(i.Host)) ||
				len(i.Addrs) == 0 || len(i.Addrs) > maxAddrs || len(i.Text) > maxTXTStrings || !utf8.ValidString(i.Name) {
				t.Errorf("accepted %+v", i)
			}
		}
	})
}

func TestAdvertiseInvalidConfig(t *testing.T) {
	ok := AdvertiseConfig{ProxyPort: 1080, ID: "x", Ifaces: []net.Interface{{Index: 1, Name: "lo"}}, IPs: []string{"127.0.0.1"}}
	tests := []struct {
		name string
		mod  func(*AdvertiseConfig)
	}{
		{"proxy port 0", func(c *AdvertiseConfig) { c.ProxyPort = 0 }},
		{"proxy port too big", func(c *AdvertiseConfig) { c.ProxyPort = 65536 }},
		{"API port negative", func(c *AdvertiseConfig) { c.APIPort = -1 }},
		{"no ID", func(c *AdvertiseConfig) { c.ID = "" }},
		{"ID with space", func(c *AdvertiseConfig) { c.ID = "a b" }},
		{"version with space", func(c *AdvertiseConfig) { c.Version = "1.0 beta" }},
		{"fingerprint short", func(c *AdvertiseConfig) { c.Fingerprint = "abcd" }},
		{"instance too long", func(c *AdvertiseConfig) { c.Instance = strings.Repeat("é", 32) }},
		{"instance control", func(c *AdvertiseConfig) { c.Instance = "a\nb" }},
		{"instance invalid UTF-8", func(c *AdvertiseConfig) { c.Instance = "a\xff" }},
		{"instance final dot", func(c *AdvertiseConfig) { c.Instance = "a." }},
		{"host with space", func(c *AdvertiseConfig) { c.Host = "a b" }},
		{"host label too long", func(c *AdvertiseConfig) { c.Host = strings.Repeat("h", 64) }},
		{"IP malformed", func(c *AdvertiseConfig) { c.IPs = []string{"127.0.0.256"} }},
		{"IP with zone", func(c *AdvertiseConfig) { c.IPs = []string{"fe80::1%lo"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			a, err := Advertise(cfg)
			if err == nil {
				a.Close()
				t.Fatalf("Advertise(%+v) succeeded; want an error", cfg)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	if n := defaultInstance(); !validInstanceName(n) || !strings.HasPrefix(n, "Presence") {
		t.Errorf("defaultInstance() = %q", n)
	}
	if h := defaultHost(); !hostLabelsOK(h) || strings.Contains(h, ".") {
		t.Errorf("defaultHost() = %q", h)
	}
	if id := NewID(); !validID(id) || id == NewID() {
		t.Errorf("NewID() = %q: not a valid ID, or not random", id)
	}
	if fp := Fingerprint(nil); fp != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("Fingerprint(nil) = %q", fp)
	}
}
