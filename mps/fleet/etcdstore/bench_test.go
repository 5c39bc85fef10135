package etcdstore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/fleet/etcdtest"
)

// benchRun numbers the benchmark's runs, so that each claims fresh GUIDs.
var benchRun atomic.Int64

// BenchmarkClaim measures claims against a real etcd on loopback:
//
//   - storm: b.N devices connect at once (a reconnect storm); the time until
//     all are committed, in claims/s and Txns/s (batches of up to 128);
//   - visible: one device at a time, from Claim until this instance's own
//     table shows it (commit plus the watch's echo).
func BenchmarkClaim(b *testing.B) {
	srv := etcdtest.Start(b)
	b.Run("storm", func(b *testing.B) {
		run := benchRun.Add(1)
		n := openNode(b, srv.Endpoint(), fmt.Sprintf("storm-%d", run), func(c *Config) { c.TTL = DefaultTTL })
		n.waitFor(b, "connected", 10*time.Second, n.connected)
		commits, txns := n.commits.Load(), n.txns.Load()
		base := int(run) << 24
		b.ResetTimer()
		for i := range b.N {
			n.Claim(owner(n.id, base+i, 0))
		}
		n.waitFor(b, "all committed", time.Minute, func() bool { return n.commits.Load()-commits >= uint64(b.N) })
		b.StopTimer()
		secs := b.Elapsed().Seconds()
		b.ReportMetric(float64(b.N)/secs, "claims/s")
		b.ReportMetric(float64(n.txns.Load()-txns)/secs, "txns/s")
	})
	b.Run("visible", func(b *testing.B) {
		run := benchRun.Add(1)
		n := openNode(b, srv.Endpoint(), fmt.Sprintf("visible-%d", run), func(c *Config) { c.TTL = DefaultTTL })
		n.waitFor(b, "connected", 10*time.Second, n.connected)
		base := int(run) << 24
		b.ResetTimer()
		for i := range b.N {
			g := guid(base + i)
			n.Claim(owner(n.id, base+i, 0))
			n.waitFor(b, "claim visible", 10*time.Second, func() bool { _, ok := n.Lookup(g); return ok })
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
	})
}
