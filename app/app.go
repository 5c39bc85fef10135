//go:build !nogui

// Package app is Presence's desktop window: it runs the ui package's
// screens in a real Fyne window over a running instance. It is the only
// package that imports fyne.io/fyne/v2/app (and so needs cgo and GL); the
// server-only build (-tags nogui) leaves it out.
package app

import (
	"context"
	"errors"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/assets"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps"
)

// ID is the application id (also in FyneApp.toml).
const ID = "io.github.presence-mps.presence"

// Run shows the window for in and returns when the window is closed or
// ctx ends. The window is refreshed from the engine once a second.
func Run(ctx context.Context, in *instance.Instance) error {
	a := fyneapp.NewWithID(ID)
	a.SetIcon(fyne.NewStaticResource("icon.png", assets.Icon))
	w := a.NewWindow("Presence")
	u := ui.New(backend{in})
	w.SetContent(u.Root)
	w.Resize(fyne.NewSize(1000, 640))
	u.Refresh()
	// Devices coming and going become desktop notifications, coalesced
	// so that a reconnect storm is one notification.
	notes := &ui.Coalescer{Window: 2 * time.Second, Emit: func(title, body string) {
		fyne.Do(func() { a.SendNotification(fyne.NewNotification(title, body)) })
	}}
	defer notes.Stop()
	events, cancelEvents := in.Server.Subscribe(1 << 12)
	defer cancelEvents()
	go func() {
		for ev := range events { // closed by cancelEvents or the server's shutdown
			if ev.Kind != mps.EventConnected && ev.Kind != mps.EventDisconnected {
				continue
			}
			name := ev.Device.Hostname
			if name == "" {
				name = ev.Device.UUID
			}
			notes.Add(ui.Change{Up: ev.Kind == mps.EventConnected, Name: name})
		}
	}()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				fyne.Do(a.Quit)
				return
			case <-t.C:
				fyne.Do(u.Refresh)
			}
		}
	}()
	w.ShowAndRun()
	close(done)
	return nil
}

// backend reads snapshots from a running instance.
type backend struct{ in *instance.Instance }

func (b backend) KillSession(id uint64) error {
	if !b.in.Sessions().Kill(id) {
		return errors.New("it has already ended")
	}
	return nil
}

func (b backend) Snapshot() ui.Snapshot {
	s := ui.Snapshot{Devices: b.in.Server.Devices(), Sessions: b.in.Sessions().List(), Taken: time.Now()}
	if b.in.CIRAAddr != nil {
		s.CIRA = b.in.CIRAAddr.String()
	}
	if b.in.ProxyAddr != nil {
		s.Proxy = b.in.ProxyAddr.String()
	}
	if b.in.APIAddr != nil {
		s.API = b.in.APIAddr.String()
	}
	return s
}
