package fleet

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The peer link protocol. Peers speak HTTP/2 over mutual TLS on the peer
// port; both certificates chain to the fleet's root and name an instance
// (Config.PeerID). Two kinds of request:
//
//   - GET /fleet/v1/events: a stream of JSON lines, one [Event] each, from
//     the instance asked: a hello naming it, the whole table of the
//     devices it holds, then every change, and a heartbeat when nothing
//     else happened for HeartbeatEvery. Each instance subscribes to every
//     peer it knows; a stream that ends clears that peer's rows.
//   - CONNECT <guid>:<port>: a console connection forwarded to the
//     instance that holds the device. The console's identity travels in
//     the Presence-User and Presence-Console headers; the forwarding
//     peer is the one the TLS handshake named. The owner dials only its
//     own tunnels: a device it does not hold is 404 with Presence-Error
//     "not-here", never a second hop.
//   - DELETE /fleet/v1/devices/<guid>: an administrator on the peer
//     disconnects a device this instance holds (disconnect.go).
//
// Every HeartbeatEvery an idle stream carries a members event (the
// instances the sender is linked to) in place of a heartbeat.
const (
	eventsPath = "/fleet/v1/events"

	headerUser    = "Presence-User"    // the console account that logged in on the forwarding instance
	headerConsole = "Presence-Console" // the console's address, as the forwarding instance saw it
	headerError   = "Presence-Error"   // why a forward was refused: not-here, no-port, busy, gone
	// headerPeerAddr is the subscriber's own peer listener: the instance
	// asked links back to it, so that a link one side was told of (by
	// --peer) carries devices both ways.
	headerPeerAddr = "Presence-Peer-Addr"

	// HeartbeatEvery is how often an idle event stream says it is alive;
	// a subscriber that hears nothing for three of them drops the link.
	HeartbeatEvery = 5 * time.Second

	// maxEventLine caps one line of an event stream: the hello and the
	// changes are small, a table is sent as one event per device; an
	// account set is one line of up to maxAccounts accounts.
	maxEventLine = 4 << 20
	// maxPeerDevices caps the rows one peer may push, so a hostile or
	// broken peer cannot grow our memory without bound.
	maxPeerDevices = 200_000
	// subscriberQueue is how many events may wait for a slow subscriber;
	// one that falls further behind is cut off and resubscribes (it then
	// gets the whole table again).
	subscriberQueue = 4096
)

// Event is one line of an event stream.
type Event struct {
	// Type is hello, up, down, synced or heartbeat.
	Type string `json:"type"`
	// Member is the sender (hello).
	Member *Member `json:"member,omitempty"`
	// Owner is a device that came up on the sender or left it (up, down;
	// the table at the start of a stream is a run of ups, then synced).
	Owner *Owner `json:"owner,omitempty"`
	// Accounts is the sender's set of fleet accounts (accounts), sent
	// after the table and whenever it changes. It holds passwords: it
	// travels only over the mutual-TLS link and is never logged.
	Accounts *AccountSet `json:"accounts,omitempty"`
	// Members are the instances the sender has an up link to (members),
	// sent in place of a heartbeat: a subscriber links to those it does
	// not know, so that a fleet whose instances were each told of one
	// peer (--peer) still links every instance to every other.
	Members []Member `json:"members,omitempty"`
}

// AccountSet is a fleet's CIRA and console accounts, as one instance has
// them, and the version of that set: the newest version wins on every
// instance. It is a value; its String never shows a password.
type AccountSet struct {
	// Version orders sets: the time (Unix nanoseconds) the set was last
	// changed on the instance where it changed.
	Version int64 `json:"version"`
	// Digest breaks a tie between two sets of one version (changed on two
	// instances at the same instant): the higher wins.
	Digest   string    `json:"digest"`
	Accounts []Account `json:"accounts"`
}

// Account is one account of a set.
type Account struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Password []byte `json:"password"`
}

// Newer reports whether s should replace t.
func (s AccountSet) Newer(t AccountSet) bool {
	if s.Version != t.Version {
		return s.Version > t.Version
	}
	return s.Digest > t.Digest
}

// String describes the set without its passwords.
func (s AccountSet) String() string {
	return fmt.Sprintf("fleet accounts (%d, version %d)", len(s.Accounts), s.Version)
}

// maxAccounts caps a pushed set.
const maxAccounts = 10_000

// Event types.
const (
	EventHello     = "hello"
	EventUp        = "up"
	EventDown      = "down"
	EventSynced    = "synced" // the table sent at the start is complete
	EventHeartbeat = "heartbeat"
	EventAccounts  = "accounts"
	EventMembers   = "members"
)

// maxMembers caps the members one event may name.
const maxMembers = 64

// Refusals of a forwarded connection, in Presence-Error and as errors.
var (
	// ErrNotHere means the instance asked does not hold the device (any
	// more): the caller looks the device up again, once.
	ErrNotHere = errors.New("fleet: the device is not on that instance")
	// ErrNoPort means the device does not offer the port.
	ErrNoPort = errors.New("fleet: the device does not offer that port")
	// ErrBusy means the device has no channel free.
	ErrBusy = errors.New("fleet: the device has no channel free")
	// ErrNoPeer means no link to the owner is up.
	ErrNoPeer = errors.New("fleet: no link to the instance that holds the device")
)

var refusals = map[string]error{"not-here": ErrNotHere, "no-port": ErrNoPort, "busy": ErrBusy}

func refusalCode(err error) string {
	for code, e := range refusals {
		if errors.Is(err, e) {
			return code
		}
	}
	return "gone"
}

// Console is who a forwarded connection is for: the account the console
// logged in with on the first instance, and its address.
type Console struct {
	User, Addr string
	// Via is the instance that forwarded it ("" for a console of our own).
	Via string
}

// Local is this instance's own devices, as the peer link needs them.
type Local interface {
	// DialLocal opens a channel to port of a device this instance holds,
	// for a console forwarded by a peer. A device it does not hold is an
	// error wrapping ErrNotHere; a port not offered ErrNoPort; no channel
	// free ErrBusy.
	DialLocal(ctx context.Context, guid string, port uint32, c Console) (net.Conn, error)
	// Relay copies between a forwarded console's stream and dc (from
	// DialLocal) until either ends, then closes both; it is where the
	// instance records the session.
	Relay(stream, dc net.Conn, f Forward)
	// Disconnect closes the tunnel of a device this instance holds, for
	// an administrator on a peer (c.Via); a device it does not hold is an
	// error wrapping ErrNotHere.
	Disconnect(guid string, c Console) error
}

// Forward is a console connection forwarded by a peer: for whom, to
// which device and port.
type Forward struct {
	Console
	GUID string
	Port uint32
}

// Config configures [Peers]. Self, Local, ServerTLS, ClientTLS and
// PeerID are required.
type Config struct {
	Self  Member
	Local Local
	// ServerTLS and ClientTLS are the mutual-TLS configurations of the
	// listener and of the links this instance dials: both must verify
	// that the other side holds a peer certificate of the fleet's root.
	ServerTLS, ClientTLS *tls.Config
	// PeerID returns the instance id of the verified peer of a handshake.
	PeerID func(tls.ConnectionState) (string, error)
	// Moved is told when a peer holds a newer connection of a device we
	// hold: the caller closes its tunnel (reason moved). It is called
	// from the link's goroutine; it must not block.
	Moved func(mine, newer Owner)
	// Changed, if set, is told that the peers' tables changed.
	Changed func()
	// Accounts, if set, is given every account set a peer sends (from
	// the link's goroutine; it must not block for long): the caller keeps
	// it if it is newer than its own.
	Accounts func(from string, set AccountSet)
	Logger   *slog.Logger
}

// Peers is this instance's side of the peer links: the listener that
// peers subscribe to and forward consoles through, a link to each peer it
// knows, and the tables of the devices they hold. It is safe for
// concurrent use. Close stops everything it started.
type Peers struct {
	cfg Config
	log *slog.Logger
	srv *http.Server
	// client is the HTTP/2 transport of every link this instance dials.
	client *http.Transport

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex               // guards the fields below
	links  map[string]*link         // by the address dialled
	subs   map[*subscriber]struct{} // streams peers read from us
	owners map[string]Owner         // our own devices, by GUID
	accts  *AccountSet              // our account set, sent to subscribers
	closed bool
	// stranded are devices a peer held when its link dropped: GUID to
	// that peer's id (home.go).
	stranded map[string]string
}

// New returns a Peers for cfg. Nothing listens or dials until Serve and
// Add.
func New(cfg Config) (*Peers, error) {
	if cfg.Local == nil || cfg.ServerTLS == nil || cfg.ClientTLS == nil || cfg.PeerID == nil || cfg.Self.ID == "" {
		return nil, errors.New("fleet: Config.Self, Local, ServerTLS, ClientTLS and PeerID are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Peers{cfg: cfg, log: cfg.Logger.With("part", "fleet"), links: map[string]*link{},
		subs: map[*subscriber]struct{}{}, owners: map[string]Owner{}, stranded: map[string]string{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())

	var protos http.Protocols
	protos.SetHTTP2(true)
	h2 := &http.HTTP2Config{
		// Large windows, so that one forwarded channel is not held back
		// by flow control on a fast LAN.
		MaxReceiveBufferPerConnection: 16 << 20,
		MaxReceiveBufferPerStream:     4 << 20,
		PingTimeout:                   HeartbeatEvery,
		SendPingTimeout:               3 * HeartbeatEvery,
	}
	stls := cfg.ServerTLS.Clone()
	stls.NextProtos = []string{"h2"}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(p.serveHTTP), TLSConfig: stls, Protocols: &protos, HTTP2: h2,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				c.SetDeadline(time.Time{})
			}
		},
	}
	ctls := cfg.ClientTLS.Clone()
	ctls.NextProtos = []string{"h2"}
	p.client = &http.Transport{
		TLSClientConfig: ctls, Protocols: &protos, HTTP2: h2, ForceAttemptHTTP2: true,
		TLSHandshakeTimeout: 10 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	return p, nil
}

// Serve accepts peers on ln until Close. It returns nil after Close.
func (p *Peers) Serve(ln net.Listener) error {
	err := p.srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close closes the listener, every link and every stream, and waits for
// the goroutines it started.
func (p *Peers) Close() error {
	p.mu.Lock()
	p.closed = true
	for s := range p.subs {
		s.close()
	}
	p.mu.Unlock()
	p.cancel()
	err := p.srv.Close()
	p.wg.Wait()
	p.client.CloseIdleConnections()
	return err
}

// peerOf returns the instance id a request's TLS handshake verified.
func (p *Peers) peerOf(r *http.Request) (string, error) {
	if r.TLS == nil {
		return "", errors.New("fleet: not over TLS")
	}
	return p.cfg.PeerID(*r.TLS)
}

func (p *Peers) serveHTTP(w http.ResponseWriter, r *http.Request) {
	peer, err := p.peerOf(r)
	if err != nil || peer == "" {
		// The listener's TLS already requires a fleet certificate; this
		// is a certificate of the root that names no instance.
		p.log.Warn("peer link refused: the certificate names no instance of this fleet", "remote", r.RemoteAddr, "err", err)
		http.Error(w, "not a peer of this fleet", http.StatusForbidden)
		return
	}
	if peer == p.cfg.Self.ID {
		http.Error(w, "that is this instance", http.StatusConflict)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		p.serveForward(w, r, peer)
	case r.Method == http.MethodGet && r.URL.Path == eventsPath:
		p.serveEvents(w, r, peer)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, devicesPath):
		p.serveDisconnect(w, r, peer)
	default:
		http.Error(w, "no such peer request", http.StatusNotFound)
	}
}

// Up tells the peers that this instance now holds o's device.
func (p *Peers) Up(o Owner) {
	o.GUID = NormalizeGUID(o.GUID)
	o.Instance = p.cfg.Self.ID
	p.mu.Lock()
	p.owners[o.GUID] = o
	p.broadcastLocked(Event{Type: EventUp, Owner: &o})
	p.mu.Unlock()
}

// Down tells the peers that o's tunnel ended here. A Down for a tunnel
// that was already replaced by a newer one is ignored.
func (p *Peers) Down(o Owner) {
	o.GUID = NormalizeGUID(o.GUID)
	o.Instance = p.cfg.Self.ID
	p.mu.Lock()
	if cur, ok := p.owners[o.GUID]; ok && cur.Same(o) {
		delete(p.owners, o.GUID)
		p.broadcastLocked(Event{Type: EventDown, Owner: &o})
	}
	p.mu.Unlock()
}

// backAddr is the address to link back to a subscriber at: the port it
// says it listens on, at the host it says, or, when that is a wildcard,
// at the address it came from.
func backAddr(said, remote string) string {
	if _, port, err := net.SplitHostPort(said); err != nil || port == "" || port == "0" {
		return ""
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return ""
	}
	back, _ := WithHost(said, host)
	return back
}

// linkedTo reports whether a link to instance id exists, up or not.
func (p *Peers) linkedTo(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.links {
		if l.member.ID == id {
			return true
		}
	}
	return false
}

// Self returns how this instance announces itself to its peers.
func (p *Peers) Self() Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.Self
}

// SetPeerAddr says where this instance's peer listener is, once it
// listens (its port may have been chosen then): subscribers tell peers.
func (p *Peers) SetPeerAddr(addr string) {
	p.mu.Lock()
	p.cfg.Self.PeerAddr = addr
	p.mu.Unlock()
}

// SetCIRAAddr says where AMT devices reach this instance (its MPS entry),
// once its CIRA listener is open; peers learn it in the hello.
func (p *Peers) SetCIRAAddr(addr string) {
	p.mu.Lock()
	p.cfg.Self.CIRAAddr = addr
	p.mu.Unlock()
}

// SetAccounts makes set the account set this instance sends its peers,
// now and to every peer that subscribes later.
func (p *Peers) SetAccounts(set AccountSet) {
	p.mu.Lock()
	p.accts = &set
	p.broadcastLocked(Event{Type: EventAccounts, Accounts: &set})
	p.mu.Unlock()
}

// subscriber is one peer reading our event stream.
type subscriber struct {
	peer  string
	ch    chan Event
	done  chan struct{}
	once  sync.Once
	drops bool // set when it fell behind; guarded by Peers.mu
}

func (s *subscriber) close() { s.once.Do(func() { close(s.done) }) }

// broadcastLocked queues ev for every subscriber; one that is too far
// behind is cut off.
func (p *Peers) broadcastLocked(ev Event) {
	for s := range p.subs {
		select {
		case s.ch <- ev:
		default:
			if !s.drops {
				s.drops = true
				p.log.Warn("peer fell behind our device events; its link restarts", "peer", s.peer)
			}
			s.close()
		}
	}
}

func (p *Peers) serveEvents(w http.ResponseWriter, r *http.Request, peer string) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	s := &subscriber{peer: peer, ch: make(chan Event, subscriberQueue), done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		http.Error(w, "stopping", http.StatusServiceUnavailable)
		return
	}
	// The table is taken under the same lock that queues changes, so
	// no change is lost between the two.
	table := make([]Owner, 0, len(p.owners))
	for _, o := range p.owners {
		table = append(table, o)
	}
	p.subs[s] = struct{}{}
	accts := p.accts
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.subs, s)
		p.mu.Unlock()
	}()
	p.log.Info("peer subscribed to our devices", "peer", peer, "devices", len(table))
	// Link back unless a link to it is up; a link to it waiting to
	// redial tries now (it is back, perhaps at a new address).
	if _, up := p.linkTo(peer); !up {
		if back := backAddr(r.Header.Get(headerPeerAddr), r.RemoteAddr); back != "" {
			p.Add(back)
		}
		p.kickLinks(peer)
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	p.mu.Lock()
	self := p.cfg.Self
	p.mu.Unlock()
	if enc.Encode(Event{Type: EventHello, Member: &self}) != nil {
		return
	}
	for i := range table {
		if enc.Encode(Event{Type: EventUp, Owner: &table[i]}) != nil {
			return
		}
	}
	if enc.Encode(Event{Type: EventSynced}) != nil {
		return
	}
	if accts != nil && enc.Encode(Event{Type: EventAccounts, Accounts: accts}) != nil {
		return
	}
	if bw.Flush() != nil {
		return
	}
	fl.Flush()
	beat := time.NewTicker(HeartbeatEvery)
	defer beat.Stop()
	for {
		var ev Event
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-beat.C:
			ev = Event{Type: EventHeartbeat}
			if m := p.upMembers(peer); len(m) > 0 {
				ev = Event{Type: EventMembers, Members: m}
			}
		case ev = <-s.ch:
		}
		if enc.Encode(ev) != nil {
			return
		}
		// Send what is queued in one write.
		for n := len(s.ch); n > 0; n-- {
			if enc.Encode(<-s.ch) != nil {
				return
			}
		}
		if bw.Flush() != nil {
			return
		}
		fl.Flush()
	}
}

// serveForward answers a console connection forwarded by peer: it dials
// the device's port on this instance only, and relays.
func (p *Peers) serveForward(w http.ResponseWriter, r *http.Request, peer string) {
	guid, portText, err := net.SplitHostPort(r.Host)
	port, perr := strconv.ParseUint(portText, 10, 32)
	if err != nil || perr != nil || guid == "" {
		http.Error(w, "want CONNECT <guid>:<port>", http.StatusBadRequest)
		return
	}
	c := Console{User: clip(r.Header.Get(headerUser)), Addr: clip(r.Header.Get(headerConsole)), Via: peer}
	dc, err := p.cfg.Local.DialLocal(r.Context(), NormalizeGUID(guid), uint32(port), c)
	if err != nil {
		w.Header().Set(headerError, refusalCode(err))
		code := http.StatusNotFound
		if errors.Is(err, ErrBusy) {
			code = http.StatusServiceUnavailable
		} else if errors.Is(err, ErrNoPort) {
			code = http.StatusForbidden
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	stream := &serverStream{body: r.Body, w: flushWriter{w}, local: hopAddr(p.cfg.Self.ID), remote: hopAddr(peer)}
	// The forwarding peer going away ends the relay.
	stop := context.AfterFunc(r.Context(), func() { stream.Close() })
	defer stop()
	p.cfg.Local.Relay(stream, dc, Forward{Console: c, GUID: NormalizeGUID(guid), Port: uint32(port)})
}

// clip keeps a peer-asserted string short and printable.
func clip(s string) string {
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// flushWriter flushes every write of a response stream.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil {
		if fl, ok := f.w.(http.Flusher); ok {
			fl.Flush()
		}
	}
	return n, err
}

// serverStream is a forwarded console connection on the owner's side: the
// request body and the response of a CONNECT stream, as a net.Conn.
// Deadlines are not supported.
type serverStream struct {
	body io.ReadCloser
	w    flushWriter

	mu     sync.Mutex
	closed bool

	local, remote net.Addr
}

func (c *serverStream) Read(b []byte) (int, error) { return c.body.Read(b) }

func (c *serverStream) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.w.Write(b)
}

// Close ends the stream's reading side; the handler's return ends the rest.
func (c *serverStream) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.body.Close()
}

func (c *serverStream) LocalAddr() net.Addr              { return c.local }
func (c *serverStream) RemoteAddr() net.Addr             { return c.remote }
func (c *serverStream) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *serverStream) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *serverStream) SetWriteDeadline(time.Time) error { return errNoDeadline }

// Relay copies between a and b until either side ends, then closes both
// and returns once both copies are done: a plain [Local.Relay] for
// instances that record nothing.
func Relay(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(b, a)
		b.Close()
		a.Close()
	}()
	io.Copy(a, b)
	a.Close()
	b.Close()
	<-done
}
