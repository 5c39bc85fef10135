package admin

import (
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
)

// Golden renderings (scene-graph markup, which diffs well in review) of
// the three screens over the fakes. Regenerate after an intended change
// by moving testdata/failed/*.xml over testdata/.
func TestGoldenScreens(t *testing.T) {
	// Times render in local time: pin it for the masters (the package's
	// tests do not run in parallel).
	local := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = local })

	t.Run("history", func(t *testing.T) {
		h, w := newTestHistory(t, sampleHistory())
		w.Resize(fyne.NewSize(1000, 420))
		h.Table.Select(widget.TableCellID{Row: 1, Col: 0})
		test.AssertRendersToMarkup(t, "history.xml", w.Canvas())
	})
	t.Run("certificates", func(t *testing.T) {
		_, w := newTestCertificates(t, sampleCerts())
		w.Resize(fyne.NewSize(1000, 700))
		test.AssertRendersToMarkup(t, "certificates.xml", w.Canvas())
	})
	t.Run("accounts", func(t *testing.T) {
		a, w := newTestAccounts(t, newFakeAccounts())
		w.Resize(fyne.NewSize(1000, 600))
		a.List("console").List.Select(0)
		fill(a, "Console", "carol", "secret-1", "secret-2")
		test.Tap(a.AddBtn)
		test.AssertRendersToMarkup(t, "accounts.xml", w.Canvas())
	})
}
