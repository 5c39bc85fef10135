package mps

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/tunnel"
)

// ErrBadAlias is returned by SetAlias for a name that could be confused
// with a GUID or is not a plain host label.
var ErrBadAlias = errors.New("mps: an alias is 1 to 63 letters, digits, '-' or '_', and not a GUID")

// SetAlias makes alias (case-insensitive) another name of device, a GUID in
// any form. An empty device removes the alias. Aliases name devices whether
// or not they are connected.
func (s *Server) SetAlias(alias, device string) error {
	alias = strings.ToLower(strings.TrimSuffix(alias, ".amt"))
	if !validAlias(alias) {
		return ErrBadAlias
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if device == "" {
		delete(s.aliases, alias)
		return nil
	}
	u, err := apf.ParseUUID(device)
	if err != nil {
		return fmt.Errorf("mps: alias target %q is not a GUID", device)
	}
	s.aliases[alias] = u
	return nil
}

// Alias returns the GUID that alias names (case-insensitive, ".amt"
// allowed), without copying the table as Aliases does.
func (s *Server) Alias(alias string) (guid string, ok bool) {
	alias = strings.ToLower(strings.TrimSuffix(alias, ".amt"))
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.aliases[alias]
	if !ok {
		return "", false
	}
	return u.String(), true
}

// Aliases returns every alias and the GUID it names.
func (s *Server) Aliases() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.aliases))
	for a, u := range maps.All(s.aliases) {
		out[a] = u.String()
	}
	return out
}

func validAlias(a string) bool {
	if a == "" || len(a) > 63 {
		return false
	}
	if _, err := apf.ParseUUID(a); err == nil {
		return false
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// consoleConn is a channel that knows its device, for session records.
type consoleConn struct {
	net.Conn
	id string
}

func (c consoleConn) DeviceID() string { return c.id }

// DialConsole is [Server.Dial] for consoles, as a proxy.DialFunc: host is
// whatever name the console used, and the refusals wrap
// proxy.ErrUnknownHost (no connected device by that name; never a DNS
// lookup) and proxy.ErrPortNotAllowed (a port the device did not announce).
// The connection reports its device's GUID (proxy.Identified).
func (s *Server) DialConsole(ctx context.Context, host string, port uint32) (net.Conn, error) {
	c := s.lookup(host)
	if c == nil {
		return nil, fmt.Errorf("%w: no connected device is named %q", proxy.ErrUnknownHost, host)
	}
	ch, err := c.Dial(ctx, port)
	switch {
	case errors.Is(err, tunnel.ErrPortNotAnnounced):
		return nil, fmt.Errorf("%w: device %s does not offer port %d", proxy.ErrPortNotAllowed, c.UUID(), port)
	case errors.Is(err, tunnel.ErrTooManyChannels) || isShortage(err):
		return nil, fmt.Errorf("%w: device %s has no channel free for port %d (%w)", proxy.ErrDeviceBusy, c.UUID(), port, err)
	case errors.Is(err, tunnel.ErrClosed):
		return nil, fmt.Errorf("%w: device %s has just disconnected", proxy.ErrUnknownHost, c.UUID())
	case err != nil:
		return nil, err
	}
	return consoleConn{ch, c.UUID().String()}, nil
}

// isShortage reports a CHANNEL_OPEN_FAILURE for lack of resources: AMT
// has a handful of channel slots.
func isShortage(err error) bool {
	var oe *tunnel.OpenError
	return errors.As(err, &oe) && oe.Reason == apf.OpenResourceShortage
}
