package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/vault"
)

// runVault implements `presence vault migrate`:
//
//	presence vault migrate --from file|keychain|memory --to file|keychain [--data-dir DIR] [--overwrite]
//
// It copies every secret from one store into another with [vault.Migrate]
// and deletes nothing from the source.
func runVault(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"want a subcommand: migrate"}
	}
	if args[0] != "migrate" {
		return usageError{fmt.Sprintf("unknown subcommand %q: want migrate", args[0])}
	}
	flags := flag.NewFlagSet("vault migrate", flag.ContinueOnError)
	// The other common flags (--vault, --log-level) mean nothing here.
	dataDir := flags.String("data-dir", defaultDataDir(), "the data directory of the file vault and the keychain index")
	from := flags.String("from", "", "the store to copy from: file, keychain or memory")
	to := flags.String("to", "", "the store to copy into: file or keychain")
	overwrite := flags.Bool("overwrite", false, "replace values the destination already holds with different ones")
	if err := parse(flags, args[1:], env); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		return usageError{fmt.Sprintf("vault migrate takes no arguments, got %q", flags.Args())}
	case *from == "" || *to == "":
		return usageError{"want --from and --to, e.g. presence vault migrate --from file --to keychain"}
	case *from != "file" && *from != "keychain" && *from != "memory":
		return usageError{fmt.Sprintf("--from %q: want file, keychain or memory", *from)}
	case *to == "memory":
		return usageError{"--to memory keeps nothing after the command exits: want file or keychain"}
	case *to != "file" && *to != "keychain":
		return usageError{fmt.Sprintf("--to %q: want file or keychain", *to)}
	case *from == *to:
		return usageError{fmt.Sprintf("--from and --to are both %s: nothing to migrate", *from)}
	}

	if *from == "file" {
		// Open would create an empty vault; a missing one is a mistake.
		if _, err := os.Stat(filepath.Join(*dataDir, "vault")); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("no file vault in %s (check --data-dir)", *dataDir)
		}
	}
	src, err := vault.Open(*from, *dataDir)
	if err != nil {
		return fmt.Errorf("open the %s store: %w", *from, err)
	}
	if *to == "file" {
		if err := os.MkdirAll(*dataDir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	dst, err := vault.Open(*to, *dataDir)
	if err != nil {
		return fmt.Errorf("open the %s store: %w", *to, err)
	}

	res, err := vault.Migrate(ctx, src, dst, vault.MigrateOptions{Overwrite: *overwrite})
	if errors.Is(err, vault.ErrExists) {
		return fmt.Errorf("%w\nrun again with --overwrite to replace them with the values from the %s store", err, *from)
	}
	if err != nil {
		if res.Copied > 0 {
			return fmt.Errorf("%w (%d items were copied before the failure; running the command again completes the migration)", err, res.Copied)
		}
		return err
	}

	fmt.Fprintf(env.Stdout, "copied %d items from the %s store to the %s store", res.Copied, *from, *to)
	if res.Replaced > 0 {
		fmt.Fprintf(env.Stdout, ", replacing %d different values", res.Replaced)
	}
	if res.Unchanged > 0 {
		fmt.Fprintf(env.Stdout, "; %d were already there", res.Unchanged)
	}
	fmt.Fprintln(env.Stdout)
	if res.Missing > 0 {
		fmt.Fprintf(env.Stdout, "skipped %d keys the keychain index lists but the keychain no longer holds\n", res.Missing)
	}
	if err := launch.Dir(*dataDir).SaveVault(*to); err != nil {
		fmt.Fprintf(env.Stdout, "Start the server with the new store: presence serve --vault %s --data-dir %s (the setting could not be saved: %v)\n", *to, *dataDir, err)
	} else {
		fmt.Fprintf(env.Stdout, "From now on Presence uses the %s store for %s (%s; --vault overrides it). Restart a running server.\n", *to, *dataDir, launch.SettingsFile)
	}
	switch *from {
	case "file":
		fmt.Fprintf(env.Stdout, "Nothing was deleted: once the server works, remove the old copies (the directory %s)\n", filepath.Join(*dataDir, "vault"))
	case "keychain":
		fmt.Fprintf(env.Stdout, "Nothing was deleted: once the server works, remove the %q entries from the OS keychain with its own tool, and %s\n",
			vault.DefaultKeychainService, filepath.Join(*dataDir, "keychain-index"))
	}
	return nil
}
