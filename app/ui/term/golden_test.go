package term

import (
	"os"
	"path/filepath"
	"testing"

	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/mps/amtsim"
)

// Golden renderings of the terminal: a PNG of the window (the colours and
// line drawing as a person sees them; markup of 2,000 cells would not be
// reviewable) and the screen's text beside it, which diffs well. Regenerate
// after an intended change by moving testdata/failed/* over testdata/.

// assertText compares text with testdata/name, writing
// testdata/failed/name when they differ.
func assertText(t *testing.T, name, text string) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("testdata", name))
	if err == nil && string(want) == text {
		return
	}
	failed := filepath.Join("testdata", "failed", name)
	os.MkdirAll(filepath.Dir(failed), 0o755)
	os.WriteFile(failed, []byte(text), 0o644)
	if err != nil {
		t.Errorf("no master %s (%v); wrote %s", name, err, failed)
		return
	}
	t.Errorf("the screen differs from testdata/%s; see %s", name, failed)
}

// TestGoldenBIOS: the simulator's BIOS setup screen, the bytes its SOL
// sends: cursor addressing, colours and reverse video, DEC line drawing,
// the cursor parked after "Keys:".
func TestGoldenBIOS(t *testing.T) {
	test.NewTempApp(t)
	tm := New()
	w := test.NewWindow(tm)
	defer w.Close()
	w.Resize(tm.MinSize())
	hw, _ := amtsim.HardwareProfile("desktop")
	tm.Feed(amtsim.BIOSScreen("sim-000001", hw))
	test.AssertRendersToImage(t, "bios.png", w.Canvas())
	assertText(t, "bios.txt", tm.Text()+"\n")
}

// shellScreen is a shell session over SOL with the colours Linux tools
// use: a bold green and blue prompt, ls --color, red and yellow on
// black, the 256-colour and RGB forms and reverse video (underline is not shown).
const shellScreen = "\r\nPresence simulated AMT serial console on sim-000001\r\n" +
	"\x1b[1;32madmin@sim-000001\x1b[0m:\x1b[1;34m~\x1b[0m$ ls --color\r\n" +
	"\x1b[0m\x1b[01;34mbin\x1b[0m  \x1b[01;32mbuild.sh\x1b[0m  \x1b[01;36mlib\x1b[0m  notes.txt  \x1b[01;31mbackup.tar.gz\x1b[0m\r\n" +
	"\x1b[1;32madmin@sim-000001\x1b[0m:\x1b[1;34m~\x1b[0m$ systemctl --failed\r\n" +
	"\x1b[1;31m\u25cf\x1b[0m fwupd.service \x1b[31mfailed\x1b[0m \x1b[33mdegraded\x1b[0m \x1b[4munderlined\x1b[24m \x1b[7mreversed\x1b[27m\r\n" +
	"\x1b[38;5;208mxterm 208\x1b[0m \x1b[48;5;22m on 22 \x1b[0m \x1b[38;2;255;105;180mrgb pink\x1b[0m \x1b[90mbright black\x1b[0m \x1b[97;41mwhite on red\x1b[0m\r\n" +
	"\x1b[1;32madmin@sim-000001\x1b[0m:\x1b[1;34m~\x1b[0m$ "

func TestGoldenShell(t *testing.T) {
	test.NewTempApp(t)
	tm := New()
	w := test.NewWindow(tm)
	defer w.Close()
	w.Resize(tm.MinSize())
	tm.Feed([]byte(shellScreen))
	test.AssertRendersToImage(t, "shell.png", w.Canvas())
	assertText(t, "shell.txt", tm.Text()+"\n")
}
