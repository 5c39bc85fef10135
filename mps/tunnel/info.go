package tunnel

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// Info is a snapshot of a tunnel.
type Info struct {
	UUID          apf.UUID
	User          string
	Remote        string
	TLSVersion    string
	TLSCipher     string
	Protocol      string // APF version, e.g. "1.0"
	Trigger       uint32
	ConnectedAt   time.Time
	LastReceived  time.Time
	LastKeepalive time.Time // zero until the first KEEPALIVE_REQUEST
	// KeepaliveAccepted is the interval and timeout AMT accepted, in
	// seconds (zero until KEEPALIVE_OPTIONS_REPLY).
	KeepaliveAccepted [2]uint32
	Forwards          []Forward
	Ready             bool
	Channels          int
	ChannelsOpened    uint64
	BytesIn, BytesOut uint64
	Keepalives        uint64
}

// ConnectedAt returns when the connection was accepted.
func (c *Conn) ConnectedAt() time.Time { return time.Unix(0, c.connectedAt) }

// UUID returns the device UUID from PROTOCOL_VERSION.
func (c *Conn) UUID() apf.UUID { return c.uuid }

// Hostname returns the first printable, non-empty address among the
// device's tcpip-forward requests: the host name AMT announced.
func (c *Conn) Hostname() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Hostname(c.forwards)
}

// Hostname returns the first printable, non-empty address in fs.
func Hostname(fs []Forward) string {
	for _, f := range fs {
		if f.Address != "" && strings.IndexFunc(f.Address, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
			return f.Address
		}
	}
	return ""
}

// HasPort reports whether port is announced.
func (c *Conn) HasPort(port uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forwardIndex(port) >= 0
}

// forwardIndex is the index of port in c.forwards, or -1; the caller
// holds c.mu.
func (c *Conn) forwardIndex(port uint32) int {
	return slices.IndexFunc(c.forwards, func(f Forward) bool { return f.Port == port })
}

// Info returns a snapshot of the tunnel's state.
func (c *Conn) Info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := &c.names
	if !n.made || n.tls != c.tlsVersion || n.cipher != c.tlsCipher || n.major != c.version.Major || n.minor != c.version.Minor {
		// tls.CipherSuiteName builds the suite list on every call: Info
		// is called for every device on every snapshot, so name once.
		*n = infoNames{made: true, tls: c.tlsVersion, cipher: c.tlsCipher, major: c.version.Major, minor: c.version.Minor,
			tlsName: tlsVersionName(c.tlsVersion), cipherName: tls.CipherSuiteName(c.tlsCipher),
			protocol: fmt.Sprintf("%d.%d", c.version.Major, c.version.Minor)}
	}
	in := Info{
		UUID: c.uuid, User: c.user, Remote: c.remote,
		TLSVersion: n.tlsName, TLSCipher: n.cipherName,
		Protocol:          n.protocol,
		Trigger:           c.version.Trigger,
		ConnectedAt:       time.Unix(0, c.connectedAt),
		LastReceived:      time.Unix(0, c.lastRecv.Load()),
		KeepaliveAccepted: [2]uint32{c.kaInterval, c.kaTimeout},
		Forwards:          slices.Clone(c.forwards),
		Ready:             c.ready,
		Channels:          len(c.channels),
		ChannelsOpened:    c.openedTotal,
		BytesIn:           c.bytesIn.Load(),
		BytesOut:          c.bytesOut.Load(),
		Keepalives:        c.keepalives.Load(),
	}
	if ka := c.lastKA.Load(); ka != 0 {
		in.LastKeepalive = time.Unix(0, ka)
	}
	if c.tlsVersion == 0 {
		in.TLSVersion, in.TLSCipher = "none", ""
	}
	return in
}

// infoNames are the strings Info reports for a tunnel's TLS version,
// cipher suite and APF protocol version, with what they were made from.
type infoNames struct {
	made                          bool
	tls, cipher                   uint16
	major, minor                  uint32
	tlsName, cipherName, protocol string
}

func tlsVersionName(v uint16) string {
	if v == 0 {
		return "none"
	}
	return tls.VersionName(v)
}
