package cli

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/vault"
)

const doctorUsage = `usage: presence doctor [--since 1h] [--device ID] [--format table|json|csv]
       presence doctor --allow-legacy GUID | --disallow-legacy GUID

Why devices fail to connect or stay up, from the running instance: each
problem with its count, first and last time, the device or its address, and
the fix. Also the devices still on TLS 1.0/1.1 and those that missed a
keepalive. --allow-legacy lets one device use TLS 1.0/1.1 (kept in the
settings), the fix of a legacy-tls problem.
`

func runDoctor(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	var f clientFlags
	f.register(fs, true)
	since := fs.String("since", "", "only problems seen since then: a duration (1h, 30m) or an RFC 3339 time (default: all the instance holds)")
	device := fs.String("device", "", "only this device: GUID, host name or alias")
	allow := fs.String("allow-legacy", "", "allow this device (GUID) TLS 1.0 and 1.1")
	disallow := fs.String("disallow-legacy", "", "take legacy TLS back from this device (GUID)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), doctorUsage); fs.PrintDefaults() }
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 || *allow != "" && *disallow != "" {
		return usageError{doctorUsage}
	}
	cl, err := f.client(env)
	if err != nil {
		return err
	}
	if g := *allow + *disallow; g != "" {
		method := "PUT"
		if *disallow != "" {
			method = "DELETE"
		}
		if err := cl.do(ctx, method, "/api/v1/doctor/legacy-tls/"+url.PathEscape(g), nil, nil); err != nil {
			return err
		}
		if c, err := vault.CanonicalGUID(g); err == nil {
			g = c
		}
		if *allow != "" {
			fmt.Fprintf(env.Stdout, "device %s may use TLS 1.0 and 1.1 from now on\n", g)
		} else {
			fmt.Fprintf(env.Stdout, "device %s needs TLS 1.2 from now on\n", g)
		}
		return nil
	}
	q := url.Values{}
	if *since != "" {
		q.Set("since", *since)
	}
	if *device != "" {
		q.Set("device", *device)
	}
	var rep api.DoctorReport
	if err := cl.do(ctx, "GET", "/api/v1/doctor?"+q.Encode(), nil, &rep); err != nil {
		return err
	}
	if f.format == "json" {
		return printJSON(env.Stdout, rep)
	}
	rows := make([][]string, 0, len(rep.Problems))
	for _, p := range rep.Problems {
		who := p.Device
		if who == "" {
			who = "(" + p.Remote + ")"
		}
		rows = append(rows, []string{string(p.Class), who, strconv.FormatUint(p.Count, 10), ago(p.First), ago(p.Last), p.Remote, p.Fix})
	}
	if f.format == "csv" {
		return printRows(env.Stdout, "csv", []string{"class", "device", "count", "first", "last", "remote", "fix"}, rows)
	}
	w := env.Stdout
	if len(rep.Problems) == 0 {
		fmt.Fprintln(w, "no connection problems seen"+sinceWord(*since))
	} else {
		for _, p := range rep.Problems {
			who := p.Device
			if who == "" {
				who = "a device at " + p.Remote
			}
			fmt.Fprintf(w, "%s: %s, %d time%s (first %s, last %s, from %s)\n  %s\n", p.Class, who, p.Count, plural(p.Count), ago(p.First), ago(p.Last), p.Remote, p.Fix)
			if p.TLS != "" {
				fmt.Fprintf(w, "  TLS: %s\n", p.TLS)
			}
		}
	}
	if len(rep.Suspect) > 0 {
		fmt.Fprintf(w, "\nsuspect (a keepalive missed):\n")
		for _, d := range rep.Suspect {
			fmt.Fprintf(w, "  %s %s from %s, silent %s\n", d.GUID, d.Host, d.Remote, (time.Duration(d.SilentS * float64(time.Second))).Round(time.Second))
		}
	}
	switch {
	case rep.LegacyEveryone:
		fmt.Fprintf(w, "\nlegacy TLS (1.0/1.1) is allowed to every device (--legacy-tls)\n")
	case len(rep.LegacyAllowed) > 0:
		fmt.Fprintf(w, "\nlegacy TLS (1.0/1.1) is allowed to: %s\n", strings.Join(rep.LegacyAllowed, ", "))
	}
	if len(rep.Legacy) > 0 {
		fmt.Fprintf(w, "devices on legacy TLS now:\n")
		for _, d := range rep.Legacy {
			fmt.Fprintf(w, "  %s %s %s from %s\n", d.GUID, d.Host, d.TLS, d.Remote)
		}
	}
	return nil
}

func plural(n uint64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func sinceWord(s string) string {
	if s == "" {
		return ""
	}
	return " since " + s
}
