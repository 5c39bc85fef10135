package vault

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

const redacted = "REDACTED"

// Secret is a string that does not print: fmt (every verb), log/slog and
// encoding/json render it as "REDACTED". Use [Secret.Reveal] to get the value.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String returns "REDACTED".
func (s Secret) String() string { return redacted }

// GoString returns "REDACTED".
func (s Secret) GoString() string { return redacted }

// Format writes "REDACTED" for every verb, quoted for %q, so that verbs such
// as %x cannot print the value either.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		io.WriteString(f, strconv.Quote(redacted)) // fmt.State records write errors itself
		return
	}
	io.WriteString(f, redacted)
}

// LogValue implements [slog.LogValuer]; it returns "REDACTED".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON returns the JSON string "REDACTED".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "REDACTED", for encoders that use [encoding.TextMarshaler].
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
