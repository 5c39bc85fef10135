package api

import (
	"bufio"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Redirection-protocol login done by the relay for web consoles that
// leave it to the MPS (../../shared/redirection.md §4, "Relay
// interception"): the browser authenticates with an empty user name, and
// the relay replaces its digest messages with ones built from the AMT
// credentials Presence keeps, so the console never learns the AMT password.
// Everything else passes through unchanged; the relay goes back to copying
// raw bytes once the device accepts a login.

// Redirection message codes and sizes used by the interceptor.
const (
	redirStartSession      = 0x10
	redirStartSessionReply = 0x11
	redirAuthenticate      = 0x13
	redirAuthenticateReply = 0x14

	redirAuthQuery  = 0
	redirAuthDigest = 4 // RFC 2617, qop=auth

	redirMaxAuthData = 1024 // longest auth data accepted either way
	redirMaxMessages = 8    // auth messages before giving up
	redirDigestURI   = "/RedirectionService"
)

var errRedirIntercept = errors.New("api: redirection login")

// redirMsg reads one whole session-manager message from r: the start
// request (8 bytes) and reply (13+n), the auth request and reply (9+L).
// It reads exactly the message, so nothing after it is consumed.
func redirMsg(r io.Reader, from string) ([]byte, error) {
	hdr := make([]byte, 1, 13)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	var rest int
	switch hdr[0] {
	case redirStartSession:
		rest = 7
	case redirStartSessionReply:
		hdr = hdr[:13]
		if _, err := io.ReadFull(r, hdr[1:]); err != nil {
			return nil, err
		}
		n := int(hdr[12])
		b := make([]byte, 13+n)
		copy(b, hdr)
		_, err := io.ReadFull(r, b[13:])
		return b, err
	case redirAuthenticate, redirAuthenticateReply:
		hdr = hdr[:9]
		if _, err := io.ReadFull(r, hdr[1:]); err != nil {
			return nil, err
		}
		l := binary.LittleEndian.Uint32(hdr[5:9])
		if l > redirMaxAuthData {
			return nil, fmt.Errorf("%w: %s sent %d bytes of auth data", errRedirIntercept, from, l)
		}
		b := make([]byte, 9+int(l))
		copy(b, hdr)
		_, err := io.ReadFull(r, b[9:])
		return b, err
	default:
		return nil, fmt.Errorf("%w: %s sent message %#x during the login", errRedirIntercept, from, hdr[0])
	}
	b := make([]byte, 1+rest)
	b[0] = hdr[0]
	_, err := io.ReadFull(r, b[1:])
	return b, err
}

// lvFields splits auth data made of 1-byte-length-prefixed fields.
func lvFields(b []byte) ([]string, bool) {
	var out []string
	for len(b) > 0 {
		n := int(b[0])
		if len(b) < 1+n {
			return nil, false
		}
		out = append(out, string(b[1:1+n]))
		b = b[1+n:]
	}
	return out, true
}

func lv(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

// authMsg builds a 0x13 message of type typ with data.
func authMsg(typ byte, data []byte) []byte {
	b := make([]byte, 9, 9+len(data))
	b[0], b[4] = redirAuthenticate, typ
	binary.LittleEndian.PutUint32(b[5:9], uint32(len(data)))
	return append(b, data...)
}

// redirDigest is the RFC 2617 response AMT expects:
// MD5(HA1:nonce:nc:cnonce:qop:HA2), HA2 = MD5("POST:/RedirectionService").
func redirDigest(user, realm, pass, nonce, nc, cnonce, qop string) string {
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	return h(h(user+":"+realm+":"+pass) + ":" + nonce + ":" + nc + ":" + cnonce + ":" + qop + ":" + h("POST:"+redirDigestURI))
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
	} else if b[0] != redirStartSession {
		return nil
	}
	first, err := redirMsg(cr, "the console")
	if err != nil {
		return err
	}
	if _, err := dev.Write(first); err != nil {
		return err
	}
	reply, err := redirMsg(dev, "the device")
	if err != nil {
		return err
	}
	if _, err := console.Write(reply); err != nil {
		return err
	}
	if reply[0] != redirStartSessionReply || reply[1] != 0 {
		return nil // refused (busy, unsupported): the console sees why
	}
	// Step 1 with an empty user name starts the interception: the relay
	// sends it with the stored user, passes the device's challenge on, and
	// replaces the console's step 3 with its own answer to that challenge.
	intercepting := false
	var realm, nonce string
	challenged := false
	for range redirMaxMessages {
		req, err := redirMsg(cr, "the console")
		if err != nil {
			return err
		}
		if req[0] != redirAuthenticate {
			_, err := dev.Write(req)
			return err
		}
		typ := req[4]
		if typ == redirAuthDigest && !challenged {
			if f, ok := lvFields(req[9:]); ok && len(f) >= 1 && f[0] == "" {
				intercepting = true
			}
		}
		switch {
		case intercepting && typ == redirAuthDigest && !challenged:
			step1 := lv(nil, user)
			step1 = append(step1, 0, 0)
			step1 = lv(step1, redirDigestURI)
			step1 = append(step1, 0, 0, 0, 0)
			req = authMsg(redirAuthDigest, step1)
		case intercepting && typ == redirAuthDigest:
			var cb [16]byte
			rand.Read(cb[:])
			cnonce, nc, qop := hex.EncodeToString(cb[:]), "00000001", "auth"
			var step3 []byte
			for _, s := range []string{user, realm, nonce, redirDigestURI, cnonce, nc,
				redirDigest(user, realm, pass, nonce, nc, cnonce, qop), qop} {
				step3 = lv(step3, s)
			}
			req = authMsg(redirAuthDigest, step3)
		}
		if _, err := dev.Write(req); err != nil {
			return err
		}
		res, err := redirMsg(dev, "the device")
		if err != nil {
			return err
		}
		if _, err := console.Write(res); err != nil {
			return err
		}
		switch {
		case res[0] != redirAuthenticateReply:
			return nil // not a login answer: raw bytes from here on
		case res[1] == 0 && res[4] != redirAuthQuery:
			return nil // logged in
		case res[1] == 1 && res[4] == redirAuthDigest && intercepting && !challenged:
			f, ok := lvFields(res[9:])
			if !ok || len(f) < 2 {
				return fmt.Errorf("%w: malformed digest challenge from the device", errRedirIntercept)
			}
			realm, nonce, challenged = f[0], f[1], true
		case res[1] != 0 && (challenged || res[1] != 1):
			return nil // refused: the console sees the device's answer
		}
	}
	return fmt.Errorf("%w: too many login messages", errRedirIntercept)
}
