package proxy

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"
)

// fakeEngine stands in for the MPS engine: "dev1" (and "dev1.amt") offers
// port 16992, served by an in-test HTTP handler on a loopback listener.
type fakeEngine struct {
	addr string // device HTTP server
	echo string // device echo server (port 16994)

	mu     sync.Mutex
	hosts  []string // every host passed to Dial
	opened int      // successful dials
}

func newFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s host=%s body=%s", r.Method, r.URL.RequestURI(), r.Host, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &fakeEngine{addr: ln.Addr().String(), echo: startEcho(t)}
}

// startEcho runs a loopback echo server and returns its address.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// identified is a device connection that knows its device's identity, as
// the engine's channels do.
type identified struct {
	net.Conn
	id string
}

func (c identified) DeviceID() string { return c.id }

// dials returns how many device connections were opened.
func (e *fakeEngine) dials() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.opened
}

func (e *fakeEngine) dial(ctx context.Context, host string, port uint32) (net.Conn, error) {
	e.mu.Lock()
	e.hosts = append(e.hosts, host)
	e.mu.Unlock()
	switch strings.ToLower(host) {
	case "dev1", "dev1.amt":
	case "broken":
		return nil, errors.New("tunnel gone")
	case "busy":
		return nil, fmt.Errorf("no channel slot: %w", ErrDeviceBusy)
	default:
		return nil, fmt.Errorf("%q: %w", host, ErrUnknownHost)
	}
	target := e.addr
	switch port {
	case 16992:
	case 16994:
		target = e.echo
	default:
		return nil, fmt.Errorf("%s:%d: %w", host, port, ErrPortNotAllowed)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.opened++
	e.mu.Unlock()
	return identified{c, "uuid-dev1"}, nil
}

func (e *fakeEngine) lastHost() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.hosts) == 0 {
		return ""
	}
	return e.hosts[len(e.hosts)-1]
}

func checkAuth(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte("console"))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte("s3cret"))
	return u&p == 1
}

// startProxy runs a Server on 127.0.0.1:0 and returns its address.
func startProxy(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	s, addr, done := serveUnmanaged(t, cfg)
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve = %v, want net.ErrClosed", err)
		}
	})
	return s, addr
}

// serveUnmanaged runs a Server on 127.0.0.1:0 that the test closes
// itself; done receives Serve's result.
func serveUnmanaged(t *testing.T, cfg Config) (*Server, string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	return s, ln.Addr().String(), done
}

func dialProxy(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

const wantGet = "GET /hello?x=1 host=dev1:16992 body="

func getBody(t *testing.T, client *http.Client, u string) string {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

func TestSOCKS5XNetProxy(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth func(string, string) bool
		cred *xproxy.Auth
	}{
		{"noauth", nil, nil},
		{"auth", checkAuth, &xproxy.Auth{User: "console", Password: "s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := newFakeEngine(t)
			_, addr := startProxy(t, Config{Dial: eng.dial, Auth: tc.auth})
			d, err := xproxy.SOCKS5("tcp", addr, tc.cred, xproxy.Direct)
			if err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{DialContext: d.(xproxy.ContextDialer).DialContext}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for range 2 {
				if got := getBody(t, client, "http://dev1:16992/hello?x=1"); got != wantGet {
					t.Fatalf("got %q, want %q", got, wantGet)
				}
			}
			if h := eng.lastHost(); h != "dev1" {
				t.Errorf("Dial host = %q, want dev1", h)
			}
		})
	}
}

func TestSOCKS5XNetProxyWrongPassword(t *testing.T) {
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial, Auth: checkAuth})
	d, err := xproxy.SOCKS5("tcp", addr, &xproxy.Auth{User: "console", Password: "nope"}, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := d.Dial("tcp", "dev1:16992"); err == nil {
		c.Close()
		t.Fatal("dial with wrong password succeeded")
	}
	// No credentials at all: no acceptable method.
	d, _ = xproxy.SOCKS5("tcp", addr, nil, xproxy.Direct)
	if c, err := d.Dial("tcp", "dev1:16992"); err == nil {
		c.Close()
		t.Fatal("dial without credentials succeeded")
	}
	if h := eng.lastHost(); h != "" {
		t.Errorf("engine dialed %q before auth", h)
	}
}

// socks5Raw performs a SOCKS5 handshake by hand and returns the reply code.
func socks5Raw(t *testing.T, c net.Conn, cmd, atyp byte, addr []byte, port uint16, user, pass string) byte {
	t.Helper()
	br := bufio.NewReader(c)
	method := byte(0)
	if user != "" {
		method = 2
	}
	c.Write([]byte{5, 1, method})
	var sel [2]byte
	if _, err := io.ReadFull(br, sel[:]); err != nil {
		t.Fatal(err)
	}
	if sel != [2]byte{5, method} {
		t.Fatalf("method selection %x", sel)
	}
	if user != "" {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		c.Write(msg)
		var st [2]byte
		if _, err := io.ReadFull(br, st[:]); err != nil {
			t.Fatal(err)
		}
		if st[1] != 0 {
			return 0xFF // auth failure marker for tests
		}
	}
	req := append([]byte{5, cmd, 0, atyp}, addr...)
	req = binary.BigEndian.AppendUint16(req, port)
	c.Write(req)
	var rep [10]byte
	if _, err := io.ReadFull(br, rep[:]); err != nil {
		t.Fatal(err)
	}
	if rep[0] != 5 || rep[3] != 1 {
		t.Fatalf("bad reply %x", rep)
	}
	return rep[1]
}

func domain(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func TestSOCKS5Raw(t *testing.T) {
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial})
	for _, tc := range []struct {
		name     string
		cmd      byte
		atyp     byte
		addr     []byte
		port     uint16
		wantRep  byte
		wantHost string
	}{
		{"domain", 1, 3, domain("DEV1.amt"), 16992, 0x00, "DEV1.amt"},
		{"ipv4", 1, 1, []byte{10, 0, 0, 1}, 16992, 0x04, "10.0.0.1"},
		{"ipv6", 1, 4, net.ParseIP("2001:db8::1").To16(), 16992, 0x04, "2001:db8::1"},
		{"unknown host", 1, 3, domain("nosuch"), 16992, 0x04, "nosuch"},
		{"port not allowed", 1, 3, domain("dev1"), 16993, 0x02, "dev1"},
		{"dial failed", 1, 3, domain("broken"), 16992, 0x01, "broken"},
		{"bind", 2, 3, domain("dev1"), 16992, 0x07, ""},
		{"udp associate", 3, 3, domain("dev1"), 16992, 0x07, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng.mu.Lock()
			eng.hosts = nil
			eng.mu.Unlock()
			c := dialProxy(t, addr)
			if rep := socks5Raw(t, c, tc.cmd, tc.atyp, tc.addr, tc.port, "", ""); rep != tc.wantRep {
				t.Fatalf("reply %#x, want %#x", rep, tc.wantRep)
			}
			if h := eng.lastHost(); h != tc.wantHost {
				t.Errorf("Dial host = %q, want %q", h, tc.wantHost)
			}
			if tc.wantRep == 0 {
				fmt.Fprintf(c, "GET /raw HTTP/1.1\r\nHost: dev1:16992\r\nConnection: close\r\n\r\n")
				b, _ := io.ReadAll(c)
				if !strings.Contains(string(b), "GET /raw host=dev1:16992") {
					t.Fatalf("relay got %q", b)
				}
			}
		})
	}
}

func TestSOCKS5AuthFailureCode(t *testing.T) {
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial, Auth: checkAuth})
	c := dialProxy(t, addr)
	if rep := socks5Raw(t, c, 1, 3, domain("dev1"), 16992, "console", "bad"); rep != 0xFF {
		t.Fatalf("auth accepted (reply %#x)", rep)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after auth failure")
	}
	c = dialProxy(t, addr)
	if rep := socks5Raw(t, c, 1, 3, domain("dev1"), 16992, "console", "s3cret"); rep != 0 {
		t.Fatalf("reply %#x with good credentials", rep)
	}
}

func socks4aRaw(t *testing.T, c net.Conn, host string, port uint16) byte {
	t.Helper()
	req := binary.BigEndian.AppendUint16([]byte{4, 1}, port)
	req = append(req, 0, 0, 0, 1)
	req = append(req, "user\x00"...)
	req = append(req, host+"\x00"...)
	c.Write(req)
	var rep [8]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatal(err)
	}
	return rep[1]
}

func TestSOCKS4a(t *testing.T) {
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial})
	c := dialProxy(t, addr)
	if rep := socks4aRaw(t, c, "dev1", 16992); rep != 0x5A {
		t.Fatalf("reply %#x, want 0x5a", rep)
	}
	fmt.Fprintf(c, "GET /s4 HTTP/1.1\r\nHost: dev1:16992\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !strings.Contains(string(b), "GET /s4 host=dev1:16992") {
		t.Fatalf("relay got %q", b)
	}
	for _, tc := range []struct {
		host string
		port uint16
	}{{"nosuch", 16992}, {"dev1", 16993}} {
		c := dialProxy(t, addr)
		if rep := socks4aRaw(t, c, tc.host, tc.port); rep != 0x5B {
			t.Fatalf("%s:%d reply %#x, want 0x5b", tc.host, tc.port, rep)
		}
	}

	// With Auth set, SOCKS4 (no password) is refused.
	_, addr = startProxy(t, Config{Dial: eng.dial, Auth: checkAuth})
	if rep := socks4aRaw(t, dialProxy(t, addr), "dev1", 16992); rep != 0x5B {
		t.Fatalf("reply %#x with auth required, want 0x5b", rep)
	}
}

func TestHTTPAbsoluteFormTransport(t *testing.T) {
	eng := newFakeEngine(t)
	for _, tc := range []struct {
		name     string
		auth     func(string, string) bool
		userinfo *url.Userinfo
		want     int
	}{
		{"noauth", nil, nil, 200},
		{"auth", checkAuth, url.UserPassword("console", "s3cret"), 200},
		{"wrong password", checkAuth, url.UserPassword("console", "nope"), 407},
		{"no credentials", checkAuth, nil, 407},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startProxy(t, Config{Dial: eng.dial, Auth: tc.auth})
			pu := &url.URL{Scheme: "http", Host: addr, User: tc.userinfo}
			tr := &http.Transport{Proxy: http.ProxyURL(pu)}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			resp, err := client.Post("http://dev1:16992/hello?x=1", "text/plain", strings.NewReader("ping"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want == 407 {
				if got := resp.Header.Get("Proxy-Authenticate"); !strings.HasPrefix(got, "Basic ") {
					t.Errorf("Proxy-Authenticate = %q", got)
				}
				return
			}
			if want := "POST /hello?x=1 host=dev1:16992 body=ping"; string(b) != want {
				t.Fatalf("got %q, want %q", b, want)
			}
			// A second request works (on a new client connection).
			if got := getBody(t, client, "http://dev1:16992/hello?x=1"); got != wantGet {
				t.Fatalf("got %q, want %q", got, wantGet)
			}
		})
	}
}

func TestHTTPRefusals(t *testing.T) {
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial})
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for _, tc := range []struct {
		target string
		code   int
		reason string
	}{
		{"dev1:16993", 403, "port not allowed: dev1:16993"},
		{"nosuch:16992", 404, "unknown host: nosuch"},
		{"broken:16992", 502, "dial broken:16992 failed: tunnel gone"},
		{"busy:16992", 503, "device busy, no channel free: busy:16992"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			// Absolute form.
			resp, err := client.Get("http://" + tc.target + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || strings.TrimSpace(string(b)) != tc.reason {
				t.Fatalf("absolute-form: %d %q, want %d %q", resp.StatusCode, b, tc.code, tc.reason)
			}
			// CONNECT.
			c := dialProxy(t, addr)
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.target, tc.target)
			resp, err = http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || strings.TrimSpace(string(b)) != tc.reason {
				t.Fatalf("CONNECT: %d %q, want %d %q", resp.StatusCode, b, tc.code, tc.reason)
			}
		})
	}
}

func TestHTTPConnect(t *testing.T) {
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial, Auth: checkAuth})

	c := dialProxy(t, addr)
	fmt.Fprintf(c, "CONNECT dev1:16992 HTTP/1.1\r\nHost: dev1:16992\r\nProxy-Authorization: Basic Y29uc29sZTpzM2NyZXQ=\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	// Two requests over the tunnel: it is a raw relay, keep-alive works.
	for _, path := range []string{"/one", "/two"} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: dev1:16992\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := "GET " + path + " host=dev1:16992 body="; string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}

	// Wrong credentials: 407 with a challenge.
	c = dialProxy(t, addr)
	fmt.Fprintf(c, "CONNECT dev1:16992 HTTP/1.1\r\nHost: dev1:16992\r\nProxy-Authorization: Basic Y29uc29sZTpub3Bl\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") == "" {
		t.Fatalf("status %d, Proxy-Authenticate %q", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
}

func TestHandshakeDeadline(t *testing.T) {
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial, HandshakeTimeout: 50 * time.Millisecond})
	for _, partial := range []string{"", "\x05", "\x05\x01\x00\x05\x01", "GET http://dev1:16992/ HTTP/1.1\r\n", "\x04\x01"} {
		c := dialProxy(t, addr)
		io.WriteString(c, partial)
		start := time.Now()
		b, err := io.ReadAll(c) // the server closes the connection at the deadline
		if err != nil {
			t.Fatalf("%q: read: %v (client-side deadline hit?)", partial, err)
		}
		if strings.HasPrefix(partial, "GET") && !strings.HasPrefix(string(b), "HTTP/1.1 408 ") {
			t.Fatalf("%q: got %q before close, want a 408", partial, b)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%q: closed after %v", partial, d)
		}
	}
}

func TestHeaderCap(t *testing.T) {
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial})
	c := dialProxy(t, addr)
	go func() {
		fmt.Fprintf(c, "GET http://dev1:16992/ HTTP/1.1\r\nHost: dev1:16992\r\n")
		big := "X-Big: " + strings.Repeat("a", 1000) + "\r\n"
		for range 100 {
			if _, err := io.WriteString(c, big); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge && resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 431 or 400", resp.StatusCode)
	}
	if h := eng.lastHost(); h != "" {
		t.Fatalf("engine dialed %q", h)
	}
}

func TestCloseEndsTunnels(t *testing.T) {
	eng := newFakeEngine(t)
	s, addr, done := serveUnmanaged(t, Config{Dial: eng.dial})

	c := dialProxy(t, addr)
	fmt.Fprintf(c, "CONNECT dev1:16992 HTTP/1.1\r\nHost: dev1:16992\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	idle := dialProxy(t, addr) // mid-handshake client

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve = %v", err)
	}
	for _, cc := range []io.Reader{br, idle} {
		if _, err := io.ReadAll(cc); err != nil {
			t.Fatalf("read after Close: %v", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after Close = %v", err)
	}
}

func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	eng := newFakeEngine(t)
	_, addr := startProxy(t, Config{Dial: eng.dial, Auth: checkAuth})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"absolute-form", []string{"--proxy", "http://" + addr, "--proxy-user", "console:s3cret"}, "GET /c?q=1 host=dev1:16992 body="},
		{"proxytunnel", []string{"-p", "--proxy", "http://" + addr, "--proxy-user", "console:s3cret"}, "GET /c?q=1 host=dev1:16992 body="},
		{"socks5-hostname", []string{"--socks5-hostname", addr, "--proxy-user", "console:s3cret"}, "GET /c?q=1 host=dev1:16992 body="},
		{"expect-100", []string{"--proxy", "http://" + addr, "--proxy-user", "console:s3cret", "-H", "Expect: 100-continue", "--data-binary", "hello"}, "POST /c?q=1 host=dev1:16992 body=hello"},
		{"wrong password", []string{"--proxy", "http://" + addr, "--proxy-user", "console:nope", "-o", "/dev/null", "-w", "%{http_code}"}, "407"},
		{"unknown host", []string{"--proxy", "http://" + addr, "--proxy-user", "console:s3cret", "-o", "/dev/null", "-w", "%{http_code}"}, "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "http://dev1:16992/c?q=1"
			if tc.name == "unknown host" {
				target = "http://nosuch:16992/"
			}
			args := append([]string{"-sS", "--max-time", "10", "--noproxy", ""}, tc.args...)
			cmd := exec.Command(curl, append(args, target)...)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			if string(out) != tc.want {
				t.Fatalf("curl output %q, want %q", out, tc.want)
			}
		})
	}
}
