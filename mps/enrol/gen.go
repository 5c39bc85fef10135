package enrol

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// Character classes of a CIRA password (enrol.md §4: 16 characters from
// A–Z a–z 0–9 and a small special set, always containing each class; none
// of AMT's excluded `:` `,` `"` nor the XML-unsafe `&` `<`).
const (
	upper   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lower   = "abcdefghijklmnopqrstuvwxyz"
	digits  = "0123456789"
	special = "!@#$%^*()"
	charset = upper + lower + digits + special

	// PasswordLen is the length of [NewPassword]'s passwords, AMT's
	// maximum for an MPS password.
	PasswordLen = 16
	// UserLen is the length of [NewUser]'s names, AMT's maximum.
	UserLen = 16
)

// NewUser returns the CIRA user name of the device with that GUID: "p"
// and 15 lower-case hex digits of SHA-256 of the canonical GUID (32 hex
// digits, any case and dashes ignored), so the same device always gets the
// same name, 16 alphanumerics (AMT's limit), and the GUID is not spelled out
// in the vault's account list.
func NewUser(guid string) string {
	g := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(guid), "-", ""))
	sum := sha256.Sum256([]byte("presence cira user\x00" + g))
	return "p" + hex.EncodeToString(sum[:])[:UserLen-1]
}

// randIndex returns a uniform index below n (n ≤ 256) from crypto/rand.
func randIndex(n int) int {
	limit := 256 - 256%n // reject the bytes that would bias the result
	var b [1]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic("enrol: crypto/rand failed: " + err.Error()) // rand.Read never fails on supported platforms
		}
		if int(b[0]) < limit {
			return int(b[0]) % n
		}
	}
}

// NewPassword returns a new CIRA password: exactly [PasswordLen] characters
// from A–Z a–z 0–9 and !@#$%^*(), with at least one of each class, from
// crypto/rand.
func NewPassword() []byte {
	p := make([]byte, PasswordLen)
	for i, class := range []string{upper, lower, digits, special} {
		p[i] = class[randIndex(len(class))]
	}
	for i := 4; i < len(p); i++ {
		p[i] = charset[randIndex(len(charset))]
	}
	for i := len(p) - 1; i > 0; i-- { // Fisher–Yates: the classes' places are random too
		j := randIndex(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// strongPassword reports whether p is what AMT accepts for an MPS password
// (enrol.md §4): 8–16 printable 7-bit characters with a digit, an upper-
// and a lower-case letter and a character that is not alphanumeric ('_'
// counts as alphanumeric).
func strongPassword(p []byte) bool {
	if len(p) < 8 || len(p) > 16 {
		return false
	}
	var u, l, d, o bool
	for _, c := range p {
		switch {
		case c <= 32 || c > 126:
			return false
		case 'A' <= c && c <= 'Z':
			u = true
		case 'a' <= c && c <= 'z':
			l = true
		case '0' <= c && c <= '9':
			d = true
		case c == '_':
		default:
			o = true
		}
	}
	return u && l && d && o
}

// newDetectionString returns a random environment detection string that no
// DHCP suffix will ever match (.invalid is reserved, RFC 2606), so that the
// device always considers itself outside and dials the MPS.
func newDetectionString() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:]) + detectionSuffix
}

const detectionSuffix = ".presence.invalid"

// isPresenceDetection reports whether strs is a detection list Presence
// wrote: one string ending in .presence.invalid.
func isPresenceDetection(strs []string) bool {
	return len(strs) == 1 && strings.HasSuffix(strings.ToLower(strs[0]), detectionSuffix)
}

// AccessInfo returns what AMT is given for an MPS address: the IPv4 or IPv6
// literal with InfoFormat 3 or 4, or the host name lower-cased without a
// trailing dot with InfoFormat 201 (enrol.md §11.5, §11.6).
func AccessInfo(address string) (accessInfo string, infoFormat int, err error) {
	a := strings.TrimSpace(address)
	a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	if ip, perr := netip.ParseAddr(a); perr == nil {
		if ip.Zone() != "" {
			return "", 0, fmt.Errorf("MPS address %q has an IPv6 zone, which AMT cannot dial", address)
		}
		if ip.Is4() || ip.Is4In6() {
			return ip.Unmap().String(), 3, nil
		}
		return ip.String(), 4, nil
	}
	h := strings.ToLower(strings.TrimSuffix(a, "."))
	if h == "" || len(h) > 253 {
		return "", 0, fmt.Errorf("MPS address %q is not a host name or an IP address", address)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", 0, fmt.Errorf("MPS address %q is not a host name or an IP address", address)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return "", 0, fmt.Errorf("MPS address %q is not a host name or an IP address", address)
			}
		}
	}
	return h, 201, nil
}

// guidFromPlatform turns CIM_ComputerSystemPackage PlatformGUID (the 16
// bytes in APF's wire order, as hex) into the GUID text the server knows
// the device's tunnel by (mps/apf UUID.String).
func guidFromPlatform(p string) (string, error) {
	b, err := hex.DecodeString(p)
	if err != nil || len(b) != 16 {
		return "", errors.New("the device's PlatformGUID is not 32 hex digits")
	}
	// apf.UUID's display order: the first three fields little-endian.
	order := [16]int{3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15}
	var s strings.Builder
	for i, w := range order {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s.WriteByte('-')
		}
		s.WriteString(hex.EncodeToString(b[w : w+1]))
	}
	return s.String(), nil
}

// Fingerprint returns the SHA-256 of a certificate's DER as lower-case hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// PinnedTLS returns the TLS configuration of a LAN WS-Man connection
// (16993) and a function that returns the SHA-256 of the certificate the
// device last presented. AMT's certificate is self-signed, so it is not
// verified against roots but pinned: with pin (a SHA-256 of the DER, 32
// bytes) only that certificate is accepted, and a handshake with another
// fails with a sentence showing both fingerprints; with pin nil the first
// certificate is trusted (trust on first use) and seen tells the caller
// what to pin.
func PinnedTLS(pin []byte) (cfg *tls.Config, seen func() []byte) {
	var mu sync.Mutex
	var got []byte
	cfg = &tls.Config{
		// The check is VerifyConnection's, against the pin: AMT's
		// certificate names nothing Presence could verify.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the device presented no TLS certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			mu.Lock()
			got = sum[:]
			mu.Unlock()
			if pin != nil && string(sum[:]) != string(pin) {
				return fmt.Errorf("the device's TLS certificate has SHA-256 %s, not the pinned %s: another machine answers at this address, or the device's certificate changed; check it before trusting the new one", hex.EncodeToString(sum[:]), hex.EncodeToString(pin))
			}
			return nil
		},
	}
	return cfg, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return append([]byte(nil), got...)
	}
}
