package wsman

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Credentials are an AMT account. Its String, GoString and LogValue methods
// hide the password.
type Credentials struct {
	User     string
	Password string
}

// String returns the user name and "REDACTED".
func (c Credentials) String() string { return c.User + ":REDACTED" }

// GoString returns the same as String.
func (c Credentials) GoString() string { return c.String() }

// LogValue logs the user name only.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Limits of a digest challenge (it is device input that goes back into our
// Authorization header).
const (
	maxChallengeParams = 16
	maxChallengeValue  = 512
)

// challenge is a parsed Digest WWW-Authenticate challenge (RFC 7616 §3.3).
type challenge struct {
	realm, nonce, opaque string
	algorithm            string // "" or "MD5", as the device wrote it
	stale                bool
}

var errNoDigest = errors.New("wsman: the device's 401 carries no usable Digest challenge")

// parseChallenge finds a Digest challenge with qop=auth and MD5 among the
// WWW-Authenticate values.
func parseChallenge(values []string) (challenge, error) {
	err := errNoDigest
	for _, v := range values {
		scheme, rest, _ := strings.Cut(strings.TrimLeft(v, " \t"), " ")
		if !strings.EqualFold(scheme, "Digest") {
			continue
		}
		var ch challenge
		if ch, err = parseDigestParams(rest); err == nil {
			return ch, nil
		}
	}
	return challenge{}, err
}

func parseDigestParams(s string) (challenge, error) {
	var ch challenge
	seen := map[string]bool{}
	qopAuth := false
	for n := 0; ; n++ {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		if n == maxChallengeParams {
			return ch, fmt.Errorf("%w: more than %d parameters", errNoDigest, maxChallengeParams)
		}
		i := 0
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		if i == 0 || i == len(s) || s[i] != '=' {
			return ch, fmt.Errorf("%w: malformed parameter", errNoDigest)
		}
		key := strings.ToLower(s[:i])
		s = s[i+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			j := 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j == len(s) {
				return ch, fmt.Errorf("%w: unterminated quoted string", errNoDigest)
			}
			val, s = b.String(), s[j+1:]
		} else {
			j := 0
			for j < len(s) && isTokenChar(s[j]) {
				j++
			}
			val, s = s[:j], s[j:]
		}
		if len(val) > maxChallengeValue || !printable(val) {
			return ch, fmt.Errorf("%w: parameter %q is too long or has control characters", errNoDigest, key)
		}
		if seen[key] {
			return ch, fmt.Errorf("%w: parameter %q twice", errNoDigest, key)
		}
		seen[key] = true
		switch key {
		case "realm":
			ch.realm = val
		case "nonce":
			ch.nonce = val
		case "opaque":
			ch.opaque = val
		case "algorithm":
			ch.algorithm = val
		case "stale":
			ch.stale = strings.EqualFold(val, "true")
		case "qop":
			for q := range strings.SplitSeq(val, ",") {
				qopAuth = qopAuth || strings.TrimSpace(q) == "auth"
			}
		}
	}
	switch {
	case ch.nonce == "" || !seen["realm"]:
		return ch, fmt.Errorf("%w: no realm or nonce", errNoDigest)
	case !qopAuth:
		return ch, fmt.Errorf("%w: no qop=auth", errNoDigest)
	case ch.algorithm != "" && !strings.EqualFold(ch.algorithm, "MD5"):
		return ch, fmt.Errorf("%w: algorithm %q", errNoDigest, ch.algorithm)
	}
	return ch, nil
}

// isTokenChar reports whether b may appear in an RFC 9110 token.
func isTokenChar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

// printable reports whether s has no control characters (it may go into a
// header).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// digest is a device's digest state: the challenge in use and the count of
// requests made with its nonce. It belongs to the device's running job.
type digest struct {
	ch challenge
	nc uint32
	// fresh: the nonce came with the last 401 and no request has been
	// accepted with it yet. A 401 to a request made with a fresh nonce that
	// is not stale means the credentials are wrong.
	fresh bool
}

// authorization returns the Authorization header for one more request with
// the current nonce (RFC 7616 §3.4, qop=auth).
func (d *digest) authorization(cr Credentials, method, uri string) (string, error) {
	if !printable(cr.User) {
		return "", errors.New("wsman: the AMT user name has control characters")
	}
	d.nc++
	var cb [12]byte
	rand.Read(cb[:])
	cnonce := hex.EncodeToString(cb[:])
	nc := fmt.Sprintf("%08x", d.nc)
	ha1 := md5hex(cr.User + ":" + d.ch.realm + ":" + cr.Password)
	ha2 := md5hex(method + ":" + uri)
	resp := md5hex(ha1 + ":" + d.ch.nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	var b strings.Builder
	b.Grow(256)
	b.WriteString("Digest username=")
	b.WriteString(quote(cr.User))
	b.WriteString(", realm=")
	b.WriteString(quote(d.ch.realm))
	b.WriteString(", nonce=")
	b.WriteString(quote(d.ch.nonce))
	b.WriteString(", uri=")
	b.WriteString(quote(uri))
	b.WriteString(", response=\"" + resp + "\", qop=auth, nc=" + nc + ", cnonce=\"" + cnonce + "\"")
	if d.ch.opaque != "" {
		b.WriteString(", opaque=")
		b.WriteString(quote(d.ch.opaque))
	}
	if d.ch.algorithm != "" {
		b.WriteString(", algorithm=MD5")
	}
	return b.String(), nil
}

// quote returns s as an RFC 9110 quoted-string.
func quote(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return `"` + s + `"`
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
