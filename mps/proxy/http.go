package proxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// hopHeaders are removed before a request is forwarded to a device.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization",
	"Proxy-Authenticate", "Te", "Trailer", "Upgrade",
}

// writeHTTPError writes a short plain-text error response with a one-line
// reason and Connection: close.
func (pc *conn) writeHTTPError(code int, reason string, extra ...string) {
	body := reason + "\n"
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	for i := 0; i+1 < len(extra); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", extra[i], extra[i+1])
	}
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	pc.c.Write([]byte(b.String()))
}

// dialError maps a dial error to an HTTP status and reason.
func dialError(err error, host string, port uint32) (int, string) {
	hp := net.JoinHostPort(host, portString(port))
	switch {
	case errors.Is(err, ErrPortNotAllowed):
		return http.StatusForbidden, "port not allowed: " + hp
	case errors.Is(err, ErrUnknownHost):
		return http.StatusNotFound, "unknown host: " + host
	default:
		return http.StatusBadGateway, "dial " + hp + " failed"
	}
}

// checkProxyAuth validates Proxy-Authorization Basic and returns the user.
func (pc *conn) checkProxyAuth(req *http.Request) (string, bool) {
	if pc.s.cfg.Auth == nil {
		return "", true
	}
	v := req.Header.Get("Proxy-Authorization")
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || !pc.s.cfg.Auth(user, pass) {
		return user, false
	}
	return user, true
}

// splitHostPort parses host:port with a non-zero 16-bit port; defPort is used
// when the port is absent (0 means it is required).
func splitHostPort(hp string, defPort uint32) (string, uint32, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		if defPort == 0 || strings.Contains(err.Error(), "too many colons") {
			return "", 0, err
		}
		host, ps = strings.Trim(hp, "[]"), portString(defPort)
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 || host == "" {
		return "", 0, fmt.Errorf("bad address %q", hp)
	}
	return host, uint32(p), nil
}

// serveHTTP handles one HTTP proxy request: CONNECT (tunnel) or an
// absolute-form request (forward).
//
// First step: an absolute-form request is forwarded over a fresh device
// connection and the client connection is closed after the response
// (Connection: close), i.e. one request per client connection. Keep-alive
// comes later.
func (pc *conn) serveHTTP() {
	req, err := http.ReadRequest(pc.br)
	if err != nil {
		if errors.Is(err, errHandshakeTooLarge) {
			pc.writeHTTPError(http.StatusRequestHeaderFieldsTooLarge, "request headers too large")
		} else if !isTimeout(err) {
			pc.writeHTTPError(http.StatusBadRequest, "malformed request")
		}
		return
	}
	user, ok := pc.checkProxyAuth(req)
	if !ok {
		pc.logger.Info("proxy: http auth failed", "user", user)
		pc.writeHTTPError(http.StatusProxyAuthRequired, "proxy authentication required",
			"Proxy-Authenticate", `Basic realm="Presence"`)
		return
	}
	logger := pc.logger.With("proto", "http", "user", user)

	if req.Method == http.MethodConnect {
		host, port, err := splitHostPort(req.RequestURI, 0)
		if err != nil {
			pc.writeHTTPError(http.StatusBadRequest, "CONNECT needs host:port")
			return
		}
		logger = logger.With("host", host, "port", port)
		dc, ok := pc.dialOrRefuse(host, port, logger)
		if !ok {
			return
		}
		if _, err := pc.c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
			dc.Close()
			pc.s.untrack(dc)
			return
		}
		logger.Debug("proxy: tunnel")
		pc.startRelay(dc)
		return
	}

	if !req.URL.IsAbs() || req.URL.Scheme != "http" || req.URL.Host == "" {
		pc.writeHTTPError(http.StatusBadRequest, "only CONNECT and absolute http:// requests are proxied")
		return
	}
	host, port, err := splitHostPort(req.URL.Host, 80)
	if err != nil {
		pc.writeHTTPError(http.StatusBadRequest, "bad host in request URL")
		return
	}
	logger = logger.With("host", host, "port", port)
	dc, ok := pc.dialOrRefuse(host, port, logger)
	if !ok {
		return
	}
	defer pc.s.untrack(dc)
	defer dc.Close()
	pc.forward(req, dc, logger)
}

// forward writes req in origin form to dc and copies the response back to
// the client, closing the client connection afterwards.
func (pc *conn) forward(req *http.Request, dc net.Conn, logger *slog.Logger) {
	pc.cr.n = -1
	pc.c.SetDeadline(time.Time{})
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.Close = true // one request per device connection
	req.RequestURI = ""
	// Request.Write sends origin-form (URL.RequestURI) with Host from req.Host.
	errc := make(chan error, 1)
	go func() { errc <- req.Write(dc) }()

	dr := bufio.NewReader(dc)
	resp, err := http.ReadResponse(dr, req)
	// Pass interim responses (100 Continue, 103 Early Hints) through.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		if err = writeInterim(pc.c, resp); err == nil {
			resp, err = http.ReadResponse(dr, req)
		}
	}
	if err != nil {
		logger.Info("proxy: bad response from device", "err", err)
		pc.writeHTTPError(http.StatusBadGateway, "bad response from device")
		pc.c.Close()
		dc.Close()
		<-errc
		return
	}
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	resp.Close = true // one request per client connection (first step)
	err = resp.Write(pc.c)
	resp.Body.Close()
	// Closing both ends unblocks a request body copy still in flight.
	pc.c.Close()
	dc.Close()
	<-errc
	if err != nil {
		logger.Info("proxy: writing response to client", "err", err)
	}
}

// writeInterim writes a 1xx response (status line and headers, no body).
func writeInterim(w io.Writer, resp *http.Response) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "HTTP/1.1 %s\r\n", resp.Status)
	resp.Header.Write(bw)
	bw.WriteString("\r\n")
	return bw.Flush()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dialOrRefuse dials the device for an HTTP request, or answers the
// client with the refusal's status and one-line reason.
func (pc *conn) dialOrRefuse(host string, port uint32, logger *slog.Logger) (net.Conn, bool) {
	ctx, cancel := pc.dialCtx()
	defer cancel()
	dc, err := pc.s.dial(ctx, host, port)
	if err != nil {
		logger.Info("proxy: refused", "err", err)
		code, reason := dialError(err, host, port)
		pc.writeHTTPError(code, reason)
		return nil, false
	}
	return dc, true
}
