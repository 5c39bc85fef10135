package apf

import (
	"errors"
	"fmt"
)

// ErrIncomplete reports that the buffer holds only the beginning of a message
// that may still turn out valid: read more bytes and parse again.
var ErrIncomplete = errors.New("apf: incomplete message")

// ParseError reports malformed input. The tunnel answers it with
// DISCONNECT(PROTOCOL_ERROR) and closes.
type ParseError struct {
	Type byte   // message type byte
	Off  int    // offset of the offending field from the start of the message
	Msg  string // what is wrong
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("apf: %s at byte %d: %s", TypeName(e.Type), e.Off, e.Msg)
}

// TypeName returns the spec name of a message type code.
func TypeName(t byte) string {
	switch t {
	case MsgDisconnect:
		return "DISCONNECT"
	case MsgServiceRequest:
		return "SERVICE_REQUEST"
	case MsgServiceAccept:
		return "SERVICE_ACCEPT"
	case MsgUserauthRequest:
		return "USERAUTH_REQUEST"
	case MsgUserauthFailure:
		return "USERAUTH_FAILURE"
	case MsgUserauthSuccess:
		return "USERAUTH_SUCCESS"
	case MsgGlobalRequest:
		return "GLOBAL_REQUEST"
	case MsgRequestSuccess:
		return "REQUEST_SUCCESS"
	case MsgRequestFailure:
		return "REQUEST_FAILURE"
	case MsgChannelOpen:
		return "CHANNEL_OPEN"
	case MsgChannelOpenConfirmation:
		return "CHANNEL_OPEN_CONFIRMATION"
	case MsgChannelOpenFailure:
		return "CHANNEL_OPEN_FAILURE"
	case MsgChannelWindowAdjust:
		return "CHANNEL_WINDOW_ADJUST"
	case MsgChannelData:
		return "CHANNEL_DATA"
	case MsgChannelClose:
		return "CHANNEL_CLOSE"
	case MsgProtocolVersion:
		return "PROTOCOL_VERSION"
	case MsgKeepaliveRequest:
		return "KEEPALIVE_REQUEST"
	case MsgKeepaliveReply:
		return "KEEPALIVE_REPLY"
	case MsgKeepaliveOptionsRequest:
		return "KEEPALIVE_OPTIONS_REQUEST"
	case MsgKeepaliveOptionsReply:
		return "KEEPALIVE_OPTIONS_REPLY"
	case MsgJSONControl:
		return "JSON_CONTROL"
	}
	return fmt.Sprintf("message type %d", t)
}

// Limits caps the lengths a peer may declare. A declared length above a limit
// is malformed input, reported before any of its bytes are awaited.
type Limits struct {
	// MaxString caps every string field (names, addresses, passwords) and
	// JSON_CONTROL payloads.
	MaxString uint32
	// MaxData caps the payload of one CHANNEL_DATA and udp-send-to message.
	MaxData uint32
}

// DefaultLimits are the limits [Parse] applies: strings up to 2048 bytes (the
// cap the device-management-toolkit MPS and MeshCentral use, far above
// anything AMT sends) and data up to 1 MiB.
var DefaultLimits = Limits{MaxString: 2048, MaxData: 1 << 20}

// Parse decodes the message at the front of b with [DefaultLimits].
// See [Limits.Parse].
func Parse(b []byte) (Message, int, error) { return DefaultLimits.Parse(b) }

// Parse decodes the message at the front of b and returns it with the number
// of bytes it occupies. It returns [ErrIncomplete] when b is a proper prefix of
// a message that could still be valid, and a [*ParseError] when b cannot start
// a valid message.
//
// Two encodings cannot be delimited from their bytes alone, because APF has no
// outer length: the data of a global request with an unknown name, and the
// method data of a USERAUTH_REQUEST with a method other than "password" or
// "none". For those, Parse takes every remaining byte of b as the message
// (AMT never sends them; the tunnel answers them and, for an unknown
// request, goes on, since the rest of that read belonged to it).
//
// REQUEST_SUCCESS is decoded in its 5-byte form (the reply to tcpip-forward).
// A client that awaits the 1-byte reply to a cancel uses [ParseRequestSuccess].
func (l Limits) Parse(b []byte) (Message, int, error) {
	if len(b) == 0 {
		return nil, 0, ErrIncomplete
	}
	r := reader{b: b, off: 1, lim: l}
	var m Message
	switch b[0] {
	case MsgDisconnect:
		m = &Disconnect{Reason: DisconnectReason(r.u32()), Reserved: r.u16()}
	case MsgServiceRequest:
		m = &ServiceRequest{Service: r.str()}
	case MsgServiceAccept:
		m = &ServiceAccept{Service: r.str()}
	case MsgUserauthRequest:
		m = r.userauthRequest()
	case MsgUserauthFailure:
		m = &UserauthFailure{Methods: r.str(), PartialSuccess: r.bool()}
	case MsgUserauthSuccess:
		m = &UserauthSuccess{}
	case MsgGlobalRequest:
		m = r.globalRequest()
	case MsgRequestSuccess:
		m = &RequestSuccess{Port: r.u32()}
	case MsgRequestFailure:
		m = &RequestFailure{}
	case MsgChannelOpen:
		m = &ChannelOpen{ChannelType: r.str(), Sender: r.u32(), Window: r.u32(), MaxPacket: r.u32(),
			ConnectedAddress: r.str(), ConnectedPort: r.u32(), OriginatorAddress: r.str(), OriginatorPort: r.u32()}
	case MsgChannelOpenConfirmation:
		m = &ChannelOpenConfirmation{Recipient: r.u32(), Sender: r.u32(), Window: r.u32(), Reserved: r.u32()}
	case MsgChannelOpenFailure:
		m = &ChannelOpenFailure{Recipient: r.u32(), Reason: OpenFailureReason(r.u32()), Reserved1: r.u32(), Reserved2: r.u32()}
	case MsgChannelWindowAdjust:
		m = &WindowAdjust{Recipient: r.u32(), BytesToAdd: r.u32()}
	case MsgChannelData:
		m = &ChannelData{Recipient: r.u32(), Data: r.data(l.MaxData)}
	case MsgChannelClose:
		m = &ChannelClose{Recipient: r.u32()}
	case MsgProtocolVersion:
		v := &ProtocolVersion{Major: r.u32(), Minor: r.u32(), Trigger: r.u32()}
		copy(v.UUID[:], r.fixed(16))
		copy(v.Reserved[:], r.fixed(64))
		m = v
	case MsgKeepaliveRequest:
		m = &KeepaliveRequest{Cookie: r.u32()}
	case MsgKeepaliveReply:
		m = &KeepaliveReply{Cookie: r.u32()}
	case MsgKeepaliveOptionsRequest:
		m = &KeepaliveOptionsRequest{Interval: r.u32(), Timeout: r.u32()}
	case MsgKeepaliveOptionsReply:
		m = &KeepaliveOptionsReply{Interval: r.u32(), Timeout: r.u32()}
	case MsgJSONControl:
		m = &JSONControl{Data: r.data(l.MaxString)}
	default:
		return nil, 0, &ParseError{Type: b[0], Off: 0, Msg: "unknown message type"}
	}
	if r.err != nil {
		return nil, 0, r.err
	}
	return m, r.off, nil
}

// ParseRequestSuccess decodes a REQUEST_SUCCESS at the front of b, in the
// 5-byte form (withPort, the reply to tcpip-forward) or the 1-byte form (the
// reply to cancel-tcpip-forward).
func ParseRequestSuccess(b []byte, withPort bool) (*RequestSuccess, int, error) {
	if len(b) == 0 {
		return nil, 0, ErrIncomplete
	}
	if b[0] != MsgRequestSuccess {
		return nil, 0, &ParseError{Type: b[0], Msg: "not REQUEST_SUCCESS"}
	}
	if !withPort {
		return &RequestSuccess{NoPort: true}, 1, nil
	}
	r := reader{b: b, off: 1, lim: DefaultLimits}
	m := &RequestSuccess{Port: r.u32()}
	if r.err != nil {
		return nil, 0, r.err
	}
	return m, r.off, nil
}

func (r *reader) userauthRequest() Message {
	m := &UserauthRequest{Username: r.str(), Service: r.str(), Method: r.str()}
	switch {
	case r.err != nil:
	case m.Method == MethodPassword:
		m.ChangePassword = r.bool()
		m.Password = r.data(r.lim.MaxString)
	case m.Method == MethodNone:
	default:
		m.MethodData = r.rest()
	}
	return m
}

func (r *reader) globalRequest() Message {
	name := r.str()
	want := r.bool()
	if r.err != nil {
		return nil
	}
	switch name {
	case RequestTCPIPForward, RequestCancelTCPIPForward:
		return &TCPIPForward{Cancel: name == RequestCancelTCPIPForward, WantReply: want, Address: r.str(), Port: r.u32()}
	case RequestUDPSendTo:
		return &UDPSendTo{WantReply: want, Address: r.str(), Port: r.u32(),
			OriginatorAddress: r.str(), OriginatorPort: r.u32(), Data: r.data(r.lim.MaxData)}
	}
	return &GlobalRequest{Name: name, WantReply: want, Data: r.rest()}
}

// reader decodes fields from b at off. The first problem is kept in err and
// every later call returns a zero value, so decoders read straight through.
type reader struct {
	b   []byte
	off int
	lim Limits
	err error
}

func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if len(r.b)-r.off < n {
		r.err = ErrIncomplete
		return false
	}
	return true
}

func (r *reader) fail(msg string) {
	if r.err == nil {
		r.err = &ParseError{Type: r.b[0], Off: r.off, Msg: msg}
	}
}

func (r *reader) fixed(n int) []byte {
	if !r.need(n) {
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := be.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := be.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

// bool accepts only 0 and 1: every APF peer sends those, and a strict
// decoding keeps re-encoding byte-exact.
func (r *reader) bool() bool {
	if !r.need(1) {
		return false
	}
	switch r.b[r.off] {
	case 0:
		r.off++
		return false
	case 1:
		r.off++
		return true
	}
	r.fail("boolean is neither 0 nor 1")
	return false
}

// data reads a u32 length and that many bytes, rejecting a length above max
// as soon as the length field is there.
func (r *reader) data(max uint32) []byte {
	if !r.need(4) {
		return nil
	}
	n := be.Uint32(r.b[r.off:])
	if n > max {
		r.fail(fmt.Sprintf("length %d exceeds limit %d", n, max))
		return nil
	}
	r.off += 4
	return r.fixed(int(n))
}

func (r *reader) str() string {
	return string(r.data(r.lim.MaxString))
}

func (r *reader) rest() []byte {
	if r.err != nil {
		return nil
	}
	v := r.b[r.off:len(r.b):len(r.b)]
	r.off = len(r.b)
	return v
}
