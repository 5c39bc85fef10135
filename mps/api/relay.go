package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/websocket"

	"github.com/presence-mps/presence/mps/proxy"
)

// relayDialTimeout bounds opening the device channel for a relay.
const relayDialTimeout = 10 * time.Second

// relay serves /relay/webrelay.ashx?host=<device>&port=<p>: a websocket
// whose binary frames carry the raw bytes of one channel to the device
// port (the path the Intel toolkit's and MeshCommander's web consoles use;
// their extra parameters p, tls, tls1only and mode are ignored: bytes are
// relayed as they are). Port defaults to 16994 (redirection). Web consoles
// that cannot send an Authorization header pass the instance token as a
// websocket subprotocol.
func (a *API) relay(w http.ResponseWriter, r *http.Request) {
	var protos []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" && len(protos) < 8 {
				protos = append(protos, p)
			}
		}
	}
	user, outcome := a.authenticate(r, protos...)
	if outcome != loginOK {
		a.refuse(w, outcome)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeError(w, http.StatusBadRequest, "webrelay needs a websocket upgrade")
		return
	}
	if !sameOrigin(r) && r.Header.Get("Authorization") == "" && len(protos) == 0 && !remoteIP(r).IsLoopback() {
		// A page from elsewhere riding on a browser's cached login.
		writeError(w, http.StatusForbidden, "cross-origin relay requests must carry a token")
		return
	}
	q := r.URL.Query()
	host := q.Get("host")
	if host == "" {
		writeError(w, http.StatusBadRequest, "webrelay needs host=<device GUID or name>")
		return
	}
	port := uint64(16994)
	if ps := q.Get("port"); ps != "" {
		p, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || p == 0 {
			writeError(w, http.StatusBadRequest, "port must be 1 to 65535")
			return
		}
		port = p
	}
	ctx, cancel := context.WithTimeout(a.ctx, relayDialTimeout)
	dc, err := a.dial(proxy.WithConsole(ctx, proxy.Console{User: user, Addr: r.RemoteAddr}), host, uint32(port))
	cancel()
	if err != nil {
		switch {
		case errors.Is(err, proxy.ErrUnknownHost):
			writeError(w, http.StatusNotFound, "no connected device is named "+strconv.Quote(host))
		case errors.Is(err, proxy.ErrDeviceBusy):
			writeError(w, http.StatusServiceUnavailable, "the device has no channel free; try again when a session ends")
		case errors.Is(err, proxy.ErrPortNotAllowed):
			writeError(w, http.StatusForbidden, "the device does not offer port "+strconv.FormatUint(port, 10))
		default:
			writeError(w, http.StatusBadGateway, "could not open a channel to the device")
		}
		a.log.Info("api: relay refused", "host", host, "port", port, "err", err)
		return
	}
	device := host
	if id, ok := dc.(proxy.Identified); ok {
		device = id.DeviceID()
	}
	token := a.cfg.Token
	a.relays.Add(1)
	defer a.relays.Done()
	upgraded := false
	defer func() {
		if !upgraded {
			dc.Close() // the websocket handshake failed
		}
	}()
	ws := websocket.Server{
		Handshake: func(cfg *websocket.Config, req *http.Request) error {
			// Answer with one subprotocol: the token if it was one,
			// otherwise the first offered (browsers drop a connection
			// whose answer names none of their offers).
			if len(cfg.Protocol) > 0 {
				chosen := cfg.Protocol[0]
				for _, p := range cfg.Protocol {
					if token != "" && p == token {
						chosen = p
					}
				}
				cfg.Protocol = []string{chosen}
			}
			return nil
		},
		Handler: func(c *websocket.Conn) {
			upgraded = true
			c.PayloadType = websocket.BinaryFrame
			sess := a.cfg.Proxy.Sessions().Begin(proxy.SessionInfo{
				Kind: proxy.KindRelay, Console: r.RemoteAddr, User: user, Device: device,
				Host: host, Port: uint32(port),
			}, c, dc)
			if sess == nil {
				dc.Close()
				return
			}
			stop := context.AfterFunc(a.ctx, func() { sess.Kill(proxy.EndShutdown) })
			defer stop()
			var cr io.Reader = c
			if port == 16994 && a.cfg.AMTLogin != nil {
				if user, pass, ok := a.cfg.AMTLogin(a.ctx, device); ok {
					br := bufio.NewReader(c)
					if err := interceptRedirLogin(c, br, dc, user, pass, relayDialTimeout); err != nil {
						a.log.Info("api: relay: redirection login failed", "device", device, "err", err)
						sess.Kill(proxy.EndError)
					}
					cr = br
				}
			}
			info := proxy.Relay(sess, c, cr, dc)
			a.log.Debug("api: relay ended", "session", info.ID, "reason", info.EndReason)
		},
	}
	ws.ServeHTTP(w, r)
}

// sameOrigin reports whether a request has no Origin or one naming the
// host it was sent to.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}
