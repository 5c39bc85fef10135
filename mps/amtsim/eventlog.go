package amtsim

// The event log (AMT_MessageLog) and the audit log (AMT_AuditLog) in AMT's
// binary record layouts (amt-toolbox.md §1.1 rows 9 and 10).

import (
	"encoding/binary"
	"net"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// Log sizes: AMT's event log holds 390 records (GWM messagelog fixtures,
// MaxNumberOfRecords); the audit log's size depends on the firmware, and
// the simulator keeps the last 1024.
const (
	defaultEventLogSize = 390
	defaultAuditLogSize = 1024
	maxAuditPerRead     = 10  // ReadRecords returns at most 10 (amt-toolbox.md §1.1 row 10)
	maxRecordsPerGet    = 390 // GetRecords returns at most 390 (GWM MaxAMTRecords)
	eventRecordLen      = 21
)

// EventRecord is one record of AMT's event log: 21 bytes, a little-endian
// u32 time stamp (seconds since 1970), then DeviceAddress,
// EventSensorType, EventType, EventOffset, EventSourceType, EventSeverity,
// SensorNumber, Entity, EntityInstance and 8 bytes of EventData, one byte
// each (GWM amt/messagelog; IPMI platform event records).
type EventRecord struct {
	TimeStamp       uint32
	DeviceAddress   uint8
	EventSensorType uint8
	EventType       uint8
	EventOffset     uint8
	EventSourceType uint8
	EventSeverity   uint8
	SensorNumber    uint8
	Entity          uint8
	EntityInstance  uint8
	EventData       [8]byte
}

// Bytes returns the record in AMT's layout; GetRecords sends it base64.
func (r EventRecord) Bytes() []byte {
	b := binary.LittleEndian.AppendUint32(make([]byte, 0, eventRecordLen), r.TimeStamp)
	b = append(b, r.DeviceAddress, r.EventSensorType, r.EventType, r.EventOffset, r.EventSourceType,
		r.EventSeverity, r.SensorNumber, r.Entity, r.EntityInstance)
	return append(b, r.EventData[:]...)
}

// Event record values the simulator writes.
const (
	sensorSecurity = 0x06 // platform security violation attempt
	sensorProgress = 0x0F // system firmware progress
	eventTypeOEM   = 0x6F // sensor-specific
	sourceASF      = 0x68
	severityInfo   = 0x01 // "Monitor"
	severityCrit   = 0x10 // "Critical condition"
	entityBIOS     = 0x22
	entityME       = 0x26 // "Intel(r) ME"
)

// Firmware progress codes (IPMI sensor type 0Fh, offset 02h, event data
// 2) of a simulated boot.
const (
	progressMemory    = 0x01
	progressSetup     = 0x05 // user-initiated system setup
	progressPCI       = 0x07
	progressVideo     = 0x09
	progressOSBoot    = 0x13
	progressBaseboard = 0x14
)

func progressEvent(t time.Time, code byte) EventRecord {
	return EventRecord{
		TimeStamp: unixSeconds(t), DeviceAddress: 0xFF, EventSensorType: sensorProgress, EventType: eventTypeOEM,
		EventOffset: 0x02, EventSourceType: sourceASF, EventSeverity: severityInfo, SensorNumber: 0xFF,
		Entity: entityBIOS, EventData: [8]byte{0x40, code},
	}
}

// authFailureEvent is AMT's record of failed logins: "Authentication
// failed N times. The system may be under attack." (the GWM capture has
// 0xAA in the first data byte, N in the second).
func authFailureEvent(t time.Time, n int) EventRecord {
	return EventRecord{
		TimeStamp: unixSeconds(t), DeviceAddress: 0xFF, EventSensorType: sensorSecurity, EventType: eventTypeOEM,
		EventOffset: 0x05, EventSourceType: sourceASF, EventSeverity: severityCrit, SensorNumber: 0xFF,
		Entity: entityME, EntityInstance: 0x61, EventData: [8]byte{0xAA, byte(min(n, 255))},
	}
}

func unixSeconds(t time.Time) uint32 {
	s := t.Unix()
	if s < 1 {
		return 1
	}
	if s > 0xFFFFFFFE {
		return 0xFFFFFFFE // MCM drops 0xFFFFFFFF
	}
	return uint32(s)
}

// eventLog is a bounded log, oldest first, that drops its oldest records
// when full (OverwritePolicy 2, wraps when full).
type eventLog struct {
	recs []EventRecord
	max  int
}

func newEventLog(max int) *eventLog { return &eventLog{max: max} }

func (l *eventLog) add(r EventRecord) {
	if len(l.recs) == l.max {
		copy(l.recs, l.recs[1:])
		l.recs = l.recs[:l.max-1]
	}
	l.recs = append(l.recs, r)
}

func (l *eventLog) newestFirst() []EventRecord {
	out := make([]EventRecord, len(l.recs))
	for i, r := range l.recs {
		out[len(out)-1-i] = r
	}
	return out
}

// bootSequence logs the firmware progress of one boot at t.
func (l *eventLog) bootSequence(t time.Time, setup bool) {
	last := byte(progressOSBoot)
	if setup {
		last = progressSetup
	}
	for i, c := range []byte{progressBaseboard, progressMemory, progressPCI, progressVideo, last} {
		l.add(progressEvent(t.Add(time.Duration(i)*time.Second), c))
	}
}

// prefill logs n records of earlier boots, the newest an hour before now:
// boots eight hours apart, with a burst of failed logins before every
// fifth. The device's id varies the spacing so that fleets differ.
func (l *eventLog) prefill(n int, now time.Time, id apf.UUID) {
	if n <= 0 {
		return
	}
	var recs []EventRecord // newest first
	t := now.Add(-time.Hour)
	for cycle := 0; len(recs) < n; cycle++ {
		var boot eventLog
		boot.max = 8
		boot.bootSequence(t, cycle%11 == 3)
		for i := len(boot.recs) - 1; i >= 0 && len(recs) < n; i-- {
			recs = append(recs, boot.recs[i])
		}
		if cycle%5 == 4 && len(recs) < n {
			recs = append(recs, authFailureEvent(t.Add(-10*time.Minute), 3))
		}
		t = t.Add(-8*time.Hour - time.Duration(id[cycle%16])*time.Minute)
	}
	for i := len(recs) - 1; i >= 0; i-- {
		l.add(recs[i])
	}
}

// Audit application IDs (GWM auditlog AMTAppIDToString).
const (
	auditSecurityAdmin = 16
	auditRemoteControl = 17
	auditRedirection   = 18
	auditUserOptIn     = 30
)

// Audit initiator types.
const (
	initiatorDigest = 0 // an HTTP digest user: length and name follow
	initiatorLocal  = 2
)

// AuditRecord is one record of AMT's audit log. Its layout
// (amt-toolbox.md §1.1 row 10; GWM auditlog decoder): big-endian u16
// AuditAppID and EventID; the initiator type, and for a digest user a
// length byte and the name; a big-endian u32 time stamp; MCLocationType;
// a length byte and the network address as text; a length byte and the
// extended data.
type AuditRecord struct {
	AuditAppID, EventID uint16
	InitiatorType       uint8
	Initiator           string // the digest user name (type 0)
	TimeStamp           uint32
	MCLocationType      uint8
	NetAddress          string
	ExtendedData        []byte
}

// Bytes returns the record in AMT's layout; ReadRecords sends it base64.
// Strings and data longer than 255 bytes are cut.
func (r AuditRecord) Bytes() []byte {
	b := binary.BigEndian.AppendUint16(nil, r.AuditAppID)
	b = binary.BigEndian.AppendUint16(b, r.EventID)
	b = append(b, r.InitiatorType)
	if r.InitiatorType == initiatorDigest {
		b = appendLV8(b, []byte(r.Initiator))
	}
	b = binary.BigEndian.AppendUint32(b, r.TimeStamp)
	b = append(b, r.MCLocationType)
	b = appendLV8(b, []byte(r.NetAddress))
	return appendLV8(b, r.ExtendedData)
}

func appendLV8(b, v []byte) []byte {
	v = v[:min(len(v), 255)]
	return append(append(b, byte(len(v))), v...)
}

// auditRecord makes a record of an action by user from addr ("" user: the
// firmware itself).
func auditRecord(t time.Time, app, event uint16, user, addr string, ex []byte) AuditRecord {
	r := AuditRecord{AuditAppID: app, EventID: event, TimeStamp: unixSeconds(t), NetAddress: hostOnly(addr), ExtendedData: ex}
	if user == "" {
		r.InitiatorType, r.MCLocationType = initiatorLocal, 1
	} else {
		r.Initiator = user
	}
	return r
}

// provisionedRecord is the audit log's first record: AMT moved to
// operational mode.
func provisionedRecord(t time.Time, _ ControlMode) AuditRecord {
	return auditRecord(t, auditSecurityAdmin, 1, "", "", nil)
}

// hostOnly strips the port from a host:port address.
func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return strings.TrimSpace(addr)
}

// auditRC records a Remote Control event (17): 0 power up, 1 power down,
// 2 power cycle, 3 reset, 4 boot options set, 5 graceful power down, 6
// graceful reset, 7 standby, 8 hibernate, with the boot options, if any.
// Called with p.mu held.
func (p *Platform) auditRC(t time.Time, event uint16, opts []byte, user, addr string) {
	p.audit.add(auditRecord(t, auditRemoteControl, event, user, addr, opts))
}

// auditLog is a bounded log, oldest first, that rolls over.
type auditLog struct {
	recs []AuditRecord
	max  int
}

func newAuditLog(max int) *auditLog { return &auditLog{max: max} }

func (l *auditLog) add(r AuditRecord) {
	if len(l.recs) == l.max {
		copy(l.recs, l.recs[1:])
		l.recs = l.recs[:l.max-1]
	}
	l.recs = append(l.recs, r)
}
