// Command presence is an Intel AMT Management Presence Server (MPS): AMT
// devices outside the office open CIRA tunnels to it, and management
// consoles reach them through it. See README.md and shared/DESIGN.md.
//
// With no command it opens the desktop window (the server runs inside
// it); `presence serve` runs the same server with no window, in every
// build. A build with -tags nogui is server-only, with no cgo and no GL.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/presence-mps/presence/internal/cli"
	"github.com/presence-mps/presence/internal/launch"
	// Before Fyne's packages initialise: no locale noise under LANG=C.UTF-8.
	_ "github.com/presence-mps/presence/internal/locale"
)

// window runs the desktop window, and display says why it cannot open
// here; both nil in a nogui build.
var (
	window  func(context.Context, launch.Window) error
	display func() error
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, App: window, Display: display})
	stop()
	os.Exit(code)
}
