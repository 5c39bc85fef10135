package api

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/presence-mps/presence/mps/redir"
)

// Redirection-protocol login done by the relay for web consoles that
// leave it to the MPS (../../shared/redirection.md §4, "Relay
// interception"): the browser authenticates with an empty user name, and
// the relay replaces its digest messages with ones built from the AMT
// credentials Presence keeps, so the console never learns the AMT password.
// Everything else passes through unchanged; the relay goes back to copying
// raw bytes once the device accepts a login.

var errRedirIntercept = errors.New("api: redirection login")

// redirLoginCodes are the messages either side may send during the login:
// the session start, its reply, and the authentication messages.
var redirLoginCodes = []byte{redir.MsgStartSession, redir.MsgStartSessionReply, redir.MsgAuthenticate, redir.MsgAuthenticateReply}

// readLogin reads one whole login message from r, decoded and as its bytes.
// It reads exactly the message, so nothing after it is consumed.
func readLogin(r io.Reader, from string) (redir.Message, []byte, error) {
	m, b, err := redir.ReadMessage(r, redirLoginCodes...)
	if _, ok := errors.AsType[*redir.ParseError](err); ok {
		return nil, nil, fmt.Errorf("%w: %s: %w", errRedirIntercept, from, err)
	}
	if err != nil {
		return nil, nil, err
	}
	return m, b, nil
}

// answer reads the device's next login message and passes it on to the
// console.
func answer(dev, console net.Conn) (redir.Message, error) {
	m, raw, err := readLogin(dev, "the device")
	if err != nil {
		return nil, err
	}
	if _, err := console.Write(raw); err != nil {
		return nil, err
	}
	return m, nil
}

// interceptRedirLogin runs the login of a redirection session between a
// console (read through cr) and a device, doing a digest login with user
// and pass for a console that offers an empty user name. It returns when
// the device has accepted a login or refused, or at once (nil, nothing read)
// when the console does not start a redirection session. Messages it has
// read are forwarded, so the caller goes on relaying raw bytes from cr.
func interceptRedirLogin(console net.Conn, cr *bufio.Reader, dev net.Conn, user, pass string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	console.SetReadDeadline(deadline)
	dev.SetReadDeadline(deadline)
	defer console.SetReadDeadline(time.Time{})
	defer dev.SetReadDeadline(time.Time{})

	// Anything but a redirection session is left alone, unread.
	if b, err := cr.Peek(1); err != nil {
		return err
	} else if b[0] != redir.MsgStartSession {
		return nil
	}
	_, first, err := readLogin(cr, "the console")
	if err != nil {
		return err
	}
	if _, err := dev.Write(first); err != nil {
		return err
	}
	m, err := answer(dev, console)
	if err != nil {
		return err
	}
	if reply, ok := m.(*redir.StartSessionReply); !ok || reply.Status != redir.StatusOK {
		return nil // refused (busy, unsupported): the console sees why
	}
	// Step 1 with an empty user name starts the interception: the relay
	// sends it with the stored user, passes the device's challenge on, and
	// replaces the console's step 3 with its own answer to that challenge.
	intercepting := false
	var ch redir.Challenge
	challenged := false
	for range redir.MaxAuthMessages {
		m, req, err := readLogin(cr, "the console")
		if err != nil {
			return err
		}
		a, ok := m.(*redir.Authenticate)
		if !ok {
			_, err := dev.Write(req)
			return err
		}
		if a.Type == redir.AuthDigest && !challenged {
			if d, err := redir.ParseDigest(a.Type, a.Data); err == nil && d.User == "" {
				intercepting = true
			}
		}
		switch {
		case intercepting && a.Type == redir.AuthDigest && !challenged:
			step1 := redir.Digest{User: user, URI: redir.DigestURI}
			req = redir.Marshal(&redir.Authenticate{Type: redir.AuthDigest, Data: step1.Append(nil, redir.AuthDigest)})
		case intercepting && a.Type == redir.AuthDigest:
			step3 := redir.Digest{User: user, Realm: ch.Realm, Nonce: ch.Nonce, URI: redir.DigestURI,
				CNonce: redir.NewNonce(), NC: "00000001", QOP: redir.QOPAuth}
			step3.Response = step3.ResponseFor(redir.AuthDigest, []byte(pass))
			req = redir.Marshal(&redir.Authenticate{Type: redir.AuthDigest, Data: step3.Append(nil, redir.AuthDigest)})
		}
		if _, err := dev.Write(req); err != nil {
			return err
		}
		m, err = answer(dev, console)
		if err != nil {
			return err
		}
		r, ok := m.(*redir.AuthenticateReply)
		switch {
		case !ok:
			return nil // not a login answer: raw bytes from here on
		case r.Status == redir.StatusOK && r.Type != redir.AuthQuery:
			return nil // logged in
		case r.Status == redir.StatusAuthFailed && r.Type == redir.AuthDigest && intercepting && !challenged:
			c, err := redir.ParseChallenge(r.Data)
			if err != nil {
				return fmt.Errorf("%w: malformed digest challenge from the device: %w", errRedirIntercept, err)
			}
			ch, challenged = c, true
		case r.Status != redir.StatusOK && (challenged || r.Status != redir.StatusAuthFailed):
			return nil // refused: the console sees the device's answer
		}
	}
	return fmt.Errorf("%w: too many login messages", errRedirIntercept)
}
