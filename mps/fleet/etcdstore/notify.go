package etcdstore

import (
	"context"

	"github.com/presence-mps/presence/mps/fleet"
)

// noteMoved queues a Moved callback. The queue holds at most one event
// per device this instance held, since a moved device is no longer held.
func (s *Store) noteMoved(mine, newer fleet.Owner) {
	s.nmu.Lock()
	s.moved = append(s.moved, movedEvent{mine, newer})
	s.nmu.Unlock()
	s.note()
}

// noteChanged queues a Changed callback; pending ones coalesce.
func (s *Store) noteChanged() {
	s.nmu.Lock()
	s.changed = true
	s.nmu.Unlock()
	s.note()
}

func (s *Store) note() {
	select {
	case s.notec <- struct{}{}:
	default:
	}
}

// notifier is the one goroutine that calls Moved and Changed, outside
// every lock, so that no callback stalls the worker or the watch.
func (s *Store) notifier(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notec:
		}
		s.nmu.Lock()
		moved, changed := s.moved, s.changed
		s.moved, s.changed = nil, false
		s.nmu.Unlock()
		for _, m := range moved {
			if s.onMoved != nil {
				s.onMoved(m.mine, m.newer)
			}
		}
		if changed && s.onChanged != nil {
			s.onChanged()
		}
	}
}
