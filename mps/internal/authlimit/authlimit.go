// Package authlimit limits failed logins per source address, for every
// door consoles knock on (the proxy, the API).
package authlimit

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults of a Limiter.
const (
	DefaultFailures   = 5           // failures allowed per window and source address
	DefaultWindow     = time.Minute // the window, and how long a source stays blocked
	maxLimiterEntries = 10000       // source addresses tracked at most
)

// Limiter counts failed logins per source address. A source with max
// failures within the window is refused without a password check until the
// window has passed since its last failure. Its methods are safe for
// concurrent use.
type Limiter struct {
	max    int
	window time.Duration
	// Now is the clock (tests replace it).
	Now func() time.Time

	mu      sync.Mutex
	sources map[netip.Addr]*failures
}

type failures struct {
	count int
	first time.Time // start of the current window
	last  time.Time
}

// New returns a Limiter allowing max failures per window; zero values
// select DefaultFailures and DefaultWindow.
func New(max int, window time.Duration) *Limiter {
	if max <= 0 {
		max = DefaultFailures
	}
	if window <= 0 {
		window = DefaultWindow
	}
	return &Limiter{max: max, window: window, Now: time.Now, sources: make(map[netip.Addr]*failures)}
}

// Window is how long a blocked source stays blocked (for Retry-After).
func (l *Limiter) Window() time.Duration { return l.window }

// SourceAddr is the IP of a connection's remote address (zero if unknown).
func SourceAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Blocked reports whether src has used up its failures.
func (l *Limiter) Blocked(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.sources[src]
	if f == nil {
		return false
	}
	now := l.Now()
	if f.count >= l.max {
		if now.Sub(f.last) < l.window {
			return true
		}
		delete(l.sources, src)
	}
	return false
}

// Fail records a failed login from src.
func (l *Limiter) Fail(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	f := l.sources[src]
	if f == nil || (f.count < l.max && now.Sub(f.first) >= l.window) {
		if f == nil && len(l.sources) >= maxLimiterEntries {
			l.evictLocked(now)
		}
		f = &failures{first: now}
		l.sources[src] = f
	}
	f.count++
	f.last = now
}

// Succeed forgets src's failures.
func (l *Limiter) Succeed(src netip.Addr) {
	l.mu.Lock()
	delete(l.sources, src)
	l.mu.Unlock()
}

// evictLocked drops expired entries, and if none expired, an arbitrary one,
// so the table never grows past maxLimiterEntries.
func (l *Limiter) evictLocked(now time.Time) {
	for k, f := range l.sources {
		if now.Sub(f.last) >= l.window {
			delete(l.sources, k)
		}
	}
	for k := range l.sources {
		if len(l.sources) < maxLimiterEntries {
			break
		}
		delete(l.sources, k)
	}
}
