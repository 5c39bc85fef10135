package adapter

import (
	"fmt"
	"log/slog"

	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/internal/settings"
)

// Settings returns the settings in force.
func (b *Backend) Settings() settings.Settings {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.settings
}

// ApplySettings puts s in force on the running instance without dropping
// a tunnel, sets the log level, and saves s for the next start. The API
// address waits for a restart; the note says so.
func (b *Backend) ApplySettings(s settings.Settings) (string, error) {
	if err := s.Check(); err != nil {
		return "", err
	}
	if err := b.In.Apply(s); err != nil {
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
