package amtsim

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// vt is a small VT100 screen for the tests: cursor addressing (CSI H),
// erase (CSI 2J), SGR colours and reverse video, the DEC special graphics
// set (ESC ( 0 / ESC ( B), CR, LF and BS. It is written from the VT100
// manual, apart from bios.go.
type vt struct {
	t        *testing.T
	cells    [biosRows][biosCols]cell
	row, col int // from 0
	fg, bg   int
	bold     bool
	reverse  bool
	graphics bool
	state    int // 0 text, 1 after ESC, 2 in CSI, 3 after ESC (
	params   string
}

type cell struct {
	ch      rune
	fg, bg  int
	reverse bool
}

// decGraphics maps the DEC special graphics characters bios.go uses.
var decGraphics = map[byte]rune{'l': '┌', 'k': '┐', 'm': '└', 'j': '┘', 'q': '─', 'x': '│', 'w': '┬', 'v': '┴', 't': '├', 'u': '┤', 'n': '┼'}

func newVT(t *testing.T) *vt {
	v := &vt{t: t, fg: 37, bg: 40}
	v.clear()
	return v
}

func (v *vt) clear() {
	for r := range v.cells {
		for c := range v.cells[r] {
			v.cells[r][c] = cell{ch: ' ', fg: v.fg, bg: v.bg}
		}
	}
}

func (v *vt) write(b []byte) {
	for _, c := range b {
		switch v.state {
		case 1:
			switch c {
			case '[':
				v.state, v.params = 2, ""
			case '(':
				v.state = 3
			default:
				v.t.Fatalf("unexpected ESC %q", c)
			}
		case 3:
			v.graphics, v.state = c == '0', 0
		case 2:
			if c >= 0x40 && c <= 0x7E {
				v.csi(c)
				v.state = 0
			} else {
				v.params += string(c)
			}
		default:
			v.text(c)
		}
	}
}

func (v *vt) text(c byte) {
	switch {
	case c == 0x1B:
		v.state = 1
	case c == '\r':
		v.col = 0
	case c == '\n':
		v.row = min(v.row+1, biosRows-1)
	case c == '\b':
		v.col = max(v.col-1, 0)
	case c < 0x20 || c >= 0x7F:
		v.t.Fatalf("the screen sent control byte %#x", c)
	default:
		ch := rune(c)
		if g, ok := decGraphics[c]; ok && v.graphics {
			ch = g
		}
		if v.col < biosCols {
			v.cells[v.row][v.col] = cell{ch: ch, fg: v.fg, bg: v.bg, reverse: v.reverse}
		}
		v.col = min(v.col+1, biosCols) // no auto-wrap beyond the last column
	}
}

func (v *vt) csi(final byte) {
	var ps []int
	for _, s := range strings.Split(v.params, ";") {
		n, _ := strconv.Atoi(s)
		ps = append(ps, n)
	}
	switch final {
	case 'H':
		r, c := 1, 1
		if len(ps) >= 1 && ps[0] > 0 {
			r = ps[0]
		}
		if len(ps) >= 2 && ps[1] > 0 {
			c = ps[1]
		}
		if r > biosRows || c > biosCols {
			v.t.Fatalf("cursor moved to %d;%d, outside 80x25", r, c)
		}
		v.row, v.col = r-1, c-1
	case 'J':
		v.clear()
	case 'm':
		for _, p := range ps {
			switch {
			case p == 0:
				v.fg, v.bg, v.bold, v.reverse = 37, 40, false, false
			case p == 1:
				v.bold = true
			case p == 7:
				v.reverse = true
			case p >= 30 && p <= 37:
				v.fg = p
			case p >= 40 && p <= 47:
				v.bg = p
			default:
				v.t.Fatalf("unexpected SGR %d", p)
			}
		}
	default:
		v.t.Fatalf("unexpected CSI %q%c", v.params, final)
	}
}

// line returns row r (from 1) as text.
func (v *vt) line(r int) string {
	var b strings.Builder
	for _, c := range v.cells[r-1] {
		b.WriteRune(c.ch)
	}
	return b.String()
}

func (v *vt) at(r, c int) cell { return v.cells[r-1][c-1] }

func TestBIOSScreen(t *testing.T) {
	hw, _ := HardwareProfile("desktop")
	s := newBIOSScreen("sim-000001", hw)
	v := newVT(t)
	v.write(s.paint())

	if l := v.line(1); !strings.Contains(l, "SimBIOS Inc. Setup Utility") || v.at(1, 40).bg != 44 {
		t.Fatalf("title %q", l)
	}
	// The frame: corners, edges and the split, in line drawing.
	for _, pos := range []struct {
		r, c int
		ch   rune
	}{
		{biosFrameTop, 1, '┌'}, {biosFrameTop, biosCols, '┐'}, {biosFrameBot, 1, '└'}, {biosFrameBot, biosCols, '┘'},
		{biosFrameTop, 2, '─'}, {biosFrameTop + 1, 1, '│'}, {biosFrameTop, biosSplitCol, '┬'}, {biosFrameBot, biosSplitCol, '┴'},
		{biosFrameTop + 5, biosSplitCol, '│'},
	} {
		if got := v.at(pos.r, pos.c).ch; got != pos.ch {
			t.Errorf("cell %d;%d = %q; want %q", pos.r, pos.c, got, pos.ch)
		}
	}
	if l := v.line(biosMenuRow + 1); !strings.Contains(l, "BIOS Version") || !strings.Contains(l, "U21 Ver. 02.13.00") {
		t.Fatalf("menu line %q", l)
	}
	// The first item is selected: black on grey.
	sel := func(i int) bool { return v.at(biosMenuRow+i, biosMenuCol).bg == 47 }
	if !sel(0) || sel(1) {
		t.Fatal("the first item is not the only one selected")
	}
	for r := 1; r <= biosRows; r++ {
		if n := utf8.RuneCountInString(v.line(r)); n != biosCols {
			t.Fatalf("row %d has %d columns", r, n)
		}
	}

	// Arrow keys move the selection, also split across calls.
	v.write(s.input([]byte("\x1b[B")))
	v.write(s.input([]byte("\x1b")))
	v.write(s.input([]byte("[")))
	v.write(s.input([]byte("B")))
	v.write(s.input([]byte("\x1bOA")))
	if !sel(1) || sel(0) || sel(2) {
		t.Fatalf("after down, down, up the selection is not item 1")
	}
	// Keys echo in the field, at the cursor; backspace erases.
	v.write(s.input([]byte("abc\x7fd")))
	if got := string([]rune(v.line(biosKeysRow))[biosKeysCol-1 : biosKeysCol+2]); got != "abd" {
		t.Fatalf("keys field %q; want abd", got)
	}
	if v.row != biosKeysRow-1 || v.col != biosKeysCol-1+3 {
		t.Fatalf("cursor at %d;%d; want after the typed keys", v.row+1, v.col+1)
	}
	// Enter changes a value with choices.
	for range 3 {
		v.write(s.input([]byte("\x1b[B")))
	}
	v.write(s.input([]byte("\r\n")))
	if l := v.line(biosMenuRow + 4); !strings.Contains(l, "[Legacy]") {
		t.Fatalf("after Enter on Boot Mode: %q", l)
	}
	if l := v.line(biosMsgRow); !strings.Contains(l, "Boot Mode set to [Legacy].") {
		t.Fatalf("message %q", l)
	}
	v.write(s.input([]byte("\x1b[21~")))
	if l := v.line(biosMsgRow); !strings.Contains(l, "Configuration saved") {
		t.Fatalf("after F10: %q", l)
	}
	// A lone Esc, then a key.
	v.write(s.input([]byte("\x1bz")))
	if l := v.line(biosMsgRow); !strings.Contains(l, "Exit discarding changes") || !strings.Contains(v.line(biosKeysRow), "abdz") {
		t.Fatalf("after Esc z: %q / %q", l, v.line(biosKeysRow))
	}
	// Long garbage sequences are dropped, long input is capped.
	v.write(s.input([]byte("\x1b[" + strings.Repeat("9", 40) + "q")))
	v.write(s.input([]byte(strings.Repeat("x", 100))))
	if n := len(s.keys); n != biosKeysMax {
		t.Fatalf("%d keys kept; want %d", n, biosKeysMax)
	}
}

// TestRedirBIOSScreen serves the BIOS screen over SOL: by configuration,
// and after a boot into BIOS setup.
func TestRedirBIOSScreen(t *testing.T) {
	cfg := redirConfig()
	cfg.Screen = SOLBIOS
	s := NewRedirServer(cfg)
	r, run := serveOne(t, s, nil)
	c, err := DialSOL(r.c, testUser, testPassword, SOLAuthDigest)
	if err != nil {
		t.Fatal(err)
	}
	v := newVT(t)
	out := readUntil(t, c, "\x1b[20;10H\x1b[0;1;37;44m") // parked at the keys field
	v.write([]byte(out))
	if !strings.Contains(v.line(biosMenuRow), redirHost) || v.at(biosFrameTop, 1).ch != '┌' {
		t.Fatalf("screen:\n%s\n%s", v.line(biosFrameTop), v.line(biosMenuRow))
	}
	c.Write([]byte("hi"))
	v.write([]byte(readUntil(t, c, "hi")))
	if !strings.Contains(v.line(biosKeysRow), "Keys: hi") {
		t.Fatalf("keys row %q", v.line(biosKeysRow))
	}
	c.End()
	if err := run.wait(t); err != nil {
		t.Fatal(err)
	}

	t.Run("after a boot into setup", func(t *testing.T) {
		p, _ := NewPlatform(nil, testUUID, nil)
		p.mu.Lock()
		p.boot.BIOSSetup, p.bootNext = true, true
		rv := p.requestPowerStateChange(PowerReset, testUser, "")
		p.mu.Unlock()
		if rv != 0 {
			t.Fatalf("reset = %d", rv)
		}
		c, err := DialSOL(dialT(t, listenRedir(t, redirWith(t, p, SOLShell))), testUser, testPassword, SOLAuthDigest)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		readUntil(t, c, "Setup Utility - Presence Simulated Systems SimDesk 800 G9")
	})
}

func FuzzBIOSInput(f *testing.F) {
	f.Add([]byte("\x1b[A\x1b[B\r\nabc\x7f\x1b[21~\x1bOY\x1b"))
	f.Add([]byte("\x1b\x1b\x1b[[[[\x1bO"))
	hw, _ := HardwareProfile("laptop")
	f.Fuzz(func(t *testing.T, in []byte) {
		s := newBIOSScreen("h", hw)
		v := newVT(t)
		v.write(s.paint())
		for len(in) > 0 {
			k := min(len(in), 3)
			v.write(s.input(in[:k]))
			in = in[k:]
		}
		if s.sel < 0 || s.sel >= len(s.items) || len(s.keys) > biosKeysMax || len(s.esc) > biosMaxEsc {
			t.Fatalf("state sel %d keys %d esc %d", s.sel, len(s.keys), len(s.esc))
		}
	})
}
