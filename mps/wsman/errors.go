package wsman

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Sentinels for branching with [errors.Is]. Each is a sentence a window can
// show as it is.
var (
	// ErrTunnel: the device could not be reached, the tunnel went away
	// during the call, or the device did not answer within the deadline.
	// The error is a [*TunnelError].
	ErrTunnel = errors.New("wsman: the device's tunnel is gone or silent")
	// ErrUnsupported: the platform does not have the class or method.
	ErrUnsupported = errors.New("wsman: not supported on this platform")
	// ErrConsentRequired: the device needs user consent first (ReturnValue
	// 0x0821 USER_CONSENT_REQUIRED).
	ErrConsentRequired = errors.New("wsman: user consent required")
	// ErrCredentials: the device rejected the AMT user name or password.
	// The error is a [*CredentialsError].
	ErrCredentials = errors.New("wsman: wrong AMT credentials")
	// ErrQueueFull: too many calls are already waiting for the device.
	ErrQueueFull = errors.New("wsman: too many calls are waiting for this device")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("wsman: client closed")
	// ErrMalformed: the device's answer broke a limit or could not be
	// decoded.
	ErrMalformed = errors.New("wsman: malformed answer from the device")
)

// TunnelError reports that the device could not be reached or did not answer.
type TunnelError struct {
	Op  string // "dial", "write", "read" or "wait" (for a turn on the queue)
	Err error  // the cause; context.DeadlineExceeded when the deadline passed
}

func (e *TunnelError) Error() string {
	if e.Timeout() {
		if e.Op == "wait" {
			return "wsman: the call did not get its turn within the deadline"
		}
		return "wsman: the device did not answer within the deadline"
	}
	return fmt.Sprintf("wsman: the device's tunnel is gone (%s): %v", e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *TunnelError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrTunnel].
func (e *TunnelError) Is(target error) bool { return target == ErrTunnel }

// Timeout reports whether the deadline passed (the device is silent).
func (e *TunnelError) Timeout() bool {
	return errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, os.ErrDeadlineExceeded)
}

// CredentialsError reports that the device rejected the credentials.
type CredentialsError struct {
	User string // the AMT user name (never the password)
	// Refused is set when the client refused the call without asking the
	// device, because the device rejected the same credentials before.
	Refused bool
}

func (e *CredentialsError) Error() string {
	if e.Refused {
		return fmt.Sprintf("wsman: the device rejected AMT user %q before; not retried until the credentials change", e.User)
	}
	return fmt.Sprintf("wsman: the device rejected AMT user %q or its password", e.User)
}

// Is reports whether target is [ErrCredentials].
func (e *CredentialsError) Is(target error) bool { return target == ErrCredentials }

// Fault is a SOAP fault from the device.
type Fault struct {
	Status  int    // HTTP status (AMT uses 400)
	Code    string // e.g. "Sender", without the namespace prefix
	Subcode string // e.g. "DestinationUnreachable", without the prefix
	Reason  string // the device's text
	Detail  string // FaultDetail, e.g. ".../faultDetail/InvalidResourceURI"
}

func (e *Fault) Error() string {
	s := fmt.Sprintf("wsman: the device answered with fault %q", e.Subcode)
	if e.Reason != "" {
		s += fmt.Sprintf(": %q", e.Reason)
	}
	return s
}

// Unsupported reports whether the fault means that the platform lacks the
// class or method (§1.0 Faults).
func (e *Fault) Unsupported() bool {
	switch e.Subcode {
	case "DestinationUnreachable", "ActionNotSupported", "InvalidResourceURI":
		return true
	}
	return strings.HasSuffix(e.Detail, "/InvalidResourceURI")
}

// Is reports whether target is [ErrUnsupported] and the fault says so.
func (e *Fault) Is(target error) bool { return target == ErrUnsupported && e.Unsupported() }

// HTTPError is an HTTP status other than 200 that carried no SOAP fault.
type HTTPError struct {
	Status int
	// Body is the start of the answer's body as text fit for a log line
	// ("" when it had none: AMT 19 answers some invalid method input with
	// a bare 400, enrol.md §11.1).
	Body string
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("wsman: the device answered HTTP %d with no body", e.Status)
	}
	return fmt.Sprintf("wsman: the device answered HTTP %d: %q", e.Status, e.Body)
}

// Is reports whether target is [ErrUnsupported] and the status is 404 (no
// such service on the device).
func (e *HTTPError) Is(target error) bool { return target == ErrUnsupported && e.Status == 404 }

// StatusError is a non-zero ReturnValue of a method.
type StatusError struct {
	Class  string // e.g. "CIM_PowerManagementService"
	Method string // e.g. "RequestPowerStateChange"
	Value  uint32
}

func (e *StatusError) Error() string {
	if n := e.Name(); n != "" {
		return fmt.Sprintf("wsman: %s.%s returned %d (%s)", e.Class, e.Method, e.Value, n)
	}
	return fmt.Sprintf("wsman: %s.%s returned %d", e.Class, e.Method, e.Value)
}

// Is reports whether target is [ErrConsentRequired] and the value is 0x0821.
func (e *StatusError) Is(target error) bool {
	return target == ErrConsentRequired && e.Value == StatusUserConsentRequired
}

// Name returns the name of the value: the method's own where it has its
// own values, else the AMT PT_STATUS name; "" if unknown.
func (e *StatusError) Name() string {
	if names, ok := methodStatus[e.Class+"."+e.Method]; ok {
		if n, ok := names[e.Value]; ok {
			return n
		}
	}
	return StatusName(e.Value)
}

// AMT status codes (PT_STATUS) the toolbox branches on.
const (
	StatusSuccess             = 0x0000
	StatusInternalError       = 0x0001
	StatusNotReady            = 0x0002
	StatusInvalidIndex        = 0x0023
	StatusUnsupported         = 0x0812
	StatusInvalidCredentials  = 0x0815
	StatusUserConsentRequired = 0x0821
)

// StatusName returns the AMT PT_STATUS name of v (MeshCommander's
// AmtStatusCodes table, §1.0), or "" if unknown.
func StatusName(v uint32) string { return ptStatus[v] }

var ptStatus = map[uint32]string{
	0x0000: "SUCCESS", 0x0001: "INTERNAL_ERROR", 0x0002: "NOT_READY", 0x0003: "INVALID_PT_MODE",
	0x0004: "INVALID_MESSAGE_LENGTH", 0x0005: "TABLE_FINGERPRINT_NOT_AVAILABLE",
	0x0006: "INTEGRITY_CHECK_FAILED", 0x0007: "UNSUPPORTED_ISVS_VERSION",
	0x0008: "APPLICATION_NOT_REGISTERED", 0x0009: "INVALID_REGISTRATION_DATA",
	0x000A: "APPLICATION_DOES_NOT_EXIST", 0x000B: "NOT_ENOUGH_STORAGE", 0x000C: "INVALID_NAME",
	0x000D: "BLOCK_DOES_NOT_EXIST", 0x000E: "INVALID_BYTE_OFFSET", 0x000F: "INVALID_BYTE_COUNT",
	0x0010: "NOT_PERMITTED", 0x0011: "NOT_OWNER", 0x0012: "BLOCK_LOCKED_BY_OTHER",
	0x0013: "BLOCK_NOT_LOCKED", 0x0014: "INVALID_GROUP_PERMISSIONS", 0x0015: "GROUP_DOES_NOT_EXIST",
	0x0016: "INVALID_MEMBER_COUNT", 0x0017: "MAX_LIMIT_REACHED", 0x0018: "INVALID_AUTH_TYPE",
	0x0019: "AUTHENTICATION_FAILED", 0x001A: "INVALID_DHCP_MODE", 0x001B: "INVALID_IP_ADDRESS",
	0x001C: "INVALID_DOMAIN_NAME", 0x001D: "UNSUPPORTED_VERSION", 0x001E: "REQUEST_UNEXPECTED",
	0x001F: "INVALID_TABLE_TYPE", 0x0020: "INVALID_PROVISIONING_STATE", 0x0021: "UNSUPPORTED_OBJECT",
	0x0022: "INVALID_TIME", 0x0023: "INVALID_INDEX", 0x0024: "INVALID_PARAMETER",
	0x0025: "INVALID_NETMASK", 0x0026: "FLASH_WRITE_LIMIT_EXCEEDED", 0x0027: "INVALID_IMAGE_LENGTH",
	0x0028: "INVALID_IMAGE_SIGNATURE", 0x0029: "PROPOSE_ANOTHER_VERSION", 0x002A: "INVALID_PID_FORMAT",
	0x002B: "INVALID_PPS_FORMAT", 0x002C: "BIST_COMMAND_BLOCKED", 0x002D: "CONNECTION_FAILED",
	0x002E: "CONNECTION_TOO_MANY", 0x002F: "RNG_GENERATION_IN_PROGRESS", 0x0030: "RNG_NOT_READY",
	0x0031: "CERTIFICATE_NOT_READY", 0x0400: "DISABLED_BY_POLICY", 0x0800: "NETWORK_IF_ERROR_BASE",
	0x0801: "UNSUPPORTED_OEM_NUMBER", 0x0802: "UNSUPPORTED_BOOT_OPTION", 0x0803: "INVALID_COMMAND",
	0x0804: "INVALID_SPECIAL_COMMAND", 0x0805: "INVALID_HANDLE", 0x0806: "INVALID_PASSWORD",
	0x0807: "INVALID_REALM", 0x0808: "STORAGE_ACL_ENTRY_IN_USE", 0x0809: "DATA_MISSING",
	0x080A: "DUPLICATE", 0x080B: "EVENTLOG_FROZEN", 0x080C: "PKI_MISSING_KEYS",
	0x080D: "PKI_GENERATING_KEYS", 0x080E: "INVALID_KEY", 0x080F: "INVALID_CERT",
	0x0810: "CERT_KEY_NOT_MATCH", 0x0811: "MAX_KERB_DOMAIN_REACHED", 0x0812: "UNSUPPORTED",
	0x0813: "INVALID_PRIORITY", 0x0814: "NOT_FOUND", 0x0815: "INVALID_CREDENTIALS",
	0x0816: "INVALID_PASSPHRASE", 0x0818: "NO_ASSOCIATION", 0x081B: "AUDIT_FAIL",
	0x081C: "BLOCKING_COMPONENT", 0x0821: "USER_CONSENT_REQUIRED",
}

// methodStatus names the ReturnValues of methods that have their own
// (§1.1 rows 5, 9 and 10).
var methodStatus = map[string]map[uint32]string{
	classOptIn + ".StartOptIn":    optInStatus,
	classOptIn + ".SendOptInCode": optInStatus,
	classOptIn + ".CancelOptIn":   optInStatus,
	classMessageLog + ".GetRecords": {
		1: "not supported", 2: "invalid record pointed", 3: "no record exists in the log",
	},
	classAuditLog + ".ReadRecords": {
		1: "internal error", 2: "not ready", 35: "invalid index",
	},
}

var optInStatus = map[uint32]string{
	1: "internal error", 2: "invalid state", 3: "blocked", 4: "failed FFS",
	StatusUserConsentRequired: "USER_CONSENT_REQUIRED",
}

// malformed returns an error that wraps [ErrMalformed].
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Sentence returns a plain sentence for a window, a command line or an API
// answer that says what went wrong with a call, from the errors of this
// package (the full error belongs in the log).
func Sentence(err error) string {
	var (
		ce *CredentialsError
		te *TunnelError
		se *StatusError
		fe *Fault
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ce) && ce.Refused:
		return "The device rejected this AMT user name or password before; Presence does not try it again until it is changed."
	case errors.Is(err, ErrCredentials):
		return "The device rejected the AMT user name or password."
	case errors.As(err, &te) && te.Timeout():
		return "The device did not answer in time."
	case errors.Is(err, ErrTunnel):
		return "The device is not connected, or its tunnel went away."
	case errors.Is(err, ErrConsentRequired):
		return "The user at the device has to consent first."
	case errors.Is(err, ErrUnsupported):
		return "This device's platform does not support that."
	case errors.Is(err, ErrQueueFull):
		return "The device is busy with other requests; try again in a moment."
	case errors.Is(err, ErrClosed):
		return "Presence is shutting down."
	case errors.Is(err, ErrMalformed):
		return "The device sent an answer Presence cannot read."
	case errors.As(err, &se):
		if n := se.Name(); n != "" {
			return fmt.Sprintf("The device refused: %s (%d).", n, se.Value)
		}
		return fmt.Sprintf("The device refused with code %d.", se.Value)
	case errors.As(err, &fe):
		return fmt.Sprintf("The device refused: %s.", strings.TrimRight(cleanText(fe.Reason, 200), "."))
	case errors.Is(err, context.Canceled):
		return "The request was cancelled."
	}
	return "The request failed."
}
