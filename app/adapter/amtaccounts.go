package adapter

import (
	"github.com/presence-mps/presence/app/ui/admin"
	"github.com/presence-mps/presence/vault"
)

var _ admin.AMTBindings = (*Admin)(nil)

// AMTDevices returns the devices the AMT account is bound to (none: it is
// a default account).
func (a *Admin) AMTDevices(name string) ([]string, error) {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.accounts().AMTDevices(ctx, name)
}

// AddAMTAccount creates or replaces the AMT account, bound to devices
// (none: the default for every device without an account of its own).
func (a *Admin) AddAMTAccount(name string, password vault.Secret, devices []string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.accounts().AddAMT(ctx, name, password, devices)
}
