package etcdstore

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/presence-mps/presence/mps/fleet"
)

const g1 = "8c2d8a4e-1f3b-4c5d-9e6f-0a1b2c3d4e5f"

func TestDecodeOwner(t *testing.T) {
	good := `{"guid":"` + g1 + `","host":"amt-1.example","instance":"a","conn":7,"since":"2026-12-02T08:00:00Z"}`
	for _, tc := range []struct {
		name, guid, val string
		ok              bool
	}{
		{"good", g1, good, true},
		{"no host", g1, `{"guid":"` + g1 + `","instance":"a","conn":1}`, true},
		{"too large", g1, good + strings.Repeat(" ", maxValue), false},
		{"not json", g1, `{"guid":`, false},
		{"not an object", g1, `[1,2]`, false},
		{"another guid", g1, strings.Replace(good, g1, strings.Replace(g1, "8", "9", 1), 1), false},
		{"upper-case guid", strings.ToUpper(g1), strings.Replace(good, g1, strings.ToUpper(g1), 1), false},
		{"key too long", strings.Repeat("a", maxGUID+1), good, false},
		{"key with a slash", "../instances/a", good, false},
		{"no instance", g1, `{"guid":"` + g1 + `","conn":1}`, false},
		{"instance with a slash", g1, strings.Replace(good, `"instance":"a"`, `"instance":"a/b"`, 1), false},
		{"host with a newline", g1, strings.Replace(good, "amt-1.example", `amt\n1`, 1), false},
		{"host too long", g1, strings.Replace(good, "amt-1.example", strings.Repeat("h", maxField+1), 1), false},
		{"bad time", g1, strings.Replace(good, "2026-12-02T08:00:00Z", "yesterday", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := decodeOwner(tc.guid, []byte(tc.val))
			if (err == nil) != tc.ok {
				t.Fatalf("decodeOwner(%q, %.60q) = %+v, %v; want ok %v", tc.guid, tc.val, o, err, tc.ok)
			}
			if !tc.ok && o != (fleet.Owner{}) {
				t.Errorf("decodeOwner failed but returned %+v", o)
			}
		})
	}
}

func TestDecodeMember(t *testing.T) {
	for _, tc := range []struct {
		name, id, val string
		ok            bool
	}{
		{"good", "a", `{"id":"a","name":"mps-a.example","peer_addr":"10.0.0.1:16991","version":"1.2"}`, true},
		{"another id", "a", `{"id":"b"}`, false},
		{"bad key", "a/b", `{"id":"a/b"}`, false},
		{"control character", "a", `{"id":"a","name":"x\u0007"}`, false},
		{"too large", "a", `{"id":"a","name":"` + strings.Repeat("x", maxValue) + `"}`, false},
		{"not json", "a", `}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeMember(tc.id, []byte(tc.val))
			if (err == nil) != tc.ok {
				t.Fatalf("decodeMember(%q, %.60q) = %+v, %v; want ok %v", tc.id, tc.val, m, err, tc.ok)
			}
		})
	}
}

// FuzzDecodeOwner: decoding never panics, and what decodes is within the
// limits and encodes back to an equal Owner.
func FuzzDecodeOwner(f *testing.F) {
	f.Add(g1, `{"guid":"`+g1+`","host":"h","instance":"a","conn":7,"since":"2026-12-02T08:00:00Z"}`)
	f.Add(g1, `{"guid":"`+g1+`","instance":"a","conn":18446744073709551615}`)
	f.Add("x", `{"guid":"x","instance":"\u00ff"}`)
	f.Add(g1, `null`)
	f.Fuzz(func(t *testing.T, guid, val string) {
		o, err := decodeOwner(guid, []byte(val))
		if err != nil {
			return
		}
		if err := checkOwner(o); err != nil || o.GUID != guid {
			t.Fatalf("decoded %+v from %q: %v", o, val, err)
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		o2, err := decodeOwner(guid, b)
		if err != nil || !o2.Same(o) || !o2.Since.Equal(o.Since) || o2.Host != o.Host {
			t.Fatalf("round trip of %+v: %+v, %v", o, o2, err)
		}
	})
}
