package instance_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/testutil"
	"github.com/presence-mps/presence/mps/amtsim"
)

// Benchmarks of console access: what the proxy adds to a WS-Man request
// over a direct channel, the bytes per second of one proxied channel, and
// many sessions at once. Run with:
//
//	go test -run '^$' -bench . -benchtime 2000x ./internal/instance/

// reportPercentiles records p50 and p99 of the durations in microseconds.
func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkWSManRequest sends WS-Man Gets (HTTP digest: the challenge and
// the authorized request, over a fresh connection each time) to a device:
// through a channel dialled by the engine directly, and through the proxy
// with SOCKS5 and with HTTP CONNECT. The difference between "direct" and
// the others is the latency the proxy adds.
func BenchmarkWSManRequest(b *testing.B) {
	e := newEnv(b, envOptions{devices: 1})
	guid := e.guid(0)
	socks, err := xproxy.SOCKS5("tcp", e.proxyAddr(), &xproxy.Auth{User: consoleUser, Password: consolePass}, xproxy.Direct)
	if err != nil {
		b.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(consoleUser + ":" + consolePass))
	for _, tc := range []struct {
		name string
		dial func(ctx context.Context) (net.Conn, error)
	}{
		{"direct", func(ctx context.Context) (net.Conn, error) { return e.in.Server.Dial(ctx, guid, 16992) }},
		{"socks5", func(ctx context.Context) (net.Conn, error) {
			return socks.(xproxy.ContextDialer).DialContext(ctx, "tcp", guid+":16992")
		}},
		{"http-connect", func(ctx context.Context) (net.Conn, error) {
			c, err := net.Dial("tcp", e.proxyAddr())
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(c, "CONNECT %s:16992 HTTP/1.1\r\nHost: %s:16992\r\nProxy-Authorization: Basic %s\r\n\r\n", guid, guid, auth)
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil || len(line) < 12 || line[9:12] != "200" {
				c.Close()
				return nil, fmt.Errorf("CONNECT: %q %v", line, err)
			}
			for line != "\r\n" && err == nil {
				line, err = br.ReadString('\n')
			}
			return c, err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				res, err := amtsim.WSManGet(ctx, tc.dial, amtUser, amtPass, amtsim.ResourceGeneralSettings)
				if err != nil || res.Status != 200 {
					b.Fatalf("%v %+v", err, res)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkEchoRoundTrip is the smallest request: 64 bytes to the device's
// echo port and back, on a connection kept open, directly and through the
// SOCKS5 proxy.
func BenchmarkEchoRoundTrip(b *testing.B) {
	e := newEnv(b, envOptions{devices: 1})
	for _, via := range []string{"direct", "socks5"} {
		b.Run(via, func(b *testing.B) {
			c := echoConn(b, e, via, 0)
			defer c.Close()
			msg := make([]byte, 64)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, msg); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

// echoConn opens a connection to device i's echo port, directly or through
// the SOCKS5 proxy.
func echoConn(b testing.TB, e *env, via string, i int) net.Conn {
	b.Helper()
	var c net.Conn
	var err error
	if via == "direct" {
		c, err = e.in.Server.Dial(context.Background(), e.guid(i), 7)
	} else {
		var d xproxy.Dialer
		d, err = xproxy.SOCKS5("tcp", e.proxyAddr(), &xproxy.Auth{User: consoleUser, Password: consolePass}, xproxy.Direct)
		if err == nil {
			c, err = d.Dial("tcp", e.guid(i)+":7")
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkProxyThroughput measures bytes per second through one channel,
// the console writing and the device echoing (each byte crosses the tunnel
// twice; SetBytes counts it once): directly, and through the SOCKS5 proxy.
func BenchmarkProxyThroughput(b *testing.B) {
	e := newEnv(b, envOptions{devices: 1, device: func(_ int, c *amtsim.Config) { c.Window = amtsim.MaxWindow }})
	for _, via := range []string{"direct", "socks5"} {
		b.Run(via, func(b *testing.B) {
			c := echoConn(b, e, via, 0)
			defer c.Close()
			testutil.EchoThroughput(b, c, 64<<10)
		})
	}
}

// BenchmarkConcurrentSessions holds 1,000 SOCKS5 sessions spread over 100
// devices (10 each), then has every session do echo round trips at once. It
// reports the time to open all sessions, the round-trip percentiles under
// that load, and the heap per open session.
func BenchmarkConcurrentSessions(b *testing.B) {
	const devices, perDevice = 100, 10
	e := newEnv(b, envOptions{devices: devices, cfg: func(c *instance.Config) { c.MaxTunnels = 1000 }})
	d, err := xproxy.SOCKS5("tcp", e.proxyAddr(), &xproxy.Auth{User: consoleUser, Password: consolePass}, xproxy.Direct)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		conns := make([]net.Conn, devices*perDevice)
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(conns))
		for i := range conns {
			wg.Go(func() {
				c, err := d.Dial("tcp", e.guid(i%devices)+":7")
				if err != nil {
					errs <- err
					return
				}
				c.SetDeadline(time.Now().Add(time.Minute))
				conns[i] = c
			})
		}
		wg.Wait()
		open := time.Since(t0)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		// A session is recorded just after the SOCKS reply is sent.
		e.waitFor("all sessions recorded", func() bool { return e.in.Sessions().Stats().Active == len(conns) })
		runtime.GC()
		var held runtime.MemStats
		runtime.ReadMemStats(&held)

		const rounds = 20
		lat := make([][]time.Duration, len(conns))
		for i, c := range conns {
			wg.Go(func() {
				msg := make([]byte, 512)
				for range rounds {
					t := time.Now()
					if _, err := c.Write(msg); err != nil {
						b.Error(err)
						return
					}
					if _, err := io.ReadFull(c, msg); err != nil {
						b.Error(err)
						return
					}
					lat[i] = append(lat[i], time.Since(t))
				}
			})
		}
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
		all := slices.Concat(lat...)
		b.ReportMetric(open.Seconds()*1e3, "open-all-ms")
		b.ReportMetric(float64(int64(held.HeapInuse)-int64(before.HeapInuse))/float64(len(conns))/1024, "heap-KiB/session")
		reportPercentiles(b, all)
		e.waitFor("sessions ended", func() bool { return e.in.Sessions().Stats().Active == 0 })
	}
}
