package mps

import (
	"time"
)

// EventKind says what happened.
type EventKind int

// Event kinds.
const (
	EventConnected    EventKind = iota + 1 // a device is up and its ports have settled
	EventDisconnected                      // a device's tunnel ended (Reason says why)
	EventAuthFailed                        // a device offered wrong credentials
	EventSuspect                           // a connected device missed a keepalive (Device.Suspect); it may be gone
	EventResumed                           // a suspect device sent something again
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventAuthFailed:
		return "auth-failed"
	case EventSuspect:
		return "suspect"
	case EventResumed:
		return "resumed"
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

// Subscribe returns a channel that receives events, with room for buf of
// them. Delivery never blocks a tunnel: events that do not fit are dropped
// and counted in Stats().Dropped. cancel ends the subscription and closes
// the channel; Shutdown closes it too.
func (s *Server) Subscribe(buf int) (events <-chan Event, cancel func()) {
	return s.events.Subscribe(buf)
}

// publish delivers ev to every subscriber without blocking.
func (s *Server) publish(ev Event) { s.events.Publish(ev) }
