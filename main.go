// Command presence is an Intel AMT Management Presence Server (MPS): AMT
// devices outside the office open CIRA tunnels to it, and management
// consoles reach them through it. See README.md and shared/DESIGN.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/presence-mps/presence/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
