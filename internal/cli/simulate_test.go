package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
)

// TestSimulateBackup runs `presence simulate` with a primary and a backup
// (two whole instances, each with its own root and a certificate for
// 127.0.0.1): devices whose primary is down or names itself wrongly come
// up on the backup, the summary says so per MPS entry, and a single --mps
// prints the summary it always printed.
func TestSimulateBackup(t *testing.T) {
	a, caA := instancetest.Start(t, nil)
	b, caB := instancetest.Start(t, nil)
	addrA, addrB := a.Listening().CIRA.String(), b.Listening().CIRA.String()
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, append(caA.RootPEM(), caB.RootPEM()...), 0o600); err != nil {
		t.Fatal(err)
	}
	down := freePort(t)
	simulate := func(t *testing.T, args ...string) (amtsim.Summary, map[string]json.RawMessage) {
		t.Helper()
		// Its own identities: a device on B twice would be a duplicate.
		args = append([]string{"simulate", "--ca", roots, "--user", instancetest.CIRAUser, "--devices", "2", "--seed", t.Name()}, args...)
		r := run(t, instancetest.CIRAPass+"\n", args...)
		var sum amtsim.Summary
		var keys map[string]json.RawMessage
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil || json.Unmarshal([]byte(r.stdout), &keys) != nil {
			t.Fatalf("presence %s: %+v", strings.Join(args, " "), r)
		}
		return sum, keys
	}
	t.Run("single", func(t *testing.T) {
		t.Parallel()
		sum, keys := simulate(t, "--mps", addrB, "--duration", "1s")
		// The keys of the summary before backups existed.
		old := []string{"devices", "started", "connected_now", "attempts", "handshakes", "failed", "ended",
			"handshake_ms", "handshakes_per_sec", "elapsed_sec", "keepalives_sent", "keepalives_answered",
			"keepalive_bad_replies", "server_keepalives", "channels_opened", "channels_refused", "bytes_in", "bytes_out"}
		for k := range keys {
			if !slices.Contains(old, k) {
				t.Errorf("single --mps summary has the new key %q", k)
			}
		}
		if sum.Handshakes != 2 {
			t.Fatalf("summary %+v; want 2 handshakes", sum)
		}
	})
	t.Run("primary down", func(t *testing.T) {
		t.Parallel()
		sum, _ := simulate(t, "--mps", down+","+addrB, "--duration", "2s")
		if !slices.Equal(sum.HandshakesByMPS, []int64{0, 2}) || sum.Failed["dial"] != 4 || len(sum.Failed) != 1 {
			t.Fatalf("summary %+v; want both devices on the backup after two refusals each", sum)
		}
	})
	t.Run("primary names another host", func(t *testing.T) {
		t.Parallel()
		sum, _ := simulate(t, "--mps", addrA+", "+addrB, "--server-name", "mps.elsewhere.example,", "--duration", "2s")
		if !slices.Equal(sum.HandshakesByMPS, []int64{0, 2}) || sum.Failed["tls"] != 4 || len(sum.Failed) != 1 {
			t.Fatalf("summary %+v; want both devices on the backup after two TLS failures each", sum)
		}
	})
	t.Run("both down", func(t *testing.T) {
		t.Parallel()
		// One pass is four attempts; 300 ms pauses fit three or four
		// more passes in a second, where the default would fit none.
		sum, _ := simulate(t, "--mps", down+","+freePort(t), "--retry-interval", "300ms", "--duration", "1s")
		if per := sum.Attempts / 2; per < 8 || per > 20 || sum.Handshakes != 0 {
			t.Fatalf("summary %+v; want 8 to 20 attempts per device", sum)
		}
	})
}

func TestSimulateUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--mps", "127.0.0.1:1,,127.0.0.1:2"},
		{"--mps", "127.0.0.1:1,127.0.0.1:2", "--server-name", "a,b,c"},
		{"--mps", "127.0.0.1:1", "--server-name", "a,b"},
		{"--mps", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,127.0.0.1:5"},
		{"--mps", "127.0.0.1:1,127.0.0.1:2", "--retry-interval", "0s"},
	} {
		args = append([]string{"simulate", "--ca", "roots.pem", "--user", "u"}, args...)
		if r := run(t, "", args...); r.code != 2 {
			t.Errorf("presence %v: exit %d; want 2 (%s)", args, r.code, r.stderr)
		}
	}
}

// TestSimulatePlatformFlags: the simulated platform's flags are checked
// before any device starts, and the help describes them.
func TestSimulatePlatformFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--amt-version", "3"},
		{"--amt-version", "sixteen"},
		{"--control-mode", "xcm"},
		{"--consent", "some"},
		{"--control-mode", "ccm", "--consent", "kvm"},
		{"--hardware", "mainframe"},
		{"--event-log", "-1"},
		{"--event-log", "100000"},
		{"--sol-screen", "gui"},
	} {
		args = append([]string{"simulate", "--mps", "127.0.0.1:1", "--ca", "roots.pem", "--user", "u"}, args...)
		if r := run(t, "", args...); r.code != 2 {
			t.Errorf("presence %v: exit %d; want 2 (%s)", args, r.code, r.stderr)
		}
	}
	r := run(t, "", "simulate", "-h")
	for _, want := range []string{"-amt-version", "-control-mode", "-consent", "-os-agent", "-hardware", "-event-log", "-sol-screen", "consent_codes"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("simulate -h lacks %q:\n%s", want, r.stderr)
		}
	}
}
