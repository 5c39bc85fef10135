package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"
)

// awaitEvent waits (bounded) for a session event matching ok.
func awaitEvent(t *testing.T, evs <-chan SessionEvent, ok func(SessionEvent) bool) SessionEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-evs:
			if ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("timed out waiting for a session event")
		}
	}
}

func ended(ev SessionEvent) bool { return ev.Ended }

func proxyClient(addr, user, pass string) *http.Client {
	pu := &url.URL{Scheme: "http", Host: addr}
	if user != "" {
		pu.User = url.UserPassword(user, pass)
	}
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 10 * time.Second}
}

// Consecutive requests from one client connection reuse one device channel
// and make one session, which ends when the client goes away.
func TestHTTPKeepAliveOneSession(t *testing.T) {
	eng := newFakeEngine(t)
	s, addr := startProxy(t, Config{Dial: eng.dial, Auth: checkAuth})
	evs, cancel := s.Sessions().Subscribe(64)
	defer cancel()
	client := proxyClient(addr, "console", "s3cret")
	for range 5 {
		if got := getBody(t, client, "http://dev1:16992/hello?x=1"); got != wantGet {
			t.Fatalf("body %q", got)
		}
	}
	if n := eng.dials(); n != 1 {
		t.Fatalf("%d device dials for 5 keep-alive requests, want 1", n)
	}
	live := s.Sessions().List()
	if len(live) != 1 || live[0].Kind != KindHTTP || live[0].User != "console" || live[0].Device != "uuid-dev1" ||
		live[0].Host != "dev1" || live[0].Port != 16992 || live[0].BytesFromDevice == 0 {
		t.Fatalf("live sessions %+v", live)
	}
	client.CloseIdleConnections()
	ev := awaitEvent(t, evs, ended)
	if ev.Session.EndReason != EndConsole || ev.Session.BytesToDevice == 0 || ev.Session.BytesFromDevice == 0 || ev.Session.End.Before(ev.Session.Start) {
		t.Fatalf("ended session %+v", ev.Session)
	}
}

// A device that closes an idle keep-alive channel costs the client nothing:
// the request is sent again on a new channel.
func TestHTTPKeepAliveDeviceClosedIdle(t *testing.T) {
	eng := newFakeEngine(t)
	// A device HTTP server that closes idle connections quickly.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{IdleTimeout: 20 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	eng.addr = ln.Addr().String()
	_, addr := startProxy(t, Config{Dial: eng.dial})
	client := proxyClient(addr, "", "")
	for i := range 3 {
		if got := getBody(t, client, "http://dev1:16992/"); got != "ok" {
			t.Fatalf("request %d: body %q", i, got)
		}
		time.Sleep(100 * time.Millisecond) // longer than the device's idle timeout
	}
	if n := eng.dials(); n != 3 {
		t.Fatalf("%d device dials, want 3 (one per request after each idle close)", n)
	}
}

func dialSOCKS5(t *testing.T, addr, user, pass, target string) net.Conn {
	t.Helper()
	var auth *xproxy.Auth
	if user != "" {
		auth = &xproxy.Auth{User: user, Password: pass}
	}
	d, err := xproxy.SOCKS5("tcp", addr, auth, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q, %v", buf, err)
	}
}

// A SOCKS5 session is listed live with its byte counts and can be killed.
func TestSessionKill(t *testing.T) {
	eng := newFakeEngine(t)
	s, addr := startProxy(t, Config{Dial: eng.dial, Auth: checkAuth})
	evs, cancel := s.Sessions().Subscribe(64)
	defer cancel()
	c := dialSOCKS5(t, addr, "console", "s3cret", "dev1:16994")
	echoOnce(t, c, "ping")
	start := awaitEvent(t, evs, func(ev SessionEvent) bool { return !ev.Ended })
	// The count follows the write's return, which may come after the echo.
	waitFor(t, func() bool { got, _ := s.Sessions().Get(start.Session.ID); return got.BytesToDevice == 4 })
	got, ok := s.Sessions().Get(start.Session.ID)
	if !ok || got.Kind != KindSOCKS5 || got.User != "console" || got.Device != "uuid-dev1" || got.Port != 16994 ||
		got.BytesToDevice != 4 || got.BytesFromDevice != 4 || !strings.HasPrefix(got.Console, "127.0.0.1:") {
		t.Fatalf("live session %+v (found %v)", got, ok)
	}
	if !s.Sessions().Kill(got.ID) {
		t.Fatal("Kill found no session")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("console connection still open after Kill")
	}
	ev := awaitEvent(t, evs, ended)
	if ev.Session.ID != got.ID || ev.Session.EndReason != EndKilled {
		t.Fatalf("ended %+v", ev.Session)
	}
	if s.Sessions().Kill(got.ID) {
		t.Fatal("Kill of an ended session reported true")
	}
	if st := s.Sessions().Stats(); st.Active != 0 || st.Total != 1 || st.Ended[EndKilled] != 1 || st.BytesToDevice != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// Close ends live sessions as "shutdown".
func TestCloseEndsSessionsAsShutdown(t *testing.T) {
	eng := newFakeEngine(t)
	s, addr, _ := serveUnmanaged(t, Config{Dial: eng.dial})
	evs, cancel := s.Sessions().Subscribe(64)
	defer cancel()
	c := dialSOCKS5(t, addr, "", "", "dev1:16994")
	echoOnce(t, c, "x")
	s.Close()
	ev := awaitEvent(t, evs, ended)
	if ev.Session.EndReason != EndShutdown {
		t.Fatalf("end reason %q, want %q", ev.Session.EndReason, EndShutdown)
	}
}

// handleFrom serves one console connection, seen as coming from ip, over
// a pipe; done closes when the handler returns.
func handleFrom(s *Server, ip net.IP) (client net.Conn, done <-chan struct{}) {
	client, server := net.Pipe()
	d := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer close(d)
		defer s.wg.Done()
		defer server.Close()
		s.handle(fakeRemote{server, &net.TCPAddr{IP: ip, Port: 40000}})
	}()
	return client, d
}

// fakeRemote makes a connection look as if it came from addr.
type fakeRemote struct {
	net.Conn
	addr net.Addr
}

func (f fakeRemote) RemoteAddr() net.Addr { return f.addr }

// With AllowLoopbackNoAuth, loopback consoles need no login and others do.
func TestLoopbackNoAuth(t *testing.T) {
	eng := newFakeEngine(t)
	s, addr := startProxy(t, Config{Dial: eng.dial, Auth: checkAuth, AllowLoopbackNoAuth: true})
	if got := getBody(t, proxyClient(addr, "", ""), "http://dev1:16992/hello?x=1"); got != wantGet {
		t.Fatalf("loopback without login: %q", got)
	}
	c := dialSOCKS5(t, addr, "", "", "dev1:16994")
	echoOnce(t, c, "hi")
	if rep := socks4aRaw(t, dialProxy(t, addr), "dev1", 16992); rep != 0x5A {
		t.Fatalf("socks4a from loopback: reply %#x", rep)
	}

	// The same server, a console from another network: it must log in.
	for _, tc := range []struct {
		name string
		send string
		want string
	}{
		{"http", "GET http://dev1:16992/ HTTP/1.1\r\nHost: dev1:16992\r\n\r\n", "HTTP/1.1 407 "},
		{"socks5", "\x05\x01\x00", "\x05\xff"},
		{"socks4a", "\x04\x01\x42\x60\x00\x00\x00\x01\x00dev1\x00", "\x00\x5b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, done := handleFrom(s, net.IPv4(192, 0, 2, 7))
			defer client.Close()
			client.SetDeadline(time.Now().Add(5 * time.Second))
			go io.WriteString(client, tc.send)
			buf := make([]byte, len(tc.want))
			if _, err := io.ReadFull(client, buf); err != nil || string(buf) != tc.want {
				t.Fatalf("reply %q (%v), want %q", buf, err, tc.want)
			}
			client.Close()
			<-done
		})
	}
}

// Failed logins are limited per source address: after the limit even the
// right password is refused, with 429 and Retry-After, until the window
// passes.
func TestAuthRateLimit(t *testing.T) {
	eng := newFakeEngine(t)
	s, addr := startProxy(t, Config{Dial: eng.dial, Auth: checkAuth, MaxAuthFailures: 3, AuthWindow: time.Minute})
	now := time.Now()
	s.limiter.Now = func() time.Time { return now }
	get := func(user, pass string) *http.Response {
		t.Helper()
		resp, err := proxyClient(addr, user, pass).Get("http://dev1:16992/hello?x=1")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i := range 3 {
		if resp := get("console", fmt.Sprint("wrong", i)); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("attempt %d: %s", i, resp.Status)
		}
	}
	resp := get("console", "s3cret")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "60" {
		t.Fatalf("after 3 failures: %s, Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
	}
	// SOCKS5 from the same address is blocked too.
	d, _ := xproxy.SOCKS5("tcp", addr, &xproxy.Auth{User: "console", Password: "s3cret"}, xproxy.Direct)
	if c, err := d.Dial("tcp", "dev1:16994"); err == nil {
		c.Close()
		t.Fatal("socks5 login accepted while blocked")
	}
	if st := s.Stats(); st.AuthFailures != 3 {
		t.Fatalf("AuthFailures = %d, want 3 (blocked attempts are not checked)", st.AuthFailures)
	}
	now = now.Add(61 * time.Second)
	if resp := get("console", "s3cret"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the window: %s", resp.Status)
	}
}

// Over MaxConns, new console connections are closed at once.
func TestMaxConns(t *testing.T) {
	eng := newFakeEngine(t)
	s, addr := startProxy(t, Config{Dial: eng.dial, MaxConns: 2})
	a, b := dialProxy(t, addr), dialProxy(t, addr)
	waitFor(t, func() bool { return s.Stats().Conns == 2 })
	c := dialProxy(t, addr)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection was served")
	}
	a.Close()
	b.Close()
	waitFor(t, func() bool { return s.Stats().Conns == 0 })
	if got := getBody(t, proxyClient(addr, "", ""), "http://dev1:16992/hello?x=1"); got != wantGet {
		t.Fatalf("after the others left: %q", got)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A port mapping relays each connection over a new device channel, records
// sessions, and frees its port when its device goes.
func TestMapping(t *testing.T) {
	eng := newFakeEngine(t)
	s, _ := startProxy(t, Config{Dial: eng.dial})
	m, err := s.Map(MapConfig{Device: "dev1", Port: 16994, User: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Listen, "127.0.0.1:") {
		t.Fatalf("mapping listens on %s, want loopback", m.Listen)
	}
	c1 := dialProxy(t, m.Listen)
	c2 := dialProxy(t, m.Listen)
	echoOnce(t, c1, "one")
	echoOnce(t, c2, "two")
	ms := s.Mappings()
	if len(ms) != 1 || ms[0].Active != 2 || ms[0].Connections != 2 || ms[0].Device != "dev1" {
		t.Fatalf("mappings %+v", ms)
	}
	live := s.Sessions().List()
	if len(live) != 2 || live[0].Kind != KindMapping || live[0].User != "admin" || live[0].Device != "uuid-dev1" {
		t.Fatalf("sessions %+v", live)
	}
	if n := s.UnmapDevice("dev1"); n != 1 {
		t.Fatalf("UnmapDevice closed %d mappings", n)
	}
	if _, err := c1.Read(make([]byte, 1)); err == nil {
		t.Fatal("mapped connection survived its device")
	}
	waitFor(t, func() bool { return len(s.Mappings()) == 0 })
	// The port is free again.
	ln, err := net.Listen("tcp", m.Listen)
	if err != nil {
		t.Fatalf("port not freed: %v", err)
	}
	ln.Close()
	if err := s.Unmap(m.ID); !errors.Is(err, ErrMappingNotFound) {
		t.Fatalf("Unmap of a closed mapping: %v", err)
	}
}

func TestMappingIdleAndGoneDevice(t *testing.T) {
	eng := newFakeEngine(t)
	s, _ := startProxy(t, Config{Dial: eng.dial})
	idle, err := s.Map(MapConfig{Device: "dev1", Port: 16994, IdleTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.Map(MapConfig{Device: "nosuch", Port: 16994, IdleTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Map(MapConfig{Device: "dev1", Port: 16994, Listen: gone.Listen}); err == nil {
		t.Fatal("a second mapping on a busy port succeeded")
	}
	c := dialProxy(t, gone.Listen)
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection to a mapping of an unknown device was served")
	}
	waitFor(t, func() bool { return len(s.Mappings()) == 0 })
	_ = idle
}

// Unmap by id closes live connections and frees the port before returning.
func TestUnmap(t *testing.T) {
	eng := newFakeEngine(t)
	s, _ := startProxy(t, Config{Dial: eng.dial})
	m, err := s.Map(MapConfig{Device: "dev1", Port: 16992})
	if err != nil {
		t.Fatal(err)
	}
	c := dialProxy(t, m.Listen)
	fmt.Fprintf(c, "GET /m HTTP/1.1\r\nHost: dev1:16992\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := s.Unmap(m.ID); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", m.Listen)
	if err != nil {
		t.Fatalf("port not free after Unmap: %v", err)
	}
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for len(s.Sessions().List()) != 0 {
		if ctx.Err() != nil {
			t.Fatal("mapping session outlived Unmap")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
