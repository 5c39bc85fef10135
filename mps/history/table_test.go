package history

import (
	"slices"
	"testing"
	"time"
)

// A forwarded session shows the instance it came through, last; one of
// our own consoles shows "-".
func TestSessionTableVia(t *testing.T) {
	now := time.Now()
	header, rows := SessionTable([]SessionRecord{
		{Start: now, Kind: "fleet", User: "alice", Device: "g", Port: 16992, Via: "inst-a"},
		{Start: now, End: now, Kind: "socks5", User: "bob", Device: "g", Port: 16992},
	})
	if header[len(header)-1] != "VIA" || len(rows) != 2 || len(rows[0]) != len(header) {
		t.Fatalf("header %q, rows %q", header, rows)
	}
	if got := []string{rows[0][len(header)-1], rows[1][len(header)-1]}; !slices.Equal(got, []string{"inst-a", "-"}) {
		t.Fatalf("via column %q", got)
	}
	if rows[0][1] != "live" {
		t.Fatalf("a session without an end: %q", rows[0][1])
	}
}
