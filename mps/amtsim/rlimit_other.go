//go:build !unix

package amtsim

// openFileLimit returns 0: the limit is unknown on this system.
func openFileLimit() uint64 { return 0 }
