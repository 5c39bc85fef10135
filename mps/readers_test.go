package mps

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// TestReadersMode reads each form of PRESENCE_TUNNEL_READERS, and refuses
// the malformed ones with the default beside the error.
func TestReadersMode(t *testing.T) {
	for _, tc := range []struct {
		v        string
		poll     bool
		coalesce time.Duration
		bad      bool
	}{
		{v: "", poll: true},
		{v: "poll", poll: true},
		{v: "goroutine"},
		{v: "poll,coalesce=5ms", poll: true, coalesce: 5 * time.Millisecond},
		{v: "poll,coalesce=0", poll: true, coalesce: -1},
		{v: "poll,coalesce=fast", poll: true, bad: true},
		{v: "poll,coalesce=-2ms", poll: true, bad: true},
		{v: "goroutines", poll: true, bad: true},
		{v: "Poll", poll: true, bad: true},
	} {
		poll, opt, err := readersMode(tc.v)
		if poll != tc.poll || opt.Coalesce != tc.coalesce || (err != nil) != tc.bad {
			t.Errorf("readersMode(%q) = %v, coalesce %v, %v; want %v, %v, error %v",
				tc.v, poll, opt.Coalesce, err, tc.poll, tc.coalesce, tc.bad)
		}
		if err != nil && !strings.Contains(err.Error(), tc.v) {
			t.Errorf("readersMode(%q): error %q does not name the value", tc.v, err)
		}
	}
}

// TestNewWarnsOfBadReaders: a malformed PRESENCE_TUNNEL_READERS is logged
// and the default taken; "goroutine" takes no poller and logs nothing.
func TestNewWarnsOfBadReaders(t *testing.T) {
	ca := vaulttest.CA(t, "127.0.0.1")
	for _, tc := range []struct {
		v      string
		poller bool
		warn   bool
	}{
		{v: "poll,coalesce=fast", poller: runtime.GOOS == "linux", warn: true},
		{v: "goroutine"},
		{v: "poll", poller: runtime.GOOS == "linux"},
	} {
		t.Setenv(EnvReaders, tc.v)
		var logs bytes.Buffer
		s, err := New(Config{
			TLS:    tunnel.TLSConfig(ca.TLSCertificate(), false),
			Tunnel: tunnel.Config{Auth: func(context.Context, apf.UUID, string, []byte) bool { return true }},
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.poller != nil {
			s.poller.Close()
		}
		if (s.poller != nil) != tc.poller {
			t.Errorf("%s=%q: poller %v; want %v", EnvReaders, tc.v, s.poller != nil, tc.poller)
		}
		warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), EnvReaders)
		if warned != tc.warn {
			t.Errorf("%s=%q: warned %v; want %v; log:\n%s", EnvReaders, tc.v, warned, tc.warn, logs.String())
		}
	}
}
