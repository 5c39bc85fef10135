package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/presence-mps/presence/vault"
)

// deviceList is a repeatable --device flag.
type deviceList []string

func (d *deviceList) String() string { return strings.Join(*d, ",") }

func (d *deviceList) Set(s string) error {
	if len(*d) >= vault.MaxAMTDevices {
		return fmt.Errorf("at most %d devices", vault.MaxAMTDevices)
	}
	*d = append(*d, s)
	return nil
}

func runAccount(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"want a subcommand: add, list or remove"}
	}
	var c common
	fs := flag.NewFlagSet("account "+args[0], flag.ContinueOnError)
	c.register(fs)
	kind := fs.String("kind", vault.KindCIRA, "account kind: cira (devices' MPS login), console or amt")
	var devices deviceList
	fs.Var(&devices, "device", "with --kind amt, add: a device (GUID) this AMT account logs in to; repeat it for more; none makes the account the default, for the devices no account is bound to")
	// Flags may follow NAME.
	if err := parse(fs, args[1:], env); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) >= 1 {
		if err := parse(fs, rest[1:], env); err != nil {
			return err
		}
		rest = append(rest[:1:1], fs.Args()...)
	}
	if len(devices) > 0 && (*kind != vault.KindAMT || args[0] != "add") {
		return usageError{"--device binds an AMT account: it goes with account add --kind amt"}
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	acc := vault.NewAccounts(st)
	switch args[0] {
	case "add", "remove":
		if len(rest) != 1 {
			return usageError{fmt.Sprintf("account %s takes exactly one NAME", args[0])}
		}
		name := rest[0]
		if args[0] == "remove" {
			return acc.Remove(ctx, *kind, name)
		}
		for _, d := range devices {
			if _, err := vault.CanonicalGUID(d); err != nil {
				return usageError{fmt.Sprintf("--device %q: a device is named by its GUID (32 hex digits, dashes optional)", d)}
			}
		}
		pw, err := readPassword(env.Stdin)
		if err != nil {
			return err
		}
		if *kind == vault.KindAMT {
			if err := acc.AddAMT(ctx, name, pw, devices); err != nil {
				return err
			}
			if len(devices) == 0 {
				fmt.Fprintf(env.Stdout, "amt account %q saved, the default for devices no account is bound to\n", name)
			} else {
				fmt.Fprintf(env.Stdout, "amt account %q saved, for %d device(s)\n", name, len(devices))
			}
			return nil
		}
		if err := acc.Add(ctx, *kind, name, pw); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s account %q saved\n", *kind, name)
		return nil
	case "list":
		if len(rest) != 0 {
			return usageError{"account list takes no NAME"}
		}
		names, err := acc.List(ctx, *kind)
		if err != nil {
			return err
		}
		if *kind != vault.KindAMT {
			for _, n := range names {
				fmt.Fprintln(env.Stdout, n)
			}
			return nil
		}
		// AMT accounts with the devices each logs in to.
		rows := make([][]string, 0, len(names))
		for _, n := range names {
			devs, err := acc.AMTDevices(ctx, n)
			if err != nil {
				return err
			}
			bound := "default"
			if len(devs) > 0 {
				bound = strings.Join(devs, ",")
			}
			rows = append(rows, []string{n, bound})
		}
		return printRows(env.Stdout, "table", []string{"NAME", "DEVICES"}, rows)
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: want add, list or remove", args[0])}
}
