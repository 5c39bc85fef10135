package sol

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/presence-mps/presence/mps/redir"
)

// Sentinels for branching with [errors.Is]. Each is a sentence a window can
// show as it is.
var (
	// ErrCredentials: the device rejected the AMT user name or password
	// (a [*CredentialsError]). Do not retry without new credentials: AMT
	// locks accounts out.
	ErrCredentials = errors.New("sol: the device rejected the AMT user name or password")
	// ErrRefused: the device refused the Serial-over-LAN session (a
	// [*ReplyError]); the sentinels below say why.
	ErrRefused = errors.New("sol: the device refused the Serial-over-LAN session")
	// ErrDisabled: Serial-over-LAN is not enabled on the device (0x11
	// status 1 or 3); the redirection switches turn it on.
	ErrDisabled = errors.New("sol: Serial-over-LAN is not enabled on the device")
	// ErrBusy: another Serial-over-LAN session is open on the device (0x11
	// status 2).
	ErrBusy = errors.New("sol: another Serial-over-LAN session is open on the device")
	// ErrNoAuth: the device and the console have no authentication type
	// in common, or the device said the chosen one is not supported.
	ErrNoAuth = errors.New("sol: the device offers no authentication this console supports")
	// ErrStartRefused: the device accepted the login but refused to start
	// Serial-over-LAN (0x21 with a non-zero status): user consent may be
	// needed, or SOL was switched off meanwhile.
	ErrStartRefused = errors.New("sol: the device refused to start Serial-over-LAN (user consent may be needed)")
	// ErrDeviceGone: the connection to the device ended or broke, or the
	// device did not answer within the deadline (a [*GoneError]).
	ErrDeviceGone = errors.New("sol: the device went away")
	// ErrProtocol: the device sent a malformed, oversized or unexpected
	// message.
	ErrProtocol = errors.New("sol: the device broke the redirection protocol")
	// ErrClosed: the session was closed. It matches net.ErrClosed too.
	ErrClosed = fmt.Errorf("sol: session closed (%w)", net.ErrClosed)
)

// ReplyError is a reply of the device whose status refuses the session.
// It matches [ErrRefused] and, by the reply, [ErrDisabled], [ErrBusy],
// [ErrNoAuth] or [ErrStartRefused].
type ReplyError struct {
	Code   byte           // the reply: redir.MsgStartSessionReply, MsgAuthenticateReply or MsgSOLStartReply
	Status byte           // its status byte
	Auth   redir.AuthType // for MsgAuthenticateReply, the type it answered
}

func (e *ReplyError) Error() string {
	switch e.Code {
	case redir.MsgStartSessionReply:
		switch e.Status {
		case redir.StatusBusy:
			return fmt.Sprintf("%v (status %d)", ErrBusy, e.Status)
		case redir.StatusUnknownType, redir.StatusUnsupported:
			return fmt.Sprintf("%v (status %d)", ErrDisabled, e.Status)
		}
		return fmt.Sprintf("%v (status %d)", ErrRefused, e.Status)
	case redir.MsgAuthenticateReply:
		return fmt.Sprintf("%v: %s authentication got status %d", ErrNoAuth, e.Auth, e.Status)
	case redir.MsgSOLStartReply:
		return fmt.Sprintf("%v (status %d)", ErrStartRefused, e.Status)
	}
	return fmt.Sprintf("%v (%s status %d)", ErrRefused, redir.Name(e.Code), e.Status)
}

// Is matches [ErrRefused] and the sentinel of the reply.
func (e *ReplyError) Is(target error) bool {
	switch target {
	case ErrRefused:
		return true
	case ErrBusy:
		return e.Code == redir.MsgStartSessionReply && e.Status == redir.StatusBusy
	case ErrDisabled:
		return e.Code == redir.MsgStartSessionReply && (e.Status == redir.StatusUnknownType || e.Status == redir.StatusUnsupported)
	case ErrNoAuth:
		return e.Code == redir.MsgAuthenticateReply
	case ErrStartRefused:
		return e.Code == redir.MsgSOLStartReply
	}
	return false
}

// CredentialsError reports that the device rejected the credentials: a
// 0x14 with status 1 to a clear-text login or a digest response.
type CredentialsError struct {
	User string         // the AMT user name (never the password)
	Auth redir.AuthType // the authentication type that was rejected
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("sol: the device rejected AMT user %q or its password (%s)", e.User, e.Auth)
}

// Is matches [ErrCredentials].
func (e *CredentialsError) Is(target error) bool { return target == ErrCredentials }

// GoneError reports that the connection ended or broke, or that the device
// did not answer in time. It matches [ErrDeviceGone] and unwraps to the
// cause (io.EOF, a net error, os.ErrDeadlineExceeded, ...).
type GoneError struct {
	Op  string // "read" or "write"
	Err error
}

func (e *GoneError) Error() string {
	if e.Timeout() {
		return "sol: the device did not answer within the deadline"
	}
	return fmt.Sprintf("sol: the device went away (%s: %v)", e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *GoneError) Unwrap() error { return e.Err }

// Is matches [ErrDeviceGone].
func (e *GoneError) Is(target error) bool { return target == ErrDeviceGone }

// Timeout reports whether the device was silent past a deadline.
func (e *GoneError) Timeout() bool {
	return errors.Is(e.Err, os.ErrDeadlineExceeded) || errors.Is(e.Err, context.DeadlineExceeded)
}

// protocolError wraps a codec error or describes an unexpected message.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// readError classifies an error of reading one device message.
func readError(err error) error {
	if _, ok := errors.AsType[*redir.ParseError](err); ok {
		return protocolError("%w", err)
	}
	return &GoneError{Op: "read", Err: err}
}
