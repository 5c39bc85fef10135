package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/presence-mps/presence/vault"
)

func runCert(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"want a subcommand: init, show or export-root"}
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
		printAMTSettings(env, ca, *cn, *port)
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
		} else {
			env.Stdout.Write(ca.RootPEM())
		}
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: want init, show or export-root", args[0])}
}

// printAMTSettings tells the admin what to enter in AMT to reach this MPS.
func printAMTSettings(env Env, ca *vault.CA, cn string, port int) {
	in := ca.Info()
	fmt.Fprintf(env.Stdout, `MPS certificates created.

Set in AMT (CIRA / Management Presence Server):
  MPS address:       %s
  Port:              %d
  Common name (CN):  %s
  Username:          a CIRA account: presence account add --kind cira NAME
  Trusted root:      presence cert export-root > presence-root.pem
  Root SHA-256:      %s

Server certificate valid until %s.
`, cn, port, cn, in.Root.SHA256, in.Server.NotAfter.UTC().Format("2006-01-02"))
}
