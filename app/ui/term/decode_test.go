package term

import (
	"strings"
	"testing"
	"unicode/utf8"

	"fyne.io/fyne/v2/test"
)

func decodeAll(d *decoder, chunks ...string) string {
	var out []byte
	for _, c := range chunks {
		out = d.decode(out, []byte(c))
	}
	return string(out)
}

// TestCharsets: UTF-8 split across reads, CP437 box drawing detected by
// its first byte that is not UTF-8 (and "─┐" not read as "Ŀ"), and the
// fixed charsets.
func TestCharsets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		charset Charset
		in      []string
		want    string
	}{
		{"utf8 split", CharsetAuto, []string{"a\xe2\x94", "\x8c\xe2", "\x94\x80b"}, "a┌─b"},
		{"latin-1 is utf8", CharsetAuto, []string{"caf\xc3\xa9 \xc2\xa9"}, "café ©"},
		{"cp437 frame", CharsetAuto, []string{"\xda\xc4\xc4\xbf\r\n\xb3  \xb3\r\n\xc0\xc4\xc4\xd9"}, "┌──┐\r\n│  │\r\n└──┘"},
		{"cp437 from a two-byte look-alike", CharsetAuto, []string{"\xc4\xbf"}, "─┐"},
		{"cp437 sticks", CharsetAuto, []string{"\xcd", "\xe2\x94\x80"}, "═ΓöÇ"},
		{"cp437 double frame", CharsetCP437, []string{"\xc9\xcd\xbb\xba\xc8\xbc\xdb\xb0"}, "╔═╗║╚╝█░"},
		{"utf8 only", CharsetUTF8, []string{"\xda\xc4x\xe2\x94\x80"}, "\ufffd\ufffdx─"},
		{"broken sequence then ascii", CharsetUTF8, []string{"\xe2\x94x"}, "\ufffdx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &decoder{charset: tc.charset, cols: 80}
			if got := decodeAll(d, tc.in...); got != tc.want {
				t.Fatalf("decode = %q; want %q", got, tc.want)
			}
		})
	}
}

// TestSanitizer: what reaches the emulator of hostile or unsupported
// sequences.
func TestSanitizer(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"plain CSI", "\x1b[1;33;44mX\x1b[2J", "\x1b[1;33;44mX\x1b[2J"},
		{"private mode", "\x1b[?25l\x1b[?1049h", "\x1b[?25l\x1b[?1049h"},
		{"huge count capped", "\x1b[99999999999999999999P", "\x1b[9999P"},
		{"negative count is not one", "\x1b[-5P", ""},
		{"zero count is one", "\x1b[0@\x1b[0P", "\x1b[1@\x1b[1P"},
		{"tab counts capped at the width", "\x1b[500I\x1b[0Z", "\x1b[80I\x1b[1Z"},
		{"too long", "\x1b[" + strings.Repeat("1;", 40) + "m!", "!"},
		{"intermediates", "\x1b[2 qok", "ok"},
		{"OSC title dropped", "\x1b]0;title\x07a\x1b]4;1;rgb:ff/00/00\x1b\\b", "ab"},
		{"DCS dropped", "\x1bPq#0;2;0;0;0\x1b\\c", "c"},
		{"unterminated OSC ends at CAN", "\x1b]0;" + strings.Repeat("x", 10) + "\x18d", "d"},
		{"unterminated OSC ends at its limit", "\x1b]" + strings.Repeat("x", maxString+1) + "e", "e"},
		{"ESC inside CSI restarts", "\x1b[12\x1b[3mf", "\x1b[3mf"},
		{"controls inside CSI run", "\x1b[1\r;2H", "\r\x1b[1;2H"},
		{"G0 line drawing", "\x1b(0lqk\x1b(B", "\x1b(0lqk\x1b(B"},
		{"G1 by SO and SI", "\x1b)0\x0eqq\x0fa", "\x1b(0qq\x1b(Ba"},
		{"other designators dropped", "\x1b(Ka\x1b*0b", "ab"},
		{"C1 controls dropped", "\xc2\x9b2Jg", "2Jg"},
		{"two ESCs", "\x1b\x1b[mh", "\x1b[mh"},
		{"RIS", "\x1bc", "\x1bc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &decoder{cols: 80}
			if got := decodeAll(d, tc.in); got != tc.want {
				t.Fatalf("decode(%q) = %q; want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestEmulation: the emulator behind the decoder shows BIOS-style output
// as a person would read it.
func TestEmulation(t *testing.T) {
	test.NewTempApp(t)
	tm := New()
	tm.Feed([]byte("\x1b[2J\x1b[3;5H\x1b(0lqqk\x1b(B\x1b[4;5Hx\xb3\x1b[4;8H\x1b[1;31mx"))
	lines := strings.Split(tm.Text(), "\n")
	if len(lines) != DefaultRows || lines[2] != "    ┌──┐" || lines[3] != "    x│ x" {
		t.Fatalf("screen:\n%s", tm.Text())
	}
	if row, col, vis := tm.Cursor(); row != 3 || col != 8 || !vis {
		t.Fatalf("cursor %d;%d %v", row, col, vis)
	}
	// The DEC x stayed ASCII after ESC ( B; the CP437 byte is │. Bold red
	// is bright red.
	if c := tm.shown[3*DefaultCols+7]; c.r != 'x' || c.fg != 9 {
		t.Fatalf("cell %+v; want bold red x", c)
	}
	tm.Feed([]byte("\x1b[6n")) // a position report is answered (to no one: not attached)
}

// FuzzFeed: any output, fed in pieces, leaves a screen of the right size
// and never panics or hangs the emulator.
func FuzzFeed(f *testing.F) {
	f.Add([]byte("\x1b[2J\x1b[1;1H\x1b[0;1;33;44mTitle\x1b(0lqk\x1b(B"), uint8(3))
	f.Add([]byte("\x1b[9999;9999H\x1b[99999@\x1b[-1P\x1b[9999I\x1b[?1049h\x1b[5;1r\x1bD\x1bM\x1b#8"), uint8(1))
	f.Add([]byte("\xe2\x94\x8c\xda\xc4\x1b]0;x\x07\x1bP\x1b\\\x0e\x0f\x1b)0"), uint8(2))
	test.NewTempApp(f)
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		tm := New(WithSize(20, 5))
		k := int(step%16) + 1
		for len(in) > 0 {
			n := min(k, len(in))
			tm.Feed(in[:n])
			in = in[n:]
		}
		lines := strings.Split(tm.Text(), "\n")
		if len(lines) != 5 {
			t.Fatalf("%d rows", len(lines))
		}
		for _, l := range lines {
			if utf8.RuneCountInString(l) > 20 {
				t.Fatalf("row %q wider than 20", l)
			}
		}
	})
}
