//go:build !nogui

// Package app is Presence's desktop window: it runs the ui package's
// screens in a real Fyne window over a running instance. It is the only
// package that imports fyne.io/fyne/v2/app (and so needs cgo and GL); the
// server-only build (-tags nogui) leaves it out.
package app

import (
	"context"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/app/engine"
	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/assets"
	"github.com/presence-mps/presence/internal/cli"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps"
)

// ID is the application id (also in FyneApp.toml).
const ID = "io.github.presence-mps.presence"

// Run shows the window and returns when it is closed or ctx ends. If the
// data dir has no certificate yet, the window first runs the setup; then it
// starts the server (off the UI goroutine) and shows the screens, or the
// reason the server could not start, in a sentence.
func Run(ctx context.Context, l cli.AppLaunch) error {
	a := fyneapp.NewWithID(ID)
	a.SetIcon(fyne.NewStaticResource("icon.png", assets.Icon))
	w := a.NewWindow("Presence")
	w.Resize(fyne.NewSize(1000, 640))

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
			fyne.Do(a.Quit)
		}
	}()

	startServer := func() {
		w.SetContent(widget.NewLabel("Starting Presence…"))
		go func() {
			in, err := l.Start()
			fyne.Do(func() {
				if err != nil {
					msg := widget.NewLabel("Presence could not start: " + err.Error())
					msg.Wrapping = fyne.TextWrapWord
					w.SetContent(msg)
					return
				}
				show(a, w, in, done)
			})
		}()
	}
	if l.Setup != nil {
		setup := ui.NewSetup(setupBackend{l.Setup}, ui.SuggestAddresses(), func(ui.SetupResult) { startServer() })
		w.SetContent(setup.Root)
	} else {
		startServer()
	}
	w.ShowAndRun()
	return nil
}

// setupBackend adapts the command line's first run to the setup screen.
type setupBackend struct {
	create func(address, user, password string) (cli.FirstRun, error)
}

func (s setupBackend) Create(address, user, password string) (ui.SetupResult, error) {
	r, err := s.create(address, user, password)
	return ui.SetupResult{Address: r.Address, User: r.User, Port: r.Port, RootSHA256: r.RootSHA256, RootPEM: r.RootPEM}, err
}

// show puts the screens of a running instance in the window, refreshes
// them once a second and turns device changes into notifications, until
// done closes. It runs on the Fyne goroutine.
func show(a fyne.App, w fyne.Window, in *instance.Instance, done <-chan struct{}) {
	u := ui.New(engine.Backend{In: in})
	w.SetContent(u.Root)
	u.Refresh()
	// Devices coming and going become desktop notifications, coalesced
	// so that a reconnect storm is one notification.
	notes := &ui.Coalescer{Window: 2 * time.Second, Emit: func(title, body string) {
		fyne.Do(func() { a.SendNotification(fyne.NewNotification(title, body)) })
	}}
	events, cancelEvents := in.Server.Subscribe(1 << 12)
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
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		defer notes.Stop()
		defer cancelEvents()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fyne.Do(u.Refresh)
			}
		}
	}()
}
