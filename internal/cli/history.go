package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/history"
)

// runHistory prints tunnel or session history: from the running instance
// (through its API: it holds the file) or, when none runs, from the file.
func runHistory(ctx context.Context, args []string, env Env) error {
	var f clientFlags
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	f.register(fs, true)
	device := fs.String("device", "", "one device: GUID, host name or alias")
	since := fs.String("since", "", "from this time (RFC 3339) or this long ago (24h)")
	until := fs.String("until", "", "up to this time (RFC 3339) or this long ago")
	limit := fs.Int("limit", 0, "at most this many records, the newest (default 1000)")
	sessions := fs.Bool("sessions", false, "console sessions instead of tunnel events")
	user := fs.String("account", "", "with --sessions: one console account")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"history takes no arguments (use --device ID)"}
	}
	if f.format != "table" && f.format != "json" && f.format != "csv" {
		return usageError{fmt.Sprintf("--format %q: want table, json or csv", f.format)}
	}
	now := time.Now()
	sinceT, err := api.ParseSince(*since, now)
	if err != nil {
		return usageError{"--since: want an RFC 3339 time or a duration like 24h"}
	}
	untilT, err := api.ParseSince(*until, now)
	if err != nil {
		return usageError{"--until: want an RFC 3339 time or a duration like 1h"}
	}

	var events []history.TunnelEvent
	var recs []history.SessionRecord
	var avail *history.Availability
	viaAPI := f.apiAddr != ""
	if !viaAPI {
		if info, err := launch.Dir(f.dataDir).RunInfo(); err == nil && info.API != "" {
			viaAPI = true
		}
	}
	if viaAPI {
		c, err := f.client(env)
		if err != nil {
			return err
		}
		q := url.Values{}
		for k, v := range map[string]string{"device": *device, "since": *since, "until": *until, "user": *user} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if *limit > 0 {
			q.Set("limit", strconv.Itoa(*limit))
		}
		switch {
		case *sessions:
			err = c.do(ctx, "GET", "/api/v1/history/sessions?"+q.Encode(), nil, &recs)
		default:
			err = c.do(ctx, "GET", "/api/v1/history?"+q.Encode(), nil, &events)
			if err == nil && *device != "" {
				avail = new(history.Availability)
				err = c.do(ctx, "GET", "/api/v1/history/availability?"+q.Encode(), nil, avail)
			}
		}
		if err != nil {
			return err
		}
	} else {
		h, err := history.Open(launch.Dir(f.dataDir).Path(launch.HistoryFile), history.Options{PruneInterval: -1})
		if errors.Is(err, history.ErrLocked) {
			return fmt.Errorf("%w: the running Presence has its API turned off; ask it, or stop it", err)
		}
		if err != nil {
			return err
		}
		defer h.Close()
		dev := *device
		if dev != "" {
			dev = api.ResolveHistoryDevice(h, dev)
		}
		if *sessions {
			recs, err = h.Sessions(history.Filter{Device: dev, User: *user, Since: sinceT, Until: untilT, Limit: *limit})
		} else {
			events, err = h.Timeline(dev, sinceT, untilT, *limit)
			if err == nil && dev != "" {
				var a history.Availability
				a, err = h.Availability(dev, sinceT, untilT)
				avail = &a
			}
		}
		if err != nil {
			return err
		}
	}

	if *sessions {
		if f.format == "json" {
			return printJSON(env.Stdout, recs)
		}
		header, rows := history.SessionTable(recs)
		return printRows(env.Stdout, f.format, header, rows)
	}
	if f.format == "json" {
		return printJSON(env.Stdout, events)
	}
	header, rows := history.EventTable(events)
	if err := printRows(env.Stdout, f.format, header, rows); err != nil {
		return err
	}
	if avail != nil && f.format == "table" {
		fmt.Fprintf(env.Stdout, "\nreachable %.1f%% of the time (%s up, %d intervals)\n", 100*avail.Fraction, avail.Up.Round(time.Second), len(avail.Intervals))
	}
	return nil
}
