package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	xproxy "golang.org/x/net/proxy"
)

// consoles is the console side of the sessions load run: it opens
// --sessions SOCKS5 sessions through the proxy to the echo port of
// simulated devices sim-000000 … (spread evenly over --devices), writes
// --ready once all are open, holds them for --hold (the script reads the
// server's RSS meanwhile), then has every session do --rounds echoes of
// --size bytes at once, and prints a JSON summary. The console password is
// read from stdin.
func consoles(args []string) error {
	fs := flag.NewFlagSet("consoles", flag.ContinueOnError)
	proxyAddr := fs.String("proxy", "127.0.0.1:1080", "the Presence proxy")
	user := fs.String("user", "", "console account (password on stdin)")
	devices := fs.Int("devices", 100, "devices sim-000000 … to spread the sessions over")
	sessions := fs.Int("sessions", 1000, "sessions to hold")
	port := fs.Int("port", 7, "device port (the simulators' --echo-port)")
	rounds := fs.Int("rounds", 20, "echo round trips per session once all are open")
	size := fs.Int("size", 512, "bytes per echo")
	hold := fs.Duration("hold", 10*time.Second, "how long to hold every session open before the echoes")
	ready := fs.String("ready", "", "file to create once every session is open")
	parallel := fs.Int("parallel", 64, "sessions opened at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *devices < 1 || *sessions < 1 || *parallel < 1 || *rounds < 0 || *size < 1 || *size > 1<<20 {
		return errors.New("consoles: --devices, --sessions, --parallel and --size must be positive")
	}
	line, err := bufio.NewReader(io.LimitReader(os.Stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	pass := strings.TrimRight(line, "\r\n")
	d, err := xproxy.SOCKS5("tcp", *proxyAddr, &xproxy.Auth{User: *user, Password: pass}, xproxy.Direct)
	if err != nil {
		return err
	}

	conns := make([]net.Conn, *sessions)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := d.Dial("tcp", fmt.Sprintf("sim-%06d:%d", i%*devices, *port))
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	openSecs := time.Since(t0).Seconds()
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("ready\n"), 0o600); err != nil {
			return err
		}
	}
	time.Sleep(*hold)

	lat := make([][]time.Duration, len(conns))
	var echoFailed atomic.Int64
	t1 := time.Now()
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			msg := make([]byte, *size)
			for range *rounds {
				t := time.Now()
				if _, err := c.Write(msg); err != nil {
					echoFailed.Add(1)
					return
				}
				if _, err := io.ReadFull(c, msg); err != nil {
					echoFailed.Add(1)
					return
				}
				lat[i] = append(lat[i], time.Since(t))
			}
		})
	}
	wg.Wait()
	echoSecs := time.Since(t1).Seconds()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p int) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, len(all)*p/100)].Microseconds()) / 1e3
	}
	out := map[string]any{
		"sessions": *sessions, "opened": int64(*sessions) - failed.Load(), "open_failed": failed.Load(),
		"open_seconds": openSecs, "echoes": len(all), "echo_failed": echoFailed.Load(), "echo_seconds": echoSecs,
		"echo_ms": map[string]float64{"p50": pct(50), "p99": pct(99), "max": pct(100)},
	}
	if e := firstErr.Load(); e != nil {
		out["first_error"] = e
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
