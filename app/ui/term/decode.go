package term

import (
	"unicode/utf8"
)

// Charset says how the device's bytes above 0x7F are read.
type Charset int

const (
	// CharsetAuto reads UTF-8 until the device sends a byte sequence that
	// is not UTF-8, and code page 437 from then on (until the terminal is
	// attached again). BIOS setup screens in "PC-ANSI" mode draw their
	// frames with CP437 box characters (MeshCommander's SOL terminal
	// maps every byte above 0x7F through CP437), while a Linux console or
	// a BIOS in VT-UTF8 mode sends UTF-8. Two-byte UTF-8 sequences count
	// as UTF-8 only with the lead bytes C2 and C3 (Latin-1): the others
	// (C4 to DF) are CP437 line-drawing bytes, and "─┐" (C4 BF) must not
	// become "Ŀ".
	CharsetAuto Charset = iota
	// CharsetUTF8 reads UTF-8; invalid bytes become U+FFFD.
	CharsetUTF8
	// CharsetCP437 reads every byte above 0x7F as code page 437.
	CharsetCP437
)

// cp437 maps the bytes 0x80 to 0xFF of code page 437 to Unicode.
var cp437 = [128]rune{
	'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å',
	'É', 'æ', 'Æ', 'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ',
	'á', 'í', 'ó', 'ú', 'ñ', 'Ñ', 'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»',
	'░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕', '╣', '║', '╗', '╝', '╜', '╛', '┐',
	'└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦', '╠', '═', '╬', '╧',
	'╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐', '▀',
	'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩',
	'≡', '±', '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u00a0',
}

// cp437Byte returns the CP437 byte of r, for typed characters.
func cp437Byte(r rune) (byte, bool) {
	for i, c := range cp437 {
		if c == r {
			return byte(0x80 + i), true
		}
	}
	return 0, false
}

// Limits of the escape sequences passed on to the emulator.
const (
	maxCSI    = 32   // bytes of a CSI sequence's parameters; longer ones are dropped
	maxParam  = 9999 // largest numeric parameter
	maxString = 4096 // runes of an OSC, DCS, APC or PM string before it is abandoned
)

// Parser states of the sanitizer.
const (
	stGround  = iota
	stEsc     // after ESC
	stCSI     // in ESC [ ...
	stString  // in an OSC, DCS, APC or PM string: dropped
	stStrEsc  // ESC inside such a string
	stSkip    // the designator of ESC ) * + (G1 to G3)
	stCharset // the designator of ESC ( (G0)
)

// decoder turns the device's bytes into the UTF-8 the emulator
// (github.com/hinshun/vt10x) reads, and keeps from it what it does not
// handle safely:
//   - bytes above 0x7F are decoded per [Charset], and sequences split
//     across reads are completed first (vt10x drops a partial rune);
//   - OSC, DCS, APC and PM strings are dropped (vt10x would let a device
//     fill its colour table or swallow the screen in an unterminated
//     string); CAN, SUB and maxString end them;
//   - CSI sequences with intermediate bytes, with more than maxCSI bytes
//     or broken by a non-ASCII character are dropped; numeric parameters
//     are capped at maxParam, a count of 0 reads as 1, and the tab counts
//     of CHT and CBT at the width (vt10x would loop or index out of range
//     on huge or negative counts);
//   - SO and SI, which vt10x ignores, switch to the G1 or G0 set that ESC
//     ) 0 / ESC ( 0 designated, as ESC ( 0 and ESC ( B;
//   - ESC ) X, ESC * X and ESC + X are dropped whole (vt10x prints X).
//
// It is used under the terminal's lock.
type decoder struct {
	charset Charset
	cp      bool    // Auto has switched to CP437
	part    [4]byte // an incomplete UTF-8 sequence
	npart   int
	cols    int // for CHT and CBT

	state   int
	csi     []byte
	csiDrop bool // the CSI sequence is dropped at its final byte
	strLen  int

	g0Gfx, g1Gfx, shifted bool
}

func (d *decoder) reset() {
	*d = decoder{charset: d.charset, cols: d.cols, csi: d.csi[:0]}
}

// decode appends the sanitized UTF-8 of in to out.
func (d *decoder) decode(out, in []byte) []byte {
	for _, b := range in {
		if d.npart > 0 || b >= 0x80 {
			out = d.high(out, b)
			continue
		}
		out = d.rune(out, rune(b))
	}
	return out
}

// high handles a byte of a non-ASCII sequence.
func (d *decoder) high(out []byte, b byte) []byte {
	if d.charset == CharsetCP437 || d.cp {
		if b < 0x80 {
			return d.rune(out, rune(b))
		}
		return d.rune(out, cp437[b-0x80])
	}
	if d.npart == 0 {
		if !utf8.RuneStart(b) || b < 0xC2 || b > 0xF4 {
			return d.invalid(out, b)
		}
		d.part[0], d.npart = b, 1
		return out
	}
	if b < 0x80 || b > 0xBF {
		// The sequence broke off: its bytes were not UTF-8.
		out = d.flushInvalid(out)
		if b < 0x80 {
			return d.rune(out, rune(b))
		}
		return d.high(out, b)
	}
	d.part[d.npart] = b
	d.npart++
	seq := d.part[:d.npart]
	if !utf8.FullRune(seq) {
		return out
	}
	r, n := utf8.DecodeRune(seq)
	if r == utf8.RuneError || n != len(seq) || (d.charset == CharsetAuto && n == 2 && seq[0] > 0xC3) {
		return d.flushInvalid(out)
	}
	d.npart = 0
	return d.rune(out, r)
}

// invalid handles a byte that cannot be UTF-8 here.
func (d *decoder) invalid(out []byte, b byte) []byte {
	if d.charset == CharsetUTF8 {
		return d.rune(out, utf8.RuneError)
	}
	d.cp = true // Auto: the device speaks CP437
	return d.rune(out, cp437[b-0x80])
}

// flushInvalid re-reads the pending bytes as not UTF-8.
func (d *decoder) flushInvalid(out []byte) []byte {
	p := d.part
	n := d.npart
	d.npart = 0
	if d.charset == CharsetUTF8 {
		return d.rune(out, utf8.RuneError)
	}
	d.cp = true
	for _, b := range p[:n] {
		out = d.rune(out, cp437[b-0x80])
	}
	return out
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7F }

// rune passes one decoded character through the escape sanitizer.
func (d *decoder) rune(out []byte, r rune) []byte {
	switch d.state {
	case stGround:
		switch r {
		case 0x1B:
			d.state = stEsc
			return out
		case 0x0E: // SO: G1
			d.shifted = true
			return d.designate(out, d.g1Gfx)
		case 0x0F: // SI: G0
			d.shifted = false
			return d.designate(out, d.g0Gfx)
		}
		if r >= 0x80 && r < 0xA0 {
			return out // C1 controls: vt10x would print them
		}
		return utf8.AppendRune(out, r)

	case stEsc:
		if isControl(r) {
			switch r {
			case 0x1B: // a second ESC starts over
			case 0x18, 0x1A: // CAN, SUB cancel
				d.state = stGround
			default: // executed inside the sequence, as vt10x does
				out = append(out, byte(r))
			}
			return out
		}
		d.state = stGround
		switch r {
		case '[':
			d.state, d.csi, d.csiDrop = stCSI, d.csi[:0], false
		case ']', 'P', '_', '^', 'k':
			d.state, d.strLen = stString, 0
		case '(':
			d.state = stCharset
		case ')', '*', '+':
			d.state = stSkip
		case 'c': // RIS
			d.g0Gfx, d.g1Gfx, d.shifted = false, false, false
			out = append(out, 0x1B, 'c')
		default:
			if r < 0x80 {
				out = append(out, 0x1B, byte(r))
			}
		}
		return out

	case stCharset:
		d.state = stGround
		if isControl(r) || r >= 0x80 {
			return d.rune(out, r)
		}
		if r == '0' || r == 'B' {
			d.g0Gfx = r == '0'
			if !d.shifted {
				return d.designate(out, d.g0Gfx)
			}
		}
		return out

	case stSkip:
		d.state = stGround
		if r == '0' || r == 'B' {
			d.g1Gfx = r == '0' // ESC ) designates G1; * and + are never shifted in
			if d.shifted {
				return d.designate(out, d.g1Gfx)
			}
		}
		return out

	case stString:
		d.strLen++
		switch {
		case r == 0x07 || r == 0x18 || r == 0x1A || d.strLen > maxString:
			d.state = stGround
		case r == 0x1B:
			d.state = stStrEsc
		}
		return out

	case stStrEsc:
		d.state = stGround
		if r != '\\' {
			return d.rune(out, r) // an ESC that was not ST starts a new sequence
		}
		return out

	case stCSI:
		switch {
		case r >= 0x40 && r <= 0x7E:
			d.state = stGround
			if d.csiDrop {
				return out
			}
			return d.emitCSI(out, byte(r))
		case r >= 0x30 && r <= 0x3F:
			if len(d.csi) >= maxCSI {
				d.csiDrop = true
			} else {
				d.csi = append(d.csi, byte(r))
			}
		case r >= 0x20 && r <= 0x2F:
			d.csiDrop = true // intermediates: sequences vt10x does not know
		case r == 0x1B:
			d.state = stEsc
		case r == 0x18 || r == 0x1A:
			d.state = stGround
		case isControl(r):
			out = append(out, byte(r))
		default: // non-ASCII: not a sequence
			d.state = stGround
		}
		return out
	}
	return out
}

// designate switches vt10x's only character set (G0) to line drawing or
// ASCII.
func (d *decoder) designate(out []byte, gfx bool) []byte {
	if gfx {
		return append(out, 0x1B, '(', '0')
	}
	return append(out, 0x1B, '(', 'B')
}

// emitCSI appends ESC [ with the collected parameters, capped, and final.
func (d *decoder) emitCSI(out []byte, final byte) []byte {
	out = append(out, 0x1B, '[')
	limit := maxParam
	zeroIsOne := false
	switch final {
	case 'I', 'Z':
		limit = max(d.cols, 1)
		zeroIsOne = true
	case '@', 'P', 'X', 'L', 'M', 'A', 'B', 'C', 'D', 'E', 'F', 'S', 'T':
		zeroIsOne = true
	}
	p := d.csi
	for len(p) > 0 {
		if p[0] < '0' || p[0] > '9' {
			out = append(out, p[0])
			p = p[1:]
			continue
		}
		n := 0
		for len(p) > 0 && p[0] >= '0' && p[0] <= '9' {
			n = min(n*10+int(p[0]-'0'), 1<<20)
			p = p[1:]
		}
		if n == 0 && zeroIsOne {
			n = 1
		}
		out = appendInt(out, min(n, limit))
	}
	return append(out, final)
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}
