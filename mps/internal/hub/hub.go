// Package hub fans values out to subscribers without ever blocking the
// publisher: a subscriber whose buffer is full misses the value, and the
// miss is counted.
package hub

import (
	"sync"
	"sync/atomic"
)

// Hub delivers published values to every current subscriber. The zero value
// is ready to use. Its methods are safe for concurrent use.
type Hub[T any] struct {
	mu      sync.Mutex
	closed  bool
	subs    map[*sub[T]]struct{}
	dropped atomic.Uint64
}

type sub[T any] struct {
	ch   chan T
	once sync.Once
}

// Subscribe returns a channel that receives published values, with room for
// buf of them (at least 1). cancel ends the subscription and closes the
// channel; Close closes it too. After Close the channel comes back closed.
func (h *Hub[T]) Subscribe(buf int) (values <-chan T, cancel func()) {
	s := &sub[T]{ch: make(chan T, max(buf, 1))}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	if h.subs == nil {
		h.subs = make(map[*sub[T]]struct{})
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s.ch, func() {
		h.mu.Lock()
		_, ok := h.subs[s]
		delete(h.subs, s)
		h.mu.Unlock()
		if ok {
			s.once.Do(func() { close(s.ch) })
		}
	}
}

// Publish delivers v to every subscriber that has room for it.
func (h *Hub[T]) Publish(v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- v:
		default:
			h.dropped.Add(1)
		}
	}
}

// Dropped is how many deliveries were missed because a buffer was full.
func (h *Hub[T]) Dropped() uint64 { return h.dropped.Load() }

// Close closes every subscription; later Subscribe calls get a closed
// channel and later Publish calls deliver nothing.
func (h *Hub[T]) Close() {
	h.mu.Lock()
	h.closed = true
	subs := h.subs
	h.subs = nil
	h.mu.Unlock()
	for s := range subs {
		s.once.Do(func() { close(s.ch) })
	}
}
