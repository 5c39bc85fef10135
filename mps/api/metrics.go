package api

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
)

// metrics serves the Prometheus text exposition format (version 0.0.4).
func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	st := a.cfg.Server.Stats()
	ss := a.cfg.Proxy.Sessions().Stats()
	ps := a.cfg.Proxy.Stats()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	m := metricWriter{w: w}
	m.one("presence_tunnels", "gauge", "Connected AMT devices (authenticated CIRA tunnels).", float64(st.Tunnels))
	m.one("presence_handshakes_in_progress", "gauge", "CIRA connections in their TLS or APF handshake.", float64(st.Handshakes))
	m.one("presence_tunnels_accepted_total", "counter", "CIRA handshakes completed.", float64(st.Accepted))
	m.labelled("presence_handshake_failures_total", "counter", "Failed or refused CIRA handshakes, by reason.", "reason", st.Failures)
	m.one("presence_sessions", "gauge", "Live console sessions.", float64(ss.Active))
	m.one("presence_sessions_total", "counter", "Console sessions started.", float64(ss.Total))
	m.labelled("presence_sessions_ended_total", "counter", "Console sessions ended, by reason.", "reason", ss.Ended)
	m.labelled("presence_session_bytes_total", "counter", "Bytes relayed between consoles and devices.", "direction",
		map[string]uint64{"to_device": uint64(ss.BytesToDevice), "from_device": uint64(ss.BytesFromDevice)})
	m.one("presence_proxy_connections", "gauge", "Console connections open on the proxy.", float64(ps.Conns))
	m.one("presence_proxy_auth_failures_total", "counter", "Failed console logins on the proxy.", float64(ps.AuthFailures))
	m.one("presence_proxy_refused_total", "counter", "Proxy requests refused (unknown device, port not allowed) or failed.", float64(ps.Refused))
	m.one("presence_mappings", "gauge", "Open port mappings.", float64(ps.Mappings))
	m.one("presence_events_dropped_total", "counter", "Engine events dropped for slow subscribers.", float64(st.Dropped))
	if h := a.cfg.History; h != nil {
		hs := h.Stats()
		m.one("presence_history_committed_total", "counter", "History records written.", float64(hs.Committed))
		m.one("presence_history_dropped_total", "counter", "History records lost: the write queue was full, or a batch failed.", float64(hs.Dropped+hs.Failed))
		m.one("presence_history_queued", "gauge", "History records waiting to be written.", float64(hs.Queued))
	}
}

type metricWriter struct{ w io.Writer }

func (m metricWriter) head(name, typ, help string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (m metricWriter) one(name, typ, help string, v float64) {
	m.head(name, typ, help)
	fmt.Fprintf(m.w, "%s %s\n", name, strconv.FormatFloat(v, 'g', -1, 64))
}

func (m metricWriter) labelled(name, typ, help, label string, vs map[string]uint64) {
	m.head(name, typ, help)
	for _, k := range slices.Sorted(maps.Keys(vs)) {
		fmt.Fprintf(m.w, "%s{%s=%s} %d\n", name, label, strconv.Quote(k), vs[k])
	}
}
