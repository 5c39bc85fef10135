package mps_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault"
)

// A server on loopback, one simulated AMT device, and a WS-Man request
// through the device's tunnel.
func Example() {
	ctx := context.Background()
	store := vault.NewMemory(0)
	ca, _ := vault.InitCA(ctx, store, vault.CAOptions{Address: "127.0.0.1"})
	srv, _ := mps.New(mps.Config{
		TLS: tunnel.TLSConfig(ca.TLSCertificate(), false),
		Tunnel: tunnel.Config{Auth: func(_ context.Context, _ apf.UUID, user string, pw []byte) bool {
			return user == "admin" && string(pw) == "cira-secret" // use vault.Accounts in real code
		}},
	})
	addr, _ := srv.Listen("127.0.0.1:0")
	events, _ := srv.Subscribe(16)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	dev, _ := amtsim.New(amtsim.Config{UUID: amtsim.DeviceUUID("example", 0), Hostname: "laptop-17",
		MPSAddr: addr.String(), RootCAs: roots, User: "admin", Password: []byte("cira-secret"),
		AMTPassword: []byte("amt-secret")})
	dctx, stopDevice := context.WithCancel(ctx)
	go dev.Run(dctx)

	ev := <-events
	fmt.Println(ev.Kind, ev.Device.Hostname)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := amtsim.WSManGet(wctx, func(ctx context.Context) (net.Conn, error) {
		return srv.Dial(ctx, "laptop-17", 16992)
	}, "admin", "amt-secret", amtsim.ResourceGeneralSettings)
	fmt.Println(res.Status, res.HostName, err)

	stopDevice()
	ev = <-events
	fmt.Println(ev.Kind, ev.Reason)
	srv.Shutdown(ctx)
	// Output:
	// connected laptop-17
	// 200 laptop-17 <nil>
	// disconnected device-closed
}
