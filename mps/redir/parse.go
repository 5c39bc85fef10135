package redir

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// ErrIncomplete reports that the buffer holds only the beginning of a
// message that may still turn out valid: read more bytes and try again.
var ErrIncomplete = errors.New("redir: incomplete message")

// ParseError reports malformed or unexpected input. Off counts from the
// start of the message, also for the fields of authentication data.
type ParseError struct {
	Code byte   // the message code
	Off  int    // offset of the offending field
	Msg  string // what is wrong
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("redir: %s at byte %d: %s", Name(e.Code), e.Off, e.Msg)
}

// Limits caps the lengths a peer may declare. A declared length above a
// limit is malformed input, reported before any of its bytes are awaited.
type Limits struct {
	// MaxAuthData caps the data of [Authenticate] and [AuthenticateReply].
	MaxAuthData uint32
	// MaxSOLData caps the data of [SOLDataToHost] and [SOLDataFromHost].
	MaxSOLData uint32
}

// DefaultLimits are the limits [Len], [Parse] and [ReadMessage] apply.
// Authentication data may be 1 KiB: real AMT's digest messages are under
// 200 bytes (redirection.md §2). SOL data may be 16 KiB, above the largest
// MaxTxBuffer a known console asks the device for (15000, 9front).
var DefaultLimits = Limits{MaxAuthData: 1 << 10, MaxSOLData: 16 << 10}

// MaxAuthMessages is how many [Authenticate] messages a session may send
// before the device or a relay gives up. A login needs at most three (a
// query and the two digest steps).
const MaxAuthMessages = 8

// maxHeaderLen is the longest fixed part of a framed message (0x20).
const maxHeaderLen = 24

// headerLen returns the length of the part of a message that fixes its
// length: the whole message, or the part up to and including its length
// field.
func headerLen(code byte) (int, bool) {
	switch code {
	case MsgStartSession, MsgSOLEnd, MsgSOLEndReply, MsgSOLPing, MsgSOLPong, MsgSOLHeartbeat:
		return 8, true
	case MsgStartSessionReply:
		return 13, true
	case MsgEndSession:
		return 4, true
	case MsgAuthenticate, MsgAuthenticateReply:
		return 9, true
	case MsgSOLStart:
		return 24, true
	case MsgSOLStartReply:
		return 23, true
	case MsgSOLOpen:
		return 14, true
	case MsgSOLDataToHost, MsgSOLDataFromHost, MsgSOLControls:
		return 10, true
	case MsgRecording:
		return 1, true
	}
	return 0, false
}

// Len returns the length of the message that b begins with, with
// [DefaultLimits]. See [Limits.Len].
func Len(b []byte) (int, error) { return DefaultLimits.Len(b) }

// Len returns the length of the whole message that b begins with. b need
// hold only the part that fixes the length: the code and, for the messages
// with a length field, the bytes up to and including it. Len returns
// [ErrIncomplete] when b is shorter than that, and a [*ParseError] for a
// code this package does not frame or a declared length above l.
func (l Limits) Len(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, ErrIncomplete
	}
	h, ok := headerLen(b[0])
	if !ok {
		return 0, &ParseError{Code: b[0], Msg: "unknown message"}
	}
	if len(b) < h {
		return 0, ErrIncomplete
	}
	switch b[0] {
	case MsgStartSessionReply:
		return h + int(b[12]), nil
	case MsgAuthenticate, MsgAuthenticateReply:
		n := le.Uint32(b[5:9])
		if n > l.MaxAuthData {
			return 0, &ParseError{Code: b[0], Off: 5, Msg: fmt.Sprintf("auth data length %d exceeds limit %d", n, l.MaxAuthData)}
		}
		return h + int(n), nil
	case MsgSOLDataToHost, MsgSOLDataFromHost:
		n := le.Uint16(b[8:10])
		if uint32(n) > l.MaxSOLData {
			return 0, &ParseError{Code: b[0], Off: 8, Msg: fmt.Sprintf("SOL data length %d exceeds limit %d", n, l.MaxSOLData)}
		}
		return h + int(n), nil
	}
	return h, nil
}

// Parse decodes the message at the front of b with [DefaultLimits]. See
// [Limits.Parse].
func Parse(b []byte) (Message, int, error) { return DefaultLimits.Parse(b) }

// Parse decodes the message at the front of b and returns it with the
// number of bytes it occupies. It returns [ErrIncomplete] when b is a
// proper prefix of a message that could still be valid, and a [*ParseError]
// when b cannot start a valid message. Every message decodes back to the
// bytes it came from: reserved bytes are kept.
func (l Limits) Parse(b []byte) (Message, int, error) {
	n, err := l.Len(b)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < n {
		return nil, 0, ErrIncomplete
	}
	b = b[:n:n]
	var m Message
	switch b[0] {
	case MsgStartSession:
		m = &StartSession{Flag: b[1], Reserved: le.Uint16(b[2:]), Kind: string(b[4:8])}
	case MsgStartSessionReply:
		m = &StartSessionReply{Status: b[1], Reserved: le.Uint16(b[2:]), ProtocolMajor: b[4], ProtocolMinor: b[5],
			FWMajor: b[6], FWMinor: b[7], OEM: le.Uint32(b[8:]), OEMData: b[13:]}
	case MsgEndSession:
		m = &EndSession{Reserved: [3]byte(b[1:4])}
	case MsgAuthenticate:
		m = &Authenticate{Reserved: [3]byte(b[1:4]), Type: AuthType(b[4]), Data: b[9:]}
	case MsgAuthenticateReply:
		m = &AuthenticateReply{Status: b[1], Reserved: le.Uint16(b[2:]), Type: AuthType(b[4]), Data: b[9:]}
	case MsgSOLStart:
		m = &SOLStart{SOLHeader: solHeader(b), Settings: solSettings(b[8:]), Reserved: le.Uint32(b[20:])}
	case MsgSOLStartReply:
		m = &SOLStartReply{SOLHeader: solHeader(b), Settings: solSettings(b[8:]), Reserved: [3]byte(b[20:23])}
	case MsgSOLEnd:
		m = &SOLEnd{solHeader(b)}
	case MsgSOLEndReply:
		m = &SOLEndReply{solHeader(b)}
	case MsgSOLPing:
		m = &SOLPing{solHeader(b)}
	case MsgSOLPong:
		m = &SOLPong{solHeader(b)}
	case MsgSOLOpen:
		m = &SOLOpen{SOLHeader: solHeader(b), Data: [6]byte(b[8:14])}
	case MsgSOLDataToHost:
		m = &SOLDataToHost{SOLHeader: solHeader(b), Data: b[10:]}
	case MsgSOLControls:
		m = &SOLControls{SOLHeader: solHeader(b), Lines: b[8], State: b[9]}
	case MsgSOLDataFromHost:
		m = &SOLDataFromHost{SOLHeader: solHeader(b), Data: b[10:]}
	case MsgSOLHeartbeat:
		m = &SOLHeartbeat{solHeader(b)}
	case MsgRecording:
		m = &Recording{}
	default:
		// Len knows no other code; this keeps a new one from being
		// half-added.
		return nil, 0, &ParseError{Code: b[0], Msg: "unknown message"}
	}
	return m, n, nil
}

func solHeader(b []byte) SOLHeader {
	return SOLHeader{Status: b[1], Reserved: le.Uint16(b[2:]), Seq: le.Uint32(b[4:])}
}

func solSettings(b []byte) SOLSettings {
	return SOLSettings{le.Uint16(b), le.Uint16(b[2:]), le.Uint16(b[4:]), le.Uint16(b[6:]), le.Uint16(b[8:]), le.Uint16(b[10:])}
}

// ReadMessage reads one message from r with [DefaultLimits]. See
// [Limits.ReadMessage].
func ReadMessage(r io.Reader, want ...byte) (Message, []byte, error) {
	return DefaultLimits.ReadMessage(r, want...)
}

// ReadMessage reads exactly one message from r, and returns it decoded
// together with its bytes (the message's slices alias them). With want, the
// message must have one of those codes: any other is a [*ParseError]
// ("unexpected message") as soon as its first byte is read, so nothing more
// of it is awaited.
//
// The first byte, then the part that fixes the length, are read before the
// rest is allocated, so a declared length above l is refused (a
// [*ParseError]) without reading or allocating it. ReadMessage returns
// [io.EOF] when r ends before the first byte and [io.ErrUnexpectedEOF]
// when it ends inside a message. With any error it returns the bytes read
// so far, so that a caller can answer a message it refuses; for a declared
// length above l it also returns the message decoded as if its data were
// empty.
//
// r is read only as far as the message goes; give it a buffered reader
// (such as a [bufio.Reader]) to avoid small reads.
func (l Limits) ReadMessage(r io.Reader, want ...byte) (Message, []byte, error) {
	var first [1]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return nil, nil, err
	}
	code := first[0]
	if len(want) > 0 && !slices.Contains(want, code) {
		return nil, []byte{code}, &ParseError{Code: code, Msg: "unexpected message"}
	}
	h, ok := headerLen(code)
	if !ok {
		return nil, []byte{code}, &ParseError{Code: code, Msg: "unknown message"}
	}
	b := make([]byte, h, maxHeaderLen)
	b[0] = code
	if k, err := io.ReadFull(r, b[1:]); err != nil {
		return nil, b[:1+k], noEOF(err)
	}
	n, err := l.Len(b)
	if err != nil {
		return headerOnly(b), b, err
	}
	if n > h {
		b = slices.Grow(b, n-h)[:n]
		if k, err := io.ReadFull(r, b[h:]); err != nil {
			return nil, b[:h+k], noEOF(err)
		}
	}
	m, _, err := l.Parse(b)
	if err != nil {
		return nil, b, err
	}
	return m, b, nil
}

// noEOF turns the end of the stream inside a message into
// io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// headerOnly decodes the fixed part b of a message whose declared length is
// above the limits, as if its data were empty.
func headerOnly(b []byte) Message {
	h := slices.Clone(b)
	switch h[0] {
	case MsgAuthenticate, MsgAuthenticateReply:
		le.PutUint32(h[5:], 0)
	case MsgSOLDataToHost, MsgSOLDataFromHost:
		le.PutUint16(h[8:], 0)
	}
	m, _, err := (Limits{}).Parse(h)
	if err != nil {
		return nil
	}
	return m
}
