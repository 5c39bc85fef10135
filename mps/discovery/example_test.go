package discovery_test

import (
	"context"
	"fmt"
	"log"

	"github.com/presence-mps/presence/mps/discovery"
)

// An instance advertises itself and lists the others, leaving itself out.
func Example() {
	id := discovery.NewID()
	a, err := discovery.Advertise(discovery.AdvertiseConfig{
		ProxyPort:   1080,
		APIPort:     16990,
		ID:          id,
		Version:     "1.0.0",
		Fingerprint: discovery.Fingerprint([]byte("the MPS root certificate, DER")),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	peers, err := discovery.Browse(context.Background(), discovery.BrowseConfig{SkipID: id})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range peers {
		fmt.Printf("%q proxy %v port %d, root %s\n", p.Name, p.Addrs, p.ProxyPort, p.Fingerprint)
	}
}
