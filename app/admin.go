//go:build !nogui

package app

import (
	"fyne.io/fyne/v2"

	"github.com/presence-mps/presence/app/engine"
	"github.com/presence-mps/presence/internal/cli"
)

type screen struct {
	name string
	root fyne.CanvasObject
}

// adminScreens are History, Certificates and Accounts.
func adminScreens(w fyne.Window, r *cli.Running, b *engine.Backend) []screen {
	return nil
}
