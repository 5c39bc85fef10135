//go:build unix

package amtsim

import "syscall"

// openFileLimit returns the process's RLIMIT_NOFILE soft limit (which the Go
// runtime raises to the hard limit at startup), or 0 if unknown.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return uint64(rl.Cur)
}
