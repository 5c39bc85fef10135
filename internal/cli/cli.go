// Package cli implements Presence's command line (../../shared/DESIGN.md,
// "The command line"). main only wires signals and exit codes to [Run], so
// every command is testable without a process or a display.
package cli

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/vault"
)

// Version is the program version, set at build time with -ldflags -X.
var Version = "0.1.0-dev"

// Env is what a command gets from its caller.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// App, if set, is the desktop window: `presence` with no command
	// runs the server in it until the window closes. A server-only build
	// (-tags nogui) leaves it nil. No other command uses it.
	App func(context.Context, launch.Window) error
	// Display, if set, reports in a sentence why the window cannot open
	// here (no display), before the window touches the data dir.
	Display func() error
}

// usageError is a command-line mistake: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `Presence — an Intel AMT Management Presence Server (MPS).

Usage:
  presence         [flags]           open the desktop window (the server runs inside it; the flags of serve)
  presence serve   [flags]           run the server with no window (logs to stderr)
  presence demo    [--devices N]     the server plus N simulated AMT devices on loopback
  presence cert    init --cn ADDRESS [--force] | show | export-root | renew [--cn ADDRESS] | doctor
                   | import --root-cert F --root-key F | backup --out F | restore --in F   (passphrase on stdin)
  presence fleet   invite --out F | join --in F --cn ADDRESS [--force] | status | send-home [--rate N]   (passphrase on stdin)
  presence account add|list|remove --kind cira|console|amt [NAME] [--device GUID]...   (password on stdin;
                   --device binds an amt account to devices, none makes it the default)
  presence devices  [--csv | --format table|json|csv]  devices connected to the running instance
  presence sessions [--format ...] [--kill ID]       console sessions of the running instance
  presence map      DEVICE PORT [--listen 127.0.0.1:P] | --list | --remove ID
                                                     a local port mapped to a device port
  presence alias    [ALIAS GUID | --remove ALIAS]    other names consoles may use for devices
  presence discover [--timeout 3s]                   Presence instances seen over mDNS
  presence vault    migrate --from file|keychain --to keychain|file [--overwrite]
  presence history  [--device ID] [--since 24h|RFC3339] [--sessions] [--csv]   tunnel and session history
  presence amt      power|info|hardware|log|consent|features DEVICE ...   AMT over the tunnel, through the
                    running instance ("presence amt help" lists them; --format table|json|csv)
  presence enrol   ADDRESS[:PORT] | --file F [--amt-user U] [--tls] [--replace]   configure CIRA in a device on
                    the LAN, through the running instance (AMT password on stdin)
  presence unenrol ADDRESS[:PORT] | DEVICE         remove what enrol wrote (through the tunnel when connected)
  presence doctor  [--since 1h] [--device ID] [--format table|json|csv] | --allow-legacy GUID
                    why devices fail to connect or stay up, and the fix
  presence simulate --mps HOST:PORT --ca FILE --devices N --user U  (password on stdin)
  presence version

Run "presence COMMAND -h" for a command's flags.
`

// Run runs the command in args (without the program name) and returns the
// process exit status: 0 success, 1 failure, 2 usage error.
func Run(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && !isHelp(args[0]) {
		// The window, with its flags.
		return exitCode("presence", runWindow(ctx, args, env), env)
	}
	cmds := map[string]func(context.Context, []string, Env) error{
		"serve":    runServe,
		"demo":     runDemo,
		"cert":     runCert,
		"fleet":    runFleet,
		"account":  runAccount,
		"simulate": runSimulate,
		"devices":  runDevices,
		"sessions": runSessions,
		"map":      runMap,
		"discover": runDiscover,
		"alias":    runAlias,
		"vault":    runVault,
		"history":  runHistory,
		"amt":      runAMT,
		"enrol":    runEnrol,
		"unenrol":  runUnenrol,
		"doctor":   runDoctor,
		"version": func(_ context.Context, _ []string, env Env) error {
			fmt.Fprintf(env.Stdout, "presence %s\n", Version)
			return nil
		},
	}
	name := args[0]
	if isHelp(name) {
		fmt.Fprint(env.Stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(env.Stderr, "presence: unknown command %q\n\n%s", name, usage)
		return 2
	}
	return exitCode("presence "+name, cmd(ctx, args[1:], env), env)
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// exitCode reports err on stderr and returns the exit status for it.
func exitCode(prefix string, err error, env Env) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "%s: %s\n", prefix, ue.msg)
		return 2
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", prefix, err)
	return 1
}

// common holds the flags every server-side command shares.
type common struct {
	dataDir  string
	vault    string
	logLevel string
}

// defaultDataDir is the data dir when --data-dir is not given: the OS's
// per-user config dir, then presence.
func defaultDataDir() string {
	def, err := os.UserConfigDir()
	if err != nil {
		def = "."
	}
	return filepath.Join(def, "presence")
}

// register defines the common flags of a command that is not a server.
func (c *common) register(fs *flag.FlagSet) {
	c.registerDir(fs)
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// registerDir defines --data-dir and --vault; the servers' --log-level is
// a setting.
func (c *common) registerDir(fs *flag.FlagSet) {
	fs.StringVar(&c.dataDir, "data-dir", defaultDataDir(), "where Presence keeps its settings, secrets (file vault) and history")
	fs.StringVar(&c.vault, "vault", "", "secret store: keychain (the OS keychain: desktops), file (0600 files in the data dir: headless servers) or memory (gone at exit); default: the data dir's setting (presence vault migrate sets it), else file")
}

// ciraPort is the CIRA port the data dir's saved settings name, else the
// default.
func (c *common) ciraPort() int {
	def := settings.Defaults().CIRAAddr
	saved, err := launch.Dir(c.dataDir).Load()
	if err == nil && saved.Server != nil && saved.Server.CIRAAddr != settings.Off {
		def = saved.Server.CIRAAddr
	}
	_, p, _ := net.SplitHostPort(def)
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 {
		return 4433
	}
	return n
}

func (c *common) store() (vault.Store, error) {
	if c.vault == "" {
		st, err := launch.Dir(c.dataDir).Load()
		if err != nil {
			return nil, err
		}
		c.vault = cmp.Or(st.Vault, "file")
	}
	if c.vault == "file" {
		if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	return vault.Open(c.vault, c.dataDir)
}

// loadCA opens the store and loads the certificate authority from it.
func (c *common) loadCA(ctx context.Context) (vault.Store, *vault.CA, error) {
	st, err := c.store()
	if err != nil {
		return nil, nil, err
	}
	ca, err := vault.LoadCA(ctx, st)
	return st, ca, err
}

func (c *common) logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", c.logLevel)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})), nil
}

// parse parses a subcommand's flags; -h prints them to stdout.
func parse(fs *flag.FlagSet, args []string, env Env) error {
	fs.SetOutput(env.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

// readPassword reads one line from stdin: the password, never argv.
func readPassword(r io.Reader) (vault.Secret, error) {
	pws, err := readPasswords(r, 1)
	if err != nil {
		return "", err
	}
	return pws[0], nil
}

// readPasswords reads n lines from stdin, a password each.
func readPasswords(r io.Reader, n int) ([]vault.Secret, error) {
	if r == nil {
		return nil, usageError{"the password is read from standard input, and there is none"}
	}
	br := bufio.NewReader(io.LimitReader(r, 4096*int64(n)))
	out := make([]vault.Secret, n)
	for i := range out {
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the password from standard input: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			if i > 0 {
				return nil, usageError{fmt.Sprintf("standard input holds %d password(s); want %d, a line each", i, n)}
			}
			return nil, usageError{"no password on standard input (pipe it in, e.g. printf %s \"$PW\" | presence ...)"}
		}
		out[i] = vault.Secret(pw)
	}
	return out, nil
}

// durationFlag rejects zero and negative durations at parse time.
func positive(name string, d time.Duration) error {
	if d <= 0 {
		return usageError{fmt.Sprintf("--%s must be positive, got %s", name, d)}
	}
	return nil
}
