package settings

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scope says which commands take a setting as a flag.
type Scope uint8

const (
	// Server settings are flags of `presence serve`, `presence demo` and
	// the window.
	Server Scope = 1 << iota
	// Window settings are flags of the window only.
	Window
)

// field is a row of the flag table: a setting's flag, its key in
// settings.json, who takes the flag, its help, and its value in a
// Settings.
type field struct {
	flag, key string
	scope     Scope
	usage     string
	value     func(*Settings) flag.Value
}

// fields is the flag table. Its order is that of `-h` and of the JSON.
var fields = []field{
	{"cira-addr", "cira_addr", Server, "`HOST:PORT` the CIRA listener binds (AMT devices connect here)",
		func(s *Settings) flag.Value { return (*stringValue)(&s.CIRAAddr) }},
	{"proxy-addr", "proxy_addr", Server, "console proxy `HOST:PORT`: HTTP (CONNECT and absolute URLs) and SOCKS5/4a on one port; \"off\" disables it",
		func(s *Settings) flag.Value { return (*stringValue)(&s.ProxyAddr) }},
	{"api-addr", "api_addr", Server, "`HOST:PORT` of the REST API, websocket relay, /proxy.pac and /metrics; \"off\" disables it",
		func(s *Settings) flag.Value { return (*stringValue)(&s.APIAddr) }},
	{"mdns", "mdns", Server, "advertise the proxy on the LAN over mDNS (_amt-mps._tcp)",
		func(s *Settings) flag.Value { return (*boolValue)(&s.MDNS) }},
	{"keepalive", "keepalive", Server, "how often AMT is asked to send a keepalive (a `duration` such as 30s)",
		func(s *Settings) flag.Value { return (*durationValue)(&s.Keepalive) }},
	{"idle-timeout", "idle_timeout", Server, "drop a tunnel from which nothing arrived for this `duration`",
		func(s *Settings) flag.Value { return (*durationValue)(&s.IdleTimeout) }},
	{"legacy-tls", "legacy_tls", Server, "also allow TLS 1.0 and 1.1, for AMT 11 and older",
		func(s *Settings) flag.Value { return (*boolValue)(&s.LegacyTLS) }},
	{"legacy-tls-devices", "legacy_tls_devices", Server, "also allow TLS 1.0 and 1.1, but only to these devices: `GUIDs`, comma-separated",
		func(s *Settings) flag.Value { return (*guidsValue)(&s.LegacyTLSDevices) }},
	{"log-level", "log_level", Server, "log `level`: debug, info, warn or error",
		func(s *Settings) flag.Value { return (*levelValue)(&s.LogLevel) }},
	{"start-minimised", "start_minimised", Window, "start hidden in the tray",
		func(s *Settings) flag.Value { return (*boolValue)(&s.StartMinimised) }},
	{"close-to-tray", "close_to_tray", Window, "closing the window keeps Presence running in the tray",
		func(s *Settings) flag.Value { return (*boolValue)(&s.CloseToTray) }},
}

// Register defines on fs a flag for each setting in scope, bound to its
// field in s; s's values are the flags' defaults.
func (s *Settings) Register(fs *flag.FlagSet, scope Scope) {
	for _, f := range fields {
		if f.scope&scope != 0 {
			fs.Var(f.value(s), f.flag, f.usage)
		}
	}
}

// FillUnset sets each setting that is a flag of fs but was not given on
// its command line to its value in saved: a flag given wins over the
// saved value, and the saved value over the built-in default.
func (s *Settings) FillUnset(fs *flag.FlagSet, saved Settings) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, f := range fields {
		if fs.Lookup(f.flag) != nil && !given[f.flag] {
			f.value(s).Set(f.value(&saved).String()) // a valid value of the same type
		}
	}
}

// MarshalJSON writes s as an object of the keys of the flag table: booleans
// as JSON booleans, the rest as strings ("30s" for a duration).
func (s Settings) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, f.key)
		b = append(b, ':')
		v := f.value(&s)
		if _, ok := v.(*boolValue); ok {
			b = append(b, v.String()...)
		} else {
			k, err := json.Marshal(v.String())
			if err != nil {
				return nil, err
			}
			b = append(b, k...)
		}
	}
	return append(b, '}'), nil
}

// UnmarshalJSON sets the settings named in the object, leaving the others
// as they are (unmarshal into [Defaults]). Unknown keys are ignored, so a
// newer Presence's file still loads; a bad value names its key and flag.
func (s *Settings) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for _, f := range fields {
		raw, ok := m[f.key]
		if !ok || string(raw) == "null" {
			continue
		}
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			text = string(raw) // true, false
		}
		if err := f.value(s).Set(text); err != nil {
			return fmt.Errorf("server setting %s (--%s): %v", f.key, f.flag, err)
		}
	}
	return nil
}

// The flag values, one per type of setting.
type (
	stringValue   string
	boolValue     bool
	durationValue time.Duration
	levelValue    string
	guidsValue    string
)

func (v *guidsValue) Set(s string) error {
	var out []string
	for g := range strings.SplitSeq(s, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		c, err := canonicalGUID(g)
		if err != nil {
			return err
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if len(out) > 10_000 {
		return fmt.Errorf("at most 10000 devices, not %d", len(out))
	}
	*v = guidsValue(strings.Join(out, ","))
	return nil
}
func (v *guidsValue) String() string { return string(*v) }

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 30s or 2m", s)
	}
	if d <= 0 {
		return errors.New("must be positive, got " + s)
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }

func (v *levelValue) Set(s string) error {
	if !validLevel(s) {
		return fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	*v = levelValue(s)
	return nil
}
func (v *levelValue) String() string { return string(*v) }
