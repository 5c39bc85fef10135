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

func TestNormalizeGUID(t *testing.T) {
	const want = "fd7ceacc-93ab-493d-a2d4-c6ddef1da088"
	for _, in := range []string{want, "FD7CEACC-93AB-493D-A2D4-C6DDEF1DA088", "FD7CEACC93AB493DA2D4C6DDEF1DA088", "fd7ceacc93ab493da2d4c6ddef1da088"} {
		if got := NormalizeGUID(in); got != want {
			t.Errorf("NormalizeGUID(%q) = %q; want %q", in, got, want)
		}
	}
	if got := NormalizeGUID("Laptop-1"); got != "laptop-1" {
		t.Errorf("a host name: %q", got)
	}
}
