package amtsim

import "fmt"

// Fault makes a device misbehave in a way tests can observe on the wire.
type Fault int

const (
	// FaultNone: a well-behaved device.
	FaultNone Fault = iota
	// FaultWrongPassword sends a wrong password and expects
	// USERAUTH_FAILURE: Run returns [ErrAuthFailed] when the MPS refuses
	// it, [ErrWrongPasswordAccepted] when it does not.
	FaultWrongPassword
	// FaultGarbage sends random bytes right after the TLS handshake,
	// instead of PROTOCOL_VERSION or (with Config.GarbageAfterVersion)
	// after it. The first garbage byte is never a valid message type, so
	// a correct MPS rejects it at once. The device then waits for the MPS
	// to DISCONNECT or close.
	FaultGarbage
	// FaultTrickle writes every byte of the handshake (up to the last
	// tcpip-forward) in its own write, Config.TrickleGap apart: the
	// handshake completes, slowly.
	FaultTrickle
	// FaultSilent completes the handshake and forwards, then never sends
	// anything again: no keepalives, no replies, no channel confirmations.
	// It keeps reading until the MPS closes.
	FaultSilent
	// FaultDropAfter closes the TCP connection abruptly (no DISCONNECT, no
	// TLS close_notify) Config.Hold after the handshake; Run returns
	// [ErrDropped]. A Fleet reconnects it after its usual backoff.
	FaultDropAfter
	// FaultReconnectLoop completes the handshake, holds the tunnel for
	// Config.Hold, drops it like FaultDropAfter and reconnects at once,
	// over and over; Stats.Handshakes counts the rounds. It measures the
	// MPS's handshake rate during a reconnect storm.
	FaultReconnectLoop
)

var faultNames = [...]string{"none", "wrong-password", "garbage", "trickle", "silent", "drop-after", "reconnect-loop"}

func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("fault %d", int(f))
}

// MarshalText renders the fault's name.
func (f Fault) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText parses a fault name, as String renders it (for flags).
func (f *Fault) UnmarshalText(b []byte) error {
	for i, n := range faultNames {
		if n == string(b) {
			*f = Fault(i)
			return nil
		}
	}
	return fmt.Errorf("amtsim: unknown fault %q (want one of %v)", sanitize(string(b)), faultNames)
}
