package wsman

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Session is a device's connection for the duration of one call on its
// queue ([Client.Do]). Its methods run WS-Man operations one after another;
// it is not safe for concurrent use and must not be kept after the call.
type Session struct {
	c  *Client
	d  *device
	cr Credentials
	fp [32]byte
}

var errSessionOver = errors.New("wsman: Session used after its call returned")

// Server returns the device's HTTP Server header of the last answer
// ("Intel(R) Active Management Technology 16.1.25" on AMT, §1.0), or "".
func (s *Session) Server() string {
	if s.d == nil {
		return ""
	}
	return s.d.server
}

// call sends r and decodes the answer: a fault becomes a *Fault, and the
// Body's first element, which must be named want (unless want is ""), is
// decoded into out (unless out is nil).
func (s *Session) call(ctx context.Context, r *request, want string, out any) error {
	if s.d == nil {
		return errSessionOver
	}
	id := s.c.idPfx + fmt.Sprintf("%012x", s.c.msgID.Add(1))
	resp, err := s.roundTrip(ctx, r.envelope(id), r.idempotent)
	if err != nil {
		return err
	}
	lim := &s.c.lim
	if resp.status != http.StatusOK {
		if _, err := lim.decodeEnvelope(resp.body, resp.status, "", nil); err != nil {
			var f *Fault
			if errors.As(err, &f) {
				return f
			}
		}
		return &HTTPError{Status: resp.status, Body: cleanText(strings.TrimSpace(string(resp.body[:min(len(resp.body), 512)])), 200)}
	}
	h, err := lim.decodeEnvelope(resp.body, resp.status, want, out)
	if err != nil {
		return err
	}
	if rt := strings.TrimSpace(h.RelatesTo); rt != "" && rt != id {
		s.closeConn()
		return malformed("the answer relates to another request")
	}
	return nil
}

// roundTrip posts env with digest authentication: it reuses the device's
// nonce, takes a new one when the device says stale or challenges again,
// and stops at the first 401 to a fresh nonce, which means wrong
// credentials (never retried: AMT locks accounts out).
func (s *Session) roundTrip(ctx context.Context, env []byte, idempotent bool) (response, error) {
	d := s.d
	for range 3 {
		authz := ""
		usedFresh := false
		// Each attempt of the exchange gets its own nc: a request the device
		// may have seen is never replayed.
		auth := func() (string, error) {
			if d.auth.ch.nonce == "" {
				return "", nil
			}
			var err error
			authz, err = d.auth.authorization(s.cr, http.MethodPost, "/wsman")
			usedFresh = d.auth.fresh
			return authz, err
		}
		resp, err := s.exchange(ctx, auth, env, idempotent)
		if err != nil {
			return response{}, err
		}
		if resp.status != http.StatusUnauthorized {
			if authz != "" {
				d.auth.fresh = false
			}
			return resp, nil
		}
		ch, err := parseChallenge(resp.header.Values("WWW-Authenticate"))
		if err != nil {
			s.closeConn()
			return response{}, err
		}
		if authz != "" && usedFresh && !ch.stale {
			s.c.mu.Lock()
			d.reject(s.fp)
			s.c.mu.Unlock()
			d.auth = digest{ch: ch, fresh: true}
			s.c.log.Debug("credentials rejected", "device", d.name, "user", s.cr.User)
			return response{}, &CredentialsError{User: s.cr.User}
		}
		if authz != "" {
			s.c.log.Debug("new digest nonce", "device", d.name, "stale", ch.stale)
		}
		d.auth = digest{ch: ch, fresh: true}
	}
	s.closeConn()
	return response{}, errors.New("wsman: the device asked for authentication three times in a row")
}

// exchange sends one HTTP request on the device's connection, dialling one
// if needed, and redials once when a reused connection turns out dead
// before the device answered (only a write failure for a request that is
// not idempotent).
func (s *Session) exchange(ctx context.Context, auth func() (string, error), env []byte, idempotent bool) (response, error) {
	d := s.d
	for attempt := 0; ; attempt++ {
		authz, err := auth()
		if err != nil {
			return response{}, err
		}
		reused := d.conn != nil
		if reused && !d.conn.alive() {
			s.c.log.Debug("connection closed by the device", "device", d.name)
			s.closeConn()
			reused = false
		}
		if d.conn == nil {
			nc, err := s.c.cfg.Dial(ctx, d.name)
			if err != nil {
				if ctx.Err() != nil {
					return response{}, ctxErr(ctx, "dial", err)
				}
				return response{}, &TunnelError{Op: "dial", Err: err}
			}
			d.conn = newConn(nc)
		}
		resp, err := d.conn.roundTrip(ctx, hostHeader(d.name), authz, env, s.c.lim.MaxBody)
		if err == nil {
			if v := resp.header.Get("Server"); v != "" {
				d.server = cleanText(v, 128)
			}
			if !resp.keepAlive {
				s.closeConn()
			}
			return resp, nil
		}
		s.closeConn()
		var ie *ioError
		if !errors.As(err, &ie) {
			return response{}, err // a malformed answer
		}
		if ctx.Err() != nil {
			return response{}, ctxErr(ctx, ie.op, ie.err)
		}
		if reused && attempt == 0 && ie.unanswered && (idempotent || ie.op == "write") {
			s.c.log.Debug("redial after a dead connection", "device", d.name, "op", ie.op)
			continue
		}
		return response{}, &TunnelError{Op: ie.op, Err: ie.err}
	}
}

func (s *Session) closeConn() {
	if s.d.conn != nil {
		s.d.conn.close()
		s.d.conn = nil
	}
}

// hostHeader returns the Host header for a device: its name with the port
// if it is a plain host name, else "amt".
func hostHeader(name string) string {
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.') {
			return "amt:16992"
		}
	}
	if name == "" || len(name) > 253 {
		return "amt:16992"
	}
	return name + ":16992"
}

// cleanText returns device text fit for a window or a log line: valid
// UTF-8, control characters replaced, at most max bytes.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (0x80 <= r && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
		s = strings.ToValidUTF8(s, "")
	}
	return s
}

// get is a transfer Get of the class; the answer element has the class's
// name.
func (s *Session) get(ctx context.Context, resource string, out any) error {
	return s.call(ctx, &request{action: actionGet, resource: resource, idempotent: true}, className(resource), out)
}

// put is a transfer Put of an instance whose properties (escaped <h:...>
// elements) are given.
func (s *Session) put(ctx context.Context, resource, props string) error {
	class := className(resource)
	body := `<h:` + class + ` xmlns:h="` + esc(resource) + `">` + props + `</h:` + class + `>`
	return s.call(ctx, &request{action: actionPut, resource: resource, body: body, idempotent: true}, "", nil)
}

// methodOutput is embedded in the output of every method.
type methodOutput struct {
	ReturnValue *uint32 `xml:"ReturnValue"`
}

func (m *methodOutput) returnValue() *uint32 { return m.ReturnValue }

type output interface{ returnValue() *uint32 }

// invoke calls a method of the class with the input parameters (escaped
// <h:...> elements) and decodes METHOD_OUTPUT into out. It returns the
// ReturnValue; a non-zero one is left to the caller (see [check]).
func (s *Session) invoke(ctx context.Context, resource, method, input string, out output) (uint32, error) {
	body := `<h:` + method + `_INPUT xmlns:h="` + esc(resource) + `">` + input + `</h:` + method + `_INPUT>`
	r := &request{action: resource + "/" + method, resource: resource, body: body}
	if out == nil {
		out = &methodOutput{}
	}
	if err := s.call(ctx, r, method+"_OUTPUT", out); err != nil {
		return 0, err
	}
	rv := out.returnValue()
	if rv == nil {
		return 0, malformed("%s_OUTPUT has no ReturnValue", method)
	}
	return *rv, nil
}

// check returns a *StatusError for a non-zero ReturnValue.
func check(resource, method string, rv uint32, err error) error {
	if err != nil || rv == 0 {
		return err
	}
	return &StatusError{Class: className(resource), Method: method, Value: rv}
}

// enumerateResponse is the answer to an Enumerate.
type enumerateResponse struct {
	EnumerationContext string `xml:"EnumerationContext"`
}

// pullResponse is the answer to a Pull; each item is decoded into T.
type pullResponse[T any] struct {
	EnumerationContext string `xml:"EnumerationContext"`
	Items              struct {
		List []T `xml:",any"`
	} `xml:"Items"`
	EndOfSequence *struct{} `xml:"EndOfSequence"`
}

// maxEnumerationContext caps the enumeration context a device may hand us
// to send back.
const maxEnumerationContext = 256

// enumerate returns every instance of the class: an Enumerate, then Pulls
// until EndOfSequence, under the pull and item limits.
func enumerate[T any](ctx context.Context, s *Session, resource string) ([]T, error) {
	var er enumerateResponse
	r := &request{action: actionEnumerate, resource: resource, body: `<n:Enumerate/>`, idempotent: true}
	if err := s.call(ctx, r, "EnumerateResponse", &er); err != nil {
		return nil, err
	}
	ec := strings.TrimSpace(er.EnumerationContext)
	var items []T
	for pulls := 0; ; pulls++ {
		if ec == "" || len(ec) > maxEnumerationContext {
			return nil, malformed("enumeration context of %d bytes", len(ec))
		}
		if pulls == s.c.lim.MaxPulls {
			return nil, malformed("%s needs more than %d pulls", className(resource), s.c.lim.MaxPulls)
		}
		var pr pullResponse[T]
		r := &request{action: actionPull, resource: resource, body: `<n:Pull><n:EnumerationContext>` + esc(ec) +
			`</n:EnumerationContext><n:MaxElements>999</n:MaxElements><n:MaxCharacters>99999</n:MaxCharacters></n:Pull>`}
		if err := s.call(ctx, r, "PullResponse", &pr); err != nil {
			return nil, err
		}
		if len(items)+len(pr.Items.List) > s.c.lim.MaxItems {
			return nil, malformed("%s has more than %d instances", className(resource), s.c.lim.MaxItems)
		}
		items = append(items, pr.Items.List...)
		if pr.EndOfSequence != nil {
			return items, nil
		}
		ec = strings.TrimSpace(pr.EnumerationContext)
	}
}

// className returns the last segment of a resource URI.
func className(resource string) string {
	return resource[strings.LastIndexByte(resource, '/')+1:]
}

// itoa formats an integer parameter.
func itoa[T ~int | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32](v T) string {
	return strconv.FormatInt(int64(v), 10)
}
