package mps

import (
	"sync"
	"time"
)

// EventKind says what happened.
type EventKind int

// Event kinds.
const (
	EventConnected    EventKind = iota + 1 // a device is up and its ports have settled
	EventDisconnected                      // a device's tunnel ended (Reason says why)
	EventAuthFailed                        // a device offered wrong credentials
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventAuthFailed:
		return "auth-failed"
	}
	return "unknown"
}

// Event is a value snapshot of something that happened to a device. It holds
// no secret: for auth failures, only the user name the device offered.
type Event struct {
	Kind   EventKind
	Time   time.Time
	Device Device
	Reason string // tunnel.Reason text for disconnects and auth failures
	Detail string
	User   string // the offered user name, for EventAuthFailed
}

type subscriber struct {
	ch   chan Event
	once sync.Once
}

// Subscribe returns a channel that receives events, with room for buf of
// them. Delivery never blocks a tunnel: events that do not fit are dropped
// and counted in Stats().Dropped. cancel ends the subscription and closes
// the channel; Shutdown closes it too.
func (s *Server) Subscribe(buf int) (events <-chan Event, cancel func()) {
	sub := &subscriber{ch: make(chan Event, max(buf, 1))}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		close(sub.ch)
		return sub.ch, func() {}
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub.ch, func() {
		s.mu.Lock()
		_, ok := s.subs[sub]
		delete(s.subs, sub)
		s.mu.Unlock()
		if ok {
			sub.once.Do(func() { close(sub.ch) })
		}
	}
}

// publish delivers ev to every subscriber without blocking.
func (s *Server) publish(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		select {
		case sub.ch <- ev:
		default:
			s.stats.dropped.Add(1)
		}
	}
}

func (s *Server) closeSubs() {
	s.mu.Lock()
	subs := s.subs
	s.subs = make(map[*subscriber]struct{})
	s.mu.Unlock()
	for sub := range subs {
		sub.once.Do(func() { close(sub.ch) })
	}
}
