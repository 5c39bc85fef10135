package term

import (
	"fmt"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"
)

// fullScreen is a repaint of every cell of an 80×25 screen with a new
// character and new colours (k shifts them), as a BIOS screen's full
// redraw sends it: cursor addressing per row, SGR per cell.
func fullScreen(k int) []byte {
	var b strings.Builder
	for y := range DefaultRows {
		fmt.Fprintf(&b, "\x1b[%d;1H", y+1)
		for x := range DefaultCols {
			fmt.Fprintf(&b, "\x1b[%d;%d;%dm%c", (x+k)%2, 30+(x+y+k)%8, 40+(x+2*y+k+1)%8, 'A'+rune((x+y+k)%26))
		}
	}
	return []byte(b.String())
}

// BenchmarkRepaint80x25 measures a full-screen 80×25 repaint with colours
// as the work on the Fyne goroutine: the emulator's screen into the
// TextGrid's rows (every cell changed) and the grid's Refresh. The target
// is 16 ms (one frame at 60 Hz). Parsing the bytes, on the session's
// goroutine, is outside the timer (BenchmarkFeed80x25).
func BenchmarkRepaint80x25(b *testing.B) {
	test.NewTempApp(b)
	tm := New()
	w := test.NewWindow(tm)
	defer w.Close()
	w.Resize(tm.MinSize())
	frames := [2][]byte{fullScreen(0), fullScreen(1)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		tm.feed(frames[i%2])
		b.StartTimer()
		tm.repaint()
	}
}

// BenchmarkFeed80x25 measures the session goroutine's part of the same
// repaint: decoding and emulating the 80×25 screen's bytes.
func BenchmarkFeed80x25(b *testing.B) {
	test.NewTempApp(b)
	tm := New()
	frames := [2][]byte{fullScreen(0), fullScreen(1)}
	b.SetBytes(int64(len(frames[0])))
	b.ReportAllocs()
	for i := range b.N {
		tm.feed(frames[i%2])
	}
}
