package wsman

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// Classes of the logs (§1.1 rows 9 and 10).
const (
	classMessageLog = "AMT_MessageLog"
	classAuditLog   = "AMT_AuditLog"

	resMessageLog = baseAMT + classMessageLog
	resAuditLog   = baseAMT + classAuditLog
)

// maxReadRecords is the MaxReadRecords of GetRecords (§1.1 row 9).
const maxReadRecords = 390

// eventRecordLen is the size of an event log record.
const eventRecordLen = 21

// Event is one AMT event log record (an IPMI platform event, §1.1 row 9).
type Event struct {
	Time           time.Time // UTC
	DeviceAddress  uint8
	SensorType     uint8 // EventSensorType
	EventType      uint8
	Offset         uint8 // EventOffset
	SourceType     uint8 // EventSourceType
	Severity       uint8 // EventSeverity
	SensorNumber   uint8
	Entity         uint8
	EntityInstance uint8
	Data           [8]byte // EventData
	// Description is the event in a sentence.
	Description string
}

// EntityName names the entity the event is about.
func (e Event) EntityName() string {
	if int(e.Entity) < len(entityNames) {
		return entityNames[e.Entity]
	}
	return fmt.Sprintf("entity %d", e.Entity)
}

// SeverityName names the severity.
func (e Event) SeverityName() string {
	switch e.Severity {
	case 0:
		return "unspecified"
	case 1:
		return "monitor"
	case 2:
		return "information"
	case 4:
		return "OK"
	case 8:
		return "non-critical"
	case 16:
		return "critical"
	case 32:
		return "non-recoverable"
	}
	return fmt.Sprintf("severity %d", e.Severity)
}

// parseEventRecord decodes one 21-byte record: u32 little-endian time,
// then DeviceAddress, EventSensorType, EventType, EventOffset,
// EventSourceType, EventSeverity, SensorNumber, Entity, EntityInstance and
// 8 bytes of EventData. skip reports a record without a time (0 or
// 0xFFFFFFFF), which consoles drop.
func parseEventRecord(b []byte) (e Event, skip bool, err error) {
	if len(b) != eventRecordLen {
		return e, false, malformed("an event record of %d bytes; want %d", len(b), eventRecordLen)
	}
	t := binary.LittleEndian.Uint32(b)
	if t == 0 || t == 0xFFFFFFFF {
		return e, true, nil
	}
	e = Event{
		Time: time.Unix(int64(t), 0).UTC(), DeviceAddress: b[4], SensorType: b[5], EventType: b[6], Offset: b[7],
		SourceType: b[8], Severity: b[9], SensorNumber: b[10], Entity: b[11], EntityInstance: b[12],
	}
	copy(e.Data[:], b[13:])
	e.Description = describeEvent(e)
	return e, false, nil
}

// describeEvent puts an event in a sentence, by its sensor type (§1.1 row 9).
func describeEvent(e Event) string {
	d := e.Data
	switch e.SensorType {
	case 6:
		return fmt.Sprintf("Authentication failed %d times. The system may be under attack.", int(d[1])|int(d[2])<<8)
	case 15: // system firmware progress (IPMI sensor-specific offsets)
		if d[0] == 0xEB {
			return "System firmware event with invalid data."
		}
		if e.Offset == 0 {
			if int(d[1]) < len(firmwareErrors) {
				return "System firmware error: " + firmwareErrors[d[1]]
			}
			return fmt.Sprintf("System firmware error %d.", d[1])
		}
		if int(d[1]) < len(firmwareProgress) {
			return "System firmware progress: " + firmwareProgress[d[1]]
		}
		return fmt.Sprintf("System firmware progress %d.", d[1])
	case 18:
		if d[0] == 0xAA {
			state := watchdogStates[d[7]]
			if state == "" {
				state = fmt.Sprintf("state %d", d[7])
			}
			return fmt.Sprintf("Agent watchdog %02X%02X%02X%02X-%02X%02X-... changed to %s.", d[4], d[3], d[2], d[1], d[6], d[5], state)
		}
		return "System event."
	case 30:
		return "No bootable media."
	case 32:
		return "Operating system lockup or power interrupt."
	case 35:
		return "System boot failure."
	case 37:
		return "System firmware started (at least one CPU is properly executing)."
	}
	return fmt.Sprintf("Event of sensor type %d.", e.SensorType)
}

var firmwareErrors = [...]string{
	"unspecified.",
	"no system memory is installed.",
	"no usable system memory: all installed memory failed.",
	"unrecoverable hard-disk, ATAPI or IDE device failure.",
	"unrecoverable system-board failure.",
	"unrecoverable diskette subsystem failure.",
	"unrecoverable hard-disk controller failure.",
	"unrecoverable PS/2 or USB keyboard failure.",
	"removable boot media not found.",
	"unrecoverable video controller failure.",
	"no video device detected.",
	"firmware (BIOS) ROM corruption detected.",
	"CPU voltage mismatch (processors on one supply need different voltages).",
	"CPU speed matching failure.",
}

var firmwareProgress = [...]string{
	"unspecified.",
	"memory initialization.",
	"hard-disk initialization and test.",
	"secondary processor initialization.",
	"user authentication.",
	"user-initiated system setup.",
	"USB resource configuration.",
	"PCI resource configuration.",
	"option ROM initialization.",
	"video initialization.",
	"cache initialization.",
	"SM bus initialization.",
	"keyboard controller initialization.",
	"embedded or management controller initialization.",
	"docking station attachment.",
	"enabling the docking station.",
	"docking station ejection.",
	"disabling the docking station.",
	"calling the operating system wake-up vector.",
	"starting the operating system boot process.",
	"baseboard initialization.",
	"reserved.",
	"floppy initialization.",
	"keyboard test.",
	"pointing device test.",
	"primary processor initialization.",
}

var watchdogStates = map[byte]string{1: "not started", 2: "stopped", 4: "running", 8: "expired", 16: "suspended"}

var entityNames = [...]string{
	"Unspecified", "Other", "Unknown", "Processor", "Disk", "Peripheral", "System management module",
	"System board", "Memory module", "Processor module", "Power supply", "Add-in card", "Front panel board",
	"Back panel board", "Power system board", "Drive backplane", "System internal expansion board",
	"Other system board", "Processor board", "Power unit", "Power module", "Power management board",
	"Chassis back panel board", "System chassis", "Sub-chassis", "Other chassis board", "Disk drive bay",
	"Peripheral bay", "Device bay", "Fan cooling", "Cooling unit", "Cable interconnect", "Memory device",
	"System management software", "BIOS", "Intel(r) ME", "System bus", "Group", "Intel(r) ME",
	"External environment", "Battery", "Processing blade", "Connectivity switch", "Processor/memory module",
	"I/O module", "Processor I/O module", "Management controller firmware", "IPMI channel", "PCI bus",
	"PCI Express bus", "SCSI bus", "SATA/SAS bus", "Processor front side bus",
}

type getRecordsOutput struct {
	methodOutput
	IterationIdentifier int      `xml:"IterationIdentifier"`
	NoMoreRecords       bool     `xml:"NoMoreRecords"`
	RecordArray         []string `xml:"RecordArray"`
}

// EventLog reads the whole event log: AMT_MessageLog GetRecords from
// IterationIdentifier 1, MaxReadRecords 390, again from the returned
// IterationIdentifier until NoMoreRecords, and decodes every record. The
// records come in the device's order (on AMT, newest first).
func (s *Session) EventLog(ctx context.Context) ([]Event, error) {
	var events []Event
	next, read := 1, 0
	for calls := 0; ; calls++ {
		if calls == s.c.lim.MaxPulls {
			return nil, malformed("the event log needs more than %d reads", calls)
		}
		var out getRecordsOutput
		in := element("IterationIdentifier", itoa(next)) + element("MaxReadRecords", itoa(maxReadRecords))
		rv, err := s.invoke(ctx, resMessageLog, "GetRecords", in, &out)
		if err != nil {
			return nil, err
		}
		if rv == 3 { // no record exists in the log
			return events, nil
		}
		if err := check(resMessageLog, "GetRecords", rv, nil); err != nil {
			return nil, err
		}
		if read += len(out.RecordArray); read > s.c.lim.MaxRecords {
			return nil, malformed("the event log has more than %d records", s.c.lim.MaxRecords)
		}
		for _, r := range out.RecordArray {
			b, err := decodeRecord(r, eventRecordLen)
			if err != nil {
				return nil, err
			}
			e, skip, err := parseEventRecord(b)
			if err != nil {
				return nil, err
			}
			if !skip {
				events = append(events, e)
			}
		}
		if out.NoMoreRecords {
			return events, nil
		}
		if out.IterationIdentifier <= next || len(out.RecordArray) == 0 {
			return nil, malformed("GetRecords does not advance (IterationIdentifier %d after %d)", out.IterationIdentifier, next)
		}
		next = out.IterationIdentifier
	}
}

// decodeRecord decodes a base64 record of at most max bytes.
func decodeRecord(r string, max int) ([]byte, error) {
	r = strings.TrimSpace(r)
	if base64.StdEncoding.DecodedLen(len(r)) > max+2 {
		return nil, malformed("a log record of %d base64 characters; the limit is %d bytes", len(r), max)
	}
	b, err := base64.StdEncoding.DecodeString(r)
	if err != nil {
		return nil, malformed("a log record: %v", err)
	}
	return b, nil
}

// AuditLogHeader is the AMT_AuditLog instance: the state of the log.
type AuditLogHeader struct {
	CurrentNumberOfRecords int    `xml:"CurrentNumberOfRecords"`
	MaxNumberOfRecords     int    `xml:"MaxNumberOfRecords"`
	PercentageFree         int    `xml:"PercentageFree"`
	StoragePolicy          int    `xml:"StoragePolicy"` // 0 no roll-over, 1 roll-over, 2 restricted roll-over
	TimeOfLastRecord       string `xml:"-"`             // a CIM datetime
}

type auditLogHeaderXML struct {
	AuditLogHeader
	TimeOfLastRecord cimDatetime `xml:"TimeOfLastRecord"`
}

// AuditLog is the security audit log.
type AuditLog struct {
	Header  AuditLogHeader
	Records []AuditRecord
}

// AuditRecord is one audit log record (§1.1 row 10).
type AuditRecord struct {
	AppID         uint16 // AuditAppID
	EventID       uint16
	App           string // the application's name, "" if unknown
	Event         string // the event's name, "" if unknown
	InitiatorType uint8  // 0 HTTP digest user, 1 Kerberos SID, 2 local, 3 KVM default port
	Initiator     string // the user name, the SID, "Local" or "KVM Default Port"
	Time          time.Time
	LocationType  uint8  // MCLocationType
	NetAddress    string // the initiator's network address
	Extended      []byte // the event's extended data
	// Description is the event in a sentence, with what the extended
	// data says where it is known.
	Description string
}

// parseAuditRecord decodes one record: big-endian u16 AuditAppID and
// EventID, the initiator (type, then for 0 a length and a user name, for 1
// four bytes, a length and a SID), big-endian u32 time, MCLocationType, a
// length and the network address, a length and the extended data.
func parseAuditRecord(b []byte) (AuditRecord, error) {
	var r AuditRecord
	p := 0
	need := func(n int, what string) error {
		if n < 0 || len(b)-p < n {
			return malformed("an audit record of %d bytes ends within its %s", len(b), what)
		}
		return nil
	}
	if err := need(5, "header"); err != nil {
		return r, err
	}
	r.AppID, r.EventID, r.InitiatorType = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), b[4]
	p = 5
	switch r.InitiatorType {
	case 0:
		if err := need(1, "user name length"); err != nil {
			return r, err
		}
		n := int(b[p])
		p++
		if err := need(n, "user name"); err != nil {
			return r, err
		}
		r.Initiator = cleanText(string(b[p:p+n]), 255)
		p += n
	case 1:
		if err := need(5, "Kerberos initiator"); err != nil {
			return r, err
		}
		n := int(b[p+4])
		p += 5
		if err := need(n, "SID"); err != nil {
			return r, err
		}
		r.Initiator = sidString(b[p : p+n])
		p += n
	case 2:
		r.Initiator = "Local"
	case 3:
		r.Initiator = "KVM Default Port"
	default:
		return r, malformed("an audit record with initiator type %d", r.InitiatorType)
	}
	if err := need(6, "time"); err != nil {
		return r, err
	}
	r.Time = time.Unix(int64(binary.BigEndian.Uint32(b[p:])), 0).UTC()
	r.LocationType = b[p+4]
	n := int(b[p+5])
	p += 6
	if err := need(n, "network address"); err != nil {
		return r, err
	}
	r.NetAddress = cleanText(string(b[p:p+n]), 255)
	if r.NetAddress == "0000:0000:0000:0000:0000:0000:0000:0001" {
		r.NetAddress = "::1"
	}
	p += n
	if err := need(1, "extended data length"); err != nil {
		return r, err
	}
	n = int(b[p])
	p++
	if err := need(n, "extended data"); err != nil {
		return r, err
	}
	r.Extended = append([]byte(nil), b[p:p+n]...)
	r.App = auditApps[r.AppID]
	r.Event = auditEvents[uint32(r.AppID)*100+uint32(r.EventID)]
	r.Description = describeAudit(r)
	return r, nil
}

// sidString formats a Windows SID: S-revision-authority-subauthorities
// (the authority big-endian, the subauthorities little-endian u32).
func sidString(b []byte) string {
	if len(b) < 8 {
		return "S-?"
	}
	var auth uint64
	for _, x := range b[2:8] {
		auth = auth<<8 | uint64(x)
	}
	var s strings.Builder
	fmt.Fprintf(&s, "S-%d-%d", b[0], auth)
	for i, n := 8, 0; i+4 <= len(b) && n < int(b[1]); i, n = i+4, n+1 {
		fmt.Fprintf(&s, "-%d", binary.LittleEndian.Uint32(b[i:]))
	}
	return s.String()
}

// describeAudit puts an audit event in a sentence.
func describeAudit(r AuditRecord) string {
	s := r.Event
	if s == "" {
		s = fmt.Sprintf("Event %d of application %d", r.EventID, r.AppID)
	}
	x := r.Extended
	pick := func(i int, names ...string) string {
		if i < len(x) && int(x[i]) < len(names) {
			return names[x[i]]
		}
		return "?"
	}
	policies := []string{"none", "KVM", "all"}
	switch uint32(r.AppID)*100 + uint32(r.EventID) {
	case 1602, 1604: // ACL entry added or removed: a digest user
		if len(x) >= 2 && x[0] == 0 && len(x) >= 2+int(x[1]) {
			s += ": " + cleanText(string(x[2:2+int(x[1])]), 64)
		}
	case 1605:
		s += ": " + pick(0, "invalid ME access", "invalid MEBx access")
	case 1607:
		s += ": remote " + pick(0, "no auth", "server auth", "mutual auth") + ", local " + pick(1, "no auth", "server auth", "mutual auth")
	case 1619:
		s += ": from " + pick(0, "BIOS", "MEBx", "local MEI", "local WS-Man", "remote WS-Man")
	case 1900:
		if len(x) >= 16 {
			v := func(i int) uint16 { return binary.BigEndian.Uint16(x[i:]) }
			s += fmt.Sprintf(": from %d.%d.%d.%d to %d.%d.%d.%d", v(0), v(2), v(4), v(6), v(8), v(10), v(12), v(14))
		}
	case 2100:
		if len(x) >= 4 {
			s += ": " + time.Unix(int64(binary.BigEndian.Uint32(x)), 0).UTC().Format(time.RFC3339)
		}
	case 3000:
		s += ": from " + pick(0, policies...) + " to " + pick(1, policies...)
	case 3001:
		s += ": " + pick(0, "success", "failed 3 times")
	}
	return s + "."
}

var auditApps = map[uint16]string{
	16: "Security Admin", 17: "RCO", 18: "Redirection Manager", 19: "Firmware Update Manager",
	20: "Security Audit Log", 21: "Network Time", 22: "Network Administration", 23: "Storage Administration",
	24: "Event Manager", 25: "Circuit Breaker Manager", 26: "Agent Presence Manager", 27: "Wireless Configuration",
	28: "EAC", 29: "KVM", 30: "User Opt-In", 32: "Screen Blanking", 33: "Watchdog",
}

var auditEvents = map[uint32]string{
	1600: "Provisioning started", 1601: "Provisioning completed", 1602: "ACL entry added",
	1603: "ACL entry modified", 1604: "ACL entry removed", 1605: "ACL access with invalid credentials",
	1606: "ACL entry state changed", 1607: "TLS state changed", 1608: "TLS server certificate set",
	1609: "TLS server certificate removed", 1610: "TLS trusted root certificate added",
	1611: "TLS trusted root certificate removed", 1612: "TLS pre-shared key set",
	1613: "Kerberos settings modified", 1614: "Kerberos main key modified", 1615: "Flash wear-out counters reset",
	1616: "Power package modified", 1617: "Realm authentication mode set", 1618: "Upgraded to admin control mode",
	1619: "Unprovisioning started",
	1700: "Performed power up", 1701: "Performed power down", 1702: "Performed power cycle", 1703: "Performed reset",
	1704: "Set boot options", 1705: "Performed graceful power down", 1706: "Performed graceful reset",
	1707: "Performed standby", 1708: "Performed hibernate", 1709: "Performed NMI",
	1800: "IDE-R session opened", 1801: "IDE-R session closed", 1802: "IDE-R enabled", 1803: "IDE-R disabled",
	1804: "SOL session opened", 1805: "SOL session closed", 1806: "SOL enabled", 1807: "SOL disabled",
	1808: "KVM session started", 1809: "KVM session ended", 1810: "KVM enabled", 1811: "KVM disabled",
	1812: "VNC password failed 3 times",
	1900: "Firmware updated", 1901: "Firmware update failed",
	2000: "Security audit log cleared", 2001: "Security audit policy modified", 2002: "Security audit log disabled",
	2003: "Security audit log enabled", 2004: "Security audit log exported", 2005: "Security audit log recovered",
	2100: "Intel(R) ME time set",
	2200: "TCP/IP parameters set", 2201: "Host name set", 2202: "Domain name set", 2203: "VLAN parameters set",
	2204: "Link policy set", 2205: "IPv6 parameters set",
	2300: "Global storage attributes set", 2301: "Storage EACL modified", 2302: "Storage FPACL modified",
	2303: "Storage write operation",
	2400: "Alert subscribed", 2401: "Alert unsubscribed", 2402: "Event log cleared", 2403: "Event log frozen",
	2500: "Circuit breaker filter added", 2501: "Circuit breaker filter removed", 2502: "Circuit breaker policy added",
	2503: "Circuit breaker policy removed", 2504: "Circuit breaker default policy set",
	2505: "Circuit breaker heuristics option set", 2506: "Circuit breaker heuristics state cleared",
	2600: "Agent watchdog added", 2601: "Agent watchdog removed", 2602: "Agent watchdog action set",
	2700: "Wireless profile added", 2701: "Wireless profile removed", 2702: "Wireless profile updated",
	2703: "Wireless profile modified", 2704: "Wireless link preference changed",
	2705: "Wireless profile sharing with UEFI changed",
	2800: "EAC posture signer set", 2801: "EAC enabled", 2802: "EAC disabled", 2803: "EAC posture state updated",
	2804: "EAC options set",
	2900: "KVM opt-in enabled", 2901: "KVM opt-in disabled", 2902: "KVM password changed",
	2903: "KVM consent succeeded", 2904: "KVM consent failed",
	3000: "Opt-in policy changed", 3001: "Consent code sent", 3002: "Start opt-in blocked",
	3301: "Watchdog reset triggering options changed", 3302: "Watchdog action pairing changed",
}

type readRecordsOutput struct {
	methodOutput
	TotalRecordCount int      `xml:"TotalRecordCount"`
	RecordsReturned  int      `xml:"RecordsReturned"`
	EventRecords     []string `xml:"EventRecords"`
}

// AuditLog reads the audit log: the AMT_AuditLog instance (its header), then
// ReadRecords from StartIndex 1, again from the count read so far plus one
// while TotalRecordCount is larger, and decodes every record.
func (s *Session) AuditLog(ctx context.Context) (AuditLog, error) {
	var hx auditLogHeaderXML
	if err := s.get(ctx, resAuditLog, &hx); err != nil {
		return AuditLog{}, err
	}
	log := AuditLog{Header: hx.AuditLogHeader}
	log.Header.TimeOfLastRecord = strings.TrimSpace(hx.TimeOfLastRecord.Datetime)
	for calls := 0; ; calls++ {
		if calls == s.c.lim.MaxPulls {
			return AuditLog{}, malformed("the audit log needs more than %d reads", calls)
		}
		var out readRecordsOutput
		in := element("StartIndex", itoa(len(log.Records)+1))
		rv, err := s.invoke(ctx, resAuditLog, "ReadRecords", in, &out)
		if err := check(resAuditLog, "ReadRecords", rv, err); err != nil {
			return AuditLog{}, err
		}
		if out.TotalRecordCount > s.c.lim.MaxRecords || len(log.Records)+len(out.EventRecords) > s.c.lim.MaxRecords {
			return AuditLog{}, malformed("the audit log has more than %d records", s.c.lim.MaxRecords)
		}
		for _, e := range out.EventRecords {
			b, err := decodeRecord(e, s.c.lim.MaxRecord)
			if err != nil {
				return AuditLog{}, err
			}
			r, err := parseAuditRecord(b)
			if err != nil {
				return AuditLog{}, err
			}
			log.Records = append(log.Records, r)
		}
		if out.TotalRecordCount <= len(log.Records) {
			return log, nil
		}
		if len(out.EventRecords) == 0 {
			return AuditLog{}, malformed("ReadRecords returned no record at %d of %d", len(log.Records)+1, out.TotalRecordCount)
		}
	}
}
