package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// link is this instance's subscription to one peer, at the address it
// was told: the peer's table as last pushed, and the HTTP/2 connection
// that forwarded consoles use.
type link struct {
	addr string

	// Guarded by Peers.mu:
	member  Member           // from the peer's hello
	table   map[string]Owner // the devices it holds, by GUID
	up      bool             // the stream is open and synced
	since   time.Time        // when up last changed
	lastErr error
	contact time.Time // the last event heard
	stop    context.CancelFunc
	// kick cuts a redial's wait short: the peer is back (it subscribed
	// to us).
	kick chan struct{}
}

// LinkState is a snapshot of one peer link.
type LinkState struct {
	Addr    string    `json:"addr"`
	Member  Member    `json:"member"`
	Up      bool      `json:"up"`
	Devices int       `json:"devices"`
	Since   time.Time `json:"since"`
	Contact time.Time `json:"last_contact,omitzero"`
	Error   string    `json:"error,omitempty"`
}

// Add makes this instance subscribe to the peer at addr (HOST:PORT of its
// peer listener), and keep the link up, reconnecting with backoff, until
// Remove or Close. Adding an address twice is one link.
func (p *Peers) Add(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.links[addr] != nil {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	l := &link{addr: addr, table: map[string]Owner{}, stop: cancel, since: time.Now(), kick: make(chan struct{}, 1)}
	p.links[addr] = l
	p.wg.Go(func() { p.runLink(ctx, l) })
}

// Remove drops the link to addr and that peer's rows.
func (p *Peers) Remove(addr string) {
	p.mu.Lock()
	l := p.links[addr]
	delete(p.links, addr)
	p.mu.Unlock()
	if l != nil {
		l.stop()
		p.changed()
	}
}

// Links returns the state of every link, sorted by address.
func (p *Peers) Links() []LinkState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]LinkState, 0, len(p.links))
	for _, l := range p.links {
		s := LinkState{Addr: l.addr, Member: l.member, Up: l.up, Devices: len(l.table), Since: l.since, Contact: l.contact}
		if l.lastErr != nil {
			s.Error = l.lastErr.Error()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b LinkState) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// Lookup returns the peer that holds the device named name (a GUID in any
// case, or the host name AMT announced), and the row it pushed. The
// newest connection wins when two peers claim one GUID.
func (p *Peers) Lookup(name string) (Owner, bool) {
	name = NormalizeGUID(strings.TrimSuffix(name, ".amt"))
	p.mu.Lock()
	defer p.mu.Unlock()
	var best Owner
	found := false
	for _, l := range p.links {
		if !l.up {
			continue
		}
		o, ok := l.table[name]
		if !ok {
			for _, r := range l.table {
				if strings.EqualFold(r.Host, name) {
					o, ok = r, true
					break
				}
			}
		}
		if ok && (!found || o.Newer(best)) {
			best, found = o, true
		}
	}
	return best, found
}

// Owners returns every device the peers hold, newest owner per GUID.
func (p *Peers) Owners() []Owner {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]Owner{}
	for _, l := range p.links {
		if !l.up {
			continue
		}
		for g, o := range l.table {
			if cur, ok := m[g]; !ok || o.Newer(cur) {
				m[g] = o
			}
		}
	}
	out := make([]Owner, 0, len(m))
	for _, o := range m {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b Owner) int { return strings.Compare(a.GUID, b.GUID) })
	return out
}

func (p *Peers) changed() {
	if p.cfg.Changed != nil {
		p.cfg.Changed()
	}
}

// runLink keeps the subscription to l's peer up until ctx ends: it
// reconnects after a failure with a backoff of 1–4 s plus jitter per
// attempt, up to about 30 s.
func (p *Peers) runLink(ctx context.Context, l *link) {
	fails := 0
	for {
		err := p.subscribe(ctx, l)
		p.mu.Lock()
		wasUp := l.up
		if wasUp && ctx.Err() == nil {
			p.strandLocked(l.member.ID, l.table)
		}
		l.up, l.lastErr, l.since = false, err, time.Now()
		clear(l.table)
		p.mu.Unlock()
		if wasUp {
			p.log.Warn("peer link down: its devices are no longer reachable through it", "peer", l.member.ID, "addr", l.addr, "err", err)
			p.changed()
			fails = 0
		} else if fails == 0 {
			p.log.Warn("peer link cannot be opened", "addr", l.addr, "err", err)
		}
		fails++
		wait := min(time.Duration(fails)*(time.Second+rand.N(3*time.Second)), 30*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-l.kick:
			fails = 0
		}
	}
}

// subscribe reads one event stream from l's peer until it ends.
func (p *Peers) subscribe(ctx context.Context, l *link) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+l.addr+eventsPath, nil)
	if err != nil {
		return err
	}
	p.mu.Lock()
	req.Header.Set(headerPeerAddr, p.cfg.Self.PeerAddr)
	p.mu.Unlock()
	resp, err := p.client.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fleet: peer %s answered %s", l.addr, resp.Status)
	}
	if resp.TLS == nil {
		return errors.New("fleet: peer link not over TLS")
	}
	peer, err := p.cfg.PeerID(*resp.TLS)
	if err != nil {
		return err
	}
	if peer == p.cfg.Self.ID {
		return errors.New("fleet: that address is this instance")
	}
	// A peer that says nothing for three heartbeats is gone.
	alive := time.AfterFunc(3*HeartbeatEvery, cancel)
	defer alive.Stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	var staged []Owner // the table, until synced
	synced := false
	for sc.Scan() {
		alive.Reset(3 * HeartbeatEvery)
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("fleet: peer %s sent a bad event: %v", peer, err)
		}
		if err := p.apply(l, peer, ev, &staged, &synced); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// apply takes one event from peer's stream.
func (p *Peers) apply(l *link, peer string, ev Event, staged *[]Owner, synced *bool) error {
	now := time.Now()
	switch ev.Type {
	case EventHello:
		if ev.Member == nil || ev.Member.ID != peer {
			return fmt.Errorf("fleet: peer %s said hello as another instance", peer)
		}
		p.mu.Lock()
		l.member, l.contact = *ev.Member, now
		p.mu.Unlock()
		return nil
	case EventHeartbeat:
		p.mu.Lock()
		l.contact = now
		p.mu.Unlock()
		return nil
	case EventMembers:
		p.mu.Lock()
		l.contact = now
		p.mu.Unlock()
		if len(ev.Members) > maxMembers {
			return fmt.Errorf("fleet: peer %s named more than %d members", peer, maxMembers)
		}
		p.linkMembers(ev.Members)
		return nil
	case EventAccounts:
		p.mu.Lock()
		l.contact = now
		p.mu.Unlock()
		if ev.Accounts == nil || len(ev.Accounts.Accounts) > maxAccounts {
			return fmt.Errorf("fleet: peer %s sent a bad account set", peer)
		}
		if p.cfg.Accounts != nil {
			p.cfg.Accounts(peer, *ev.Accounts)
		}
		return nil
	case EventUp, EventDown:
	case EventSynced:
		p.mu.Lock()
		clear(l.table)
		for _, o := range *staged {
			l.table[o.GUID] = o
			delete(p.stranded, o.GUID) // it is somewhere by choice now
		}
		l.up, l.since, l.contact, l.lastErr = true, now, now, nil
		mine := p.newerThanMineLocked(*staged)
		p.mu.Unlock()
		*staged, *synced = nil, true
		p.log.Info("peer link up", "peer", peer, "addr", l.addr, "devices", len(l.table))
		p.moved(mine)
		p.changed()
		return nil
	default:
		return nil // a newer peer's event: ignored
	}
	if ev.Owner == nil || ev.Owner.Instance != peer || ev.Owner.GUID == "" {
		return fmt.Errorf("fleet: peer %s pushed a row that is not its own", peer)
	}
	o := *ev.Owner
	o.GUID = NormalizeGUID(o.GUID)
	if !*synced {
		if ev.Type == EventUp {
			if len(*staged) >= maxPeerDevices {
				return fmt.Errorf("fleet: peer %s pushed more than %d devices", peer, maxPeerDevices)
			}
			*staged = append(*staged, o)
		}
		return nil
	}
	p.mu.Lock()
	l.contact = now
	var mine []movedPair
	if ev.Type == EventUp {
		if _, ok := l.table[o.GUID]; !ok && len(l.table) >= maxPeerDevices {
			p.mu.Unlock()
			return fmt.Errorf("fleet: peer %s pushed more than %d devices", peer, maxPeerDevices)
		}
		l.table[o.GUID] = o
		delete(p.stranded, o.GUID)
		mine = p.newerThanMineLocked([]Owner{o})
	} else if cur, ok := l.table[o.GUID]; ok && cur.Same(o) {
		delete(l.table, o.GUID)
	}
	p.mu.Unlock()
	p.moved(mine)
	p.changed()
	return nil
}

type movedPair struct{ mine, newer Owner }

// newerThanMineLocked returns the rows that are newer connections of
// devices this instance holds.
func (p *Peers) newerThanMineLocked(rows []Owner) []movedPair {
	var out []movedPair
	for _, o := range rows {
		if m, ok := p.owners[o.GUID]; ok && o.Newer(m) {
			out = append(out, movedPair{m, o})
		}
	}
	return out
}

func (p *Peers) moved(pairs []movedPair) {
	if p.cfg.Moved == nil {
		return
	}
	for _, m := range pairs {
		p.cfg.Moved(m.mine, m.newer)
	}
}

// upMembers returns the instances this instance has an up link to, other
// than peer (whom they are for), at most maxMembers.
func (p *Peers) upMembers(peer string) []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Member
	for _, l := range p.links {
		if l.up && l.member.ID != peer && l.member.PeerAddr != "" && len(out) < maxMembers {
			out = append(out, Member{ID: l.member.ID, PeerAddr: l.member.PeerAddr})
		}
	}
	return out
}

// linkMembers links to the members a peer named that no link of ours
// reaches. The address is the one each member announces; trust still
// comes from the handshake.
func (p *Peers) linkMembers(ms []Member) {
	for _, m := range ms {
		if m.ID == "" || m.ID == p.cfg.Self.ID || p.linkedTo(m.ID) {
			continue
		}
		if _, _, err := net.SplitHostPort(m.PeerAddr); err != nil || len(m.PeerAddr) > 261 {
			continue
		}
		p.Add(m.PeerAddr)
	}
}

// kickLinks cuts short the redial wait of the links to instance id that
// are down: it has just subscribed to us, so it is back.
func (p *Peers) kickLinks(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		if !l.up && l.member.ID == id {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
	}
}

// linkTo returns the up link to instance id.
func (p *Peers) linkTo(id string) (*link, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		if l.up && l.member.ID == id {
			return l, true
		}
	}
	return nil, false
}

// Dial opens a console connection to port of the device o names, on the
// peer that holds it, in one hop: the peer dials its own tunnel and never
// forwards again. c is the console's identity, which the peer records.
// A peer that no longer holds the device answers ErrNotHere.
func (p *Peers) Dial(ctx context.Context, o Owner, port uint32, c Console) (net.Conn, error) {
	l, ok := p.linkTo(o.Instance)
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrNoPeer, o.Instance)
	}
	sctx, cancel := context.WithCancel(p.ctx)
	stopOnDial := context.AfterFunc(ctx, cancel)
	pr, pw := io.Pipe()
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Scheme: "https", Host: l.addr},
		Host:   net.JoinHostPort(o.GUID, fmt.Sprint(port)),
		Header: http.Header{headerUser: {clip(c.User)}, headerConsole: {clip(c.Addr)}},
		Body:   pr,
	}
	req = req.WithContext(sctx)
	resp, err := p.client.RoundTrip(req)
	dialDone := stopOnDial()
	if err != nil || !dialDone {
		cancel()
		pw.Close()
		if err == nil {
			resp.Body.Close()
			err = ctx.Err()
		}
		return nil, fmt.Errorf("fleet: forwarding to %s through %s: %w", o.GUID, o.Instance, err)
	}
	if resp.StatusCode != http.StatusOK {
		code := resp.Header.Get(headerError)
		resp.Body.Close()
		cancel()
		pw.Close()
		if e, ok := refusals[code]; ok {
			return nil, fmt.Errorf("%w (%s port %d on %s)", e, o.GUID, port, o.Instance)
		}
		return nil, fmt.Errorf("fleet: %s refused the forward to %s port %d: %s", o.Instance, o.GUID, port, resp.Status)
	}
	return &streamConn{r: resp.Body, w: pw, cancel: cancel, local: hopAddr(p.cfg.Self.ID), remote: hopAddr(o.Instance)}, nil
}

// streamConn is a forwarded console connection: an HTTP/2 stream to the
// owner, as a net.Conn. Deadlines are not supported.
type streamConn struct {
	r      io.ReadCloser
	w      *io.PipeWriter
	cancel context.CancelFunc
	once   sync.Once

	local, remote net.Addr
}

func (c *streamConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *streamConn) Write(b []byte) (int, error) { return c.w.Write(b) }

// CloseWrite ends the console's direction; the device's goes on.
func (c *streamConn) CloseWrite() error { return c.w.Close() }

func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.w.Close()
		c.cancel()
		c.r.Close()
	})
	return nil
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

var errNoDeadline = errors.New("fleet: deadlines are not supported on a forwarded connection")

func (c *streamConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *streamConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *streamConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

// hopAddr is the address of a forwarded connection's ends: an instance.
type hopAddr string

func (a hopAddr) Network() string { return "fleet" }
func (a hopAddr) String() string  { return string(a) }

var _ net.Conn = (*streamConn)(nil)
