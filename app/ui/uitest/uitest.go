// Package uitest holds the helpers the window's tests share for driving
// dialogs with Fyne's test driver (app/ui, app/ui/admin, app/adapter and
// app/uibench all use them).
package uitest

import (
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
)

// TapDialogButton taps the button labelled label in the dialog on top of
// w's canvas, failing the test if there is none.
func TapDialogButton(tb testing.TB, w fyne.Window, label string) {
	tb.Helper()
	top := w.Canvas().Overlays().Top()
	if top == nil {
		tb.Fatalf("no dialog is open to press %q in", label)
	}
	for _, o := range test.LaidOutObjects(top) {
		if b, ok := o.(*widget.Button); ok && b.Text == label {
			test.Tap(b)
			return
		}
	}
	tb.Fatalf("the dialog has no %q button", label)
}

// DialogText returns the texts of the labels in the dialog on top of w's
// canvas, a line each ("" when no dialog is open).
func DialogText(w fyne.Window) string {
	top := w.Canvas().Overlays().Top()
	if top == nil {
		return ""
	}
	var b strings.Builder
	for _, o := range test.LaidOutObjects(top) {
		if l, ok := o.(*widget.Label); ok {
			b.WriteString(l.Text + "\n")
		}
	}
	return b.String()
}
