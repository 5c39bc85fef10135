package adapter

import (
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/presence-mps/presence/internal/single"
	"github.com/presence-mps/presence/vault"
)

// Explain turns an error from starting or running Presence into a
// sentence an admin can act on, for the window.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	switch {
	case errors.Is(err, vault.ErrLocked):
		return "The keychain is locked. Unlock it (log in to the desktop session, or unlock the \"login\" keyring) and start Presence again."
	case errors.Is(err, vault.ErrUnavailable):
		return "No keychain answers on this machine. Start a keyring (gnome-keyring or KWallet), or keep secrets in files: presence vault migrate --to file."
	case errors.Is(err, vault.ErrNotFound):
		return "The certificate authority is missing from the vault this data dir uses. Restore a backup (presence cert restore) or create one (presence cert init)."
	case errors.Is(err, vault.ErrCorrupt):
		return "Stored secrets are damaged. Restore a backup with presence cert restore."
	case errors.Is(err, single.ErrRunning):
		return "Presence is already running for this data dir. Use that window (it may be hidden in the tray), or stop it first. (" + err.Error() + ")"
	case errors.Is(err, syscall.EADDRINUSE):
		return "A port Presence needs is in use by another program" + portOf(err) + ". Choose another port in Settings, or stop that program. (" + err.Error() + ")"
	case errors.Is(err, syscall.EACCES):
		return "Presence may not listen on a port below 1024" + portOf(err) + " without privileges. Choose a port above 1024 in Settings. (" + err.Error() + ")"
	}
	t := err.Error()
	if t != "" {
		t = strings.ToUpper(t[:1]) + t[1:]
	}
	if !strings.HasSuffix(t, ".") {
		t += "."
	}
	return t
}

// portOf names the address of a listen error, if it has one.
func portOf(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Addr != nil {
		return " (" + oe.Addr.String() + ")"
	}
	return ""
}
