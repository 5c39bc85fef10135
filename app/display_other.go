//go:build !nogui && !(linux || freebsd || openbsd || netbsd || dragonfly)

package app

// displayAvailable reports why the window cannot open: on Windows and
// macOS there is always a desktop to open it on.
func displayAvailable() error { return nil }
