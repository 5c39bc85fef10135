//go:build !linux

package discovery

// reexecInNetns does nothing: the mDNS tests are Linux-only (they need
// network namespaces so that no multicast leaves the machine).
func reexecInNetns() (code int, done bool) { return 0, false }
