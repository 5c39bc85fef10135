// Package adapter is the window's adapter over a running Presence
// (internal/instance, through launch.Running): it gives the window's
// narrow interfaces in app/ui value snapshots and plain actions. It is
// not the engine, only the one place where the window meets it.
// It imports no Fyne package at all, so the window's data path builds and
// tests without cgo; package app puts it behind the real window.
package adapter

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/logring"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/vault"
)

// Backend reads snapshots from a running instance and acts on it. It
// implements ui.Backend, ui.SettingsBackend, ui.LogBackend and, over the
// instance's AMT toolbox, ui.AMTBackend and ui.SOLBackend. Make it with
// New; Close stops its event recorder and its power watch.
type Backend struct {
	In      *instance.Instance
	History *history.Store // nil: no device timeline

	// Settings: Save keeps them for the next start; Level is the log
	// level in force; Log holds the latest log lines.
	Save func(settings.Settings) error
	// Moved, if set, is told that the listeners moved (run files).
	Moved func() error
	Level *slog.LevelVar
	Log   *logring.Ring
	// PowerWatch tunes the Power column's watch (zero fields: the
	// toolbox's defaults, a minute a device and 10 s for the selected
	// one). Set it before the window is built over the backend: the
	// first use starts the watch.
	PowerWatch toolbox.WatchOptions
	// Logger, if set, gets the AMT calls of the window that failed.
	Logger *slog.Logger

	amt      amtState
	rec      *recorder
	mu       sync.Mutex
	settings settings.Settings // as last applied
	problems []string          // from start: certificate findings and the like
	keyed    map[string]string
}

var (
	_ ui.Backend         = (*Backend)(nil)
	_ ui.SettingsBackend = (*Backend)(nil)
	_ ui.LogBackend      = (*Backend)(nil)
)

// New returns a backend for in with the settings it was started with, and
// starts recording its events for the overview. notify, if not nil, is
// told of every device that comes or goes (the desktop notifications).
func New(in *instance.Instance, s settings.Settings, notify func(ui.Change)) *Backend {
	b := &Backend{In: in, settings: s}
	b.rec = newRecorder(in.Server, 10*time.Second, notify)
	return b
}

// Close stops the recorder and the power watch, and ends the window's AMT
// calls in flight.
func (b *Backend) Close() {
	b.closeAMT()
	if b.rec != nil {
		b.rec.stop()
	}
}

// AddProblem adds a sentence to the problems the window shows.
func (b *Backend) AddProblem(text string) {
	b.mu.Lock()
	b.problems = append(b.problems, text)
	b.mu.Unlock()
}

// SetProblem sets the problem kept under key to text; "" clears it.
func (b *Backend) SetProblem(key, text string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keyed == nil {
		b.keyed = map[string]string{}
	}
	if text == "" {
		delete(b.keyed, key)
	} else {
		b.keyed[key] = text
	}
}

// missingAccounts are the account kinds the window asks for, with what
// goes wrong without one.
var missingAccounts = []struct{ kind, text string }{
	{vault.KindCIRA, "No CIRA account yet: AMT devices cannot log in until you add one under Accounts."},
	{vault.KindConsole, "No console account yet: consoles on the LAN cannot use the proxy or the API until you add one under Accounts."},
}

// CheckAccounts puts a problem in the window for each account kind with no
// account, and clears it once one is added. It reads the vault: call it
// off the Fyne goroutine. A vault error leaves the problems as they are
// (the Accounts screen says what is wrong).
func (b *Backend) CheckAccounts(ctx context.Context, acc *vault.Accounts) {
	for _, m := range missingAccounts {
		names, err := acc.List(ctx, m.kind)
		if err != nil {
			continue
		}
		if len(names) == 0 {
			b.SetProblem("accounts/"+m.kind, m.text)
		} else {
			b.SetProblem("accounts/"+m.kind, "")
		}
	}
}

// KillSession ends a live console session.
func (b *Backend) KillSession(id uint64) error {
	if !b.In.Sessions().Kill(id) {
		return errors.New("it has already ended")
	}
	return nil
}

// Disconnect closes a device's tunnel: here, or, for a device another
// instance of the fleet holds, on that instance.
func (b *Backend) Disconnect(guid string) error {
	ctx, cancel := context.WithTimeout(context.Background(), disconnectTimeout)
	defer cancel()
	_, _, err := b.In.Disconnect(ctx, guid, desktopUser)
	return err
}

// Map opens a loopback port mapping to a device port. A peer's device is
// reached through the fleet at each connection (the proxy's dial looks
// it up fleet-wide), and its owner checks the port then.
func (b *Backend) Map(guid string, port uint32) (string, error) {
	if b.In.Proxy == nil {
		return "", errors.New("the proxy is off: turn it on in Settings to map ports")
	}
	m, err := b.In.Proxy.Map(proxy.MapConfig{Device: guid, Port: port, User: desktopUser})
	return m.Listen, err
}

// Timeline returns the device's latest history events, newest first.
func (b *Backend) Timeline(guid string) ([]ui.TimelineEntry, error) {
	if b.History == nil {
		return nil, nil
	}
	evs, err := b.History.Timeline(guid, time.Time{}, time.Time{}, 50)
	if err != nil {
		return nil, err
	}
	out := make([]ui.TimelineEntry, 0, len(evs))
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		out = append(out, ui.TimelineEntry{Time: e.Time, Kind: e.Kind, Reason: e.Reason, Remote: e.Remote})
	}
	return out, nil
}

// Snapshot is what the window shows now.
func (b *Backend) Snapshot() ui.Snapshot {
	sessions := b.In.Sessions().List()
	l := b.In.Listening()
	st := b.In.Server.Stats()
	s := ui.Snapshot{
		Devices: b.In.Server.Devices(), Sessions: sessions, Taken: time.Now(),
		CIRA: addr(l.CIRA), Proxy: addr(l.Proxy), API: addr(l.API), Paused: l.Paused,
		Accepted: st.Accepted,
	}
	for _, n := range st.Failures {
		s.Failures += n
	}
	for _, x := range sessions {
		s.BytesToDevices += x.BytesToDevice
		s.BytesFromDevices += x.BytesFromDevice
	}
	s.Recent, s.Samples = b.rec.read()
	s.Fleet = fleetOf(b.In)
	b.watchDevices(s.Devices)
	b.mu.Lock()
	s.Problems = append(s.Problems, b.problems...)
	for _, k := range slices.Sorted(maps.Keys(b.keyed)) {
		s.Problems = append(s.Problems, b.keyed[k])
	}
	b.mu.Unlock()
	return s
}

func addr(a interface{ String() string }) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// recorder keeps the latest engine events and a sample of the number of
// connected devices every interval, for the overview's list and chart.
type recorder struct {
	mu      sync.Mutex
	recent  []ui.Event // newest last, at most maxRecent
	samples []ui.Sample
	stop    func()
	srv     *mps.Server
}

const (
	maxRecent = 100
	// Samples are taken every interval, and at most once a second when
	// devices come and go; those older than sampleSpan, or beyond
	// maxSamples, are dropped.
	maxSamples = 6 * 3600
	sampleSpan = 6 * time.Hour
)

func newRecorder(srv *mps.Server, every time.Duration, notify func(ui.Change)) *recorder {
	r := &recorder{srv: srv}
	events, cancel := srv.Subscribe(1 << 12)
	done := make(chan struct{})
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); close(done) }) }
	r.sample()
	go func() {
		for ev := range events { // closed by cancel or the server's shutdown
			name := cmp.Or(ev.Device.Hostname, ev.Device.UUID)
			if notify != nil && (ev.Kind == mps.EventConnected || ev.Kind == mps.EventDisconnected) {
				notify(ui.Change{Up: ev.Kind == mps.EventConnected, Name: name})
			}
			r.mu.Lock()
			r.recent = append(r.recent, ui.Event{Time: ev.Time, Kind: ev.Kind.String(), Device: name, GUID: ev.Device.UUID, Reason: ev.Reason})
			if len(r.recent) > maxRecent {
				r.recent = append(r.recent[:0], r.recent[len(r.recent)-maxRecent:]...)
			}
			due := len(r.samples) == 0 || time.Since(r.samples[len(r.samples)-1].Time) >= time.Second
			r.mu.Unlock()
			if due {
				r.sample()
			}
		}
	}()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.sample()
			}
		}
	}()
	return r
}

func (r *recorder) sample() {
	n := r.srv.Stats().Tunnels
	r.mu.Lock()
	now := time.Now()
	r.samples = append(r.samples, ui.Sample{Time: now, Devices: n})
	drop := len(r.samples) - maxSamples
	for drop < len(r.samples)-1 && now.Sub(r.samples[max(drop, 0)].Time) > sampleSpan {
		drop = max(drop, 0) + 1
	}
	if drop > 0 {
		r.samples = append(r.samples[:0], r.samples[drop:]...)
	}
	r.mu.Unlock()
}

// read returns copies: the events newest first, and the samples with
// one for now at the end, so the chart's last point is always current.
func (r *recorder) read() ([]ui.Event, []ui.Sample) {
	now := ui.Sample{Time: time.Now(), Devices: r.srv.Stats().Tunnels}
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := make([]ui.Event, len(r.recent))
	for i, e := range r.recent {
		ev[len(r.recent)-1-i] = e
	}
	return ev, append(append(make([]ui.Sample, 0, len(r.samples)+1), r.samples...), now)
}
