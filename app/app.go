//go:build !nogui

// Package app is Presence's desktop window: it runs the ui package's
// screens in a real Fyne window over a running instance, with a system
// tray and notifications. It is the only package that imports
// fyne.io/fyne/v2/app (and so needs cgo and GL); the server-only build
// (-tags nogui) leaves it out.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/app/adapter"
	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/assets"
	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/internal/settings"
)

// ID is the application id (also in FyneApp.toml).
const ID = "io.github.presence-mps.presence"

// Run shows the window and returns when the admin quits or ctx ends. If
// the data dir has no certificate yet, the window first runs the setup;
// then it starts the server (off the UI goroutine) and shows the screens,
// or the reason the server could not start, in a sentence. Where there is
// no display it returns at once, with an error that says so; the caller
// stops the server, and a start still in progress, after Run returns.
func Run(ctx context.Context, l launch.Window) error {
	if err := DisplayAvailable(); err != nil {
		return err
	}
	a := fyneapp.NewWithID(ID)
	icon := fyne.NewStaticResource("icon.png", assets.Icon)
	a.SetIcon(icon)
	w := a.NewWindow("Presence")
	w.Resize(fyne.NewSize(1100, 700))
	saved := l.Settings

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
			fyne.Do(a.Quit)
		}
	}()

	t := newTray(a, w, icon)
	w.SetCloseIntercept(func() {
		if t != nil && t.closeToTray {
			t.setShown(false)
			return
		}
		a.Quit()
	})
	if t != nil {
		t.closeToTray = saved.CloseToTray
	}

	var startServer func()
	startServer = func() {
		w.SetContent(widget.NewLabel("Starting Presence…"))
		go func() {
			r, err := l.Start(ctx)
			fyne.Do(func() {
				if err != nil {
					msg := widget.NewLabel("Presence could not start. " + adapter.Explain(err))
					msg.Wrapping = fyne.TextWrapWord
					msg.Importance = widget.DangerImportance
					w.SetContent(container.NewVBox(msg, widget.NewButton("Try again", startServer)))
					w.Show()
					return
				}
				show(a, w, t, r, l, saved, done)
			})
		}()
	}
	if l.Setup != nil {
		setup := ui.NewSetup(setupBackend{l.Setup, l.Join}, ui.SuggestAddresses(), func(ui.SetupResult) { startServer() })
		setup.Window = w
		w.SetContent(setup.Root)
	} else {
		startServer()
	}
	if saved.StartMinimised && t != nil && l.Setup == nil {
		t.shown = false
		t.toggle.Label = "Show window"
		a.Run() // the tray shows the window
	} else {
		w.ShowAndRun()
	}
	return nil
}

// setupBackend adapts the first run to the setup screen. Its calls block
// (RSA keys, the keychain, the bundle file); the screen makes them off
// the Fyne goroutine.
type setupBackend struct {
	create func(address, user, password string) (launch.FirstRun, error)
	join   func(bundle io.Reader, passphrase, address string) (launch.FirstRun, error)
}

func (s setupBackend) Create(address, user, password string) (ui.SetupResult, error) {
	return setupResult(s.create(address, user, password))
}

// Join reads the bundle file at path and joins its fleet.
func (s setupBackend) Join(path, passphrase, address string) (ui.SetupResult, error) {
	if s.join == nil {
		return ui.SetupResult{}, errors.New("this window cannot join a fleet: use presence fleet join")
	}
	f, err := os.Open(path)
	if err != nil {
		return ui.SetupResult{}, err
	}
	defer f.Close()
	return setupResult(s.join(f, passphrase, address))
}

func setupResult(r launch.FirstRun, err error) (ui.SetupResult, error) {
	return ui.SetupResult{Address: r.Address, User: r.User, Port: r.Port, RootSHA256: r.RootSHA256, RootPEM: r.RootPEM,
		Backup: r.Backup, Fleet: r.Fleet, CIRAUsers: r.CIRAUsers}, err
}

// show puts the screens of a running instance in the window, refreshes
// them once a second and turns device changes into notifications, until
// done closes. It runs on the Fyne goroutine.
func show(a fyne.App, w fyne.Window, t *tray, r *launch.Running, l launch.Window, s settings.Settings, done <-chan struct{}) {
	// Devices coming and going become desktop notifications, coalesced
	// so that a reconnect storm is one notification.
	notes := &ui.Coalescer{Window: 2 * time.Second, Emit: func(title, body string) {
		fyne.Do(func() { a.SendNotification(fyne.NewNotification(title, body)) })
	}}
	b := adapter.New(r.Instance, s, notes.Add)
	b.History, b.Level, b.Log, b.Moved = r.History, l.LogLevel, l.Log, r.ListenersMoved
	b.Logger = l.Logger // the window's failed AMT calls
	if l.SaveSettings != nil {
		b.Save = func(s settings.Settings) error {
			if t != nil {
				fyne.Do(func() { t.closeToTray = s.CloseToTray })
			}
			return l.SaveSettings(s)
		}
	}
	for _, p := range r.CertProblems {
		if p.Severe {
			b.AddProblem("Certificate: " + p.Text)
		}
	}
	u := ui.New(b)
	u.Window = w
	for _, s := range adminScreens(w, r, l.Logger) {
		u.AddScreen(s.name, s.root, s.shown)
		if s.addAccount != nil {
			u.AddAccount = func(kind, name string) { u.Show(s.name); s.addAccount(kind, name) }
		}
	}
	set := ui.NewSettings(b)
	u.AddScreen("Settings", set.Root, func() { set.Fill(b.Settings()) })
	logs := ui.NewLog(b)
	u.AddScreen("Log", logs.Root, logs.Poll)
	w.SetContent(u.Root)
	u.Refresh()
	if t != nil {
		t.moved = r.ListenersMoved
		t.attach(u, b)
	}
	// Snapshots are read and prepared (sorted, filtered) here, off the
	// Fyne goroutine; only applying them touches widgets. Every 15 s the
	// accounts are checked, for the banner.
	go func() {
		tick := time.NewTicker(time.Second)
		n := 0
		defer tick.Stop()
		defer notes.Stop()
		defer b.Close()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if n%15 == 0 {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					b.CheckAccounts(ctx, r.Accounts)
					cancel()
				}
				n++
				p := u.Prepare(b.Snapshot())
				fyne.Do(func() {
					u.ApplyPrepared(p)
					logs.Poll()
					if t != nil {
						t.update(p.Snapshot)
					}
				})
			}
		}
	}()
}

// tray is the system tray icon and menu: status and counts, show or hide
// the window, pause the listeners, quit.
type tray struct {
	a           fyne.App
	desk        desktop.App
	w           fyne.Window
	menu        *fyne.Menu
	status      *fyne.MenuItem
	toggle      *fyne.MenuItem
	pause       *fyne.MenuItem
	closeToTray bool
	shown       bool
	u           *ui.UI
	b           *adapter.Backend
	moved       func() error // updates the run files
}

// newTray adds the tray icon, or returns nil where the driver has none.
func newTray(a fyne.App, w fyne.Window, icon fyne.Resource) *tray {
	desk, ok := a.(desktop.App)
	if !ok || !trayAvailable() {
		return nil
	}
	t := &tray{a: a, desk: desk, w: w, shown: true}
	t.status = fyne.NewMenuItem("Presence: starting", nil)
	t.status.Disabled = true
	t.toggle = fyne.NewMenuItem("Hide window", t.toggleWindow)
	t.pause = fyne.NewMenuItem("Pause listeners", t.togglePause)
	t.pause.Disabled = true
	quit := fyne.NewMenuItem("Quit Presence", a.Quit)
	quit.IsQuit = true
	t.menu = fyne.NewMenu("Presence", t.status, fyne.NewMenuItemSeparator(), t.toggle, t.pause, fyne.NewMenuItemSeparator(), quit)
	desk.SetSystemTrayIcon(icon)
	desk.SetSystemTrayMenu(t.menu)
	desk.SetSystemTrayWindow(w)
	return t
}

func (t *tray) attach(u *ui.UI, b *adapter.Backend) {
	t.u, t.b = u, b
	t.pause.Disabled = false
	t.menu.Refresh()
}

func (t *tray) toggleWindow() { t.setShown(!t.shown) }

func (t *tray) setShown(shown bool) {
	if shown {
		t.w.Show()
		t.w.RequestFocus()
	} else {
		t.w.Hide()
	}
	t.shown = shown
	t.toggle.Label = map[bool]string{true: "Hide window", false: "Show window"}[t.shown]
	t.menu.Refresh()
}

// togglePause pauses or resumes the listeners off the Fyne goroutine.
func (t *tray) togglePause() {
	if t.b == nil {
		return
	}
	in := t.b.In
	go func() {
		var err error
		if in.Listening().Paused {
			err = in.Resume()
		} else {
			in.Pause()
		}
		if err == nil && t.moved != nil {
			err = t.moved()
		}
		s := t.b.Snapshot()
		fyne.Do(func() {
			if err != nil {
				t.u.Report("Pause or resume did not complete. " + adapter.Explain(err))
			}
			t.u.Apply(s)
			t.update(s)
		})
	}()
}

// update shows s's counts in the menu.
func (t *tray) update(s ui.Snapshot) {
	state := fmt.Sprintf("%d devices · %d sessions", len(s.Devices), len(s.Sessions))
	if s.Paused {
		state = "Paused · " + state
	}
	t.status.Label = "Presence: " + state
	t.pause.Label = map[bool]string{true: "Resume listeners", false: "Pause listeners"}[s.Paused]
	t.menu.Refresh()
}
