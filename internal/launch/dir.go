package launch

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/vault"
)

// Dir is a data dir: where one Presence keeps its settings, its aliases,
// its secrets (the file vault), its history and, while it runs, the run
// files that tell the command line where it listens. Its methods read and
// write those files; a Dir is a path, safe for concurrent use as far as
// the files are (each is replaced whole, through a rename).
type Dir string

// The files of a data dir.
const (
	// SettingsFile holds the choices that outlive one command: the vault
	// kind and the server settings.
	SettingsFile = "settings.json"
	// AliasesFile keeps device aliases (alias → GUID).
	AliasesFile = "aliases.json"
	// HistoryFile is the bbolt file of tunnel and session history.
	HistoryFile = "history.db"
	// RunDir holds the run files, readable by the user only: the
	// instance's addresses and the API token of this run.
	RunDir       = "run"
	RunInfoFile  = "instance.json"
	RunTokenFile = "api-token"
)

// Path returns the name of the file name in the data dir.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// Saved is what the data dir's settings.json holds. Keys it does not know
// are kept as they are.
type Saved struct {
	// Vault is the secret store: keychain, file or memory ("" not chosen).
	Vault string
	// InstanceID names this instance in its fleet, for good (its peer
	// certificate and its rows in the peers' tables carry it).
	InstanceID string
	// Server are the server settings, nil when none were saved; their
	// fields missing from the file have the built-in defaults.
	Server *settings.Settings
	// Peers are peer listeners (HOST:PORT) this instance links to at
	// every start, besides --peer: the inviting instance of a join.
	Peers []string
	rest  map[string]json.RawMessage
}

// Load reads settings.json; a missing file is no settings.
func (d Dir) Load() (Saved, error) {
	var s Saved
	name := d.Path(SettingsFile)
	if err := readJSON(name, &s.rest); err != nil {
		return s, err
	}
	if v, ok := s.rest["vault"]; ok {
		if err := json.Unmarshal(v, &s.Vault); err != nil {
			return s, fmt.Errorf("%s: vault: %v", name, err)
		}
	}
	if v, ok := s.rest["instance_id"]; ok {
		if err := json.Unmarshal(v, &s.InstanceID); err != nil {
			return s, fmt.Errorf("%s: instance_id: %v", name, err)
		}
	}
	if v, ok := s.rest["peers"]; ok {
		if err := json.Unmarshal(v, &s.Peers); err != nil {
			return s, fmt.Errorf("%s: peers: %v", name, err)
		}
	}
	if v, ok := s.rest["server"]; ok {
		st := settings.Defaults()
		if err := json.Unmarshal(v, &st); err != nil {
			return s, fmt.Errorf("%s: %v: fix it in the window's Settings or in the file", name, err)
		}
		s.Server = &st
	}
	return s, nil
}

// Save writes s to settings.json, keeping the keys it does not know.
func (d Dir) Save(s Saved) error {
	m := make(map[string]any, len(s.rest)+2)
	for k, v := range s.rest {
		m[k] = v
	}
	delete(m, "vault")
	if s.Vault != "" {
		m["vault"] = s.Vault
	}
	delete(m, "instance_id")
	if s.InstanceID != "" {
		m["instance_id"] = s.InstanceID
	}
	delete(m, "server")
	if s.Server != nil {
		m["server"] = s.Server
	}
	delete(m, "peers")
	if len(s.Peers) > 0 {
		m["peers"] = s.Peers
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	return WriteFileAtomic(d.Path(SettingsFile), append(b, '\n'))
}

// AddPeer keeps addr among the peers the instance links to at every start
// (once: an address already there is not added again).
func (d Dir) AddPeer(addr string) error {
	saved, err := d.Load()
	if err != nil {
		return err
	}
	if slices.Contains(saved.Peers, addr) {
		return nil
	}
	saved.Peers = append(saved.Peers, addr)
	return d.Save(saved)
}

// SaveServer keeps s as the data dir's server settings, and the rest of
// the file as it is.
func (d Dir) SaveServer(s settings.Settings) error {
	saved, err := d.Load()
	if err != nil {
		return err
	}
	saved.Server = &s
	return d.Save(saved)
}

// SaveVault records the vault kind the data dir's secrets are in.
func (d Dir) SaveVault(kind string) error {
	saved, err := d.Load()
	if err != nil {
		return err
	}
	saved.Vault = kind
	return d.Save(saved)
}

// InstanceID returns this data dir's instance id, made (16 hex digits)
// and saved the first time.
func (d Dir) InstanceID() (string, error) {
	saved, err := d.Load()
	if err != nil {
		return "", err
	}
	if saved.InstanceID != "" {
		return saved.InstanceID, nil
	}
	b := make([]byte, 8)
	rand.Read(b)
	saved.InstanceID = hex.EncodeToString(b)
	return saved.InstanceID, d.Save(saved)
}

// DesktopVault returns the window's secret store when neither --vault nor
// the data dir's settings name one: the OS keychain, as a desktop
// application should, and the choice is saved; but secrets already kept in
// files in the data dir stay there, and where no keychain answers, files
// it is, with a warning. chosen is the --vault flag ("" not given).
func (d Dir) DesktopVault(chosen string, log *slog.Logger) (string, error) {
	if chosen != "" {
		return chosen, nil
	}
	saved, err := d.Load()
	if err != nil || saved.Vault != "" {
		return saved.Vault, err
	}
	if _, err := os.Stat(d.Path("vault")); err == nil {
		return "file", nil
	}
	if _, err := vault.Open("keychain", string(d)); err != nil {
		log.Warn("no OS keychain answers: the window keeps its secrets in files in the data dir (readable only by you)", "err", err)
		return "file", nil
	}
	return "keychain", d.SaveVault("keychain")
}

// Aliases reads the device aliases; a missing file means none.
func (d Dir) Aliases() (map[string]string, error) {
	var m map[string]string
	err := readJSON(d.Path(AliasesFile), &m)
	return m, err
}

// readJSON decodes the JSON file name into v; a missing file leaves v as
// it is.
func readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s is damaged (%v): fix or remove it", name, err)
	}
	return nil
}

// SaveAliases keeps the device aliases.
func (d Dir) SaveAliases(m map[string]string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(d.Path(AliasesFile), append(b, '\n'))
}

// RunInfo is <data-dir>/run/instance.json: the running instance.
type RunInfo struct {
	PID     int       `json:"pid"`
	ID      string    `json:"id"`
	Version string    `json:"version"`
	Vault   string    `json:"vault"`
	CIRA    string    `json:"cira"`
	Proxy   string    `json:"proxy,omitempty"`
	API     string    `json:"api,omitempty"`
	Peer    string    `json:"peer,omitempty"` // the fleet's peer listener
	Started time.Time `json:"started"`
}

// ErrNotRunning is returned by [Dir.RunInfo] when no instance runs for
// the data dir.
var ErrNotRunning = errors.New("no Presence instance is running for this data dir (start one with presence serve, or name it with --api-addr)")

// RunInfo reads the running instance's run file.
func (d Dir) RunInfo() (RunInfo, error) {
	var info RunInfo
	name := filepath.Join(string(d), RunDir, RunInfoFile)
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return info, ErrNotRunning
	}
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("%s: %w", name, err)
	}
	return info, nil
}

// Token reads the running instance's API token (a secret: never log it).
func (d Dir) Token() (string, error) {
	b, err := os.ReadFile(filepath.Join(string(d), RunDir, RunTokenFile))
	if err != nil {
		return "", err
	}
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b), nil
}

// writeRun writes the run files for info and token.
func (d Dir) writeRun(info RunInfo, token string) error {
	dir := filepath.Join(string(d), RunDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, RunTokenFile), []byte(token+"\n")); err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, RunInfoFile), append(b, '\n')); err != nil {
		os.Remove(filepath.Join(dir, RunTokenFile))
		return err
	}
	return nil
}

// removeRun removes the run files if they are still info's: a newer
// instance may have replaced them.
func (d Dir) removeRun(info RunInfo) {
	if cur, err := d.RunInfo(); err == nil && cur.PID == info.PID && cur.ID == info.ID {
		os.Remove(filepath.Join(string(d), RunDir, RunInfoFile))
		os.Remove(filepath.Join(string(d), RunDir, RunTokenFile))
	}
}

// WriteFileAtomic writes a 0600 file through a temporary file and rename.
func WriteFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// Dialable turns a listen address (":16990", "0.0.0.0:16990") into one a
// local client can connect to.
func Dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}
