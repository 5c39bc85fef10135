// Package engine adapts a running Presence (internal/instance) to the
// window's narrow interfaces in app/ui: value snapshots and plain actions.
// It imports no Fyne package at all, so the window's data path builds and
// tests without cgo; package app puts it behind the real window.
package engine

import (
	"errors"
	"time"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps/proxy"
)

// Backend reads snapshots from a running instance and acts on it. It
// implements ui.Backend.
type Backend struct{ In *instance.Instance }

var _ ui.Backend = Backend{}

// KillSession ends a live console session.
func (b Backend) KillSession(id uint64) error {
	if !b.In.Sessions().Kill(id) {
		return errors.New("it has already ended")
	}
	return nil
}

// Disconnect closes a device's tunnel.
func (b Backend) Disconnect(guid string) error { return b.In.Server.Disconnect(guid) }

// Map opens a loopback port mapping to a device port.
func (b Backend) Map(guid string, port uint32) (string, error) {
	m, err := b.In.Proxy.Map(proxy.MapConfig{Device: guid, Port: port, User: "(desktop)"})
	return m.Listen, err
}

// Snapshot is what the window shows now.
func (b Backend) Snapshot() ui.Snapshot {
	s := ui.Snapshot{Devices: b.In.Server.Devices(), Sessions: b.In.Sessions().List(), Taken: time.Now()}
	if b.In.CIRAAddr != nil {
		s.CIRA = b.In.CIRAAddr.String()
	}
	if b.In.ProxyAddr != nil {
		s.Proxy = b.In.ProxyAddr.String()
	}
	if b.In.APIAddr != nil {
		s.API = b.In.APIAddr.String()
	}
	return s
}
