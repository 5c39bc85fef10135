//go:build !nogui

package app

import (
	"log/slog"

	"fyne.io/fyne/v2"

	"github.com/presence-mps/presence/app/adapter"
	"github.com/presence-mps/presence/app/ui/admin"
	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/vault"
)

type screen struct {
	name string
	root fyne.CanvasObject
	// shown, if set, runs when the screen is selected.
	shown func()
}

// adminScreens are History, Certificates and Accounts over the running
// instance's vault, accounts and history file. A renewed certificate is
// presented at once.
func adminScreens(w fyne.Window, r *launch.Running, log *slog.Logger) []screen {
	a := &adapter.Admin{Vault: r.Store, Accounts: r.Accounts, History: r.History, Logger: log, In: r.Instance,
		OnRenew: func(ca *vault.CA) error { r.UseCA(ca); return nil }}
	h, c, acc := admin.NewHistory(a), admin.NewCertificates(a), admin.NewAccounts(a)
	h.Window, c.Window, acc.Window = w, w, w
	h.Logger, c.Logger, acc.Logger = log, log, log
	return []screen{
		{"History", h.Root, h.Refresh},
		{"Certificates", c.Root, c.Refresh},
		{"Accounts", acc.Root, acc.Refresh},
	}
}
