package apf

import (
	"encoding/binary"
	"fmt"
)

// Message type codes (apf.md §1).
const (
	MsgDisconnect              = 1
	MsgServiceRequest          = 5
	MsgServiceAccept           = 6
	MsgUserauthRequest         = 50
	MsgUserauthFailure         = 51
	MsgUserauthSuccess         = 52
	MsgGlobalRequest           = 80
	MsgRequestSuccess          = 81
	MsgRequestFailure          = 82
	MsgChannelOpen             = 90
	MsgChannelOpenConfirmation = 91
	MsgChannelOpenFailure      = 92
	MsgChannelWindowAdjust     = 93
	MsgChannelData             = 94
	MsgChannelClose            = 97
	MsgProtocolVersion         = 192
	MsgKeepaliveRequest        = 208
	MsgKeepaliveReply          = 209
	MsgKeepaliveOptionsRequest = 210
	MsgKeepaliveOptionsReply   = 211
	MsgJSONControl             = 250
)

// Service names (apf.md §2.2).
const (
	ServiceAuth = "auth@amt.intel.com"
	ServicePfwd = "pfwd@amt.intel.com"
)

// Global request names (apf.md §2.5).
const (
	RequestTCPIPForward       = "tcpip-forward"
	RequestCancelTCPIPForward = "cancel-tcpip-forward"
	RequestUDPSendTo          = "udp-send-to@amt.intel.com"
)

// Channel types (apf.md §2.6).
const (
	ChannelForwardedTCPIP = "forwarded-tcpip"
	ChannelDirectTCPIP    = "direct-tcpip"
)

// Authentication methods (apf.md §2.3).
const (
	MethodPassword = "password"
	MethodNone     = "none"
)

// DisconnectReason is the reason code of a DISCONNECT message (apf.md §1).
type DisconnectReason uint32

// Disconnect reasons.
const (
	DisconnectHostNotAllowed         DisconnectReason = 1
	DisconnectProtocolError          DisconnectReason = 2
	DisconnectKeyExchangeFailed      DisconnectReason = 3
	DisconnectReserved               DisconnectReason = 4
	DisconnectMACError               DisconnectReason = 5
	DisconnectCompressionError       DisconnectReason = 6
	DisconnectServiceNotAvailable    DisconnectReason = 7
	DisconnectVersionNotSupported    DisconnectReason = 8
	DisconnectHostKeyNotVerifiable   DisconnectReason = 9
	DisconnectConnectionLost         DisconnectReason = 10
	DisconnectByApplication          DisconnectReason = 11
	DisconnectTooManyConnections     DisconnectReason = 12
	DisconnectAuthCancelledByUser    DisconnectReason = 13
	DisconnectNoMoreAuthMethods      DisconnectReason = 14
	DisconnectInvalidCredentials     DisconnectReason = 15
	DisconnectConnectionTimedOut     DisconnectReason = 16
	DisconnectByPolicy               DisconnectReason = 17
	DisconnectTemporarilyUnavailable DisconnectReason = 18
)

var disconnectNames = [...]string{
	1: "host not allowed to connect", 2: "protocol error", 3: "key exchange failed",
	4: "reserved", 5: "MAC error", 6: "compression error", 7: "service not available",
	8: "protocol version not supported", 9: "host key not verifiable",
	10: "connection lost", 11: "by application", 12: "too many connections",
	13: "auth cancelled by user", 14: "no more auth methods available",
	15: "invalid credentials", 16: "connection timed out", 17: "by policy",
	18: "temporarily unavailable",
}

func (r DisconnectReason) String() string {
	if int(r) < len(disconnectNames) && disconnectNames[r] != "" {
		return disconnectNames[r]
	}
	return fmt.Sprintf("reason %d", uint32(r))
}

// OpenFailureReason is the reason code of a CHANNEL_OPEN_FAILURE (apf.md §1).
type OpenFailureReason uint32

// Channel open failure reasons.
const (
	OpenAdministrativelyProhibited OpenFailureReason = 1
	OpenConnectFailed              OpenFailureReason = 2
	OpenUnknownChannelType         OpenFailureReason = 3
	OpenResourceShortage           OpenFailureReason = 4
)

func (r OpenFailureReason) String() string {
	switch r {
	case OpenAdministrativelyProhibited:
		return "administratively prohibited"
	case OpenConnectFailed:
		return "connect failed"
	case OpenUnknownChannelType:
		return "unknown channel type"
	case OpenResourceShortage:
		return "resource shortage"
	}
	return fmt.Sprintf("reason %d", uint32(r))
}

// Message is one decoded APF message.
type Message interface {
	// Type returns the message type code.
	Type() byte
	// Append appends the encoded message to b and returns the extended slice.
	Append(b []byte) []byte
}

// Marshal returns the encoding of m.
func Marshal(m Message) []byte { return m.Append(nil) }

// Disconnect ends the tunnel (apf.md §1: type, u32 reason, u16 reserved).
type Disconnect struct {
	Reason   DisconnectReason
	Reserved uint16
}

// ServiceRequest asks for a service (apf.md §2.2).
type ServiceRequest struct{ Service string }

// ServiceAccept accepts a service by echoing its name (apf.md §2.2).
type ServiceAccept struct{ Service string }

// UserauthRequest is AMT's login (apf.md §2.3). For [MethodPassword],
// ChangePassword is the SSH "change password" flag (AMT sends false) and
// Password is the secret; for any other method, MethodData holds the bytes
// after the method name (APF does not delimit them; see [Parse]).
type UserauthRequest struct {
	Username       string
	Service        string
	Method         string
	ChangePassword bool
	Password       []byte
	MethodData     []byte
}

// String renders the request without its password.
func (m *UserauthRequest) String() string {
	return fmt.Sprintf("USERAUTH_REQUEST{user %q, service %q, method %q}", m.Username, m.Service, m.Method)
}

// GoString renders the request without its password.
func (m *UserauthRequest) GoString() string { return m.String() }

// UserauthFailure rejects a login (apf.md §2.4). Its encoding is 14 bytes for
// Methods "password": the form Intel LMS and go-wsman-messages use, not the
// 15-byte form of other servers.
type UserauthFailure struct {
	Methods        string
	PartialSuccess bool
}

// UserauthSuccess accepts a login (apf.md §2.4).
type UserauthSuccess struct{}

// TCPIPForward is a tcpip-forward or cancel-tcpip-forward global request
// announcing (or withdrawing) an AMT port (apf.md §2.5).
type TCPIPForward struct {
	Cancel    bool
	WantReply bool
	Address   string
	Port      uint32
}

// UDPSendTo is the udp-send-to@amt.intel.com global request (apf.md §2.5,
// layout per Intel LMS).
type UDPSendTo struct {
	WantReply         bool
	Address           string
	Port              uint32
	OriginatorAddress string
	OriginatorPort    uint32
	Data              []byte
}

// GlobalRequest is a global request whose name this package does not know.
// Data holds every byte after want-reply that was given to [Parse] with it.
type GlobalRequest struct {
	Name      string
	WantReply bool
	Data      []byte
}

// RequestSuccess answers a global request (apf.md §2.5). The reply to a
// tcpip-forward carries the port (5 bytes); the reply to a cancel has none
// (1 byte): set NoPort.
type RequestSuccess struct {
	Port   uint32
	NoPort bool
}

// RequestFailure refuses a global request.
type RequestFailure struct{}

// ChannelOpen opens a channel (apf.md §2.6).
type ChannelOpen struct {
	ChannelType       string
	Sender            uint32
	Window            uint32
	MaxPacket         uint32 // reserved in APF; senders put 0xFFFFFFFF
	ConnectedAddress  string
	ConnectedPort     uint32
	OriginatorAddress string
	OriginatorPort    uint32
}

// ChannelOpenConfirmation accepts a channel (apf.md §2.7).
type ChannelOpenConfirmation struct {
	Recipient uint32
	Sender    uint32
	Window    uint32
	Reserved  uint32 // 0xFFFFFFFF
}

// ChannelOpenFailure refuses a channel (apf.md §2.7).
type ChannelOpenFailure struct {
	Recipient uint32
	Reason    OpenFailureReason
	Reserved1 uint32
	Reserved2 uint32
}

// WindowAdjust grants the peer more send credit (apf.md §2.7).
type WindowAdjust struct {
	Recipient  uint32
	BytesToAdd uint32
}

// ChannelData carries channel payload (apf.md §2.7). Data aliases the buffer
// given to [Parse].
type ChannelData struct {
	Recipient uint32
	Data      []byte
}

// ChannelClose closes a channel (apf.md §2.7).
type ChannelClose struct{ Recipient uint32 }

// ProtocolVersion is the first message of a tunnel (apf.md §2.1).
type ProtocolVersion struct {
	Major, Minor uint32
	Trigger      uint32
	UUID         UUID
	Reserved     [64]byte
}

// KeepaliveRequest (apf.md §2.8).
type KeepaliveRequest struct{ Cookie uint32 }

// KeepaliveReply echoes a request's cookie (apf.md §2.8).
type KeepaliveReply struct{ Cookie uint32 }

// KeepaliveOptionsRequest asks AMT to send keepalives every Interval seconds
// (apf.md §2.8, §5).
type KeepaliveOptionsRequest struct{ Interval, Timeout uint32 }

// KeepaliveOptionsReply carries the values AMT accepted (apf.md §2.8).
type KeepaliveOptionsReply struct{ Interval, Timeout uint32 }

// JSONControl is MeshCentral's extension (apf.md §2.9); real AMT never sends it.
type JSONControl struct{ Data []byte }

func (*Disconnect) Type() byte              { return MsgDisconnect }
func (*ServiceRequest) Type() byte          { return MsgServiceRequest }
func (*ServiceAccept) Type() byte           { return MsgServiceAccept }
func (*UserauthRequest) Type() byte         { return MsgUserauthRequest }
func (*UserauthFailure) Type() byte         { return MsgUserauthFailure }
func (*UserauthSuccess) Type() byte         { return MsgUserauthSuccess }
func (*TCPIPForward) Type() byte            { return MsgGlobalRequest }
func (*UDPSendTo) Type() byte               { return MsgGlobalRequest }
func (*GlobalRequest) Type() byte           { return MsgGlobalRequest }
func (*RequestSuccess) Type() byte          { return MsgRequestSuccess }
func (*RequestFailure) Type() byte          { return MsgRequestFailure }
func (*ChannelOpen) Type() byte             { return MsgChannelOpen }
func (*ChannelOpenConfirmation) Type() byte { return MsgChannelOpenConfirmation }
func (*ChannelOpenFailure) Type() byte      { return MsgChannelOpenFailure }
func (*WindowAdjust) Type() byte            { return MsgChannelWindowAdjust }
func (*ChannelData) Type() byte             { return MsgChannelData }
func (*ChannelClose) Type() byte            { return MsgChannelClose }
func (*ProtocolVersion) Type() byte         { return MsgProtocolVersion }
func (*KeepaliveRequest) Type() byte        { return MsgKeepaliveRequest }
func (*KeepaliveReply) Type() byte          { return MsgKeepaliveReply }
func (*KeepaliveOptionsRequest) Type() byte { return MsgKeepaliveOptionsRequest }
func (*KeepaliveOptionsReply) Type() byte   { return MsgKeepaliveOptionsReply }
func (*JSONControl) Type() byte             { return MsgJSONControl }

var be = binary.BigEndian

func appendString(b []byte, s string) []byte {
	b = be.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = be.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func (m *Disconnect) Append(b []byte) []byte {
	b = be.AppendUint32(append(b, MsgDisconnect), uint32(m.Reason))
	return be.AppendUint16(b, m.Reserved)
}

func (m *ServiceRequest) Append(b []byte) []byte {
	return appendString(append(b, MsgServiceRequest), m.Service)
}

func (m *ServiceAccept) Append(b []byte) []byte {
	return appendString(append(b, MsgServiceAccept), m.Service)
}

func (m *UserauthRequest) Append(b []byte) []byte {
	b = appendString(append(b, MsgUserauthRequest), m.Username)
	b = appendString(b, m.Service)
	b = appendString(b, m.Method)
	if m.Method == MethodPassword {
		b = appendBool(b, m.ChangePassword)
		return appendBytes(b, m.Password)
	}
	return append(b, m.MethodData...)
}

func (m *UserauthFailure) Append(b []byte) []byte {
	b = appendString(append(b, MsgUserauthFailure), m.Methods)
	return appendBool(b, m.PartialSuccess)
}

func (*UserauthSuccess) Append(b []byte) []byte { return append(b, MsgUserauthSuccess) }

func (m *TCPIPForward) Append(b []byte) []byte {
	name := RequestTCPIPForward
	if m.Cancel {
		name = RequestCancelTCPIPForward
	}
	b = appendString(append(b, MsgGlobalRequest), name)
	b = appendString(appendBool(b, m.WantReply), m.Address)
	return be.AppendUint32(b, m.Port)
}

func (m *UDPSendTo) Append(b []byte) []byte {
	b = appendString(append(b, MsgGlobalRequest), RequestUDPSendTo)
	b = appendString(appendBool(b, m.WantReply), m.Address)
	b = be.AppendUint32(b, m.Port)
	b = appendString(b, m.OriginatorAddress)
	b = be.AppendUint32(b, m.OriginatorPort)
	return appendBytes(b, m.Data)
}

func (m *GlobalRequest) Append(b []byte) []byte {
	b = appendString(append(b, MsgGlobalRequest), m.Name)
	return append(appendBool(b, m.WantReply), m.Data...)
}

func (m *RequestSuccess) Append(b []byte) []byte {
	b = append(b, MsgRequestSuccess)
	if m.NoPort {
		return b
	}
	return be.AppendUint32(b, m.Port)
}

func (*RequestFailure) Append(b []byte) []byte { return append(b, MsgRequestFailure) }

func (m *ChannelOpen) Append(b []byte) []byte {
	b = appendString(append(b, MsgChannelOpen), m.ChannelType)
	b = be.AppendUint32(b, m.Sender)
	b = be.AppendUint32(b, m.Window)
	b = be.AppendUint32(b, m.MaxPacket)
	b = appendString(b, m.ConnectedAddress)
	b = be.AppendUint32(b, m.ConnectedPort)
	b = appendString(b, m.OriginatorAddress)
	return be.AppendUint32(b, m.OriginatorPort)
}

func appendU32s(b []byte, typ byte, vs ...uint32) []byte {
	b = append(b, typ)
	for _, v := range vs {
		b = be.AppendUint32(b, v)
	}
	return b
}

func (m *ChannelOpenConfirmation) Append(b []byte) []byte {
	return appendU32s(b, MsgChannelOpenConfirmation, m.Recipient, m.Sender, m.Window, m.Reserved)
}

func (m *ChannelOpenFailure) Append(b []byte) []byte {
	return appendU32s(b, MsgChannelOpenFailure, m.Recipient, uint32(m.Reason), m.Reserved1, m.Reserved2)
}

func (m *WindowAdjust) Append(b []byte) []byte {
	return appendU32s(b, MsgChannelWindowAdjust, m.Recipient, m.BytesToAdd)
}

func (m *ChannelData) Append(b []byte) []byte {
	return appendBytes(appendU32s(b, MsgChannelData, m.Recipient), m.Data)
}

// AppendChannelDataHeader appends the 9-byte header of a CHANNEL_DATA message
// carrying n bytes, for writers that copy the payload in themselves.
func AppendChannelDataHeader(b []byte, recipient uint32, n int) []byte {
	return appendU32s(b, MsgChannelData, recipient, uint32(n))
}

func (m *ChannelClose) Append(b []byte) []byte {
	return appendU32s(b, MsgChannelClose, m.Recipient)
}

func (m *ProtocolVersion) Append(b []byte) []byte {
	b = appendU32s(b, MsgProtocolVersion, m.Major, m.Minor, m.Trigger)
	b = append(b, m.UUID[:]...)
	return append(b, m.Reserved[:]...)
}

func (m *KeepaliveRequest) Append(b []byte) []byte {
	return appendU32s(b, MsgKeepaliveRequest, m.Cookie)
}

func (m *KeepaliveReply) Append(b []byte) []byte {
	return appendU32s(b, MsgKeepaliveReply, m.Cookie)
}

func (m *KeepaliveOptionsRequest) Append(b []byte) []byte {
	return appendU32s(b, MsgKeepaliveOptionsRequest, m.Interval, m.Timeout)
}

func (m *KeepaliveOptionsReply) Append(b []byte) []byte {
	return appendU32s(b, MsgKeepaliveOptionsReply, m.Interval, m.Timeout)
}

func (m *JSONControl) Append(b []byte) []byte {
	return appendBytes(append(b, MsgJSONControl), m.Data)
}
