package proxy

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the failed-login limiter.
const (
	DefaultAuthFailures = 5           // failures allowed per window and source address
	DefaultAuthWindow   = time.Minute // the window, and how long a source stays blocked
	maxLimiterEntries   = 10000       // source addresses tracked at most
)

// limiter counts failed logins per source address. A source with Max
// failures within Window is refused without a password check until Window
// has passed since its last failure.
type limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	sources map[netip.Addr]*failures
}

type failures struct {
	count int
	first time.Time // start of the current window
	last  time.Time
}

func newLimiter(max int, window time.Duration) *limiter {
	if max <= 0 {
		max = DefaultAuthFailures
	}
	if window <= 0 {
		window = DefaultAuthWindow
	}
	return &limiter{max: max, window: window, now: time.Now, sources: make(map[netip.Addr]*failures)}
}

// sourceAddr is the IP of a connection's remote address (zero if unknown).
func sourceAddr(a net.Addr) netip.Addr {
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

// blocked reports whether src has used up its failures.
func (l *limiter) blocked(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.sources[src]
	if f == nil {
		return false
	}
	now := l.now()
	if f.count >= l.max {
		if now.Sub(f.last) < l.window {
			return true
		}
		delete(l.sources, src)
	}
	return false
}

// fail records a failed login from src.
func (l *limiter) fail(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
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

// succeed forgets src's failures.
func (l *limiter) succeed(src netip.Addr) {
	l.mu.Lock()
	delete(l.sources, src)
	l.mu.Unlock()
}

// evictLocked drops expired entries, and if none expired, an arbitrary one,
// so the table never grows past maxLimiterEntries.
func (l *limiter) evictLocked(now time.Time) {
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

// authResult is the outcome of a credential check.
type authResult int

const (
	authOK      authResult = iota
	authFailed             // wrong or missing credentials
	authBlocked            // too many failures from this source
)

// authenticate checks user/pass for the connection's source address,
// applying the limiter.
func (pc *conn) authenticate(user, pass string) authResult {
	s := pc.s
	if s.limiter.blocked(pc.src) {
		return authBlocked
	}
	if s.cfg.Auth != nil && s.cfg.Auth(user, pass) {
		s.limiter.succeed(pc.src)
		return authOK
	}
	s.limiter.fail(pc.src)
	s.authFailures.Add(1)
	return authFailed
}
