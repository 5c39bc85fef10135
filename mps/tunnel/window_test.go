package tunnel

import (
	"math"
	"testing"
)

func TestWindowReserve(t *testing.T) {
	tests := []struct {
		name      string
		w         window
		n         int
		want      int
		wantAvail uint32
	}{
		{"plenty", window{avail: 1000, size: 1000}, 300, 300, 700},
		{"all of it", window{avail: 300, size: 1000}, 300, 300, 0},
		{"less than asked", window{avail: 3000, size: 8000}, 5000, 3000, 0},
		{"nothing left", window{avail: 0, size: 1000}, 10, 0, 0},
		{"small write waits for room", window{avail: 100, size: 4096}, 200, 0, 100},
		{"small write at the limit waits", window{avail: smallWrite - 1, size: 4096}, smallWrite, 0, smallWrite - 1},
		{"small write larger than the window is split", window{avail: 100, size: 150}, 200, 100, 0},
		{"larger write is split", window{avail: 100, size: 4096}, smallWrite + 1, 100, 0},
		{"closed", window{avail: 1000, size: 1000, closed: true}, 10, 0, 1000},
		{"near uint32 max", window{avail: math.MaxUint32, size: math.MaxUint32}, maxChunk, maxChunk, math.MaxUint32 - maxChunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w
			if got := w.reserve(tt.n); got != tt.want || w.avail != tt.wantAvail {
				t.Fatalf("reserve(%d) = %d, avail %d; want %d, avail %d", tt.n, got, w.avail, tt.want, tt.wantAvail)
			}
		})
	}
}

// TestWindowAddAndTake: grants from the device may fill the credit to
// the brim of a uint32 but not past it, and the device may send what the
// window allows but not a byte more.
func TestWindowAddAndTake(t *testing.T) {
	add := func(w *window, n uint32) bool { return w.add(n) }
	take := func(w *window, n uint32) bool { return w.take(n) }
	tests := []struct {
		name      string
		op        func(*window, uint32) bool
		avail, n  uint32
		ok        bool
		wantAvail uint32
	}{
		{"add", add, 0, 4096, true, 4096},
		{"add to the brim", add, math.MaxUint32 - 10, 10, true, math.MaxUint32},
		{"add overflows by one", add, math.MaxUint32 - 10, 11, false, math.MaxUint32 - 10},
		{"add overflows when full", add, math.MaxUint32, 1, false, math.MaxUint32},
		{"add zero", add, 5, 0, true, 5},
		{"take within", take, 4096, 1000, true, 3096},
		{"take exactly", take, 4096, 4096, true, 0},
		{"take overruns", take, 4096, 4097, false, 4096},
		{"take overruns an empty window", take, 0, 1, false, 0},
		{"take an empty message", take, 0, 0, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := window{avail: tt.avail, size: 4096}
			if ok := tt.op(&w, tt.n); ok != tt.ok || w.avail != tt.wantAvail {
				t.Fatalf("%d on %d = %v, avail %d; want %v, avail %d", tt.n, tt.avail, ok, w.avail, tt.ok, tt.wantAvail)
			}
		})
	}
}

// TestWindowConsume walks the receive side through reads: a WINDOW_ADJUST
// only once half the window has been read, for all that was read, and
// none once the device has closed the channel.
func TestWindowConsume(t *testing.T) {
	type step struct {
		take, read uint32
		closeFirst bool
		grant      uint32
		avail      uint32
	}
	tests := []struct {
		name  string
		size  uint32
		steps []step
	}{
		{"below half", 8192, []step{{take: 4095, read: 4095, grant: 0, avail: 4097}}},
		{"at half", 8192, []step{{take: 4096, read: 4096, grant: 4096, avail: 8192}}},
		{"accumulates", 8192, []step{
			{take: 3000, read: 1000, grant: 0, avail: 5192},
			{read: 2000, grant: 0, avail: 5192},
			{take: 2000, read: 1096, grant: 4096, avail: 7288},
			{read: 2000, grant: 0, avail: 7288},
		}},
		{"whole window at once", 8192, []step{{take: 8192, read: 8192, grant: 8192, avail: 8192}}},
		{"odd size", 4097, []step{{take: 2047, read: 2047, grant: 0, avail: 2050}, {read: 0, take: 1, grant: 0, avail: 2049}, {read: 1, grant: 2048, avail: 4097}}},
		{"closed", 8192, []step{{take: 6000, read: 5000, closeFirst: true, grant: 0, avail: 2192}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := window{avail: tt.size, size: tt.size}
			for i, s := range tt.steps {
				if !w.take(s.take) {
					t.Fatalf("step %d: take(%d) refused", i, s.take)
				}
				if s.closeFirst {
					w.close()
				}
				if g := w.consume(s.read); g != s.grant || w.avail != s.avail {
					t.Fatalf("step %d: consume(%d) = %d, avail %d; want %d, avail %d", i, s.read, g, w.avail, s.grant, s.avail)
				}
			}
		})
	}
}
