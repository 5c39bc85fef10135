//go:build unix

package uibench

import "syscall"

// raiseOpenFiles raises this process's soft limit on open files to its hard
// limit, and returns the soft limit then (0: unknown). The Go runtime does
// the same at startup on Unix; calling it makes the need explicit, and
// reads the limit.
func raiseOpenFiles() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil { // macOS refuses an infinite hard limit: keep the soft one
			rl = want
		}
	}
	return uint64(rl.Cur)
}
