package instance_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/proxy"
)

// Tunnels and console sessions land in the history: up, down with its
// reason, the session with its bytes and end reason.
func TestHistoryRecordsTunnelsAndSessions(t *testing.T) {
	h, err := history.Open(filepath.Join(t.TempDir(), "history.db"), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() }) // after the instance's shutdown (cleanups run last-in first-out)
	e := newEnv(t, envOptions{devices: 1, cfg: func(c *instance.Config) { c.History = h }})
	d, err := xproxy.SOCKS5("tcp", e.proxyAddr(), &xproxy.Auth{User: consoleUser, Password: consolePass}, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial("tcp", e.hostname(0)+":7")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "hello")
	io.ReadFull(c, make([]byte, 5))
	if err := e.in.Server.Disconnect(e.guid(0)); err != nil {
		t.Fatal(err)
	}
	io.ReadAll(c) // the session ends with the tunnel
	e.waitFor("session ended", func() bool { return e.in.Sessions().Stats().Active == 0 })

	var evs []history.TunnelEvent
	var recs []history.SessionRecord
	e.waitFor("history written", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		evs, _ = h.Timeline(e.guid(0), time.Time{}, time.Time{}, 0)
		recs, _ = h.Sessions(history.Filter{Device: e.guid(0)})
		return len(evs) >= 2 && len(recs) == 1 && !recs[0].End.IsZero()
	})
	up, down := evs[0], evs[1]
	if up.Kind != history.KindUp || up.Hostname != e.hostname(0) || up.TLSVersion != "TLS 1.2" || len(up.Ports) != 7 {
		t.Fatalf("up event %+v", up)
	}
	if down.Kind != history.KindDown || down.Reason != "admin" {
		t.Fatalf("down event %+v", down)
	}
	r := recs[0]
	if r.Kind != proxy.KindSOCKS5 || r.User != consoleUser || r.Port != 7 || r.BytesToDevice != 5 || r.BytesFromDevice != 5 || r.EndReason != proxy.EndDevice {
		t.Fatalf("session record %+v", r)
	}
	code, m := 0, ""
	{
		req, _ := http.NewRequest("GET", e.apiURL()+"/metrics", nil)
		req.SetBasicAuth(consoleUser, consolePass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, m = resp.StatusCode, string(b)
	}
	if code != 200 || !strings.Contains(m, "presence_history_dropped_total 0\n") || strings.Contains(m, "presence_history_committed_total 0\n") {
		t.Fatalf("history metrics (%d):\n%s", code, m)
	}
	if byUser, _ := h.Sessions(history.Filter{User: consoleUser}); len(byUser) != 1 {
		t.Fatalf("sessions by account: %+v", byUser)
	}
}
