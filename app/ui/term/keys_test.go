package term

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"
	"github.com/hinshun/vt10x"
)

// fakeSession is a session whose output the test feeds and whose input it
// reads.
type fakeSession struct {
	out chan []byte // to the terminal; closed: EOF

	mu    sync.Mutex
	in    bytes.Buffer
	wrote chan struct{}
}

func newFakeSession() *fakeSession {
	return &fakeSession{out: make(chan []byte, 16), wrote: make(chan struct{}, 1)}
}

func (f *fakeSession) Read(p []byte) (int, error) {
	b, ok := <-f.out
	if !ok {
		return 0, io.EOF
	}
	return copy(p, b), nil
}

func (f *fakeSession) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in.Write(p)
	select {
	case f.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

// take waits until the terminal has written want bytes (or a second has
// passed) and returns what it wrote.
func (f *fakeSession) take(t *testing.T, want int) []byte {
	t.Helper()
	deadline := time.After(time.Second)
	for {
		f.mu.Lock()
		if f.in.Len() >= want {
			b := append([]byte(nil), f.in.Bytes()...)
			f.in.Reset()
			f.mu.Unlock()
			return b
		}
		f.mu.Unlock()
		select {
		case <-f.wrote:
		case <-deadline:
			f.mu.Lock()
			defer f.mu.Unlock()
			b := append([]byte(nil), f.in.Bytes()...)
			f.in.Reset()
			return b
		}
	}
}

func attachFake(t *testing.T, tm *Terminal) *fakeSession {
	f := newFakeSession()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tm.Run(ctx, f) }()
	t.Cleanup(func() {
		cancel()
		close(f.out)
		<-done
	})
	// Run has attached once the terminal answers a position report.
	for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		tm.inMu.Lock()
		up := tm.link != nil
		tm.inMu.Unlock()
		if up || time.Now().After(deadline) {
			break
		}
	}
	return f
}

// TestKeys: every key and shortcut a console needs, as the bytes that
// reach the device.
func TestKeys(t *testing.T) {
	test.NewTempApp(t)
	tm := New()
	f := attachFake(t, tm)
	key := func(n fyne.KeyName) func() { return func() { tm.TypedKey(&fyne.KeyEvent{Name: n}) } }
	ctrl := func(n fyne.KeyName, mod fyne.KeyModifier) func() {
		return func() { tm.TypedShortcut(&desktop.CustomShortcut{KeyName: n, Modifier: mod}) }
	}
	for _, tc := range []struct {
		name string
		do   func()
		want string
	}{
		{"rune", func() { tm.TypedRune('a') }, "a"},
		{"non-ASCII rune as UTF-8", func() { tm.TypedRune('é') }, "é"},
		{"Enter", key(fyne.KeyReturn), "\r"},
		{"keypad Enter", key(fyne.KeyEnter), "\r"},
		{"Backspace", key(fyne.KeyBackspace), "\b"},
		{"Tab", key(fyne.KeyTab), "\t"},
		{"Esc", key(fyne.KeyEscape), "\x1b"},
		{"Up", key(fyne.KeyUp), "\x1b[A"},
		{"Down", key(fyne.KeyDown), "\x1b[B"},
		{"Right", key(fyne.KeyRight), "\x1b[C"},
		{"Left", key(fyne.KeyLeft), "\x1b[D"},
		{"Home", key(fyne.KeyHome), "\x1b[H"},
		{"End", key(fyne.KeyEnd), "\x1b[F"},
		{"Insert", key(fyne.KeyInsert), "\x1b[2~"},
		{"Delete", key(fyne.KeyDelete), "\x1b[3~"},
		{"PgUp", key(fyne.KeyPageUp), "\x1b[5~"},
		{"PgDn", key(fyne.KeyPageDown), "\x1b[6~"},
		{"F1", key(fyne.KeyF1), "\x1bOP"},
		{"F4", key(fyne.KeyF4), "\x1bOS"},
		{"F5", key(fyne.KeyF5), "\x1b[15~"},
		{"F10", key(fyne.KeyF10), "\x1b[21~"},
		{"F12", key(fyne.KeyF12), "\x1b[24~"},
		{"letter keys type through TypedRune only", key(fyne.KeyA), ""},
		{"Ctrl+A", ctrl(fyne.KeyA, fyne.KeyModifierControl), "\x01"},
		{"Ctrl+D", ctrl(fyne.KeyD, fyne.KeyModifierControl), "\x04"},
		{"Ctrl+Z", ctrl(fyne.KeyZ, fyne.KeyModifierControl), "\x1a"},
		{"Ctrl+[", ctrl(fyne.KeyLeftBracket, fyne.KeyModifierControl), "\x1b"},
		{"Ctrl+]", ctrl(fyne.KeyRightBracket, fyne.KeyModifierControl), "\x1d"},
		{"Ctrl+Space", ctrl(fyne.KeySpace, fyne.KeyModifierControl), "\x00"},
		{"Alt+x", ctrl(fyne.KeyX, fyne.KeyModifierAlt), "\x1bx"},
		{"Alt+Shift+x", ctrl(fyne.KeyX, fyne.KeyModifierAlt|fyne.KeyModifierShift), "\x1bX"},
		{"Ctrl+C (Fyne's copy)", func() { tm.TypedShortcut(&fyne.ShortcutCopy{}) }, "\x03"},
		{"Ctrl+V (Fyne's paste)", func() { tm.TypedShortcut(&fyne.ShortcutPaste{}) }, "\x16"},
		{"Ctrl+X (Fyne's cut)", func() { tm.TypedShortcut(&fyne.ShortcutCut{}) }, "\x18"},
		{"Ctrl+A (Fyne's select all)", func() { tm.TypedShortcut(&fyne.ShortcutSelectAll{}) }, "\x01"},
		{"Ctrl+Z (Fyne's undo)", func() { tm.TypedShortcut(&fyne.ShortcutUndo{}) }, "\x1a"},
		{"Ctrl+Y (Fyne's redo)", func() { tm.TypedShortcut(&fyne.ShortcutRedo{}) }, "\x19"},
	} {
		tc.do()
		if got := string(f.take(t, len(tc.want))); got != tc.want {
			t.Errorf("%s sent %q; want %q", tc.name, got, tc.want)
		}
	}

	// Application cursor keys (DECCKM), as vim and less set them.
	f.out <- []byte("\x1b[?1h")
	waitFor(t, func() bool { return tm.vtMode()&modeAppCursor != 0 })
	for name, want := range map[fyne.KeyName]string{fyne.KeyUp: "\x1bOA", fyne.KeyLeft: "\x1bOD", fyne.KeyHome: "\x1bOH"} {
		key(name)()
		if got := string(f.take(t, len(want))); got != want {
			t.Errorf("%s in application mode sent %q; want %q", name, got, want)
		}
	}

	// The other function key schemes.
	for _, tc := range []struct {
		fk      FunctionKeys
		f1, f10 string
	}{{FunctionKeysVT100Plus, "\x1bOP", "\x1bOY"}, {FunctionKeysEscDigit, "\x1b1", "\x1b0"}} {
		tm.SetFunctionKeys(tc.fk)
		key(fyne.KeyF1)()
		key(fyne.KeyF10)()
		if got := string(f.take(t, len(tc.f1+tc.f10))); got != tc.f1+tc.f10 {
			t.Errorf("scheme %d: F1 F10 sent %q; want %q", tc.fk, got, tc.f1+tc.f10)
		}
	}

	// Paste: Ctrl+Shift+V and Shift+Insert type the clipboard, line ends
	// as CR; Ctrl+Shift+C copies the screen.
	cb := fyne.CurrentApp().Clipboard()
	cb.SetContent("ls -l\nexit\r\n")
	ctrl(fyne.KeyV, fyne.KeyModifierControl|fyne.KeyModifierShift)()
	if got := string(f.take(t, 10)); got != "ls -l\rexit\r" {
		t.Errorf("paste sent %q", got)
	}
	tm.KeyDown(&fyne.KeyEvent{Name: fyne.KeyInsert})
	tm.TypedShortcut(&fyne.ShortcutPaste{Clipboard: cb})
	if got := string(f.take(t, 10)); got != "ls -l\rexit\r" {
		t.Errorf("Shift+Insert sent %q", got)
	}
	tm.KeyDown(&fyne.KeyEvent{Name: fyne.KeyC})
	f.out <- []byte("\x1b[2J\x1b[Hscreen text")
	waitFor(t, func() bool { return tm.Text() != "" && tm.Text()[:11] == "screen text" })
	ctrl(fyne.KeyC, fyne.KeyModifierControl|fyne.KeyModifierShift)()
	if got := cb.Content(); len(got) < 11 || got[:11] != "screen text" {
		t.Errorf("copied %q", got)
	}

	// A position report is answered to the device.
	f.out <- []byte("\x1b[3;7H\x1b[6n")
	if got := string(f.take(t, 6)); got != "\x1b[3;7R" {
		t.Errorf("answer to CSI 6n %q", got)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// TestBackspaceDEL: the option for consoles that want DEL.
func TestBackspaceDEL(t *testing.T) {
	test.NewTempApp(t)
	tm := New(WithBackspace(0x7f))
	f := attachFake(t, tm)
	tm.TypedKey(&fyne.KeyEvent{Name: fyne.KeyBackspace})
	if got := string(f.take(t, 1)); got != "\x7f" {
		t.Fatalf("Backspace sent %q", got)
	}
}

// TestCP437Input: once the device speaks CP437, typed characters go out in
// it too.
func TestCP437Input(t *testing.T) {
	test.NewTempApp(t)
	tm := New(WithCharset(CharsetCP437))
	f := attachFake(t, tm)
	tm.TypedRune('é')
	tm.TypedRune('€') // not in CP437: UTF-8
	if got := string(f.take(t, 4)); got != "\x82€" {
		t.Fatalf("sent %q", got)
	}
}

// TestNotAttached: keys typed without a session go nowhere, and a second
// Run is refused.
func TestNotAttached(t *testing.T) {
	test.NewTempApp(t)
	tm := New()
	tm.TypedRune('x') // dropped, no panic
	attachFake(t, tm)
	if err := tm.Run(context.Background(), newFakeSession()); err != ErrAttached {
		t.Fatalf("second Run = %v; want ErrAttached", err)
	}
}

// vtMode returns the emulator's modes.
func (t *Terminal) vtMode() vt10x.ModeFlag {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.vt.Mode()
}

const modeAppCursor = vt10x.ModeAppCursor
