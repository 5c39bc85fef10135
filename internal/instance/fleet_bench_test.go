package instance_test

import (
	"context"
	"net"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/internal/testutil"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
)

// BenchmarkFleetHop is what a peer hop adds for a console: a simulated
// device's tunnel is on B, and WS-Man Gets (digest: challenge and
// authorized request, a fresh connection each) go through B's own SOCKS5
// proxy ("local") and through A's, which forwards them to B in one hop
// ("hop"). The difference of the p50s is the hop's latency. "throughput-*"
// is bytes per second through one channel to the device's echo port.
//
//	go test -run '^$' -bench FleetHop -benchtime 2000x ./internal/instance/
func BenchmarkFleetHop(b *testing.B) {
	root := fleettest.NewRoot(b, "fleet")
	inB, caB := startPeer(b, root, "inst-b")
	inA, _ := startPeer(b, root, "inst-a", inB.PeerAddr.String())
	d := runDevice(b, inB, caB, 0, "laptop-0")
	guid := d.UUID().String()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := inA.Fleet().Lookup(guid); ok {
			if _, ok := inB.Server.Device(guid); ok {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("the device never came up on B, or A never learnt of it")
		}
	}
	dialer := func(proxyAddr string) xproxy.ContextDialer {
		s, err := xproxy.SOCKS5("tcp", proxyAddr, &xproxy.Auth{User: instancetest.ConsoleUser, Password: instancetest.ConsolePass}, xproxy.Direct)
		if err != nil {
			b.Fatal(err)
		}
		return s.(xproxy.ContextDialer)
	}
	for _, via := range []struct {
		name  string
		proxy string
	}{{"local", inB.ProxyAddr.String()}, {"hop", inA.ProxyAddr.String()}} {
		socks := dialer(via.proxy)
		b.Run("wsman-"+via.name, func(b *testing.B) {
			ctx := context.Background()
			dial := func(ctx context.Context) (net.Conn, error) { return socks.DialContext(ctx, "tcp", guid+":16992") }
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				res, err := amtsim.WSManGet(ctx, dial, instancetest.AMTUser, instancetest.AMTPass, amtsim.ResourceGeneralSettings)
				if err != nil || res.Status != 200 || res.HostName != "laptop-0" {
					b.Fatalf("%v %+v", err, res)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
		b.Run("throughput-"+via.name, func(b *testing.B) {
			c, err := socks.DialContext(context.Background(), "tcp", guid+":7")
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			testutil.EchoThroughput(b, c, 64<<10)
		})
	}
}
