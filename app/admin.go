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
	// addAccount, if set, fills the screen's add form for an account of
	// kind named name (the Connection problems screen's fix).
	addAccount func(kind, name string)
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
		{"History", h.Root, h.Refresh, nil},
		{"Certificates", c.Root, c.Refresh, nil},
		{"Accounts", acc.Root, acc.Refresh, func(kind, name string) {
			for i, k := range admin.AccountKinds {
				if k.Kind == kind {
					acc.AddKind.SetSelectedIndex(i)
				}
			}
			acc.Name.SetText(name)
			acc.Password.SetText("")
			acc.Confirm.SetText("")
			w.Canvas().Focus(acc.Password)
		}},
	}
}
