package hub

import "testing"

func TestHub(t *testing.T) {
	var h Hub[int]
	a, cancelA := h.Subscribe(2)
	b, _ := h.Subscribe(1)
	for i := range 3 {
		h.Publish(i)
	}
	// a holds 0 and 1, b holds 0: three deliveries were missed.
	if got := h.Dropped(); got != 3 {
		t.Fatalf("Dropped = %d, want 3", got)
	}
	if v := <-a; v != 0 {
		t.Fatalf("a got %d", v)
	}
	if v := <-b; v != 0 {
		t.Fatalf("b got %d", v)
	}
	cancelA()
	cancelA() // idempotent
	<-a       // the buffered 1
	if _, ok := <-a; ok {
		t.Fatal("a open after cancel")
	}
	h.Close()
	if _, ok := <-b; ok {
		t.Fatal("b open after Close")
	}
	c, cancelC := h.Subscribe(1)
	if _, ok := <-c; ok {
		t.Fatal("a subscription after Close is open")
	}
	cancelC()
	h.Publish(9) // no subscriber, no panic
}
