package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/presence-mps/presence/vault"
)

func runAccount(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"want a subcommand: add, list or remove"}
	}
	var c common
	fs := flag.NewFlagSet("account "+args[0], flag.ContinueOnError)
	c.register(fs)
	kind := fs.String("kind", vault.KindCIRA, "account kind: cira (devices' MPS login), console or amt")
	if err := parse(fs, args[1:], env); err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	acc := vault.NewAccounts(st)
	name := fs.Arg(0)
	switch args[0] {
	case "add", "remove":
		if fs.NArg() != 1 {
			return usageError{fmt.Sprintf("account %s takes exactly one NAME", args[0])}
		}
		if args[0] == "remove" {
			return acc.Remove(ctx, *kind, name)
		}
		pw, err := readPassword(env.Stdin)
		if err != nil {
			return err
		}
		if err := acc.Add(ctx, *kind, name, pw); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s account %q saved\n", *kind, name)
		return nil
	case "list":
		names, err := acc.List(ctx, *kind)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(env.Stdout, n)
		}
		return nil
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: want add, list or remove", args[0])}
}
