package instance_test

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/vault"
)

// End-to-end tests of a whole instance: real TLS tunnels from simulated
// devices, and consoles that are real clients (curl, squid, amtterm, Go's
// net/http, x/net/proxy, a websocket client).

const (
	ciraUser    = instancetest.CIRAUser
	ciraPass    = instancetest.CIRAPass
	consoleUser = instancetest.ConsoleUser
	consolePass = instancetest.ConsolePass
	amtUser     = instancetest.AMTUser
	amtPass     = instancetest.AMTPass
)

type env struct {
	t    testing.TB
	in   *instance.Instance
	devs []*amtsim.Device
	ca   *vault.CA
}

func (e *env) proxyAddr() string { return e.in.ProxyAddr.String() }
func (e *env) apiURL() string    { return "http://" + e.in.APIAddr.String() }

type envOptions struct {
	devices int
	cfg     func(*instance.Config)
	device  func(i int, c *amtsim.Config)
}

// newEnv starts an instance on loopback with a CIRA and a console account,
// and n simulated devices, and waits until they are all connected.
func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	in, ca := instancetest.Start(t, o.cfg)
	e := &env{t: t, in: in, ca: ca}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	dctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, o.devices)
	for i := range o.devices {
		c := amtsim.Config{
			UUID: amtsim.DeviceUUID(t.Name(), i), Hostname: amtsim.DeviceHostname(i),
			User: ciraUser, Password: []byte(ciraPass), MPSAddr: in.CIRAAddr.String(), RootCAs: roots,
			MaxVersion: tls.VersionTLS12, AMTUser: amtUser, AMTPassword: []byte(amtPass), EchoPort: 7,
		}
		if o.device != nil {
			o.device(i, &c)
		}
		d, err := amtsim.New(c)
		if err != nil {
			t.Fatal(err)
		}
		e.devs = append(e.devs, d)
		go func() { d.Run(dctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range o.devices {
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Error("a device did not stop")
				return
			}
		}
	})
	e.waitFor("devices connected", func() bool { return in.Server.Stats().Tunnels == o.devices && allReady(e) })
	return e
}

func allReady(e *env) bool {
	for _, d := range e.in.Server.Devices() {
		if !d.Info.Ready {
			return false
		}
	}
	return true
}

// waitFor polls cond for up to 20 s.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) guid(i int) string     { return e.devs[i].UUID().String() }
func (e *env) hostname(i int) string { return e.devs[i].Hostname() }

// wsmanBody is a WS-Man Get of AMT_GeneralSettings.
func wsmanBody() string {
	return string(amtsim.WSManGetRequest(amtsim.ResourceGeneralSettings, "uuid:e2e"))
}

// wantHost checks that a WS-Man response names the device.
func wantHost(t testing.TB, body, host string) {
	t.Helper()
	if !strings.Contains(body, "<g:HostName>"+host+"</g:HostName>") {
		t.Fatalf("WS-Man response does not name %s:\n%.600s", host, body)
	}
}

// requireTool finds a program or skips the test; in CI (CI=true) a missing
// program fails the test, since scripts/setup.sh installs it.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; scripts/setup.sh installs it", name)
		}
		t.Skipf("%s is not installed (bash scripts/setup.sh installs it)", name)
	}
	return p
}

// digestPost does a WS-Man POST with HTTP digest auth (RFC 2617, qop=auth,
// as AMT uses) through client: the first request gets the challenge.
func digestPost(t testing.TB, client *http.Client, url, user, pass, body string) (int, string) {
	t.Helper()
	post := func(authz string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/soap+xml;charset=UTF-8")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post("")
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return resp.StatusCode, ""
	}
	ch := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	uri := resp.Request.URL.RequestURI()
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	nc, cnonce := "00000001", "0a4f113b"
	ha1 := h(user + ":" + ch["realm"] + ":" + pass)
	ha2 := h("POST:" + uri)
	r := h(ha1 + ":" + ch["nonce"] + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	authz := fmt.Sprintf(`Digest username=%q, realm=%q, nonce=%q, uri=%q, qop=auth, nc=%s, cnonce=%q, response=%q`,
		user, ch["realm"], ch["nonce"], uri, nc, cnonce, r)
	if o, ok := ch["opaque"]; ok {
		authz += fmt.Sprintf(", opaque=%q", o)
	}
	resp = post(authz)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func parseChallenge(h string) map[string]string {
	out := map[string]string{}
	h = strings.TrimPrefix(h, "Digest ")
	for _, part := range splitQuoted(h) {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

// splitQuoted splits on commas outside double quotes.
func splitQuoted(s string) []string {
	var parts []string
	inQ, start := false, 0
	for i, c := range s {
		switch {
		case c == '"':
			inQ = !inQ
		case c == ',' && !inQ:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
