package tunnel

import (
	"crypto/tls"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// Hello summarizes a device's TLS ClientHello: the highest version it
// offered and which families of cipher suites. It is what a diagnosis
// needs (an AMT 11 offering only TLS 1.0, a device sharing no suite with
// the MPS) without keeping the suite list.
type Hello struct {
	// MaxVersion is the highest TLS version offered (tls.VersionTLS10 …);
	// 0 when no ClientHello arrived.
	MaxVersion uint16
	// Suites is a set of the Suite… bits.
	Suites uint8
	// Offered is how many suites the ClientHello listed (at most 255).
	Offered uint8
}

// Families of cipher suites in [Hello.Suites].
const (
	SuiteTLS13     uint8 = 1 << iota // a TLS 1.3 suite
	SuiteECDHEAEAD                   // ECDHE with AES-GCM or ChaCha20 (TLS 1.2)
	SuiteRSAAEAD                     // RSA key exchange with AES-GCM (TLS 1.2)
	SuiteECDHECBC                    // ECDHE with AES-CBC (legacy)
	SuiteRSACBC                      // RSA key exchange with AES-CBC (legacy)
	SuiteOther                       // anything the MPS never offers (3DES, RC4, DHE, ECDSA, …)
)

var suiteNames = [...]string{"TLS1.3", "ECDHE-AEAD", "RSA-AEAD", "ECDHE-CBC", "RSA-CBC", "other"}

// summarize makes the Hello of a ClientHello without allocating.
func summarize(hi *tls.ClientHelloInfo) Hello {
	var h Hello
	for _, v := range hi.SupportedVersions {
		h.MaxVersion = max(h.MaxVersion, v)
	}
	h.Offered = uint8(min(len(hi.CipherSuites), 255))
	for _, s := range hi.CipherSuites {
		switch s {
		case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256:
			h.Suites |= SuiteTLS13
		case tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
			h.Suites |= SuiteECDHEAEAD
		case tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384:
			h.Suites |= SuiteRSAAEAD
		case tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA:
			h.Suites |= SuiteECDHECBC
		case tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA:
			h.Suites |= SuiteRSACBC
		case 0x00ff, tls.TLS_FALLBACK_SCSV: // signalling values (0x00ff: TLS_EMPTY_RENEGOTIATION_INFO_SCSV), not suites
		default:
			h.Suites |= SuiteOther
		}
	}
	return h
}

// Legacy reports whether the device offered nothing newer than TLS 1.1.
func (h Hello) Legacy() bool { return h.MaxVersion != 0 && h.MaxVersion < tls.VersionTLS12 }

// SuiteNames returns the names of the suite families offered, e.g.
// ["RSA-CBC", "other"].
func (h Hello) SuiteNames() []string {
	var out []string
	for i, n := range suiteNames {
		if h.Suites&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// String renders the summary for an administrator, e.g.
// "offers up to TLS 1.0 with 2 suites (RSA-CBC, other)".
func (h Hello) String() string {
	if h.MaxVersion == 0 {
		return "no ClientHello"
	}
	return "offers up to " + tls.VersionName(h.MaxVersion) + " with " + itoa(int(h.Offered)) +
		" suites (" + strings.Join(h.SuiteNames(), ", ") + ")"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [4]byte
	i := len(b)
	for n > 0 && i > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// AuthOutcome says how the last USERAUTH_REQUEST of a failed handshake
// was refused.
type AuthOutcome uint8

// Outcomes of a refused USERAUTH_REQUEST.
const (
	AuthNotTried      AuthOutcome = iota // the handshake ended before USERAUTH_REQUEST
	AuthWrongPassword                    // a known user (or Config.UserExists unset) with a wrong password
	AuthUnknownUser                      // Config.UserExists said the user does not exist
	AuthOtherMethod                      // a method other than password, or a password change request
)

// HandshakeFailure is how far a failed handshake got: what a diagnosis
// needs. It holds no secret.
type HandshakeFailure struct {
	Hello      Hello       // the ClientHello; zero if none arrived (or the TLS config is not from TLSConfig)
	TLSVersion uint16      // the negotiated version; 0 unless the TLS handshake completed
	Device     apf.UUID    // from PROTOCOL_VERSION; zero before it
	User       string      // the last user name offered
	Auth       AuthOutcome // how the last USERAUTH_REQUEST was refused
	// Trickling is set on a handshake timeout while bytes were still
	// arriving (in the last quarter of the handshake time): a device too
	// slow, not a silent one.
	Trickling bool
}

// LegacyTLS is the run-time list of devices allowed TLS 1.0 and 1.1 when
// the listener is modern (TLS 1.2+, [TLSConfig] without legacy). Its zero
// value allows no device; it is safe for concurrent use, and a change
// applies to connections from then on.
//
// A device's GUID is known only after PROTOCOL_VERSION, inside TLS. So
// while the list is non-empty the listener accepts TLS 1.0/1.1 from
// anyone, and a legacy session of a device not on the list is closed
// right after its PROTOCOL_VERSION with DISCONNECT(host not allowed)
// and [ReasonLegacyTLS]. With an empty list a TLS 1.0/1.1 ClientHello is
// refused in TLS, as without the list.
type LegacyTLS struct {
	set   atomic.Pointer[map[apf.UUID]struct{}]
	cache atomic.Pointer[[2]*tls.Config] // a base config and its legacy variant
}

// Set replaces the list.
func (l *LegacyTLS) Set(devices []apf.UUID) {
	m := make(map[apf.UUID]struct{}, len(devices))
	for _, u := range devices {
		m[u] = struct{}{}
	}
	l.set.Store(&m)
}

// Devices returns the list, sorted.
func (l *LegacyTLS) Devices() []apf.UUID {
	out := []apf.UUID{}
	if m := l.set.Load(); m != nil {
		for u := range *m {
			out = append(out, u)
		}
	}
	slices.SortFunc(out, func(a, b apf.UUID) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// Any reports whether the list is non-empty.
func (l *LegacyTLS) Any() bool {
	if l == nil {
		return false
	}
	m := l.set.Load()
	return m != nil && len(*m) > 0
}

// Allowed reports whether device may use TLS 1.0/1.1.
func (l *LegacyTLS) Allowed(device apf.UUID) bool {
	m := l.set.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[device]
	return ok
}

// allowed is Allowed on a possibly nil list.
func (l *LegacyTLS) allowed(device apf.UUID) bool { return l != nil && l.Allowed(device) }

// config returns base, or while the list is non-empty a copy of base
// that accepts TLS 1.0 too (made once per base).
func (l *LegacyTLS) config(base *tls.Config) *tls.Config {
	if l == nil || !l.Any() || GlobalLegacy(base) {
		return base
	}
	if p := l.cache.Load(); p != nil && p[0] == base {
		return p[1]
	}
	v := base.Clone()
	v.MinVersion = tls.VersionTLS10
	l.cache.Store(&[2]*tls.Config{base, v})
	return v
}

// GlobalLegacy reports whether cfg accepts TLS 1.0/1.1 from every device
// ([TLSConfig] with legacy, the --legacy-tls flag).
func GlobalLegacy(cfg *tls.Config) bool {
	return cfg != nil && cfg.MinVersion != 0 && cfg.MinVersion < tls.VersionTLS12
}

// helloSlots maps an accepted connection in its TLS handshake to where
// the ClientHello's summary goes. GetConfigForClient sees only the
// connection, and wrapping the connection would cost every read of the
// tunnel's life; an entry lives only during the TLS handshake.
var helloSlots sync.Map // net.Conn → *Hello

// noteHello is the GetConfigForClient of [TLSConfig]: it records the
// summary and keeps the configuration.
func noteHello(hi *tls.ClientHelloInfo) (*tls.Config, error) {
	if v, ok := helloSlots.Load(hi.Conn); ok {
		*v.(*Hello) = summarize(hi)
	}
	return nil, nil
}

// LastReceived returns when the latest bytes arrived from the device.
func (c *Conn) LastReceived() time.Time { return time.Unix(0, c.lastRecv.Load()) }

// KeepaliveInterval returns the keepalive interval the tunnel asked AMT
// to use.
func (c *Conn) KeepaliveInterval() time.Duration { return c.cfg.KeepaliveInterval }

// IdleTimeout returns after how long without input the tunnel is dropped.
func (c *Conn) IdleTimeout() time.Duration { return c.cfg.IdleTimeout }

// trickling reports whether bytes arrived in the last quarter of the
// handshake time, as a handshake times out.
func (c *Conn) trickling() bool {
	last := c.lastRecv.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < c.cfg.HandshakeTimeout/4
}
