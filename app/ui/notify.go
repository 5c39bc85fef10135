package ui

import (
	"fmt"
	"sync"
	"time"
)

// Change is a device coming or going, for notifications.
type Change struct {
	Up   bool
	Name string // host name, or GUID when the device announced none
}

// Coalescer turns device changes into notifications: one change says
// which device; many within Window make one summary, so a reconnect storm
// is one notification rather than thousands. Its methods are safe for
// concurrent use; Emit is called from a timer goroutine.
type Coalescer struct {
	// Window is how long changes are gathered after the first one.
	Window time.Duration
	// Emit shows a notification.
	Emit func(title, body string)

	mu      sync.Mutex
	pending []Change
	timer   *time.Timer
	stopped bool
}

// Add records a change; the notification follows within Window.
func (c *Coalescer) Add(ch Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.pending = append(c.pending, ch)
	if c.timer == nil {
		c.timer = time.AfterFunc(c.Window, c.flush)
	}
}

// Stop drops pending changes and emits nothing more.
func (c *Coalescer) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.pending = nil
}

func (c *Coalescer) flush() {
	c.mu.Lock()
	chs := c.pending
	c.pending, c.timer = nil, nil
	stopped := c.stopped
	c.mu.Unlock()
	if stopped || len(chs) == 0 {
		return
	}
	title, body := Summarize(chs)
	c.Emit(title, body)
}

// Summarize words a batch of changes: the last state of each device counts
// once (a device that dropped and came back is "reconnected").
func Summarize(chs []Change) (title, body string) {
	type state struct{ first, last bool }
	seen := make(map[string]*state)
	var order []string
	for _, ch := range chs {
		s, ok := seen[ch.Name]
		if !ok {
			s = &state{first: ch.Up}
			seen[ch.Name] = s
			order = append(order, ch.Name)
		}
		s.last = ch.Up
	}
	var up, down, back []string
	for _, n := range order {
		s := seen[n]
		switch {
		case s.last && !s.first:
			back = append(back, n)
		case s.last:
			up = append(up, n)
		default:
			down = append(down, n)
		}
	}
	if len(order) == 1 {
		n := order[0]
		switch {
		case len(up) == 1:
			return "Device connected", n + " is reachable through Presence."
		case len(back) == 1:
			return "Device reconnected", n + " dropped its tunnel and came back."
		default:
			return "Device disconnected", n + " is no longer reachable."
		}
	}
	body = ""
	for _, part := range []struct {
		n    int
		verb string
	}{{len(up), "connected"}, {len(down), "disconnected"}, {len(back), "reconnected"}} {
		if part.n == 0 {
			continue
		}
		if body != "" {
			body += ", "
		}
		body += fmt.Sprintf("%d %s", part.n, part.verb)
	}
	return fmt.Sprintf("%d devices changed", len(order)), body + "."
}
