package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEnrolCommand enrols unconfigured simulated devices (presence
// simulate --lan, as a second program would run them) into a running
// presence serve with presence enrol: one by address with its steps
// printed, then a batch from a file. Every device comes up over its tunnel
// and is managed through it (presence amt power, with the AMT account
// enrolment kept); unenrol removes it, through the tunnel.
func TestEnrolCommand(t *testing.T) {
	const amtPW = "Lan-Amt-P@ss1"
	dir := t.TempDir()
	if r := run(t, "", "cert", "init", "--cn", "127.0.0.1", "--data-dir", dir); r.code != 0 {
		t.Fatalf("cert init: %+v", r)
	}
	startServe(t, dir)
	addrs := filepath.Join(t.TempDir(), "devices.txt")
	ctx, stop := context.WithCancel(context.Background())
	simDone := make(chan result, 1)
	go func() {
		out, errb := newSyncBuffer(), newSyncBuffer()
		code := Run(ctx, []string{"simulate", "--lan", "127.0.0.1", "--devices", "4", "--seed", "cli-enrol",
			"--addresses", addrs, "--lan-interval", "100ms"}, Env{Stdin: strings.NewReader(amtPW + "\n"), Stdout: out, Stderr: errb})
		simDone <- result{code, out.String(), errb.String()}
	}()
	defer func() { stop(); <-simDone }()
	var lines []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		if b, err := os.ReadFile(addrs); err == nil && strings.Count(string(b), "\n") == 4 {
			lines = strings.Fields(string(b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("simulate --lan wrote no addresses")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// One device, its steps as they happen.
	r := run(t, amtPW+"\n", "enrol", "--data-dir", dir, lines[0])
	if r.code != 0 || !strings.Contains(r.stdout, "environment-detection") || !strings.Contains(r.stdout, "tunnel up") {
		t.Fatalf("enrol %s: %+v", lines[0], r)
	}
	// The rest from a file (the first again: harmless).
	batch := filepath.Join(t.TempDir(), "batch.txt")
	os.WriteFile(batch, []byte("# the office\n"+strings.Join(lines, "\n")+"\n"), 0o600)
	r = run(t, amtPW+"\n", "enrol", "--data-dir", dir, "--file", batch, "--format", "json")
	var rows []struct {
		Address   string `json:"address"`
		GUID      string `json:"guid"`
		Connected bool   `json:"connected"`
		Error     string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || r.code != 0 || len(rows) != 4 {
		t.Fatalf("enrol --file: %v %+v", err, r)
	}
	for _, row := range rows {
		if !row.Connected || row.GUID == "" || row.Error != "" {
			t.Errorf("batch row %+v; want connected", row)
		}
	}
	// Managed through the tunnel with the AMT account enrolment kept.
	if r := run(t, "", "amt", "power", "--data-dir", dir, rows[1].GUID); r.code != 0 || !strings.Contains(r.stdout, "on") {
		t.Errorf("amt power %s: %+v", rows[1].GUID, r)
	}
	// A wrong password is refused with the device's answer, once.
	if r := run(t, "Wrong-P@ss9\n", "enrol", "--data-dir", dir, "--no-wait", lines[2]); r.code == 0 {
		t.Errorf("enrol with a wrong password: %+v", r)
	}
	// Unenrol by the LAN address: through the tunnel, everything goes.
	if r := run(t, amtPW+"\n", "unenrol", "--data-dir", dir, lines[3]); r.code != 0 || !strings.Contains(r.stdout, "removed through the tunnel") {
		t.Errorf("unenrol %s: %+v", lines[3], r)
	}
	stop()
	res := <-simDone
	simDone <- res
	var sum lanSummary
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil || sum.Devices != 4 || sum.Connected != 4 || sum.Enrolled != 3 {
		t.Errorf("simulate --lan summary %+v (%v): want 4 devices, 4 connected, 3 still enrolled\n%s", sum, err, res.stderr)
	}
}
