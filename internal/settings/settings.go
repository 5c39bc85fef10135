// Package settings holds the admin's choices for a Presence instance in
// one typed [Settings]: the window's Settings screen edits it, the data
// dir's settings.json keeps it (under "server"), `presence serve` and the
// window take it as flags, and a running instance applies it.
//
// A setting is a field of [Settings], a row of the flag table (fields,
// below: its flag, its key in settings.json, its help) and, if the admin
// may change it in the window, a widget of the Settings screen. The JSON
// form, the flags and the precedence of a flag over the saved value all
// come from the table.
package settings

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/tunnel"
)

// Settings are the choices that outlive one run. The zero value is not
// useful: start from [Defaults]. A Settings is a plain value, safe to copy.
type Settings struct {
	// CIRAAddr is where AMT devices connect: HOST:PORT or :PORT.
	CIRAAddr string
	// ProxyAddr is the console proxy (HTTP and SOCKS on one port) and
	// APIAddr the REST API; [Off] turns either off.
	ProxyAddr, APIAddr string
	// Keepalive is the interval AMT is asked to keep; IdleTimeout drops
	// a tunnel from which nothing arrived for that long.
	Keepalive, IdleTimeout time.Duration
	// LegacyTLS also allows TLS 1.0 and 1.1, for AMT 11 and older, to
	// every device.
	LegacyTLS bool
	// LegacyTLSDevices allows TLS 1.0 and 1.1 to these devices only:
	// GUIDs in Presence's form (lower case, dashes), comma-separated, in
	// order. Other devices still need TLS 1.2.
	LegacyTLSDevices string
	// MDNS advertises the proxy on the LAN.
	MDNS bool
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// The window's own: start hidden in the tray, and whether closing the
	// window leaves the server running in the tray.
	StartMinimised, CloseToTray bool
}

// LegacyDevices returns the GUIDs of LegacyTLSDevices.
func (s Settings) LegacyDevices() []string {
	var out []string
	for g := range strings.SplitSeq(s.LegacyTLSDevices, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	return out
}

// WithLegacyDevice returns s with guid (any form) allowed legacy TLS, or
// no longer allowed.
func (s Settings) WithLegacyDevice(guid string, allow bool) (Settings, error) {
	g, err := canonicalGUID(guid)
	if err != nil {
		return s, err
	}
	var keep []string
	for _, d := range s.LegacyDevices() {
		if d != g {
			keep = append(keep, d)
		}
	}
	if allow {
		keep = append(keep, g)
	}
	s.LegacyTLSDevices = strings.Join(keep, ",")
	return s, nil
}

// canonicalGUID is vault.CanonicalGUID (settings does not import the
// vault): lower case with dashes, from any case, dashes optional.
func canonicalGUID(s string) (string, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "-", ""))
	if len(h) != 32 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is not a device GUID (32 hex digits, dashes optional)", s)
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// Off is the address that turns the proxy or the API off.
const Off = "off"

// LogLevels are the log levels, most verbose first.
var LogLevels = []string{"debug", "info", "warn", "error"}

// Defaults returns the built-in settings of `presence serve` and the
// window.
func Defaults() Settings {
	return Settings{
		CIRAAddr: ":4433", ProxyAddr: ":1080", APIAddr: "127.0.0.1:16990",
		Keepalive: tunnel.DefaultKeepalive, IdleTimeout: tunnel.DefaultIdle,
		MDNS: true, LogLevel: "info", CloseToTray: true,
	}
}

// Listen returns the address to listen on for addr: "" for [Off].
func Listen(addr string) string {
	if addr == Off {
		return ""
	}
	return addr
}

// Check returns the first problem with s, in a sentence that names the
// setting as the Settings screen does, or nil.
func (s Settings) Check() error {
	addr := func(name, a string, offOK bool) error {
		if offOK && a == Off {
			return nil
		}
		host, p, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(p)
		if err != nil || perr != nil || n < 0 || n > 65535 {
			return fmt.Errorf("the %s address %q is not HOST:PORT or :PORT (for example :4433)", name, a)
		}
		if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
			return fmt.Errorf("the %s address %q has a host that is not an IP address or a name", name, a)
		}
		return nil
	}
	if err := addr("CIRA", s.CIRAAddr, false); err != nil {
		return err
	}
	if err := addr("proxy", s.ProxyAddr, true); err != nil {
		return err
	}
	if err := addr("API", s.APIAddr, true); err != nil {
		return err
	}
	if s.Keepalive < time.Second || s.Keepalive > time.Hour {
		return fmt.Errorf("the keepalive interval must be between 1s and 1h; %s is not", s.Keepalive)
	}
	if err := tunnel.CheckTimeouts(s.Keepalive, s.IdleTimeout); err != nil {
		return err
	}
	if !validLevel(s.LogLevel) {
		return fmt.Errorf("the log level %q is not one of debug, info, warn or error", s.LogLevel)
	}
	return nil
}

func validLevel(l string) bool {
	for _, v := range LogLevels {
		if l == v {
			return true
		}
	}
	return false
}
