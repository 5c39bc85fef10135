//go:build !nogui && !(linux || freebsd || openbsd || netbsd)

package app

// trayAvailable reports whether a tray icon can be shown: always, on
// Windows and macOS.
func trayAvailable() bool { return true }
