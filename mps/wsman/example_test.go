package wsman_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
)

// A client that reaches devices through the server's tunnels: one
// simulated device, its general settings, and the refusal of a wrong
// password.
func Example() {
	ctx := context.Background()
	ca, _ := vault.InitCA(ctx, vault.NewMemory(0), vault.CAOptions{Address: "127.0.0.1"})
	srv, _ := mps.New(mps.Config{
		TLS: tunnel.TLSConfig(ca.TLSCertificate(), false),
		Tunnel: tunnel.Config{Auth: func(_ context.Context, _ apf.UUID, user string, pw []byte) bool {
			return user == "cira" && string(pw) == "cira-secret" // use vault.Accounts in real code
		}},
	})
	addr, _ := srv.Listen("127.0.0.1:0")
	defer srv.Shutdown(ctx)
	events, _ := srv.Subscribe(16)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	dev, _ := amtsim.New(amtsim.Config{UUID: amtsim.DeviceUUID("example", 0), Hostname: "laptop-17",
		MPSAddr: addr.String(), RootCAs: roots, User: "cira", Password: []byte("cira-secret"),
		AMTPassword: []byte("amt-secret")})
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	go dev.Run(dctx)
	<-events // connected

	password := "amt-secret" // in Presence the vault holds one per device
	c, _ := wsman.New(wsman.Config{
		Dial: func(ctx context.Context, device string) (net.Conn, error) {
			return srv.Dial(ctx, device, 16992)
		},
		Credentials: func(ctx context.Context, device string) (wsman.Credentials, error) {
			return wsman.Credentials{User: "admin", Password: password}, nil
		},
		Timeout: 10 * time.Second,
	})
	defer c.Close()

	g, err := c.GeneralSettings(ctx, "laptop-17")
	fmt.Println(g.HostName, err)

	password = "guess"
	_, err = c.GeneralSettings(ctx, "laptop-17")
	fmt.Println(errors.Is(err, wsman.ErrCredentials), wsman.Sentence(err))
	// Output:
	// laptop-17 <nil>
	// true The device rejected the AMT user name or password.
}
