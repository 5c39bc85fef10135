//go:build !nogui && !(linux || freebsd || openbsd || netbsd || dragonfly)

package app

// DisplayAvailable reports why the window cannot open: on Windows and
// macOS there is always a desktop to open it on.
func DisplayAvailable() error { return nil }
