//go:build !nogui && (linux || freebsd || openbsd || netbsd)

package app

import (
	"os"
	"path/filepath"

	"github.com/godbus/dbus/v5"
)

// trayAvailable reports whether a tray icon can be shown: on Linux and
// the BSDs the tray speaks D-Bus (StatusNotifierItem), and Fyne's tray
// crashes at quit when it found no session bus, so without one Presence
// runs with no tray (and closing the window quits). It never starts a
// bus: only an address in the environment or the user's runtime socket
// counts.
func trayAvailable() bool {
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		rt := os.Getenv("XDG_RUNTIME_DIR")
		if rt == "" {
			return false
		}
		if _, err := os.Stat(filepath.Join(rt, "bus")); err != nil {
			return false
		}
	}
	_, err := dbus.SessionBus() // shared: the tray uses this connection
	return err == nil
}
