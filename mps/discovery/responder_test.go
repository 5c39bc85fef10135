package discovery

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testRecords returns the records of an instance named `Test é.x` on host
// ws1 with two addresses.
func testRecords(t testing.TB) *records {
	t.Helper()
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	r, err := newRecords(escapeLabel("Test é.x"), "ws1", 1080, goodTXT(), addrs)
	if err != nil {
		t.Fatalf("newRecords: %v", err)
	}
	return r
}

// onWire packs and unpacks m, as it would arrive.
func onWire(t testing.TB, m *dns.Msg) *dns.Msg {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack %v: %v", m, err)
	}
	back, ok := unpack(b)
	if !ok {
		t.Fatalf("unpack of %v failed", m)
	}
	return back
}

// kinds describes records as "TYPE name ttl" lines, with "!" after the
// type where the cache-flush bit is set.
func kinds(rrs []dns.RR) string {
	var b strings.Builder
	for _, rr := range rrs {
		h := rr.Header()
		flush := ""
		if h.Class&cacheFlush != 0 {
			flush = "!"
		}
		fmt.Fprintf(&b, "%s%s %s %d; ", dns.TypeToString[h.Rrtype], flush, h.Name, h.Ttl)
	}
	return b.String()
}

func TestNewRecords(t *testing.T) {
	r := testRecords(t)
	const (
		svc  = "_amt-mps._tcp.local."
		inst = `Test\ \195\169\.x._amt-mps._tcp.local.`
	)
	if r.svcName != svc || r.instName != inst || r.hostName != "ws1.local." {
		t.Errorf("names %q, %q, %q; want %q, %q, ws1.local.", r.svcName, r.instName, r.hostName, svc, inst)
	}
	ann, ok := unpack(r.announcement)
	if !ok {
		t.Fatal("announcement does not unpack")
	}
	want := "SRV! " + inst + " 3200; TXT! " + inst + " 3200; PTR " + svc + " 3200; PTR " + enumName + " 3200; " +
		"A! ws1.local. 120; AAAA! ws1.local. 120; "
	if got := kinds(ann.Answer); got != want || !ann.Response || !ann.Authoritative || ann.Id != 0 || len(ann.Extra) != 0 {
		t.Errorf("announcement %v\nanswers %s\nwant    %s", ann.MsgHdr, got, want)
	}
	bye, ok := unpack(r.goodbye)
	if !ok {
		t.Fatal("goodbye does not unpack")
	}
	want = "SRV! " + inst + " 0; TXT! " + inst + " 0; PTR " + svc + " 0; A! ws1.local. 0; AAAA! ws1.local. 0; "
	if got := kinds(bye.Answer); got != want || !bye.Response {
		t.Errorf("goodbye answers %s\nwant            %s", got, want)
	}

	// What Advertise's checks keep out, and what would not fit.
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	if _, err := newRecords(strings.Repeat("x", 64), "ws1", 1080, goodTXT(), addrs); err == nil {
		t.Error("newRecords(64-byte label) succeeded; want an error")
	}
	if _, err := newRecords("ok", "ws1", 1080, []string{strings.Repeat("t", 256)}, addrs); err == nil {
		t.Error("newRecords(256-byte TXT string) succeeded; want an error")
	}
	var many []netip.Addr
	for i := range 400 {
		many = append(many, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
	}
	if _, err := newRecords("ok", "ws1", 1080, goodTXT(), many); err == nil || !strings.Contains(err.Error(), "more than 9000") {
		t.Errorf("newRecords(400 addresses) = %v; want a message too long", err)
	}
}

func TestAnswer(t *testing.T) {
	r := testRecords(t)
	query := func(name string, qtype, qclass uint16) *dns.Msg {
		m := new(dns.Msg)
		m.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: qclass}}
		return m
	}
	in := uint16(dns.ClassINET)
	svc, inst, host := r.svcName, r.instName, "ws1.local."
	// A querier that sent the instance name escaped its own way, in
	// another case; on the wire it is the same name.
	instOther := `TEST\032\195\169\046X._AMT-MPS._tcp.LOCAL.`
	withKnown := func(ttl uint32) *dns.Msg {
		m := query(svc, dns.TypePTR, in)
		ptr := dns.Copy(r.svcPTR)
		ptr.Header().Ttl = ttl
		m.Answer = []dns.RR{ptr}
		return m
	}
	probe := query(inst, dns.TypeANY, in)
	probe.Ns = []dns.RR{r.srv}
	response := query(svc, dns.TypePTR, in)
	response.Response = true
	notify := query(svc, dns.TypePTR, in)
	notify.Opcode = dns.OpcodeNotify
	two := query(svc, dns.TypePTR, in)
	two.Question = append(two.Question, dns.Question{Name: host, Qtype: dns.TypeA, Qclass: in})

	tests := []struct {
		name    string
		q       *dns.Msg
		port    int
		toGroup bool
		// want is "" for no answer, else the answer and additional
		// records as kinds gives them, separated by "| ".
		want    string
		unicast bool
	}{
		{"browse", query(svc, dns.TypePTR, in), 5353, true,
			"PTR " + svc + " 3200; | SRV " + inst + " 3200; TXT " + inst + " 3200; A ws1.local. 120; AAAA ws1.local. 120; ", false},
		{"browse, any type", query(svc, dns.TypeANY, in), 5353, true,
			"PTR " + svc + " 3200; | SRV " + inst + " 3200; TXT " + inst + " 3200; A ws1.local. 120; AAAA ws1.local. 120; ", false},
		{"service types", query(enumName, dns.TypePTR, in), 5353, true, "PTR " + enumName + " 3200; | ", false},
		{"SRV", query(instOther, dns.TypeSRV, in), 5353, true, "SRV " + inst + " 3200; | A ws1.local. 120; AAAA ws1.local. 120; ", false},
		{"TXT", query(inst, dns.TypeTXT, in), 5353, true, "TXT " + inst + " 3200; | ", false},
		{"instance, any type", query(inst, dns.TypeANY, dns.ClassANY), 5353, true,
			"SRV " + inst + " 3200; TXT " + inst + " 3200; | A ws1.local. 120; AAAA ws1.local. 120; ", false},
		{"A", query("WS1.local.", dns.TypeA, in), 5353, true, "A ws1.local. 120; | ", false},
		{"AAAA", query(host, dns.TypeAAAA, in), 5353, true, "AAAA ws1.local. 120; | ", false},
		{"two questions", two, 5353, true,
			"PTR " + svc + " 3200; A ws1.local. 120; | SRV " + inst + " 3200; TXT " + inst + " 3200; AAAA ws1.local. 120; ", false},
		{"wrong type", query(svc, dns.TypeA, in), 5353, true, "", false},
		{"other name", query("_http._tcp.local.", dns.TypePTR, in), 5353, true, "", false},
		{"other class", query(svc, dns.TypePTR, dns.ClassCHAOS), 5353, true, "", false},
		{"QU", query(svc, dns.TypePTR, in|cacheFlush), 5353, true,
			"PTR " + svc + " 3200; | SRV " + inst + " 3200; TXT " + inst + " 3200; A ws1.local. 120; AAAA ws1.local. 120; ", true},
		{"QU, destination unknown", query(svc, dns.TypePTR, in|cacheFlush), 5353, false,
			"PTR " + svc + " 3200; | SRV " + inst + " 3200; TXT " + inst + " 3200; A ws1.local. 120; AAAA ws1.local. 120; ", false},
		{"legacy", query(svc, dns.TypePTR, in), 40000, true,
			"PTR " + svc + " 10; | SRV " + inst + " 10; TXT " + inst + " 10; A ws1.local. 10; AAAA ws1.local. 10; ", true},
		{"legacy, destination unknown", query(svc, dns.TypePTR, in), 40000, false, "", false},
		{"known answer", withKnown(3200), 5353, true, "", false},
		{"known answer, half TTL", withKnown(1600), 5353, true, "", false},
		{"known answer expiring", withKnown(1599), 5353, true,
			"PTR " + svc + " 3200; | SRV " + inst + " 3200; TXT " + inst + " 3200; A ws1.local. 120; AAAA ws1.local. 120; ", false},
		{"probe", probe, 5353, true, "", false},
		{"response", response, 5353, true, "", false},
		{"other opcode", notify, 5353, true, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Id = 4242
			src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 9), Port: tt.port}
			rep, ok := r.answer(packet{msg: onWire(t, tt.q), src: src, ifIndex: 3, toGroup: tt.toGroup})
			if !ok {
				if tt.want != "" {
					t.Fatalf("no answer; want %s", tt.want)
				}
				return
			}
			m, ok := unpack(rep.b)
			if !ok {
				t.Fatal("answer does not unpack")
			}
			if got := kinds(m.Answer) + "| " + kinds(m.Extra); got != tt.want {
				t.Errorf("answer %s\nwant   %s", got, tt.want)
			}
			if (rep.to != nil) != tt.unicast || rep.to != nil && rep.to != src {
				t.Errorf("answer to %v; want unicast %v", rep.to, tt.unicast)
			}
			if !m.Response || !m.Authoritative {
				t.Errorf("answer header %v; want a response with AA", m.MsgHdr)
			}
			// Only legacy answers repeat the ID and the question.
			var wantID uint16
			legacy := tt.port != mdnsPort
			if legacy {
				wantID = 4242
			}
			if m.Id != wantID || (len(m.Question) > 0) != legacy {
				t.Errorf("answer ID %d, questions %v; want ID %d and questions only if legacy", m.Id, m.Question, wantID)
			}
		})
	}
}

func TestBucket(t *testing.T) {
	var b bucket
	now := time.Unix(1e9, 0)
	n := 0
	for b.allow(now) {
		n++
	}
	if n != answerBurst {
		t.Errorf("%d answers at once; want %d", n, answerBurst)
	}
	now = now.Add(time.Second / answerRate)
	if !b.allow(now) || b.allow(now) {
		t.Errorf("after 1/%d s: want one more answer, and only one", answerRate)
	}
	now = now.Add(time.Hour)
	n = 0
	for b.allow(now) {
		n++
	}
	if n != answerBurst {
		t.Errorf("after an hour, %d answers; want the burst, %d", n, answerBurst)
	}
	if b.allow(now.Add(-time.Minute)) {
		t.Error("a clock going back refilled the bucket")
	}
}

// TestBrowseState feeds a browse round our own announcement and goodbye,
// and records from a hostile network.
func TestBrowseState(t *testing.T) {
	r := testRecords(t)
	ann, _ := unpack(r.announcement)
	bye, _ := unpack(r.goodbye)
	list := func(msgs ...*dns.Msg) []Instance {
		st := newBrowseState()
		for _, m := range msgs {
			st.add(m)
		}
		c := newCollector(nil, "")
		st.collect(c)
		return c.list()
	}
	got := list(ann)
	if len(got) != 1 || got[0].Name != "Test é.x" || got[0].Host != "ws1.local" || got[0].ProxyPort != 1080 ||
		got[0].ID != "ABC123" || !slices.Equal(got[0].Text, goodTXT()) ||
		!slices.Equal(got[0].Addrs, []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}) {
		t.Errorf("announcement gives %+v", got)
	}
	if got := list(ann, bye); len(got) != 0 {
		t.Errorf("announcement and goodbye give %+v; want nothing", got)
	}
	if got := list(ann, bye, ann); len(got) != 1 {
		t.Errorf("announced again: %+v; want the instance", got)
	}

	// The answer to a browse query carries the SRV, TXT and addresses as
	// additional records; split over two messages, in another case, they
	// still count.
	rep, ok := r.answer(packet{msg: browseMsg(t), src: &net.UDPAddr{Port: 5353}, toGroup: true})
	if !ok {
		t.Fatal("no answer to a browse query")
	}
	answer, _ := unpack(rep.b)
	ptrOnly := &dns.Msg{MsgHdr: answer.MsgHdr, Answer: answer.Answer}
	rest := &dns.Msg{MsgHdr: answer.MsgHdr, Answer: answer.Extra}
	for _, rr := range rest.Answer {
		rr.Header().Name = strings.ToUpper(rr.Header().Name)
	}
	if got := list(rest, ptrOnly); len(got) != 1 || len(got[0].Addrs) != 2 {
		t.Errorf("answer in two parts gives %+v; want the instance with two addresses", got)
	}
	if got := list(ptrOnly); len(got) != 0 {
		t.Errorf("PTR alone gives %+v; want nothing", got)
	}

	// Records of other services, of names that are not one label under
	// ours, of another class, and more names than the caps allow.
	hostile := new(dns.Msg)
	hostile.Response = true
	add := func(rr dns.RR) { hostile.Answer = append(hostile.Answer, rr) }
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 100}
	}
	add(&dns.PTR{Hdr: hdr("_http._tcp.local.", dns.TypePTR), Ptr: "x._http._tcp.local."})
	add(&dns.PTR{Hdr: hdr(r.svcName, dns.TypePTR), Ptr: "a.b._amt-mps._tcp.local."})
	add(&dns.PTR{Hdr: hdr(r.svcName, dns.TypePTR), Ptr: "_amt-mps._tcp.local."})
	chaos := &dns.PTR{Hdr: hdr(r.svcName, dns.TypePTR), Ptr: "c._amt-mps._tcp.local."}
	chaos.Hdr.Class = dns.ClassCHAOS
	add(chaos)
	st := newBrowseState()
	st.add(onWire(t, hostile))
	if len(st.ptr) != 0 {
		t.Errorf("hostile PTRs kept: %v", st.ptr)
	}
	for i := range 2 * maxBrowseNames {
		st.addRR(&dns.PTR{Hdr: hdr(r.svcName, dns.TypePTR), Ptr: fmt.Sprintf("n%d._amt-mps._tcp.local.", i)})
		st.addRR(&dns.A{Hdr: hdr(fmt.Sprintf("h%d.local.", i), dns.TypeA), A: net.IPv4(192, 0, 2, 1)})
		st.addRR(&dns.A{Hdr: hdr("one.local.", dns.TypeA), A: net.IPv4(10, byte(i>>8), byte(i), 1)})
	}
	if len(st.ptr) != maxBrowseNames || len(st.addr) != maxBrowseNames || len(st.addr["one.local."]) != maxHostAddrs {
		t.Errorf("kept %d PTRs, %d host names, %d addresses of one; want %d, %d, %d",
			len(st.ptr), len(st.addr), len(st.addr["one.local."]), maxBrowseNames, maxBrowseNames, maxHostAddrs)
	}
}

// browseMsg returns the query Browse sends.
func browseMsg(t testing.TB) *dns.Msg {
	t.Helper()
	b, err := browseQuery()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := unpack(b)
	if !ok {
		t.Fatal("browse query does not unpack")
	}
	return m
}

// FuzzPacket hands arbitrary packets to the responder and to a browse
// round: neither may panic, and an answer fits in an mDNS message.
func FuzzPacket(f *testing.F) {
	r := testRecords(f)
	f.Add(r.announcement, uint16(5353), true)
	f.Add(r.goodbye, uint16(5353), true)
	q, err := browseMsg(f).Pack()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(q, uint16(5353), true)
	f.Add(q, uint16(40000), true)
	f.Fuzz(func(t *testing.T, b []byte, port uint16, toGroup bool) {
		m, ok := unpack(b)
		if !ok {
			return
		}
		p := packet{msg: m, src: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 9), Port: int(port)}, toGroup: toGroup}
		if rep, ok := r.answer(p); ok && len(rep.b) > maxPacket {
			t.Errorf("answer of %d bytes", len(rep.b))
		}
		st := newBrowseState()
		st.add(m)
		c := newCollector(nil, "")
		st.collect(c)
		c.list()
	})
}
