package instance_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps/amtsim"
)

const testTimeout = 20 * time.Second

// curlWSMan runs curl with the given proxy options against a device's
// WS-Man with digest auth. Credentials reach curl on stdin (-K -), never in
// argv. It returns curl's HTTP code, the body and curl's stderr.
func curlWSMan(t *testing.T, e *env, proxyOpts []string, proxyUser, target string) (int, string, string) {
	t.Helper()
	curl := requireTool(t, "curl")
	dir := t.TempDir()
	body := filepath.Join(dir, "req.xml")
	out := filepath.Join(dir, "resp.xml")
	if err := os.WriteFile(body, []byte(wsmanBody()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	args := append([]string{"-sS", "--digest", "-K", "-", "--max-time", "15",
		"-H", "Content-Type: application/soap+xml;charset=UTF-8",
		"--data-binary", "@" + body, "-o", out, "-w", "%{http_code}"}, proxyOpts...)
	args = append(args, target)
	cmd := exec.CommandContext(ctx, curl, args...)
	conf := fmt.Sprintf("user = \"%s:%s\"\n", amtUser, amtPass)
	if proxyUser != "" {
		conf += fmt.Sprintf("proxy-user = \"%s\"\n", proxyUser)
	}
	cmd.Stdin = strings.NewReader(conf)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, _ := cmd.Output()
	var code int
	fmt.Sscanf(string(stdout), "%d", &code)
	b, _ := os.ReadFile(out)
	return code, string(b), stderr.String()
}

// curl through each proxy protocol reaches WS-Man with digest auth, naming
// the device by GUID, host name and .amt.
func TestCurl(t *testing.T) {
	e := newEnv(t, envOptions{devices: 2})
	login := consoleUser + ":" + consolePass
	px := e.proxyAddr()
	for _, tc := range []struct {
		name   string
		opts   []string
		target string
	}{
		{"http absolute-form by GUID", []string{"-x", "http://" + px}, "http://" + e.guid(0) + ":16992/wsman"},
		{"http absolute-form by .amt", []string{"-x", "http://" + px}, "http://" + e.hostname(0) + ".amt:16992/wsman"},
		{"http CONNECT", []string{"-x", "http://" + px, "--proxytunnel"}, "http://" + e.hostname(0) + ":16992/wsman"},
		{"socks5-hostname", []string{"--socks5-hostname", px}, "http://" + strings.ToUpper(strings.ReplaceAll(e.guid(0), "-", "")) + ":16992/wsman"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, stderr := curlWSMan(t, e, tc.opts, login, tc.target)
			if code != 200 {
				t.Fatalf("status %d, stderr %s", code, stderr)
			}
			wantHost(t, body, e.hostname(0))
		})
	}
	// The second device is reached by its own name, and by an alias.
	if err := e.in.Server.SetAlias("reception", e.guid(1)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{e.hostname(1), "Reception.amt"} {
		code, body, _ := curlWSMan(t, e, []string{"-x", "http://" + px}, login, "http://"+name+":16992/wsman")
		if code != 200 {
			t.Fatalf("device 1 as %s: status %d", name, code)
		}
		wantHost(t, body, e.hostname(1))
	}
}

// Refusals: each with the protocol's own error, never a connection
// anywhere else.
func TestCurlRefusals(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	login := consoleUser + ":" + consolePass
	px := e.proxyAddr()
	api := e.in.APIAddr.String()
	for _, tc := range []struct {
		name   string
		opts   []string
		user   string
		target string
		code   int
		errSub string
	}{
		{"unknown device", []string{"-x", "http://" + px}, login, "http://nosuch:16992/wsman", 404, ""},
		{"unannounced port", []string{"-x", "http://" + px}, login, "http://" + e.hostname(0) + ":22/", 403, ""},
		{"internet address", []string{"-x", "http://" + px}, login, "http://93.184.216.34/", 404, ""},
		{"loopback address", []string{"-x", "http://" + px}, login, "http://" + api + "/api/v1/health", 404, ""},
		{"no credentials", []string{"-x", "http://" + px}, "", "http://" + e.hostname(0) + ":16992/wsman", 407, ""},
		{"wrong password", []string{"-x", "http://" + px}, consoleUser + ":nope", "http://" + e.hostname(0) + ":16992/wsman", 407, ""},
		{"CONNECT unknown device", []string{"-x", "http://" + px, "--proxytunnel"}, login, "http://nosuch:16992/", 0, "404"},
		{"socks5 unknown device", []string{"--socks5-hostname", px}, login, "http://nosuch:16992/", 0, "connection to nosuch. (4)"},
		{"socks5 unannounced port", []string{"--socks5-hostname", px}, login, "http://" + e.hostname(0) + ":22/", 0, ". (2)"},
		{"socks5 wrong password", []string{"--socks5-hostname", px}, consoleUser + ":nope", "http://" + e.hostname(0) + ":16992/", 0, "rejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := curlWSMan(t, e, tc.opts, tc.user, tc.target)
			if code != tc.code || !strings.Contains(strings.ToLower(stderr), strings.ToLower(tc.errSub)) {
				t.Fatalf("status %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.errSub)
			}
		})
	}
	if st := e.in.Proxy.Stats(); st.Refused < 6 || st.AuthFailures < 2 {
		t.Fatalf("proxy stats %+v", st)
	}
}

// A slow console is cut off at the handshake deadline with a clear answer.
func TestSlowHandshake(t *testing.T) {
	e := newEnv(t, envOptions{devices: 0, cfg: func(c *instance.Config) { c.HandshakeTimeout = 300 * time.Millisecond }})
	c, err := net.Dial("tcp", e.proxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET http://x:16992/ HTTP/1.1\r\nHost: x\r\n") // never finished
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %s, want 408", resp.Status)
	}
}

// Go's net/http Transport with Proxy set, and digest auth done by the test.
func TestNetHTTPTransport(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	pu := &url.URL{Scheme: "http", Host: e.proxyAddr(), User: url.UserPassword(consoleUser, consolePass)}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: testTimeout}
	defer client.CloseIdleConnections()
	for _, name := range []string{e.guid(0), e.hostname(0), e.hostname(0) + ".amt"} {
		code, body := digestPost(t, client, "http://"+name+":16992/wsman", amtUser, amtPass, wsmanBody())
		if code != 200 {
			t.Fatalf("%s: status %d", name, code)
		}
		wantHost(t, body, e.hostname(0))
	}
	// The keep-alive connection made one session per name.
	client.CloseIdleConnections()
	e.waitFor("sessions ended", func() bool { return e.in.Sessions().Stats().Active == 0 })
	if st := e.in.Sessions().Stats(); st.Total != 3 || st.BytesFromDevice == 0 {
		t.Fatalf("session stats %+v", st)
	}
}

// golang.org/x/net/proxy's SOCKS5 client, with the engine's WS-Man client.
func TestXNetProxySOCKS5(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1})
	d, err := xproxy.SOCKS5("tcp", e.proxyAddr(), &xproxy.Auth{User: consoleUser, Password: consolePass}, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := amtsim.WSManGet(ctx, func(ctx context.Context) (net.Conn, error) {
		return d.(xproxy.ContextDialer).DialContext(ctx, "tcp", e.guid(0)+":16992")
	}, amtUser, amtPass, amtsim.ResourceGeneralSettings)
	if err != nil {
		t.Fatal(err)
	}
	wantHost(t, string(res.Body), e.hostname(0))
	if _, err := d.Dial("tcp", "127.0.0.1:"+fmt.Sprint(e.in.APIAddr.(*net.TCPAddr).Port)); err == nil {
		t.Fatal("SOCKS5 to a loopback address was allowed")
	}
}

// A device with no channel free answers a new session with 503 (AMT has
// only a handful of channel slots).
func TestDeviceBusy(t *testing.T) {
	e := newEnv(t, envOptions{devices: 1, device: func(_ int, c *amtsim.Config) { c.MaxChannels = 1 }})
	d, err := xproxy.SOCKS5("tcp", e.proxyAddr(), &xproxy.Auth{User: consoleUser, Password: consolePass}, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	held, err := d.Dial("tcp", e.hostname(0)+":7")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	code, _, stderr := curlWSMan(t, e, []string{"-x", "http://" + e.proxyAddr()}, consoleUser+":"+consolePass, "http://"+e.hostname(0)+":16992/wsman")
	if code != 503 {
		t.Fatalf("status %d (%s), want 503", code, stderr)
	}
	held.Close()
	e.waitFor("channel free", func() bool { d, _ := e.in.Server.Device(e.guid(0)); return d.Info.Channels == 0 })
	if code, body, _ := curlWSMan(t, e, []string{"-x", "http://" + e.proxyAddr()}, consoleUser+":"+consolePass, "http://"+e.hostname(0)+":16992/wsman"); code != 200 {
		t.Fatalf("after the session ended: %d", code)
	} else {
		wantHost(t, body, e.hostname(0))
	}
}
