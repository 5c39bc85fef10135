package instance_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/proxy"
)

// apiDo sends a request to the API with the console login (or none when
// user is "") and decodes a JSON answer into out (if not nil).
func apiDo(t *testing.T, e *env, method, path, user, pass string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.apiURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := (&http.Client{Timeout: testTimeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func TestAPIDevicesAndAuth(t *testing.T) {
	e := newEnv(t, envOptions{devices: 2})
	var devs []api.DeviceInfo
	if code := apiDo(t, e, "GET", "/api/v1/devices", consoleUser, consolePass, nil, &devs); code != 200 {
		t.Fatalf("devices: %d", code)
	}
	if len(devs) != 2 {
		t.Fatalf("%d devices", len(devs))
	}
	var one api.DeviceInfo
	if code := apiDo(t, e, "GET", "/api/v1/devices/"+e.hostname(1), consoleUser, consolePass, nil, &one); code != 200 {
		t.Fatalf("device by host name: %d", code)
	}
	if one.UUID != e.guid(1) || one.Hostname != e.hostname(1) || one.TLSVersion != "TLS 1.2" || one.TLSCipher == "" ||
		len(one.Ports) != 7 || !strings.HasPrefix(one.Remote, "127.0.0.1:") || one.ConnectedAt.IsZero() || one.User != ciraUser {
		t.Fatalf("device %+v", one)
	}
	for _, tc := range []struct {
		method, path, user, pass string
		want                     int
	}{
		{"GET", "/api/v1/devices", "", "", 401},
		{"GET", "/api/v1/devices", consoleUser, "wrong", 401},
		{"GET", "/api/v1/devices", ciraUser, ciraPass, 401}, // a CIRA account is not a console account
		{"GET", "/api/v1/devices/nosuch", consoleUser, consolePass, 404},
		{"GET", "/api/v1/nothing", consoleUser, consolePass, 404},
		{"GET", "/api/v1/health", "", "", 200},
		{"DELETE", "/api/v1/sessions/12345", consoleUser, consolePass, 404},
		{"POST", "/api/v1/mappings", consoleUser, consolePass, 400},
	} {
		if code := apiDo(t, e, tc.method, tc.path, tc.user, tc.pass, nil, nil); code != tc.want {
			t.Errorf("%s %s as %q: %d, want %d", tc.method, tc.path, tc.user, code, tc.want)
		}
	}

	// The bearer token.
	req, _ := http.NewRequest("GET", e.apiURL()+"/api/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+e.in.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with the token: %s", resp.Status)
	}

	// The root certificate.
	resp, err = http.Get(e.apiURL() + "/api/v1/ciracert")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("ciracert without login: %s", resp.Status)
	}
	req, _ = http.NewRequest("GET", e.apiURL()+"/api/v1/ciracert", nil)
	req.SetBasicAuth(consoleUser, consolePass)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if blk, _ := pem.Decode(pemBytes); blk == nil || !bytes.Equal(blk.Bytes, e.ca.Root().Raw) {
		t.Fatalf("ciracert is not the root: %q", pemBytes)
	}

	// Disconnect one device by GUID.
	events, stop := e.in.Server.Subscribe(64)
	defer stop()
	var out map[string]string
	if code := apiDo(t, e, "DELETE", "/api/v1/devices/disconnect/"+e.guid(0), consoleUser, consolePass, nil, &out); code != 200 || out["disconnected"] != e.guid(0) {
		t.Fatalf("disconnect: %d %v", code, out)
	}
	for timeout := time.After(testTimeout); ; {
		select {
		case ev := <-events:
			if ev.Kind == mps.EventDisconnected && ev.Device.UUID == e.guid(0) {
				if ev.Reason != "admin" {
					t.Fatalf("disconnect reason %q", ev.Reason)
				}
				return
			}
		case <-timeout:
			t.Fatal("no disconnect event")
		}
	}
}

// Sessions are listed live and can be killed through the API.
func TestAPISessions(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	c, err := net.Dial("tcp", e.proxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	auth := base64.StdEncoding.EncodeToString([]byte(consoleUser + ":" + consolePass))
	fmt.Fprintf(c, "CONNECT %s:7 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic %s\r\n\r\n", e.hostname(0), auth)
	buf := make([]byte, 39)
	if _, err := io.ReadFull(c, buf); err != nil || !strings.HasPrefix(string(buf), "HTTP/1.1 200") {
		t.Fatalf("CONNECT: %q %v", buf, err)
	}
	io.WriteString(c, "echo me")
	io.ReadFull(c, make([]byte, 7))
	var ss []proxy.SessionInfo
	if code := apiDo(t, e, "GET", "/api/v1/sessions", consoleUser, consolePass, nil, &ss); code != 200 || len(ss) != 1 {
		t.Fatalf("sessions: %d %+v", code, ss)
	}
	s := ss[0]
	if s.Kind != proxy.KindConnect || s.User != consoleUser || s.Device != e.guid(0) || s.Port != 7 || s.BytesFromDevice != 7 {
		t.Fatalf("session %+v", s)
	}
	if code := apiDo(t, e, "DELETE", fmt.Sprintf("/api/v1/sessions/%d", s.ID), consoleUser, consolePass, nil, nil); code != 200 {
		t.Fatalf("kill: %d", code)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("killed session's connection still open")
	}
	e.waitFor("no sessions", func() bool { return len(e.in.Sessions().List()) == 0 })
	if st := e.in.Sessions().Stats(); st.Ended[proxy.EndKilled] != 1 {
		t.Fatalf("ended %+v", st.Ended)
	}
}

func TestAPIMetricsAndPAC(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	get := func(path string, login bool) (int, string) {
		req, _ := http.NewRequest("GET", e.apiURL()+path, nil)
		if login {
			req.SetBasicAuth(consoleUser, consolePass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/metrics", false); code != 401 {
		t.Fatalf("metrics without login: %d", code)
	}
	code, m := get("/metrics", true)
	for _, want := range []string{"\npresence_tunnels 1\n", "# TYPE presence_sessions gauge", "presence_tunnels_accepted_total 1\n"} {
		if code != 200 || !strings.Contains(m, want) {
			t.Fatalf("metrics (%d) lack %q:\n%s", code, want, m)
		}
	}
	// Anonymous: rules for .amt and GUIDs, but no device name.
	_, anon := get("/proxy.pac", false)
	if !strings.Contains(anon, `"PROXY `+e.proxyAddr()+`"`) || strings.Contains(anon, e.hostname(0)) || !strings.Contains(anon, `return "DIRECT"`) {
		t.Fatalf("anonymous PAC:\n%s", anon)
	}
	_, named := get("/proxy.pac", true)
	if !strings.Contains(named, `"`+e.hostname(0)+`": 1`) {
		t.Fatalf("logged-in PAC lacks the device:\n%s", named)
	}
}

// wsDial opens the relay to host:port with the console login.
func wsDial(t *testing.T, e *env, host string, port int) *websocket.Conn {
	t.Helper()
	u := fmt.Sprintf("ws://%s/relay/webrelay.ashx?p=2&host=%s&port=%d&tls=0", e.in.APIAddr, url.QueryEscape(host), port)
	cfg, err := websocket.NewConfig(u, "http://"+e.in.APIAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(consoleUser+":"+consolePass)))
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ws.PayloadType = websocket.BinaryFrame
	ws.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { ws.Close() })
	return ws
}

// A websocket client on the relay reaches WS-Man (HTTP digest over the
// relayed bytes) and SOL (redirection digest auth, as web consoles do).
func TestRelay(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := amtsim.WSManGet(ctx, func(ctx context.Context) (net.Conn, error) {
		return wsDial(t, e, e.guid(0), 16992), nil
	}, amtUser, amtPass, amtsim.ResourceGeneralSettings)
	if err != nil {
		t.Fatal(err)
	}
	wantHost(t, string(res.Body), e.hostname(0))

	sol, err := amtsim.DialSOL(wsDial(t, e, e.hostname(0), 16994), amtUser, amtPass, amtsim.SOLAuthDigest)
	if err != nil {
		t.Fatal(err)
	}
	defer sol.Close()
	expectText(t, sol, "serial console on "+e.hostname(0))
	io.WriteString(sol, "status\r")
	expectText(t, sol, "you typed: status")
	var ss []proxy.SessionInfo
	apiDo(t, e, "GET", "/api/v1/sessions", consoleUser, consolePass, nil, &ss)
	sol.Close()
	if len(ss) != 1 || ss[0].Kind != proxy.KindRelay || ss[0].Port != 16994 || ss[0].Device != e.guid(0) {
		t.Fatalf("relay sessions %+v", ss)
	}

	// A web console that leaves the login to Presence (an empty user, as
	// Intel's ui-toolkit does) gets in with the stored AMT account; one that
	// logs in itself with a wrong password is refused by the device.
	e.waitFor("SOL slot free", func() bool { return len(e.in.Sessions().List()) == 0 })
	sol, err = amtsim.DialSOL(wsDial(t, e, e.guid(0), 16994), "", "", amtsim.SOLAuthDigest)
	if err != nil {
		t.Fatalf("SOL with the login left to Presence: %v", err)
	}
	expectText(t, sol, "serial console on "+e.hostname(0))
	io.WriteString(sol, "via presence\r")
	expectText(t, sol, "you typed: via presence")
	sol.Close()
	e.waitFor("SOL slot free", func() bool { return len(e.in.Sessions().List()) == 0 })
	if _, err := amtsim.DialSOL(wsDial(t, e, e.guid(0), 16994), amtUser, "wrong", amtsim.SOLAuthDigest); err == nil {
		t.Fatal("SOL with a wrong password of the console's own got in")
	}

	// Refusals answer the upgrade with an HTTP error.
	for _, tc := range []struct {
		query string
		login bool
		want  string
	}{
		{"host=nosuch", true, "404"},
		{"host=" + e.guid(0) + "&port=22", true, "403"},
		{"host=" + e.guid(0), false, "401"},
	} {
		cfg, _ := websocket.NewConfig("ws://"+e.in.APIAddr.String()+"/relay/webrelay.ashx?"+tc.query, "http://"+e.in.APIAddr.String())
		if tc.login {
			cfg.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(consoleUser+":"+consolePass)))
		}
		if ws, err := websocket.DialConfig(cfg); err == nil {
			ws.Close()
			t.Errorf("%s: relay opened", tc.query)
		} else if !strings.Contains(err.Error(), "bad status") {
			t.Errorf("%s: %v", tc.query, err)
		}
	}
}

// expectText reads from r until want appears (bounded by r's deadline).
func expectText(t *testing.T, r io.Reader, want string) {
	t.Helper()
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte(want)) {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("waiting for %q: %v; got %q", want, err, got)
		}
	}
}

// amtterm (Debian's, clear-text redirection auth) through a port mapping
// made with the API, as consoles that cannot use a proxy do.
func TestAmttermThroughMapping(t *testing.T) {
	amtterm := requireTool(t, "amtterm")
	e := newEnv(t, envOptions{devices: 1})
	var m proxy.MappingInfo
	if code := apiDo(t, e, "POST", "/api/v1/mappings", consoleUser, consolePass,
		api.MappingRequest{Device: e.hostname(0), Port: 16994}, &m); code != 201 {
		t.Fatalf("create mapping: %d", code)
	}
	if m.Device != e.guid(0) || !strings.HasPrefix(m.Listen, "127.0.0.1:") {
		t.Fatalf("mapping %+v", m)
	}
	host, port, _ := net.SplitHostPort(m.Listen)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, amtterm, "-u", amtUser, host, port)
	cmd.Env = append(cmd.Environ(), "AMT_PASSWORD="+amtPass) // never in argv
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	out := stdout
	expectText(t, out, "serial console on "+e.hostname(0))
	io.WriteString(stdin, "hello presence\n")
	expectText(t, out, "you typed: hello presence")
	if !bytes.Contains(e.devs[0].SOLInput(), []byte("hello presence\r")) {
		t.Fatalf("device got %q", e.devs[0].SOLInput())
	}
	stdin.Write([]byte{0x1d}) // ^]: amtterm ends the session
	if err := cmd.Wait(); err != nil {
		t.Fatalf("amtterm: %v, stderr %s", err, stderr.String())
	}
	// Removing the mapping frees its port.
	if code := apiDo(t, e, "DELETE", fmt.Sprintf("/api/v1/mappings/%d", m.ID), consoleUser, consolePass, nil, nil); code != 200 {
		t.Fatalf("delete mapping: %d", code)
	}
	ln, err := net.Listen("tcp", m.Listen)
	if err != nil {
		t.Fatalf("mapping port still taken: %v", err)
	}
	ln.Close()
}

// A mapping is closed when its device disconnects.
func TestMappingFreedOnDisconnect(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	var m proxy.MappingInfo
	if code := apiDo(t, e, "POST", "/api/v1/mappings", consoleUser, consolePass,
		api.MappingRequest{Device: e.guid(0), Port: 16992}, &m); code != 201 {
		t.Fatalf("create mapping: %d", code)
	}
	if code := apiDo(t, e, "POST", "/api/v1/mappings", consoleUser, consolePass,
		api.MappingRequest{Device: e.guid(0), Port: 22}, nil); code != 403 {
		t.Fatalf("mapping an unannounced port: %d, want 403", code)
	}
	e.in.Server.Disconnect(e.guid(0))
	e.waitFor("mapping closed", func() bool { return len(e.in.Proxy.Mappings()) == 0 })
}
