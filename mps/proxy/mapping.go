package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// DefaultMappingIdle closes a port mapping that has had no connection for
// this long, when MapConfig.IdleTimeout is zero.
const DefaultMappingIdle = 10 * time.Minute

// MapConfig describes a port mapping: a local listener whose every
// connection is a new channel to one device port.
type MapConfig struct {
	// Listen is the local address; default "127.0.0.1:0" (loopback, any
	// free port). Connections to a mapping are not authenticated, so a
	// non-loopback address exposes the device port to that network.
	Listen string
	// Device names the device for Dial (best its GUID, which cannot be
	// confused with another device's host name).
	Device string
	// Port is the device port.
	Port uint32
	// IdleTimeout closes the mapping after this long without a connection;
	// zero means DefaultMappingIdle, negative never.
	IdleTimeout time.Duration
	// User is who asked for the mapping, recorded in its sessions.
	User string
}

// MappingInfo is a value snapshot of a port mapping.
type MappingInfo struct {
	ID          uint64        `json:"id"`
	Listen      string        `json:"listen"`
	Device      string        `json:"device"`
	Port        uint32        `json:"port"`
	User        string        `json:"user,omitempty"`
	Created     time.Time     `json:"created"`
	IdleTimeout time.Duration `json:"idle_timeout_ns"`
	Active      int           `json:"active"`      // connections open now
	Connections uint64        `json:"connections"` // connections so far
}

// ErrMappingNotFound is returned for an unknown mapping id.
var ErrMappingNotFound = errors.New("proxy: no such mapping")

type mapping struct {
	s    *Server
	ln   net.Listener
	info MappingInfo // ID, Listen, Device, Port, User, Created, IdleTimeout

	mu       sync.Mutex
	active   int
	total    uint64
	lastUsed time.Time
	closed   bool
	why      string
	timer    *time.Timer
	done     chan struct{}
}

// Map opens a port mapping. It returns once the listener is bound.
func (s *Server) Map(cfg MapConfig) (MappingInfo, error) {
	if cfg.Device == "" || cfg.Port == 0 || cfg.Port > 65535 {
		return MappingInfo{}, errors.New("proxy: a mapping needs a device and a port from 1 to 65535")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultMappingIdle
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return MappingInfo{}, fmt.Errorf("proxy: mapping listener: %w", err)
	}
	m := &mapping{
		s:  s,
		ln: ln,
		info: MappingInfo{
			Listen: ln.Addr().String(), Device: cfg.Device, Port: cfg.Port, User: cfg.User,
			Created: time.Now(), IdleTimeout: cfg.IdleTimeout,
		},
		lastUsed: time.Now(),
		done:     make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return MappingInfo{}, net.ErrClosed
	}
	s.nextMap++
	m.info.ID = s.nextMap
	s.mappings[m.info.ID] = m
	s.wg.Add(1)
	s.mu.Unlock()
	if cfg.IdleTimeout > 0 {
		m.mu.Lock()
		m.timer = time.AfterFunc(cfg.IdleTimeout, m.checkIdle)
		m.mu.Unlock()
	}
	s.logger.Info("proxy: port mapping opened", "id", m.info.ID, "listen", m.info.Listen,
		"device", cfg.Device, "port", cfg.Port)
	go m.serve()
	return m.snapshot(), nil
}

// Mappings returns the open mappings, oldest first.
func (s *Server) Mappings() []MappingInfo {
	s.mu.Lock()
	ms := make([]*mapping, 0, len(s.mappings))
	for _, m := range s.mappings {
		ms = append(ms, m)
	}
	s.mu.Unlock()
	out := make([]MappingInfo, len(ms))
	for i, m := range ms {
		out[i] = m.snapshot()
	}
	slices.SortFunc(out, func(a, b MappingInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Unmap closes a mapping and its connections and waits until its port is
// free.
func (s *Server) Unmap(id uint64) error {
	s.mu.Lock()
	m := s.mappings[id]
	s.mu.Unlock()
	if m == nil {
		return ErrMappingNotFound
	}
	m.close(EndKilled)
	<-m.done
	return nil
}

// UnmapDevice closes every mapping to device (as named in its MapConfig)
// and returns how many there were. The engine calls it when a device's
// tunnel ends.
func (s *Server) UnmapDevice(device string) int {
	s.mu.Lock()
	var ms []*mapping
	for _, m := range s.mappings {
		if m.info.Device == device {
			ms = append(ms, m)
		}
	}
	s.mu.Unlock()
	for _, m := range ms {
		m.close(EndDevice)
	}
	return len(ms)
}

func (m *mapping) snapshot() MappingInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	info := m.info
	info.Active = m.active
	info.Connections = m.total
	return info
}

// close stops the listener and kills the mapping's sessions; serve then
// removes the mapping.
func (m *mapping) close(why string) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.why = why
	if m.timer != nil {
		m.timer.Stop()
	}
	m.mu.Unlock()
	m.ln.Close()
}

// checkIdle closes the mapping once it has been idle for its timeout.
func (m *mapping) checkIdle() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	idle := time.Since(m.lastUsed)
	if m.active > 0 || idle < m.info.IdleTimeout {
		m.timer.Reset(max(m.info.IdleTimeout-idle, time.Second))
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.close(EndIdle)
}

func (m *mapping) serve() {
	s := m.s
	var conns sync.WaitGroup
	var live sync.Map // *Session
	defer func() {
		m.mu.Lock()
		why := m.why
		m.mu.Unlock()
		live.Range(func(k, _ any) bool { k.(*Session).Kill(why); return true })
		conns.Wait()
		s.mu.Lock()
		delete(s.mappings, m.info.ID)
		s.mu.Unlock()
		s.logger.Info("proxy: port mapping closed", "id", m.info.ID, "listen", m.info.Listen, "reason", why)
		close(m.done)
		s.wg.Done()
	}()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			m.mu.Lock()
			if !m.closed {
				m.closed = true
				m.why = EndError
			}
			m.mu.Unlock()
			return
		}
		m.mu.Lock()
		m.active++
		m.total++
		m.mu.Unlock()
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer func() {
				m.mu.Lock()
				m.active--
				m.lastUsed = time.Now()
				m.mu.Unlock()
			}()
			m.handle(c, &live)
		}()
	}
}

// handle relays one mapping connection over a new channel.
func (m *mapping) handle(c net.Conn, live *sync.Map) {
	s := m.s
	defer c.Close()
	if !s.track(c) {
		return
	}
	defer s.untrack(c)
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	dc, err := s.dial(ctx, m.info.Device, m.info.Port, Console{User: m.info.User, Addr: c.RemoteAddr().String()})
	cancel()
	if err != nil {
		s.logger.Info("proxy: mapping dial refused", "id", m.info.ID, "device", m.info.Device, "port", m.info.Port, "err", err)
		if errors.Is(err, ErrUnknownHost) || errors.Is(err, ErrPortNotAllowed) {
			m.close(EndDevice) // the device has gone: free the port
		}
		return
	}
	defer s.untrack(dc)
	sess := s.beginSession(SessionInfo{
		Kind: KindMapping, Console: c.RemoteAddr().String(), User: m.info.User,
		Host: m.info.Device, Port: m.info.Port,
	}, dc, c)
	if sess == nil {
		dc.Close()
		return
	}
	defer s.forget(sess)
	live.Store(sess, struct{}{})
	defer live.Delete(sess)
	m.mu.Lock()
	closed, why := m.closed, m.why
	m.mu.Unlock()
	if closed {
		sess.Kill(why)
	}
	Relay(sess, c, nil, dc)
}
