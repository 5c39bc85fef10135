package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// arrival sums up the arrival phase: a storm of new devices, each counted
// by its first attempt when the simulators run with --no-retry. args are
// pairs ERR OUT per simulator: ERR holds its --report lines (one JSON
// summary per line, a timeline), OUT its final summary once it has exited
// (empty or missing while it runs). A simulator's latest summary is OUT if
// it parses, else the last line of ERR.
//
// It prints KEY=VALUE lines:
//
//	devices started connected_now attempts handshakes    sums of the latest summaries
//	hs_p50_ms hs_mean_ms   handshake-weighted means of the simulators' own (p50 cannot be
//	                       merged exactly; with --no-retry a handshake is a device, so this
//	                       is the device-weighted mean the shell asks for)
//	hs_p99_ms hs_max_ms    the maximum over the simulators (p99: an upper bound of the
//	                       merged p99, exact with one simulator)
//	failed                 the failed-by-reason maps, merged ("reset:3,timeout:1" or "-")
//	failed_total failed_reset failed_timeout (timeout + dial) failed_canceled (in a
//	                       handshake when the simulator was stopped) failed_other (the rest)
//	up_sec                 seconds from each simulator's first device start to its first
//	                       summary with every device connected, the maximum over the
//	                       simulators; "-" when some simulator has none
//	done_sec               likewise to the first summary where every device had started and
//	                       was connected or had failed: with --no-retry, every first
//	                       attempt over; "-" when some simulator has none
//	elapsed_sec            the latest summaries' elapsed_sec, maximum
//	reporting              simulators with a summary yet
func arrival(args []string) error {
	var (
		devices, started, connected, reporting                  int
		attempts, handshakes                                    int64
		p50, mean, p99, maxMS, elapsed, upSec, doneSec          float64
		upAll, doneAll                                          = true, true
		failed                                                  = map[string]int64{}
		failedTotal, failedReset, failedTimeout, failedCanceled int64
	)
	for i := 0; i < len(args); i += 2 {
		points, err := timeline(args[i], args[i+1])
		if err != nil {
			return err
		}
		if len(points) == 0 {
			upAll, doneAll = false, false
			continue
		}
		reporting++
		up, done := -1.0, -1.0
		for _, p := range points {
			var nf int64
			for _, v := range p.Failed {
				nf += v
			}
			if up < 0 && p.Devices > 0 && p.ConnectedNow >= p.Devices {
				up = p.ElapsedSec
			}
			if done < 0 && p.Devices > 0 && p.Started >= p.Devices && int64(p.ConnectedNow)+nf >= int64(p.Devices) {
				done = p.ElapsedSec
			}
		}
		if up < 0 {
			upAll = false
		}
		if done < 0 {
			doneAll = false
		}
		upSec, doneSec = max(upSec, up), max(doneSec, done)
		s := points[len(points)-1]
		devices += s.Devices
		started += s.Started
		connected += s.ConnectedNow
		attempts += s.Attempts
		handshakes += s.Handshakes
		w := float64(s.Handshakes)
		p50 += w * s.HandshakeMS.P50
		mean += w * s.HandshakeMS.Mean
		p99 = max(p99, s.HandshakeMS.P99)
		maxMS = max(maxMS, s.HandshakeMS.Max)
		elapsed = max(elapsed, s.ElapsedSec)
		for k, v := range s.Failed {
			failed[k] += v
			failedTotal += v
			switch k {
			case "reset":
				failedReset += v
			case "timeout", "dial":
				failedTimeout += v
			case "canceled":
				failedCanceled += v
			}
		}
	}
	if handshakes > 0 {
		p50, mean = p50/float64(handshakes), mean/float64(handshakes)
	}
	secs := func(ok bool, v float64) string {
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	fmt.Printf("devices=%d\nstarted=%d\nconnected_now=%d\nattempts=%d\nhandshakes=%d\n", devices, started, connected, attempts, handshakes)
	fmt.Printf("hs_p50_ms=%.0f\nhs_mean_ms=%.0f\nhs_p99_ms=%.0f\nhs_max_ms=%.0f\n", p50, mean, p99, maxMS)
	fmt.Printf("failed=%s\nfailed_total=%d\nfailed_reset=%d\nfailed_timeout=%d\nfailed_canceled=%d\nfailed_other=%d\n",
		reasons(failed), failedTotal, failedReset, failedTimeout, failedCanceled, failedTotal-failedReset-failedTimeout-failedCanceled)
	fmt.Printf("up_sec=%s\ndone_sec=%s\nelapsed_sec=%.2f\nreporting=%d\n", secs(upAll, upSec), secs(doneAll, doneSec), elapsed, reporting)
	return nil
}

// timeline reads one simulator's summaries in order: every JSON line of
// errFile, then the final summary in outFile if it is complete. Missing
// files count as empty (the simulator has not written yet).
func timeline(errFile, outFile string) ([]summary, error) {
	var points []summary
	b, err := os.ReadFile(errFile)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		var s summary
		if len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &s) == nil {
			points = append(points, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	b, err = os.ReadFile(outFile)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var s summary
	if len(bytes.TrimSpace(b)) > 0 && json.Unmarshal(b, &s) == nil {
		points = append(points, s)
	}
	return points, nil
}
