package launch

import (
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugServer serves Go's pprof handlers, for diagnosing memory and CPU.
type debugServer struct {
	srv  *http.Server
	done chan struct{}
}

// serveDebug serves the profiles on addr (loopback, checked by the
// command line) until close.
func serveDebug(addr string) (*debugServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	d := &debugServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() { defer close(d.done); d.srv.Serve(ln) }()
	return d, nil
}

func (d *debugServer) close() {
	d.srv.Close()
	<-d.done
}
