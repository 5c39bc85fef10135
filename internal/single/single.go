// Package single keeps one Presence per data dir: the running instance
// holds an exclusive lock on <data-dir>/run/lock for its whole life, and a
// second one fails at once, never waiting.
package single

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrRunning means another process holds the data dir's lock.
var ErrRunning = errors.New("another Presence is already running with this data dir")

// Lock is a held instance lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock of dataDir, creating <dataDir>/run if needed. If
// another process holds it, the error wraps ErrRunning at once. The lock is
// released by Release, or by the OS when the process ends (even by kill
// -9), so a crash never leaves a stale lock behind.
func Acquire(dataDir string) (*Lock, error) {
	dir := filepath.Join(dataDir, "run")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the lock
	l.f = nil
	return err
}

var errWouldBlock = errors.New("locked")
