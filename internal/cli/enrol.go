package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/api"
)

const enrolUsage = `usage: presence enrol ADDRESS[:PORT] [--amt-user U] [--tls [--pin SHA256]] [--replace] [--no-wait]
       presence enrol --file FILE [flags]          one address a line ("#" starts a comment)
       presence unenrol ADDRESS[:PORT]|DEVICE [--amt-user U] [--tls]

The AMT admin password is read from standard input (with --user, the console
password first, then the AMT password, a line each). The running instance
does the work: it talks WS-Man to the device on the LAN (16992, or 16993 with
--tls), writes its root, its MPS entry (and a fleet peer's as the backup), the
policies and, last, environment detection, then waits for the tunnel.
`

// enrolParallel is how many devices of a --file batch are enrolled at once.
const enrolParallel = 32

func runEnrol(ctx context.Context, args []string, env Env) error {
	return enrolCmd(ctx, args, env, false)
}

func runUnenrol(ctx context.Context, args []string, env Env) error {
	return enrolCmd(ctx, args, env, true)
}

func enrolCmd(ctx context.Context, args []string, env Env, remove bool) error {
	name := "enrol"
	if remove {
		name = "unenrol"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true)
	var req api.EnrolRequest
	var file string
	var noWait bool
	fs.StringVar(&req.User, "amt-user", "admin", "the AMT admin user")
	fs.BoolVar(&req.TLS, "tls", false, "WS-Man over TLS (port 16993); the device's certificate is shown and pinned on first use")
	fs.StringVar(&req.Pin, "pin", "", "with --tls: the SHA-256 of the device's certificate it must present")
	if !remove {
		fs.BoolVar(&req.Replace, "replace", false, "remove other MPSes' entries and policies that are in the way")
		fs.StringVar(&file, "file", "", "enrol every address in FILE (one a line), "+fmt.Sprint(enrolParallel)+" at a time")
		fs.BoolVar(&noWait, "no-wait", false, "do not wait for the device's tunnel")
	}
	var pos []string
	for {
		if err := parse(fs, args, env); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	var addrs []string
	switch {
	case file != "" && len(pos) == 0:
		var err error
		if addrs, err = readAddresses(file); err != nil {
			return err
		}
	case file == "" && len(pos) == 1:
		addrs = pos
	default:
		return usageError{enrolUsage}
	}
	if f.format == "csv" {
		return usageError{"--format: want table or json"}
	}
	if noWait {
		req.WaitSeconds = -1
	}
	// The passwords: the console's first with --user, then the AMT one.
	n := 1
	if f.user != "" {
		n = 2
	}
	pws, err := readPasswords(env.Stdin, n)
	if err != nil && !(remove && n == 1) {
		return err
	}
	if len(pws) == n {
		req.Password = string(pws[n-1])
	}
	cenv := env
	if f.user != "" {
		cenv.Stdin = strings.NewReader(string(pws[0]) + "\n")
	}
	cl, err := f.client(cenv)
	if err != nil {
		return err
	}
	cl.http.Timeout = 0 // the stream lasts as long as the enrolment; the server bounds it

	path := "/api/v1/enrol"
	if remove {
		path = "/api/v1/unenrol"
	}
	out := &syncWriter{w: env.Stdout}
	if len(addrs) == 1 {
		r := req
		r.Address = addrs[0]
		res, err := cl.enrol(ctx, path, r, func(s api.EnrolStep) {
			if f.format != "json" {
				fmt.Fprintf(out, "%-8s %-11s %s\n", s.State, s.Step, s.Sentence)
			}
		})
		if f.format == "json" {
			printJSON(out, res)
		} else if err == nil {
			printEnrolResult(out, res, remove)
		}
		return err
	}
	return enrolBatch(ctx, cl, path, req, addrs, out, f.format == "json", remove)
}

// enrolBatch enrols addrs, enrolParallel at a time, one line per device
// (or a JSON array), and fails when any failed.
func enrolBatch(ctx context.Context, cl *apiClient, path string, req api.EnrolRequest, addrs []string, out io.Writer, asJSON, remove bool) error {
	start := time.Now()
	results := make([]api.EnrolResult, len(addrs))
	errs := make([]error, len(addrs))
	sem := make(chan struct{}, enrolParallel)
	var wg sync.WaitGroup
	for i, a := range addrs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			r := req
			r.Address = a
			results[i], errs[i] = cl.enrol(ctx, path, r, nil)
			if !asJSON {
				if errs[i] != nil {
					fmt.Fprintf(out, "failed   %s: %v\n", a, errs[i])
				} else {
					fmt.Fprintf(out, "done     %s  %s  %s\n", a, results[i].GUID, tunnelWord(results[i], remove))
				}
			}
		}()
	}
	wg.Wait()
	failed := 0
	for _, e := range errs {
		if e != nil {
			failed++
		}
	}
	if asJSON {
		type row struct {
			api.EnrolResult
			Error string `json:"error,omitempty"`
		}
		rows := make([]row, len(addrs))
		for i := range rows {
			rows[i].EnrolResult = results[i]
			rows[i].Address = addrs[i]
			if errs[i] != nil {
				rows[i].Error = errs[i].Error()
			}
		}
		printJSON(out, rows)
	} else {
		fmt.Fprintf(out, "%d of %d devices done in %.1f s\n", len(addrs)-failed, len(addrs), time.Since(start).Seconds())
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d devices failed", failed, len(addrs))
	}
	return nil
}

func tunnelWord(r api.EnrolResult, remove bool) string {
	switch {
	case remove && r.Connected:
		return "removed through the tunnel"
	case remove:
		return "removed over the LAN"
	case r.Connected:
		return "tunnel up"
	}
	return "no tunnel yet"
}

func printEnrolResult(w io.Writer, r api.EnrolResult, remove bool) {
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.Certificate != "" {
		fmt.Fprintf(w, "device certificate SHA-256: %s\n", r.Certificate)
	}
	verb := "enrolled"
	if remove {
		verb = "unenrolled"
	}
	fmt.Fprintf(w, "%s %s (%s): %s, in %.1f s\n", r.Address, verb, r.GUID, tunnelWord(r, remove), float64(r.Millis)/1000)
}

// readAddresses reads one address a line; blank lines and # comments are
// skipped.
func readAddresses(name string) ([]string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no address", name)
	}
	if len(out) > 10_000 {
		return nil, fmt.Errorf("%s holds %d addresses; at most 10000 at once", name, len(out))
	}
	return out, nil
}

// enrol posts an enrolment request and follows its event stream, calling
// step for each step; it returns the result, or the error the instance
// sent.
func (c *apiClient) enrol(ctx context.Context, path string, req api.EnrolRequest, step func(api.EnrolStep)) (api.EnrolResult, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return api.EnrolResult{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return api.EnrolResult{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "text/event-stream")
	c.authorize(hr)
	resp, err := c.http.Do(hr)
	if err != nil {
		return api.EnrolResult{}, fmt.Errorf("cannot reach the instance's API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return api.EnrolResult{}, responseError(resp, path)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data := []byte(line[len("data: "):])
			switch event {
			case "step":
				var s api.EnrolStep
				if json.Unmarshal(data, &s) == nil && step != nil {
					step(s)
				}
			case "result":
				var r api.EnrolResult
				if err := json.Unmarshal(data, &r); err != nil {
					return r, fmt.Errorf("the instance's result is not readable: %w", err)
				}
				return r, nil
			case "error":
				var e struct {
					Error  string          `json:"error"`
					Result api.EnrolResult `json:"result"`
				}
				if err := json.Unmarshal(data, &e); err != nil || e.Error == "" {
					return e.Result, errors.New("the instance sent an unreadable error")
				}
				return e.Result, errors.New(e.Error)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return api.EnrolResult{}, fmt.Errorf("reading the instance's answer: %w", err)
	}
	return api.EnrolResult{}, api.ErrEnrolStream
}

// syncWriter serialises the lines of concurrent enrolments.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
