//go:build linux

package discovery

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grandcat/zeroconf"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// These tests also send real multicast, on the loopback interface of a
// private network namespace only (see requireNetns).

// TestAdvertiseClose1000 advertises and closes 1,000 times in a row, while
// another goroutine keeps querying, so that Close often meets readers that
// have just started or are answering. No goroutine may be left over.
func TestAdvertiseClose1000(t *testing.T) {
	requireNetns(t)
	lo := loopbackIfaces(t)
	baseline := runtime.NumGoroutine()

	// The querier: legacy queries from its own port, so that every one is
	// answered (up to the rate limit), to the querier alone.
	q := legacySocket(t, lo[0])
	query := mdnsQuery(t, 1, serviceName, dns.TypePTR)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, maxPacket)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := q.WriteTo(query, nil, group4); err != nil {
				t.Errorf("querier: %v", err)
				return
			}
			// Take what answers came; none is needed.
			if err := q.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
				t.Errorf("querier: %v", err)
				return
			}
			for {
				if _, _, _, err := q.ReadFrom(buf); err != nil {
					break
				}
			}
		}
	})

	const n = 1000
	limit := 3 * time.Minute
	cfg := AdvertiseConfig{ProxyPort: 1080, ID: NewID(), Ifaces: lo, Host: "close-test", IPs: []string{"127.0.0.1"}}
	start := time.Now()
	for i := range n {
		a, err := Advertise(cfg)
		if err != nil {
			t.Fatalf("Advertise %d: %v", i, err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("Close %d: %v", i, err)
		}
		if d := time.Since(start); d > limit {
			t.Fatalf("%d rounds of Advertise and Close took %v, more than %v", i+1, d, limit)
		}
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("%d x Advertise and Close: %v (%v each)", n, elapsed, elapsed/n)
	waitGoroutines(t, baseline)
}

// TestWireLoopback checks the packets themselves, as another mDNS host on
// the link sees them: the announcement, answers to a multicast query and
// to a legacy one (with known-answer suppression), the second
// announcement, and the goodbye.
func TestWireLoopback(t *testing.T) {
	requireNetns(t)
	lo := loopbackIfaces(t)
	baseline := runtime.NumGoroutine()
	peer := peerSocket(t, lo[0])

	a, err := Advertise(AdvertiseConfig{
		Instance: "Wire test", ProxyPort: 1080, ID: NewID(), Ifaces: lo, Host: "wire-test", IPs: []string{"127.0.0.1"},
	})
	if err != nil {
		t.Fatalf("Advertise: %v", err)
	}
	defer a.Close()
	const (
		svc  = "_amt-mps._tcp.local."
		inst = `Wire\ test._amt-mps._tcp.local.`
	)

	// Advertise sends the first announcement before it returns.
	announced := time.Now()
	ann := nextMsg(t, peer, "the announcement", func(m *dns.Msg) bool {
		return m.Response && len(m.Answer) > 0 && m.Answer[0].Header().Rrtype == dns.TypeSRV
	})
	want := "SRV! " + inst + " 3200; TXT! " + inst + " 3200; PTR " + svc + " 3200; PTR " + enumName + " 3200; A! wire-test.local. 120; "
	if got := kinds(ann.Answer); got != want || !ann.Authoritative {
		t.Errorf("announcement %s\nwant         %s", got, want)
	}
	if srv := ann.Answer[0].(*dns.SRV); srv.Port != 1080 || srv.Target != "wire-test.local." {
		t.Errorf("announced SRV %v; want port 1080, target wire-test.local.", srv)
	}
	if addr := ann.Answer[4].(*dns.A); !addr.A.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("announced A %v; want 127.0.0.1", addr)
	}

	// A multicast query from port 5353 gets a multicast answer.
	if _, err := peer.WriteTo(mdnsQuery(t, 0, svc, dns.TypePTR), &ipv4.ControlMessage{IfIndex: lo[0].Index}, group4); err != nil {
		t.Fatal(err)
	}
	resp := nextMsg(t, peer, "an answer to a browse query", func(m *dns.Msg) bool {
		return m.Response && len(m.Answer) == 1 && m.Answer[0].Header().Rrtype == dns.TypePTR
	})
	want = "PTR " + svc + " 3200; | SRV " + inst + " 3200; TXT " + inst + " 3200; A wire-test.local. 120; "
	if got := kinds(resp.Answer) + "| " + kinds(resp.Extra); got != want {
		t.Errorf("answer %s\nwant   %s", got, want)
	}

	// A legacy querier gets unicast answers, with its ID and question
	// and short TTLs. The first query lists the answer as known, and the
	// second is sent to 127.0.0.1 rather than to the group, so only the
	// third is answered; one socket reads them in order.
	legacy := legacySocket(t, lo[0])
	known := mdnsMsg(1, svc, dns.TypePTR)
	known.Answer = []dns.RR{&dns.PTR{
		Hdr: dns.RR_Header{Name: svc, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 3000},
		Ptr: inst,
	}}
	toHost := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: mdnsPort}
	for _, q := range []struct {
		m  *dns.Msg
		to *net.UDPAddr
	}{{known, group4}, {mdnsMsg(3, inst, dns.TypeSRV), toHost}, {mdnsMsg(2, inst, dns.TypeSRV), group4}} {
		b, err := q.m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := legacy.WriteTo(b, nil, q.to); err != nil {
			t.Fatal(err)
		}
	}
	uni := nextMsg(t, legacy, "a unicast answer", func(m *dns.Msg) bool { return m.Response })
	want = "SRV " + inst + " 10; | A wire-test.local. 10; "
	if got := kinds(uni.Answer) + "| " + kinds(uni.Extra); uni.Id != 2 || got != want ||
		len(uni.Question) != 1 || uni.Question[0].Name != inst {
		t.Errorf("legacy answer ID %d, questions %v, records %s\nwant ID 2, the SRV question, %s", uni.Id, uni.Question, got, want)
	}

	// The second announcement follows the first a second later.
	nextMsg(t, peer, "the second announcement", func(m *dns.Msg) bool {
		return m.Response && kinds(m.Answer) == kinds(ann.Answer)
	})
	if d := time.Since(announced); d < announceGap/2 {
		t.Errorf("second announcement %v after Advertise; want about %v", d, announceGap)
	}

	// Close sends the goodbye.
	a.Close()
	bye := nextMsg(t, peer, "the goodbye", func(m *dns.Msg) bool {
		return m.Response && len(m.Answer) > 0 && m.Answer[0].Header().Ttl == 0
	})
	want = "SRV! " + inst + " 0; TXT! " + inst + " 0; PTR " + svc + " 0; A! wire-test.local. 0; "
	if got := kinds(bye.Answer); got != want {
		t.Errorf("goodbye %s\nwant    %s", got, want)
	}
	peer.Close()
	legacy.Close()
	waitGoroutines(t, baseline)
}

// TestBrowseSeesGoodbye closes an advertisement while a browse round that
// has heard it is still running: the round leaves it out, and keeps the
// one that stays.
func TestBrowseSeesGoodbye(t *testing.T) {
	requireNetns(t)
	lo := loopbackIfaces(t)
	baseline := runtime.NumGoroutine()
	peer := peerSocket(t, lo[0])
	cfg := AdvertiseConfig{Instance: "Leaving", ProxyPort: 1080, ID: NewID(), Ifaces: lo, Host: "leaving", IPs: []string{"127.0.0.1"}}
	leaving, err := Advertise(cfg)
	if err != nil {
		t.Fatalf("Advertise: %v", err)
	}
	defer leaving.Close()
	cfg.Instance, cfg.ID, cfg.Host = "Staying", NewID(), "staying"
	staying, err := Advertise(cfg)
	if err != nil {
		t.Fatalf("Advertise: %v", err)
	}
	defer staying.Close()

	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	type result struct {
		list []Instance
		err  error
	}
	done := make(chan result, 1)
	go func() {
		list, err := Browse(ctx, BrowseConfig{Ifaces: lo, Timeout: 3 * time.Second})
		done <- result{list, err}
	}()
	// The answer to the round's first query reached the browser's sockets
	// as it reached ours (loopback delivers to every member at once), so
	// the goodbye comes after it on each.
	nextMsg(t, peer, "an answer naming Leaving", func(m *dns.Msg) bool {
		if !m.Response || len(m.Answer) != 1 {
			return false
		}
		ptr, ok := m.Answer[0].(*dns.PTR)
		return ok && strings.HasPrefix(ptr.Ptr, "Leaving.")
	})
	leaving.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("Browse: %v", r.err)
	}
	if _, ok := findID(r.list, leaving.ID()); ok {
		t.Errorf("Browse found %+v after the goodbye; want Leaving gone", r.list)
	}
	if _, ok := findID(r.list, staying.ID()); !ok {
		t.Errorf("Browse found %+v; want Staying", r.list)
	}
	staying.Close()
	peer.Close()
	waitGoroutines(t, baseline)
}

// peerSocket returns a socket of another mDNS host on ifi: bound to port
// 5353 and a member of the IPv4 group. It is closed when the test ends.
func peerSocket(t *testing.T, ifi net.Interface) *ipv4.PacketConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", group4) // port 5353, shared
	if err != nil {
		t.Fatal(err)
	}
	p := ipv4.NewPacketConn(c)
	t.Cleanup(func() { p.Close() })
	if err := p.JoinGroup(&ifi, &net.UDPAddr{IP: group4.IP}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetMulticastInterface(&ifi); err != nil {
		t.Fatal(err)
	}
	return p
}

// legacySocket returns a socket for a legacy querier: its own port on
// 127.0.0.1, multicasting on ifi. It is closed when the test ends.
func legacySocket(t *testing.T, ifi net.Interface) *ipv4.PacketConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := ipv4.NewPacketConn(c)
	t.Cleanup(func() { p.Close() })
	if err := p.SetMulticastInterface(&ifi); err != nil {
		t.Fatal(err)
	}
	return p
}

func mdnsMsg(id uint16, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.Id = id
	m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	return m
}

func mdnsQuery(t *testing.T, id uint16, name string, qtype uint16) []byte {
	t.Helper()
	b, err := mdnsMsg(id, name, qtype).Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nextMsg reads from p, within bound, until a message for which match
// returns true arrives, and returns it.
func nextMsg(t *testing.T, p *ipv4.PacketConn, what string, match func(*dns.Msg) bool) *dns.Msg {
	t.Helper()
	if err := p.SetReadDeadline(time.Now().Add(bound)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, maxPacket)
	for {
		n, _, _, err := p.ReadFrom(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if m, ok := unpack(buf[:n]); ok && match(m) {
			return m
		}
	}
}

// TestZeroconfInterop checks that older Presence versions, which advertise
// and browse with zeroconf v1.0.0, and this one find each other. (It does
// not count goroutines: zeroconf's are not ours to wait for.)
func TestZeroconfInterop(t *testing.T) {
	requireNetns(t)
	lo := loopbackIfaces(t)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()

	// zeroconf's browser finds our advertisement.
	a, err := Advertise(AdvertiseConfig{
		Instance: "New Presence", ProxyPort: 1080, ID: NewID(), Ifaces: lo, Host: "new-host", IPs: []string{"127.0.0.1"},
	})
	if err != nil {
		t.Fatalf("Advertise: %v", err)
	}
	defer a.Close()
	r, err := zeroconf.NewResolver(zeroconf.SelectIfaces(lo), zeroconf.SelectIPTraffic(zeroconf.IPv4))
	if err != nil {
		t.Fatalf("zeroconf.NewResolver: %v", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	entries := make(chan *zeroconf.ServiceEntry)
	if err := r.Browse(rctx, ServiceType, Domain, entries); err != nil {
		t.Fatalf("zeroconf Browse: %v", err)
	}
	var found bool
	for e := range entries { // zeroconf closes it when rctx ends
		name, _ := unescape(e.Instance, false)
		if name == "New Presence" && e.Port == 1080 && e.HostName == "new-host.local." &&
			len(e.AddrIPv4) == 1 && e.AddrIPv4[0].Equal(net.IPv4(127, 0, 0, 1)) && slices.Contains(e.Text, "id="+a.ID()) {
			found = true
		}
	}
	if !found {
		t.Error("zeroconf's browser did not find our advertisement")
	}
	a.Close()

	// Our browser finds zeroconf's advertisement.
	id := NewID()
	txt := encodeTXT(txtFields{ProxyPort: 4433, ID: id, Version: "0.9.0"})
	srv, err := zeroconf.RegisterProxy(escapeLabel("Old Presence"), ServiceType, Domain, 4433, "old-host", []string{"127.0.0.1"}, txt, lo)
	if err != nil {
		t.Fatalf("zeroconf.RegisterProxy: %v", err)
	}
	got, err := Browse(ctx, BrowseConfig{Ifaces: lo, Timeout: 2 * time.Second})
	srv.Shutdown() // its receive goroutines have long been running: no WaitGroup race
	if err != nil {
		t.Fatalf("Browse: %v", err)
	}
	inst, ok := findID(got, id)
	if !ok || inst.Name != "Old Presence" || inst.Host != "old-host.local" || inst.ProxyPort != 4433 ||
		inst.Version != "0.9.0" || !slices.Equal(inst.Addrs, []netip.Addr{netip.MustParseAddr("127.0.0.1")}) {
		t.Errorf("Browse found %+v; want Old Presence on old-host.local, 127.0.0.1, port 4433, version 0.9.0", got)
	}
}
