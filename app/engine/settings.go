package engine

import (
	"cmp"
	"fmt"
	"log/slog"
	"time"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/internal/cli"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/mps/tunnel"
)

// Settings returns the settings in force.
func (b *Backend) Settings() ui.Settings {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.settings
}

// ApplySettings puts s in force on the running instance without dropping
// a tunnel, sets the log level, and saves s for the next start. The API
// address waits for a restart; the note says so.
func (b *Backend) ApplySettings(s ui.Settings) (string, error) {
	if err := s.Check(); err != nil {
		return "", err
	}
	proxyAddr := s.ProxyAddr
	if proxyAddr == "off" {
		proxyAddr = ""
	}
	if err := b.In.Apply(instance.Settings{
		CIRAAddr: s.CIRAAddr, ProxyAddr: proxyAddr, Keepalive: s.Keepalive, IdleTimeout: s.IdleTimeout,
		LegacyTLS: s.LegacyTLS, MDNS: s.MDNS,
	}); err != nil {
		return "", err
	}
	if b.Moved != nil {
		if err := b.Moved(); err != nil {
			return "", fmt.Errorf("the settings are in force, but the command line was not told where Presence listens now: %w", err)
		}
	}
	if b.Level != nil {
		var lv slog.Level
		if lv.UnmarshalText([]byte(s.LogLevel)) == nil {
			b.Level.Set(lv)
		}
	}
	b.mu.Lock()
	old := b.settings
	b.settings = s
	b.mu.Unlock()
	if b.Save != nil {
		if err := b.Save(s); err != nil {
			return "", err
		}
	}
	if s.APIAddr != old.APIAddr {
		return "The API address changes at the next start of Presence.", nil
	}
	return "", nil
}

// LogSince returns the log lines after seq at level min or above.
func (b *Backend) LogSince(seq uint64, min slog.Level) []logring.Entry {
	if b.Log == nil {
		return nil
	}
	return b.Log.Since(seq, min)
}

// FromSaved turns the command line's settings (every field filled, as
// cli.AppLaunch has them) into the Settings screen's.
func FromSaved(s cli.ServerSettings) ui.Settings {
	d := func(v string, def time.Duration) time.Duration {
		if x, err := time.ParseDuration(v); err == nil {
			return x
		}
		return def
	}
	b := func(p *bool, def bool) bool {
		if p == nil {
			return def
		}
		return *p
	}
	return ui.Settings{
		CIRAAddr: s.CIRAAddr, ProxyAddr: s.ProxyAddr, APIAddr: s.APIAddr,
		Keepalive: d(s.Keepalive, tunnel.DefaultKeepalive), IdleTimeout: d(s.IdleTimeout, tunnel.DefaultIdle),
		LegacyTLS: b(s.LegacyTLS, false), MDNS: b(s.MDNS, true), LogLevel: cmp.Or(s.LogLevel, "info"),
		StartMinimised: s.StartMinimised, CloseToTray: b(s.CloseToTray, true),
	}
}

// ToSaved turns the Settings screen's settings into what the data dir keeps.
func ToSaved(s ui.Settings) cli.ServerSettings {
	return cli.ServerSettings{
		CIRAAddr: s.CIRAAddr, ProxyAddr: s.ProxyAddr, APIAddr: s.APIAddr,
		Keepalive: s.Keepalive.String(), IdleTimeout: s.IdleTimeout.String(),
		LegacyTLS: new(s.LegacyTLS), MDNS: new(s.MDNS), LogLevel: s.LogLevel,
		StartMinimised: s.StartMinimised, CloseToTray: new(s.CloseToTray),
	}
}
