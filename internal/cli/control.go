package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/proxy"
)

// client flags: how a command reaches a running instance's API.
type clientFlags struct {
	dataDir string
	apiAddr string
	user    string
	format  string
}

func (f *clientFlags) register(fs *flag.FlagSet, formats bool) {
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "the data dir of the running instance (its run/ files say where its API is)")
	fs.StringVar(&f.apiAddr, "api-addr", "", "the API's HOST:PORT, for an instance of another user or machine (then log in with --user)")
	fs.StringVar(&f.user, "user", "", "console account to log in with (password on stdin); default: the local instance's token")
	if formats {
		fs.StringVar(&f.format, "format", "table", "output: table, json or csv")
		fs.BoolFunc("csv", "output CSV (the same as --format csv)", func(string) error { f.format = "csv"; return nil })
	}
}

// apiClient calls a running instance's API.
type apiClient struct {
	base  string
	token string
	user  string
	pass  string
	http  *http.Client
}

func (f *clientFlags) client(env Env) (*apiClient, error) {
	if f.format != "" && f.format != "table" && f.format != "json" && f.format != "csv" {
		return nil, usageError{fmt.Sprintf("--format %q: want table, json or csv", f.format)}
	}
	c := &apiClient{http: &http.Client{Timeout: 30 * time.Second}}
	addr := f.apiAddr
	if addr == "" {
		info, err := launch.Dir(f.dataDir).RunInfo()
		if err != nil {
			return nil, err
		}
		if info.API == "" {
			return nil, fmt.Errorf("the running instance (pid %d) has its API turned off (--api-addr off)", info.PID)
		}
		addr = info.API
		if f.user == "" {
			tok, err := launch.Dir(f.dataDir).Token()
			if err != nil {
				return nil, fmt.Errorf("reading the instance's token (run as the user who started it, or log in with --user): %w", err)
			}
			c.token = tok
		}
	}
	if f.user != "" {
		pw, err := readPassword(env.Stdin)
		if err != nil {
			return nil, err
		}
		c.user, c.pass = f.user, string(pw)
	}
	c.base = "http://" + launch.Dialable(addr)
	return c, nil
}

// do sends a request and decodes a JSON answer into out. An error answer
// becomes an error carrying the API's message.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the instance's API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return responseError(resp, path)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// authorize adds the client's login to req.
func (c *apiClient) authorize(req *http.Request) {
	switch {
	case c.user != "":
		req.SetBasicAuth(c.user, c.pass)
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// responseError is the error of an answer with an error status, carrying
// its sentence: Presence's errors are {"error": sentence}; the AMT
// routes', in the Intel toolkit MPS's shape, carry it in message.
func responseError(resp *http.Response, path string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error            string `json:"error"`
		Message          string `json:"message"`
		ErrorDescription string `json:"errorDescription"`
	}
	if json.Unmarshal(b, &e) == nil {
		if s := cmp.Or(e.Message, e.ErrorDescription, e.Error); s != "" {
			return fmt.Errorf("%s (HTTP %d)", s, resp.StatusCode)
		}
	}
	return fmt.Errorf("HTTP %s from %s", resp.Status, path)
}

// printRows prints a header and rows as a table or CSV.
func printRows(w io.Writer, format string, header []string, rows [][]string) error {
	if format == "csv" {
		cw := csv.NewWriter(w)
		cw.Write(header)
		cw.WriteAll(rows)
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func runDevices(ctx context.Context, args []string, env Env) error {
	var f clientFlags
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	f.register(fs, true)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"devices takes no arguments"}
	}
	c, err := f.client(env)
	if err != nil {
		return err
	}
	var devs []api.DeviceInfo
	if err := c.do(ctx, "GET", "/api/v1/devices", nil, &devs); err != nil {
		return err
	}
	if f.format == "json" {
		return printJSON(env.Stdout, devs)
	}
	fleet := slices.ContainsFunc(devs, func(d api.DeviceInfo) bool { return d.Instance != "" })
	rows := make([][]string, 0, len(devs))
	for _, d := range devs {
		ports := make([]string, len(d.Ports))
		for i, p := range d.Ports {
			ports[i] = strconv.FormatUint(uint64(p), 10)
		}
		ka := "-"
		if d.LastKeepalive != nil {
			ka = ago(*d.LastKeepalive)
		}
		if d.Suspect {
			ka += " (suspect: a keepalive missed)"
		}
		row := []string{d.UUID, d.Hostname, d.Remote, strings.Join(ports, ","), d.TLSVersion,
			d.ConnectedAt.Format(time.RFC3339), ka, strconv.Itoa(d.Sessions)}
		if fleet {
			row = append(row, d.Instance)
		}
		rows = append(rows, row)
	}
	header := []string{"GUID", "HOSTNAME", "REMOTE", "PORTS", "TLS", "CONNECTED", "LAST KEEPALIVE", "SESSIONS"}
	if fleet {
		header = append(header, "INSTANCE")
	}
	return printRows(env.Stdout, f.format, header, rows)
}

func runSessions(ctx context.Context, args []string, env Env) error {
	var f clientFlags
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	f.register(fs, true)
	kill := fs.Uint64("kill", 0, "end the live session with this id")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"sessions takes no arguments (use --kill ID to end one)"}
	}
	c, err := f.client(env)
	if err != nil {
		return err
	}
	if *kill != 0 {
		if err := c.do(ctx, "DELETE", "/api/v1/sessions/"+strconv.FormatUint(*kill, 10), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "session %d ended\n", *kill)
		return nil
	}
	var ss []proxy.SessionInfo
	if err := c.do(ctx, "GET", "/api/v1/sessions", nil, &ss); err != nil {
		return err
	}
	if f.format == "json" {
		return printJSON(env.Stdout, ss)
	}
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		rows = append(rows, []string{strconv.FormatUint(s.ID, 10), s.Kind, s.Console, s.User, s.Device,
			strconv.FormatUint(uint64(s.Port), 10), strconv.FormatInt(s.BytesToDevice, 10),
			strconv.FormatInt(s.BytesFromDevice, 10), s.Start.Format(time.RFC3339), cmp.Or(s.Via, "-")})
	}
	return printRows(env.Stdout, f.format, []string{"ID", "KIND", "CONSOLE", "USER", "DEVICE", "PORT", "TO DEVICE", "FROM DEVICE", "START", "VIA"}, rows)
}

func runMap(ctx context.Context, args []string, env Env) error {
	var f clientFlags
	fs := flag.NewFlagSet("map", flag.ContinueOnError)
	f.register(fs, true)
	listen := fs.String("listen", "", "local address of the mapping (default 127.0.0.1 and a free port)")
	idle := fs.Duration("idle", 0, "close the mapping after this long without a connection (default 10m; negative: never)")
	list := fs.Bool("list", false, "list the open mappings")
	remove := fs.Uint64("remove", 0, "close the mapping with this id")
	// Flags may follow DEVICE PORT.
	if err := parse(fs, args, env); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) >= 2 {
		if err := parse(fs, rest[2:], env); err != nil {
			return err
		}
		rest = append(rest[:2:2], fs.Args()...)
	}
	c, err := f.client(env)
	if err != nil {
		return err
	}
	switch {
	case *list:
		var ms []proxy.MappingInfo
		if err := c.do(ctx, "GET", "/api/v1/mappings", nil, &ms); err != nil {
			return err
		}
		if f.format == "json" {
			return printJSON(env.Stdout, ms)
		}
		rows := make([][]string, 0, len(ms))
		for _, m := range ms {
			rows = append(rows, []string{strconv.FormatUint(m.ID, 10), m.Listen, m.Device,
				strconv.FormatUint(uint64(m.Port), 10), strconv.Itoa(m.Active), strconv.FormatUint(m.Connections, 10)})
		}
		return printRows(env.Stdout, f.format, []string{"ID", "LISTEN", "DEVICE", "PORT", "ACTIVE", "CONNECTIONS"}, rows)
	case *remove != 0:
		if err := c.do(ctx, "DELETE", "/api/v1/mappings/"+strconv.FormatUint(*remove, 10), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "mapping %d closed\n", *remove)
		return nil
	}
	if len(rest) != 2 {
		return usageError{"usage: presence map DEVICE PORT [--listen 127.0.0.1:P] [--idle 10m] | --list | --remove ID"}
	}
	port, err := strconv.ParseUint(rest[1], 10, 16)
	if err != nil || port == 0 {
		return usageError{fmt.Sprintf("port %q: want 1 to 65535", rest[1])}
	}
	req := api.MappingRequest{Device: rest[0], Port: uint32(port), Listen: *listen, IdleTimeout: int(idle.Seconds())}
	if *idle < 0 {
		req.IdleTimeout = -1
	}
	var m proxy.MappingInfo
	if err := c.do(ctx, "POST", "/api/v1/mappings", req, &m); err != nil {
		return err
	}
	if f.format == "json" {
		return printJSON(env.Stdout, m)
	}
	fmt.Fprintf(env.Stdout, "%s -> %s port %d (mapping %d; closes when the device disconnects", m.Listen, m.Device, m.Port, m.ID)
	if m.IdleTimeout > 0 {
		fmt.Fprintf(env.Stdout, " or after %s unused", m.IdleTimeout)
	}
	fmt.Fprintf(env.Stdout, "; presence map --remove %d closes it now)\n", m.ID)
	return nil
}

func runAlias(ctx context.Context, args []string, env Env) error {
	var f clientFlags
	fs := flag.NewFlagSet("alias", flag.ContinueOnError)
	f.register(fs, false)
	remove := fs.String("remove", "", "remove this alias")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) != 0 && len(rest) != 2 || len(rest) == 2 && *remove != "" {
		return usageError{"usage: presence alias [ALIAS GUID | --remove ALIAS]   (no arguments: list them)"}
	}
	c, err := f.client(env)
	if err != nil {
		return err
	}
	var all map[string]string
	switch {
	case *remove != "":
		err = c.do(ctx, "DELETE", "/api/v1/aliases/"+url.PathEscape(*remove), nil, &all)
	case len(rest) == 2:
		err = c.do(ctx, "PUT", "/api/v1/aliases/"+url.PathEscape(rest[0]), api.AliasRequest{Device: rest[1]}, &all)
	default:
		err = c.do(ctx, "GET", "/api/v1/aliases", nil, &all)
	}
	if err != nil {
		return err
	}
	rows := make([][]string, 0, len(all))
	for _, a := range slices.Sorted(maps.Keys(all)) {
		rows = append(rows, []string{a, all[a]})
	}
	return printRows(env.Stdout, "table", []string{"ALIAS", "DEVICE"}, rows)
}
