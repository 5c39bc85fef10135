package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/presence-mps/presence/internal/instance"
)

// The running instance tells the local command line where it is: the
// files under <data-dir>/run, readable by the user only. The token is the
// API's bearer token of this run; it changes every start.
const (
	runDir       = "run"
	runInfoFile  = "instance.json"
	runTokenFile = "api-token"
)

// runInfo is <data-dir>/run/instance.json.
type runInfo struct {
	PID     int       `json:"pid"`
	ID      string    `json:"id"`
	Version string    `json:"version"`
	Vault   string    `json:"vault"`
	CIRA    string    `json:"cira"`
	Proxy   string    `json:"proxy,omitempty"`
	API     string    `json:"api,omitempty"`
	Started time.Time `json:"started"`
}

// writeRunFiles writes the run files of in, started at started, with
// the addresses it listens on now, and returns a function that removes
// them. Call it again after the listeners moved.
func writeRunFiles(dataDir, vaultKind string, in *instance.Instance, started time.Time) (remove func(), err error) {
	dir := filepath.Join(dataDir, runDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	l := in.Listening()
	info := runInfo{
		PID: os.Getpid(), ID: in.ID(), Version: Version, Vault: vaultKind,
		CIRA: addrString(l.CIRA), Started: started.UTC().Truncate(time.Second),
	}
	if l.Proxy != nil {
		info.Proxy = l.Proxy.String()
	}
	if l.API != nil {
		info.API = l.API.String()
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, runTokenFile), []byte(in.Token()+"\n")); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, runInfoFile), append(b, '\n')); err != nil {
		os.Remove(filepath.Join(dir, runTokenFile))
		return nil, err
	}
	return func() {
		// Only our own files: a newer instance may have replaced them.
		if cur, err := readRunInfo(dataDir); err == nil && cur.PID == info.PID && cur.ID == info.ID {
			os.Remove(filepath.Join(dir, runInfoFile))
			os.Remove(filepath.Join(dir, runTokenFile))
		}
	}, nil
}

// writeFileAtomic writes a 0600 file through a temporary file and rename.
func writeFileAtomic(name string, data []byte) error {
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

var errNotRunning = errors.New("no Presence instance is running for this data dir (start one with presence serve, or name it with --api-addr)")

func readRunInfo(dataDir string) (runInfo, error) {
	var info runInfo
	b, err := os.ReadFile(filepath.Join(dataDir, runDir, runInfoFile))
	if errors.Is(err, fs.ErrNotExist) {
		return info, errNotRunning
	}
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("%s: %w", filepath.Join(dataDir, runDir, runInfoFile), err)
	}
	return info, nil
}

// dialable turns a listen address (":16990", "0.0.0.0:16990") into one a
// local client can connect to.
func dialable(addr string) string {
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

// aliasesFile keeps device aliases (alias → GUID) in the data dir: a
// setting, shared by serve and the desktop app.
const aliasesFile = "aliases.json"

// loadAliases reads the aliases; a missing file means none.
func loadAliases(dataDir string) (map[string]string, error) {
	name := filepath.Join(dataDir, aliasesFile)
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v): fix or remove it", name, err)
	}
	return m, nil
}

// saveAliases returns the function that keeps the aliases in dataDir.
func saveAliases(dataDir string) func(map[string]string) error {
	return func(m map[string]string) error {
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		return writeFileAtomic(filepath.Join(dataDir, aliasesFile), append(b, '\n'))
	}
}
