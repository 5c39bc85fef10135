package wsman_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/wsman"
)

// devices starts n simulated devices at once and waits for all tunnels.
func (e *env) devices(n int) []string {
	e.t.Helper()
	names := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // handshakes at once, as the server allows
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			d, _ := e.device(i, func(c *amtsim.Config) { c.MaxChannels = 4 })
			names[i] = d.UUID().String()
		})
	}
	wg.Wait()
	return names
}

// pollAll asks every device for its power state at once (one call per
// device) and returns how long until all answered.
func pollAll(b *testing.B, c *wsman.Client, names []string) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range names {
		wg.Go(func() {
			if _, err := c.PowerState(ctx, n); err != nil {
				errs <- fmt.Errorf("%s: %w", n, err)
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return d
}

// BenchmarkPowerState1000 polls the power state of 1,000 simulated devices
// through one Client and real tunnels (CIM_ServiceAvailableToElement
// Enumerate and Pull, at most one call in flight per device, at most
// DefaultMaxDevices devices at once). An op is one round over all 1,000;
// "cold-s" is the first round, which also opens each device's channel and
// takes its digest challenge. Target: under 5 s a round.
func BenchmarkPowerState1000(b *testing.B) {
	e := newEnv(b)
	names := e.devices(1000)
	c := e.client(amtPass, nil)
	if _, err := c.PowerState(context.Background(), names[0]); err != nil {
		skipUntilSimulated(b, err)
		b.Fatal(err)
	}
	cold := pollAll(b, c, names[1:])
	b.ResetTimer()
	for b.Loop() {
		pollAll(b, c, names)
	}
	b.ReportMetric(cold.Seconds(), "cold-s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/round")
}

// BenchmarkEventLog390 reads and decodes a simulated device's full event
// log, 390 records (AMT_MessageLog GetRecords, MaxReadRecords 390), over a
// real tunnel. Target: under 1 s.
func BenchmarkEventLog390(b *testing.B) {
	e := newEnv(b)
	d, _ := e.device(0, func(c *amtsim.Config) { c.AMT = &amtsim.AMTConfig{EventLogRecords: 390} })
	dev := d.UUID().String()
	c := e.client(amtPass, nil)
	if _, err := c.GeneralSettings(context.Background(), dev); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		ev, err := c.EventLog(context.Background(), dev)
		if err != nil {
			skipUntilSimulated(b, err)
			b.Fatal(err)
		}
		if len(ev) != 390 {
			b.Fatalf("%d events; want 390", len(ev))
		}
	}
}
