package ui

import (
	"fmt"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/tunnel"
)

type fakeBackend struct{ snap Snapshot }

func (f *fakeBackend) Snapshot() Snapshot { return f.snap }

func fleet(n int) []mps.Device {
	out := make([]mps.Device, n)
	for i := range out {
		out[i] = mps.Device{
			UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Hostname: fmt.Sprintf("sim-%06d", i),
			Remote: fmt.Sprintf("192.0.2.%d:%d", i%250, 40000+i%20000),
			Info:   tunnel.Info{TLSVersion: "TLS 1.2", ConnectedAt: time.Unix(1_764_000_000, 0), Forwards: []tunnel.Forward{{Port: 16992}, {Port: 16994}}},
		}
	}
	return out
}

// The device table lists 10,000 devices and the search narrows them.
func TestDeviceTableFilter10000(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{snap: Snapshot{CIRA: ":4433", Proxy: ":1080", Devices: fleet(10000), Sessions: 3}}
	u := New(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	w.Resize(fyne.NewSize(900, 600))
	u.Refresh()
	if u.Shown() != 10000 {
		t.Fatalf("%d rows, want 10000", u.Shown())
	}
	test.Type(u.Search, "sim-00042")
	if u.Shown() != 10 { // sim-000420 … sim-000429
		t.Fatalf("%d rows for sim-00042, want 10", u.Shown())
	}
	u.Search.SetText("192.0.2.7:")
	if u.Shown() != 40 {
		t.Fatalf("%d rows for a remote address, want 40", u.Shown())
	}
	u.Search.SetText("")
	if u.Shown() != 10000 {
		t.Fatalf("%d rows after clearing, want 10000", u.Shown())
	}
	if got := u.counts.Text; got != "10000 devices connected · 3 console sessions" {
		t.Fatalf("overview: %q", got)
	}
}

// A device appears on the next refresh and disappears after it leaves.
func TestDeviceAppearsAndDisappears(t *testing.T) {
	test.NewTempApp(t)
	b := &fakeBackend{}
	u := New(b)
	w := test.NewWindow(u.Root)
	defer w.Close()
	u.Refresh()
	if u.Shown() != 0 {
		t.Fatal("rows with no device")
	}
	b.snap.Devices = fleet(1)
	u.Refresh()
	if u.Shown() != 1 || cell(u.shown[0], 0) != "sim-000000" || cell(u.shown[0], 5) != "16992,16994" {
		t.Fatalf("after connect: %d rows", u.Shown())
	}
	b.snap.Devices = nil
	u.Refresh()
	if u.Shown() != 0 {
		t.Fatal("device still listed after it left")
	}
}
