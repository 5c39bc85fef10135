package etcdstore_test

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/mps/fleet/etcdstore"
)

// An instance opens the store at start-up, claims each device when its
// tunnel authenticates, releases it when the tunnel closes, and resolves
// consoles' devices through Lookup. (It needs a running etcd, so it is
// not run as a test.)
func Example() {
	s, err := etcdstore.Open(etcdstore.Config{
		Endpoints: []string{"http://127.0.0.1:2379"},
		Self:      fleet.Member{ID: "mps-a", Name: "mps-a.example", PeerAddr: "mps-a.example:16991"},
		Logger:    slog.Default(),
		Moved: func(mine, newer fleet.Owner) {
			// Close mine's tunnel with reason "moved", naming newer.Instance.
			fmt.Println("moved to", newer.Instance)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	dev := fleet.Owner{GUID: "8c2d8a4e-1f3b-4c5d-9e6f-0a1b2c3d4e5f", Host: "amt-1", Instance: "mps-a", Conn: 1, Since: time.Now()}
	s.Claim(dev) // returns at once; committed in the background
	if o, ok := s.Lookup(dev.GUID); ok && o.Instance != "mps-a" {
		fmt.Println("forward to", o.Instance)
	}
	if ok, since, err := s.Status(); !ok {
		fmt.Println("etcd unreachable since", since, err)
	}
	s.Release(dev) // deletes the key only if it still holds dev
}
