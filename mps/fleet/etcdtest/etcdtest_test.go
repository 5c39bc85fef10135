package etcdtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// kv talks to etcd 3.4's gRPC gateway (HTTP+JSON), so this package's test
// needs no etcd client.
func kv(t *testing.T, s *Server, op string, req map[string]string) map[string]any {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Post(s.Endpoint()+"/v3/kv/"+op, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s %v", op, resp.Status, b, err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v in %s", op, err, b)
	}
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestServer starts one etcd, writes a key, restarts it on the same ports
// and data, reads the key back, and stops it.
func TestServer(t *testing.T) {
	s := Start(t)
	ep := s.Endpoint()
	kv(t, s, "put", map[string]string{"key": b64("k"), "value": b64("v")})

	s.Restart()
	if got := s.Endpoint(); got != ep {
		t.Fatalf("Endpoint after Restart = %q; want %q", got, ep)
	}
	out := kv(t, s, "range", map[string]string{"key": b64("k")})
	kvs, _ := out["kvs"].([]any)
	if len(kvs) != 1 {
		t.Fatalf("range after Restart = %v; want one key", out)
	}
	if v, _ := kvs[0].(map[string]any)["value"].(string); v != b64("v") {
		t.Fatalf("value after Restart = %q; want %q", v, b64("v"))
	}

	s.Stop()
	if err := s.health(t.Context()); err == nil {
		t.Fatal("health after Stop: nil error; want one")
	}
	s.Stop() // a second Stop does nothing
	s.Kill()
}
