package authlimit

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := New(2, time.Minute)
	now := time.Unix(1000, 0)
	l.Now = func() time.Time { return now }
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	l.Fail(a)
	if l.Blocked(a) {
		t.Fatal("blocked after one failure")
	}
	l.Fail(a)
	if !l.Blocked(a) || l.Blocked(b) {
		t.Fatal("want a blocked and b not")
	}
	now = now.Add(59 * time.Second)
	if !l.Blocked(a) {
		t.Fatal("unblocked inside the window")
	}
	now = now.Add(2 * time.Second)
	if l.Blocked(a) {
		t.Fatal("still blocked after the window")
	}
	// Failures spread over more than a window never block.
	l.Fail(b)
	now = now.Add(2 * time.Minute)
	l.Fail(b)
	if l.Blocked(b) {
		t.Fatal("failures in different windows blocked")
	}
	l.Succeed(b)
	l.Fail(b)
	if l.Blocked(b) {
		t.Fatal("a success did not reset the count")
	}
}

func TestLimiterBounded(t *testing.T) {
	l := New(1, time.Minute)
	for i := range maxLimiterEntries + 500 {
		l.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := len(l.sources); n > maxLimiterEntries {
		t.Fatalf("%d sources tracked, cap %d", n, maxLimiterEntries)
	}
}

func TestSourceAddr(t *testing.T) {
	for _, tc := range []struct {
		in   net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 1}, "127.0.0.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, "2001:db8::1"},
		{&net.UnixAddr{Name: "@x", Net: "unix"}, "invalid IP"},
	} {
		if got := SourceAddr(tc.in).String(); got != tc.want {
			t.Errorf("SourceAddr(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
