package redir

import (
	"encoding/binary"
	"fmt"
)

// Session-manager message codes (redirection.md §2, "Session manager").
const (
	MsgStartSession      = 0x10 // StartRedirectionSession, console to device, 8 bytes
	MsgStartSessionReply = 0x11 // StartRedirectionSessionReply, 13 bytes + OEM data
	MsgEndSession        = 0x12 // EndRedirectionSession, console to device, 4 bytes
	MsgAuthenticate      = 0x13 // AuthenticateSession, console to device, 9 bytes + data
	MsgAuthenticateReply = 0x14 // AuthenticateSessionReply, 9 bytes + data
)

// SOL message codes (redirection.md §2, "SOL"). Every SOL message starts
// with the 8-byte [SOLHeader].
const (
	MsgSOLStart        = 0x20 // StartSOLRedirection, console to device, 24 bytes
	MsgSOLStartReply   = 0x21 // StartSOLRedirectionReply, 23 bytes
	MsgSOLEnd          = 0x22 // EndSOLRedirection, console to device, 8 bytes
	MsgSOLEndReply     = 0x23 // EndSOLRedirectionReply, 8 bytes
	MsgSOLPing         = 0x24 // KeepAlivePing, console to device, 8 bytes
	MsgSOLPong         = 0x25 // KeepAlivePong, device to console, 8 bytes
	MsgSOLOpen         = 0x27 // no name in any source; web consoles send it after 0x21, 14 bytes
	MsgSOLDataToHost   = 0x28 // SOLDataToHost, console to device, 10 bytes + data
	MsgSOLControls     = 0x29 // SOLControlsFromHost, device to console, 10 bytes
	MsgSOLDataFromHost = 0x2A // SOLDataFromHost, device to console, 10 bytes + data
	MsgSOLHeartbeat    = 0x2B // Heartbeat, both directions, 8 bytes
)

// IDE-R and KVM message codes (redirection.md §2, "IDE-R and KVM"). Their
// lengths depend on the kind of session, so [Len] and [Parse] do not know
// them.
const (
	MsgIDERStart      = 0x40 // 18 bytes
	MsgIDERStartReply = 0x41 // 30 bytes + data
	MsgIDEREnd        = 0x42
	MsgIDEREndReply   = 0x43
	MsgIDERPing       = 0x44
	MsgIDERPong       = 0x45
	MsgIDERHeartbeat  = 0x4B

	MsgKVMStart      = 0x40 // 8 bytes, then raw RFB
	MsgKVMStartReply = 0x41 // 8 bytes, then raw RFB
)

// MsgRecording is the one byte a MeshCentral relay may put in front of the
// device's messages: "this session is being recorded" (redirection.md §4).
// It is not AMT's, but a console behind such a relay must skip it.
const MsgRecording = 0xF0

// Session kinds, the last four bytes of [StartSession].
const (
	KindSOL  = "SOL "
	KindIDER = "IDER"
	KindKVM  = "KVMR"
)

// Status codes of [StartSessionReply] (redirection.md §2).
const (
	StatusOK          = 0
	StatusUnknownType = 1    // the session kind is unknown
	StatusBusy        = 2    // a session of that kind is already running
	StatusUnsupported = 3    // the kind is known but not supported
	StatusError       = 0xFF // any other failure
)

// Status codes of [AuthenticateReply] (redirection.md §2). Success is
// [StatusOK].
const (
	StatusAuthFailed      = 1 // wrong credentials; also the status of a digest challenge
	StatusAuthUnsupported = 2 // the authentication type is not supported
)

// AuthType is the authentication type of [Authenticate] and
// [AuthenticateReply] (redirection.md §2).
type AuthType byte

// Authentication types.
const (
	AuthQuery         AuthType = 0 // asks which types the device supports
	AuthPassword      AuthType = 1 // user name and password in clear ([PasswordAuth])
	AuthKerberos      AuthType = 2 // a Kerberos ticket
	AuthDigestRFC2069 AuthType = 3 // digest without cnonce and qop ([Digest])
	AuthDigest        AuthType = 4 // digest per RFC 2617, qop=auth ([Digest])
)

func (t AuthType) String() string {
	switch t {
	case AuthQuery:
		return "query"
	case AuthPassword:
		return "password"
	case AuthKerberos:
		return "Kerberos"
	case AuthDigestRFC2069:
		return "digest (RFC 2069)"
	case AuthDigest:
		return "digest (RFC 2617)"
	}
	return fmt.Sprintf("auth type %d", byte(t))
}

// SOL control lines and states of [SOLControls] (AT14 redir.h).
const (
	LineRTS   = 1
	LineDTR   = 2
	LineBreak = 4

	StateTxOverflow     = 1
	StateLoopback       = 2
	StatePowerOn        = 4
	StateRxFlushTimeout = 8
	StateTestMode       = 16
)

// Name returns the name of a message code, or "message 0xNN" for a code
// this package does not frame.
func Name(code byte) string {
	switch code {
	case MsgStartSession:
		return "StartRedirectionSession"
	case MsgStartSessionReply:
		return "StartRedirectionSessionReply"
	case MsgEndSession:
		return "EndRedirectionSession"
	case MsgAuthenticate:
		return "AuthenticateSession"
	case MsgAuthenticateReply:
		return "AuthenticateSessionReply"
	case MsgSOLStart:
		return "StartSOLRedirection"
	case MsgSOLStartReply:
		return "StartSOLRedirectionReply"
	case MsgSOLEnd:
		return "EndSOLRedirection"
	case MsgSOLEndReply:
		return "EndSOLRedirectionReply"
	case MsgSOLPing:
		return "KeepAlivePing"
	case MsgSOLPong:
		return "KeepAlivePong"
	case MsgSOLOpen:
		return "SOL message 0x27"
	case MsgSOLDataToHost:
		return "SOLDataToHost"
	case MsgSOLControls:
		return "SOLControlsFromHost"
	case MsgSOLDataFromHost:
		return "SOLDataFromHost"
	case MsgSOLHeartbeat:
		return "Heartbeat"
	case MsgRecording:
		return "MeshCentral recording notice"
	}
	return fmt.Sprintf("message 0x%02x", code)
}

// Message is one decoded redirection message.
type Message interface {
	// Code returns the message code, the first byte.
	Code() byte
	// Append appends the encoded message to b and returns the extended slice.
	Append(b []byte) []byte
}

// Marshal returns the encoding of m.
func Marshal(m Message) []byte { return m.Append(nil) }

// StartSession opens a redirection session (0x10, 8 bytes). Kind is
// [KindSOL], [KindIDER] or [KindKVM]; Append writes its first four bytes,
// padded with zeros. Flag is byte 1: 0 for SOL and IDE-R, 1 for KVM (its
// meaning is unknown).
type StartSession struct {
	Flag     byte
	Reserved uint16
	Kind     string
}

// StartSessionReply answers [StartSession] (0x11, 13 bytes and OEMData, at
// most 255 bytes). Real AMT sends protocol 1.0 and OEM 343 (Intel); amtterm
// 1.4 reads exactly 13 bytes, so it needs OEMData to be empty.
type StartSessionReply struct {
	Status                       byte
	Reserved                     uint16
	ProtocolMajor, ProtocolMinor byte
	FWMajor, FWMinor             byte
	OEM                          uint32 // IANA enterprise number
	OEMData                      []byte
}

// EndSession ends a redirection session (0x12, 4 bytes).
type EndSession struct {
	Reserved [3]byte
}

// Authenticate is one authentication request (0x13, 9 bytes and Data).
// Data is empty for [AuthQuery], a [PasswordAuth] for [AuthPassword] and a
// [Digest] for the digest types.
type Authenticate struct {
	Reserved [3]byte
	Type     AuthType
	Data     []byte
}

// String renders the request without its data, which may hold a password.
func (m *Authenticate) String() string {
	return fmt.Sprintf("AuthenticateSession{type %s, %d bytes of data}", m.Type, len(m.Data))
}

// GoString renders the request without its data.
func (m *Authenticate) GoString() string { return m.String() }

// AuthenticateReply answers [Authenticate] (0x14, 9 bytes and Data). Data
// lists the supported types (one byte each) in the answer to a query, and
// holds a [Challenge] in a digest challenge (status [StatusAuthFailed]).
type AuthenticateReply struct {
	Status   byte
	Reserved uint16
	Type     AuthType
	Data     []byte
}

// SOLHeader is the 8-byte header of every SOL message: the code, a status
// in replies (byte 1), two reserved bytes and a sequence number. Nobody
// checks the sequence numbers (redirection.md §1).
type SOLHeader struct {
	Status   byte
	Reserved uint16
	Seq      uint32
}

// Header returns h, so that a [SOLMessage]'s sender can number it.
func (h *SOLHeader) Header() *SOLHeader { return h }

// SOLMessage is a SOL message: every type that embeds a [SOLHeader].
type SOLMessage interface {
	Message
	Header() *SOLHeader
}

// SOLSettings are the console's settings in [SOLStart], in milliseconds
// except MaxTxBuffer (bytes). The Intel SDK's SOLTout page explains them.
type SOLSettings struct {
	MaxTxBuffer            uint16
	TxBufferTimeout        uint16
	TxOverflowTimeout      uint16
	HostSessionRxTimeout   uint16
	HostFifoRxFlushTimeout uint16
	HeartbeatInterval      uint16
}

// SOLStart starts Serial-over-LAN (0x20, 24 bytes).
type SOLStart struct {
	SOLHeader
	Settings SOLSettings
	Reserved uint32
}

// SOLStartReply answers [SOLStart] (0x21, 23 bytes) with Status in its
// header. What AMT puts in bytes 8 to 22 is unknown (redirection.md §2):
// this package reads bytes 8 to 19 as the six settings, which amtsim
// echoes there, and keeps the last three as Reserved.
type SOLStartReply struct {
	SOLHeader
	Settings SOLSettings
	Reserved [3]byte
}

// SOLEnd ends Serial-over-LAN (0x22, 8 bytes).
type SOLEnd struct{ SOLHeader }

// SOLEndReply answers [SOLEnd] (0x23, 8 bytes).
type SOLEndReply struct{ SOLHeader }

// SOLPing is a console's keep-alive ping (0x24, 8 bytes).
type SOLPing struct{ SOLHeader }

// SOLPong answers [SOLPing] (0x25, 8 bytes). Web consoles stop on it.
type SOLPong struct{ SOLHeader }

// SOLOpen is the unnamed message web consoles send once after 0x21 (0x27,
// 14 bytes); they send Data 00 00 1B 00 00 00, whose meaning is unknown.
type SOLOpen struct {
	SOLHeader
	Data [6]byte
}

// SOLDataToHost carries keystrokes to the host (0x28, 10 bytes and Data, at
// most 65535 bytes: Append writes no more).
type SOLDataToHost struct {
	SOLHeader
	Data []byte
}

// SOLControls reports the host's serial lines ([LineRTS], ...) and state
// ([StateTxOverflow], ...) (0x29, 10 bytes).
type SOLControls struct {
	SOLHeader
	Lines byte
	State byte
}

// SOLDataFromHost carries the host's output (0x2A, 10 bytes and Data, at
// most 65535 bytes: Append writes no more).
type SOLDataFromHost struct {
	SOLHeader
	Data []byte
}

// SOLHeartbeat is a heartbeat (0x2B, 8 bytes), sent both ways.
type SOLHeartbeat struct{ SOLHeader }

// Recording is the byte [MsgRecording].
type Recording struct{}

func (*StartSession) Code() byte      { return MsgStartSession }
func (*StartSessionReply) Code() byte { return MsgStartSessionReply }
func (*EndSession) Code() byte        { return MsgEndSession }
func (*Authenticate) Code() byte      { return MsgAuthenticate }
func (*AuthenticateReply) Code() byte { return MsgAuthenticateReply }
func (*SOLStart) Code() byte          { return MsgSOLStart }
func (*SOLStartReply) Code() byte     { return MsgSOLStartReply }
func (*SOLEnd) Code() byte            { return MsgSOLEnd }
func (*SOLEndReply) Code() byte       { return MsgSOLEndReply }
func (*SOLPing) Code() byte           { return MsgSOLPing }
func (*SOLPong) Code() byte           { return MsgSOLPong }
func (*SOLOpen) Code() byte           { return MsgSOLOpen }
func (*SOLDataToHost) Code() byte     { return MsgSOLDataToHost }
func (*SOLControls) Code() byte       { return MsgSOLControls }
func (*SOLDataFromHost) Code() byte   { return MsgSOLDataFromHost }
func (*SOLHeartbeat) Code() byte      { return MsgSOLHeartbeat }
func (*Recording) Code() byte         { return MsgRecording }

var le = binary.LittleEndian

func (m *StartSession) Append(b []byte) []byte {
	b = le.AppendUint16(append(b, MsgStartSession, m.Flag), m.Reserved)
	var kind [4]byte
	copy(kind[:], m.Kind)
	return append(b, kind[:]...)
}

func (m *StartSessionReply) Append(b []byte) []byte {
	b = le.AppendUint16(append(b, MsgStartSessionReply, m.Status), m.Reserved)
	b = append(b, m.ProtocolMajor, m.ProtocolMinor, m.FWMajor, m.FWMinor)
	b = le.AppendUint32(b, m.OEM)
	d := m.OEMData[:min(len(m.OEMData), 255)]
	return append(append(b, byte(len(d))), d...)
}

func (m *EndSession) Append(b []byte) []byte {
	return append(append(b, MsgEndSession), m.Reserved[:]...)
}

func (m *Authenticate) Append(b []byte) []byte {
	b = append(append(append(b, MsgAuthenticate), m.Reserved[:]...), byte(m.Type))
	return append(le.AppendUint32(b, uint32(len(m.Data))), m.Data...)
}

func (m *AuthenticateReply) Append(b []byte) []byte {
	b = le.AppendUint16(append(b, MsgAuthenticateReply, m.Status), m.Reserved)
	b = append(b, byte(m.Type))
	return append(le.AppendUint32(b, uint32(len(m.Data))), m.Data...)
}

func (h *SOLHeader) append(b []byte, code byte) []byte {
	b = le.AppendUint16(append(b, code, h.Status), h.Reserved)
	return le.AppendUint32(b, h.Seq)
}

func (s *SOLSettings) append(b []byte) []byte {
	for _, v := range [...]uint16{s.MaxTxBuffer, s.TxBufferTimeout, s.TxOverflowTimeout,
		s.HostSessionRxTimeout, s.HostFifoRxFlushTimeout, s.HeartbeatInterval} {
		b = le.AppendUint16(b, v)
	}
	return b
}

// appendData appends a u16 length and at most 65535 bytes of d.
func appendData(b, d []byte) []byte {
	d = d[:min(len(d), 0xFFFF)]
	return append(le.AppendUint16(b, uint16(len(d))), d...)
}

func (m *SOLStart) Append(b []byte) []byte {
	b = m.Settings.append(m.SOLHeader.append(b, MsgSOLStart))
	return le.AppendUint32(b, m.Reserved)
}

func (m *SOLStartReply) Append(b []byte) []byte {
	b = m.Settings.append(m.SOLHeader.append(b, MsgSOLStartReply))
	return append(b, m.Reserved[:]...)
}

func (m *SOLEnd) Append(b []byte) []byte       { return m.SOLHeader.append(b, MsgSOLEnd) }
func (m *SOLEndReply) Append(b []byte) []byte  { return m.SOLHeader.append(b, MsgSOLEndReply) }
func (m *SOLPing) Append(b []byte) []byte      { return m.SOLHeader.append(b, MsgSOLPing) }
func (m *SOLPong) Append(b []byte) []byte      { return m.SOLHeader.append(b, MsgSOLPong) }
func (m *SOLHeartbeat) Append(b []byte) []byte { return m.SOLHeader.append(b, MsgSOLHeartbeat) }

func (m *SOLOpen) Append(b []byte) []byte {
	return append(m.SOLHeader.append(b, MsgSOLOpen), m.Data[:]...)
}

func (m *SOLDataToHost) Append(b []byte) []byte {
	return appendData(m.SOLHeader.append(b, MsgSOLDataToHost), m.Data)
}

func (m *SOLControls) Append(b []byte) []byte {
	return append(m.SOLHeader.append(b, MsgSOLControls), m.Lines, m.State)
}

func (m *SOLDataFromHost) Append(b []byte) []byte {
	return appendData(m.SOLHeader.append(b, MsgSOLDataFromHost), m.Data)
}

func (*Recording) Append(b []byte) []byte { return append(b, MsgRecording) }
