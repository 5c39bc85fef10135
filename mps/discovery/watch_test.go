package discovery

import (
	"net/netip"
	"slices"
	"testing"
)

func TestTableExpiry(t *testing.T) {
	a := Instance{Name: "a", ID: "A", ProxyPort: 1080, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	b := Instance{Name: "b", ID: "B", ProxyPort: 1080, Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.2")}}
	b2 := b
	b2.Version = "2.0"
	names := func(list []Instance) []string {
		var out []string
		for _, i := range list {
			out = append(out, i.Name+":"+i.Version)
		}
		return out
	}

	tb := newTable(2)
	steps := []struct {
		found   []Instance
		changed bool
		want    []string
	}{
		{[]Instance{b, a}, true, []string{"a:", "b:"}},
		{[]Instance{a, b}, false, []string{"a:", "b:"}},
		{[]Instance{a}, false, []string{"a:", "b:"}},    // b missed once
		{[]Instance{a, b}, false, []string{"a:", "b:"}}, // b back: the count restarts
		{[]Instance{a}, false, []string{"a:", "b:"}},    // b missed once
		{nil, true, []string{"a:"}},                     // b missed twice: gone; a once
		{[]Instance{b2}, true, []string{"b:2.0"}},       // a gone, b new again
		{[]Instance{b}, true, []string{"b:"}},           // b changed
	}
	for i, s := range steps {
		changed := tb.round(s.found)
		if got := names(tb.list()); changed != s.changed || !slices.Equal(got, s.want) {
			t.Errorf("round %d: changed %v, list %q; want %v, %q", i, changed, got, s.changed, s.want)
		}
	}
}
