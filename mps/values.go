package mps

import (
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/tunnel"
)

// The value types of the server's parts, named here too, so that readers
// of snapshots (the window, through app/adapter) need no package of the
// engine but this one. They are the same types, not copies.
type (
	// TunnelInfo describes one tunnel: the device, its TLS and APF
	// details, the ports it announced, its counters ([Device.Info]).
	TunnelInfo = tunnel.Info
	// Forward is a port a device announced (tcpip-forward).
	Forward = tunnel.Forward
	// SessionInfo describes a console session: who, from where, which
	// device and port, bytes each way, start and end.
	SessionInfo = proxy.SessionInfo
)
