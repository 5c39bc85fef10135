package history

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The kill -9 test re-executes the test binary as a child (TestMain sees
// crashChildEnv) that simulates a reconnect storm, and kills it mid-stream.
const (
	crashChildEnv = "PRESENCE_HISTORY_CRASH_CHILD"
	crashDevices  = 10_000
	crashWriters  = 8
)

// crashChild opens the store at path and, from crashWriters goroutines,
// adds down and up events for crashDevices devices as fast as it can,
// forever. Writer w numbers the events it queued 0, 1, 2… in Detail
// ("w/n"), retrying an event the full queue dropped, so its queued events
// are exactly 0…last[w]. A reporter loop snapshots last[], calls Flush and
// then prints "committed n0 n1 …": every event numbered up to those is
// committed. The parent kills the process at some point.
func crashChild(path string) int {
	// A smaller queue than the default: each Flush waits for the queue to
	// drain, and the storm keeps it full, so this gives a report every
	// fraction of a second.
	s, err := Open(path, Options{QueueSize: 10_000})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var last [crashWriters]atomic.Int64
	for w := range crashWriters {
		last[w].Store(-1)
		go func() {
			for n := int64(0); ; {
				for d := w; d < crashDevices; d += crashWriters {
					for _, kind := range [...]string{KindDown, KindUp} {
						e := ev(guid(d), kind, time.Now())
						e.Detail = fmt.Sprintf("%d/%d", w, n)
						for !s.Add(e) {
							runtime.Gosched()
						}
						last[w].Store(n)
						n++
					}
				}
			}
		}()
	}
	fmt.Println("started")
	for {
		var line strings.Builder
		line.WriteString("committed")
		var snap [crashWriters]int64
		for w := range snap {
			snap[w] = last[w].Load()
		}
		if err := s.Flush(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		for _, n := range snap {
			fmt.Fprintf(&line, " %d", n)
		}
		line.WriteString("\n")
		// One write: the parent sees whole lines or a torn last one.
		if _, err := io.WriteString(os.Stdout, line.String()); err != nil {
			return 2
		}
	}
}

func TestKill9DuringReconnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "history.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	// Kill once the child has reported enough, or after a bounded time.
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(out)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return // a torn last line (no newline) is dropped
			}
			lines <- strings.TrimSuffix(l, "\n")
		}
	}()
	var reports int
	var reported [crashWriters]int64
	for w := range reported {
		reported[w] = -1
	}
	parse := func(l string) {
		f := strings.Fields(l)
		if len(f) != crashWriters+1 || f[0] != "committed" {
			return
		}
		for w := range reported {
			n, err := strconv.ParseInt(f[w+1], 10, 64)
			if err != nil {
				t.Fatalf("bad report %q", l)
			}
			if n < reported[w] {
				t.Fatalf("report %q went backwards", l)
			}
			reported[w] = n
		}
		reports++
	}
	total := func() (n int64) {
		for _, r := range reported {
			n += r + 1
		}
		return n
	}
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	start := time.Now()
	// Once enough is reported, kill at a random moment within the next
	// 100 ms: the writer is committing nearly all the time.
	var kill <-chan time.Time
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child exited early: %s", stderr.String())
			}
			parse(l)
			if kill == nil && reports >= 5 && total() >= 50_000 {
				kt := time.NewTimer(rand.N(100 * time.Millisecond))
				defer kt.Stop()
				kill = kt.C
			}
		case <-kill:
			break wait
		case <-deadline.C:
			if reports == 0 {
				t.Fatalf("no report from the child in 20 s: %s", stderr.String())
			}
			break wait
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killed = true
	// Reports printed before the kill landed count too.
	for l := range lines {
		parse(l)
	}
	werr := cmd.Wait()
	t.Logf("killed after %v (%v), %d reports, %d events reported committed",
		time.Since(start).Round(time.Millisecond), werr, reports, total())

	// The file is consistent…
	checkFile(t, path)
	// …and holds every event reported committed.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var seen [crashWriters]map[int64]bool
	for w := range seen {
		seen[w] = make(map[int64]bool)
	}
	var stored, index int
	err = db.View(func(tx *bolt.Tx) error {
		index = tx.Bucket(bucketEventsDevice).Stats().KeyN
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			e, err := decodeEvent(v)
			if err != nil {
				return fmt.Errorf("key %x: %w", k, err)
			}
			var w, n int64
			if _, err := fmt.Sscanf(e.Detail, "%d/%d", &w, &n); err != nil || w < 0 || w >= crashWriters {
				return fmt.Errorf("key %x: Detail %q", k, e.Detail)
			}
			seen[w][n] = true
			stored++
			return nil
		})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if stored != index {
		t.Errorf("%d events but %d device index entries", stored, index)
	}
	var missing int64
	for w := range reported {
		for n := int64(0); n <= reported[w]; n++ {
			if !seen[w][n] {
				missing++
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d events reported committed are missing", missing)
	}
	if int64(stored) < total() {
		t.Errorf("%d events stored; %d were reported committed", stored, total())
	}
	t.Logf("file holds %d events (%d beyond the last report)", stored, int64(stored)-total())

	// And the store opens it.
	s := newStoreAt(t, path, Options{})
	if got, err := s.Last(10); err != nil || len(got) != 10 {
		t.Errorf("Last(10) after the crash = %d events, %v", len(got), err)
	}
}
