package tunnel

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// AuthFunc checks a device's CIRA credentials. It must compare the password
// in constant time and must not retain or log it. device is the UUID the
// device sent in PROTOCOL_VERSION.
type AuthFunc func(ctx context.Context, device apf.UUID, user string, password []byte) bool

// Config configures server-side tunnels. The zero value of each field means
// its default; Auth and TLS are required.
type Config struct {
	// TLS is the server TLS configuration; see [TLSConfig].
	TLS *tls.Config
	// Auth checks USERAUTH_REQUEST credentials.
	Auth AuthFunc
	// UserExists, if set, is asked after Auth refused a password whether
	// the user name exists, so that a diagnosis tells a wrong password
	// from an unknown user ([HandshakeFailure].Auth). It never sees the
	// password.
	UserExists func(ctx context.Context, user string) bool
	// Legacy, if set, lists the devices allowed TLS 1.0/1.1 on a modern
	// listener; see [LegacyTLS].
	Legacy *LegacyTLS

	// HandshakeTimeout bounds TLS plus APF up to authentication
	// (default 10 s). It is cleared once the device is authenticated.
	HandshakeTimeout time.Duration
	// KeepaliveInterval is what KEEPALIVE_OPTIONS_REQUEST asks AMT to use
	// (default 30 s).
	KeepaliveInterval time.Duration
	// IdleTimeout drops a tunnel from which nothing arrived for this long
	// (default 90 s). Keep it well above KeepaliveInterval: a tie caused
	// endless reconnect loops in another MPS (apf.md §10).
	IdleTimeout time.Duration
	// ForwardSettle is how long after the last tcpip-forward the tunnel is
	// considered ready and KEEPALIVE_OPTIONS_REQUEST is sent (default 250 ms).
	// It is not tied to any port: AMT's set of ports varies (apf.md §3 step 7).
	ForwardSettle time.Duration
	// MaxAuthAttempts is the number of failed passwords after which the
	// connection is closed (default 3).
	MaxAuthAttempts int
	// MaxChannels caps open channels per tunnel (default 64).
	MaxChannels int
	// MaxForwards caps announced ports per tunnel (default 32).
	MaxForwards int
	// Window is the receive window advertised per channel, and so the most
	// a channel buffers (default 128 KiB, at least 4 KiB).
	Window uint32
	// WriteTimeout drops a tunnel whose device stops reading for this long
	// while data waits to be sent (default 30 s).
	WriteTimeout time.Duration

	// OnReady, if set, is called once, from the reader goroutine or a timer,
	// when the forwards have settled. It must not block.
	OnReady func(*Conn)
	// OnForwards, if set, is called from the reader goroutine when the
	// forwards change after OnReady: a device whose first tcpip-forward
	// came after the settle time (on a loaded machine) was reported
	// without its host name and ports, and this reports them. It must
	// not block.
	OnForwards func(*Conn)
	// OnAuthFailure, if set, is called for every rejected password with the
	// user name the device offered (never the password). It must not block.
	OnAuthFailure func(device apf.UUID, user string, remote string)

	// Poller, if set, is where the tunnel may be parked ([Conn.Park]):
	// Accept then keeps the socket ready to be read without a goroutine.
	Poller *Poller

	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
}

// CheckTimeouts returns an error unless keepalive is positive and idle is
// longer: a tunnel silent for idle is dropped, so an idle timeout no
// longer than the keepalive interval drops devices between keepalives.
func CheckTimeouts(keepalive, idle time.Duration) error {
	if keepalive <= 0 || idle <= keepalive {
		return fmt.Errorf("the idle timeout (%s) must be longer than the keepalive interval (%s), or devices are dropped between keepalives", idle, keepalive)
	}
	return nil
}

// The keepalive interval and idle timeout a zero Config field stands for.
const (
	DefaultKeepalive = 30 * time.Second
	DefaultIdle      = 90 * time.Second
)

const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultKeepalive        = DefaultKeepalive
	defaultIdle             = DefaultIdle
	defaultSettle           = 250 * time.Millisecond
	defaultAuthAttempts     = 3
	defaultMaxChannels      = 64
	defaultMaxForwards      = 32
	defaultWindow           = 128 << 10
	minWindow               = 4 << 10
	defaultWriteTimeout     = 30 * time.Second
)

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c *Config) withDefaults() Config {
	d := *c
	if d.HandshakeTimeout <= 0 {
		d.HandshakeTimeout = defaultHandshakeTimeout
	}
	if d.KeepaliveInterval <= 0 {
		d.KeepaliveInterval = defaultKeepalive
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = defaultIdle
	}
	if d.ForwardSettle <= 0 {
		d.ForwardSettle = defaultSettle
	}
	if d.MaxAuthAttempts <= 0 {
		d.MaxAuthAttempts = defaultAuthAttempts
	}
	if d.MaxChannels <= 0 {
		d.MaxChannels = defaultMaxChannels
	}
	if d.MaxForwards <= 0 {
		d.MaxForwards = defaultMaxForwards
	}
	if d.Window == 0 {
		d.Window = defaultWindow
	}
	d.Window = max(d.Window, minWindow)
	if d.WriteTimeout <= 0 {
		d.WriteTimeout = defaultWriteTimeout
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return d
}

// limits are the lengths a device may declare: strings as apf's defaults,
// data up to the channel window (c has its defaults set).
func (c *Config) limits() apf.Limits {
	return apf.Limits{MaxString: apf.DefaultLimits.MaxString, MaxData: c.Window}
}

// Cipher suites AMT needs (apf.md §6.1). Go enables none of the RSA key
// exchange suites by default since Go 1.22, and AMT firmware uses them, so
// the list is explicit. No NULL, RC4 or 3DES suite is ever offered.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// CipherSuites returns the TLS 1.0–1.2 suites a CIRA listener offers.
func CipherSuites() []uint16 { return append([]uint16(nil), cipherSuites...) }

// TLSConfig returns the server TLS configuration for a CIRA listener: TLS 1.2
// and 1.3 with the suites of [CipherSuites], or, with legacy, TLS 1.0 and 1.1
// as well for AMT 11 and older (which cannot do TLS 1.2). A client
// certificate is requested but not required (apf.md §6.3).
//
// The certificate's private key makes at most GOMAXPROCS signatures (and
// RSA decryptions) at once, process-wide: in a reconnect storm the other
// handshakes wait for a turn instead of all being runnable, so the rest of
// the process (console sessions, the desktop window) still gets the CPU,
// and handshakes finish as fast as before.
//
// Its GetConfigForClient records a summary of each ClientHello for the
// diagnosis of failed handshakes ([HandshakeFailure].Hello); it allocates
// nothing and keeps the configuration.
func TLSConfig(cert tls.Certificate, legacy bool) *tls.Config {
	if k, ok := cert.PrivateKey.(crypto.Signer); ok {
		if _, paced := k.(pacedKey); !paced {
			cert.PrivateKey = pacedKey{k}
		}
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites(),
		ClientAuth:   tls.RequestClientCert,
		// Records the ClientHello's summary; see helloSlots.
		GetConfigForClient: noteHello,
	}
	if legacy {
		cfg.MinVersion = tls.VersionTLS10
	}
	return cfg
}

// keySlots are the turns at the private key, one per processor.
var keySlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// pacedKey is a private key that waits for one of keySlots to sign or
// decrypt.
type pacedKey struct{ crypto.Signer }

func (k pacedKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	keySlots <- struct{}{}
	defer func() { <-keySlots }()
	return k.Signer.Sign(rand, digest, opts)
}

// Decrypt serves TLS's RSA key exchange (legacy cipher suites).
func (k pacedKey) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	d, ok := k.Signer.(crypto.Decrypter)
	if !ok {
		return nil, errors.New("tunnel: the certificate's key cannot decrypt")
	}
	keySlots <- struct{}{}
	defer func() { <-keySlots }()
	return d.Decrypt(rand, msg, opts)
}
