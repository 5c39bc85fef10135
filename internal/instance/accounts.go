package instance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/fleet"
	"github.com/presence-mps/presence/vault"
)

// Account changes reach every instance of a fleet: each instance reads
// its CIRA and console accounts every accountsEvery, and when they
// changed here (presence account add, the window's Accounts screen) it
// gives the set a new version and sends it over its peer links; an
// instance that receives a newer set stores it in its own vault, adding,
// replacing and removing accounts to match. AMT accounts stay on each
// instance (they belong to devices, not to the fleet).
const accountsEvery = time.Second

// passwordsEvery is how often a look reads the passwords too when no
// account was added or removed: with the OS keychain each password is a
// call to it, so a look that finds the same names reads only them
// (presence account add of a new account reaches the peers within a
// second; a changed password within passwordsEvery).
const passwordsEvery = 10 * time.Second

// fleetKinds are the account kinds a fleet shares.
var fleetKinds = []string{vault.KindCIRA, vault.KindConsole}

// The vault items that remember which set this instance has: its version,
// and the digest of the accounts it had then (a different digest at the
// next look means they changed here).
const (
	itemAccountsVersion = "fleet/accounts-version"
	itemAccountsDigest  = "fleet/accounts-digest"
)

// accountSync keeps this instance's fleet accounts and its peers' in step.
type accountSync struct {
	in *Instance

	mu      sync.Mutex // serialises looks and adoptions
	version int64
	digest  string
	// names and read are the account names at the last full read, and
	// when it was.
	names string
	read  time.Time
}

// namesOf lists the fleet accounts' names, without their passwords.
func (a *accountSync) namesOf(ctx context.Context) (string, error) {
	var b strings.Builder
	for _, kind := range fleetKinds {
		names, err := a.in.cfg.Accounts.List(ctx, kind)
		if err != nil {
			return "", err
		}
		for _, n := range names {
			b.WriteString(kind + "/" + n + "\n")
		}
	}
	return b.String(), nil
}

// readSet reads this instance's fleet accounts, sorted, with their digest.
func (a *accountSync) readSet(ctx context.Context) (fleet.AccountSet, error) {
	acc := a.in.cfg.Accounts
	var set fleet.AccountSet
	for _, kind := range fleetKinds {
		names, err := acc.List(ctx, kind)
		if err != nil {
			return set, err
		}
		for _, n := range names {
			pw, err := acc.Password(ctx, kind, n)
			if err != nil {
				return set, err
			}
			set.Accounts = append(set.Accounts, fleet.Account{Kind: kind, Name: n, Password: []byte(pw.Reveal())})
		}
	}
	set.Digest = digestOf(set.Accounts)
	return set, nil
}

// digestOf is the SHA-256 of the accounts in order (lengths prefixed).
func digestOf(accts []fleet.Account) string {
	h := sha256.New()
	for _, x := range accts {
		for _, f := range [][]byte{[]byte(x.Kind), []byte(x.Name), x.Password} {
			h.Write([]byte(strconv.Itoa(len(f)) + ":"))
			h.Write(f)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// load reads the remembered version and digest.
func (a *accountSync) load(ctx context.Context) {
	st := a.in.cfg.Accounts.Store()
	if b, err := st.Get(ctx, itemAccountsVersion); err == nil {
		a.version, _ = strconv.ParseInt(string(b), 10, 64)
	}
	if b, err := st.Get(ctx, itemAccountsDigest); err == nil {
		a.digest = string(b)
	}
}

// remember keeps version and digest in the vault.
func (a *accountSync) rememberLocked(ctx context.Context) {
	st := a.in.cfg.Accounts.Store()
	if err := st.Set(ctx, itemAccountsVersion, []byte(strconv.FormatInt(a.version, 10))); err != nil {
		a.in.log.Warn("fleet accounts: cannot keep their version", "err", err)
	}
	if err := st.Set(ctx, itemAccountsDigest, []byte(a.digest)); err != nil {
		a.in.log.Warn("fleet accounts: cannot keep their digest", "err", err)
	}
}

// look reads the accounts; if they changed here, the set gets a new
// version. It sends the set to the peers either way when it changed or
// when send is set.
func (a *accountSync) look(ctx context.Context, send bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	names, err := a.namesOf(ctx)
	if err != nil {
		a.in.log.Debug("fleet accounts: cannot read them", "err", err)
		return
	}
	if !send && names == a.names && time.Since(a.read) < passwordsEvery {
		return
	}
	set, err := a.readSet(ctx)
	if err != nil {
		a.in.log.Debug("fleet accounts: cannot read them", "err", err)
		return
	}
	a.names, a.read = names, time.Now()
	switch {
	case set.Digest == a.digest:
	case a.digest == "" && a.version == 0:
		// The first look of a new member: its accounts are not a change
		// (a joined instance has the bundle's, perhaps older ones), so
		// the set keeps version 0, which any changed set outranks.
		a.digest = set.Digest
		a.rememberLocked(ctx)
		send = true
	default:
		a.version = max(time.Now().UnixNano(), a.version+1)
		a.digest = set.Digest
		a.rememberLocked(ctx)
		a.in.log.Info("fleet accounts changed here: sending them to the peers", "accounts", len(set.Accounts))
		send = true
	}
	if send {
		set.Version = a.version
		a.in.peers.SetAccounts(set)
	}
}

// adopt takes a peer's set if it is newer than ours: the vault is made
// to hold exactly its accounts.
func (a *accountSync) adopt(from string, set fleet.AccountSet) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	if set.Version == 0 && a.version == 0 && set.Digest != a.digest {
		// Two sets no one has changed since they joined: neither is
		// newer, so nothing is dropped; we add the accounts we lack, and
		// our next look sends the union as a change.
		a.mergeLocked(ctx, from, set)
		return
	}
	mine := fleet.AccountSet{Version: a.version, Digest: a.digest}
	if !set.Newer(mine) || set.Digest == a.digest {
		if set.Digest == a.digest && set.Version > a.version {
			a.version = set.Version // the same accounts: just the version
			a.rememberLocked(ctx)
		}
		return
	}
	if digestOf(set.Accounts) != set.Digest {
		a.in.log.Warn("fleet accounts from a peer do not match their digest: ignored", "peer", from)
		return
	}
	acc := a.in.cfg.Accounts
	want := map[string]fleet.Account{}
	for _, x := range set.Accounts {
		if !slices.Contains(fleetKinds, x.Kind) || !vault.ValidAccountName(x.Name) {
			a.in.log.Warn("fleet accounts from a peer hold a bad account: ignored", "peer", from, "kind", x.Kind)
			return
		}
		want[x.Kind+"/"+x.Name] = x
	}
	cur, err := a.readSet(ctx)
	if err != nil {
		a.in.log.Warn("fleet accounts: cannot read ours", "err", err)
		return
	}
	have := map[string]fleet.Account{}
	for _, x := range cur.Accounts {
		have[x.Kind+"/"+x.Name] = x
	}
	var added, removed int
	for k, x := range want {
		if h, ok := have[k]; ok && bytes.Equal(h.Password, x.Password) {
			continue
		}
		if err := acc.Add(ctx, x.Kind, x.Name, vault.Secret(x.Password)); err != nil {
			a.in.log.Warn("fleet accounts: cannot store one", "kind", x.Kind, "name", x.Name, "err", err)
			return
		}
		added++
	}
	for k, x := range have {
		if _, ok := want[k]; !ok {
			if err := acc.Remove(ctx, x.Kind, x.Name); err != nil {
				a.in.log.Warn("fleet accounts: cannot remove one", "kind", x.Kind, "name", x.Name, "err", err)
				return
			}
			removed++
		}
	}
	a.version, a.digest = set.Version, set.Digest
	a.rememberLocked(ctx)
	a.in.log.Info("fleet accounts taken from a peer", "peer", from, "added_or_changed", added, "removed", removed,
		"kinds", strings.Join(fleetKinds, ","))
	// Our peers get it from us too (a peer may not link to the sender).
	a.in.peers.SetAccounts(set)
}

// mergeLocked adds the accounts of set that this instance lacks.
func (a *accountSync) mergeLocked(ctx context.Context, from string, set fleet.AccountSet) {
	acc := a.in.cfg.Accounts
	added := 0
	for _, x := range set.Accounts {
		if !slices.Contains(fleetKinds, x.Kind) || !vault.ValidAccountName(x.Name) {
			continue
		}
		if _, err := acc.Password(ctx, x.Kind, x.Name); err == nil {
			continue // ours stays
		}
		if err := acc.Add(ctx, x.Kind, x.Name, vault.Secret(x.Password)); err != nil {
			a.in.log.Warn("fleet accounts: cannot store one", "kind", x.Kind, "name", x.Name, "err", err)
			return
		}
		added++
	}
	if added > 0 {
		a.in.log.Info("fleet accounts merged with a peer's", "peer", from, "added", added)
	}
}

// run looks at the accounts until the instance stops.
func (a *accountSync) run() {
	ctx := context.Background()
	a.load(ctx)
	a.look(ctx, true)
	t := time.NewTicker(accountsEvery)
	defer t.Stop()
	for {
		select {
		case <-a.in.stop:
			return
		case <-t.C:
			a.look(ctx, false)
		}
	}
}
