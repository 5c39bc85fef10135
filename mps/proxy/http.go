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
	"slices"
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
	// The handshake deadline may have passed (that may be the error).
	pc.c.SetWriteDeadline(time.Now().Add(errorWriteTimeout))
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
	case errors.Is(err, ErrDeviceBusy):
		return http.StatusServiceUnavailable, "device busy, no channel free: " + hp
	default:
		return http.StatusBadGateway, "dial " + hp + " failed: " + err.Error()
	}
}

// basicCredentials extracts the user and password of a
// Proxy-Authorization Basic header.
func basicCredentials(req *http.Request) (user, pass string, ok bool) {
	v := req.Header.Get("Proxy-Authorization")
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

// httpAuth checks a request's Proxy-Authorization. A connection that has
// logged in once may leave the header off later requests (as squid and
// browsers do not always repeat it). On failure it answers 407 or 429 and
// reports false.
func (pc *conn) httpAuth(req *http.Request, loggedIn *string) (string, bool) {
	user, pass, has := basicCredentials(req)
	if pc.noAuth {
		if has && pc.s.cfg.Auth != nil && pc.s.cfg.Auth(user, pass) {
			return user, true
		}
		return *loggedIn, true
	}
	if !has && *loggedIn != "" {
		return *loggedIn, true
	}
	switch pc.authenticate(user, pass) {
	case authOK:
		*loggedIn = user
		return user, true
	case authBlocked:
		pc.logger.Warn("proxy: http login refused: too many failures from this address", "user", user)
		pc.writeHTTPError(http.StatusTooManyRequests, "too many failed logins from "+pc.src.String()+"; try again later",
			"Retry-After", strconv.Itoa(int(pc.s.limiter.Window().Seconds())))
	default:
		if has {
			pc.logger.Info("proxy: http auth failed", "user", user)
		}
		pc.writeHTTPError(http.StatusProxyAuthRequired, "proxy authentication required",
			"Proxy-Authenticate", `Basic realm="Presence"`)
	}
	return user, false
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

// serveHTTP handles a console's HTTP proxy connection: a CONNECT (then a
// tunnel), or a series of absolute-form requests forwarded with keep-alive.
// Consecutive requests to the same device port reuse one device channel and
// form one session; a request to another target ends that session and
// starts another.
func (pc *conn) serveHTTP() {
	var (
		fw       *forwarder
		loggedIn string
		endWhy   = EndConsole
	)
	defer func() {
		if fw != nil {
			fw.end(endWhy)
		}
	}()
	for n := 0; ; n++ {
		if n > 0 {
			pc.cr.n = maxHandshakeBytes
			pc.c.SetReadDeadline(time.Now().Add(pc.s.cfg.IdleTimeout))
		}
		req, err := http.ReadRequest(pc.br)
		if err != nil {
			switch {
			case errors.Is(err, errHandshakeTooLarge):
				pc.writeHTTPError(http.StatusRequestHeaderFieldsTooLarge, "request headers too large")
			case n > 0 && isTimeout(err):
				endWhy = EndIdle
			case isTimeout(err):
				pc.writeHTTPError(http.StatusRequestTimeout, "request not received in time")
			case n > 0 || errors.Is(err, io.EOF):
			default:
				pc.writeHTTPError(http.StatusBadRequest, "malformed request")
			}
			return
		}
		pc.cr.n = -1 // the body is not part of the handshake
		user, ok := pc.httpAuth(req, &loggedIn)
		if !ok {
			return
		}
		logger := pc.logger.With("proto", "http", "user", user)

		if req.Method == http.MethodConnect {
			host, port, err := splitHostPort(req.RequestURI, 0)
			if err != nil {
				pc.writeHTTPError(http.StatusBadRequest, "CONNECT needs host:port")
				return
			}
			if fw != nil {
				fw.end(EndConsole)
				fw = nil
			}
			logger = logger.With("host", host, "port", port)
			dc, ok := pc.dialOrRefuse(host, port, user, logger)
			if !ok {
				return
			}
			if _, err := pc.c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
				dc.Close()
				pc.s.untrack(dc)
				return
			}
			logger.Debug("proxy: tunnel")
			pc.startRelay(dc, KindConnect, user, host, port)
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
		if n > 0 {
			pc.deadline = time.Now().Add(pc.s.cfg.HandshakeTimeout)
		}
		if fw != nil && (fw.host != host || fw.port != port || fw.user != user) {
			fw.end(EndConsole)
			fw = nil
		}
		var keepClient, keepDevice bool
		var why string
		for attempt := 0; attempt < 2; attempt++ {
			if fw == nil {
				if fw = pc.newForwarder(host, port, user, logger); fw == nil {
					return
				}
			}
			pc.c.SetDeadline(time.Time{})
			keepClient, keepDevice, why = fw.forward(req, logger)
			if why != whyRetry {
				break
			}
			fw.end(EndDevice)
			fw = nil
		}
		if why == whyRetry {
			pc.writeHTTPError(http.StatusBadGateway, "bad response from device")
			keepClient, keepDevice, why = false, false, EndDevice
		}
		if !keepDevice && fw != nil {
			fw.end(why)
			fw = nil
		}
		if !keepClient {
			if why != "" {
				endWhy = why
			}
			return
		}
	}
}

// errorWriteTimeout bounds writing an error response.
const errorWriteTimeout = 2 * time.Second

// requestWriteGrace is how long forward waits, once the response is through,
// for the request to finish being written to the device.
const requestWriteGrace = 2 * time.Second

// whyRetry is forward's verdict when a reused device connection turned out
// closed before the request could be answered: the request is sent again on
// a new channel.
const whyRetry = "retry"

// newForwarder dials the device for absolute-form requests and starts their
// session, or answers the client with the refusal and returns nil.
func (pc *conn) newForwarder(host string, port uint32, user string, logger *slog.Logger) *forwarder {
	dc, ok := pc.dialOrRefuse(host, port, user, logger)
	if !ok {
		return nil
	}
	sess := pc.s.beginSession(SessionInfo{
		Kind: KindHTTP, Console: pc.c.RemoteAddr().String(), User: user, Host: host, Port: port,
	}, dc, pc.c)
	if sess == nil {
		dc.Close()
		pc.s.untrack(dc)
		return nil
	}
	return &forwarder{pc: pc, dc: dc, sess: sess, host: host, port: port, user: user,
		dr: bufio.NewReaderSize(countingReader{dc, &sess.fromDev}, 16<<10)}
}

// forwarder is the device side of a keep-alive HTTP session.
type forwarder struct {
	pc         *conn
	dc         net.Conn
	dr         *bufio.Reader
	sess       *Session
	host, user string
	port       uint32
	used       bool // a request has been answered on dc
}

// end closes the device connection and ends the session.
func (fw *forwarder) end(reason string) {
	fw.dc.Close()
	fw.pc.s.untrack(fw.dc)
	fw.sess.End(reason)
	fw.pc.s.forget(fw.sess)
}

// forward writes req in origin form to the device and copies the response
// back to the client. It reports whether the client connection and the
// device connection can carry another request, and if not, why.
func (fw *forwarder) forward(req *http.Request, logger *slog.Logger) (keepClient, keepDevice bool, why string) {
	pc := fw.pc
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	keepClient = !req.Close
	req.Close = false // the device connection is kept alive when it can be
	req.RequestURI = ""
	// Request.Write sends origin-form (URL.RequestURI) with Host from req.Host.
	errc := make(chan error, 1)
	go func() { errc <- req.Write(countingWriter{fw.dc, &fw.sess.toDev}) }()

	resp, err := http.ReadResponse(fw.dr, req)
	// Pass interim responses (100 Continue, 103 Early Hints) through.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		if err = writeInterim(pc.c, resp); err == nil {
			resp, err = http.ReadResponse(fw.dr, req)
		}
	}
	if err != nil {
		// The device closed or sent garbage. Closing both ends unblocks a
		// request body copy still in flight.
		fw.dc.Close()
		if fw.used && (req.Body == nil || req.Body == http.NoBody) && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)) {
			<-errc
			return false, false, whyRetry
		}
		logger.Info("proxy: no response from device", "err", err)
		pc.writeHTTPError(http.StatusBadGateway, "bad response from device")
		<-errc
		return false, false, EndDevice
	}
	fw.used = true
	keepDevice = !resp.Close
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	if resp.ContentLength < 0 && !slices.Contains(resp.TransferEncoding, "chunked") && resp.Body != http.NoBody {
		// The body ends when the device closes: the client can only tell
		// the end by its connection closing, too.
		keepClient = false
	}
	resp.Close = !keepClient
	err = resp.Write(pc.c)
	resp.Body.Close()
	// The request has normally been written by now; a device that
	// answered without reading the whole request body leaves the
	// connection out of step, so it is dropped.
	wait := time.NewTimer(requestWriteGrace)
	select {
	case werr := <-errc:
		if werr != nil {
			keepDevice = false
		}
	case <-wait.C:
		fw.dc.Close()
		<-errc
		keepDevice = false
	}
	wait.Stop()
	if err != nil {
		logger.Info("proxy: writing response to client", "err", err)
		return false, keepDevice, EndConsole
	}
	if !keepDevice {
		return keepClient, false, EndDevice
	}
	return keepClient, true, ""
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
func (pc *conn) dialOrRefuse(host string, port uint32, user string, logger *slog.Logger) (net.Conn, bool) {
	ctx, cancel := pc.dialCtx()
	defer cancel()
	dc, err := pc.s.dial(ctx, host, port, Console{User: user, Addr: pc.c.RemoteAddr().String()})
	if err != nil {
		logger.Info("proxy: refused", "err", err)
		code, reason := dialError(err, host, port)
		pc.writeHTTPError(code, reason)
		return nil, false
	}
	return dc, true
}
