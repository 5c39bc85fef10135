package history

import (
	"encoding/binary"
	"errors"
	"time"
	"unicode/utf8"
)

// Tunnel event kinds. Other kinds may be stored too; [Store.Availability]
// looks only at KindUp and KindDown.
const (
	KindUp         = "up"          // a device's tunnel is up and its ports have settled
	KindDown       = "down"        // a device's tunnel ended (Reason says why)
	KindAuthFailed = "auth-failed" // a device offered wrong credentials
	// KindDoctor is a connection problem the connection doctor
	// (mps/doctor) found: Reason is its class, Detail how many times
	// since the previous such record and what it saw. It is stored with
	// its kind as text (kind code 0), so older readers decode it.
	KindDoctor = "doctor"
)

// TunnelEvent is one thing that happened to a device's tunnel. It holds no
// secret: for auth failures, User is only the user name the device offered.
type TunnelEvent struct {
	Time       time.Time `json:"time"`
	Device     string    `json:"device"` // the device's GUID text
	Hostname   string    `json:"hostname,omitempty"`
	Kind       string    `json:"kind"`             // KindUp, KindDown or KindAuthFailed
	Reason     string    `json:"reason,omitempty"` // the tunnel's reason text, for downs and auth failures
	Detail     string    `json:"detail,omitempty"`
	Remote     string    `json:"remote,omitempty"` // the device's address
	User       string    `json:"user,omitempty"`   // the offered user name, for auth failures
	TLSVersion string    `json:"tls_version,omitempty"`
	TLSCipher  string    `json:"tls_cipher,omitempty"`
	Ports      []uint32  `json:"ports,omitempty"` // the ports the device forwards
}

// SessionRecord is one console session: one console connection to one
// device port. A record with the same Start and ID as an earlier one
// replaces it, so a session may be recorded when it starts and again when
// it ends.
type SessionRecord struct {
	ID              uint64    `json:"id"`
	Kind            string    `json:"kind"`           // how the console reached the device: "socks5", "http-connect", …
	Console         string    `json:"console"`        // the console's address
	User            string    `json:"user,omitempty"` // the console's account, if it authenticated
	Device          string    `json:"device"`         // the device's GUID, or the name the console used
	Host            string    `json:"host"`           // the name the console used
	Port            uint32    `json:"port"`
	BytesToDevice   int64     `json:"bytes_to_device"`
	BytesFromDevice int64     `json:"bytes_from_device"`
	Start           time.Time `json:"start"`
	End             time.Time `json:"end,omitzero"` // zero while the session is open
	EndReason       string    `json:"end_reason,omitempty"`
	// Via is the instance of the fleet a forwarded console came through.
	Via string `json:"via,omitempty"`
}

// Record encoding.
//
// A value starts with a version byte. Version 1 is laid out below; every
// string is a uvarint length followed by that many bytes, every integer a
// (u)varint. Later versions only append fields, so a reader decodes the
// fields it knows from a record of any version ≥ 1 and ignores the rest. A
// change that cannot be expressed by appending bumps formatVersion (the
// "format" key of the meta bucket) instead.
//
// The time and sequence (events) or start and ID (sessions) are in the key,
// not the value.
//
//	event v1:   1 | kind code | [kind] | device | hostname | reason | detail |
//	            remote | user | tls version | tls cipher | uvarint n | n × uvarint port
//	session v1: 1 | kind | console | user | device | host | endReason |
//	            uvarint port | varint bytesToDevice | varint bytesFromDevice |
//	            flags (bit 0: has end) | [varint end unix nanos] | [via]
//	            (via, the fleet instance a forwarded console came through, was
//	            appended later: older records end before it)
const recordVersion = 1

// Kind codes save the common kinds' text; code 0 is followed by the kind as
// a string.
var kindCodes = [...]string{1: KindUp, 2: KindDown, 3: KindAuthFailed}

// Size caps: a record is bounded however long the caller's strings are.
// Longer strings are cut (at a rune boundary) when they are added.
const (
	maxKeyString = 255  // device and user names, which go into keys behind a length byte
	maxString    = 1024 // every other string
	maxPorts     = 256
)

var errCorrupt = errors.New("history: corrupt record")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendEvent(b []byte, ev *TunnelEvent) []byte {
	b = append(b, recordVersion)
	code := byte(0)
	for i, k := range kindCodes {
		if i > 0 && k == ev.Kind {
			code = byte(i)
		}
	}
	b = append(b, code)
	if code == 0 {
		b = appendString(b, ev.Kind)
	}
	for _, s := range [...]string{ev.Device, ev.Hostname, ev.Reason, ev.Detail, ev.Remote, ev.User, ev.TLSVersion, ev.TLSCipher} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(ev.Ports)))
	for _, p := range ev.Ports {
		b = binary.AppendUvarint(b, uint64(p))
	}
	return b
}

func appendSession(b []byte, s *SessionRecord) []byte {
	b = append(b, recordVersion)
	for _, v := range [...]string{s.Kind, s.Console, s.User, s.Device, s.Host, s.EndReason} {
		b = appendString(b, v)
	}
	b = binary.AppendUvarint(b, uint64(s.Port))
	b = binary.AppendVarint(b, s.BytesToDevice)
	b = binary.AppendVarint(b, s.BytesFromDevice)
	if s.End.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = binary.AppendVarint(b, nanos(s.End))
	}
	if s.Via != "" {
		b = appendString(b, s.Via)
	}
	return b
}

// decoder reads a record; the first error sticks and later reads return
// zero values. It never allocates more than the input holds.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n]) // copies: bbolt's slices die with the transaction
	d.b = d.b[n:]
	return s
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v < 1 {
		d.err = errCorrupt
	}
}

// decodeEvent decodes an event value; the caller sets Time from the key.
func decodeEvent(v []byte) (TunnelEvent, error) {
	d := decoder{b: v}
	var ev TunnelEvent
	d.version()
	if code := d.byte(); code == 0 {
		ev.Kind = d.string()
	} else if int(code) < len(kindCodes) {
		ev.Kind = kindCodes[code]
	} else {
		d.err = errCorrupt
	}
	ev.Device = d.string()
	ev.Hostname = d.string()
	ev.Reason = d.string()
	ev.Detail = d.string()
	ev.Remote = d.string()
	ev.User = d.string()
	ev.TLSVersion = d.string()
	ev.TLSCipher = d.string()
	// Every port takes at least one byte: check before allocating.
	if n := d.uvarint(); n > 0 && d.err == nil {
		if n > maxPorts || n > uint64(len(d.b)) {
			return TunnelEvent{}, errCorrupt
		}
		ev.Ports = make([]uint32, n)
		for i := range ev.Ports {
			p := d.uvarint()
			if p > 0xFFFFFFFF {
				d.err = errCorrupt
			}
			ev.Ports[i] = uint32(p)
		}
	}
	if d.err != nil {
		return TunnelEvent{}, d.err
	}
	return ev, nil
}

// decodeSession decodes a session value; the caller sets Start and ID from
// the key.
func decodeSession(v []byte) (SessionRecord, error) {
	d := decoder{b: v}
	var s SessionRecord
	d.version()
	s.Kind = d.string()
	s.Console = d.string()
	s.User = d.string()
	s.Device = d.string()
	s.Host = d.string()
	s.EndReason = d.string()
	p := d.uvarint()
	if p > 0xFFFFFFFF {
		d.err = errCorrupt
	}
	s.Port = uint32(p)
	s.BytesToDevice = d.varint()
	s.BytesFromDevice = d.varint()
	if d.byte()&1 != 0 {
		s.End = fromNanos(d.varint())
	}
	if d.err == nil && len(d.b) > 0 {
		s.Via = d.string() // appended later; absent in older records
	}
	if d.err != nil {
		return SessionRecord{}, d.err
	}
	return s, nil
}

// clip cuts s to at most n bytes, at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// normalize returns a copy of ev that fits the caps, with its own Ports and
// a Time.
func (ev *TunnelEvent) normalize(now func() time.Time) *TunnelEvent {
	c := *ev
	if c.Time.IsZero() {
		c.Time = now()
	}
	c.Device = clip(c.Device, maxKeyString)
	for _, p := range []*string{&c.Hostname, &c.Kind, &c.Reason, &c.Detail, &c.Remote, &c.User, &c.TLSVersion, &c.TLSCipher} {
		*p = clip(*p, maxString)
	}
	if len(c.Ports) > maxPorts {
		c.Ports = c.Ports[:maxPorts]
	}
	c.Ports = append([]uint32(nil), c.Ports...)
	return &c
}

// normalize returns a copy of s that fits the caps, with a Start.
func (s *SessionRecord) normalize(now func() time.Time) *SessionRecord {
	c := *s
	if c.Start.IsZero() {
		c.Start = c.End
		if c.Start.IsZero() {
			c.Start = now()
		}
	}
	c.Device = clip(c.Device, maxKeyString)
	c.User = clip(c.User, maxKeyString)
	for _, p := range []*string{&c.Kind, &c.Console, &c.Host, &c.EndReason, &c.Via} {
		*p = clip(*p, maxString)
	}
	return &c
}
