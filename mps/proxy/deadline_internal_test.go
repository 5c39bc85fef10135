package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// noDeadlines is a connection that refuses deadlines, as a fleet peer's
// forwarded stream does.
type noDeadlines struct{ net.Conn }

var errNoDeadline = errors.New("no deadlines here")

func (noDeadlines) SetDeadline(time.Time) error      { return errNoDeadline }
func (noDeadlines) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (noDeadlines) SetWriteDeadline(time.Time) error { return errNoDeadline }

func pipe(t *testing.T) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	c := WithDeadlines(noDeadlines{a})
	if _, ok := c.(*deadlineConn); !ok {
		t.Fatalf("WithDeadlines gave %T", c)
	}
	t.Cleanup(func() { c.Close(); b.Close() })
	return c, b
}

func TestWithDeadlinesKeepsAConnWithDeadlines(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if WithDeadlines(a) != a {
		t.Fatal("a connection with deadlines was wrapped")
	}
}

// The WS-Man client's liveness check: a read with a deadline in the past
// times out on an idle connection, and data sent later is still read.
func TestDeadlineConnPastDeadline(t *testing.T) {
	c, peer := pipe(t)
	c.SetReadDeadline(time.Unix(1, 0))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline = %v", err)
	}
	c.SetReadDeadline(time.Time{})
	go peer.Write([]byte("hello"))
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
		t.Fatalf("read after the check = %q, %v", b, err)
	}
}

// A read blocked on a silent peer ends when the deadline is moved to the
// past (how a call's context ends it), and at a deadline set before.
func TestDeadlineConnBlockedRead(t *testing.T) {
	c, _ := pipe(t)
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	c.SetDeadline(time.Unix(1, 0))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked read = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("moving the deadline did not end a blocked read")
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("read with a deadline = %v after %v", err, time.Since(start))
	}
}

// A write the peer never reads fails at its deadline and closes the
// connection; Close ends the reader.
func TestDeadlineConnWriteDeadline(t *testing.T) {
	c, peer := pipe(t)
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Write([]byte("nobody reads this")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the deadline = %v", err)
	}
	if _, err := peer.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection is open after a write timed out")
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the reader")
	}
}

// Close ends a blocked read.
func TestDeadlineConnCloseEndsRead(t *testing.T) {
	c, _ := pipe(t)
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a read on a closed connection succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked read")
	}
}
