package discovery

import (
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Workaround for a start-up race in zeroconf v1.0.0's Server: mainloop
// starts recv4 and recv6, and each calls shutdownEnd.Add(1) only once it
// runs, while Shutdown calls shutdownEnd.Wait(). A Shutdown before both
// have called Add misuses the WaitGroup: it can panic with "sync: WaitGroup
// is reused before previous Wait has returned", and the race detector
// reports it even when the Add came first in time, unless something orders
// the two. So Advertise waits until every receive goroutine has been into
// ReadFrom, judged from the goroutine stacks: the goroutine is parked there
// ("IO wait"), or past it. ReadFrom takes the socket's fdMutex (an atomic)
// after the Add, and Shutdown takes it again to send the goodbyes before it
// calls Wait, which orders the Add before the Wait.
//
// The line numbers are those of v1.0.0's server.go;
// TestCloseRightAfterAdvertise fails if they stop matching.
const (
	zcPkg   = "github.com/grandcat/zeroconf"
	zcProbe = zcPkg + ".(*Server).probe("
	zcRecv4 = zcPkg + ".(*Server).recv4("
	zcRecv6 = zcPkg + ".(*Server).recv6("
	zcRead4 = 254 // c.ReadFrom(buf) in recv4, after shutdownEnd.Add(1) on 246
	zcRead6 = 282 // c.ReadFrom(buf) in recv6, after shutdownEnd.Add(1) on 274

	zcStartBound = 2 * time.Second
)

// waitServersStarted waits, for at most zcStartBound, until no zeroconf
// Server in the process has a receive goroutine that could still be before
// its WaitGroup Add. Goroutines start within microseconds, so this normally
// costs a stack dump or two.
func waitServersStarted() {
	deadline := time.Now().Add(zcStartBound)
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n == len(buf) && len(buf) < 64<<20 {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if !serversStarting(string(buf[:n])) || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// serversStarting reports whether the goroutine dump shows a zeroconf
// Server goroutine, other than the announcement goroutine, that has not
// been into ReadFrom yet. A goroutine that has not run at all shows only a
// compiler-made wrapper, so goroutines are recognised by their "created by"
// line (RegisterProxy creates mainloop, which creates recv4 and recv6).
func serversStarting(dump string) bool {
	for g := range strings.SplitSeq(dump, "\n\n") {
		if !strings.Contains(g, "\ncreated by "+zcPkg+".RegisterProxy") &&
			!strings.Contains(g, "\ncreated by "+zcPkg+".(*Server).mainloop") {
			continue
		}
		if strings.Contains(g, "\n"+zcProbe) {
			continue
		}
		if !recvPastRead(g) {
			return true
		}
	}
	return false
}

// recvPastRead reports whether the goroutine g is a recv4 or recv6 that is
// parked in ReadFrom or past it.
func recvPastRead(g string) bool {
	lines := strings.Split(g, "\n")
	for i, l := range lines {
		var read int
		switch {
		case strings.HasPrefix(l, zcRecv4):
			read = zcRead4
		case strings.HasPrefix(l, zcRecv6):
			read = zcRead6
		default:
			continue
		}
		// The next line is "\t/path/to/server.go:LINE +0xOFF".
		if i+1 == len(lines) {
			return false
		}
		loc := lines[i+1]
		j := strings.LastIndex(loc, ".go:")
		if j < 0 {
			return false
		}
		num, _, _ := strings.Cut(loc[j+len(".go:"):], " ")
		line, err := strconv.Atoi(num)
		if err != nil {
			return false
		}
		return line > read || line == read && strings.Contains(lines[0], "[IO wait")
	}
	return false
}
