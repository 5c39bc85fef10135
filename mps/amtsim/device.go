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
	DefaultMPSRetries        = 1
	// DefaultRetryInterval is the periodic policy interval RPS writes
	// into AMT (25 s, fleet.md §1): the pause of [FleetConfig]
	// RetryInterval.
	DefaultRetryInterval = 25 * time.Second
)

// MaxMPS is the most entries [Config] MPS may hold: the number of MPS
// entries (AMT_ManagementPresenceRemoteSAP) AMT stores. A remote-access
// policy links only one or two of them (fleet.md §1), so a real device
// tries at most two; the simulator allows four, so tests may go further.
const MaxMPS = 4

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
	// Required, unless every entry of MPS has its own. The password never
	// appears in logs or errors.
	User     string
	Password []byte

	// MPSAddr is the MPS's host:port. Required unless MPS is set; it is
	// shorthand for an MPS list of one entry, {MPSAddr, ServerName}.
	MPSAddr string
	// RootCAs verifies the MPS certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// ServerName is the name the certificate must carry. Default: the host
	// of MPSAddr, as AMT checks the certificate against its configured MPS
	// address. AMT matches the CN; Go matches only the SANs (DNS names, or
	// IP addresses for an IP literal), so the MPS certificate needs a SAN
	// for its address to satisfy both.
	ServerName string
	// MPS lists the device's MPS entries in AMT's order (OrderOfAccess):
	// the primary first, then the backup. Set either MPS or
	// MPSAddr/ServerName, not both. At most [MaxMPS] entries.
	//
	// With two or more entries a connection tries each entry in turn,
	// repeating a failed attempt MPSRetries times before it moves on;
	// see [Device.Run], and [FleetConfig] for what follows. A list of one
	// entry behaves exactly as MPSAddr always has.
	MPS []MPSEntry
	// MPSRetries is how many times a failed attempt on one entry is
	// repeated, at once, before the next entry is tried. Intel says only
	// "the attempt to connect will be repeated once" (fleet.md §1):
	// whether per entry or per policy, and after what delay, is not
	// confirmed, so the default, [DefaultMPSRetries], takes the tolerant
	// reading: once per entry, at once. Negative means none. It applies
	// to lists of two or more entries.
	MPSRetries int
	// MinVersion, MaxVersion and CipherSuites restrict TLS like old
	// firmware does (apf.md §6.1), e.g. MaxVersion tls.VersionTLS11 with
	// TLS_RSA_WITH_AES_128_CBC_SHA for AMT 11. Zero means Go's defaults.
	MinVersion, MaxVersion uint16
	// Trigger is the PROTOCOL_VERSION trigger reason (apf.md §1). Software
	// clients send 0. (It sits here, next to the versions, so that Config
	// packs: a Device must stay in its size class.)
	Trigger      uint32
	CipherSuites []uint16
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

	// AMTUser and AMTPassword are the digest credentials of the WS-Man
	// service. AMTUser defaults to [DefaultAMTUser]; an empty AMTPassword
	// refuses every request.
	AMTUser     string
	AMTPassword []byte
	// DomainName is the WS-Man DomainName.
	DomainName string
	// AMT describes the platform behind WS-Man and SOL: AMT version,
	// control mode, user consent policy, OS agent, hardware, pre-filled
	// event log and SOL screen. nil means the defaults of [AMTConfig]. It
	// is a pointer so that a fleet's devices share one and an idle device
	// pays eight bytes; it must not change once given.
	AMT *AMTConfig

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

	// LAN, if set, makes the device an AMT on the LAN that enrolment
	// configures over WS-Man (see [LANConfig]); MPSAddr, MPS, User and
	// Password are then not set.
	LAN *LANConfig

	// Dial opens the TCP connection. Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// MPSEntry is one MPS entry of AMT (an AMT_ManagementPresenceRemoteSAP and
// its AMT_MPSUsernamePassword): where to connect, the name its certificate
// must carry, and, since each entry has its own CIRA account, optionally
// its own credentials.
type MPSEntry struct {
	// Addr is the MPS's host:port. Required.
	Addr string
	// ServerName is the name this entry's certificate must carry.
	// Default: the host of Addr. AMT matches the certificate against each
	// entry's own address or CN (apf.md §6.2), so a backup MPS needs a
	// certificate for its own name; see Config.ServerName for CN versus
	// SAN.
	ServerName string
	// User and Password are this entry's CIRA credentials; both empty
	// means Config.User and Config.Password.
	User     string
	Password []byte
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
	// MPS is the index in Config.MPS of the entry the current (or last)
	// tunnel went to: 0 is the primary.
	MPS int `json:"mps,omitempty"`
}

// Device is one simulated AMT device. Its methods are safe for concurrent
// use; [Device.Run] may run once at a time.
//
// A Device fills its 576-byte size class: a new field costs every
// simulated device 64 bytes more, unless it fits in padding.
type Device struct {
	cfg      Config // defaults applied
	rt       *route // shared by a fleet's devices
	sessions *sessionCache
	log      *slog.Logger

	// Set by a Fleet: gate limits handshakes in flight, stats aggregates.
	gate  chan struct{}
	fleet *fleetStats

	wsmanOnce sync.Once
	wsman     atomic.Pointer[wsman] // and the platform, made on first use
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
	mpsIndex           atomic.Int32 // Stats.MPS; fills the padding after lastDisconnect
}

// route is how a device reaches its MPS entries, built once from a checked
// [Config]. A fleet's devices share one, so that a list of entries costs
// an idle device no memory. It is read-only once built.
type route struct {
	ports   []uint32 // announced, in order
	entries []entry  // AMT's order
	tries   int      // attempts per entry in one pass
	// lan is a LAN device's listeners and CIRA (lan.go), nil for others:
	// kept here, in the device's own route, to keep Device small.
	lan *lanRun
}

// entry is an [MPSEntry] ready to dial.
type entry struct {
	addr     string
	tls      *tls.Config
	user     string // "" means Config.User and Config.Password
	password []byte
}

// New checks cfg, applies the defaults and returns a device. It copies the
// passwords.
func New(cfg Config) (*Device, error) {
	cfg.copySlices()
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	rt, err := cfg.route()
	if err != nil {
		return nil, err
	}
	d := newDevice(cfg, rt)
	if cfg.LAN != nil {
		if err := d.startLAN(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// copySlices gives c its own copies of the slices a caller passed in.
func (c *Config) copySlices() {
	c.Password = append([]byte(nil), c.Password...)
	c.AMTPassword = append([]byte(nil), c.AMTPassword...)
	c.Ports = append([]uint32(nil), c.Ports...)
	c.CipherSuites = append([]uint16(nil), c.CipherSuites...)
	if c.LAN != nil {
		l := *c.LAN
		c.LAN = &l
	}
	if c.MPS != nil {
		c.MPS = append([]MPSEntry(nil), c.MPS...)
		for i := range c.MPS {
			c.MPS[i].Password = append([]byte(nil), c.MPS[i].Password...)
		}
	}
}

// setDefaults validates c and fills in defaults; it does not copy slices.
func (c *Config) setDefaults() error {
	if c.UUID.IsZero() {
		return errors.New("amtsim: Config.UUID is required")
	}
	if c.Hostname == "" {
		c.Hostname = "sim-" + c.UUID.String()[:8]
	}
	if err := c.checkMPS(); err != nil {
		return err
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
	if c.MPSRetries == 0 {
		c.MPSRetries = DefaultMPSRetries
	}
	if c.AMTUser == "" {
		c.AMTUser = DefaultAMTUser
	}
	if err := c.AMT.check(); err != nil {
		return err
	}
	if c.Fault < FaultNone || c.Fault > FaultReconnectLoop {
		return fmt.Errorf("amtsim: unknown fault %d", int(c.Fault))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// checkMPS checks the MPS entries and the credentials each will use.
func (c *Config) checkMPS() error {
	if c.LAN != nil {
		return c.checkLAN()
	}
	haveCreds := c.User != "" && len(c.Password) > 0
	if len(c.MPS) == 0 {
		if !haveCreds {
			return errors.New("amtsim: Config.User and Config.Password are required")
		}
		if _, _, err := net.SplitHostPort(c.MPSAddr); err != nil {
			return fmt.Errorf("amtsim: Config.MPSAddr %q: %v", c.MPSAddr, err)
		}
		return nil
	}
	if c.MPSAddr != "" || c.ServerName != "" {
		return errors.New("amtsim: set Config.MPS or Config.MPSAddr and ServerName, not both")
	}
	if len(c.MPS) > MaxMPS {
		return fmt.Errorf("amtsim: %d MPS entries; AMT holds at most %d", len(c.MPS), MaxMPS)
	}
	for i, m := range c.MPS {
		if _, _, err := net.SplitHostPort(m.Addr); err != nil {
			return fmt.Errorf("amtsim: Config.MPS[%d].Addr %q: %v", i, m.Addr, err)
		}
		if (m.User == "") != (len(m.Password) == 0) {
			return fmt.Errorf("amtsim: Config.MPS[%d] needs both User and Password, or neither", i)
		}
		if m.User == "" && !haveCreds {
			return fmt.Errorf("amtsim: Config.MPS[%d] has no credentials of its own, and Config.User and Config.Password are empty", i)
		}
	}
	return nil
}

// route builds the ports and the dialable entries of a checked c.
func (c *Config) route() (*route, error) {
	if c.MaxVersion != 0 && c.MinVersion > c.MaxVersion {
		return nil, errors.New("amtsim: TLS MinVersion above MaxVersion")
	}
	list := c.MPS
	if len(list) == 0 && c.LAN == nil {
		list = []MPSEntry{{Addr: c.MPSAddr, ServerName: c.ServerName}}
	}
	rt := &route{ports: c.Ports, entries: make([]entry, len(list)), tries: 1}
	if c.EchoPort != 0 && !containsPort(rt.ports, c.EchoPort) {
		rt.ports = append(append([]uint32(nil), rt.ports...), c.EchoPort)
	}
	if len(list) > 1 {
		rt.tries += max(c.MPSRetries, 0)
	}
	for i, m := range list {
		name := m.ServerName
		if name == "" {
			name, _, _ = net.SplitHostPort(m.Addr)
		}
		rt.entries[i] = entry{
			addr: m.Addr,
			tls: &tls.Config{
				RootCAs:      c.RootCAs,
				ServerName:   name,
				MinVersion:   c.MinVersion,
				MaxVersion:   c.MaxVersion,
				CipherSuites: c.CipherSuites,
			},
			user:     m.User,
			password: m.Password,
		}
	}
	return rt, nil
}

// multi reports whether the device has more than one entry, and so follows
// AMT's order rather than the single MPS's plain reconnects.
func (rt *route) multi() bool { return len(rt.entries) > 1 }

// sessionCache is a device's own TLS session cache (ResumeSessions), one
// session per MPS entry.
type sessionCache struct{ tls.ClientSessionCache }

func newDevice(cfg Config, rt *route) *Device {
	d := &Device{
		cfg:       cfg,
		rt:        rt,
		log:       cfg.Logger.With("device", cfg.UUID.String()),
		connected: make(chan struct{}),
	}
	if cfg.ResumeSessions {
		d.sessions = &sessionCache{tls.NewLRUClientSessionCache(len(rt.entries))}
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
func (d *Device) Ports() []uint32 { return append([]uint32(nil), d.rt.ports...) }

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
	if p := d.platformIfMade(); p != nil {
		p.tunnelUp.Store(up)
	}
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
		MPS:                 int(d.mpsIndex.Load()),
	}
}

// Run connects to the MPS and runs one connection lifetime: it returns why
// the connection ended, e.g. ctx.Err(), [ErrAuthFailed], a
// [*DisconnectError], a [*TLSError], or io.EOF when the MPS closed the
// tunnel. With [FaultReconnectLoop] it instead reconnects right after each
// deliberate drop and returns only when ctx is done or a connection ends
// another way. Run returns after every goroutine it started has exited.
//
// With several MPS entries, a connection goes to the first entry that
// takes the device, in AMT's order: each entry is tried, and a failed
// attempt (refused, TLS, auth, or a tunnel that ended before it was up)
// is repeated Config.MPSRetries times before the next entry is tried. If
// none takes it, Run returns the last entry's error, wrapped. A tunnel
// that ends, or a reconnect after FaultReconnectLoop's drop, starts again
// at the first entry. Run itself never pauses; a [Fleet] does.
//
// A LAN device ([LANConfig]) instead serves WS-Man on the LAN and dials
// what enrolment wrote, retrying as AMT does, until ctx is done; it then
// returns ctx.Err() with its listeners closed.
func (d *Device) Run(ctx context.Context) error {
	if d.rt.lan != nil {
		return d.runLAN(ctx)
	}
	for {
		connected, err := d.pass(ctx)
		if d.cfg.Fault == FaultReconnectLoop && errors.Is(err, ErrDropped) {
			if ctx.Err() != nil {
				return ctx.Err() // stopped between two rounds
			}
			continue
		}
		if !connected && d.rt.multi() && ctx.Err() == nil {
			last := d.rt.entries[len(d.rt.entries)-1].addr
			return fmt.Errorf("amtsim: no MPS entry took the device; the last, %s: %w", last, err)
		}
		return err
	}
}

// pass makes one round of AMT's order: entry after entry, each attempt
// repeated until the route's tries are used, until a tunnel comes up; it
// then serves that tunnel until it ends. It reports whether a tunnel came
// up and why the last connection ended, and counts every attempt in the
// fleet's summary.
func (d *Device) pass(ctx context.Context) (connected bool, err error) {
	return d.passOn(ctx, d.rt)
}

// passOn is pass over the entries of rt.
func (d *Device) passOn(ctx context.Context, rt *route) (connected bool, err error) {
	for i := range rt.entries {
		for range rt.tries {
			if d.fleet != nil {
				d.fleet.attempts.Add(1)
			}
			connected, err = d.runOnce(ctx, rt, i)
			if ctx.Err() != nil {
				return connected, err
			}
			if d.fleet != nil {
				d.fleet.count(connected, Reason(err))
			}
			if connected {
				return true, err
			}
		}
	}
	return false, err
}

// runOnce runs one connection to entry i and reports whether its handshake
// completed.
func (d *Device) runOnce(ctx context.Context, rt *route, i int) (connected bool, err error) {
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
	ent := &rt.entries[i]
	raw, err := dial(hctx, "tcp", ent.addr)
	if err != nil {
		return false, stageErr(err, func(err error) error { return fmt.Errorf("%w: %w", ErrDial, err) })
	}
	conf := ent.tls
	if d.sessions != nil {
		// A copy per connection rather than per device and entry: only
		// a handshake pays for it.
		conf = conf.Clone()
		conf.ClientSessionCache = d.sessions
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return false, stageErr(err, func(err error) error { return &TLSError{Err: err} })
	}
	d.state.Store(int32(StateHandshake))

	c := newConn(d, ent, raw, tc)
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
		d.mpsIndex.Store(int32(i)) // before the state, which Summary reads first
		if d.fleet != nil {
			d.fleet.handshake(elapsed, i)
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
	d.log.Debug("amtsim: connection ended", "mps", i, "connected", c.isReady(), "reason", Reason(err))
	return c.isReady(), err
}

// sanitize shortens peer-controlled text for an error message.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
