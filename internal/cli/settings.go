package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// settingsFile holds the choices that outlive one command, in the data dir:
// the same file the desktop app writes its settings to.
const settingsFile = "settings.json"

// settings are the persisted choices. Unknown fields are kept as they are.
type settings struct {
	Vault string `json:"vault,omitempty"` // the secret store: keychain, file or memory
	rest  map[string]json.RawMessage
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
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dataDir, settingsFile), append(b, '\n'))
}
