package apf

import (
	"encoding/hex"
	"errors"
)

// UUID is a device UUID as it travels in PROTOCOL_VERSION: the SMBIOS
// mixed-endian byte order (apf.md §2.1).
type UUID [16]byte

// wireOrder maps the position of each byte of the rendered GUID (read left to
// right) to its index in the wire bytes: the first three groups are
// little-endian, the last two as they are.
var wireOrder = [16]int{3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15}

// String renders the usual GUID text in lower case, the device id
// Presence uses: wire 00112233445566778899AABBCCDDEEFF renders as
// 33221100-5544-7766-8899-aabbccddeeff.
func (u UUID) String() string {
	const digits = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, w := range wireOrder {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = digits[u[w]>>4], digits[u[w]&0xf]
		j += 2
	}
	return string(s[:])
}

// IsZero reports whether u is all zeros.
func (u UUID) IsZero() bool { return u == UUID{} }

// ErrBadUUID reports text that is not a GUID.
var ErrBadUUID = errors.New("apf: not a GUID (want 32 hex digits, dashes optional)")

// ParseUUID reads GUID text in any case, with or without the four dashes,
// and returns its wire form; it is the inverse of [UUID.String].
func ParseUUID(s string) (UUID, error) {
	var u UUID
	var h [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' {
			if len(s) != 36 || (i != 8 && i != 13 && i != 18 && i != 23) {
				return u, ErrBadUUID
			}
			continue
		}
		if n == 32 {
			return u, ErrBadUUID
		}
		h[n] = c
		n++
	}
	if n != 32 || (len(s) != 32 && len(s) != 36) {
		return u, ErrBadUUID
	}
	var text [16]byte
	if _, err := hex.Decode(text[:], h[:]); err != nil {
		return u, ErrBadUUID
	}
	for i, w := range wireOrder {
		u[w] = text[i]
	}
	return u, nil
}
