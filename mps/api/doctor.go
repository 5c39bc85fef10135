package api

// The connection doctor: GET /api/v1/doctor lists why devices fail to
// connect or stay up (mps/doctor), the devices still on legacy TLS and the
// devices that are suspect (a keepalive missed). PUT and DELETE
// /api/v1/doctor/legacy-tls/{guid} allow a device TLS 1.0/1.1 or take it
// back: the one-click fix of a legacy-tls finding.

import (
	"net/http"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/doctor"
)

// DoctorReport is the answer of GET /api/v1/doctor.
type DoctorReport struct {
	Since    time.Time      `json:"since"`
	Problems []doctor.Entry `json:"problems"`
	// Legacy lists the connected devices on TLS 1.0/1.1, and the devices
	// allowed it (LegacyAllowed) and whether every device is (--legacy-tls).
	Legacy          []DoctorDevice `json:"legacy"`
	LegacyAllowed   []string       `json:"legacyAllowed"`
	LegacyEveryone  bool           `json:"legacyEveryone"`
	Suspect         []DoctorDevice `json:"suspect"`
	CertificateNote []string       `json:"certificate,omitempty"`
}

// DoctorDevice is a connected device in a doctor report.
type DoctorDevice struct {
	GUID    string  `json:"guid"`
	Host    string  `json:"host,omitempty"`
	Remote  string  `json:"remote"`
	TLS     string  `json:"tls,omitempty"`
	SilentS float64 `json:"silentSeconds,omitempty"`
	Suspect bool    `json:"suspect,omitempty"`
}

// Doctor is what the API needs of the instance for the doctor's routes.
type Doctor interface {
	DoctorReport(since time.Time, device string) (DoctorReport, error)
	AllowLegacyTLS(guid string, allow bool) error
}

// maxDoctorSince is the longest look back.
const maxDoctorSince = 366 * 24 * time.Hour

func (a *API) doctorRoutes() {
	a.mux.HandleFunc("GET /api/v1/doctor", a.auth(a.doctorReport))
	a.mux.HandleFunc("PUT /api/v1/doctor/legacy-tls/{guid}", a.auth(a.notCrossSite(a.legacyTLS(true))))
	a.mux.HandleFunc("DELETE /api/v1/doctor/legacy-tls/{guid}", a.auth(a.notCrossSite(a.legacyTLS(false))))
}

func (a *API) doctorReport(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Doctor == nil {
		writeError(w, http.StatusNotImplemented, "this instance has no connection doctor")
		return
	}
	q := r.URL.Query()
	since := time.Time{}
	if s := q.Get("since"); s != "" {
		t, err := parseSince(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		since = t
	}
	device := strings.TrimSpace(q.Get("device"))
	if len(device) > 255 {
		writeError(w, http.StatusBadRequest, "device: too long")
		return
	}
	rep, err := a.cfg.Doctor.DoctorReport(since, device)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, rep)
}

// parseSince reads a look back: a duration (1h, 30m) or an RFC 3339 time.
func parseSince(s string) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 || d > maxDoctorSince {
			return time.Time{}, errSince
		}
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errSince
	}
	return t, nil
}

var errSince = &sinceError{}

type sinceError struct{}

func (*sinceError) Error() string {
	return "since: want a duration such as 1h or 30m (at most a year), or an RFC 3339 time"
}

func (a *API) legacyTLS(allow bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Doctor == nil {
			writeError(w, http.StatusNotImplemented, "this instance has no connection doctor")
			return
		}
		guid := r.PathValue("guid")
		if err := a.cfg.Doctor.AllowLegacyTLS(guid, allow); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		a.log.Info("legacy TLS for a device changed", "device", guid, "allowed", allow, "by", userOf(r))
		w.WriteHeader(http.StatusNoContent)
	}
}

// DoctorDeviceOf is the doctor's view of a connected device.
func DoctorDeviceOf(d mps.Device) DoctorDevice {
	return DoctorDevice{GUID: d.UUID, Host: d.Hostname, Remote: d.Remote, Suspect: d.Suspect, SilentS: d.Silent.Seconds(), TLS: d.Info.TLSVersion}
}
