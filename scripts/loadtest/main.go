// Command loadtest does the JSON arithmetic of scripts/loadtest.sh: it reads
// the summaries that `presence simulate` prints (one JSON object per --report
// line on stderr, an indented one on stdout at the end) and adds them up
// over the simulator processes of a run. The shell script does the rest
// (processes, /proc, timing); this keeps it free of jq.
//
//	loadtest sum FIELD FILE...         sum of a numeric top-level field of each file's last summary
//	loadtest delta A1 B1 [A2 B2]...    what changed between two snapshots of each simulator
//	loadtest final FILE...             the simulators' final summaries, merged
//	loadtest arrival ERR1 OUT1 [ERR2 OUT2]...   an arrival of new devices: came up, failed by reason, when all were up
//
// delta, final and arrival print shell-friendly KEY=VALUE lines.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// summary holds the fields of amtsim.Summary the load test uses.
type summary struct {
	Devices            int              `json:"devices"`
	Started            int              `json:"started"`
	ConnectedNow       int              `json:"connected_now"`
	Attempts           int64            `json:"attempts"`
	Handshakes         int64            `json:"handshakes"`
	Failed             map[string]int64 `json:"failed"`
	Ended              map[string]int64 `json:"ended"`
	HandshakeMS        latency          `json:"handshake_ms"`
	ElapsedSec         float64          `json:"elapsed_sec"`
	KeepalivesSent     int64            `json:"keepalives_sent"`
	KeepalivesAnswered int64            `json:"keepalives_answered"`
	KeepaliveBad       int64            `json:"keepalive_bad_replies"`
}

type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch args := os.Args[2:]; os.Args[1] {
	case "sum":
		if len(args) < 2 {
			usage()
		}
		err = sum(args[0], args[1:])
	case "delta":
		if len(args) == 0 || len(args)%2 != 0 {
			usage()
		}
		err = delta(args)
	case "consoles":
		err = consoles(args)
	case "arrival":
		if len(args) == 0 || len(args)%2 != 0 {
			usage()
		}
		err = arrival(args)
	case "final":
		if len(args) == 0 {
			usage()
		}
		err = final(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadtest sum FIELD FILE... | delta A1 B1 [A2 B2]... | final FILE... | arrival ERR1 OUT1 [ERR2 OUT2]... | consoles [flags]")
	os.Exit(2)
}

// last returns the last complete JSON object in file: the whole file if it
// is one (the indented final summary), else its last line that parses.
// ok is false when there is none yet.
func last(file string) (m map[string]any, raw []byte, ok bool, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, false, err
	}
	if json.Unmarshal(b, &m) == nil {
		return m, b, true, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		var v map[string]any
		if len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &v) == nil {
			m, raw, ok = v, append(raw[:0], line...), true
		}
	}
	return m, raw, ok, sc.Err()
}

// sum prints the sum of field over the files' last summaries; a file with
// no summary yet counts 0.
func sum(field string, files []string) error {
	total := 0.0
	for _, f := range files {
		m, _, ok, err := last(f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		switch v := m[field].(type) {
		case float64:
			total += v
		case nil:
		default:
			return fmt.Errorf("%s: field %q is not a number", f, field)
		}
	}
	fmt.Println(strconv.FormatFloat(total, 'f', -1, 64))
	return nil
}

func load(file string) (summary, error) {
	var s summary
	_, raw, ok, err := last(file)
	if err != nil {
		return s, err
	}
	if !ok {
		return s, fmt.Errorf("%s: no summary", file)
	}
	return s, json.Unmarshal(raw, &s)
}

// delta compares pairs of snapshots (A taken before a window, B after) of
// each simulator. Rates are summed over the simulators, each over its own
// elapsed_sec difference, so a stale snapshot costs no accuracy.
func delta(args []string) error {
	var (
		handshakes, attempts, kaSent, kaAnswered, kaBad int64
		hsRate, kaRate, secs                            float64
		connected                                       int
		failed                                          = map[string]int64{}
		ended                                           = map[string]int64{}
	)
	for i := 0; i < len(args); i += 2 {
		a, err := load(args[i])
		if err != nil {
			return err
		}
		b, err := load(args[i+1])
		if err != nil {
			return err
		}
		dt := b.ElapsedSec - a.ElapsedSec
		if dt <= 0 {
			return fmt.Errorf("%s and %s: elapsed_sec did not grow (%.3f to %.3f)", args[i], args[i+1], a.ElapsedSec, b.ElapsedSec)
		}
		handshakes += b.Handshakes - a.Handshakes
		attempts += b.Attempts - a.Attempts
		kaSent += b.KeepalivesSent - a.KeepalivesSent
		kaAnswered += b.KeepalivesAnswered - a.KeepalivesAnswered
		kaBad += b.KeepaliveBad - a.KeepaliveBad
		hsRate += float64(b.Handshakes-a.Handshakes) / dt
		kaRate += float64(b.KeepalivesSent-a.KeepalivesSent) / dt
		secs = max(secs, dt)
		connected += b.ConnectedNow
		for k, v := range b.Failed {
			failed[k] += v - a.Failed[k]
		}
		for k, v := range b.Ended {
			ended[k] += v - a.Ended[k]
		}
	}
	fmt.Printf("window_sec=%.1f\n", secs)
	fmt.Printf("handshakes=%d\nattempts=%d\nhandshakes_per_sec=%.1f\n", handshakes, attempts, hsRate)
	fmt.Printf("keepalives_sent=%d\nkeepalives_answered=%d\nkeepalive_bad=%d\nkeepalives_per_sec=%.1f\n", kaSent, kaAnswered, kaBad, kaRate)
	fmt.Printf("connected_now=%d\n", connected)
	fmt.Printf("failed=%s\nended=%s\n", reasons(failed), reasons(ended))
	return nil
}

// final merges the simulators' final summaries. Percentiles cannot be
// merged exactly: p50 and p99 are the handshake-weighted means of the
// simulators' own, max is the maximum (with one simulator all are exact).
func final(files []string) error {
	var (
		devices                    int
		attempts, handshakes, kaB  int64
		kaSent, kaAnswered         int64
		p50, p90, p99, mean, maxMS float64
		failed                     = map[string]int64{}
		ended                      = map[string]int64{}
	)
	for _, f := range files {
		s, err := load(f)
		if err != nil {
			return err
		}
		devices += s.Devices
		attempts += s.Attempts
		handshakes += s.Handshakes
		kaSent += s.KeepalivesSent
		kaAnswered += s.KeepalivesAnswered
		kaB += s.KeepaliveBad
		w := float64(s.Handshakes)
		p50 += w * s.HandshakeMS.P50
		p90 += w * s.HandshakeMS.P90
		p99 += w * s.HandshakeMS.P99
		mean += w * s.HandshakeMS.Mean
		maxMS = max(maxMS, s.HandshakeMS.Max)
		for k, v := range s.Failed {
			failed[k] += v
		}
		for k, v := range s.Ended {
			ended[k] += v
		}
	}
	if handshakes > 0 {
		n := float64(handshakes)
		p50, p90, p99, mean = p50/n, p90/n, p99/n, mean/n
	}
	fmt.Printf("devices=%d\nattempts=%d\nhandshakes=%d\n", devices, attempts, handshakes)
	fmt.Printf("hs_p50_ms=%.0f\nhs_p90_ms=%.0f\nhs_p99_ms=%.0f\nhs_mean_ms=%.0f\nhs_max_ms=%.0f\n", p50, p90, p99, mean, maxMS)
	fmt.Printf("keepalives_sent=%d\nkeepalives_answered=%d\nkeepalive_bad=%d\n", kaSent, kaAnswered, kaB)
	fmt.Printf("failed=%s\nended=%s\n", reasons(failed), reasons(ended))
	return nil
}

// reasons renders counts as "a:1,b:2" in name order ("-" when none), safe
// to read back as one shell word.
func reasons(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", sanitize(k), m[k]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// sanitize keeps a reason name to letters, digits, '-' and '_'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}
