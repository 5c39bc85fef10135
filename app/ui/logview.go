package ui

import (
	"log/slog"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/internal/settings"
)

// LogBackend gives the Log screen its lines.
type LogBackend interface {
	// LogSince returns the log entries after seq at level min or above.
	LogSince(seq uint64, min slog.Level) []logring.Entry
}

// maxLogLines is how many lines the Log screen holds.
const maxLogLines = 5000

// LogScreen is a live tail of the log with a level filter.
type LogScreen struct {
	Root   fyne.CanvasObject
	Level  *widget.Select
	Follow *widget.Check
	List   *widget.List

	b     LogBackend
	lines []logring.Entry
	seq   uint64
	min   slog.Level
}

// NewLog builds the Log screen over b. Call Poll to take new lines.
func NewLog(b LogBackend) *LogScreen {
	l := &LogScreen{b: b, min: slog.LevelInfo}
	l.List = widget.NewList(func() int { return len(l.lines) },
		func() fyne.CanvasObject {
			t := widget.NewLabel("00:00:00.000 WARN  a log line of some length")
			t.Truncation = fyne.TextTruncateEllipsis
			return t
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i < len(l.lines) {
				o.(*widget.Label).SetText(lineText(l.lines[i]))
			}
		})
	l.Level = widget.NewSelect(settings.LogLevels, func(v string) {
		var lv slog.Level
		if lv.UnmarshalText([]byte(v)) == nil {
			l.min = lv
			l.lines, l.seq = nil, 0 // read again at the new level
			l.Poll()
		}
	})
	l.Follow = widget.NewCheck("Follow", nil)
	l.Follow.SetChecked(true)
	l.Level.SetSelected("info")
	top := container.NewHBox(widget.NewLabel("Show"), l.Level, widget.NewLabel("and above"), l.Follow)
	l.Root = container.NewBorder(top, nil, nil, nil, l.List)
	return l
}

// Poll takes the lines logged since the last poll. Call it on the Fyne
// goroutine; it only copies from memory.
func (l *LogScreen) Poll() {
	if l.List == nil {
		return
	}
	add := l.b.LogSince(l.seq, l.min)
	if len(add) == 0 {
		l.List.Refresh()
		return
	}
	l.seq = add[len(add)-1].Seq
	l.lines = append(l.lines, add...)
	if n := len(l.lines) - maxLogLines; n > 0 {
		l.lines = append(l.lines[:0], l.lines[n:]...)
	}
	l.List.Refresh()
	if l.Follow.Checked {
		l.List.ScrollToBottom()
	}
}

// Lines returns the lines shown, as text, for tests.
func (l *LogScreen) Lines() []string {
	out := make([]string, len(l.lines))
	for i, e := range l.lines {
		out[i] = lineText(e)
	}
	return out
}

func lineText(e logring.Entry) string {
	s := e.Time.Local().Format(time.TimeOnly) + " " + e.Level.String() + " " + e.Message
	if e.Attrs != "" {
		s += "  " + e.Attrs
	}
	return s
}
