//go:build unix

package instance_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/api"
)

// raiseOpenFiles raises the soft limit on open files to the hard limit
// (the Go runtime does so at startup on Unix; this makes the need
// explicit) and returns it.
func raiseOpenFiles() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			rl = want
		}
	}
	return uint64(rl.Cur)
}

// BenchmarkAPIPowerState1000 asks the API for the power state of 1,000
// simulated devices at once (GET /api/v1/amt/power/state/{guid}, 64
// requests in flight over kept-alive HTTP connections, each answered by a
// WS-Man call over the device's real TLS tunnel). An op is one round over
// all 1,000; "s/round" is its wall time, "cold-s" the first round's (which
// opens each device's channel and takes its digest challenge), p50-ms and
// p99-ms the latency of one request. "max-inflight/device" is the most
// WS-Man calls of one device ever in flight together, read from the
// devices' own record of the requests they answered: a call is the
// power state's Enumerate and Pull and the OS power state's Get, and a
// second call of a device starting before the first ended would
// interleave them. Target: every round within 5 s, at most one call in
// flight per device.
//
//	unshare -n sh -c 'ip link set lo up && GOPROXY=off PRESENCE_NETNS=1 go test -run XXX -bench APIPowerState1000 -benchtime 3x ./internal/instance/'
func BenchmarkAPIPowerState1000(b *testing.B) {
	const (
		devices     = 1000
		concurrency = 64
	)
	if lim := raiseOpenFiles(); lim > 0 && lim < 3*devices+256 {
		b.Skipf("%d devices and their tunnels need about %d open files; this process may open %d", devices, 3*devices+256, lim)
	}
	in, ca := instancetest.Start(b, nil)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	fl, err := amtsim.NewFleet(amtsim.FleetConfig{
		Device: amtsim.Config{
			User: instancetest.CIRAUser, Password: []byte(instancetest.CIRAPass), MPSAddr: in.CIRAAddr.String(), RootCAs: roots,
			MaxVersion: tls.VersionTLS12, AMTUser: instancetest.AMTUser, AMTPassword: []byte(instancetest.AMTPass),
		},
		Devices: devices, Seed: b.Name(), MaxHandshakes: 64, RetryMin: 100 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); fl.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(2 * time.Minute); in.Server.Stats().Tunnels < devices; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d devices connected", in.Server.Stats().Tunnels, devices)
		}
	}
	devs := fl.Devices()
	guids := make([]string, len(devs))
	for i, d := range devs {
		guids[i] = d.UUID().String()
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}}
	defer client.CloseIdleConnections()
	base, token := "http://"+in.APIAddr.String(), in.Token()

	var lat []time.Duration
	round := func() time.Duration {
		start := time.Now()
		work := make(chan string)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
			ls   = make([]time.Duration, 0, len(guids))
		)
		for range concurrency {
			wg.Go(func() {
				for g := range work {
					t0 := time.Now()
					err := getPowerState(client, base, token, g)
					d := time.Since(t0)
					mu.Lock()
					ls = append(ls, d)
					if err != nil && len(errs) < 5 {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			})
		}
		for _, g := range guids {
			work <- g
		}
		close(work)
		wg.Wait()
		elapsed := time.Since(start)
		if len(errs) > 0 {
			b.Fatalf("power state: %v", errs)
		}
		lat = append(lat, ls...)
		return elapsed
	}
	cold := round()
	lat = lat[:0]
	b.ResetTimer()
	var worst time.Duration
	for b.Loop() {
		worst = max(worst, round())
	}
	b.StopTimer()
	rounds := b.N + 1
	inflight, calls := 0, 0
	for _, d := range devs {
		n, c := maxInFlight(d.Calls())
		inflight = max(inflight, n)
		calls += c
	}
	if calls != rounds*devices {
		b.Errorf("the devices answered %d power state calls; want %d (%d rounds of %d)", calls, rounds*devices, rounds, devices)
	}
	slices.Sort(lat)
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/round")
	b.ReportMetric(worst.Seconds(), "worst-s")
	b.ReportMetric(cold.Seconds(), "cold-s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1e3, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1e3, "p99-ms")
	b.ReportMetric(float64(inflight), "max-inflight/device")
	if worst > 5*time.Second || inflight > 1 {
		b.Logf("target missed: the slowest round took %v (target 5 s), up to %d calls in flight on one device (target 1)", worst, inflight)
	}
}

// getPowerState asks the API for one device's power state.
func getPowerState(c *http.Client, base, token, guid string) error {
	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/amt/power/state/"+guid, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var ps api.AMTPowerState
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &ps) != nil || ps.PowerState != 2 {
		return fmt.Errorf("%s: HTTP %d %s", guid, resp.StatusCode, b)
	}
	return nil
}

// maxInFlight reads a device's record of calls: a power state call is
// Enumerate and Pull of CIM_ServiceAvailableToElement, then Get of
// IPS_PowerManagementService. It returns the most calls in flight at once
// (a call that starts before the previous one ended interleaves with it)
// and how many calls there were.
func maxInFlight(calls []amtsim.Call) (most, n int) {
	open := 0
	for _, c := range calls {
		switch {
		case c.Action == "Enumerate" && c.Class == "CIM_ServiceAvailableToElement":
			open++
			n++
			most = max(most, open)
		case c.Action == "Get" && c.Class == "IPS_PowerManagementService":
			open--
		}
	}
	return most, n
}
