package term

import (
	"fyne.io/fyne/v2"
)

// FunctionKeys selects what F1 to F12 send. What a given firmware's
// console redirection accepts is not confirmed against real hardware:
// BIOS setup utilities document "VT100", "VT100+", "VT-UTF8" and "ANSI"
// terminal types, and MeshCommander's SOL terminal offers three schemes
// for the same reason. F1 to F4 are ESC O P to ESC O S in the first two.
type FunctionKeys int

const (
	// FunctionKeysXterm sends xterm's sequences, the default: ESC O P to
	// ESC O S for F1 to F4, then ESC [ 15 ~, 17 ~, 18 ~, 19 ~, 20 ~,
	// 21 ~, 23 ~ and 24 ~. Linux consoles and shells over SOL read them,
	// and so does the simulator's BIOS screen (F10 = ESC [ 21 ~).
	FunctionKeysXterm FunctionKeys = iota
	// FunctionKeysVT100Plus sends ESC O P to ESC O [ for F1 to F12 (F10 =
	// ESC O Y), MeshCommander's "VT100+" choice.
	FunctionKeysVT100Plus
	// FunctionKeysEscDigit sends ESC 1 to ESC 9, ESC 0, ESC ! and ESC @
	// for F1 to F12, MeshCommander's "Alternate" choice.
	FunctionKeysEscDigit
)

// fkeyIndex returns 0 to 11 for F1 to F12, or -1.
func fkeyIndex(name fyne.KeyName) int {
	for i, k := range [...]fyne.KeyName{fyne.KeyF1, fyne.KeyF2, fyne.KeyF3, fyne.KeyF4, fyne.KeyF5, fyne.KeyF6,
		fyne.KeyF7, fyne.KeyF8, fyne.KeyF9, fyne.KeyF10, fyne.KeyF11, fyne.KeyF12} {
		if k == name {
			return i
		}
	}
	return -1
}

var xtermF = [12]string{"\x1bOP", "\x1bOQ", "\x1bOR", "\x1bOS", "\x1b[15~", "\x1b[17~", "\x1b[18~", "\x1b[19~",
	"\x1b[20~", "\x1b[21~", "\x1b[23~", "\x1b[24~"}

// keySequence returns the bytes a key that types no character sends, or
// nil. appCursor is DECCKM (ESC [ ? 1 h): the cursor keys, Home and End
// then send ESC O instead of ESC [, as xterm does. Enter sends CR (the
// simulated shell and BIOS screen take CR LF as well, but CR alone is what
// a serial terminal sends); Backspace sends backspace.
func keySequence(name fyne.KeyName, appCursor bool, fk FunctionKeys, backspace byte) []byte {
	cursor := func(c byte) []byte {
		if appCursor {
			return []byte{0x1B, 'O', c}
		}
		return []byte{0x1B, '[', c}
	}
	switch name {
	case fyne.KeyReturn, fyne.KeyEnter:
		return []byte{'\r'}
	case fyne.KeyBackspace:
		return []byte{backspace}
	case fyne.KeyTab:
		return []byte{'\t'}
	case fyne.KeyEscape:
		return []byte{0x1B}
	case fyne.KeyUp:
		return cursor('A')
	case fyne.KeyDown:
		return cursor('B')
	case fyne.KeyRight:
		return cursor('C')
	case fyne.KeyLeft:
		return cursor('D')
	case fyne.KeyHome:
		return cursor('H')
	case fyne.KeyEnd:
		return cursor('F')
	case fyne.KeyInsert:
		return []byte("\x1b[2~")
	case fyne.KeyDelete:
		return []byte("\x1b[3~")
	case fyne.KeyPageUp:
		return []byte("\x1b[5~")
	case fyne.KeyPageDown:
		return []byte("\x1b[6~")
	}
	i := fkeyIndex(name)
	if i < 0 {
		return nil
	}
	switch fk {
	case FunctionKeysVT100Plus:
		return []byte{0x1B, 'O', "PQRSTUVWXYZ["[i]}
	case FunctionKeysEscDigit:
		return []byte{0x1B, "1234567890!@"[i]}
	}
	return []byte(xtermF[i])
}

// ctrlByte returns the control character of Ctrl and the key: ^A to ^Z,
// ^@ (Ctrl+Space or Ctrl+2), ^[ ^\ ^] and ^_ (Ctrl+/ or Ctrl+-).
func ctrlByte(name fyne.KeyName) (byte, bool) {
	if len(name) == 1 && name[0] >= 'A' && name[0] <= 'Z' {
		return name[0] - 'A' + 1, true
	}
	switch name {
	case fyne.KeySpace, fyne.Key2:
		return 0x00, true
	case fyne.KeyLeftBracket:
		return 0x1B, true
	case fyne.KeyBackslash:
		return 0x1C, true
	case fyne.KeyRightBracket:
		return 0x1D, true
	case fyne.Key6:
		return 0x1E, true
	case fyne.KeySlash, fyne.KeyMinus:
		return 0x1F, true
	}
	return 0, false
}

// altBytes returns what Alt and the key send: ESC and the character, as
// xterm's metaSendsEscape, for letters and digits.
func altBytes(name fyne.KeyName, shift bool) []byte {
	if len(name) != 1 {
		return nil
	}
	c := name[0]
	switch {
	case c >= 'A' && c <= 'Z':
		if !shift {
			c += 'a' - 'A'
		}
	case c >= '0' && c <= '9':
	default:
		return nil
	}
	return []byte{0x1B, c}
}
