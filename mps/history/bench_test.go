package history

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkStorm measures committed events per second while many
// goroutines (devices' tunnels) add events at once. A producer that finds
// the queue full yields and retries, so every event is committed and the
// figure is the writer's sustained rate, Flush included.
func BenchmarkStorm(b *testing.B) {
	s := newStore(b, Options{})
	start := time.Now()
	b.SetParallelism(16) // 16 × GOMAXPROCS producers
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(10_000)
		for pb.Next() {
			e := ev(guid(i%10_000), KindUp, time.Now())
			for !s.Add(e) {
				runtime.Gosched()
			}
			i++
		}
	})
	flush(b, s)
	elapsed := time.Since(start)
	st := s.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(st.Committed)/float64(max(st.Batches, 1)), "events/batch")
}

// BenchmarkReconnectBurst is 10,000 devices reconnecting at once: each
// adds a down and an up from its own goroutine. Nothing may be dropped with
// the default queue; the figure is the time until all are committed.
func BenchmarkReconnectBurst(b *testing.B) {
	const devices = 10_000
	s := newStore(b, Options{})
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for d := range devices {
			wg.Go(func() {
				now := time.Now()
				s.Add(ev(guid(d), KindDown, now))
				s.Add(ev(guid(d), KindUp, now))
			})
		}
		wg.Wait()
		flush(b, s)
	}
	b.StopTimer()
	st := s.Stats()
	if st.Dropped > 0 {
		b.Errorf("dropped %d of %d", st.Dropped, st.Committed+st.Dropped)
	}
	b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
	b.ReportMetric(float64(2*devices*b.N)/b.Elapsed().Seconds(), "events/s")
}

// The timeline benchmarks share one file of 1,000,000 events (10,000
// devices × 100 events, a minute apart per device), built once per test
// binary in a temporary directory that TestMain removes.
const (
	benchDevices = 10_000
	benchRounds  = 100
)

var bench struct {
	once sync.Once
	dir  string
	s    *Store
	took time.Duration
	size int64
	err  error
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	bench.once.Do(func() {
		start := time.Now()
		bench.dir, bench.err = os.MkdirTemp("", "history-bench-")
		if bench.err != nil {
			return
		}
		path := filepath.Join(bench.dir, "history.db")
		s, err := Open(path, Options{MaxAge: -1, MaxBytes: -1})
		if err != nil {
			bench.err = err
			return
		}
		// Ten transactions of 100,000 events, straight to the file.
		evs := make([]*TunnelEvent, 0, 10*benchDevices)
		for r := range benchRounds {
			for d := range benchDevices {
				kind := KindUp
				if r%2 == 1 {
					kind = KindDown
				}
				e := ev(guid(d), kind, t0.Add(time.Duration(r)*time.Minute+time.Duration(d)*time.Millisecond))
				evs = append(evs, e.normalize(time.Now))
			}
			if len(evs) == cap(evs) {
				if err := s.db.Update(func(tx *bolt.Tx) error { return writeBatch(tx, evs, nil) }); err != nil {
					bench.err = err
					return
				}
				evs = evs[:0]
			}
		}
		bench.s, bench.took = s, time.Since(start)
		_, bench.size, bench.err = s.Size()
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	b.Logf("1,000,000 events built in %v, %d MB used (%d B/event)", bench.took.Round(time.Millisecond), bench.size>>20, bench.size/1_000_000)
	return bench.s
}

func removeBenchDB() {
	if bench.s != nil {
		bench.s.Close()
	}
	if bench.dir != "" {
		os.RemoveAll(bench.dir)
	}
}

// BenchmarkTimeline1M reads one device's whole timeline (100 events, the
// default limit) out of 1,000,000.
func BenchmarkTimeline1M(b *testing.B) {
	s := benchStore(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		got, err := s.Timeline(guid(i*7919%benchDevices), time.Time{}, time.Time{}, 0)
		if err != nil || len(got) != benchRounds {
			b.Fatalf("Timeline = %d events, %v; want %d", len(got), err, benchRounds)
		}
	}
}

// BenchmarkAvailability1M computes one device's availability over its
// whole history, out of 1,000,000 events.
func BenchmarkAvailability1M(b *testing.B) {
	s := benchStore(b)
	for i := 0; b.Loop(); i++ {
		a, err := s.Availability(guid(i*7919%benchDevices), t0, t0.Add(benchRounds*time.Minute))
		if err != nil || len(a.Intervals) != benchRounds/2 {
			b.Fatalf("Availability = %d intervals, %v", len(a.Intervals), err)
		}
	}
}

// BenchmarkLast1000 reads the newest 1,000 events of 1,000,000.
func BenchmarkLast1000(b *testing.B) {
	s := benchStore(b)
	for b.Loop() {
		if got, err := s.Last(1000); err != nil || len(got) != 1000 {
			b.Fatalf("Last = %d, %v", len(got), err)
		}
	}
}

// BenchmarkDevices lists the 10,000 devices of 1,000,000 events with
// their last event.
func BenchmarkDevices(b *testing.B) {
	s := benchStore(b)
	for b.Loop() {
		if got, err := s.Devices(); err != nil || len(got) != benchDevices {
			b.Fatalf("Devices = %d, %v", len(got), err)
		}
	}
}
