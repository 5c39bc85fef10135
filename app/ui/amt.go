package ui

import (
	"encoding/csv"
	"errors"
	"io"
	"strings"

	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/wsman"
)

// The window's AMT toolbox: the optional interfaces a backend implements
// to have a Power column, the device pane's power actions and consent,
// the device window's inventory and logs, and its Serial-over-LAN
// terminal. The rules (which actions fit a device's state, when consent is
// needed, each refusal's sentence) are mps/toolbox's, the same for the
// window, the API and the command line: the window takes its value types
// and asks it, and only the adapter runs it.

// AMTBackend is the AMT toolbox of a running Presence. A backend that
// implements it gets the Power column and the device pane's AMT section;
// the others' windows show neither.
//
// Power and SelectPower do not block and may be called on the Fyne
// goroutine. The other methods talk to the device through its tunnel: the
// window calls them through its Go runner, never on the Fyne goroutine.
// Their errors are mps/toolbox's and mps/wsman's ([toolbox.Sentence] says
// each in a sentence) or an [*AMTError].
type AMTBackend interface {
	// Power returns the Power column's reading of the device, and false
	// before the first: the backend's gentle watch reads each device at
	// most once a minute, the selected one more often. The column shows
	// it at each snapshot the window applies.
	Power(guid string) (toolbox.PowerReading, bool)
	// SelectPower tells the watch which device is selected ("" for
	// none): it is read more often, and at once if its reading is old.
	SelectPower(guid string)

	// AMTStatus reads the device's power state, AMT version, control
	// mode, boot capabilities and consent state; [toolbox.Offers] says
	// what fits them.
	AMTStatus(guid string) (toolbox.Status, error)
	// AMTPower sends a power or boot action.
	AMTPower(guid string, a toolbox.Action) error
	// StartConsent asks the device to show a consent code to its user.
	StartConsent(guid string) error
	// SendConsentCode sends the code the user read off the device's
	// screen.
	SendConsentCode(guid string, code int) error
	// CancelConsent withdraws a consent request.
	CancelConsent(guid string) error

	// AMTHardware reads the hardware inventory.
	AMTHardware(guid string) (wsman.Hardware, error)
	// AMTEventLog reads the whole event log, newest first.
	AMTEventLog(guid string) ([]wsman.Event, error)
	// AMTAuditLog reads the whole audit log, oldest first.
	AMTAuditLog(guid string) (wsman.AuditLog, error)
}

// SOLBackend opens Serial-over-LAN terminals.
type SOLBackend interface {
	// OpenSOL opens a Serial-over-LAN session to the device: Read gives
	// what its console prints, Write sends keys, Close ends it. It is a
	// console session of the instance (in Sessions and History) until
	// then. It blocks on the network. Its error is an *AMTError.
	OpenSOL(guid string) (io.ReadWriteCloser, error)
}

// AMTError is a failure the backend has put in a sentence of its own (the
// terminal's, whose rules are the engine's), for errors that
// [toolbox.Sentence] does not know. Err is the cause, for the log.
type AMTError struct {
	Sentence string
	// Consent is set when the device needs the user's consent first.
	Consent bool
	Err     error
}

func (e *AMTError) Error() string { return e.Sentence }

// Unwrap returns the cause.
func (e *AMTError) Unwrap() error { return e.Err }

// amtSentence is the sentence to show for an AMT error.
func amtSentence(err error) string {
	if ae, ok := errors.AsType[*AMTError](err); ok {
		return ae.Sentence
	}
	return toolbox.Sentence(err)
}

// needsConsent reports whether err says the device needs consent first.
func needsConsent(err error) bool {
	if ae, ok := errors.AsType[*AMTError](err); ok {
		return ae.Consent
	}
	return errors.Is(err, wsman.ErrConsentRequired)
}

// Column text of the Power column.
const (
	powerUnknown = "—"     // not read yet, or not watched here
	powerError   = "error" // the last reading failed: the pane says why
)

// powerText is a power state in a word or two, as the Power column and
// the pane show it.
func powerText(p wsman.PowerState) string {
	switch p.State {
	case 3, 4:
		return "sleep"
	case 9:
		return "cycling"
	}
	return p.String()
}

// powerColumn is the Power column's text for a reading.
func powerColumn(r toolbox.PowerReading, ok bool) string {
	switch {
	case !ok:
		return powerUnknown
	case r.Err != nil:
		return powerError
	}
	return powerText(r.State)
}

// isBoot reports whether a is a boot option (to BIOS or PXE), which needs
// consent where [toolbox.Status.NeedsConsent] says so.
func isBoot(a toolbox.Action) bool { return a.Name() == "bios" || a.Name() == "pxe" }

// consentText says where consent stands on a device.
func consentText(st toolbox.Status) string {
	switch {
	case !st.ConsentKnown:
		return "none on this platform"
	case st.Consent.Consented():
		return "given"
	case st.Consent.OptInState == wsman.OptInRequested || st.Consent.OptInState == wsman.OptInDisplayed:
		return "requested: the device shows a code"
	case st.NeedsConsent() && st.ControlMode == "CCM":
		return "needed for boot options and the terminal\n(client control mode)"
	case st.NeedsConsent():
		return "needed for boot options and the terminal\n(the device's policy)"
	case st.Consent.OptInRequired == wsman.OptInKVM:
		return "needed for KVM only"
	}
	return "not needed"
}

// Table is a listing the window shows and exports: the hardware
// inventory, the event log, the audit log.
type Table struct {
	Columns []string
	Rows    [][]string
	// Note is said above the table ("Not on this platform: ...").
	Note string
}

// WriteCSV writes t as CSV (RFC 4180: a header row, then the rows; fields
// with commas, quotes or line breaks quoted). The device's strings are
// hostile input: a field that a spreadsheet would read as a formula (it
// starts with =, +, -, @, a tab or a carriage return) gets a leading
// apostrophe, so that opening the export cannot run anything.
func WriteCSV(w io.Writer, t Table) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.Columns); err != nil {
		return err
	}
	rec := make([]string, len(t.Columns))
	for _, r := range t.Rows {
		for i := range rec {
			rec[i] = ""
			if i < len(r) {
				rec[i] = defuse(r[i])
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// defuse prefixes a field a spreadsheet would take for a formula (OWASP's
// advice on CSV injection).
func defuse(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// wrapLines breaks s into lines of at most width characters at spaces
// (a word longer than width stays whole). The pane's labels do not wrap
// (see DeviceScreen.build), so long sentences are broken here.
func wrapLines(s string, width int) string {
	var out strings.Builder
	for i, para := range strings.Split(s, "\n") {
		if i > 0 {
			out.WriteByte('\n')
		}
		n := 0
		for j, w := range strings.Fields(para) {
			l := len([]rune(w))
			if j > 0 {
				if n+1+l > width {
					out.WriteByte('\n')
					n = 0
				} else {
					out.WriteByte(' ')
					n++
				}
			}
			out.WriteString(w)
			n += l
		}
	}
	return out.String()
}
