package amtsim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// Well-known AMT ports (apf.md §3 step 6).
const (
	PortWSMan      = 16992 // WS-Man over HTTP, served by [WSManHandler]
	PortWSManTLS   = 16993
	PortRedirect   = 16994 // SOL/IDER redirection
	PortRedirTLS   = 16995
	PortRMCP       = 623
	PortRMCPSecure = 664
)

// Defaults applied to a zero [Config] field.
const (
	DefaultWindow            = 32768
	DefaultMaxChannels       = 16
	DefaultKeepaliveInterval = 30 * time.Second
	DefaultKeepaliveMisses   = 3
	DefaultHandshakeTimeout  = 30 * time.Second
	DefaultTrickleGap        = 10 * time.Millisecond
	DefaultAMTUser           = "admin"
)

// MaxWindow is the largest channel window a device advertises: the largest
// CHANNEL_DATA the apf codec accepts by default.
const MaxWindow = 1 << 20

// DefaultPorts returns the ports a device announces by default, in the order
// of apf.md §3 step 6 (without 5900: simulated devices have no VNC).
func DefaultPorts() []uint32 {
	return []uint32{PortWSManTLS, PortWSMan, PortRMCPSecure, PortRMCP, PortRedirTLS, PortRedirect}
}

// Config describes one simulated device. The zero value of each optional
// field selects the default named in its comment.
type Config struct {
	// UUID is the device identity sent in PROTOCOL_VERSION. Required.
	UUID apf.UUID
	// Hostname is AMT's host name, the address in every tcpip-forward and
	// the HostName in WS-Man. Default: "sim-" and the first 8 digits of
	// the UUID.
	Hostname string

	// User and Password are the CIRA credentials of USERAUTH_REQUEST.
	// Required. The password never appears in logs or errors.
	User     string
	Password []byte

	// MPSAddr is the MPS's host:port. Required.
	MPSAddr string
	// RootCAs verifies the MPS certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// ServerName is the name the certificate must carry. Default: the host
	// of MPSAddr, as AMT checks the certificate against its configured MPS
	// address. AMT matches the CN; Go matches only the SANs (DNS names, or
	// IP addresses for an IP literal), so the MPS certificate needs a SAN
	// for its address to satisfy both.
	ServerName string
	// MinVersion, MaxVersion and CipherSuites restrict TLS like old
	// firmware does (apf.md §6.1), e.g. MaxVersion tls.VersionTLS11 with
	// TLS_RSA_WITH_AES_128_CBC_SHA for AMT 11. Zero means Go's defaults.
	MinVersion, MaxVersion uint16
	CipherSuites           []uint16
	// ResumeSessions keeps the device's last TLS session ticket and offers
	// it when reconnecting, so the MPS can skip the RSA operation of a full
	// handshake. Whether AMT firmware resumes sessions is not known
	// (apf.md §11); the default is full handshakes.
	ResumeSessions bool

	// Ports are announced with tcpip-forward, in order. Default:
	// [DefaultPorts]. EchoPort is appended when it is not in the list.
	Ports []uint32
	// EchoPort, if not 0, serves an echo on channels to that port, even
	// when it is also a port with a service: with [PortRedirect] the echo
	// replaces SOL.
	EchoPort uint32
	// Window is the initial window the device grants each channel.
	// Default [DefaultWindow]; at most [MaxWindow]. Small windows stress
	// flow control.
	Window uint32
	// MaxChannels caps concurrently open channels; more opens get
	// CHANNEL_OPEN_FAILURE(RESOURCE_SHORTAGE). Real AMT has about 8 slots.
	// Default [DefaultMaxChannels].
	MaxChannels int

	// KeepaliveInterval is how often the device sends KEEPALIVE_REQUEST
	// until the MPS sets another interval with KEEPALIVE_OPTIONS_REQUEST.
	// Default [DefaultKeepaliveInterval].
	KeepaliveInterval time.Duration
	// KeepaliveMisses is how many unanswered keepalives make the device
	// drop the tunnel ([ErrKeepaliveTimeout]). Default
	// [DefaultKeepaliveMisses]; negative means never.
	KeepaliveMisses int
	// HandshakeTimeout bounds dialing, TLS and the APF handshake up to the
	// last REQUEST_SUCCESS. Default [DefaultHandshakeTimeout].
	HandshakeTimeout time.Duration
	// Trigger is the PROTOCOL_VERSION trigger reason (apf.md §1). Software
	// clients send 0.
	Trigger uint32

	// AMTUser and AMTPassword are the digest credentials of the WS-Man
	// service. AMTUser defaults to [DefaultAMTUser]; an empty AMTPassword
	// refuses every request.
	AMTUser     string
	AMTPassword []byte
	// DomainName is the WS-Man DomainName.
	DomainName string

	// Fault selects a misbehaviour; see [Fault].
	Fault Fault
	// TrickleGap is the pause between bytes with [FaultTrickle]; 0 writes
	// each byte in its own TLS record without pausing. Use
	// [DefaultTrickleGap] for a slow device.
	TrickleGap time.Duration
	// Hold is how long the tunnel stays up before [FaultDropAfter] or
	// [FaultReconnectLoop] drops it (0: right after the handshake).
	Hold time.Duration
	// GarbageAfterVersion makes [FaultGarbage] send a valid
	// PROTOCOL_VERSION before the garbage.
	GarbageAfterVersion bool

	// Dial opens the TCP connection. Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// State is where a device is in its connection lifetime.
type State int32

// Device states.
const (
	StateIdle         State = iota // never run
	StateDialing                   // TCP connect and TLS handshake
	StateHandshake                 // APF handshake
	StateConnected                 // tunnel up: every forward acknowledged
	StateDisconnected              // the last connection ended
)

var stateNames = [...]string{"idle", "dialing", "handshake", "connected", "disconnected"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state %d", int32(s))
}

// MarshalText renders the state name, for JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Errors that end a connection. Branch on them with errors.Is.
var (
	// ErrAuthFailed: the MPS answered USERAUTH_FAILURE.
	ErrAuthFailed = errors.New("amtsim: the MPS refused the CIRA credentials (USERAUTH_FAILURE)")
	// ErrWrongPasswordAccepted: with FaultWrongPassword, the MPS answered
	// USERAUTH_SUCCESS to a wrong password.
	ErrWrongPasswordAccepted = errors.New("amtsim: the MPS accepted a wrong password")
	// ErrDropped: the device dropped the connection itself (FaultDropAfter,
	// FaultReconnectLoop).
	ErrDropped = errors.New("amtsim: connection dropped by fault injection")
	// ErrKeepaliveTimeout: the MPS left too many keepalives unanswered.
	ErrKeepaliveTimeout = errors.New("amtsim: the MPS stopped answering keepalives")
	// ErrHandshakeTimeout: dialing, TLS or the APF handshake took longer
	// than Config.HandshakeTimeout.
	ErrHandshakeTimeout = errors.New("amtsim: handshake timed out")
	// ErrProtocol: the MPS broke the protocol (malformed or unexpected
	// message, window overrun). The device sent DISCONNECT(PROTOCOL_ERROR).
	ErrProtocol = errors.New("amtsim: protocol error")
	// ErrDial: the TCP connection to the MPS failed.
	ErrDial = errors.New("amtsim: cannot connect to the MPS")
)

// DisconnectError reports a DISCONNECT from the MPS.
type DisconnectError struct{ Reason apf.DisconnectReason }

func (e *DisconnectError) Error() string {
	return fmt.Sprintf("amtsim: DISCONNECT from the MPS: %s", e.Reason)
}

// TLSError reports a failed TLS handshake with the MPS, e.g. a certificate
// that does not chain to RootCAs or names another host.
type TLSError struct{ Err error }

func (e *TLSError) Error() string { return "amtsim: TLS handshake with the MPS: " + e.Err.Error() }

func (e *TLSError) Unwrap() error { return e.Err }

// Reason classifies the error that ended a connection in a short word, the
// keys of [Summary] Failed and Ended: "canceled", "auth",
// "wrong-password-accepted", "dropped", "keepalive-timeout", "timeout",
// "tls", "dial", "protocol", "eof" (the MPS closed), "reset",
// "disconnect: <reason>", or "other". It returns "" for nil.
func Reason(err error) string {
	var de *DisconnectError
	var te *TLSError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	case errors.Is(err, ErrAuthFailed):
		return "auth"
	case errors.Is(err, ErrWrongPasswordAccepted):
		return "wrong-password-accepted"
	case errors.Is(err, ErrDropped):
		return "dropped"
	case errors.Is(err, ErrKeepaliveTimeout):
		return "keepalive-timeout"
	case errors.Is(err, ErrHandshakeTimeout), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &de):
		return "disconnect: " + de.Reason.String()
	case errors.As(err, &te):
		return "tls"
	case errors.Is(err, ErrDial):
		return "dial"
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	}
	return "other"
}

// Stats is a snapshot of a device's counters. Counters accumulate over every
// connection the device has made.
type Stats struct {
	State               State         `json:"state"`
	Handshakes          int64         `json:"handshakes"`        // completed APF handshakes
	LastHandshake       time.Duration `json:"last_handshake_ns"` // dial to last REQUEST_SUCCESS
	KeepaliveInterval   time.Duration `json:"keepalive_interval_ns"`
	KeepalivesSent      int64         `json:"keepalives_sent"`     // KEEPALIVE_REQUESTs sent
	KeepalivesAnswered  int64         `json:"keepalives_answered"` // matching KEEPALIVE_REPLYs
	KeepaliveBadReplies int64         `json:"keepalive_bad_replies"`
	ServerKeepalives    int64         `json:"server_keepalives"` // the MPS's KEEPALIVE_REQUESTs answered
	ChannelsOpened      int64         `json:"channels_opened"`
	ChannelsRefused     int64         `json:"channels_refused"`
	BytesIn             int64         `json:"bytes_in"`  // APF bytes received
	BytesOut            int64         `json:"bytes_out"` // APF bytes sent
	// LastDisconnect is the reason of the last DISCONNECT from the MPS, 0
	// if none.
	LastDisconnect apf.DisconnectReason `json:"last_disconnect,omitempty"`
}

// Device is one simulated AMT device. Its methods are safe for concurrent
// use; [Device.Run] may run once at a time.
type Device struct {
	cfg     Config   // defaults applied
	ports   []uint32 // announced, in order
	tlsConf *tls.Config
	log     *slog.Logger

	// Set by a Fleet: gate limits handshakes in flight, stats aggregates.
	gate  chan struct{}
	fleet *fleetStats

	wsmanOnce sync.Once
	wsman     http.Handler
	redirOnce sync.Once
	redir     *RedirServer

	mu        sync.Mutex
	connected chan struct{} // closed while the tunnel is up
	isUp      bool

	state              atomic.Int32
	handshakes         atomic.Int64
	lastHandshake      atomic.Int64
	kaInterval         atomic.Int64
	keepalivesSent     atomic.Int64
	keepalivesAnswered atomic.Int64
	keepaliveBad       atomic.Int64
	serverKeepalives   atomic.Int64
	channelsOpened     atomic.Int64
	channelsRefused    atomic.Int64
	bytesIn            atomic.Int64
	bytesOut           atomic.Int64
	lastDisconnect     atomic.Uint32
}

// New checks cfg, applies the defaults and returns a device. It copies the
// passwords.
func New(cfg Config) (*Device, error) {
	cfg.Password = append([]byte(nil), cfg.Password...)
	cfg.AMTPassword = append([]byte(nil), cfg.AMTPassword...)
	cfg.Ports = append([]uint32(nil), cfg.Ports...)
	cfg.CipherSuites = append([]uint16(nil), cfg.CipherSuites...)
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	return newDevice(cfg, tc), nil
}

// setDefaults validates c and fills in defaults; it does not copy slices.
func (c *Config) setDefaults() error {
	if c.UUID.IsZero() {
		return errors.New("amtsim: Config.UUID is required")
	}
	if c.Hostname == "" {
		c.Hostname = "sim-" + c.UUID.String()[:8]
	}
	if c.User == "" || len(c.Password) == 0 {
		return errors.New("amtsim: Config.User and Config.Password are required")
	}
	if _, _, err := net.SplitHostPort(c.MPSAddr); err != nil {
		return fmt.Errorf("amtsim: Config.MPSAddr %q: %v", c.MPSAddr, err)
	}
	if len(c.Ports) == 0 {
		c.Ports = DefaultPorts()
	}
	if c.EchoPort > 65535 {
		return fmt.Errorf("amtsim: echo port %d out of range", c.EchoPort)
	}
	seen := map[uint32]bool{}
	for _, p := range c.Ports {
		if p == 0 || p > 65535 || seen[p] {
			return fmt.Errorf("amtsim: port %d is out of range or announced twice", p)
		}
		seen[p] = true
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window > MaxWindow {
		return fmt.Errorf("amtsim: window %d exceeds %d", c.Window, MaxWindow)
	}
	if c.MaxChannels <= 0 {
		c.MaxChannels = DefaultMaxChannels
	}
	if c.KeepaliveInterval <= 0 {
		c.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.KeepaliveMisses == 0 {
		c.KeepaliveMisses = DefaultKeepaliveMisses
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.AMTUser == "" {
		c.AMTUser = DefaultAMTUser
	}
	if c.Fault < FaultNone || c.Fault > FaultReconnectLoop {
		return fmt.Errorf("amtsim: unknown fault %d", int(c.Fault))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	name := c.ServerName
	if name == "" {
		host, _, _ := net.SplitHostPort(c.MPSAddr)
		name = host
	}
	tc := &tls.Config{
		RootCAs:      c.RootCAs,
		ServerName:   name,
		MinVersion:   c.MinVersion,
		MaxVersion:   c.MaxVersion,
		CipherSuites: c.CipherSuites,
	}
	if c.MaxVersion != 0 && c.MinVersion > c.MaxVersion {
		return nil, errors.New("amtsim: TLS MinVersion above MaxVersion")
	}
	return tc, nil
}

func newDevice(cfg Config, tc *tls.Config) *Device {
	ports := cfg.Ports
	if cfg.EchoPort != 0 && !containsPort(ports, cfg.EchoPort) {
		ports = append(append([]uint32(nil), ports...), cfg.EchoPort)
	}
	if cfg.ResumeSessions {
		tc = tc.Clone()
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	d := &Device{
		cfg:       cfg,
		ports:     ports,
		tlsConf:   tc,
		log:       cfg.Logger.With("device", cfg.UUID.String()),
		connected: make(chan struct{}),
	}
	d.kaInterval.Store(int64(cfg.KeepaliveInterval))
	return d
}

func containsPort(ports []uint32, p uint32) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

// UUID returns the device identity.
func (d *Device) UUID() apf.UUID { return d.cfg.UUID }

// Hostname returns the host name the device announces.
func (d *Device) Hostname() string { return d.cfg.Hostname }

// Ports returns the ports the device announces, in order.
func (d *Device) Ports() []uint32 { return append([]uint32(nil), d.ports...) }

// Connected returns a channel that is closed once the device's tunnel is up
// (its handshake has completed). When that tunnel ends, later calls return
// a new channel for the next connection.
func (d *Device) Connected() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connected
}

func (d *Device) setUp(up bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if up == d.isUp {
		return
	}
	d.isUp = up
	if up {
		close(d.connected)
	} else {
		d.connected = make(chan struct{})
	}
}

// Stats returns a snapshot of the device's counters.
func (d *Device) Stats() Stats {
	return Stats{
		State:               State(d.state.Load()),
		Handshakes:          d.handshakes.Load(),
		LastHandshake:       time.Duration(d.lastHandshake.Load()),
		KeepaliveInterval:   time.Duration(d.kaInterval.Load()),
		KeepalivesSent:      d.keepalivesSent.Load(),
		KeepalivesAnswered:  d.keepalivesAnswered.Load(),
		KeepaliveBadReplies: d.keepaliveBad.Load(),
		ServerKeepalives:    d.serverKeepalives.Load(),
		ChannelsOpened:      d.channelsOpened.Load(),
		ChannelsRefused:     d.channelsRefused.Load(),
		BytesIn:             d.bytesIn.Load(),
		BytesOut:            d.bytesOut.Load(),
		LastDisconnect:      apf.DisconnectReason(d.lastDisconnect.Load()),
	}
}

// Run connects to the MPS and runs one connection lifetime: it returns why
// the connection ended, e.g. ctx.Err(), [ErrAuthFailed], a
// [*DisconnectError], a [*TLSError], or io.EOF when the MPS closed the
// tunnel. With [FaultReconnectLoop] it instead reconnects right after each
// deliberate drop and returns only when ctx is done or a connection ends
// another way. Run returns after every goroutine it started has exited.
func (d *Device) Run(ctx context.Context) error {
	for {
		_, err := d.runOnce(ctx)
		if d.cfg.Fault == FaultReconnectLoop && errors.Is(err, ErrDropped) && ctx.Err() != nil {
			return ctx.Err() // stopped between two rounds
		}
		if d.cfg.Fault != FaultReconnectLoop || !errors.Is(err, ErrDropped) {
			return err
		}
	}
}

// runOnce runs one connection and reports whether its handshake completed.
func (d *Device) runOnce(ctx context.Context) (connected bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if d.gate != nil {
		select {
		case d.gate <- struct{}{}:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	gated := d.gate != nil
	release := func() {
		if gated {
			gated = false
			<-d.gate
		}
	}
	defer release()

	d.state.Store(int32(StateDialing))
	defer d.state.Store(int32(StateDisconnected))
	start := time.Now()
	hctx, cancel := context.WithTimeout(ctx, d.cfg.HandshakeTimeout)
	defer cancel()

	stageErr := func(err error, wrap func(error) error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if hctx.Err() != nil {
			return ErrHandshakeTimeout
		}
		return wrap(err)
	}
	dial := d.cfg.Dial
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	raw, err := dial(hctx, "tcp", d.cfg.MPSAddr)
	if err != nil {
		return false, stageErr(err, func(err error) error { return fmt.Errorf("%w: %w", ErrDial, err) })
	}
	tc := tls.Client(raw, d.tlsConf)
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return false, stageErr(err, func(err error) error { return &TLSError{Err: err} })
	}
	d.state.Store(int32(StateHandshake))

	c := newConn(d, raw, tc)
	stopHS := context.AfterFunc(hctx, func() {
		if ctx.Err() != nil {
			c.abort(ctx.Err())
		} else {
			c.abort(ErrHandshakeTimeout)
		}
	})
	var stopRun func() bool
	c.onReady = func() {
		stopHS()
		release()
		stopRun = context.AfterFunc(ctx, func() { c.abort(ctx.Err()) })
		elapsed := time.Since(start)
		d.lastHandshake.Store(int64(elapsed))
		d.handshakes.Add(1)
		if d.fleet != nil {
			d.fleet.handshake(elapsed)
		}
		d.state.Store(int32(StateConnected))
		d.setUp(true)
		d.log.Debug("amtsim: tunnel up", "elapsed", elapsed)
	}
	err = c.run()
	stopHS()
	if stopRun != nil {
		stopRun()
	}
	d.setUp(false)
	d.log.Debug("amtsim: connection ended", "connected", c.isReady(), "reason", Reason(err))
	return c.isReady(), err
}

// sanitize shortens peer-controlled text for an error message.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
