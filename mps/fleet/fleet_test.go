package fleet

import "testing"

func TestWithHost(t *testing.T) {
	for _, c := range []struct {
		addr, host, want string
		ok               bool
	}{
		{":16991", "b.example.com", "b.example.com:16991", true},
		{"0.0.0.0:16991", "10.0.0.2", "10.0.0.2:16991", true},
		{"[::]:16991", "fe80::1", "[fe80::1]:16991", true},
		{"127.0.0.1:16991", "b.example.com", "127.0.0.1:16991", true},
		{"a.example.com:16991", "b.example.com", "a.example.com:16991", true},
		{"16991", "b.example.com", "16991", false},
	} {
		if got, ok := WithHost(c.addr, c.host); got != c.want || ok != c.ok {
			t.Errorf("WithHost(%q, %q) = %q, %v; want %q, %v", c.addr, c.host, got, ok, c.want, c.ok)
		}
	}
	if got := backAddr(":16991", "192.0.2.7:50000"); got != "192.0.2.7:16991" {
		t.Errorf("backAddr to a wildcard listener = %q", got)
	}
	if got := backAddr("127.0.0.1:0", "192.0.2.7:50000"); got != "" {
		t.Errorf("backAddr to port 0 = %q; want none", got)
	}
}
