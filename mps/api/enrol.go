package api

// Enrolment: POST /api/v1/enrol configures CIRA in a device on the LAN
// (enrol.md), POST /api/v1/unenrol removes it. Both answer a stream of
// server-sent events (text/event-stream) so that a console, the CLI and a
// browser see each step as it happens:
//
//	event: step     data: EnrolStep (one per step and state change)
//	event: result   data: EnrolResult (last, on success)
//	event: error    data: {"error": sentence, "result": EnrolResult} (last, on failure)
//
// A request that is refused before anything starts (a malformed body, a
// missing password, no enrolment here) gets a plain JSON error instead.
// The AMT password travels in the body, never in the URL, and is never
// logged or echoed.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// maxEnrolBody caps an enrolment request's body.
const maxEnrolBody = 4 << 10

// enrolTimeout bounds an enrolment, its wait for the tunnel included
// (EnrolRequest.WaitSeconds is at most 300).
const enrolTimeout = 7 * time.Minute

// EnrolRequest asks for a device on the LAN to be enrolled (or unenrolled).
type EnrolRequest struct {
	// Address is the device's LAN address, HOST or HOST:PORT (default port
	// 16992, or 16993 with TLS). For unenrol it may also name a device
	// connected here (GUID, host name or alias): then the removal goes
	// through its tunnel.
	Address string `json:"address"`
	// User is the AMT admin user (default "admin"); Password its password.
	User     string `json:"user,omitempty"`
	Password string `json:"password"`
	// TLS uses WS-Man over TLS (16993). Pin, if set, is the SHA-256 of the
	// device's certificate (hex, colons allowed) that must be presented;
	// empty trusts the first certificate and reports it (and Presence
	// keeps it for the next time).
	TLS bool   `json:"tls,omitempty"`
	Pin string `json:"pin,omitempty"`
	// Replace removes other MPSes' entries and rules in the way.
	Replace bool `json:"replace,omitempty"`
	// WaitSeconds is how long to wait for the device's tunnel after the
	// writes: 0 means the default (120 s), negative not at all.
	WaitSeconds int `json:"waitSeconds,omitempty"`
}

// String hides the password, so that a request is never logged with it.
func (r EnrolRequest) String() string {
	return "enrol " + r.Address + " as " + r.User
}

// EnrolStep is one step of an enrolment as it happens.
type EnrolStep struct {
	Step     string    `json:"step"`  // e.g. "read", "root", "mps", "policy", "environment", "tunnel"
	State    string    `json:"state"` // running, done, skipped, failed
	Sentence string    `json:"sentence"`
	Time     time.Time `json:"time"`
}

// EnrolResult says how an enrolment went.
type EnrolResult struct {
	Address string `json:"address"`
	GUID    string `json:"guid,omitempty"`
	// Connected reports that the device's tunnel came up (enrol) or that
	// the removal went through the tunnel (unenrol).
	Connected bool `json:"connected"`
	// Certificate is the SHA-256 of the device's TLS certificate, with TLS.
	Certificate string      `json:"certificate,omitempty"`
	Steps       []EnrolStep `json:"steps"`
	Notes       []string    `json:"notes,omitempty"`
	Millis      int64       `json:"millis"`
}

// Enroller runs enrolments for the API.
type Enroller interface {
	Enrol(ctx context.Context, req EnrolRequest, progress func(EnrolStep)) (EnrolResult, error)
	Unenrol(ctx context.Context, req EnrolRequest, progress func(EnrolStep)) (EnrolResult, error)
}

func (a *API) enrolRoutes() {
	a.mux.HandleFunc("POST /api/v1/enrol", a.auth(a.notCrossSite(a.enrolHandler(false))))
	a.mux.HandleFunc("POST /api/v1/unenrol", a.auth(a.notCrossSite(a.enrolHandler(true))))
}

func (a *API) enrolHandler(remove bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Enrol == nil {
			writeError(w, http.StatusNotImplemented, "this instance does not enrol devices")
			return
		}
		var req EnrolRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEnrolBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "the body is not an enrolment request: want {\"address\": ..., \"password\": ...}")
			return
		}
		req.Address = strings.TrimSpace(req.Address)
		switch {
		case req.Address == "" || len(req.Address) > 255:
			writeError(w, http.StatusBadRequest, "address: want the device's LAN address, HOST or HOST:PORT")
			return
		case req.Password == "" && !remove:
			writeError(w, http.StatusBadRequest, "password: the AMT admin password is required")
			return
		case len(req.Password) > 64 || len(req.User) > 64:
			writeError(w, http.StatusBadRequest, "user and password: at most 64 characters")
			return
		case req.WaitSeconds > 300:
			writeError(w, http.StatusBadRequest, "waitSeconds: at most 300")
			return
		}
		fl, _ := w.(http.Flusher)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		if fl != nil {
			fl.Flush()
		}
		// Events come from the enrolment's goroutine; one writer at a time,
		// and none after the handler returned.
		events := make(chan sseEvent, 64)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ev := range events {
				writeSSE(w, ev)
				if fl != nil {
					fl.Flush()
				}
			}
		}()
		send := func(ev sseEvent) {
			select {
			case events <- ev:
			case <-r.Context().Done():
			}
		}
		// An enrolment goes on when its client goes away: stopping between
		// two writes would leave the device half configured.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), enrolTimeout)
		defer cancel()
		user := userOf(r)
		run := a.cfg.Enrol.Enrol
		verb := "enrol"
		if remove {
			run, verb = a.cfg.Enrol.Unenrol, "unenrol"
		}
		a.log.Info("device "+verb+" started", "address", req.Address, "by", user)
		res, err := run(ctx, req, func(s EnrolStep) { send(sseEvent{"step", s}) })
		if err != nil {
			a.log.Warn("device "+verb+" failed", "address", req.Address, "by", user, "err", err)
			send(sseEvent{"error", enrolError{Error: err.Error(), Result: res}})
		} else {
			a.log.Info("device "+verb+" done", "address", req.Address, "guid", res.GUID, "connected", res.Connected, "by", user)
			send(sseEvent{"result", res})
		}
		close(events)
		<-done
	}
}

type enrolError struct {
	Error  string      `json:"error"`
	Result EnrolResult `json:"result"`
}

type sseEvent struct {
	name string
	data any
}

// writeSSE writes one event; the JSON has no newline, so it is one data
// line.
func writeSSE(w http.ResponseWriter, ev sseEvent) {
	b, err := json.Marshal(ev.data)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "cannot encode the event"})
	}
	w.Write([]byte("event: " + ev.name + "\ndata: "))
	w.Write(b)
	w.Write([]byte("\n\n"))
}

// ErrEnrolStream reports a stream that ended without a result.
var ErrEnrolStream = errors.New("the instance ended the enrolment stream without a result")
