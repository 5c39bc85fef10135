package mps

import (
	"runtime/debug"
	"time"
)

// Memory after a storm. When many tunnels end at once (the devices of an
// office that lost its network, say), their buffers and structs are
// garbage, but the runtime neither collects them nor gives the pages back
// until the heap grows again or its two-minute forced collection comes;
// the scavenger then returns the pages slowly. An admin watching the
// process sees the memory of tunnels that are gone. So, from the sweep:
// when the tunnel count has fallen by a quarter of its peak (and by at
// least returnMinDrop), the server collects and returns the freed pages
// at once (debug.FreeOSMemory), at most once per returnGap.
const (
	returnMinDrop = 256
	returnGap     = 10 * time.Second
)

// memoryState is the returner's state; only the sweep goroutine uses it.
type memoryState struct {
	peak int       // most tunnels since the last return
	last time.Time // the last return
}

// returnMemory runs after each sweep pass with the number of tunnels now.
func (s *Server) returnMemory(now time.Time, tunnels int) {
	m := &s.memory
	m.peak = max(m.peak, tunnels)
	drop := m.peak - tunnels
	if drop < returnMinDrop || drop < m.peak/4 || now.Sub(m.last) < returnGap {
		return
	}
	m.peak, m.last = tunnels, now
	s.memReturns.Add(1)
	debug.FreeOSMemory()
}
