package mps

import (
	"testing"

	"github.com/presence-mps/presence/mps/apf"
)

// Alias finds what SetAlias set, in any case and with ".amt", and
// nothing else.
func TestAlias(t *testing.T) {
	s := &Server{aliases: map[string]apf.UUID{}}
	const guid = "fd7ceacc-93ab-493d-a2d4-c6ddef1da088"
	if err := s.SetAlias("Front-Desk", "FD7CEACC93AB493DA2D4C6DDEF1DA088"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"front-desk", "FRONT-DESK.amt"} {
		if g, ok := s.Alias(name); !ok || g != guid {
			t.Errorf("Alias(%q) = %q, %v", name, g, ok)
		}
	}
	if g, ok := s.Alias("back-office"); ok {
		t.Errorf("an unknown alias named %q", g)
	}
	if g := s.Aliases()["front-desk"]; g != guid {
		t.Errorf("Aliases disagrees: %q", g)
	}
}
