package discovery

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The mDNS groups and port (RFC 6762 section 3).
var (
	group4 = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	group6 = &net.UDPAddr{IP: net.ParseIP("ff02::fb"), Port: 5353}
)

const (
	// mdnsPort is the mDNS port; a query from any other port is a "legacy"
	// one-shot query, answered by unicast (RFC 6762 section 6.7).
	mdnsPort = 5353
	// maxPacket is the largest mDNS message (RFC 6762 section 17). Larger
	// packets are dropped unread; what we send is checked against it.
	maxPacket = 9000
	// readRetry is the pause after a read error other than a closed
	// socket, so that a persistent error does not make the reader spin.
	readRetry = 50 * time.Millisecond
)

// msock is one mDNS socket, IPv4 or IPv6, bound to port 5353 and joined to
// the group on some interfaces. Its methods are safe for concurrent use.
type msock struct {
	v4     *ipv4.PacketConn // exactly one of v4 and v6 is set
	v6     *ipv6.PacketConn
	group  *net.UDPAddr
	ifaces []net.Interface // the interfaces that joined the group

	// wmu makes choosing the outgoing interface and writing one step:
	// where control messages are not supported (Windows) the interface is
	// a socket option.
	wmu sync.Mutex
}

// listenMDNS opens an mDNS socket for IPv4 (v6 false) or IPv6 and joins the
// group on every interface in ifaces that allows it. It fails if none does.
func listenMDNS(ifaces []net.Interface, v6 bool) (*msock, error) {
	network, group := "udp4", group4
	if v6 {
		network, group = "udp6", group6
	}
	// Listening on a multicast address makes the net package bind the
	// wildcard address with SO_REUSEADDR (and SO_REUSEPORT where needed),
	// so that other mDNS sockets on the host can share port 5353.
	c, err := net.ListenUDP(network, group)
	if err != nil {
		return nil, err
	}
	s := &msock{group: group}
	if v6 {
		s.v6 = ipv6.NewPacketConn(c)
	} else {
		s.v4 = ipv4.NewPacketConn(c)
	}
	for i := range ifaces {
		var err error
		if v6 {
			err = s.v6.JoinGroup(&ifaces[i], &net.UDPAddr{IP: group.IP})
		} else {
			err = s.v4.JoinGroup(&ifaces[i], &net.UDPAddr{IP: group.IP})
		}
		if err == nil {
			s.ifaces = append(s.ifaces, ifaces[i])
		}
	}
	if len(s.ifaces) == 0 {
		c.Close()
		return nil, fmt.Errorf("%s: no interface joined %v", network, group.IP)
	}
	// These are best effort: without control messages (Windows) packets
	// are accepted from every interface, as from any destination, and
	// answered by multicast only (see read); a smaller TTL than the 255
	// of RFC 6762 section 11 still reaches the link.
	if v6 {
		_ = s.v6.SetControlMessage(ipv6.FlagInterface|ipv6.FlagDst, true)
		_ = s.v6.SetMulticastHopLimit(255)
		_ = s.v6.SetHopLimit(255)
	} else {
		_ = s.v4.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true)
		_ = s.v4.SetMulticastTTL(255)
		_ = s.v4.SetTTL(255)
	}
	return s, nil
}

// packet is an mDNS message received on an msock.
type packet struct {
	msg     *dns.Msg
	src     *net.UDPAddr
	ifIndex int // the interface it arrived on, 0 if unknown
	// toGroup reports that it was sent to the mDNS group, which only
	// senders on the link can do. When it is false (the platform does not
	// say) the sender is not trusted with a unicast answer.
	toGroup bool
}

// read reads the next packet. ok is false for a packet that was dropped:
// too long, malformed, from an interface the socket did not join, or sent
// to an address other than the group (a unicast query, maybe from off the
// link).
func (s *msock) read(buf []byte) (p packet, ok bool, err error) {
	var (
		n       int
		src     net.Addr
		ifIndex int
		dst     net.IP
	)
	if s.v6 != nil {
		var cm *ipv6.ControlMessage
		n, cm, src, err = s.v6.ReadFrom(buf)
		if cm != nil {
			ifIndex, dst = cm.IfIndex, cm.Dst
		}
	} else {
		var cm *ipv4.ControlMessage
		n, cm, src, err = s.v4.ReadFrom(buf)
		if cm != nil {
			ifIndex, dst = cm.IfIndex, cm.Dst
		}
	}
	if err != nil {
		return packet{}, false, err
	}
	from, isUDP := src.(*net.UDPAddr)
	if !isUDP || n > maxPacket { // buf holds maxPacket+1 bytes, so longer ones show
		return packet{}, false, nil
	}
	if ifIndex != 0 && !slices.ContainsFunc(s.ifaces, func(ifi net.Interface) bool { return ifi.Index == ifIndex }) {
		return packet{}, false, nil
	}
	if dst != nil && !dst.Equal(s.group.IP) {
		return packet{}, false, nil
	}
	msg, ok := unpack(buf[:n])
	if !ok {
		return packet{}, false, nil
	}
	return packet{msg: msg, src: from, ifIndex: ifIndex, toGroup: dst != nil}, true, nil
}

// unpack decodes a DNS message. It reports false for anything that does
// not decode, including a panic in miekg/dns: what it decodes comes from
// the network, and one bad packet must not take the process down.
func unpack(b []byte) (m *dns.Msg, ok bool) {
	defer func() {
		if recover() != nil {
			m, ok = nil, false
		}
	}()
	m = new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, false
	}
	return m, true
}

// multicast sends b to the group on one interface.
func (s *msock) multicast(b []byte, ifi *net.Interface) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.v6 != nil {
		if err := s.v6.SetMulticastInterface(ifi); err != nil {
			return err
		}
		_, err := s.v6.WriteTo(b, &ipv6.ControlMessage{IfIndex: ifi.Index}, s.group)
		return err
	}
	if err := s.v4.SetMulticastInterface(ifi); err != nil {
		return err
	}
	_, err := s.v4.WriteTo(b, &ipv4.ControlMessage{IfIndex: ifi.Index}, s.group)
	return err
}

// multicastAll sends b to the group on every interface of the socket, or
// only on the one with index ifIndex if it is not 0. It returns the first
// error and still tries the other interfaces.
func (s *msock) multicastAll(b []byte, ifIndex int) error {
	var first error
	for i := range s.ifaces {
		if ifIndex != 0 && s.ifaces[i].Index != ifIndex {
			continue
		}
		if err := s.multicast(b, &s.ifaces[i]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// unicast sends b to addr, out of the interface with index ifIndex if it
// is not 0.
func (s *msock) unicast(b []byte, ifIndex int, addr *net.UDPAddr) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var err error
	if s.v6 != nil {
		var cm *ipv6.ControlMessage
		if ifIndex != 0 {
			cm = &ipv6.ControlMessage{IfIndex: ifIndex}
		}
		_, err = s.v6.WriteTo(b, cm, addr)
	} else {
		var cm *ipv4.ControlMessage
		if ifIndex != 0 {
			cm = &ipv4.ControlMessage{IfIndex: ifIndex}
		}
		_, err = s.v4.WriteTo(b, cm, addr)
	}
	return err
}

func (s *msock) setReadDeadline(t time.Time) error {
	if s.v6 != nil {
		return s.v6.SetReadDeadline(t)
	}
	return s.v4.SetReadDeadline(t)
}

func (s *msock) close() error {
	if s.v6 != nil {
		return s.v6.Close()
	}
	return s.v4.Close()
}

// link is the mDNS sockets of one advertisement or browse round, and the
// goroutines that use them: the readers that serve starts, and any other
// started with wg.Go, which must return soon after done is closed (see
// sleep). The link owns them: [link.stop] returns only once every one has
// exited.
type link struct {
	socks []*msock
	done  chan struct{} // closed by stop
	wg    sync.WaitGroup
	once  sync.Once
}

// openLink opens an IPv4 and an IPv6 mDNS socket on ifaces; either may fail
// (an interface with no IPv6, say), not both.
func openLink(ifaces []net.Interface) (*link, error) {
	l := &link{done: make(chan struct{})}
	s4, err4 := listenMDNS(ifaces, false)
	if err4 == nil {
		l.socks = append(l.socks, s4)
	}
	s6, err6 := listenMDNS(ifaces, true)
	if err6 == nil {
		l.socks = append(l.socks, s6)
	}
	if len(l.socks) == 0 {
		return nil, fmt.Errorf("%w: %v; %v", ErrNoInterface, err4, err6)
	}
	return l, nil
}

// serve starts one reader per socket. Each reader calls the handler that
// newHandler returns for its socket, from the reader's goroutine, for every
// packet that was not dropped, until stop. newHandler is called before the
// reader starts.
func (l *link) serve(newHandler func(*msock) func(packet)) {
	for _, s := range l.socks {
		handle := newHandler(s)
		l.wg.Go(func() { l.read(s, handle) })
	}
}

// read is the reader of one socket, see serve.
func (l *link) read(s *msock, handle func(packet)) {
	buf := make([]byte, maxPacket+1)
	for {
		p, ok, err := s.read(buf)
		if l.stopped() || errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			if !l.sleep(readRetry) {
				return
			}
			continue
		}
		if ok {
			handle(p)
		}
	}
}

// stopped reports whether stop has been called.
func (l *link) stopped() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// sleep waits for d and reports true, or reports false as soon as stop is
// called.
func (l *link) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.done:
		return false
	case <-t.C:
		return true
	}
}

// stop ends the link's goroutines and waits for them; the sockets stay
// open, so that the caller can still send (goodbyes) on them. A read
// deadline in the past wakes the readers. It is idempotent.
func (l *link) stop() {
	l.once.Do(func() {
		close(l.done)
		now := time.Now()
		for _, s := range l.socks {
			// An error means the socket is closed already, which wakes
			// its reader as well.
			_ = s.setReadDeadline(now)
		}
	})
	l.wg.Wait()
}

// close stops the link and closes its sockets.
func (l *link) close() {
	l.stop()
	for _, s := range l.socks {
		// Nothing is left to report a close error to: no goroutine uses
		// the socket any more, and the descriptor is released either way.
		_ = s.close()
	}
}
