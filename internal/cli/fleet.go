package cli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/vault"
)

const fleetUsage = "want a subcommand: invite, join, status or send-home"

// runFleet is `presence fleet invite|join`: a join bundle written on an
// instance of a fleet makes a new instance one of its members.
func runFleet(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{fleetUsage}
	}
	switch args[0] {
	case "status":
		return runFleetStatus(ctx, args[1:], env)
	case "send-home":
		return runFleetSendHome(ctx, args[1:], env)
	}
	var c common
	fs := flag.NewFlagSet("fleet "+args[0], flag.ContinueOnError)
	c.register(fs)
	switch args[0] {
	case "invite":
		out := fs.String("out", "", "file to write the encrypted join bundle to (required; the passphrase is read from stdin)")
		if err := parse(fs, args[1:], env); err != nil {
			return err
		}
		if *out == "" {
			return usageError{"--out FILE is required"}
		}
		pass, err := readPassword(env.Stdin)
		if err != nil {
			return err
		}
		st, err := c.store()
		if err != nil {
			return err
		}
		b, err := vault.Invite(ctx, st)
		if err != nil {
			return err
		}
		// The bundle names this instance's MPS entry, the new instance's
		// devices' backup.
		if ca, err := vault.LoadCA(ctx, st); err == nil {
			if named, err := b.WithInviter(net.JoinHostPort(ca.Address(), strconv.Itoa(c.ciraPort()))); err == nil {
				b = named
			}
			// And its peer listener, which the new instance links to: the
			// running instance's port, else the default.
			peerPort := "16991"
			if info, err := launch.Dir(c.dataDir).RunInfo(); err == nil && info.Peer != "" {
				if _, p, err := net.SplitHostPort(info.Peer); err == nil {
					peerPort = p
				}
			}
			if named, err := b.WithInviterPeer(net.JoinHostPort(ca.Address(), peerPort)); err == nil {
				b = named
			}
		}
		sealed, err := b.Seal(pass.Reveal())
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, sealed, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, `Join bundle of fleet %s written to %s, encrypted with your passphrase:
  Root SHA-256:      %s
  Accounts:          %s
It holds the root's private key: keep it as secret as the passphrase, and delete it once the new instance has joined.
On the new instance: presence fleet join --in %s --cn ADDRESS (the passphrase on stdin)
`, b.FleetID(), *out, b.RootFingerprintSHA256(), accountCounts(b), *out)
		return nil
	case "join":
		in := fs.String("in", "", "the join bundle file (required; the passphrase is read from stdin)")
		cn := fs.String("cn", "", "the address AMT devices are configured with to reach this instance (IP address or DNS name)")
		force := fs.Bool("force", false, "replace a different root already in the vault: devices trusting it must then be provisioned again")
		port := fs.Int("port", 4433, "the CIRA port AMT will connect to (only printed)")
		if err := parse(fs, args[1:], env); err != nil {
			return err
		}
		if *in == "" {
			return usageError{"--in FILE is required"}
		}
		if *cn == "" {
			return usageError{"--cn ADDRESS is required: the address AMT devices use to reach this instance (each instance has its own)"}
		}
		pass, err := readPassword(env.Stdin)
		if err != nil {
			return err
		}
		data, err := readBundle(*in)
		if err != nil {
			return err
		}
		// Open the bundle before the store: a wrong passphrase or a
		// damaged file writes nothing, not even the data dir.
		b, err := vault.OpenBundle(data, pass.Reveal())
		if err != nil {
			return err
		}
		st, err := c.store()
		if err != nil {
			return err
		}
		ca, err := b.Join(ctx, st, vault.JoinOptions{Address: *cn, Force: *force})
		if err != nil {
			return err
		}
		if peer := b.InviterPeer(); peer != "" {
			if err := launch.Dir(c.dataDir).AddPeer(peer); err != nil {
				return fmt.Errorf("joined, but cannot keep the inviting instance's peer address %s (give it to serve with --peer): %w", peer, err)
			}
		}
		fmt.Fprintf(env.Stdout, "Joined fleet %s: its root (SHA-256 %s) and accounts (%s) are in this instance's vault.\n\n",
			b.FleetID(), b.RootFingerprintSHA256(), accountCounts(b))
		printAMTSettings(env, ca, *cn, *port, b.Inviter())
		fmt.Fprintln(env.Stdout, "\nIf presence serve runs here, restart it to present the new certificate.")
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: %s", args[0], fleetUsage)}
}

// readBundle reads a join bundle file, at most vault.MaxBundleLen bytes:
// the cap applies before anything is read into memory.
func readBundle(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, vault.MaxBundleLen+1))
	if err != nil {
		return nil, err
	}
	if len(b) > vault.MaxBundleLen {
		return nil, fmt.Errorf("%s is larger than a join bundle can be (%d bytes): give the file presence fleet invite wrote", name, vault.MaxBundleLen)
	}
	return b, nil
}

// accountCounts says which accounts a bundle carries, for people.
func accountCounts(b *vault.Bundle) string {
	var parts []string
	for _, k := range []struct{ kind, label string }{{vault.KindCIRA, "CIRA"}, {vault.KindConsole, "console"}} {
		n := len(b.AccountNames(k.kind))
		parts = append(parts, fmt.Sprintf("%d %s", n, k.label))
	}
	return strings.Join(parts, ", ")
}

// runFleetStatus is `presence fleet status`: the running instance and its
// peer links, from GET /api/v1/fleet.
func runFleetStatus(ctx context.Context, args []string, env Env) error {
	var f clientFlags
	fs := flag.NewFlagSet("fleet status", flag.ContinueOnError)
	f.register(fs, true)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"fleet status takes no arguments"}
	}
	c, err := f.client(env)
	if err != nil {
		return err
	}
	var info api.FleetInfo
	if err := c.do(ctx, "GET", "/api/v1/fleet", nil, &info); err != nil {
		return err
	}
	if f.format == "json" {
		return printJSON(env.Stdout, info)
	}
	self := info.Self
	if e := info.Etcd; e != nil {
		if e.Connected {
			fmt.Fprintf(env.Stdout, "etcd: connected since %s\n", e.Since.Format(time.RFC3339))
		} else {
			fmt.Fprintf(env.Stdout, "etcd: unreachable since %s (%s); this instance serves its own devices and reaches its peers' through the links\n",
				e.Since.Format(time.RFC3339), cmp.Or(e.Error, "no answer"))
		}
	}
	rows := [][]string{{self.ID + " (this one)", self.Name, self.PeerAddr, self.Version, "-", "-", "-"}}
	for _, p := range info.Peers {
		state := "down"
		if p.Up {
			state = "up since " + p.Since.Format(time.RFC3339)
		} else if p.Error != "" {
			state = "down: " + p.Error
		}
		contact := "-"
		if !p.Contact.IsZero() {
			contact = ago(p.Contact)
		}
		rows = append(rows, []string{cmp.Or(p.Member.ID, "?"), p.Member.Name, p.Addr, p.Member.Version, strconv.Itoa(p.Devices), state, contact})
	}
	if err := printRows(env.Stdout, f.format, []string{"INSTANCE", "NAME", "PEER ADDRESS", "VERSION", "DEVICES", "LINK", "LAST CONTACT"}, rows); err != nil {
		return err
	}
	if n := info.AwayFromHome; n > 0 && f.format == "table" {
		fmt.Fprintf(env.Stdout, "\n%d device(s) here came while their home instance was down, and it is up again: presence fleet send-home closes their tunnels, paced, so that they reconnect to it.\n", n)
	}
	return nil
}

// runFleetSendHome is `presence fleet send-home [--rate N]`: the running
// instance closes, paced, the tunnels of devices away from a home
// instance that is up again.
func runFleetSendHome(ctx context.Context, args []string, env Env) error {
	var f clientFlags
	fs := flag.NewFlagSet("fleet send-home", flag.ContinueOnError)
	f.register(fs, false)
	rate := fs.Float64("rate", instance.DefaultSendHomeRate, fmt.Sprintf("tunnels closed per second (at most %d)", instance.MaxSendHomeRate))
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"fleet send-home takes no arguments"}
	}
	if *rate <= 0 || *rate > instance.MaxSendHomeRate {
		return usageError{fmt.Sprintf("--rate must be above 0 and at most %d", instance.MaxSendHomeRate)}
	}
	c, err := f.client(env)
	if err != nil {
		return err
	}
	var res api.SendHomeResult
	if err := c.do(ctx, "POST", "/api/v1/fleet/send-home", api.SendHomeRequest{Rate: *rate}, &res); err != nil {
		return err
	}
	if res.Devices == 0 {
		fmt.Fprintln(env.Stdout, "No device here is away from a home instance that is up.")
		return nil
	}
	fmt.Fprintf(env.Stdout, "Sending %d device(s) home at %g per second (about %s): each tunnel is closed, and AMT reconnects to its first MPS entry.\n",
		res.Devices, *rate, (time.Duration(float64(res.Devices) / *rate * float64(time.Second))).Round(time.Second))
	return nil
}
