// Package timeheap is a min-heap of values by time, for the sweeps that
// look only at what is due (the server's suspect checks, a poller shard's
// idle deadlines) instead of passing over everything.
package timeheap

import "container/heap"

// Entry is a value and its time (unix ns, or any int64 clock).
type Entry[T any] struct {
	At int64
	V  T
}

// Heap orders entries by At, earliest first. The zero value is empty and
// ready. It is not safe for concurrent use.
type Heap[T any] struct{ e entries[T] }

// Len returns the number of entries.
func (h *Heap[T]) Len() int { return len(h.e) }

// Push adds v at time at.
func (h *Heap[T]) Push(at int64, v T) { heap.Push(&h.e, Entry[T]{At: at, V: v}) }

// Min returns the earliest entry, and false when the heap is empty.
func (h *Heap[T]) Min() (Entry[T], bool) {
	if len(h.e) == 0 {
		return Entry[T]{}, false
	}
	return h.e[0], true
}

// PopDue removes and returns the earliest value if its time is at most
// now; otherwise it returns false and leaves the heap as it is.
func (h *Heap[T]) PopDue(now int64) (T, bool) {
	if len(h.e) == 0 || h.e[0].At > now {
		var zero T
		return zero, false
	}
	return heap.Pop(&h.e).(Entry[T]).V, true
}

// entries is the container/heap side of Heap.
type entries[T any] []Entry[T]

func (e entries[T]) Len() int           { return len(e) }
func (e entries[T]) Less(i, j int) bool { return e[i].At < e[j].At }
func (e entries[T]) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *entries[T]) Push(x any)        { *e = append(*e, x.(Entry[T])) }
func (e *entries[T]) Pop() any {
	old := *e
	x := old[len(old)-1]
	old[len(old)-1] = Entry[T]{} // drop what it points to
	*e = old[:len(old)-1]
	return x
}
