package launch

import (
	"context"
	"fmt"
	"io"

	"github.com/presence-mps/presence/vault"
)

// Join is the first run of a data dir that joins an existing fleet, as
// `presence fleet join` does: it reads the join bundle (at most
// [vault.MaxBundleLen] bytes) and opens it with passphrase, then stores in
// st the fleet's root, a server certificate of this instance's own for
// address (the CN AMT checks against its MPS entry), the fleet's CIRA and
// console accounts and the fleet id. It returns what to enter in AMT:
// this instance as the policy's first MPS entry (cira is the CIRA port),
// and the inviting instance as its backup.
//
// A wrong passphrase or a damaged bundle writes nothing (the error wraps
// [vault.ErrBadBundle]); so does a store that holds another root
// ([vault.ErrRootExists]) or another fleet's id ([vault.ErrOtherFleet]):
// the window never forces a join.
func Join(ctx context.Context, st vault.Store, bundle io.Reader, passphrase, address string, cira int) (FirstRun, error) {
	data, err := io.ReadAll(io.LimitReader(bundle, vault.MaxBundleLen+1))
	if err != nil {
		return FirstRun{}, fmt.Errorf("read the join bundle: %w", err)
	}
	if len(data) > vault.MaxBundleLen {
		return FirstRun{}, fmt.Errorf("%w: the file is larger than a join bundle can be (%d bytes)", vault.ErrBadBundle, vault.MaxBundleLen)
	}
	// Open it before touching the store: a wrong passphrase writes
	// nothing.
	b, err := vault.OpenBundle(data, passphrase)
	if err != nil {
		return FirstRun{}, err
	}
	ca, err := b.Join(ctx, st, vault.JoinOptions{Address: address})
	if err != nil {
		return FirstRun{}, err
	}
	users := b.AccountNames(vault.KindCIRA)
	r := FirstRun{Address: address, Port: cira, RootSHA256: ca.RootFingerprintSHA256(), RootPEM: string(ca.RootPEM()),
		Backup: b.Inviter(), Peer: b.InviterPeer(), Fleet: b.FleetID(), CIRAUsers: users}
	if len(users) > 0 {
		r.User = users[0]
	}
	return r, nil
}
