package adapter

import (
	"slices"
	"time"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/mps/doctor"
)

// The window's Connection problems screen: the instance's connection
// doctor (mps/doctor), the same report as `presence doctor` and
// GET /api/v1/doctor.

var _ ui.ProblemsBackend = (*Backend)(nil)

// problemSentences say what each class of finding is, for the screen's
// first line (the doctor's Fix says what to do).
var problemSentences = map[doctor.Class]string{
	doctor.LegacyTLS:        "The device offers only TLS 1.0/1.1, which this MPS does not allow it",
	doctor.NoSharedCipher:   "The device and this MPS share no TLS cipher suite",
	doctor.TLSFailed:        "The device's TLS handshake failed",
	doctor.CertRejected:     "The device rejected this MPS's certificate",
	doctor.CertUnsuitable:   "This MPS's certificate misses what AMT needs",
	doctor.WrongPassword:    "The device logged in with a wrong CIRA password",
	doctor.UnknownUser:      "The device logged in as a CIRA user this MPS does not have",
	doctor.DuplicateUUID:    "Two machines connect with the same GUID and replace each other's tunnel",
	doctor.HandshakeTimeout: "The device did not finish its handshake in time",
	doctor.Trickling:        "The device's handshake arrived too slowly to finish",
	doctor.ProtocolError:    "Something that is not Intel AMT connected to the CIRA port",
	doctor.KeepaliveMissed:  "The device stopped sending keepalives",
	doctor.ClosedEarly:      "The device closed the connection before its tunnel was up",
}

// problemActions are the fixes the window can do, by class.
var problemActions = map[doctor.Class]ui.ProblemAction{
	doctor.LegacyTLS:     ui.ActionLegacyTLS,
	doctor.CertRejected:  ui.ActionReEnrol,
	doctor.WrongPassword: ui.ActionReEnrol,
	doctor.UnknownUser:   ui.ActionAddAccount,
}

// ConnectionProblems returns the doctor's findings, most recent first,
// with the host name of each device connected now.
func (b *Backend) ConnectionProblems() ([]ui.Problem, error) {
	rep, err := b.In.DoctorReport(time.Time{}, "")
	if err != nil {
		return nil, err
	}
	out := make([]ui.Problem, 0, len(rep.Problems))
	for _, e := range rep.Problems {
		out = append(out, b.problemOf(e))
	}
	slices.SortStableFunc(out, func(a, b ui.Problem) int { return b.Last.Compare(a.Last) })
	return out, nil
}

func (b *Backend) problemOf(e doctor.Entry) ui.Problem {
	p := ui.Problem{Class: string(e.Class), Fix: e.Fix, Action: problemActions[e.Class], Device: e.Device,
		Remote: e.Remote, User: e.User, Count: e.Count, First: e.First, Last: e.Last}
	if p.Action == ui.ActionLegacyTLS && e.Device == "" {
		p.Action = ui.ActionNone // no GUID to allow yet
	}
	if e.Device != "" {
		if d, ok := b.In.Server.Device(e.Device); ok {
			p.Host = d.Hostname
		}
	}
	s, ok := problemSentences[e.Class]
	if !ok {
		s = "A connection failed (" + string(e.Class) + ")"
	}
	switch {
	case e.TLS != "" && e.Detail != "":
		s += " (" + e.TLS + "; " + e.Detail + ")"
	case e.TLS != "":
		s += " (" + e.TLS + ")"
	case e.Detail != "":
		s += " (" + e.Detail + ")"
	}
	p.Sentence = s + "."
	return p
}

// AllowLegacyTLS allows the device TLS 1.0/1.1, at once and in the saved
// settings: the fix of a legacy-tls finding. The Settings screen's copy
// learns the new list, so that saving it later keeps the device.
func (b *Backend) AllowLegacyTLS(guid string) error {
	if err := b.In.AllowLegacyTLS(guid, true); err != nil {
		return err
	}
	list := b.In.Settings().LegacyTLSDevices
	b.mu.Lock()
	b.settings.LegacyTLSDevices = list
	b.mu.Unlock()
	return nil
}
