package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
)

func runSimulate(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	mpsAddr := fs.String("mps", "", "the MPS's CIRA address, HOST:PORT (required); several, comma-separated, are AMT's MPS entries in order: primary, then backup")
	caFile := fs.String("ca", "", "PEM file of the MPS root certificates the devices trust (required; presence cert export-root)")
	serverName := fs.String("server-name", "", "name the MPS certificate must carry, one per --mps address, comma-separated; an empty one means that address's host (default: the host of each --mps address)")
	retryInterval := fs.Duration("retry-interval", amtsim.DefaultRetryInterval, "with several --mps addresses, the pause after the last one failed before a device starts over at the first (AMT's periodic policy interval)")
	devices := fs.Int("devices", 1, "how many devices to simulate")
	first := fs.Int("first", 0, "index of the first device (split a big fleet over processes with disjoint ranges)")
	seed := fs.String("seed", "presence", "identity seed: the same seed and index give the same device UUID")
	user := fs.String("user", "", "CIRA user name (required); the password is read from standard input")
	echo := fs.Uint("echo-port", 0, "also serve an echo service on this port (0: none)")
	var fault amtsim.Fault
	fs.TextVar(&fault, "fault", amtsim.FaultNone, "misbehaviour: none, wrong-password, garbage, trickle, silent, drop-after, reconnect-loop")
	hold := fs.Duration("hold", 0, "how long drop-after and reconnect-loop devices keep the tunnel up")
	duration := fs.Duration("duration", 0, "stop after this long (0: run until interrupted)")
	rate := fs.Float64("rate", 0, "devices started per second (0: all at once)")
	maxHS := fs.Int("max-handshakes", 0, "cap on handshakes in flight (0: none)")
	report := fs.Duration("report", 0, "print a JSON summary to stderr this often (0: only at the end)")
	window := fs.Uint("window", 0, "channel window the devices grant (0: default)")
	tlsMax := fs.String("tls-max", "1.2", "highest TLS version the devices offer: 1.0, 1.1, 1.2 (AMT 12 and later) or 1.3")
	resume := fs.Bool("resume", false, "resume TLS sessions on reconnect (tickets) instead of full handshakes")
	noRetry := fs.Bool("no-retry", false, "do not reconnect after a connection ends")
	amtLogin := fs.Bool("amt-login", false, "the devices' WS-Man and Serial-over-LAN accept AMT user admin with the password on the second line of standard input (default: they refuse every login)")
	// The simulated platform (amtsim.AMTConfig).
	amtVersion := fs.String("amt-version", "11.8", "AMT firmware version, e.g. 11.8, 12, 15, 16 or 16.1.27: 10 and later add sleep, hibernate and graceful actions (with --os-agent) and OS power saving, 16 and later UEFI HTTPS boot")
	var mode amtsim.ControlMode
	fs.TextVar(&mode, "control-mode", amtsim.ACM, "acm or ccm; in ccm, KVM, SOL, IDE-R and boot options always need user consent")
	var consent amtsim.UserConsent
	fs.TextVar(&consent, "consent", amtsim.ConsentNone, "in acm, what needs user consent: none, kvm or all")
	osAgent := fs.Bool("os-agent", false, "an OS agent (LMS) runs on the host, which sleep, hibernate and graceful shutdown and reset need")
	hardware := fs.String("hardware", "desktop", "hardware profile: "+strings.Join(amtsim.HardwareProfiles, ", ")+" (headless has no KVM)")
	eventLog := fs.Int("event-log", 0, "pre-fill each device's event log with this many records of earlier boots (390 is a full AMT log)")
	var screen amtsim.SOLScreen
	fs.TextVar(&screen, "sol-screen", amtsim.SOLShell, "what the serial console shows: shell, or bios (a BIOS setup screen with cursor addressing, colours and line drawing)")
	var lan lanFlags
	lan.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: presence simulate --mps HOST:PORT --ca FILE --user U [flags] (password on stdin)
       presence simulate --lan HOST [--lan-tls] [--addresses FILE] --devices N [flags] (AMT password on stdin)

Runs simulated AMT devices that hold CIRA tunnels to the MPS. With
--amt-login their WS-Man service (16992) answers power state and actions,
boot settings, version and control mode, hardware inventory, event and
audit logs, user consent and the redirection switches, with state; SOL
(16994) serves a shell or a BIOS screen. A user consent code the devices
show is logged to standard error and listed in the summary's
consent_codes.

`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if lan.host != "" {
		return simulateLAN(ctx, env, lan, lanDevices{n: *devices, first: *first, seed: *seed, duration: *duration})
	}
	if *mpsAddr == "" || *caFile == "" || *user == "" {
		return usageError{"--mps, --ca and --user are required"}
	}
	if *devices <= 0 || *first < 0 {
		return usageError{"--devices must be positive and --first not negative"}
	}
	if *retryInterval <= 0 {
		return usageError{"--retry-interval must be positive"}
	}
	entries, err := mpsEntries(*mpsAddr, *serverName)
	if err != nil {
		return err
	}
	hw, ok := amtsim.HardwareProfile(*hardware)
	if !ok {
		return usageError{fmt.Sprintf("--hardware %q: want one of %s", *hardware, strings.Join(amtsim.HardwareProfiles, ", "))}
	}
	if consent != amtsim.ConsentNone && mode == amtsim.CCM {
		return usageError{"--consent applies to --control-mode acm; ccm always needs consent"}
	}
	platform := &amtsim.AMTConfig{
		Version: *amtVersion, ControlMode: mode, UserConsent: consent, OSAgent: *osAgent,
		Hardware: &hw, EventLogRecords: *eventLog, SOLScreen: screen,
	}
	if _, err := amtsim.NewPlatform(platform, amtsim.DeviceUUID(*seed, *first), nil); err != nil {
		return usageError{strings.TrimPrefix(err.Error(), "amtsim: ")}
	}
	maxVersion, ok := tlsVersions[*tlsMax]
	if !ok {
		return usageError{fmt.Sprintf("--tls-max %q: want 1.0, 1.1, 1.2 or 1.3", *tlsMax)}
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no PEM certificate", *caFile)
	}
	lines := 1
	if *amtLogin {
		lines = 2
	}
	pws, err := readPasswords(env.Stdin, lines)
	if err != nil {
		return err
	}
	pw := pws[0]
	var amtPW []byte
	if *amtLogin {
		amtPW = []byte(pws[1].Reveal())
	}
	device := amtsim.Config{
		RootCAs: roots, User: *user, Password: []byte(pw.Reveal()), AMTPassword: amtPW,
		MaxVersion: maxVersion, MinVersion: tls.VersionTLS10, ResumeSessions: *resume,
		EchoPort: uint32(*echo), Fault: fault, Hold: *hold, Window: uint32(*window),
		AMT: platform,
	}
	if len(entries) == 1 {
		device.MPSAddr, device.ServerName = entries[0].Addr, entries[0].ServerName
	} else {
		device.MPS = entries
	}
	fleet, err := amtsim.NewFleet(amtsim.FleetConfig{
		Device:  device,
		Devices: *devices, First: *first, Seed: *seed,
		StartRate: *rate, MaxHandshakes: *maxHS, NoRetry: *noRetry, RetryInterval: *retryInterval,
		// Info and above: the consent codes the devices show.
		Logger: slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if *report > 0 {
		go func() {
			t := time.NewTicker(*report)
			defer t.Stop()
			enc := json.NewEncoder(env.Stderr)
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					enc.Encode(fleet.Summary())
				}
			}
		}()
	}
	sum := fleet.Run(ctx)
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(sum)
}

// mpsEntries pairs the comma-separated --mps addresses with the
// --server-name names, in order. The devices share --user and the password
// on every entry.
func mpsEntries(addrs, names string) ([]amtsim.MPSEntry, error) {
	var entries []amtsim.MPSEntry
	for a := range strings.SplitSeq(addrs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, usageError{fmt.Sprintf("--mps %q: an empty address", addrs)}
		}
		entries = append(entries, amtsim.MPSEntry{Addr: a})
	}
	if len(entries) > amtsim.MaxMPS {
		return nil, usageError{fmt.Sprintf("--mps: %d addresses; AMT holds at most %d", len(entries), amtsim.MaxMPS)}
	}
	if names == "" {
		return entries, nil
	}
	split := strings.Split(names, ",")
	if len(split) != len(entries) {
		return nil, usageError{fmt.Sprintf("--server-name has %d names for %d --mps addresses", len(split), len(entries))}
	}
	for i, n := range split {
		entries[i].ServerName = strings.TrimSpace(n)
	}
	return entries, nil
}

var tlsVersions = map[string]uint16{"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}
