package discovery

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TXT keys, see the package documentation.
const (
	keyTXTVers     = "txtvers"
	keyProxy       = "proxy"
	keyAPI         = "api"
	keyPeer        = "peer" // the fleet's peer-link port (a hint: trust comes from the handshake)
	keyID          = "id"
	keyVersion     = "version"
	keyFingerprint = "fp"
)

// TXTVersion is the txtvers value this package writes and the only one it accepts.
const TXTVersion = "1"

// Limits on what we accept from the network (and on what we send, where the
// same rule applies to our own configuration).
const (
	maxInstanceName = 63  // one DNS label (RFC 6763 section 4.1.1)
	maxHostName     = 253 // RFC 1035, presentation form without the trailing dot
	maxIDLen        = 64
	maxVersionLen   = 64
	maxTXTStrings   = 32  // more than we ever send; the rest are ignored
	maxTXTString    = 255 // a DNS character-string
	maxKeyLen       = 32  // RFC 6763 section 6.4 recommends at most 9
	maxAddrs        = 16  // per instance
	maxInstances    = 256 // per browse round or watcher
)

// NewID returns a random instance ID (26 characters of base32, 128 bits).
// An instance keeps its ID for its lifetime, so that it can recognise and
// skip its own advertisement, see [BrowseConfig].SkipID.
func NewID() string {
	return rand.Text()
}

// Fingerprint returns the value of the fp TXT key for a certificate: the
// SHA-256 of its DER encoding in lowercase hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// validID reports whether s is a usable instance ID: 1 to 64 characters of
// ASCII letters, digits, '.', '_', ':' or '-'.
func validID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

// validVersion reports whether s is a usable version string: 1 to 64
// characters of ASCII letters, digits, '.', '_', '+', '~' or '-'.
func validVersion(s string) bool {
	if len(s) == 0 || len(s) > maxVersionLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '+' && c != '~' && c != '-' {
			return false
		}
	}
	return true
}

// normFingerprint returns s in lowercase if it is 64 hex digits.
func normFingerprint(s string) (string, bool) {
	if len(s) != 2*sha256.Size {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// parsePort parses a decimal port number in 1..65535. Only digits are
// accepted: no sign, no spaces, no base prefix.
func parsePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, false
	}
	return n, true
}

func validPort(n int) bool { return n >= 1 && n <= 65535 }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// txtFields are the values carried in the TXT record. The zero value of an
// optional field means "absent".
type txtFields struct {
	ProxyPort   int
	APIPort     int
	PeerPort    int
	ID          string
	Version     string
	Fingerprint string
}

// encodeTXT returns the TXT strings for f, which the caller has validated.
// None of the values contains a backslash, which miekg/dns would treat as
// an escape when packing.
func encodeTXT(f txtFields) []string {
	txt := []string{
		keyTXTVers + "=" + TXTVersion,
		keyProxy + "=" + strconv.Itoa(f.ProxyPort),
	}
	if f.APIPort != 0 {
		txt = append(txt, keyAPI+"="+strconv.Itoa(f.APIPort))
	}
	if f.PeerPort != 0 {
		txt = append(txt, keyPeer+"="+strconv.Itoa(f.PeerPort))
	}
	txt = append(txt, keyID+"="+f.ID)
	if f.Version != "" {
		txt = append(txt, keyVersion+"="+f.Version)
	}
	if f.Fingerprint != "" {
		txt = append(txt, keyFingerprint+"="+f.Fingerprint)
	}
	return txt
}

// errTXT is wrapped by the errors parseTXT returns; the tests branch on it.
var errTXT = errors.New("discovery: malformed TXT record")

// parseTXT parses TXT strings, already unescaped, as sent by [Advertise].
// It follows RFC 6763 section 6: keys are case-insensitive, only the first
// occurrence of a key counts, and strings that are empty or start with '='
// are ignored. At most maxTXTStrings strings are looked at.
//
// The instance is rejected (an error wrapping errTXT) without txtvers=1, a
// valid proxy port or a valid id. Optional keys with a malformed value are
// treated as absent.
func parseTXT(txt []string) (txtFields, error) {
	kv := make(map[string]string, len(txt))
	for i, s := range txt {
		if i == maxTXTStrings {
			break
		}
		if s == "" || s[0] == '=' || len(s) > maxTXTString {
			continue
		}
		k, v, _ := strings.Cut(s, "=")
		if len(k) > maxKeyLen || !printableASCII(k) {
			continue
		}
		k = strings.ToLower(k)
		if _, dup := kv[k]; !dup {
			kv[k] = v
		}
	}

	var f txtFields
	if v, ok := kv[keyTXTVers]; !ok || v != TXTVersion {
		return f, fmt.Errorf("%w: txtvers %q, want %q", errTXT, v, TXTVersion)
	}
	var ok bool
	if f.ProxyPort, ok = parsePort(kv[keyProxy]); !ok {
		return txtFields{}, fmt.Errorf("%w: proxy port %q", errTXT, kv[keyProxy])
	}
	if f.ID = kv[keyID]; !validID(f.ID) {
		return txtFields{}, fmt.Errorf("%w: id %q", errTXT, f.ID)
	}
	if v, ok := kv[keyAPI]; ok {
		f.APIPort, _ = parsePort(v)
	}
	if v, ok := kv[keyPeer]; ok {
		f.PeerPort, _ = parsePort(v)
	}
	if v := kv[keyVersion]; validVersion(v) {
		f.Version = v
	}
	f.Fingerprint, _ = normFingerprint(kv[keyFingerprint])
	return f, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validInstanceName reports whether s can be a DNS-SD instance name: valid
// UTF-8, 1 to 63 bytes, and no control or other non-printing characters
// (RFC 6763 section 4.1.1 forbids control characters).
func validInstanceName(s string) bool {
	if len(s) == 0 || len(s) > maxInstanceName || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// escapeLabel returns the presentation form of a single DNS label holding s,
// as packed by miekg/dns: dots and non-printing bytes become \DDD and the
// characters miekg/dns treats as special get a backslash. A dot is written
// \046 rather than \. because zeroconf trims dots off both ends of the
// instance name, which would split a trailing "\.".
func escapeLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' || c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		case strings.IndexByte(`()"; @\`, c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescape turns a name or TXT string in miekg/dns presentation form back
// into its bytes: \DDD is a byte in decimal, \X is X. With dotOK false an
// unescaped dot (a label separator) makes the input malformed, which is how
// a multi-label instance name is rejected.
func unescape(s string, dotOK bool) (string, bool) {
	if !strings.ContainsAny(s, `\.`) {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '.':
			if !dotOK {
				return "", false
			}
			b = append(b, c)
		case '\\':
			i++
			if i == len(s) {
				return "", false
			}
			if i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
				n := int(s[i]-'0')*100 + int(s[i+1]-'0')*10 + int(s[i+2]-'0')
				if n > 255 {
					return "", false
				}
				b = append(b, byte(n))
				i += 2
			} else {
				b = append(b, s[i])
			}
		default:
			b = append(b, c)
		}
	}
	return string(b), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// hostLabelsOK reports whether s (no trailing dot) is a host name of
// letter-digit-hyphen labels of 1 to 63 characters, at most maxHostName long.
// Underscores are allowed too, as some networks use them in host names.
func hostLabelsOK(s string) bool {
	if len(s) == 0 || len(s) > maxHostName {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlnum(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}
