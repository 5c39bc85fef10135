package amtsim

// A BIOS-like setup screen for the serial console ([SOLBIOS]), so that a
// terminal can be tested against what real BIOS setup utilities send over
// SOL in VT100 mode: an 80×25 screen addressed with CSI row;col H, colours
// and reverse video with SGR, a frame of DEC special graphics (ESC ( 0),
// a menu the arrow keys move through, values Enter changes, and an input
// field that echoes printable keystrokes at the cursor.

import (
	"fmt"
	"strconv"
	"strings"
)

const (
	biosCols     = 80
	biosRows     = 25
	biosMenuRow  = 5  // row of the first menu item
	biosMenuCol  = 4  // column of the menu items
	biosMenuW    = 48 // width of an item line
	biosKeysRow  = 20 // the input field's row
	biosKeysCol  = 10 // its first column
	biosKeysMax  = 40 // characters it keeps
	biosMsgRow   = 21
	biosMaxEsc   = 16 // bytes of an escape sequence kept before giving up
	biosHelpCol  = 56
	biosFrameTop = 3
	biosFrameBot = 23
	biosSplitCol = 54
)

// SGR attributes of the screen's parts.
const (
	sgrNormal = "\x1b[0;37;44m"   // light grey on blue
	sgrTitle  = "\x1b[0;1;33;44m" // bold yellow on blue
	sgrTabs   = "\x1b[0;30;46m"   // black on cyan
	sgrTabSel = "\x1b[0;1;37;44m" // the selected tab
	sgrSelect = "\x1b[0;30;47m"   // black on grey: the selected item
	sgrValue  = "\x1b[0;1;37;44m" // bold white on blue
	sgrFooter = "\x1b[0;30;46m"
	sgrReset  = "\x1b[0m"
	decOn     = "\x1b(0" // DEC special graphics
	decOff    = "\x1b(B" // ASCII
)

// biosItem is a menu line: a label and a value; a value with choices
// cycles through them on Enter.
type biosItem struct {
	label   string
	value   string
	choices []string
}

// biosScreen is one session's setup screen. It is used by the session's
// reader goroutine only.
type biosScreen struct {
	title  string
	items  []biosItem
	sel    int
	keys   []byte
	esc    []byte // a pending escape sequence
	msg    string
	lastCR bool
}

func newBIOSScreen(host string, hw Hardware) *biosScreen {
	mem := 0
	for _, m := range hw.Memory {
		mem += m.SizeMB
	}
	return &biosScreen{
		title: hw.BIOSVendor + " Setup Utility - " + hw.Manufacturer + " " + hw.Model,
		items: []biosItem{
			{label: "System Name", value: host},
			{label: "BIOS Version", value: hw.BIOSVersion},
			{label: "Processor", value: hw.CPU},
			{label: "Total Memory", value: strconv.Itoa(mem) + " MB"},
			{label: "Boot Mode", value: "[UEFI]", choices: []string{"[UEFI]", "[Legacy]"}},
			{label: "First Boot Device", value: "[Hard Drive]", choices: []string{"[Hard Drive]", "[Network (PXE)]", "[USB Storage]"}},
			{label: "Intel(R) AMT", value: "[Enabled]", choices: []string{"[Enabled]", "[Disabled]"}},
			{label: "Serial Console Redirection", value: "[Enabled]", choices: []string{"[Enabled]", "[Disabled]"}},
			{label: "Secure Boot", value: "[Enabled]", choices: []string{"[Enabled]", "[Disabled]"}},
		},
	}
}

// cup moves the cursor to row and column, from 1.
func cup(b *strings.Builder, row, col int) { fmt.Fprintf(b, "\x1b[%d;%dH", row, col) }

// fit cuts s to printable ASCII of width w, padded with spaces.
func fit(s string, w int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == w {
			break
		}
		if r < 0x20 || r > 0x7E {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String() + strings.Repeat(" ", w-b.Len())
}

// paint draws the whole screen.
func (s *biosScreen) paint() []byte {
	var b strings.Builder
	b.WriteString(sgrReset + decOff + sgrNormal + "\x1b[2J\x1b[H")
	cup(&b, 1, 1)
	b.WriteString(sgrTitle + fit(centre(s.title, biosCols), biosCols))
	cup(&b, 2, 1)
	b.WriteString(sgrTabs + " ")
	b.WriteString(sgrTabSel + " Main " + sgrTabs)
	b.WriteString(fit("  Advanced   Security   Boot   Exit", biosCols-7))
	s.frame(&b)
	for i := range s.items {
		s.item(&b, i)
	}
	for i, line := range []string{"Up/Down: select item", "Enter: change value", "Type: keys field", "F10: save and exit", "Esc: discard and exit"} {
		cup(&b, biosMenuRow+i, biosHelpCol)
		b.WriteString(sgrNormal + fit(line, biosCols-biosHelpCol-1))
	}
	cup(&b, biosKeysRow, biosMenuCol)
	b.WriteString(sgrNormal + "Keys:")
	s.field(&b)
	s.message(&b)
	cup(&b, biosRows-1, 1)
	b.WriteString(sgrFooter + fit(" Up/Down Select   Enter Change   F10 Save & Exit   Esc Exit", biosCols))
	s.cursor(&b)
	return []byte(b.String())
}

func centre(s string, w int) string {
	if len(s) >= w {
		return s
	}
	return strings.Repeat(" ", (w-len(s))/2) + s
}

// frame draws the box with its vertical split in DEC special graphics:
// l k m j corners, q horizontal, x vertical, w v tees.
func (s *biosScreen) frame(b *strings.Builder) {
	b.WriteString(sgrNormal + decOn)
	inner := biosCols - 2
	cup(b, biosFrameTop, 1)
	b.WriteString("l" + strings.Repeat("q", biosSplitCol-2) + "w" + strings.Repeat("q", inner-biosSplitCol+1) + "k")
	for r := biosFrameTop + 1; r < biosFrameBot; r++ {
		cup(b, r, 1)
		b.WriteString("x" + decOff + strings.Repeat(" ", biosSplitCol-2) + decOn + "x" +
			decOff + strings.Repeat(" ", inner-biosSplitCol+1) + decOn + "x")
	}
	cup(b, biosFrameBot, 1)
	b.WriteString("m" + strings.Repeat("q", biosSplitCol-2) + "v" + strings.Repeat("q", inner-biosSplitCol+1) + "j")
	b.WriteString(decOff)
}

// item draws menu line i, reversed when selected.
func (s *biosScreen) item(b *strings.Builder, i int) {
	it := s.items[i]
	cup(b, biosMenuRow+i, biosMenuCol)
	label := fit(it.label, 27)
	value := fit(it.value, biosMenuW-28)
	if i == s.sel {
		b.WriteString(sgrSelect + label + " " + value)
		return
	}
	b.WriteString(sgrNormal + label + " ")
	if it.choices != nil {
		b.WriteString(sgrValue)
	}
	b.WriteString(value)
}

// field draws the input field with the keys typed so far.
func (s *biosScreen) field(b *strings.Builder) {
	cup(b, biosKeysRow, biosKeysCol)
	b.WriteString(sgrValue + fit(string(s.keys), biosKeysMax))
}

func (s *biosScreen) message(b *strings.Builder) {
	cup(b, biosMsgRow, biosMenuCol)
	b.WriteString(sgrNormal + fit(s.msg, biosMenuW))
}

// cursor parks the cursor after the typed keys.
func (s *biosScreen) cursor(b *strings.Builder) {
	cup(b, biosKeysRow, biosKeysCol+len(s.keys))
	b.WriteString(sgrValue)
}

// input handles keystrokes and returns what the screen sends back.
// Escape sequences may arrive split across calls.
func (s *biosScreen) input(in []byte) []byte {
	var b strings.Builder
	echoing := false // the last output was an echo: the attributes are set
	for _, c := range in {
		if len(s.esc) > 0 {
			s.escape(&b, c)
			echoing = false
			continue
		}
		cr := s.lastCR
		s.lastCR = c == '\r'
		if c < 0x20 || c >= 0x7F {
			echoing = false
		}
		switch {
		case c == 0x1B:
			s.esc = append(s.esc, c)
		case c == '\n' && cr:
			// The LF of a CR LF Enter.
		case c == '\r' || c == '\n':
			s.change(&b)
		case c == 0x7F || c == '\b':
			if len(s.keys) > 0 {
				s.keys = s.keys[:len(s.keys)-1]
				cup(&b, biosKeysRow, biosKeysCol+len(s.keys))
				b.WriteString(sgrValue + " ")
				s.cursor(&b)
			}
		case c >= 0x20 && c < 0x7F:
			if len(s.keys) < biosKeysMax {
				// Echo at the cursor, where the last key left it.
				s.keys = append(s.keys, c)
				if !echoing {
					b.WriteString(sgrValue)
					echoing = true
				}
				b.WriteByte(c)
			}
		}
	}
	return []byte(b.String())
}

// escape continues an escape sequence with c.
func (s *biosScreen) escape(b *strings.Builder, c byte) {
	s.esc = append(s.esc, c)
	seq := string(s.esc)
	switch {
	case len(s.esc) == 2 && c != '[' && c != 'O':
		// A lone Esc, then an ordinary key.
		s.esc = s.esc[:0]
		s.say(b, "Exit discarding changes? F10 saves them.")
		b.Write(s.input([]byte{c}))
		return
	case len(s.esc) == 2:
		return
	case c >= 0x40 && c <= 0x7E: // a final byte
	case len(s.esc) >= biosMaxEsc:
		s.esc = s.esc[:0]
		return
	default:
		return
	}
	s.esc = s.esc[:0]
	switch seq {
	case "\x1b[A", "\x1bOA":
		s.move(b, -1)
	case "\x1b[B", "\x1bOB":
		s.move(b, 1)
	case "\x1b[21~", "\x1bOY", "\x1b[[J":
		s.say(b, "Configuration saved. Exiting setup...")
	}
}

func (s *biosScreen) move(b *strings.Builder, d int) {
	old := s.sel
	s.sel = (s.sel + d + len(s.items)) % len(s.items)
	s.item(b, old)
	s.item(b, s.sel)
	s.cursor(b)
}

// change cycles the selected item's value.
func (s *biosScreen) change(b *strings.Builder) {
	it := &s.items[s.sel]
	if it.choices == nil {
		s.say(b, it.label+" cannot be changed.")
		return
	}
	for i, v := range it.choices {
		if v == it.value {
			it.value = it.choices[(i+1)%len(it.choices)]
			break
		}
	}
	s.item(b, s.sel)
	s.say(b, it.label+" set to "+it.value+".")
}

func (s *biosScreen) say(b *strings.Builder, msg string) {
	s.msg = msg
	s.message(b)
	s.cursor(b)
}

// BIOSScreen returns the bytes the [SOLBIOS] screen paints when a SOL
// session starts on host with hardware hw (what the device sends after
// 0x21), for the tests of terminals.
func BIOSScreen(host string, hw Hardware) []byte { return newBIOSScreen(host, hw).paint() }
