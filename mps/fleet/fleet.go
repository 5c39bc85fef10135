// Package fleet lets several Presence instances work as one (see
// ../../../shared/fleet.md): which instance holds which device's tunnel
// (ownership, kept by pushing tables over peer links on a LAN, or by
// leases in etcd past one machine), the links between instances (mutual
// TLS under the fleet's shared MPS root), and console connections
// forwarded one hop to the instance that holds the device.
//
// This file has the values every part shares.
package fleet

import (
	"net"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// Owner says which instance holds a device's tunnel, and since when. It
// is a plain value, safe to copy.
type Owner struct {
	// GUID is the device, lower-case with dashes.
	GUID string `json:"guid"`
	// Host is the host name AMT announced (consoles may use it).
	Host string `json:"host,omitempty"`
	// Instance is the id of the instance that holds the tunnel.
	Instance string `json:"instance"`
	// Conn tells that instance's tunnels of one GUID apart (a device
	// that reconnects gets a new one).
	Conn uint64 `json:"conn"`
	// Since is when the tunnel came up. The newest connection of a GUID
	// wins fleet-wide.
	Since time.Time `json:"since"`
}

// Newer reports whether o is a newer connection of its device than p: it
// came up later, or at the same instant on an instance whose id sorts
// higher (so that two instances always agree).
func (o Owner) Newer(p Owner) bool {
	if !o.Since.Equal(p.Since) {
		return o.Since.After(p.Since)
	}
	if o.Instance != p.Instance {
		return o.Instance > p.Instance
	}
	return o.Conn > p.Conn
}

// Same reports whether o and p name the same tunnel.
func (o Owner) Same(p Owner) bool {
	return o.GUID == p.GUID && o.Instance == p.Instance && o.Conn == p.Conn
}

// Member describes an instance of the fleet, as it announces itself.
type Member struct {
	// ID is the instance id, also in its peer certificate's SAN.
	ID string `json:"id"`
	// Name is what the admin calls it (its MPS address, say).
	Name string `json:"name,omitempty"`
	// PeerAddr is its peer-link listener; ProxyAddr and APIAddr are
	// where consoles reach it ("" when off).
	PeerAddr  string `json:"peer_addr"`
	ProxyAddr string `json:"proxy_addr,omitempty"`
	APIAddr   string `json:"api_addr,omitempty"`
	// CIRAAddr is the address and port AMT devices are configured with
	// to reach it (its MPS entry: Name and its CIRA port), "" when its
	// CIRA listener is off. It is what an admin enters for the backup
	// MPS of a policy whose primary is another instance.
	CIRAAddr string `json:"cira_addr,omitempty"`
	Version  string `json:"version,omitempty"`
}

// NormalizeGUID returns guid as Owner keeps it: a GUID, with or without
// dashes, in any case, as lower-case text with dashes (the server's form);
// anything else lower-case.
func NormalizeGUID(guid string) string {
	if u, err := apf.ParseUUID(guid); err == nil {
		return u.String()
	}
	return strings.ToLower(guid)
}

// WithHost returns addr (HOST:PORT) with an empty or wildcard host
// (":16991", "0.0.0.0:16991", "[::]:16991") replaced by host, so that a
// peer elsewhere can dial it; an address with a host of its own is
// returned as it is. ok is false for an address that does not parse.
func WithHost(addr, host string) (_ string, ok bool) {
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, false
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = host
	}
	return net.JoinHostPort(h, port), true
}
