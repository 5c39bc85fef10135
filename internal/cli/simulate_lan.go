package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
)

// lanFlags are simulate's flags for unconfigured devices on the LAN, which
// presence enrol configures.
type lanFlags struct {
	host      string
	tls       bool
	addresses string
	failAt    string
	preProv   bool
	interval  time.Duration
}

func (f *lanFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.host, "lan", "", "simulate unconfigured devices on the LAN instead: each serves WS-Man on HOST (a port of its own) until enrolled, then dials what enrolment wrote")
	fs.BoolVar(&f.tls, "lan-tls", false, "with --lan: also serve WS-Man over TLS (the 16993 of AMT), with a certificate of each device's own")
	fs.StringVar(&f.addresses, "addresses", "", "with --lan: write the devices' LAN addresses to FILE, one a line (the plain ones; with --lan-tls, the TLS address follows on the same line)")
	fs.StringVar(&f.failAt, "fail-at", "", "with --lan: an enrolment operation that fails, e.g. AddMpServer, PutEnvironmentDetection (amtsim.LANConfig FailAt)")
	fs.BoolVar(&f.preProv, "pre-provisioning", false, "with --lan: the devices are not provisioned (AMT not activated)")
	fs.DurationVar(&f.interval, "lan-interval", 0, "with --lan: the pause between dial passes instead of the periodic policy's interval (0: the policy's)")
}

type lanDevices struct {
	n, first int
	seed     string
	duration time.Duration
}

// lanSummary is what simulate --lan prints at the end.
type lanSummary struct {
	Devices   int `json:"devices"`
	Enrolled  int `json:"enrolled"`  // an MPS entry and a rule were written
	Outside   int `json:"outside"`   // environment detection says outside: LAN closed
	Connected int `json:"connected"` // a tunnel came up
}

func simulateLAN(ctx context.Context, env Env, f lanFlags, n lanDevices) error {
	if n.n <= 0 || n.n > 5000 || n.first < 0 {
		return usageError{"--devices must be 1..5000 with --lan (each device holds listeners), and --first not negative"}
	}
	if net.ParseIP(f.host) == nil && f.host != "localhost" {
		return usageError{fmt.Sprintf("--lan %q: want an IP address to listen on", f.host)}
	}
	pws, err := readPasswords(env.Stdin, 1)
	if err != nil {
		return err
	}
	amtPW := []byte(pws[0].Reveal())
	devs := make([]*amtsim.Device, 0, n.n)
	closeAll := func() {
		for _, d := range devs {
			d.Close()
		}
	}
	var lines []string
	for i := n.first; i < n.first+n.n; i++ {
		lc := &amtsim.LANConfig{Addr: net.JoinHostPort(f.host, "0"), FailAt: f.failAt, PreProvisioning: f.preProv, Interval: f.interval}
		if f.tls {
			lc.TLSAddr = net.JoinHostPort(f.host, "0")
		}
		d, err := amtsim.New(amtsim.Config{
			UUID: amtsim.DeviceUUID(n.seed, i), Hostname: amtsim.DeviceHostname(i),
			AMTPassword: amtPW, MinVersion: tls.VersionTLS12, LAN: lc,
		})
		if err != nil {
			closeAll()
			return err
		}
		devs = append(devs, d)
		line := d.LANAddr()
		if f.tls {
			line += " " + d.LANTLSAddr()
		}
		lines = append(lines, line)
	}
	if f.addresses != "" {
		if err := os.WriteFile(f.addresses, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			closeAll()
			return err
		}
	}
	fmt.Fprintf(env.Stderr, "%d unconfigured devices on the LAN, first at %s\n", len(devs), lines[0])
	if n.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.duration)
		defer cancel()
	}
	var wg sync.WaitGroup
	var connected atomic.Int64
	for _, d := range devs {
		up := d.Connected()
		wg.Add(2)
		go func() {
			defer wg.Done()
			d.Run(ctx)
		}()
		go func() {
			defer wg.Done()
			select {
			case <-up:
				connected.Add(1)
			case <-ctx.Done():
			}
		}()
	}
	<-ctx.Done()
	sum := lanSummary{Devices: len(devs)}
	for _, d := range devs {
		st := d.Enrolment()
		if len(st.MPS) > 0 && len(st.Rules) > 0 {
			sum.Enrolled++
		}
		if st.Outside {
			sum.Outside++
		}
	}
	wg.Wait()
	sum.Connected = int(connected.Load())
	closeAll()
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(sum)
}
