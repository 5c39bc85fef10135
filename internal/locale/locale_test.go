package locale

import "testing"

func TestCLocale(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"C.UTF-8", true}, {"C.utf8", true}, {"POSIX.UTF-8", true}, {"C@euro", true},
		{"C", false}, {"POSIX", false}, {"", false},
		{"en_US.UTF-8", false}, {"de_DE", false}, {"Ca_ES.UTF-8", false},
	} {
		if got := cLocale(c.v); got != c.want {
			t.Errorf("cLocale(%q) = %v; want %v", c.v, got, c.want)
		}
	}
}
