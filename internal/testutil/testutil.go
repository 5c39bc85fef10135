// Package testutil holds measuring helpers shared by benchmarks of several
// packages.
package testutil

import (
	"io"
	"net"
	"testing"
)

// EchoThroughput measures bytes per second through c, whose far end echoes:
// one goroutine writes b.N chunks of chunk bytes while the benchmark reads
// them back. Each byte crosses the path twice; SetBytes counts it once.
func EchoThroughput(b *testing.B, c net.Conn, chunk int) {
	b.Helper()
	buf := make([]byte, chunk)
	rbuf := make([]byte, chunk)
	b.SetBytes(int64(chunk))
	b.ResetTimer()
	done := make(chan error, 1)
	go func() {
		var err error
		for range b.N {
			if _, err = c.Write(buf); err != nil {
				break
			}
		}
		done <- err
	}()
	for range b.N {
		if _, err := io.ReadFull(c, rbuf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
