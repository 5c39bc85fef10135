package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/presence-mps/presence/vault"
)

// settingsFile holds the choices that outlive one command, in the data dir:
// the same file the desktop app writes its settings to.
const settingsFile = "settings.json"

// settings are the persisted choices. Unknown fields are kept as they are.
type settings struct {
	Vault  string          `json:"vault,omitempty"` // the secret store: keychain, file or memory
	Server *ServerSettings `json:"server,omitempty"`
	rest   map[string]json.RawMessage
}

// ServerSettings are the choices the window's Settings screen edits, kept
// under "server" in the data dir's settings.json. `presence serve` and the
// window take them as the defaults of the flags of the same names; a flag
// given on the command line wins. Empty fields keep the built-in default.
type ServerSettings struct {
	CIRAAddr    string `json:"cira_addr,omitempty"`
	ProxyAddr   string `json:"proxy_addr,omitempty"` // "off" turns the proxy off
	APIAddr     string `json:"api_addr,omitempty"`   // "off" turns the API off
	Keepalive   string `json:"keepalive,omitempty"`  // a Go duration: "30s"
	IdleTimeout string `json:"idle_timeout,omitempty"`
	LegacyTLS   *bool  `json:"legacy_tls,omitempty"`
	MDNS        *bool  `json:"mdns,omitempty"`
	LogLevel    string `json:"log_level,omitempty"`
	// The window's own: start hidden in the tray, and whether closing the
	// window leaves the server running in the tray (default yes).
	StartMinimised bool  `json:"start_minimised,omitempty"`
	CloseToTray    *bool `json:"close_to_tray,omitempty"`
}

// flagValues maps the settings to the serve flags they are defaults of.
func (s *ServerSettings) flagValues() map[string]string {
	m := map[string]string{}
	set := func(name, v string) {
		if v != "" {
			m[name] = v
		}
	}
	set("cira-addr", s.CIRAAddr)
	set("proxy-addr", s.ProxyAddr)
	set("api-addr", s.APIAddr)
	set("keepalive", s.Keepalive)
	set("idle-timeout", s.IdleTimeout)
	set("log-level", s.LogLevel)
	if s.LegacyTLS != nil {
		m["legacy-tls"] = strconv.FormatBool(*s.LegacyTLS)
	}
	if s.MDNS != nil {
		m["mdns"] = strconv.FormatBool(*s.MDNS)
	}
	return m
}

// applySettings sets the flags fs did not get on the command line from
// the data dir's settings. A bad value names the file.
func applySettings(fs *flag.FlagSet, dataDir string) (settings, error) {
	st, err := loadSettings(dataDir)
	if err != nil || st.Server == nil {
		return st, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, v := range st.Server.flagValues() {
		if given[name] || fs.Lookup(name) == nil {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return st, fmt.Errorf("%s: server setting for --%s: %v: fix it in the window's Settings or in the file", filepath.Join(dataDir, settingsFile), name, err)
		}
	}
	return st, nil
}

func loadSettings(dataDir string) (settings, error) {
	var s settings
	b, err := os.ReadFile(filepath.Join(dataDir, settingsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s.rest); err != nil {
		return s, fmt.Errorf("%s is damaged (%v): fix or remove it", filepath.Join(dataDir, settingsFile), err)
	}
	if v, ok := s.rest["vault"]; ok {
		if err := json.Unmarshal(v, &s.Vault); err != nil {
			return s, fmt.Errorf("%s: vault: %v", filepath.Join(dataDir, settingsFile), err)
		}
	}
	if v, ok := s.rest["server"]; ok {
		s.Server = new(ServerSettings)
		if err := json.Unmarshal(v, s.Server); err != nil {
			return s, fmt.Errorf("%s: server: %v", filepath.Join(dataDir, settingsFile), err)
		}
	}
	return s, nil
}

func saveSettings(dataDir string, s settings) error {
	m := make(map[string]any, len(s.rest)+1)
	for k, v := range s.rest {
		m[k] = v
	}
	delete(m, "vault")
	if s.Vault != "" {
		m["vault"] = s.Vault
	}
	delete(m, "server")
	if s.Server != nil {
		m["server"] = s.Server
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dataDir, settingsFile), append(b, '\n'))
}

// chooseDesktopVault picks the window's secret store when neither
// --vault nor the data dir's settings name one: the OS keychain, as a
// desktop application should, and the choice is saved; but secrets
// already kept in files in the data dir stay there, and where no keychain
// answers, files it is, with a warning.
func (c *common) chooseDesktopVault(log *slog.Logger) error {
	if c.vault != "" {
		return nil
	}
	st, err := loadSettings(c.dataDir)
	if err != nil || st.Vault != "" {
		return err // c.store() takes the saved choice
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, "vault")); err == nil {
		c.vault = "file"
		return nil
	}
	if _, err := vault.Open("keychain", c.dataDir); err != nil {
		log.Warn("no OS keychain answers: the window keeps its secrets in files in the data dir (readable only by you)", "err", err)
		c.vault = "file"
		return nil
	}
	c.vault = "keychain"
	st.Vault = "keychain"
	return saveSettings(c.dataDir, st)
}
