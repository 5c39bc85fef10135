// Package term is the window's Serial-over-LAN terminal: a Fyne widget
// that shows a device's serial console — BIOS setup screens included —
// and sends what is typed into it back to the device.
//
// [github.com/hinshun/vt10x] emulates the terminal (cursor movement,
// erasing, scrolling regions, SGR colours and reverse video, DEC special
// graphics); [Terminal] puts its screen on a [widget.TextGrid] with the 16
// ANSI colours in their VGA shades (bold as bright), the 256-colour and
// RGB forms, and the cursor as a reversed cell. A decoder in
// front of the emulator reads the device's bytes as UTF-8 or CP437 (see
// [Charset]) and keeps hostile escape sequences from it: strings (OSC,
// DCS) are dropped and CSI counts capped, so a device can neither crash
// the emulator nor make it loop.
// The screen is 80×25 unless [WithSize] says otherwise.
//
// # Threading
//
// [Terminal.Run] (or [Terminal.Attach]) reads the device on its own
// goroutine and feeds the emulator; it asks the Fyne goroutine for a
// repaint with fyne.Do, at most one pending at a time, so a burst of
// output costs one repaint whatever its size. A repaint copies the rows
// that changed since the last one into the grid, with one
// [widget.TextGridStyle] per colour pair, made once and reused, and
// refreshes the grid. Keystrokes are queued (at most 64 KiB) and written to
// the device by a goroutine of their own, so a slow device never blocks the
// window.
//
// The package imports nothing of the engine: it reads and writes an
// [io.ReadWriter], such as a *sol.Session.
package term

import (
	"context"
	"errors"
	"image/color"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/widget"
	"github.com/hinshun/vt10x"
)

// Defaults and limits.
const (
	DefaultCols = 80
	DefaultRows = 25
	// MaxCols and MaxRows bound [WithSize].
	MaxCols, MaxRows = 500, 200
	// maxInput is how many keystroke bytes wait for the device; more are
	// dropped.
	maxInput = 64 << 10
	// maxReply bounds the emulator's answers (cursor position reports)
	// per read from the device.
	maxReply = 1 << 10
	readBuf  = 16 << 10
)

// ErrAttached: [Terminal.Run] was called while the terminal is attached.
var ErrAttached = errors.New("term: the terminal is already attached to a session")

// Option configures a [Terminal].
type Option func(*Terminal)

// WithSize sets the screen's columns and rows (default 80×25), within 2 and
// [MaxCols] or [MaxRows].
func WithSize(cols, rows int) Option {
	return func(t *Terminal) {
		t.cols, t.rows = min(max(cols, 2), MaxCols), min(max(rows, 2), MaxRows)
	}
}

// WithCharset sets how bytes above 0x7F are read (default [CharsetAuto]).
func WithCharset(c Charset) Option { return func(t *Terminal) { t.dec.charset = c } }

// WithFunctionKeys sets what F1 to F12 send (default [FunctionKeysXterm]).
func WithFunctionKeys(f FunctionKeys) Option { return func(t *Terminal) { t.fkeys = f } }

// WithBackspace sets the byte Backspace sends: 0x08 (BS, the default, as
// MeshCommander's SOL terminal sends and BIOS setup utilities read) or
// 0x7F (DEL, as xterm sends).
func WithBackspace(b byte) Option { return func(t *Terminal) { t.backspace = b } }

// Terminal is the terminal widget. It is focusable: a tap focuses it, and
// while focused it sends typed characters as they are; Enter as CR;
// Backspace as BS (see [WithBackspace]); Tab, Esc; the arrows as ESC [ A
// to D (ESC O A to D once the device has set DECCKM); Home and End as
// ESC [ H and F; Insert, Delete, PgUp and PgDn as ESC [ 2, 3, 5 and 6 ~;
// F1 to F12 as [FunctionKeys] says; Ctrl+letter as its control character
// (also when Fyne reports it as Copy, Paste, Cut, Select all, Undo or
// Redo); Alt+letter as ESC and the letter. Ctrl+Shift+V and Shift+Insert
// paste the clipboard, Ctrl+Shift+C copies the screen's text. Create it
// with [New].
type Terminal struct {
	widget.BaseWidget

	// OnEnded, if set (before Attach), is called on the Fyne goroutine
	// when a session started by [Terminal.Attach] ends by itself (not by
	// Detach), with Run's error: nil when the device ended the session,
	// else e.g. an error matching sol.ErrDeviceGone.
	OnEnded func(err error)

	cols, rows int
	fkeys      FunctionKeys
	backspace  byte

	grid *widget.TextGrid
	bg   *canvas.Rectangle

	// mu guards the emulator and its decoder; repaint reads them under it.
	mu      sync.Mutex
	vt      vt10x.Terminal
	reply   replyBuffer // the emulator's answers to the device
	dec     decoder
	decBuf  []byte
	pending bool // a repaint is scheduled

	// The Fyne goroutine's copy of what the grid shows.
	shown  []cell
	styles map[cell]widget.TextGridStyle

	// inMu guards the session link and the key tracking.
	inMu    sync.Mutex
	link    *link
	lastKey fyne.KeyName // of the last KeyDown: tells Ctrl+Insert from Ctrl+C
	dropped int          // keystroke bytes dropped because the device took too long

	runMu sync.Mutex
	run   *attached
}

// New returns a terminal with a blank 80×25 screen.
func New(opts ...Option) *Terminal {
	t := &Terminal{cols: DefaultCols, rows: DefaultRows, backspace: 0x08, styles: map[cell]widget.TextGridStyle{}}
	for _, o := range opts {
		o(t)
	}
	t.dec.cols = t.cols
	t.vt = vt10x.New(vt10x.WithSize(t.cols, t.rows), vt10x.WithWriter(&t.reply))
	t.grid = widget.NewTextGrid()
	t.grid.Scroll = fyne.ScrollNone
	t.grid.Rows = make([]widget.TextGridRow, t.rows)
	t.shown = make([]cell, t.cols*t.rows)
	blank := cell{r: ' ', fg: defaultFG, bg: defaultBG}
	st := t.style(blank)
	for y := range t.grid.Rows {
		cells := make([]widget.TextGridCell, t.cols)
		for x := range cells {
			cells[x] = widget.TextGridCell{Rune: ' ', Style: st}
			t.shown[y*t.cols+x] = blank
		}
		t.grid.Rows[y].Cells = cells
	}
	t.bg = canvas.NewRectangle(palette(defaultBG))
	t.ExtendBaseWidget(t)
	t.mu.Lock()
	t.sync() // the cursor
	t.mu.Unlock()
	return t
}

// GridSize returns the screen's columns and rows.
func (t *Terminal) GridSize() (cols, rows int) { return t.cols, t.rows }

// SetFunctionKeys changes what F1 to F12 send.
func (t *Terminal) SetFunctionKeys(f FunctionKeys) {
	t.inMu.Lock()
	defer t.inMu.Unlock()
	t.fkeys = f
}

// CreateRenderer is part of fyne.Widget.
func (t *Terminal) CreateRenderer() fyne.WidgetRenderer {
	return &renderer{t: t, objects: []fyne.CanvasObject{t.bg, t.grid}}
}

type renderer struct {
	t       *Terminal
	objects []fyne.CanvasObject
}

func (r *renderer) Layout(size fyne.Size) {
	r.t.bg.Resize(size)
	r.t.grid.Move(fyne.NewPos(0, 0))
	r.t.grid.Resize(r.t.grid.MinSize())
}

func (r *renderer) MinSize() fyne.Size           { return r.t.grid.MinSize() }
func (r *renderer) Objects() []fyne.CanvasObject { return r.objects }
func (r *renderer) Destroy()                     {}
func (r *renderer) Refresh()                     { r.t.bg.Refresh(); r.t.grid.Refresh() }

// --- output ---

// Feed writes host output to the emulator as if the attached session had
// sent it, and schedules a repaint. Tests and replays use it; it is safe
// from any goroutine.
func (t *Terminal) Feed(p []byte) {
	if t.feed(p) {
		fyne.Do(t.repaint)
	}
}

// feed runs p through the decoder and the emulator, sends the emulator's
// answers to the device, and reports whether a repaint must be scheduled.
func (t *Terminal) feed(p []byte) bool {
	t.mu.Lock()
	t.decBuf = t.dec.decode(t.decBuf[:0], p)
	t.vt.Write(t.decBuf)
	reply := t.reply.take()
	schedule := !t.pending
	t.pending = true
	t.mu.Unlock()
	if len(reply) > 0 {
		t.send(reply)
	}
	return schedule
}

// replyBuffer collects what the emulator answers (DSR, CPR).
type replyBuffer struct{ b []byte }

func (r *replyBuffer) Write(p []byte) (int, error) {
	if len(r.b)+len(p) <= maxReply {
		r.b = append(r.b, p...)
	}
	return len(p), nil
}

func (r *replyBuffer) take() []byte {
	if len(r.b) == 0 {
		return nil
	}
	b := append([]byte(nil), r.b...)
	r.b = r.b[:0]
	return b
}

// Reset clears the screen and the decoder's state (a new session starts
// with a reset terminal).
func (t *Terminal) Reset() {
	t.mu.Lock()
	t.vt = vt10x.New(vt10x.WithSize(t.cols, t.rows), vt10x.WithWriter(&t.reply))
	t.dec.reset()
	t.reply.b = t.reply.b[:0]
	schedule := !t.pending
	t.pending = true
	t.mu.Unlock()
	if schedule {
		fyne.Do(t.repaint)
	}
}

// repaint brings the grid up to the emulator's screen, on the Fyne
// goroutine.
func (t *Terminal) repaint() {
	t.mu.Lock()
	t.pending = false
	changed := t.sync()
	t.mu.Unlock()
	if changed {
		t.grid.Refresh()
	}
}

// cell is a screen cell as the grid shows it: a rune and resolved colours
// (a palette index below 256, or rgbFlag|RRGGBB). With r zero it keys the
// style cache. Underline is not shown: the grid would ask the theme for an
// underlined monospace font, which themes need not have (Fyne's test
// theme has none and crashes on it).
type cell struct {
	r      rune
	fg, bg uint32
}

const (
	rgbFlag   = 1 << 24
	defaultFG = 7 // light grey
	defaultBG = 0 // black
	brightFG  = 15
	// vt10x's Glyph.Mode bit of bold (its attrBold, unexported).
	attrBold = 1 << 2
)

// colourID resolves an emulator colour.
func colourID(c vt10x.Color, def uint32) uint32 {
	switch {
	case c < 256:
		return uint32(c)
	case c < 1<<24:
		return rgbFlag | uint32(c)
	case c == vt10x.DefaultFG:
		return defaultFG
	case c == vt10x.DefaultBG:
		return defaultBG
	}
	return def
}

// sync copies the emulator's changed cells into the grid's rows and
// reports whether any changed. t.mu is held.
func (t *Terminal) sync() bool {
	curX, curY := -1, -1
	if t.vt.CursorVisible() {
		c := t.vt.Cursor()
		curX, curY = c.X, c.Y
	}
	reverse := t.vt.Mode()&vt10x.ModeReverse != 0
	changed := false
	for y := 0; y < t.rows; y++ {
		row := t.shown[y*t.cols : (y+1)*t.cols]
		var cells []widget.TextGridCell
		for x := 0; x < t.cols; x++ {
			g := t.vt.Cell(x, y)
			c := cell{r: g.Char, fg: colourID(g.FG, defaultFG), bg: colourID(g.BG, defaultBG)}
			if g.Mode&attrBold != 0 && g.FG == vt10x.DefaultFG {
				c.fg = brightFG // vt10x brightens only the eight colours
			}
			if c.r == 0 {
				c.r = ' '
			}
			if reverse != (x == curX && y == curY) {
				c.fg, c.bg = c.bg, c.fg
			}
			if c == row[x] {
				continue
			}
			row[x] = c
			if cells == nil {
				cells = t.grid.Rows[y].Cells
				changed = true
			}
			cells[x] = widget.TextGridCell{Rune: c.r, Style: t.style(c)}
		}
	}
	return changed
}

// maxStyles bounds the style cache; past it the cache starts over (the
// grid keeps the styles it uses).
const maxStyles = 4096

// style returns the one style of c's colours.
func (t *Terminal) style(c cell) widget.TextGridStyle {
	c.r = 0
	if s, ok := t.styles[c]; ok {
		return s
	}
	if len(t.styles) >= maxStyles {
		clear(t.styles)
	}
	s := &widget.CustomTextGridStyle{
		FGColor:   palette(c.fg),
		BGColor:   palette(c.bg),
		TextStyle: fyne.TextStyle{Monospace: true},
	}
	t.styles[c] = s
	return s
}

// vga are the 16 ANSI colours in the VGA text mode's shades, which BIOS
// screens are drawn for.
var vga = [16]color.NRGBA{
	{0x00, 0x00, 0x00, 0xff}, {0xaa, 0x00, 0x00, 0xff}, {0x00, 0xaa, 0x00, 0xff}, {0xaa, 0x55, 0x00, 0xff},
	{0x00, 0x00, 0xaa, 0xff}, {0xaa, 0x00, 0xaa, 0xff}, {0x00, 0xaa, 0xaa, 0xff}, {0xaa, 0xaa, 0xaa, 0xff},
	{0x55, 0x55, 0x55, 0xff}, {0xff, 0x55, 0x55, 0xff}, {0x55, 0xff, 0x55, 0xff}, {0xff, 0xff, 0x55, 0xff},
	{0x55, 0x55, 0xff, 0xff}, {0xff, 0x55, 0xff, 0xff}, {0x55, 0xff, 0xff, 0xff}, {0xff, 0xff, 0xff, 0xff},
}

// palette returns the colour of an ID: the VGA 16, xterm's 6×6×6 cube
// and grey ramp, or RGB.
func palette(id uint32) color.NRGBA {
	switch {
	case id < 16:
		return vga[id]
	case id < 232:
		i := id - 16
		lv := func(v uint32) uint8 {
			if v == 0 {
				return 0
			}
			return uint8(55 + 40*v)
		}
		return color.NRGBA{lv(i / 36), lv(i / 6 % 6), lv(i % 6), 0xff}
	case id < 256:
		g := uint8(8 + 10*(id-232))
		return color.NRGBA{g, g, g, 0xff}
	}
	return color.NRGBA{uint8(id >> 16), uint8(id >> 8), uint8(id), 0xff}
}

// Text returns the screen as text: its rows, without trailing spaces,
// joined by newlines. It is safe from any goroutine.
func (t *Terminal) Text() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	line := make([]rune, 0, t.cols)
	for y := 0; y < t.rows; y++ {
		line = line[:0]
		for x := 0; x < t.cols; x++ {
			r := t.vt.Cell(x, y).Char
			if r == 0 {
				r = ' '
			}
			line = append(line, r)
		}
		if y > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.TrimRight(string(line), " "))
	}
	return b.String()
}

// Cursor returns the cursor's row and column (from 0) and whether it is
// shown. It is safe from any goroutine.
func (t *Terminal) Cursor() (row, col int, visible bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.vt.Cursor()
	return c.Y, c.X, t.vt.CursorVisible()
}

// --- the session ---

// link is the writing half of a session: keystrokes wait in buf for the
// writer goroutine.
type link struct {
	w    io.Writer
	buf  []byte // guarded by Terminal.inMu
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func (l *link) writer(t *Terminal) {
	defer close(l.done)
	var out []byte
	for {
		select {
		case <-l.stop:
			return
		case <-l.wake:
		}
		t.inMu.Lock()
		out, l.buf = l.buf, out[:0]
		t.inMu.Unlock()
		if len(out) == 0 {
			continue
		}
		if _, err := l.w.Write(out); err != nil {
			return // Run's read sees the session end too
		}
	}
}

// send queues keystroke bytes for the attached session; without one they
// are dropped.
func (t *Terminal) send(b []byte) {
	t.inMu.Lock()
	defer t.inMu.Unlock()
	l := t.link
	if l == nil || len(b) == 0 {
		return
	}
	if len(l.buf)+len(b) > maxInput {
		t.dropped += len(b)
		return
	}
	l.buf = append(l.buf, b...)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

type readDeadliner interface{ SetReadDeadline(time.Time) error }

// Run attaches the terminal to rw, a session's byte stream (a
// *sol.Session), until rw's Read fails or ctx is done: it resets the
// screen, shows what rw returns, and writes keystrokes to rw. It returns
// nil when rw ended with io.EOF or ctx ended it, and rw's error otherwise
// (for a *sol.Session, sol.ErrDeviceGone and the like).
//
// When ctx is done Run interrupts the Read in progress through rw's
// SetReadDeadline, if it has one (a *sol.Session and a net.Conn do), and
// clears that deadline again before it returns; for an rw without one,
// Run returns when its Read does (close rw). Run does not close rw.
func (t *Terminal) Run(ctx context.Context, rw io.ReadWriter) error {
	l := &link{w: rw, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	t.inMu.Lock()
	if t.link != nil {
		t.inMu.Unlock()
		return ErrAttached
	}
	t.link = l
	t.inMu.Unlock()
	t.Reset()
	go l.writer(t)

	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		if d, ok := rw.(readDeadliner); ok {
			d.SetReadDeadline(time.Unix(1, 0))
		}
		close(fired)
	})
	buf := make([]byte, readBuf)
	var err error
	for ctx.Err() == nil {
		n, rerr := rw.Read(buf)
		if n > 0 && t.feed(buf[:n]) {
			fyne.Do(t.repaint)
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	if !stop() {
		<-fired
		if d, ok := rw.(readDeadliner); ok {
			d.SetReadDeadline(time.Time{})
		}
	}
	t.inMu.Lock()
	t.link = nil
	t.inMu.Unlock()
	close(l.stop)
	<-l.done
	if ctx.Err() != nil || err == io.EOF {
		return nil
	}
	return err
}

// attached is a session Attach runs.
type attached struct {
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	detached bool // guarded by Terminal.runMu
}

// Attach runs [Terminal.Run] on rw in a goroutine of its own, after
// detaching the session attached before. When the session ends by itself,
// OnEnded gets Run's error.
func (t *Terminal) Attach(rw io.ReadWriter) {
	t.Detach()
	ctx, cancel := context.WithCancel(context.Background())
	a := &attached{cancel: cancel, done: make(chan struct{})}
	t.runMu.Lock()
	t.run = a
	t.runMu.Unlock()
	go func() {
		a.err = t.Run(ctx, rw)
		cancel()
		t.runMu.Lock()
		byItself := !a.detached
		if t.run == a {
			t.run = nil
		}
		t.runMu.Unlock()
		close(a.done)
		if f := t.OnEnded; byItself && f != nil {
			err := a.err
			fyne.Do(func() { f(err) })
		}
	}()
}

// Detach ends the session Attach started, waits for its Run to return and
// returns Run's error (nil if none is attached). The screen keeps what it
// shows.
func (t *Terminal) Detach() error {
	t.runMu.Lock()
	a := t.run
	t.run = nil
	if a != nil {
		a.detached = true
	}
	t.runMu.Unlock()
	if a == nil {
		return nil
	}
	a.cancel()
	<-a.done
	return a.err
}

// --- input ---

// Tapped focuses the terminal.
func (t *Terminal) Tapped(*fyne.PointEvent) {
	if c := fyne.CurrentApp().Driver().CanvasForObject(t); c != nil {
		c.Focus(t)
	}
}

// FocusGained is part of fyne.Focusable.
func (t *Terminal) FocusGained() {}

// FocusLost is part of fyne.Focusable.
func (t *Terminal) FocusLost() {}

// AcceptsTab keeps Tab for the device instead of moving the focus.
func (t *Terminal) AcceptsTab() bool { return true }

// TypedRune sends a typed character: ASCII as it is, others in CP437 when
// the device speaks it (see [Charset]), else UTF-8.
func (t *Terminal) TypedRune(r rune) {
	if r < 0x80 {
		t.send([]byte{byte(r)})
		return
	}
	t.mu.Lock()
	cp := t.dec.charset == CharsetCP437 || t.dec.cp
	t.mu.Unlock()
	if b, ok := cp437Byte(r); cp && ok {
		t.send([]byte{b})
		return
	}
	t.send([]byte(string(r)))
}

// TypedKey sends the sequence of a key that types no character.
func (t *Terminal) TypedKey(e *fyne.KeyEvent) {
	t.mu.Lock()
	app := t.vt.Mode()&vt10x.ModeAppCursor != 0
	t.mu.Unlock()
	t.inMu.Lock()
	fk, bs := t.fkeys, t.backspace
	t.inMu.Unlock()
	if b := keySequence(e.Name, app, fk, bs); b != nil {
		t.send(b)
	}
}

// KeyDown notes the key, to tell the shortcuts of Insert from Ctrl+C/V.
func (t *Terminal) KeyDown(e *fyne.KeyEvent) {
	t.inMu.Lock()
	t.lastKey = e.Name
	t.inMu.Unlock()
}

// KeyUp is part of desktop.Keyable.
func (t *Terminal) KeyUp(*fyne.KeyEvent) {}

// TypedShortcut turns Fyne's shortcuts back into the keys a terminal
// sends: Ctrl+letter is a control character, Alt+letter ESC and the
// letter; Ctrl+Shift+V and Shift+Insert paste, Ctrl+Shift+C copies the
// screen's text. On macOS Cmd+V pastes and Cmd+C copies.
func (t *Terminal) TypedShortcut(s fyne.Shortcut) {
	t.inMu.Lock()
	last := t.lastKey
	t.inMu.Unlock()
	mac := runtime.GOOS == "darwin"
	switch s := s.(type) {
	case *desktop.CustomShortcut:
		ctrl := s.Modifier&fyne.KeyModifierControl != 0
		shift := s.Modifier&fyne.KeyModifierShift != 0
		alt := s.Modifier&fyne.KeyModifierAlt != 0
		switch {
		case ctrl && shift && s.KeyName == fyne.KeyV:
			t.paste(nil)
		case ctrl && shift && s.KeyName == fyne.KeyC:
			t.copyText(nil)
		case ctrl && !alt:
			if b, ok := ctrlByte(s.KeyName); ok {
				t.send([]byte{b})
			}
		case alt && !ctrl:
			t.send(altBytes(s.KeyName, shift))
		}
	case *fyne.ShortcutPaste:
		if mac || last == fyne.KeyInsert {
			t.paste(s.Clipboard)
		} else {
			t.send([]byte{0x16})
		}
	case *fyne.ShortcutCopy:
		if mac {
			t.copyText(s.Clipboard)
		} else if last != fyne.KeyInsert {
			t.send([]byte{0x03})
		}
	case *fyne.ShortcutCut:
		if !mac && last != fyne.KeyDelete {
			t.send([]byte{0x18})
		}
	case *fyne.ShortcutSelectAll:
		if !mac {
			t.send([]byte{0x01})
		}
	case *fyne.ShortcutUndo:
		if !mac {
			t.send([]byte{0x1A})
		}
	case *fyne.ShortcutRedo:
		if !mac {
			t.send([]byte{0x19})
		}
	}
}

func clipboard(c fyne.Clipboard) fyne.Clipboard {
	if c == nil {
		if a := fyne.CurrentApp(); a != nil {
			c = a.Clipboard()
		}
	}
	return c
}

// paste types the clipboard's text, with its line ends as CR, up to
// maxInput bytes.
func (t *Terminal) paste(c fyne.Clipboard) {
	if c = clipboard(c); c == nil {
		return
	}
	s := c.Content()
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\r"), "\n", "\r")
	if len(s) > maxInput {
		s = s[:maxInput]
	}
	t.send([]byte(s))
}

// copyText puts the screen's text on the clipboard.
func (t *Terminal) copyText(c fyne.Clipboard) {
	if c = clipboard(c); c != nil {
		c.SetContent(t.Text())
	}
}

var (
	_ fyne.Widget       = (*Terminal)(nil)
	_ fyne.Focusable    = (*Terminal)(nil)
	_ fyne.Tappable     = (*Terminal)(nil)
	_ fyne.Shortcutable = (*Terminal)(nil)
	_ fyne.Tabbable     = (*Terminal)(nil)
	_ desktop.Keyable   = (*Terminal)(nil)
)
