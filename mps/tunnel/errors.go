package tunnel

import (
	"errors"
	"fmt"

	"github.com/presence-mps/presence/mps/apf"
)

// Sentinel errors.
var (
	// ErrClosed is returned by operations on a tunnel that has ended.
	ErrClosed = errors.New("tunnel: closed")
	// ErrPortNotAnnounced is returned by Dial for a port AMT did not
	// announce with tcpip-forward.
	ErrPortNotAnnounced = errors.New("tunnel: port not announced by the device")
	// ErrTooManyChannels is returned by Dial when the tunnel's channel cap
	// is reached.
	ErrTooManyChannels = errors.New("tunnel: too many open channels")
	// ErrChannelClosed is returned by Write on a channel the device closed.
	ErrChannelClosed = errors.New("tunnel: channel closed by the device")
)

// Reason says why a tunnel ended.
type Reason int

// Tunnel end reasons. Their String values are stable: they appear in events,
// metrics and history.
const (
	ReasonDeviceClosed     Reason = iota + 1 // the device closed the connection
	ReasonDisconnect                         // the device sent DISCONNECT
	ReasonIdleTimeout                        // nothing arrived for IdleTimeout
	ReasonReplaced                           // a newer connection of the same device won
	ReasonProtocolError                      // the device broke the protocol
	ReasonShutdown                           // the server is shutting down
	ReasonAuthFailed                         // the device's credentials were refused
	ReasonHandshakeTimeout                   // TLS+APF up to auth took too long
	ReasonTLSError                           // the TLS handshake failed
	ReasonStalled                            // the device stopped reading
	ReasonAdmin                              // an administrator disconnected it
	ReasonNetworkError                       // a read or write failed
	ReasonMoved                              // a newer connection of the device is on another instance of the fleet
	ReasonLegacyTLS                          // a TLS 1.0/1.1 session of a device not allowed legacy TLS
)

var reasonNames = [...]string{
	ReasonDeviceClosed:     "device-closed",
	ReasonDisconnect:       "device-disconnect",
	ReasonIdleTimeout:      "idle-timeout",
	ReasonReplaced:         "replaced",
	ReasonProtocolError:    "protocol-error",
	ReasonShutdown:         "shutdown",
	ReasonAuthFailed:       "auth-failed",
	ReasonHandshakeTimeout: "handshake-timeout",
	ReasonTLSError:         "tls-error",
	ReasonStalled:          "stalled",
	ReasonAdmin:            "admin",
	ReasonNetworkError:     "network-error",
	ReasonMoved:            "moved",
	ReasonLegacyTLS:        "legacy-tls",
}

func (r Reason) String() string {
	if r > 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason-%d", int(r))
}

// CloseError is the cause a tunnel ended with.
type CloseError struct {
	Reason Reason
	// Detail is a short explanation; any text from the device in it is
	// quoted with %q.
	Detail string
	// Disconnect is the device's DISCONNECT reason for ReasonDisconnect.
	Disconnect apf.DisconnectReason
	// Err is the underlying error, if any.
	Err error
	// Handshake is set on the errors of [Accept]: how far the handshake
	// got, for a diagnosis.
	Handshake *HandshakeFailure
}

func (e *CloseError) Error() string {
	s := "tunnel: " + e.Reason.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *CloseError) Unwrap() error { return e.Err }

// Is makes every CloseError match [ErrClosed].
func (e *CloseError) Is(target error) bool { return target == ErrClosed }

// ReasonOf returns the Reason of a tunnel error, or 0.
func ReasonOf(err error) Reason {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return 0
}

// OpenError is returned by Dial when the device refuses a channel with
// CHANNEL_OPEN_FAILURE.
type OpenError struct {
	Port   uint32
	Reason apf.OpenFailureReason
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("tunnel: device refused channel to port %d: %s", e.Port, e.Reason)
}
