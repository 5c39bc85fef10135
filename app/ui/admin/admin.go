package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/vault"
)

// Sentence returns what the window shows when action failed with err:
// action (a sentence without its full stop, such as "The account could not
// be added"), then why, in words that say what to do. Errors the vault and
// the history file define get a fixed sentence; any other error's own text
// follows, without its package prefix.
func Sentence(action string, err error) string {
	var why string
	switch {
	case err == nil:
		return action + "."
	case errors.Is(err, vault.ErrLocked):
		why = "The keychain is locked: unlock it and try again."
	case errors.Is(err, context.DeadlineExceeded):
		// Before ErrUnavailable: the keychain's timeout wraps both.
		why = "The keychain did not answer in time (it may be waiting for an unlock prompt): answer it and try again."
	case errors.Is(err, vault.ErrUnavailable):
		why = "The keychain cannot be used on this machine: log in to a desktop session, or move the secrets to the file vault (presence vault migrate), and try again."
	case errors.Is(err, history.ErrClosed):
		why = "The history file is closed because Presence is stopping."
	case errors.Is(err, history.ErrLocked):
		why = "Another Presence is using the history file: stop it and try again."
	default:
		why = plain(err)
	}
	return action + ". " + why
}

// plain turns an error's text into a sentence: without the package prefix,
// capitalized, with a full stop.
func plain(err error) string {
	s := err.Error()
	for _, p := range []string{"vault: ", "history: ", "adapter: "} {
		s = strings.TrimPrefix(s, p)
	}
	if s == "" {
		return "No reason was given."
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.ContainsAny(s[len(s)-1:], ".!?") {
		s += "."
	}
	return s
}

// run calls work through goFn (nil: in a new goroutine) and then apply on
// the Fyne goroutine.
func run(goFn func(func()), work, apply func()) {
	if goFn == nil {
		goFn = func(f func()) { go f() }
	}
	goFn(func() {
		work()
		fyne.Do(apply)
	})
}

// export is a save to a file a dialog chose: write runs off the Fyne
// goroutine and the file is closed after it; then, on the Fyne goroutine,
// btn is enabled again and msg says ok, or failed with the reason (the
// whole error goes to log).
type export struct {
	goFn       func(func())
	btn        *widget.Button
	msg        *widget.Label
	log        *slog.Logger
	write      func(io.Writer) error
	ok, failed string
	after      func() // relayout, after msg changed
}

func (e export) to(f io.WriteCloser, name string) {
	e.btn.Disable()
	var err error
	run(e.goFn, func() {
		err = e.write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}, func() {
		e.btn.Enable()
		if err != nil {
			logger(e.log).Warn(e.failed, "file", name, "err", err)
			e.msg.SetText(Sentence(e.failed+" to "+name, err))
		} else {
			e.msg.SetText(e.ok)
		}
		e.after()
	})
}

// logger returns l, or a logger that discards.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// wrapLabel is a label whose text wraps at word boundaries.
func wrapLabel(text string) *widget.Label {
	l := widget.NewLabel(text)
	l.Wrapping = fyne.TextWrapWord
	return l
}

// heading is a bold label.
func heading(text string) *widget.Label {
	return widget.NewLabelWithStyle(text, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
}

// windowFor returns the window whose canvas shows o, or nil.
func windowFor(o fyne.CanvasObject) fyne.Window {
	a := fyne.CurrentApp()
	if a == nil {
		return nil
	}
	c := a.Driver().CanvasForObject(o)
	for _, w := range a.Driver().AllWindows() {
		if c != nil && w.Canvas() == c {
			return w
		}
	}
	return nil
}
