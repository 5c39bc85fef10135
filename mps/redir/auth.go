package redir

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
)

// DigestURI is the uri of every redirection digest: HA2 is the MD5 of
// "POST:" and it (redirection.md §2, type 4 step 3).
const DigestURI = "/RedirectionService"

// QOPAuth is the only qop of [AuthDigest].
const QOPAuth = "auth"

// MaxLV is the longest value of a length-value field: its length is one
// byte.
const MaxLV = 255

// authDataOff is where authentication data starts in 0x13 and 0x14.
const authDataOff = 9

// AppendLV appends s as a length-value field: one byte of length, then the
// bytes. A value longer than [MaxLV] is cut to MaxLV bytes; callers that
// must not lose bytes check the length first.
func AppendLV(b []byte, s string) []byte {
	s = s[:min(len(s), MaxLV)]
	return append(append(b, byte(len(s))), s...)
}

func appendLVBytes(b, s []byte) []byte {
	s = s[:min(len(s), MaxLV)]
	return append(append(b, byte(len(s))), s...)
}

// lvFields splits authentication data of a message with code into at most
// limit length-value fields. The fields alias data.
func lvFields(code byte, data []byte, limit int) ([][]byte, error) {
	var f [][]byte
	for off := 0; off < len(data); {
		if len(f) == limit {
			return nil, &ParseError{Code: code, Off: authDataOff + off, Msg: fmt.Sprintf("more than %d fields", limit)}
		}
		n := int(data[off])
		if len(data)-off-1 < n {
			return nil, &ParseError{Code: code, Off: authDataOff + off,
				Msg: fmt.Sprintf("field of %d bytes with %d left", n, len(data)-off-1)}
		}
		f = append(f, data[off+1:off+1+n:off+1+n])
		off += 1 + n
	}
	return f, nil
}

// PasswordAuth is the data of [AuthPassword]: [ulen][user][plen][password]
// (redirection.md §2, type 1). Password aliases the data it was parsed
// from.
type PasswordAuth struct {
	User     string
	Password []byte
}

// Append appends the encoded fields to b. Values longer than [MaxLV] are
// cut.
func (a PasswordAuth) Append(b []byte) []byte {
	return appendLVBytes(AppendLV(b, a.User), a.Password)
}

// String renders a without its password.
func (a PasswordAuth) String() string { return fmt.Sprintf("PasswordAuth{user %q}", a.User) }

// GoString renders a without its password.
func (a PasswordAuth) GoString() string { return a.String() }

// ParsePasswordAuth decodes the data of an [AuthPassword] request: exactly
// two fields.
func ParsePasswordAuth(data []byte) (PasswordAuth, error) {
	f, err := lvFields(MsgAuthenticate, data, 2)
	if err != nil {
		return PasswordAuth{}, err
	}
	if len(f) != 2 {
		return PasswordAuth{}, &ParseError{Code: MsgAuthenticate, Off: authDataOff,
			Msg: fmt.Sprintf("%d fields of clear-text auth data; want 2", len(f))}
	}
	return PasswordAuth{User: string(f[0]), Password: f[1]}, nil
}

// Digest is the data of a digest request, [AuthDigest] or
// [AuthDigestRFC2069] (redirection.md §2, type 4 steps 1 and 3): the fields
// in wire order. In step 1 only User and URI are set; the device answers
// with a [Challenge]. Type 3 has no QOP field.
type Digest struct {
	User, Realm, Nonce, URI, CNonce, NC, Response, QOP string
}

// Append appends the encoded fields to b: eight, or seven for typ
// [AuthDigestRFC2069] (without QOP). Values longer than [MaxLV] are cut.
func (d Digest) Append(b []byte, typ AuthType) []byte {
	for _, s := range [...]string{d.User, d.Realm, d.Nonce, d.URI, d.CNonce, d.NC, d.Response} {
		b = AppendLV(b, s)
	}
	if typ != AuthDigestRFC2069 {
		b = AppendLV(b, d.QOP)
	}
	return b
}

// String renders d without its response.
func (d Digest) String() string {
	return fmt.Sprintf("Digest{user %q, realm %q, nonce %q, uri %q, cnonce %q, nc %q, qop %q}",
		d.User, d.Realm, d.Nonce, d.URI, d.CNonce, d.NC, d.QOP)
}

// GoString renders d without its response.
func (d Digest) GoString() string { return d.String() }

// ParseDigest decodes the data of a digest request of type typ: eight
// fields, or for [AuthDigestRFC2069] seven, or eight of which the last
// (a qop, which type 3 does not use) is ignored.
func ParseDigest(typ AuthType, data []byte) (Digest, error) {
	f, err := lvFields(MsgAuthenticate, data, 8)
	if err != nil {
		return Digest{}, err
	}
	switch {
	case len(f) == 8 && typ == AuthDigestRFC2069:
		f[7] = nil
	case len(f) == 8:
	case len(f) == 7 && typ == AuthDigestRFC2069:
		f = append(f, nil)
	default:
		return Digest{}, &ParseError{Code: MsgAuthenticate, Off: authDataOff,
			Msg: fmt.Sprintf("%d fields of %s data", len(f), typ)}
	}
	return Digest{User: string(f[0]), Realm: string(f[1]), Nonce: string(f[2]), URI: string(f[3]),
		CNonce: string(f[4]), NC: string(f[5]), Response: string(f[6]), QOP: string(f[7])}, nil
}

// ResponseFor returns the response of type typ that answers d's challenge
// when d.User's password is password (redirection.md §2):
// MD5(HA1:nonce:nc:cnonce:auth:HA2) for [AuthDigest] and MD5(HA1:nonce:HA2)
// for [AuthDigestRFC2069], with HA1 = MD5(user:realm:password) and HA2 =
// MD5("POST:/RedirectionService"), in lower-case hex. It reads User, Realm,
// Nonce, NC and CNonce, hashed as they are: devices must not re-format the
// nc and cnonce they receive. The qop is always [QOPAuth] and the uri
// always [DigestURI], as AMT computes them.
func (d Digest) ResponseFor(typ AuthType, password []byte) string {
	h := md5.New()
	io.WriteString(h, d.User+":"+d.Realm+":")
	h.Write(password)
	ha1 := hex.EncodeToString(h.Sum(nil))
	ha2 := md5hex("POST:" + DigestURI)
	if typ == AuthDigestRFC2069 {
		return md5hex(ha1 + ":" + d.Nonce + ":" + ha2)
	}
	return md5hex(ha1 + ":" + d.Nonce + ":" + d.NC + ":" + d.CNonce + ":" + QOPAuth + ":" + ha2)
}

// NewNonce returns 32 random lower-case hex digits: the form of the nonce
// of AMT's challenge, and of the cnonce MeshCommander and amtterm send.
func NewNonce() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// Challenge is the data of a digest challenge, an [AuthenticateReply] with
// status [StatusAuthFailed] (redirection.md §2, type 4 step 2): realm,
// nonce and, for [AuthDigest], qop.
type Challenge struct {
	Realm, Nonce, QOP string
}

// Append appends the encoded fields to b: the QOP field only when QOP is
// set. Values longer than [MaxLV] are cut.
func (c Challenge) Append(b []byte) []byte {
	b = AppendLV(AppendLV(b, c.Realm), c.Nonce)
	if c.QOP != "" {
		b = AppendLV(b, c.QOP)
	}
	return b
}

// ParseChallenge decodes the data of a digest challenge: two or three
// fields.
func ParseChallenge(data []byte) (Challenge, error) {
	f, err := lvFields(MsgAuthenticateReply, data, 3)
	if err != nil {
		return Challenge{}, err
	}
	if len(f) < 2 {
		return Challenge{}, &ParseError{Code: MsgAuthenticateReply, Off: authDataOff,
			Msg: fmt.Sprintf("%d fields of digest challenge; want 2 or 3", len(f))}
	}
	c := Challenge{Realm: string(f[0]), Nonce: string(f[1])}
	if len(f) == 3 {
		c.QOP = string(f[2])
	}
	return c, nil
}
