package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps/discovery"
)

// advertiser returns the instance's mDNS hook. loopbackOnly (demo mode)
// advertises on the loopback interface only, so nothing leaves the machine.
func advertiser(log *slog.Logger, loopbackOnly bool) func(instance.Announcement) (func(), error) {
	return func(a instance.Announcement) (func(), error) {
		if a.ProxyPort == 0 {
			return func() {}, nil // nothing to advertise without the proxy
		}
		cfg := discovery.AdvertiseConfig{
			ProxyPort: a.ProxyPort, APIPort: a.APIPort, PeerPort: a.PeerPort, ID: a.InstanceID,
			Version: a.Version, Fingerprint: a.Fingerprint,
		}
		if loopbackOnly {
			lo, err := loopbackInterface()
			if err != nil {
				return nil, err
			}
			cfg.Ifaces = []net.Interface{lo}
			cfg.IPs = []string{"127.0.0.1"}
			cfg.Instance = "Presence demo " + a.InstanceID
		}
		adv, err := discovery.Advertise(cfg)
		if err != nil {
			return nil, err
		}
		log.Info("advertising over mDNS", "service", "_amt-mps._tcp", "instance", adv.Instance(), "loopback_only", loopbackOnly)
		return func() { adv.Close() }, nil
	}
}

// peerFinder returns the fleet's mDNS browse: one round on every
// multicast interface, where serve advertises.
func peerFinder() func(context.Context) ([]instance.FoundPeer, error) {
	return func(ctx context.Context) ([]instance.FoundPeer, error) {
		found, err := discovery.Browse(ctx, discovery.BrowseConfig{})
		out := make([]instance.FoundPeer, 0, len(found))
		for _, f := range found {
			if f.PeerPort > 0 {
				out = append(out, instance.FoundPeer{ID: f.ID, Fingerprint: f.Fingerprint, Addrs: f.Addrs, PeerPort: f.PeerPort})
			}
		}
		return out, err
	}
}

func loopbackInterface() (net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return net.Interface{}, err
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 && i.Flags&net.FlagUp != 0 {
			return i, nil
		}
	}
	return net.Interface{}, fmt.Errorf("no loopback interface is up")
}

func runDiscover(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("discover", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "how long to listen for answers")
	format := fs.String("format", "table", "output: table, json or csv")
	loopback := fs.Bool("loopback", false, "browse the loopback interface only (finds presence demo)")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"discover takes no arguments"}
	}
	if err := positive("timeout", *timeout); err != nil {
		return err
	}
	if *format != "table" && *format != "json" && *format != "csv" {
		return usageError{fmt.Sprintf("--format %q: want table, json or csv", *format)}
	}
	cfg := discovery.BrowseConfig{Timeout: *timeout}
	if *loopback {
		lo, err := loopbackInterface()
		if err != nil {
			return err
		}
		cfg.Ifaces = []net.Interface{lo}
	}
	found, err := discovery.Browse(ctx, cfg)
	if err != nil {
		return err
	}
	if *format == "json" {
		return printJSON(env.Stdout, found)
	}
	rows := make([][]string, 0, len(found))
	for _, in := range found {
		addrs := make([]string, len(in.Addrs))
		for i, a := range in.Addrs {
			addrs[i] = a.String()
		}
		api := "-"
		if in.APIPort != 0 {
			api = strconv.Itoa(in.APIPort)
		}
		rows = append(rows, []string{in.Name, in.Host, strings.Join(addrs, ","), strconv.Itoa(in.ProxyPort), api,
			in.Version, in.ID, in.Fingerprint})
	}
	if err := printRows(env.Stdout, *format, []string{"NAME", "HOST", "ADDRESSES", "PROXY", "API", "VERSION", "ID", "ROOT SHA-256"}, rows); err != nil {
		return err
	}
	if len(found) == 0 && *format == "table" {
		fmt.Fprintf(env.Stderr, "no Presence instance answered within %s\n", *timeout)
	}
	return nil
}
