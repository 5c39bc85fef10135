package ui

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		chs         []Change
		title, body string
	}{
		{[]Change{{true, "a"}}, "Device connected", "a is reachable through Presence."},
		{[]Change{{false, "a"}}, "Device disconnected", "a is no longer reachable."},
		{[]Change{{false, "a"}, {true, "a"}}, "Device reconnected", "a dropped its tunnel and came back."},
		{[]Change{{true, "a"}, {true, "b"}, {false, "c"}, {false, "d"}, {true, "d"}}, "4 devices changed", "2 connected, 1 disconnected, 1 reconnected."},
	} {
		title, body := Summarize(tc.chs)
		if title != tc.title || body != tc.body {
			t.Errorf("Summarize(%v) = %q, %q; want %q, %q", tc.chs, title, body, tc.title, tc.body)
		}
	}
}

// 10,000 changes within the window make one notification.
func TestCoalescer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var emitted []string
		got := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(emitted) }
		c := &Coalescer{Window: 2 * time.Second, Emit: func(title, body string) {
			mu.Lock()
			emitted = append(emitted, title+": "+body)
			mu.Unlock()
		}}
		for i := range 10000 {
			c.Add(Change{Up: true, Name: fmt.Sprintf("sim-%06d", i)})
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if g := got(); len(g) != 0 {
			t.Fatalf("emitted before the window closed: %v", g)
		}
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if g := got(); len(g) != 1 || g[0] != "10000 devices changed: 10000 connected." {
			t.Fatalf("got %v", g)
		}
		c.Add(Change{Up: false, Name: "sim-000001"})
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if g := got(); len(g) != 2 || g[1] != "Device disconnected: sim-000001 is no longer reachable." {
			t.Fatalf("got %v", g)
		}
		c.Add(Change{Up: true, Name: "x"})
		c.Stop()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if g := got(); len(g) != 2 {
			t.Fatalf("emitted after Stop: %v", g)
		}
	})
}
