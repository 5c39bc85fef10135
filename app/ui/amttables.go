package ui

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/wsman"
)

// The device window's listings, made from the toolbox's records: plain
// functions, so that what the window shows and what it exports are the
// same table, and both are tested without a window.

// timeCell is a time as the listings show and export it: local, with its
// offset, so that an export read elsewhere is not ambiguous.
func timeCell(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05 -07:00")
}

// clean makes a device's string fit for a cell: control characters
// become spaces, and it is trimmed. The device's strings are hostile
// input (the CSV export defuses formulas as well, see WriteCSV).
func clean(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) {
			return ' '
		}
		return r
	}, s))
}

// joinSet joins the non-empty parts with ", ".
func joinSet(parts ...string) string {
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), ", ")
}

// eventTable is the event log, in the order given (newest first).
func eventTable(evs []wsman.Event) Table {
	t := Table{Columns: []string{"Time", "Severity", "Entity", "Description"}, Rows: make([][]string, len(evs))}
	for i, e := range evs {
		t.Rows[i] = []string{timeCell(e.Time), e.SeverityName(), e.EntityName(), clean(e.Description)}
	}
	return t
}

// auditTable is the audit log, newest first (AMT gives it oldest first).
func auditTable(l wsman.AuditLog) Table {
	t := Table{Columns: []string{"Time", "Application", "Event", "Initiator", "Address", "Description"}, Rows: make([][]string, 0, len(l.Records))}
	for i := len(l.Records) - 1; i >= 0; i-- {
		r := l.Records[i]
		t.Rows = append(t.Rows, []string{timeCell(r.Time),
			cmp.Or(clean(r.App), fmt.Sprintf("application %d", r.AppID)),
			cmp.Or(clean(r.Event), fmt.Sprintf("event %d", r.EventID)),
			clean(r.Initiator), clean(r.NetAddress), clean(r.Description)})
	}
	if h := l.Header; h.MaxNumberOfRecords > 0 {
		t.Note = fmt.Sprintf("The device keeps %d of at most %d records (%d%% free).", h.CurrentNumberOfRecords, h.MaxNumberOfRecords, h.PercentageFree)
	}
	return t
}

// hardwareTable is the inventory, a component a row: chassis, board,
// BIOS, processors, memory modules, disks.
func hardwareTable(h wsman.Hardware) Table {
	t := Table{Columns: []string{"Component", "Manufacturer", "Model", "Serial number", "Details"}}
	add := func(part, maker, model, serial, details string) {
		t.Rows = append(t.Rows, []string{part, clean(maker), clean(model), clean(serial), details})
	}
	pkg := func(part string, p wsman.PhysicalPackage) {
		if p == (wsman.PhysicalPackage{}) {
			return
		}
		add(part, p.Manufacturer, p.Model, p.SerialNumber, joinSet(versionCell(p.Version), tagCell(p.Tag)))
	}
	pkg("Chassis", h.Chassis)
	pkg("Board", h.Board)
	if b := h.BIOS; b != (wsman.BIOS{}) {
		released := ""
		if d, _, ok := strings.Cut(b.ReleaseDate, "T"); ok && d != "" {
			released = "released " + clean(d)
		}
		add("BIOS", b.Manufacturer, "", "", joinSet(versionCell(b.Version), released))
	}
	for i, c := range h.Chips {
		speed := ""
		if i < len(h.Processors) {
			p := h.Processors[i]
			if p.MaxClockSpeed > 0 {
				speed = fmt.Sprintf("up to %d MHz", p.MaxClockSpeed)
			}
			if p.CurrentClockSpeed > 0 {
				speed = joinSet(speed, fmt.Sprintf("now %d MHz", p.CurrentClockSpeed))
			}
		}
		add("Processor", c.Manufacturer, c.Version, "", speed)
	}
	for _, m := range h.Memory {
		details := []string{clean(m.BankLabel)}
		if m.Capacity > 0 {
			details = append(details, sizeCell(m.Capacity))
		}
		if m.Speed > 0 {
			details = append(details, fmt.Sprintf("speed %d", m.Speed))
		}
		add("Memory", m.Manufacturer, m.PartNumber, m.SerialNumber, joinSet(details...))
	}
	for i, d := range h.Disks {
		var p wsman.PhysicalPackage
		if i < len(h.Packages) {
			p = h.Packages[i]
		}
		size := ""
		if d.MaxMediaSize > 0 {
			size = sizeCell(d.MaxMediaSize * 1000) // AMT gives kilobytes
		}
		add("Disk", p.Manufacturer, p.Model, p.SerialNumber, joinSet(clean(d.DeviceID), size))
	}
	if len(h.Missing) > 0 {
		t.Note = "Not on this platform: " + strings.Join(h.Missing, ", ") + "."
	}
	return t
}

func versionCell(v string) string {
	if v = clean(v); v != "" {
		return "version " + v
	}
	return ""
}

func tagCell(v string) string {
	if v = clean(v); v != "" {
		return "tag " + v
	}
	return ""
}

// sizeCell is a size in bytes in GB (disks) or GiB (memory): memory
// sizes are powers of two, disk sizes are sold in powers of ten.
func sizeCell(n int64) string {
	const gib = 1 << 30
	if n%gib == 0 {
		return fmt.Sprintf("%d GiB", n/gib)
	}
	return fmt.Sprintf("%.0f GB", float64(n)/1e9)
}
