package mps_test

import (
	"context"
	"crypto/tls"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/testutil"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/tunnel"
)

// BenchmarkChannelThroughput measures bytes per second through one channel
// over real TLS on loopback: the server writes, the simulated device echoes,
// and the server reads it all back (each byte crosses the tunnel twice;
// SetBytes counts it once).
func BenchmarkChannelThroughput(b *testing.B) {
	e := newEnv(b, tunnel.Config{})
	d, _ := e.run(e.device(0, func(c *amtsim.Config) { c.Window = amtsim.MaxWindow }))
	e.connected(d)
	c, err := e.srv.Dial(context.Background(), d.UUID().String(), echoPort)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	testutil.EchoThroughput(b, c, 64<<10)
}

// BenchmarkHandshake measures complete CIRA handshakes (TCP, TLS 1.2 with
// the server's RSA-2048 certificate, APF up to the forwards settling) made
// one after another by 8 concurrent simulated devices.
func BenchmarkHandshake(b *testing.B) {
	for _, v := range []struct {
		name   string
		max    uint16
		resume bool
	}{{"TLS1.2", tls.VersionTLS12, false}, {"TLS1.3", tls.VersionTLS13, false}, {"TLS1.2-resumed", tls.VersionTLS12, true}} {
		b.Run(v.name, func(b *testing.B) {
			e := newEnv(b, tunnel.Config{ForwardSettle: time.Millisecond})
			b.SetParallelism(4)
			b.ResetTimer()
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				// One device per goroutine, reconnecting: its session
				// ticket (if resuming) carries over between rounds.
				cfg := e.device(int(n.Add(1)), func(c *amtsim.Config) {
					c.MaxVersion, c.ResumeSessions, c.Fault = v.max, v.resume, amtsim.FaultDropAfter
				})
				d, err := amtsim.New(cfg)
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if err := d.Run(context.Background()); err != amtsim.ErrDropped {
						b.Errorf("device: %v", err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
}
