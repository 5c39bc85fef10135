package discovery

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// The mDNS tests must never multicast on a real network. Where the
	// platform allows it, run the whole test binary again inside a private
	// network namespace (see reexecInNetns); otherwise they skip themselves.
	if code, done := reexecInNetns(); done {
		os.Exit(code)
	}
	os.Exit(m.Run())
}
