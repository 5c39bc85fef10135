package instance_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/api"
)

// BenchmarkEnrolOne enrols one unconfigured simulated device on loopback
// per op, over the LAN's WS-Man, until its tunnel is up (the target is
// under 2 s).
func BenchmarkEnrolOne(b *testing.B) {
	in, _ := instancetest.Start(b, nil)
	const amtPW = "Lan-Amt-P@ss1"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		d, err := amtsim.New(amtsim.Config{
			UUID: amtsim.DeviceUUID(fmt.Sprint("bench-enrol-", time.Now().UnixNano()), i), AMTPassword: []byte(amtPW),
			LAN: &amtsim.LANConfig{Addr: "127.0.0.1:0", Interval: 50 * time.Millisecond},
		})
		if err != nil {
			b.Fatal(err)
		}
		go d.Run(ctx)
		b.StartTimer()
		res, err := in.Enrol(ctx, api.EnrolRequest{Address: d.LANAddr(), Password: amtPW}, nil)
		if err != nil || !res.Connected {
			b.Fatalf("enrol: %+v, %v", res, err)
		}
	}
}
