package wsman

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkPowerState1000Fake is BenchmarkPowerState1000 against the test
// server over loopback TCP (one connection per device name): the client's
// own cost, without tunnels or the simulator.
func BenchmarkPowerState1000Fake(b *testing.B) {
	f := newFakeDevice(b)
	c := testClient(b, f, nil)
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("dev-%04d", i)
	}
	round := func() time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		for _, n := range names {
			wg.Go(func() {
				if _, err := c.PowerState(context.Background(), n); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	cold := round()
	b.ResetTimer()
	for b.Loop() {
		round()
	}
	b.ReportMetric(cold.Seconds(), "cold-s")
}

// BenchmarkEventLog390Fake reads and decodes an event log of 390 records
// (one GetRecords) from the test server. Target: under 1 s.
func BenchmarkEventLog390Fake(b *testing.B) {
	f := newFakeDevice(b)
	var events [][]byte
	for i := range 390 {
		r := make([]byte, 21)
		r[0], r[1], r[3], r[5], r[7], r[14] = byte(i), byte(i>>8), 0x69, 15, 2, byte(i%26)
		events = append(events, r)
	}
	f.set(func(f *fakeDevice) { f.events = events })
	c := testClient(b, f, nil)
	for b.Loop() {
		ev, err := c.EventLog(context.Background(), "dev")
		if err != nil || len(ev) != 390 {
			b.Fatalf("EventLog = %d events, %v", len(ev), err)
		}
	}
}
