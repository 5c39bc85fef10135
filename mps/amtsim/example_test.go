package amtsim_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
)

// A fleet's identities are derived from a seed, so every run presents the
// same devices to the MPS.
func ExampleDeviceUUID() {
	for i := range 2 {
		fmt.Println(amtsim.DeviceHostname(i), amtsim.DeviceUUID("lab", i))
	}
	// Output:
	// sim-000000 e845684a-2213-4c63-9822-bdcea4378be3
	// sim-000001 27a626f9-b583-41fa-898f-fd4c3deb54fb
}

// One device connecting to an MPS whose certificate chains to root.
func ExampleDevice() {
	var root *x509.CertPool // the MPS root CA, e.g. from `presence cert export-root`
	d, err := amtsim.New(amtsim.Config{
		UUID:        amtsim.DeviceUUID("example", 0),
		Hostname:    "amt-example",
		User:        "admin",
		Password:    []byte("P@ssw0rd"),
		MPSAddr:     "mps.example.com:4433",
		RootCAs:     root,
		EchoPort:    amtsim.PortRedirect,
		AMTPassword: []byte("Amt-Adm1n!"),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		<-d.Connected()
		fmt.Println("tunnel up after", d.Stats().LastHandshake)
	}()
	err = d.Run(ctx)
	var de *amtsim.DisconnectError
	switch {
	case errors.Is(err, amtsim.ErrAuthFailed):
		fmt.Println("the MPS refused the CIRA password")
	case errors.As(err, &de):
		fmt.Println("the MPS disconnected:", de.Reason)
	default:
		fmt.Println("tunnel ended:", amtsim.Reason(err))
	}
}

// A fleet whose devices hold a primary and a backup MPS, each entry with its
// own address, certificate name and CIRA account, as AMT stores them.
// HandshakesByMPS and ConnectedByMPS count per entry.
func ExampleMPSEntry() {
	var root *x509.CertPool // the fleet's root: both certificates chain to it
	f, err := amtsim.NewFleet(amtsim.FleetConfig{
		Device: amtsim.Config{
			MPS: []amtsim.MPSEntry{
				{Addr: "mps-a.example.com:4433", User: "cira-a", Password: []byte("Cira-A-pw")},
				{Addr: "mps-b.example.com:4433", User: "cira-b", Password: []byte("Cira-B-pw")},
			},
			RootCAs: root,
		},
		Devices:       100,
		RetryInterval: 10 * time.Second, // AMT's periodic policy interval
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := f.Run(ctx)
	fmt.Println("handshakes with the primary:", s.HandshakesByMPS[0], "with the backup:", s.HandshakesByMPS[1])
}

// A device's platform comes from its Config.AMT: here an AMT 16 laptop in
// client control mode with an OS agent and a full event log. Its WS-Man
// and SOL services answer from this state, and change it.
func ExampleAMTConfig() {
	hw, _ := amtsim.HardwareProfile("laptop")
	p, err := amtsim.NewPlatform(&amtsim.AMTConfig{
		Version:         "16",
		ControlMode:     amtsim.CCM,
		OSAgent:         true,
		Hardware:        &hw,
		EventLogRecords: 390,
	}, amtsim.DeviceUUID("lab", 0), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Version(), p.ControlMode(), p.PowerState(), len(p.EventRecords()))
	// Output: 16.1.27 ccm 2 390
}
