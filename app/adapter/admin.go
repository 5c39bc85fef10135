package adapter

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/presence-mps/presence/app/ui/admin"
	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/vault"
)

// ErrNoHistory is returned by Admin's history methods when it has no
// history file.
var ErrNoHistory = errors.New("adapter: this Presence keeps no history")

// DefaultAdminTimeout bounds each vault call of an [Admin] whose Timeout
// is zero. The keychain store bounds its own calls too (ten seconds).
const DefaultAdminTimeout = 30 * time.Second

// Admin gives the administration screens (package app/ui/admin) the
// vault and the history file: it implements admin.HistoryBackend,
// admin.CertBackend and admin.AccountsBackend. Its methods block on the
// vault, the file and RSA key generation, and are safe for concurrent use
// as its parts are; the screens call them off the Fyne goroutine. Set the
// fields before the first call.
type Admin struct {
	// Vault holds the certificate authority and the accounts.
	Vault vault.Store
	// Accounts are the accounts in Vault. Give the running instance's, so
	// that a change takes effect at the next device login; nil means
	// vault.NewAccounts(Vault), and the instance then sees changes within
	// its AccountsRefresh (15 s).
	Accounts *vault.Accounts
	// History is the history file the instance records to; nil makes the
	// history methods return ErrNoHistory.
	History *history.Store
	// Address is the MPS address devices are configured with: the doctor
	// checks the server certificate against it, and a renewal issues the
	// new certificate for it. Empty means the server certificate's common
	// name.
	Address string
	// OnRenew, if set, gets the renewed certificate authority to present
	// from now on; a nil error means the running server does. Without it,
	// or when it fails, the new certificate is presented after a restart.
	OnRenew func(*vault.CA) error
	// In, if set, is the running instance: its CIRA port is the primary
	// MPS entry's, and its fleet's other instances are the backups.
	In *instance.Instance
	// Timeout bounds each vault call (zero: DefaultAdminTimeout).
	Timeout time.Duration
	// Now is the clock of the doctor and of availability windows (nil:
	// time.Now).
	Now func() time.Time
	// Logger receives what the screens do not show (an OnRenew failure);
	// nil discards it.
	Logger *slog.Logger
}

var (
	_ admin.HistoryBackend  = (*Admin)(nil)
	_ admin.CertBackend     = (*Admin)(nil)
	_ admin.AccountsBackend = (*Admin)(nil)
)

func (a *Admin) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Admin) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cmp.Or(a.Timeout, DefaultAdminTimeout))
}

func (a *Admin) accounts() *vault.Accounts {
	if a.Accounts != nil {
		return a.Accounts
	}
	return vault.NewAccounts(a.Vault)
}

// ---- History ----

// limit is q's limit as the history file applies it.
func limit(q admin.Query) int {
	switch {
	case q.Limit <= 0:
		return history.DefaultLimit
	case q.Limit > history.MaxLimit:
		return history.MaxLimit
	}
	return q.Limit
}

// deviceMatch is what a query's device text selects.
type deviceMatch struct {
	text  string          // lowercase, trimmed; "" selects every device
	exact string          // the one device the text names: query its index
	set   map[string]bool // the devices whose GUID or host name contains the text
}

// match resolves a device text against the devices in the history file.
// A GUID (in any case) or a host name (with or without ".amt") names one
// device, as `presence history --device` resolves it; otherwise the text
// selects every device whose GUID or host name contains it, and exact is
// set when that is just one.
func (a *Admin) match(text string) (deviceMatch, error) {
	text = strings.TrimSpace(text)
	m := deviceMatch{text: strings.ToLower(text)}
	if text == "" {
		return m, nil
	}
	devs, err := a.History.Devices()
	if err != nil {
		return m, err
	}
	if guid, ok := history.FindDevice(devs, text); ok {
		m.exact = guid
		return m, nil
	}
	m.set = make(map[string]bool)
	for _, d := range devs {
		if strings.Contains(strings.ToLower(d.Device), m.text) || strings.Contains(strings.ToLower(d.Hostname), m.text) {
			m.set[d.Device] = true
		}
	}
	if len(m.set) == 1 {
		for d := range m.set {
			m.exact = d
		}
		m.set = nil
	}
	return m, nil
}

// events returns the tunnel events q selects, oldest first. A kind or a
// text that matched several devices is applied to the newest
// history.MaxLimit events of the range.
func (a *Admin) events(q admin.Query) ([]history.TunnelEvent, error) {
	if a.History == nil {
		return nil, ErrNoHistory
	}
	m, err := a.match(q.Device)
	if err != nil {
		return nil, err
	}
	if m.text != "" && m.exact == "" && len(m.set) == 0 {
		return nil, nil // no device matches
	}
	n := limit(q)
	scan := n
	if q.Kind != "" || m.set != nil {
		scan = history.MaxLimit
	}
	evs, err := a.History.Timeline(m.exact, q.Since, q.Until, scan)
	if err != nil {
		return nil, err
	}
	out := evs[:0]
	for _, e := range evs {
		if (q.Kind == "" || e.Kind == q.Kind) && (m.set == nil || m.set[e.Device]) {
			out = append(out, e)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// sessions returns the console sessions q selects, oldest first. A text
// that names one device selects its sessions, as `presence history
// --sessions --device` does; any other text selects the sessions whose
// device or host name contains it, among the newest history.MaxLimit of
// the range.
func (a *Admin) sessions(q admin.Query) ([]history.SessionRecord, error) {
	if a.History == nil {
		return nil, ErrNoHistory
	}
	m, err := a.match(q.Device)
	if err != nil {
		return nil, err
	}
	n := limit(q)
	f := history.Filter{Device: m.exact, Since: q.Since, Until: q.Until, Limit: n}
	if m.text == "" || m.exact != "" {
		return a.History.Sessions(f)
	}
	f.Limit = history.MaxLimit
	recs, err := a.History.Sessions(f)
	if err != nil {
		return nil, err
	}
	out := recs[:0]
	for _, r := range recs {
		if m.set[r.Device] || strings.Contains(strings.ToLower(r.Device), m.text) || strings.Contains(strings.ToLower(r.Host), m.text) {
			out = append(out, r)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// Events returns the tunnel events q selects, oldest first.
func (a *Admin) Events(q admin.Query) ([]admin.Event, error) {
	evs, err := a.events(q)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Event, len(evs))
	for i, e := range evs {
		out[i] = admin.Event{Time: e.Time, Device: e.Device, Hostname: e.Hostname, Kind: e.Kind, Reason: e.Reason, Remote: e.Remote, User: e.User}
	}
	return out, nil
}

// Sessions returns the console sessions q selects, oldest first.
func (a *Admin) Sessions(q admin.Query) ([]admin.Session, error) {
	recs, err := a.sessions(q)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Session, len(recs))
	for i, r := range recs {
		out[i] = admin.Session{Start: r.Start, End: r.End, Kind: r.Kind, User: r.User, Console: r.Console, Device: r.Device,
			Port: r.Port, BytesToDevice: r.BytesToDevice, BytesFromDevice: r.BytesFromDevice, EndReason: r.EndReason}
	}
	return out, nil
}

// Availability returns when device's tunnel was up in [since, until),
// from the history file's up and down events; the window ends at now if
// until is zero or later. A zero since starts the window at the first
// span.
func (a *Admin) Availability(device string, since, until time.Time) (admin.Availability, error) {
	if a.History == nil {
		return admin.Availability{}, ErrNoHistory
	}
	// The window's end is passed explicitly, so that the last span ends
	// exactly at To.
	if now := a.now(); until.IsZero() || now.Before(until) {
		until = now
	}
	av, err := a.History.Availability(device, since, until)
	if err != nil {
		return admin.Availability{}, err
	}
	out := admin.Availability{From: since, To: until}
	for _, iv := range av.Intervals {
		out.Up = append(out.Up, admin.Span{Start: iv.Start, End: iv.End})
	}
	if out.From.IsZero() && len(out.Up) > 0 {
		out.From = out.Up[0].Start
	}
	return out, nil
}

// WriteCSV writes what q selects as `presence history --format csv` does
// (with --sessions when q.Kind is admin.KindSessions).
func (a *Admin) WriteCSV(w io.Writer, q admin.Query) error {
	if q.Kind == admin.KindSessions {
		recs, err := a.sessions(q)
		if err != nil {
			return err
		}
		return writeCSV(w)(history.SessionTable(recs))
	}
	evs, err := a.events(q)
	if err != nil {
		return err
	}
	return writeCSV(w)(history.EventTable(evs))
}

// writeCSV returns a function that writes a table to w as CSV.
func writeCSV(w io.Writer) func(header []string, rows [][]string) error {
	return func(header []string, rows [][]string) error {
		cw := csv.NewWriter(w)
		if err := cw.Write(header); err != nil {
			return err
		}
		return cw.WriteAll(rows) // flushes
	}
}

// ---- Certificates ----

func (a *Admin) loadCA() (*vault.CA, error) {
	ctx, cancel := a.ctx()
	defer cancel()
	return vault.LoadCA(ctx, a.Vault)
}

func cert(c vault.CertInfo) admin.Cert {
	return admin.Cert{Subject: c.Subject, Issuer: c.Issuer, SANs: c.SANs, SHA256: c.SHA256, Serial: c.Serial,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, Key: c.Key, Signature: c.Signature}
}

// Certificates describes the certificate authority in the vault and runs
// the doctor for Address.
func (a *Admin) Certificates() (admin.CertStatus, error) {
	ca, err := a.loadCA()
	if err != nil {
		return admin.CertStatus{}, err
	}
	info := ca.Info()
	st := admin.CertStatus{Root: cert(info.Root), Server: cert(info.Server), Address: cmp.Or(a.Address, ca.Address())}
	for _, p := range ca.Doctor(a.Address, a.now()) {
		st.Problems = append(st.Problems, admin.Problem{Severe: p.Severe, Text: p.Text})
	}
	st.Primary.Address = st.Address
	if a.In != nil {
		st.Primary, st.Backups, st.InFleet = entries(a.In, st.Address)
	}
	return st, nil
}

// RenewServer issues a new server certificate and key for Address (empty:
// the current certificate's common name) from the same root and saves
// them in the vault, as `presence cert renew` does; then it hands the
// renewed authority to OnRenew.
func (a *Admin) RenewServer() (admin.Renewed, error) {
	ca, err := a.loadCA()
	if err != nil {
		return admin.Renewed{}, err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	renewed, err := ca.Renew(ctx, a.Vault, vault.RenewOptions{Address: a.Address, Now: a.Now})
	if err != nil {
		return admin.Renewed{}, err
	}
	r := admin.Renewed{Server: cert(renewed.Info().Server)}
	if a.OnRenew != nil {
		if err := a.OnRenew(renewed); err != nil {
			if a.Logger != nil {
				a.Logger.Warn("the renewed server certificate is saved but not presented yet", "err", err)
			}
		} else {
			r.InUse = true
		}
	}
	return r, nil
}

// RootPEM returns the root certificate in PEM, as `presence cert
// export-root` prints it.
func (a *Admin) RootPEM() ([]byte, error) {
	ca, err := a.loadCA()
	if err != nil {
		return nil, err
	}
	return ca.RootPEM(), nil
}

// ---- Accounts ----

// AccountNames returns the names of the accounts of kind, sorted.
func (a *Admin) AccountNames(kind string) ([]string, error) {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.accounts().List(ctx, kind)
}

// AddAccount creates the account or replaces its password.
func (a *Admin) AddAccount(kind, name string, password vault.Secret) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.accounts().Add(ctx, kind, name, password)
}

// RemoveAccount deletes the account.
func (a *Admin) RemoveAccount(kind, name string) error {
	ctx, cancel := a.ctx()
	defer cancel()
	return a.accounts().Remove(ctx, kind, name)
}
