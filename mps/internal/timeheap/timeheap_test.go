package timeheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPopDueInOrder: values come out earliest first, only once due, and
// an empty heap or one with nothing due gives nothing.
func TestPopDueInOrder(t *testing.T) {
	var h Heap[int]
	if _, ok := h.Min(); ok {
		t.Fatal("Min of an empty heap")
	}
	if _, ok := h.PopDue(1 << 62); ok {
		t.Fatal("PopDue of an empty heap")
	}
	r := rand.New(rand.NewPCG(1, 2))
	var ats []int64
	for i := range 1000 {
		at := r.Int64N(500)
		ats = append(ats, at)
		h.Push(at, i)
	}
	slices.Sort(ats)
	if m, _ := h.Min(); m.At != ats[0] {
		t.Fatalf("Min at %d; want %d", m.At, ats[0])
	}
	if _, ok := h.PopDue(ats[0] - 1); ok {
		t.Fatal("PopDue before the earliest time gave a value")
	}
	var got []int64
	for now := int64(0); now <= 500; now += 50 {
		for {
			before, _ := h.Min()
			if _, ok := h.PopDue(now); !ok {
				break
			}
			if before.At > now {
				t.Fatalf("popped an entry at %d at %d", before.At, now)
			}
			got = append(got, before.At)
		}
	}
	if !slices.Equal(got, ats) || h.Len() != 0 {
		t.Fatalf("popped %d entries out of order or missing (left %d)", len(got), h.Len())
	}
}
