package logring

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func TestRingKeepsTheLatestAndFilters(t *testing.T) {
	r := New(3)
	var out bytes.Buffer
	var lv slog.LevelVar
	lv.Set(slog.LevelInfo)
	log := slog.New(r.Handler(&lv, slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})))
	log.Debug("not kept")
	for i := range 5 {
		log.Info("tick", "n", i)
	}
	log.With("part", "proxy").WithGroup("g").Warn("slow client", "remote", "10.0.0.1:5", "why", "no data yet")
	got := r.Since(0, slog.LevelDebug)
	if len(got) != 3 {
		t.Fatalf("kept %d entries, want 3", len(got))
	}
	if got[0].Attrs != "n=3" || got[1].Attrs != "n=4" || got[0].Seq != 4 {
		t.Fatalf("not the latest, in order: %+v", got)
	}
	w := got[2]
	if w.Level != slog.LevelWarn || w.Attrs != `part=proxy g.remote=10.0.0.1:5 g.why="no data yet"` {
		t.Fatalf("warn entry: %+v", w)
	}
	if warn := r.Since(0, slog.LevelWarn); len(warn) != 1 {
		t.Fatalf("level filter: %d entries", len(warn))
	}
	if after := r.Since(w.Seq, slog.LevelDebug); len(after) != 0 {
		t.Fatalf("since the last: %d entries", len(after))
	}
	// The next handler got only what its own level lets through.
	if s := out.String(); strings.Contains(s, "tick") || !strings.Contains(s, "slow client") {
		t.Fatalf("passed on: %q", s)
	}
	// Raising the level at run time stops recording info.
	lv.Set(slog.LevelWarn)
	log.Info("quiet now")
	if r.Last() != w.Seq {
		t.Fatal("an info record was kept at level warn")
	}
}

func TestRingConcurrent(t *testing.T) {
	r := New(100)
	log := slog.New(r.Handler(slog.LevelInfo, nil))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 250 {
				log.Info(fmt.Sprint(g), "i", i)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			r.Since(r.Last()/2, slog.LevelInfo)
		}
	})
	wg.Wait()
	if r.Last() != 1000 || len(r.Since(0, slog.LevelInfo)) != 100 {
		t.Fatalf("last %d, kept %d", r.Last(), len(r.Since(0, slog.LevelInfo)))
	}
}
