package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/presence-mps/presence/vault"
)

const certUsage = "want a subcommand: init, show, export-root, renew, doctor, import, backup or restore"

func runCert(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{certUsage}
	}
	var c common
	fs := flag.NewFlagSet("cert "+args[0], flag.ContinueOnError)
	c.register(fs)
	switch args[0] {
	case "init":
		cn := fs.String("cn", "", "the address AMT devices are configured with to reach this MPS (IP address or DNS name)")
		force := fs.Bool("force", false, "replace an existing root: every device must then be given the new root")
		port := fs.Int("port", 4433, "the CIRA port AMT will connect to (only printed)")
		if err := parse(fs, args[1:], env); err != nil {
			return err
		}
		if *cn == "" {
			return usageError{"--cn ADDRESS is required: the address AMT devices use to reach this machine"}
		}
		st, err := c.store()
		if err != nil {
			return err
		}
		ca, err := vault.InitCA(ctx, st, vault.CAOptions{Address: *cn, Force: *force})
		if err != nil {
			return err
		}
		printAMTSettings(env, ca, *cn, *port, "")
		return nil
	case "show", "export-root":
		if err := parse(fs, args[1:], env); err != nil {
			return err
		}
		_, ca, err := c.loadCA(ctx)
		if err != nil {
			return err
		}
		if args[0] == "show" {
			fmt.Fprint(env.Stdout, ca.Info().String())
			if ca.RenewalDue(time.Now()) {
				fmt.Fprintf(env.Stdout, "\nThe server certificate expires on %s: renew it with `presence cert renew` (devices keep trusting the root).\n",
					ca.Server().NotAfter.UTC().Format(time.DateOnly))
			}
		} else {
			env.Stdout.Write(ca.RootPEM())
		}
		return nil
	case "renew":
		cn := fs.String("cn", "", "a new MPS address for the server certificate (default: keep the current one)")
		if err := parse(fs, args[1:], env); err != nil {
			return err
		}
		st, ca, err := c.loadCA(ctx)
		if err != nil {
			return err
		}
		renewed, err := ca.Renew(ctx, st, vault.RenewOptions{Address: *cn})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "New server certificate for %s, valid until %s, issued by the same root (SHA-256 %s): devices keep trusting it.\nRestart presence serve to present it.\n",
			renewed.Address(), renewed.Server().NotAfter.UTC().Format(time.DateOnly), renewed.RootFingerprintSHA256())
		return nil
	case "doctor":
		cn := fs.String("cn", "", "the address AMT devices are configured with (default: the server certificate's common name)")
		if err := parse(fs, args[1:], env); err != nil {
			return err
		}
		_, ca, err := c.loadCA(ctx)
		if err != nil {
			return err
		}
		ps := ca.Doctor(*cn, time.Now())
		if len(ps) == 0 {
			fmt.Fprintf(env.Stdout, "The certificates are fine for AMT devices reaching %s.\n", cmp.Or(*cn, ca.Address()))
			return nil
		}
		severe := false
		for _, p := range ps {
			fmt.Fprintln(env.Stdout, p.Text)
			severe = severe || p.Severe
		}
		if severe {
			return errors.New("AMT devices will refuse this MPS until the problems above are fixed")
		}
		return nil
	case "import":
		rootCert := fs.String("root-cert", "", "PEM file of the existing root (CA) certificate")
		rootKey := fs.String("root-key", "", "PEM file of its private key (unencrypted PKCS#8 or PKCS#1)")
		srvCert := fs.String("server-cert", "", "PEM file of an existing server certificate issued by the root (optional)")
		srvKey := fs.String("server-key", "", "PEM file of its private key")
		cn := fs.String("cn", "", "MPS address for a new server certificate, when none is given")
		force := fs.Bool("force", false, "replace a different root already in the vault")
		if err := parse(fs, args[1:], env); err != nil {
			return err
		}
		if *rootCert == "" || *rootKey == "" {
			return usageError{"--root-cert FILE and --root-key FILE are required"}
		}
		opts := vault.ImportOptions{Address: *cn, Force: *force}
		for _, f := range []struct {
			name string
			dst  *[]byte
		}{{*rootCert, &opts.RootCert}, {*rootKey, &opts.RootKey}, {*srvCert, &opts.ServerCert}, {*srvKey, &opts.ServerKey}} {
			if f.name == "" {
				continue
			}
			b, err := os.ReadFile(f.name)
			if err != nil {
				return err
			}
			*f.dst = b
		}
		st, err := c.store()
		if err != nil {
			return err
		}
		ca, err := vault.ImportCA(ctx, st, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "Imported the root (SHA-256 %s) and a server certificate for %s.\n", ca.RootFingerprintSHA256(), ca.Address())
		for _, p := range ca.Doctor("", time.Now()) {
			fmt.Fprintln(env.Stdout, "Note:", p.Text)
		}
		return nil
	case "backup":
		out := fs.String("out", "", "file to write the encrypted backup to (required; the passphrase is read from stdin)")
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
		_, ca, err := c.loadCA(ctx)
		if err != nil {
			return err
		}
		b, err := ca.Backup(pass.Reveal())
		if err != nil {
			return err
		}
		if err := os.WriteFile(*out, b, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "Backup of the CA (root SHA-256 %s) written to %s, encrypted with your passphrase. Keep both: without the passphrase it cannot be restored.\n", ca.RootFingerprintSHA256(), *out)
		return nil
	case "restore":
		in := fs.String("in", "", "the backup file (required; the passphrase is read from stdin)")
		force := fs.Bool("force", false, "replace a different root already in the vault")
		if err := parse(fs, args[1:], env); err != nil {
			return err
		}
		if *in == "" {
			return usageError{"--in FILE is required"}
		}
		pass, err := readPassword(env.Stdin)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(*in)
		if err != nil {
			return err
		}
		st, err := c.store()
		if err != nil {
			return err
		}
		ca, err := vault.RestoreCA(ctx, st, b, pass.Reveal(), vault.RestoreOptions{Force: *force})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "Restored the CA: root SHA-256 %s, server certificate for %s.\n", ca.RootFingerprintSHA256(), ca.Address())
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: %s", args[0], certUsage)}
}

// printAMTSettings tells the admin what to enter in AMT to reach this MPS:
// the policy's first MPS entry (this instance), and its second, the
// backup (another instance of the fleet at backup, HOST:PORT, or "" when
// there is none yet).
func printAMTSettings(env Env, ca *vault.CA, cn string, port int, backup string) {
	in := ca.Info()
	fmt.Fprintf(env.Stdout, `MPS certificates created.

Set in AMT (CIRA / Management Presence Server), the remote-access policy's first MPS entry (primary):
  MPS address:       %s
  Port:              %d
  Common name (CN):  %s
  Username:          a CIRA account: presence account add --kind cira NAME
  Trusted root:      presence cert export-root > presence-root.pem
  Root SHA-256:      %s
`, cn, port, cn, in.Root.SHA256)
	if host, bport, err := net.SplitHostPort(backup); err == nil {
		fmt.Fprintf(env.Stdout, `
Its second MPS entry (backup), another instance of this fleet, which AMT tries when the first cannot be reached:
  MPS address:       %s
  Port:              %s
  Common name (CN):  %s
  Username:          the same CIRA account (the fleet shares its accounts)
  Trusted root:      the same root
`, host, bport, host)
	} else {
		fmt.Fprintln(env.Stdout, `
Backup MPS entry: none yet. A second instance (presence fleet invite here, presence fleet join there) is
the backup; presence fleet status lists each instance's address and CIRA port.`)
	}
	fmt.Fprintf(env.Stdout, `
Server certificate valid until %s.

The root certificate to install in AMT (PEM):
%s`, in.Server.NotAfter.UTC().Format("2006-01-02"), ca.RootPEM())
}
