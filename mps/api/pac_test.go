package api

import (
	"strings"
	"testing"
)

// Host names come from devices: a hostile one must stay a string literal.
func TestPACScriptQuotesNames(t *testing.T) {
	evil := "x\"; return \"PROXY evil:1\"; //\n</script>\u2028"
	s := pacScript("10.0.0.5:1080", []string{"sim-1", evil})
	if !strings.Contains(s, `"sim-1": 1`) || !strings.Contains(s, `var p = "PROXY 10.0.0.5:1080";`) {
		t.Fatalf("script:\n%s", s)
	}
	line := s[strings.Index(s, "var devices"):]
	line = line[:strings.Index(line, "\n")]
	bare := strings.ReplaceAll(line, `\"`, "")
	if strings.Count(bare, `"`) != 4 || strings.Contains(line, "\u2028") || strings.Count(s, "\n") != 10 {
		t.Fatalf("hostile name escaped its string:\n%s", line)
	}
	if !strings.HasSuffix(s, "  return \"DIRECT\";\n}\n") {
		t.Fatalf("script does not end with DIRECT:\n%s", s)
	}
}
