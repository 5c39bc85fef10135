package launch_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/presence-mps/presence/internal/launch"
)

// The peers a join keeps are saved once each, beside the rest of
// settings.json, which is left as it was.
func TestDirPeers(t *testing.T) {
	d := launch.Dir(t.TempDir())
	if err := os.WriteFile(d.Path(launch.SettingsFile), []byte(`{"vault":"file","someone_elses":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"a.example:16991", "b.example:16991", "a.example:16991"} {
		if err := d.AddPeer(a); err != nil {
			t.Fatal(err)
		}
	}
	saved, err := d.Load()
	if err != nil || !slices.Equal(saved.Peers, []string{"a.example:16991", "b.example:16991"}) || saved.Vault != "file" {
		t.Fatalf("saved %+v, %v", saved, err)
	}
	b, _ := os.ReadFile(d.Path(launch.SettingsFile))
	if !strings.Contains(string(b), `"someone_elses": 1`) {
		t.Fatalf("an unknown key was lost:\n%s", b)
	}
	os.WriteFile(d.Path(launch.SettingsFile), []byte(`{"peers":"a.example:16991"}`), 0o600)
	if _, err := d.Load(); err == nil || !strings.Contains(err.Error(), "peers") {
		t.Fatalf("a bad peers value: %v", err)
	}
}
