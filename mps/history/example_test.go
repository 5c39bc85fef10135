package history_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/presence-mps/presence/mps/history"
)

func Example() {
	dir, err := os.MkdirTemp("", "history-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := history.Open(filepath.Join(dir, "history.db"), history.Options{})
	if err != nil {
		log.Fatal(err) // errors.Is(err, history.ErrLocked): another Presence runs
	}
	defer s.Close()

	const dev = "8c4a7f5e-1b2d-4c3e-9f00-0a1b2c3d4e5f"
	up := time.Now().Add(-time.Hour)
	s.Add(history.TunnelEvent{Time: up, Device: dev, Kind: history.KindUp, Ports: []uint32{16992, 16993}})
	s.Add(history.TunnelEvent{Time: up.Add(30 * time.Minute), Device: dev, Kind: history.KindDown, Reason: "network-error"})
	if err := s.Flush(context.Background()); err != nil {
		log.Fatal(err)
	}

	events, _ := s.Timeline(dev, time.Time{}, time.Time{}, 0)
	for _, e := range events {
		fmt.Printf("%s (%s)\n", e.Kind, e.Reason)
	}
	a, _ := s.Availability(dev, up, up.Add(time.Hour))
	fmt.Println("up", a.Up, fmt.Sprintf("%.0f%%", 100*a.Fraction))
	// Output:
	// up ()
	// down (network-error)
	// up 30m0s 50%
}
