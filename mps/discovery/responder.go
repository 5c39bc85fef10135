package discovery

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/grandcat/zeroconf"
	"github.com/miekg/dns"
)

const (
	// TTLs of the records, as zeroconf v1.0.0 sent them: host records
	// (A, AAAA) are short-lived as RFC 6762 section 10 asks.
	ttlService = 3200 // PTR, SRV, TXT
	ttlHost    = 120  // A, AAAA
	// ttlLegacy caps the TTLs in answers to legacy queries (RFC 6762
	// section 6.7).
	ttlLegacy = 10

	// cacheFlush is the top bit of the class: the cache-flush bit of a
	// record, or the unicast-response (QU) bit of a question (RFC 6762
	// sections 10.2 and 5.4).
	cacheFlush = 1 << 15

	// announceGap is the time between the two announcements (RFC 6762
	// section 8.3: at least two, one second apart).
	announceGap = time.Second

	// Caps on the work that one query can cause.
	maxQuestions = 32 // questions looked at
	maxKnown     = 64 // known answers looked at

	// The answers a responder sends, per socket: a burst of answerBurst,
	// then answerRate per second. Honest queriers ask a few times a
	// minute; a flood of queries does not become a flood of answers.
	answerBurst = 20
	answerRate  = 10
)

// enumName is the DNS-SD service type enumeration name (RFC 6763 section 9).
const enumName = "_services._dns-sd._udp.local."

// records are what one advertisement publishes, and the messages it
// sends unasked. The names and records are as miekg/dns decodes them from
// the wire, which is also how queries arrive, so that they compare with
// [strings.EqualFold] and [dns.IsDuplicate]. Records are not modified
// after newRecords, so they are safe to share between goroutines.
type records struct {
	svcName, instName, hostName string

	enumPTR *dns.PTR // _services._dns-sd._udp.local. -> _amt-mps._tcp.local.
	svcPTR  *dns.PTR // _amt-mps._tcp.local. -> instance
	srv     *dns.SRV
	txt     *dns.TXT
	addrs   []dns.RR // A and AAAA records of the host

	// announcement carries every record, the unique ones with the
	// cache-flush bit (RFC 6762 section 8.3); goodbye carries the
	// instance's records with TTL 0 (section 10.1). The service type
	// enumeration PTR is shared with every other instance on the link,
	// so it gets no goodbye.
	announcement, goodbye []byte
}

// newRecords builds the records for an instance: label is its name in
// presentation form (see [escapeLabel]), host is the SRV target without
// ".local". It fails if the records would not fit in an mDNS message, so
// that nothing can fail to pack later, when the goodbye is due.
func newRecords(label, host string, port int, txt []string, addrs []netip.Addr) (*records, error) {
	// zeroconf composes the names this way; peers running it (older
	// Presence versions) use the same ones.
	sr := zeroconf.NewServiceRecord(label, ServiceType, Domain)
	target := host + ".local."
	hdr := func(name string, t uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	m := &dns.Msg{Compress: true}
	m.Response = true
	m.Answer = []dns.RR{
		&dns.PTR{Hdr: hdr(sr.ServiceTypeName(), dns.TypePTR, ttlService), Ptr: sr.ServiceName()},
		&dns.PTR{Hdr: hdr(sr.ServiceName(), dns.TypePTR, ttlService), Ptr: sr.ServiceInstanceName()},
		&dns.SRV{Hdr: hdr(sr.ServiceInstanceName(), dns.TypeSRV, ttlService), Port: uint16(port), Target: target},
		&dns.TXT{Hdr: hdr(sr.ServiceInstanceName(), dns.TypeTXT, ttlService), Txt: txt},
	}
	for _, a := range addrs {
		if a.Is4() {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(target, dns.TypeA, ttlHost), A: a.AsSlice()})
		} else {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(target, dns.TypeAAAA, ttlHost), AAAA: a.AsSlice()})
		}
	}
	b, err := m.Pack()
	if err != nil {
		return nil, err
	}
	back, ok := unpack(b)
	if !ok || len(back.Answer) != len(m.Answer) {
		return nil, fmt.Errorf("records do not decode again")
	}
	enum, ok1 := back.Answer[0].(*dns.PTR)
	svc, ok2 := back.Answer[1].(*dns.PTR)
	srv, ok3 := back.Answer[2].(*dns.SRV)
	txtRR, ok4 := back.Answer[3].(*dns.TXT)
	if !ok1 || !ok2 || !ok3 || !ok4 || !slices.Equal(txtRR.Txt, txt) {
		return nil, fmt.Errorf("records do not decode again")
	}
	r := &records{enumPTR: enum, svcPTR: svc, srv: srv, txt: txtRR, addrs: back.Answer[4:]}
	r.svcName, r.instName, r.hostName = r.svcPTR.Hdr.Name, r.srv.Hdr.Name, r.srv.Target

	flush := func(rr dns.RR) dns.RR {
		rr = dns.Copy(rr)
		rr.Header().Class |= cacheFlush
		return rr
	}
	ann := []dns.RR{flush(r.srv), flush(r.txt), r.svcPTR, r.enumPTR}
	for _, a := range r.addrs {
		ann = append(ann, flush(a))
	}
	if r.announcement, err = packResponse(ann, nil); err != nil {
		return nil, err
	}
	bye := make([]dns.RR, 0, len(ann)-1)
	for _, rr := range ann {
		if rr == r.enumPTR {
			continue
		}
		rr = dns.Copy(rr)
		rr.Header().Ttl = 0
		bye = append(bye, rr)
	}
	if r.goodbye, err = packResponse(bye, nil); err != nil {
		return nil, err
	}
	return r, nil
}

// packResponse packs an mDNS response (RFC 6762 section 18) and checks
// that it fits in an mDNS message.
func packResponse(answer, extra []dns.RR) ([]byte, error) {
	m := &dns.Msg{Compress: true}
	m.Response, m.Authoritative = true, true
	m.Answer, m.Extra = answer, extra
	b, err := m.Pack()
	if err != nil {
		return nil, err
	}
	if len(b) > maxPacket {
		return nil, fmt.Errorf("message of %d bytes, more than %d", len(b), maxPacket)
	}
	return b, nil
}

// reply is an answer to a query.
type reply struct {
	b  []byte
	to *net.UDPAddr // nil: multicast, on the interface the query came in on
}

// answer returns the answer to the packet p, if it is a query for our
// records and the querier does not list them all as known answers
// (RFC 6762 section 7.1). Queries are answered by multicast; by unicast to
// the querier if it asks so (the QU bit) or is a legacy resolver (source
// port other than 5353, RFC 6762 section 6.7), as long as the query was
// sent to the group, which only hosts on the link can do. Probes (queries
// with an authority section) are not answered: Advertise does not defend
// its names.
func (r *records) answer(p packet) (reply, bool) {
	q := p.msg
	if q == nil || p.src == nil || q.Response || q.Opcode != dns.OpcodeQuery || len(q.Ns) > 0 {
		return reply{}, false
	}
	legacy := p.src.Port != mdnsPort
	var (
		qs            []dns.Question
		answer, extra []dns.RR
		wantUnicast   bool
	)
	for i, question := range q.Question {
		if i == maxQuestions {
			break
		}
		if c := question.Qclass &^ cacheFlush; c != dns.ClassINET && c != dns.ClassANY {
			continue
		}
		a, x := r.match(question)
		if len(a) == 0 {
			continue
		}
		qs = append(qs, question)
		wantUnicast = wantUnicast || question.Qclass&cacheFlush != 0
		answer = appendNew(answer, a...)
		extra = appendNew(extra, x...)
	}
	answer = slices.DeleteFunc(answer, func(rr dns.RR) bool { return knownAnswer(rr, q.Answer) })
	if len(answer) == 0 {
		return reply{}, false
	}
	extra = slices.DeleteFunc(extra, func(rr dns.RR) bool { return slices.Contains(answer, rr) })

	var rep reply
	switch {
	case (legacy || wantUnicast) && p.toGroup:
		rep.to = p.src
	case legacy:
		return reply{}, false // it listens only for the unicast answer
	}
	m := &dns.Msg{Compress: true}
	m.Response, m.Authoritative = true, true
	m.Answer, m.Extra = answer, extra
	if legacy {
		m.Id, m.Question = q.Id, qs
		m.Answer, m.Extra = capTTL(answer, ttlLegacy), capTTL(extra, ttlLegacy)
	}
	b, err := m.Pack()
	if err != nil || len(b) > maxPacket {
		return reply{}, false
	}
	rep.b = b
	return rep, true
}

// match returns the records that answer one question, and the additional
// records that go with them (RFC 6763 section 12).
func (r *records) match(q dns.Question) (answer, extra []dns.RR) {
	is := func(types ...uint16) bool {
		return q.Qtype == dns.TypeANY || slices.Contains(types, q.Qtype)
	}
	name := q.Name
	switch {
	case strings.EqualFold(name, enumName):
		if is(dns.TypePTR) {
			return []dns.RR{r.enumPTR}, nil
		}
	case strings.EqualFold(name, r.svcName):
		if is(dns.TypePTR) {
			return []dns.RR{r.svcPTR}, append([]dns.RR{r.srv, r.txt}, r.addrs...)
		}
	case strings.EqualFold(name, r.instName):
		if is(dns.TypeSRV) {
			answer = append(answer, r.srv)
			extra = r.addrs
		}
		if is(dns.TypeTXT) {
			answer = append(answer, r.txt)
		}
		return answer, extra
	case strings.EqualFold(name, r.hostName):
		for _, a := range r.addrs {
			if is(a.Header().Rrtype) {
				answer = append(answer, a)
			}
		}
		return answer, nil
	}
	return nil, nil
}

// appendNew appends those of rrs that are not in list yet.
func appendNew(list []dns.RR, rrs ...dns.RR) []dns.RR {
	for _, rr := range rrs {
		if !slices.Contains(list, rr) {
			list = append(list, rr)
		}
	}
	return list
}

// knownAnswer reports whether the query's known answers include rr with at
// least half its TTL left (RFC 6762 section 7.1).
func knownAnswer(rr dns.RR, known []dns.RR) bool {
	for i, k := range known {
		if i == maxKnown {
			break
		}
		if k.Header().Ttl >= rr.Header().Ttl/2 && dns.IsDuplicate(k, rr) {
			return true
		}
	}
	return false
}

// capTTL returns copies of rrs with TTLs of at most ttl.
func capTTL(rrs []dns.RR, ttl uint32) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		rr = dns.Copy(rr)
		rr.Header().Ttl = min(rr.Header().Ttl, ttl)
		out[i] = rr
	}
	return out
}

// bucket is a token bucket limiting the answers of one socket. It is used
// by that socket's reader only, so it is not safe for concurrent use. The
// zero value is a full bucket.
type bucket struct {
	tokens float64
	last   time.Time
}

// allow reports whether an answer may be sent at now, and takes a token
// if so.
func (b *bucket) allow(now time.Time) bool {
	if b.last.IsZero() {
		b.tokens = answerBurst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(answerBurst, b.tokens+d.Seconds()*answerRate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// responder answers queries for one advertisement's records on its link,
// and announces them. Its goroutines are the link's: one reader per
// socket, and one that sends the second announcement.
type responder struct {
	rec  *records
	link *link
}

// startResponder opens the sockets on ifaces and announces rec once
// before it returns, then starts answering queries and announces once
// more announceGap later.
func startResponder(ifaces []net.Interface, rec *records) (*responder, error) {
	l, err := openLink(ifaces)
	if err != nil {
		return nil, err
	}
	r := &responder{rec: rec, link: l}
	r.send(rec.announcement)
	l.serve(func(s *msock) func(packet) {
		var lim bucket
		return func(p packet) { r.handle(s, &lim, p) }
	})
	l.wg.Go(func() {
		if l.sleep(announceGap) {
			r.send(rec.announcement)
		}
	})
	return r, nil
}

// send multicasts b on every socket and interface. Sending is best effort,
// as with any datagram: an interface that fails is tried again at the next
// announcement or query, and there is no one to tell.
func (r *responder) send(b []byte) {
	for _, s := range r.link.socks {
		_ = s.multicastAll(b, 0)
	}
}

// handle answers one packet that arrived on s.
func (r *responder) handle(s *msock, lim *bucket, p packet) {
	rep, ok := r.rec.answer(p)
	if !ok || !lim.allow(time.Now()) {
		return
	}
	// Best effort, as in send.
	if rep.to != nil {
		_ = s.unicast(rep.b, p.ifIndex, rep.to)
	} else {
		_ = s.multicastAll(rep.b, p.ifIndex)
	}
}

// close stops answering and announcing and waits for the goroutines that
// did, so that nothing is sent after the goodbye; then it sends the goodbye
// and closes the sockets. Call it once.
func (r *responder) close() {
	r.link.stop()
	r.send(r.rec.goodbye)
	r.link.close()
}
