package proxy

import (
	"cmp"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/internal/hub"
)

// Session kinds: how the console reached the device.
const (
	KindConnect = "http-connect" // HTTP CONNECT tunnel
	KindHTTP    = "http"         // absolute-form HTTP requests, forwarded
	KindSOCKS5  = "socks5"
	KindSOCKS4  = "socks4"
	KindMapping = "mapping" // a connection to a port mapping
	KindRelay   = "relay"   // the API's websocket relay
	KindFleet   = "fleet"   // forwarded by another instance of the fleet (Via names it)
	// KindTerminal is Presence's own Serial-over-LAN terminal (the
	// window's), a console inside the instance.
	KindTerminal = "terminal"
)

// End reasons of a session.
const (
	EndConsole  = "console-closed" // the console closed its connection
	EndDevice   = "device-closed"  // the device (or its tunnel) closed the channel
	EndKilled   = "killed"         // an administrator ended it
	EndShutdown = "shutdown"       // Presence stopped
	EndIdle     = "idle"           // nothing moved for the idle timeout
	EndError    = "error"          // a protocol error on either side
)

// SessionInfo is a value snapshot of one console session: one console
// connection to one device port.
type SessionInfo struct {
	ID      uint64 `json:"id"`
	Kind    string `json:"kind"`
	Console string `json:"console"` // the console's address
	User    string `json:"user,omitempty"`
	// Via is the instance of the fleet the console came through, for a
	// console of another instance forwarded here; the forwarding instance
	// records the same session too.
	Via string `json:"via,omitempty"`
	// Device is the device's identity (its GUID) when the dial function
	// reports one, otherwise the name the console used.
	Device string `json:"device"`
	Host   string `json:"host"` // the name the console used
	Port   uint32 `json:"port"`
	// BytesToDevice and BytesFromDevice count payload bytes relayed.
	BytesToDevice   int64     `json:"bytes_to_device"`
	BytesFromDevice int64     `json:"bytes_from_device"`
	Start           time.Time `json:"start"`
	End             time.Time `json:"end,omitzero"`
	EndReason       string    `json:"end_reason,omitempty"`
}

// SessionEvent reports a session that started (Ended false) or ended.
type SessionEvent struct {
	Ended   bool
	Session SessionInfo
}

// Identified is implemented by connections that know the identity of the
// device they reach (the engine's channels do). The proxy records it as the
// session's Device.
type Identified interface {
	DeviceID() string
}

// SessionStats are counters over the life of a [Sessions] table.
type SessionStats struct {
	Active          int
	Total           uint64
	BytesToDevice   int64
	BytesFromDevice int64
	Ended           map[string]uint64 // by end reason
}

// Sessions is the table of live console sessions, shared by the proxy, the
// port mappings and the API's relay. The zero value is not usable; use
// [NewSessions].
type Sessions struct {
	mu     sync.Mutex
	next   uint64
	live   map[uint64]*Session
	ended  map[string]uint64
	total  uint64
	closed bool

	toDev, fromDev atomic.Int64 // bytes of ended sessions
	events         hub.Hub[SessionEvent]
}

// NewSessions returns an empty table.
func NewSessions() *Sessions {
	return &Sessions{live: make(map[uint64]*Session), ended: make(map[string]uint64)}
}

// Session is one live console session. Its connections are closed by Kill
// and by the table's Close.
type Session struct {
	t    *Sessions
	info SessionInfo // immutable after Begin except End fields, set under t.mu

	toDev, fromDev atomic.Int64

	mu     sync.Mutex
	reason string // first reason given by end or kill
	closed bool
	conns  []net.Conn
}

// Begin registers a new session for info (ID and Start are filled in) and
// returns it, or nil when the table is closed. The caller must call End.
// The connections passed are closed by Kill.
func (t *Sessions) Begin(info SessionInfo, conns ...net.Conn) *Session {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.next++
	info.ID = t.next
	info.Start = time.Now()
	s := &Session{t: t, info: info, conns: conns}
	t.live[info.ID] = s
	t.total++
	t.mu.Unlock()
	t.events.Publish(SessionEvent{Session: info})
	return s
}

// ID returns the session's id.
func (s *Session) ID() uint64 { return s.info.ID }

// Attach adds a connection that Kill must close.
func (s *Session) Attach(c net.Conn) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.conns = append(s.conns, c)
	}
	s.mu.Unlock()
	if closed {
		c.Close()
	}
}

// Kill closes the session's connections, recording reason unless another
// reason came first. The session ends when its relay notices.
func (s *Session) Kill(reason string) {
	s.mu.Lock()
	if s.reason == "" {
		s.reason = reason
	}
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// End removes the session from the table and publishes it as ended. reason
// is used unless Kill gave one first. End closes no connection (the caller
// owns them: an HTTP console connection may go on to another session). End
// is idempotent.
func (s *Session) End(reason string) SessionInfo {
	s.mu.Lock()
	if s.reason == "" {
		s.reason = reason
	}
	reason = s.reason
	s.closed = true
	s.conns = nil
	s.mu.Unlock()
	t := s.t
	t.mu.Lock()
	if _, ok := t.live[s.info.ID]; !ok {
		info := s.info
		t.mu.Unlock()
		return info
	}
	delete(t.live, s.info.ID)
	s.info.End = time.Now()
	s.info.EndReason = reason
	s.info.BytesToDevice = s.toDev.Load()
	s.info.BytesFromDevice = s.fromDev.Load()
	t.ended[reason]++
	info := s.info
	t.mu.Unlock()
	t.toDev.Add(info.BytesToDevice)
	t.fromDev.Add(info.BytesFromDevice)
	t.events.Publish(SessionEvent{Ended: true, Session: info})
	return info
}

func (s *Session) snapshot() SessionInfo {
	info := s.info
	info.BytesToDevice = s.toDev.Load()
	info.BytesFromDevice = s.fromDev.Load()
	return info
}

// List returns a snapshot of the live sessions, oldest first.
func (t *Sessions) List() []SessionInfo {
	t.mu.Lock()
	out := make([]SessionInfo, 0, len(t.live))
	for _, s := range t.live {
		out = append(out, s.snapshot())
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b SessionInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Get returns a snapshot of one live session.
func (t *Sessions) Get(id uint64) (SessionInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.live[id]
	if !ok {
		return SessionInfo{}, false
	}
	return s.snapshot(), true
}

// Kill ends a live session as killed by an administrator. It reports
// whether the session existed.
func (t *Sessions) Kill(id uint64) bool {
	t.mu.Lock()
	s, ok := t.live[id]
	t.mu.Unlock()
	if ok {
		s.Kill(EndKilled)
	}
	return ok
}

// Subscribe returns a channel of session starts and ends (see hub.Hub):
// delivery never blocks a session, and what does not fit is dropped.
func (t *Sessions) Subscribe(buf int) (<-chan SessionEvent, func()) {
	return t.events.Subscribe(buf)
}

// Stats returns the table's counters, live sessions' bytes included.
func (t *Sessions) Stats() SessionStats {
	t.mu.Lock()
	st := SessionStats{Active: len(t.live), Total: t.total, Ended: make(map[string]uint64, len(t.ended))}
	for k, v := range t.ended {
		st.Ended[k] = v
	}
	for _, s := range t.live {
		st.BytesToDevice += s.toDev.Load()
		st.BytesFromDevice += s.fromDev.Load()
	}
	t.mu.Unlock()
	st.BytesToDevice += t.toDev.Load()
	st.BytesFromDevice += t.fromDev.Load()
	return st
}

// Close kills every live session with reason EndShutdown, refuses new ones
// and closes the subscriptions once the sessions have ended (the relays end
// them when they notice). It does not wait.
func (t *Sessions) Close() {
	t.mu.Lock()
	t.closed = true
	victims := make([]*Session, 0, len(t.live))
	for _, s := range t.live {
		victims = append(victims, s)
	}
	t.mu.Unlock()
	for _, s := range victims {
		s.Kill(EndShutdown)
	}
}

// CloseEvents closes every subscription. Call it after everything that
// ends sessions has finished, so the last ends are delivered.
func (t *Sessions) CloseEvents() { t.events.Close() }

// countingReader counts bytes read into n.
// Counted returns c with the session counting what is read from it as
// bytes from the device and what is written to it as bytes to the
// device, for a console inside Presence that talks to the device's
// channel itself rather than through [Relay].
func (s *Session) Counted(c net.Conn) net.Conn { return countedConn{c, s} }

type countedConn struct {
	net.Conn
	s *Session
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.s.fromDev.Add(int64(n))
	return n, err
}

func (c countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.s.toDev.Add(int64(n))
	return n, err
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// countingWriter counts bytes written into n.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
