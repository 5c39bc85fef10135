// Package api is Presence's HTTP API for scripts, web consoles and the
// command line: REST endpoints over the engine's devices, console sessions
// and port mappings, the websocket relay web consoles use to reach a device
// port, a proxy auto-config file and Prometheus metrics.
//
// Every endpoint but /api/v1/health and the name-free form of /proxy.pac
// needs a console account (HTTP Basic) or the instance's bearer token (the
// token the running instance writes for the local command line). Failed
// logins are limited per source address.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/internal/authlimit"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/toolbox"
)

// Config configures an [API]. Server and Proxy are required.
type Config struct {
	Server *mps.Server
	Proxy  *proxy.Server
	// Dial, if set, opens the relay's device connections (a fleet dials
	// peers' devices too); nil means Server.DialConsole.
	Dial proxy.DialFunc
	// Fleet, if set, is the instance's fleet: /api/v1/fleet lists it, and
	// /api/v1/devices adds the devices its peers hold.
	Fleet Fleet
	// Auth checks a console account's credentials. Nil refuses every
	// Basic login (the token, and loopback when allowed, still work).
	Auth func(user, pass string) bool
	// Token, if not empty, is accepted as "Authorization: Bearer <token>"
	// (and as a websocket subprotocol on the relay).
	Token string
	// AllowLoopbackNoAuth lets requests from loopback in without login.
	AllowLoopbackNoAuth bool
	// RootPEM is the MPS root certificate served at /api/v1/ciracert.
	RootPEM []byte
	// ProxyAddr is the proxy's host:port as consoles should reach it, for
	// /proxy.pac. Empty: the host of the PAC request with ProxyPort.
	ProxyAddr string
	ProxyPort int
	// Version and InstanceID are reported by /api/v1/health.
	Version    string
	InstanceID string
	// AMTLogin, if set, gives the AMT user and password the relay logs in
	// with on behalf of a web console that starts a redirection session
	// (port 16994) with an empty user name. The console never sees them.
	AMTLogin func(ctx context.Context, device string) (user, pass string, ok bool)
	// AMT, if set, answers the AMT toolbox's endpoints on the Intel
	// toolkit MPS's paths, /api/v1/amt/... (amt.go).
	AMT *toolbox.Toolbox
	// Enrol, if set, answers POST /api/v1/enrol and /api/v1/unenrol
	// (enrol.go).
	Enrol Enroller
	// Doctor, if set, answers /api/v1/doctor (doctor.go).
	Doctor Doctor
	// History, if set, answers the /api/v1/history endpoints.
	History *history.Store
	// SaveAliases, if set, is called with every alias after a change made
	// through the API, to keep them (the data dir's settings). An error
	// undoes nothing but is reported to the client.
	SaveAliases func(map[string]string) error
	// MaxAuthFailures and AuthWindow configure the failed-login limit
	// (authlimit defaults when zero).
	MaxAuthFailures int
	AuthWindow      time.Duration
	// Logger receives request logs; nil discards them.
	Logger *slog.Logger
}

// API serves the endpoints. Create it with [New].
type API struct {
	cfg       Config
	proxyPort atomic.Int64 // Config.ProxyPort, or what SetProxyPort set
	log       *slog.Logger
	limiter   *authlimit.Limiter
	mux       *http.ServeMux
	started   time.Time
	srv       *http.Server

	ctx    context.Context // ends relays on Shutdown
	cancel context.CancelFunc
	relays sync.WaitGroup
}

// New returns an API for cfg.
func New(cfg Config) (*API, error) {
	if cfg.Server == nil || cfg.Proxy == nil {
		return nil, errors.New("api: Config.Server and Config.Proxy are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{
		cfg:     cfg,
		log:     log,
		limiter: authlimit.New(cfg.MaxAuthFailures, cfg.AuthWindow),
		mux:     http.NewServeMux(),
		started: time.Now(),
	}
	a.proxyPort.Store(int64(cfg.ProxyPort))
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.routes()
	a.srv = &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return a, nil
}

func (a *API) routes() {
	a.mux.HandleFunc("GET /api/v1/health", a.health)
	a.mux.HandleFunc("GET /api/v1/devices", a.auth(a.devices))
	a.mux.HandleFunc("GET /api/v1/devices/{guid}", a.auth(a.device))
	a.mux.HandleFunc("DELETE /api/v1/devices/disconnect/{guid}", a.auth(a.disconnect))
	a.mux.HandleFunc("GET /api/v1/fleet", a.auth(a.fleetInfo))
	a.mux.HandleFunc("POST /api/v1/fleet/send-home", a.auth(a.sendHome))
	a.mux.HandleFunc("GET /api/v1/sessions", a.auth(a.sessions))
	a.mux.HandleFunc("DELETE /api/v1/sessions/{id}", a.auth(a.killSession))
	a.mux.HandleFunc("GET /api/v1/mappings", a.auth(a.mappings))
	a.mux.HandleFunc("POST /api/v1/mappings", a.auth(a.createMapping))
	a.mux.HandleFunc("DELETE /api/v1/mappings/{id}", a.auth(a.deleteMapping))
	a.mux.HandleFunc("GET /api/v1/aliases", a.auth(a.aliases))
	a.mux.HandleFunc("PUT /api/v1/aliases/{alias}", a.auth(a.setAlias))
	a.mux.HandleFunc("DELETE /api/v1/aliases/{alias}", a.auth(a.deleteAlias))
	a.mux.HandleFunc("GET /api/v1/history", a.auth(a.historyEvents))
	a.mux.HandleFunc("GET /api/v1/history/sessions", a.auth(a.historySessions))
	a.mux.HandleFunc("GET /api/v1/history/availability", a.auth(a.historyAvailability))
	a.mux.HandleFunc("GET /api/v1/ciracert", a.auth(a.ciracert))
	a.mux.HandleFunc("GET /metrics", a.auth(a.metrics))
	a.mux.HandleFunc("GET /proxy.pac", a.pac)
	a.mux.HandleFunc("GET /relay/webrelay.ashx", a.relay)
	a.amtRoutes()
	a.enrolRoutes()
	a.doctorRoutes()
}

// ServeHTTP routes a request; unknown paths get a JSON 404.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The mux answers a wrong method with 405; an unknown path gets a JSON
	// 404 here instead of the mux's text one.
	if _, pattern := a.mux.Handler(r); pattern == "" {
		if _, p := a.mux.Handler(withMethod(r, http.MethodGet)); p == "" || r.Method == http.MethodGet {
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
			return
		}
	}
	a.mux.ServeHTTP(w, r)
}

func withMethod(r *http.Request, m string) *http.Request {
	r2 := *r
	r2.Method = m
	return &r2
}

// Serve serves the API on ln until Shutdown.
func (a *API) Serve(ln net.Listener) error {
	err := a.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return net.ErrClosed
	}
	return err
}

// SetProxyPort changes the proxy port /proxy.pac names, after the proxy
// moved.
func (a *API) SetProxyPort(port int) { a.proxyPort.Store(int64(port)) }

// Shutdown stops the listeners, ends websocket relays and waits for
// requests in flight (up to ctx).
func (a *API) Shutdown(ctx context.Context) error {
	a.cancel()
	err := a.srv.Shutdown(ctx)
	a.relays.Wait()
	return err
}

// writeJSON writes v with status 200.
func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

// writeJSONStatus writes v with status code.
func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeError writes {"error": msg} with status code.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSONStatus(w, code, map[string]string{"error": msg})
}

type ctxKey struct{}

// userOf returns the authenticated user of a request ("" for token or
// loopback access).
func userOf(r *http.Request) string {
	u, _ := r.Context().Value(ctxKey{}).(string)
	return u
}

// login outcomes.
const (
	loginOK = iota
	loginMissing
	loginFailed
	loginBlocked
)

// authenticate checks a request's credentials: bearer token, Basic console
// account, extra tokens offered (the relay's subprotocols), or loopback.
func (a *API) authenticate(r *http.Request, tokens ...string) (user string, outcome int) {
	src := remoteIP(r)
	if a.cfg.AllowLoopbackNoAuth && src.IsLoopback() {
		if u, p, ok := r.BasicAuth(); ok && a.cfg.Auth != nil && a.cfg.Auth(u, p) {
			return u, loginOK
		}
		return "", loginOK
	}
	if a.limiter.Blocked(src) {
		return "", loginBlocked
	}
	authz := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(authz, "Bearer "); ok {
		tokens = append(tokens, strings.TrimSpace(t))
	}
	for _, t := range tokens {
		if a.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(t), []byte(a.cfg.Token)) == 1 {
			a.limiter.Succeed(src)
			return "", loginOK
		}
	}
	u, p, ok := r.BasicAuth()
	if !ok && len(tokens) == 0 {
		return "", loginMissing
	}
	if ok && a.cfg.Auth != nil && a.cfg.Auth(u, p) {
		a.limiter.Succeed(src)
		return u, loginOK
	}
	a.limiter.Fail(src)
	a.log.Info("api: login failed", "remote", r.RemoteAddr, "user", u)
	return u, loginFailed
}

// refuse answers a failed login.
func (a *API) refuse(w http.ResponseWriter, outcome int) {
	if outcome == loginBlocked {
		w.Header().Set("Retry-After", strconv.Itoa(int(a.limiter.Window().Seconds())))
		writeError(w, http.StatusTooManyRequests, "too many failed logins from this address; try again later")
		return
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="Presence", charset="UTF-8"`)
	writeError(w, http.StatusUnauthorized, "log in with a console account (presence account add --kind console NAME)")
}

// auth wraps a handler with the login check.
func (a *API) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, outcome := a.authenticate(r)
		if outcome != loginOK {
			a.refuse(w, outcome)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, user)))
	}
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Health is the body of /api/v1/health.
type Health struct {
	Status   string  `json:"status"`
	Version  string  `json:"version,omitempty"`
	Instance string  `json:"instance,omitempty"`
	Uptime   float64 `json:"uptime_seconds"`
	Tunnels  int     `json:"tunnels"`
	Sessions int     `json:"sessions"`
}

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, Health{
		Status: "ok", Version: a.cfg.Version, Instance: a.cfg.InstanceID,
		Uptime:   time.Since(a.started).Seconds(),
		Tunnels:  a.cfg.Server.Stats().Tunnels,
		Sessions: a.cfg.Proxy.Sessions().Stats().Active,
	})
}

// Fleet is what the API shows of the instance's fleet (mps/fleet.Peers).
type Fleet interface {
	Self() fleet.Member
	Links() []fleet.LinkState
	Owners() []fleet.Owner
	Away() []fleet.Away
}

// FleetActions is implemented by a Fleet whose instance acts on its
// peers' devices: the API's disconnect, port mappings and Send devices
// home use it.
type FleetActions interface {
	// Lookup finds the peer that holds the device named name (GUID or
	// host name).
	Lookup(name string) (fleet.Owner, bool)
	// Disconnect closes the tunnel of the device named name wherever in
	// the fleet it is, for the administrator user.
	Disconnect(ctx context.Context, name, user string) (guid, instance string, err error)
	// SendHome closes, rate per second (0: the default), the tunnels of
	// the devices away from a home instance that is up again, and
	// returns how many.
	SendHome(rate float64) (int, error)
}

// EtcdStatus is implemented by a Fleet that keeps its table in etcd.
type EtcdStatus interface {
	EtcdStatus() (configured, connected bool, since time.Time, err error)
}

// FleetInfo is GET /api/v1/fleet: this instance, its peer links, and
// the fleet's etcd, if it has one.
type FleetInfo struct {
	Self  fleet.Member      `json:"self"`
	Peers []fleet.LinkState `json:"peers"`
	Etcd  *EtcdInfo         `json:"etcd,omitempty"`
	// AwayFromHome counts the devices here whose home instance (the peer
	// that held them until its link dropped) is up again: what Send
	// devices home would close.
	AwayFromHome int `json:"away_from_home"`
}

// SendHomeRequest is the body of POST /api/v1/fleet/send-home (it may be
// empty).
type SendHomeRequest struct {
	// Rate is tunnels closed per second; 0 means the instance's default.
	Rate float64 `json:"rate,omitempty"`
}

// SendHomeResult is its answer.
type SendHomeResult struct {
	Devices int `json:"devices"`
}

// EtcdInfo says whether the fleet's etcd answers. While it does not, the
// instance serves its own devices and reaches its peers' through the
// links' tables.
type EtcdInfo struct {
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	Error     string    `json:"error,omitempty"`
}

type DeviceInfo struct {
	UUID string `json:"uuid"`
	// Instance is the instance of the fleet that holds the device's
	// tunnel (empty outside a fleet). A peer's device has only its GUID,
	// host name, instance and connected_since.
	Instance      string     `json:"instance,omitempty"`
	Hostname      string     `json:"hostname"`
	Aliases       []string   `json:"aliases,omitempty"`
	Remote        string     `json:"remote"`
	User          string     `json:"cira_user"`
	Ports         []uint32   `json:"ports"`
	TLSVersion    string     `json:"tls_version"`
	TLSCipher     string     `json:"tls_cipher"`
	APFVersion    string     `json:"apf_version"`
	ConnectedAt   time.Time  `json:"connected_since"`
	LastKeepalive *time.Time `json:"last_keepalive"`
	LastReceived  time.Time  `json:"last_received"`
	Keepalives    uint64     `json:"keepalives"`
	Channels      int        `json:"channels"`
	BytesIn       uint64     `json:"bytes_in"`
	BytesOut      uint64     `json:"bytes_out"`
	Sessions      int        `json:"sessions"`
	// Suspect: the device missed a keepalive (silent for longer than its
	// keepalive interval and a half); the idle timeout drops it later.
	Suspect bool `json:"suspect"`
	// LegacyTLS: the tunnel runs TLS 1.0 or 1.1.
	LegacyTLS bool `json:"legacy_tls"`
}

func (a *API) deviceInfo(d mps.Device, aliases map[string][]string, sessions map[string]int) DeviceInfo {
	in := d.Info
	di := DeviceInfo{
		UUID: d.UUID, Hostname: d.Hostname, Aliases: aliases[d.UUID], Remote: d.Remote, User: in.User,
		TLSVersion: in.TLSVersion, TLSCipher: in.TLSCipher, APFVersion: in.Protocol,
		ConnectedAt: in.ConnectedAt, LastReceived: in.LastReceived, Keepalives: in.Keepalives,
		Channels: in.Channels, BytesIn: in.BytesIn, BytesOut: in.BytesOut, Sessions: sessions[d.UUID],
		Ports: make([]uint32, 0, len(in.Forwards)), Suspect: d.Suspect, LegacyTLS: d.LegacyTLS,
	}
	if !in.LastKeepalive.IsZero() {
		t := in.LastKeepalive
		di.LastKeepalive = &t
	}
	for _, f := range in.Forwards {
		di.Ports = append(di.Ports, f.Port)
	}
	return di
}

// indexes returns aliases by GUID and live sessions by device.
func (a *API) indexes() (map[string][]string, map[string]int) {
	aliases := make(map[string][]string)
	for al, guid := range a.cfg.Server.Aliases() {
		aliases[guid] = append(aliases[guid], al)
	}
	sessions := make(map[string]int)
	for _, s := range a.cfg.Proxy.Sessions().List() {
		sessions[s.Device]++
	}
	return aliases, sessions
}

func (a *API) devices(w http.ResponseWriter, r *http.Request) {
	aliases, sessions := a.indexes()
	devs := a.cfg.Server.Devices()
	out := make([]DeviceInfo, 0, len(devs))
	self := ""
	if a.cfg.Fleet != nil {
		self = a.cfg.Fleet.Self().ID
	}
	local := make(map[string]bool, len(devs))
	for _, d := range devs {
		di := a.deviceInfo(d, aliases, sessions)
		di.Instance = self
		out = append(out, di)
		local[d.UUID] = true
	}
	if a.cfg.Fleet != nil {
		for _, o := range a.cfg.Fleet.Owners() {
			if !local[o.GUID] {
				out = append(out, DeviceInfo{UUID: o.GUID, Hostname: o.Host, Aliases: aliases[o.GUID], Instance: o.Instance,
					ConnectedAt: o.Since, Ports: []uint32{}})
			}
		}
		slices.SortFunc(out, func(x, y DeviceInfo) int { return strings.Compare(x.UUID, y.UUID) })
	}
	writeJSON(w, out)
}

// fleetInfo is GET /api/v1/fleet.
func (a *API) fleetInfo(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Fleet == nil {
		writeError(w, http.StatusNotFound, "this instance is in no fleet (presence fleet invite or join)")
		return
	}
	info := FleetInfo{Self: a.cfg.Fleet.Self(), Peers: a.cfg.Fleet.Links(), AwayFromHome: len(a.cfg.Fleet.Away())}
	if es, ok := a.cfg.Fleet.(EtcdStatus); ok {
		if configured, connected, since, err := es.EtcdStatus(); configured {
			info.Etcd = &EtcdInfo{Connected: connected, Since: since}
			if err != nil {
				info.Etcd.Error = err.Error()
			}
		}
	}
	writeJSON(w, info)
}

func (a *API) device(w http.ResponseWriter, r *http.Request) {
	d, ok := a.cfg.Server.Device(r.PathValue("guid"))
	if !ok {
		writeError(w, http.StatusNotFound, "no connected device is named "+strconv.Quote(r.PathValue("guid")))
		return
	}
	aliases, sessions := a.indexes()
	writeJSON(w, a.deviceInfo(d, aliases, sessions))
}

func (a *API) disconnect(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("guid")
	d, ok := a.cfg.Server.Device(name)
	if ok && a.cfg.Server.Disconnect(d.UUID) == nil {
		a.log.Info("api: device disconnected by an administrator", "device", d.UUID, "user", userOf(r))
		writeJSON(w, map[string]string{"disconnected": d.UUID})
		return
	}
	if fa, isFleet := a.cfg.Fleet.(FleetActions); isFleet {
		guid, inst, err := fa.Disconnect(r.Context(), name, userOf(r))
		if err == nil {
			a.log.Info("api: device on a peer disconnected by an administrator", "device", guid, "instance", inst, "user", userOf(r))
			writeJSON(w, map[string]string{"disconnected": guid, "instance": inst})
			return
		}
		if !errors.Is(err, mps.ErrUnknownDevice) {
			writeError(w, http.StatusBadGateway, err.Error())
			return
		}
	}
	writeError(w, http.StatusNotFound, "no connected device is named "+strconv.Quote(name))
}

// sendHome is POST /api/v1/fleet/send-home.
func (a *API) sendHome(w http.ResponseWriter, r *http.Request) {
	fa, ok := a.cfg.Fleet.(FleetActions)
	if !ok {
		writeError(w, http.StatusNotFound, "this instance is in no fleet (presence fleet invite or join)")
		return
	}
	var req SendHomeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) || req.Rate < 0 || math.IsNaN(req.Rate) {
		writeError(w, http.StatusBadRequest, "body must be empty or JSON like {\"rate\":20} (tunnels closed per second)")
		return
	}
	n, err := fa.SendHome(req.Rate)
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	a.log.Info("api: devices sent home", "devices", n, "user", userOf(r))
	writeJSON(w, SendHomeResult{Devices: n})
}

func (a *API) sessions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.cfg.Proxy.Sessions().List())
}

func (a *API) killSession(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || !a.cfg.Proxy.Sessions().Kill(id) {
		writeError(w, http.StatusNotFound, "no live session has id "+strconv.Quote(r.PathValue("id")))
		return
	}
	a.log.Info("api: session killed by an administrator", "session", id, "user", userOf(r))
	writeJSON(w, map[string]uint64{"killed": id})
}

func (a *API) mappings(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.cfg.Proxy.Mappings())
}

// MappingRequest is the body of POST /api/v1/mappings.
type MappingRequest struct {
	Device string `json:"device"`           // GUID, host name or alias of a connected device
	Port   uint32 `json:"port"`             // a port the device announced
	Listen string `json:"listen,omitempty"` // default 127.0.0.1:0
	// IdleTimeout in seconds; 0 = the default (10 min), negative = never.
	IdleTimeout int `json:"idle_timeout_seconds,omitempty"`
}

func (a *API) createMapping(w http.ResponseWriter, r *http.Request) {
	var req MappingRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON like {\"device\":\"GUID\",\"port\":16994}")
		return
	}
	guid, ok := a.mappable(req.Device, req.Port)
	if !ok {
		writeError(w, http.StatusNotFound, "no connected device is named "+strconv.Quote(req.Device))
		return
	}
	if guid == "" {
		writeError(w, http.StatusForbidden, fmt.Sprintf("device %s does not offer port %d", req.Device, req.Port))
		return
	}
	if req.Listen != "" && !loopbackListen(req.Listen) && !remoteIP(r).IsLoopback() {
		writeError(w, http.StatusForbidden, "only a console on this machine may map a port on a non-loopback address")
		return
	}
	m, err := a.cfg.Proxy.Map(proxy.MapConfig{
		Listen: req.Listen, Device: guid, Port: req.Port, User: userOf(r),
		IdleTimeout: time.Duration(req.IdleTimeout) * time.Second,
	})
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	a.log.Info("api: port mapping created", "id", m.ID, "listen", m.Listen, "device", guid, "port", req.Port, "user", userOf(r))
	w.Header().Set("Location", "/api/v1/mappings/"+strconv.FormatUint(m.ID, 10))
	writeJSONStatus(w, http.StatusCreated, m)
}

// mappable resolves a mapping's device: one of ours, which must offer
// port (guid "" if not), or one a peer holds, whose ports the owner checks
// when a connection comes. The mapping dials by GUID, through the fleet
// when the device is a peer's.
func (a *API) mappable(name string, port uint32) (guid string, ok bool) {
	if d, ok := a.cfg.Server.Device(name); ok {
		if !hasPort(d, port) {
			return "", true
		}
		return d.UUID, true
	}
	return a.peerDevice(name)
}

// peerDevice looks a device up among the fleet peers' (an alias set here
// names it by GUID): its GUID, and whether a peer holds it.
func (a *API) peerDevice(name string) (string, bool) {
	fa, isFleet := a.cfg.Fleet.(FleetActions)
	if !isFleet {
		return "", false
	}
	if g, ok := a.cfg.Server.Alias(name); ok {
		name = g
	}
	o, ok := fa.Lookup(name)
	return o.GUID, ok
}

func hasPort(d mps.Device, port uint32) bool {
	for _, f := range d.Info.Forwards {
		if f.Port == port {
			return true
		}
	}
	return false
}

func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback() || strings.EqualFold(host, "localhost")
}

func (a *API) deleteMapping(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || a.cfg.Proxy.Unmap(id) != nil {
		writeError(w, http.StatusNotFound, "no mapping has id "+strconv.Quote(r.PathValue("id")))
		return
	}
	writeJSON(w, map[string]uint64{"removed": id})
}

func (a *API) aliases(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.cfg.Server.Aliases())
}

// AliasRequest is the body of PUT /api/v1/aliases/{alias}.
type AliasRequest struct {
	Device string `json:"device"` // the device's GUID (any form)
}

func (a *API) setAlias(w http.ResponseWriter, r *http.Request) {
	var req AliasRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1024))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Device == "" {
		writeError(w, http.StatusBadRequest, "body must be JSON like {\"device\":\"GUID\"}")
		return
	}
	if err := a.cfg.Server.SetAlias(r.PathValue("alias"), req.Device); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.log.Info("api: alias set", "alias", r.PathValue("alias"), "device", req.Device, "user", userOf(r))
	a.saveAliases(w)
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request) {
	alias := strings.ToLower(r.PathValue("alias"))
	if _, ok := a.cfg.Server.Aliases()[alias]; !ok {
		writeError(w, http.StatusNotFound, "no alias "+strconv.Quote(alias))
		return
	}
	if err := a.cfg.Server.SetAlias(alias, ""); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.saveAliases(w)
}

// saveAliases keeps the aliases and answers with all of them.
func (a *API) saveAliases(w http.ResponseWriter) {
	all := a.cfg.Server.Aliases()
	if a.cfg.SaveAliases != nil {
		if err := a.cfg.SaveAliases(all); err != nil {
			a.log.Error("api: cannot save aliases", "err", err)
			writeError(w, http.StatusInternalServerError, "the alias works now but could not be saved: "+err.Error())
			return
		}
	}
	writeJSON(w, all)
}

func (a *API) ciracert(w http.ResponseWriter, r *http.Request) {
	if len(a.cfg.RootPEM) == 0 {
		writeError(w, http.StatusNotFound, "no MPS root certificate (run presence cert init)")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="presence-root.pem"`)
	w.Write(a.cfg.RootPEM)
}

// dial opens a console connection to a device for the relay.
func (a *API) dial(ctx context.Context, host string, port uint32) (net.Conn, error) {
	if a.cfg.Dial != nil {
		return a.cfg.Dial(ctx, host, port)
	}
	return a.cfg.Server.DialConsole(ctx, host, port)
}
