package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/history"
)

// The history endpoints. Query parameters: device (GUID, host name or
// alias), user (sessions), since and until (RFC 3339, or a duration such as
// 24h meaning that long ago), limit.

// ParseSince reads an RFC 3339 time or a duration back from now; "" is the
// zero time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Parse(time.RFC3339, s)
}

// historyQuery reads the common parameters, answering 400 or 503 itself.
func (a *API) historyQuery(w http.ResponseWriter, r *http.Request) (device string, since, until time.Time, limit int, ok bool) {
	if a.cfg.History == nil {
		writeError(w, http.StatusServiceUnavailable, "this instance keeps no history")
		return "", since, until, 0, false
	}
	q := r.URL.Query()
	now := time.Now()
	var err error
	if since, err = ParseSince(q.Get("since"), now); err != nil {
		writeError(w, http.StatusBadRequest, "since: want an RFC 3339 time or a duration like 24h")
		return "", since, until, 0, false
	}
	if until, err = ParseSince(q.Get("until"), now); err != nil {
		writeError(w, http.StatusBadRequest, "until: want an RFC 3339 time or a duration like 1h")
		return "", since, until, 0, false
	}
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
			writeError(w, http.StatusBadRequest, "limit: want a number")
			return "", since, until, 0, false
		}
	}
	return a.historyDevice(q.Get("device")), since, until, limit, true
}

// historyDevice resolves a device name to the GUID history keys it by: a
// GUID as it is, a connected device's host name or alias through the
// engine, else a host name seen in the history.
func (a *API) historyDevice(name string) string {
	if name == "" {
		return ""
	}
	if u, err := apf.ParseUUID(strings.TrimSuffix(name, ".amt")); err == nil {
		return u.String()
	}
	if d, ok := a.cfg.Server.Device(name); ok {
		return d.UUID
	}
	if guid, ok := a.cfg.Server.Aliases()[strings.ToLower(name)]; ok {
		return guid
	}
	return ResolveHistoryDevice(a.cfg.History, name)
}

// ResolveHistoryDevice finds the GUID of the device name stands for in h
// (history.FindDevice); it returns name unchanged if none.
func ResolveHistoryDevice(h *history.Store, name string) string {
	devs, err := h.Devices()
	if err != nil {
		return name
	}
	if guid, ok := history.FindDevice(devs, name); ok {
		return guid
	}
	return name
}

func (a *API) historyEvents(w http.ResponseWriter, r *http.Request) {
	device, since, until, limit, ok := a.historyQuery(w, r)
	if !ok {
		return
	}
	evs, err := a.cfg.History.Timeline(device, since, until, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, evs)
}

func (a *API) historySessions(w http.ResponseWriter, r *http.Request) {
	device, since, until, limit, ok := a.historyQuery(w, r)
	if !ok {
		return
	}
	ss, err := a.cfg.History.Sessions(history.Filter{Device: device, User: r.URL.Query().Get("user"), Since: since, Until: until, Limit: limit})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, ss)
}

func (a *API) historyAvailability(w http.ResponseWriter, r *http.Request) {
	device, since, until, _, ok := a.historyQuery(w, r)
	if !ok {
		return
	}
	if device == "" {
		writeError(w, http.StatusBadRequest, "availability needs device=")
		return
	}
	av, err := a.cfg.History.Availability(device, since, until)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, av)
}
