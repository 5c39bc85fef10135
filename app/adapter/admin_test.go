package adapter_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/app/adapter"
	"github.com/presence-mps/presence/app/ui/admin"
	"github.com/presence-mps/presence/internal/cli"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

const (
	guidA = "8C2E1F00-0000-4000-8000-00000000000A" // alpha
	guidB = "8C2E1F00-0000-4000-8000-00000000000B" // beta
	guidC = "8C2E1F00-0000-4000-8000-00000000000C" // alpine
)

// fixture is a data dir laid out as `presence` lays it out: a file vault
// in dir/vault with a CA for mps.example.test, and the history file
// dir/history.db.
type fixture struct {
	dir   string
	store vault.Store
	ca    *vault.CA
	hist  *history.Store
	admin *adapter.Admin
	t0    time.Time // the events' base: now, to the second
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), t0: time.Now().Truncate(time.Second)}
	var err error
	if f.store, err = vault.Open("file", f.dir); err != nil {
		t.Fatal(err)
	}
	root, server := vaulttest.Keys(t)
	if f.ca, err = vault.InitCA(t.Context(), f.store, vault.CAOptions{Address: "mps.example.test", RootKey: root, ServerKey: server}); err != nil {
		t.Fatal(err)
	}
	if f.hist, err = history.Open(filepath.Join(f.dir, "history.db"), history.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.hist.Close(); err != nil {
			t.Error(err)
		}
	})
	f.admin = &adapter.Admin{Vault: f.store, Accounts: vault.NewAccounts(f.store), History: f.hist}
	return f
}

// ago returns the time d before the fixture's base.
func (f *fixture) ago(d time.Duration) time.Time { return f.t0.Add(-d) }

// record adds a day of history and waits until it is committed: alpha
// flapped, beta failed a login then came up, alpine came up; two console
// sessions, one still open.
func (f *fixture) record(t *testing.T) {
	t.Helper()
	h := time.Hour
	for _, e := range []history.TunnelEvent{
		{Time: f.ago(20 * h), Device: guidA, Hostname: "alpha", Kind: history.KindUp, Remote: "203.0.113.7:50123", TLSVersion: "TLS 1.2", Ports: []uint32{16992, 16994}},
		{Time: f.ago(18 * h), Device: guidB, Hostname: "beta", Kind: history.KindAuthFailed, Reason: "wrong password", Remote: "198.51.100.9:40000", User: "admin"},
		{Time: f.ago(12 * h), Device: guidA, Hostname: "alpha", Kind: history.KindDown, Reason: "keepalive timeout, \"quoted\"", Remote: "203.0.113.7:50123"},
		{Time: f.ago(6 * h), Device: guidA, Hostname: "alpha", Kind: history.KindUp, Remote: "203.0.113.7:50200", TLSVersion: "TLS 1.2", Ports: []uint32{16992}},
		{Time: f.ago(90 * time.Minute), Device: guidB, Hostname: "beta", Kind: history.KindUp, Remote: "198.51.100.9:40001"},
		{Time: f.ago(30 * time.Minute), Device: guidC, Hostname: "alpine", Kind: history.KindUp, Remote: "192.0.2.5:1000"},
	} {
		if !f.hist.Add(e) {
			t.Fatal("history queue full")
		}
	}
	for _, s := range []history.SessionRecord{
		{ID: 1, Kind: "socks5", Console: "10.0.0.9:51000", User: "alice", Device: guidA, Host: "alpha.amt", Port: 16994,
			BytesToDevice: 1200, BytesFromDevice: 56000, Start: f.ago(5 * h), End: f.ago(4 * h), EndReason: "console closed"},
		{ID: 2, Kind: "http-connect", Console: "10.0.0.10:40000", User: "bob", Device: guidC, Host: "alpine", Port: 16992, Start: f.ago(10 * time.Minute)},
	} {
		if !f.hist.AddSession(s) {
			t.Fatal("history queue full")
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := f.hist.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// runCLI runs `presence args...` on the fixture's data dir and returns
// its standard output.
func (f *fixture) runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--data-dir", f.dir)
	if code := cli.Run(t.Context(), args, cli.Env{Stdout: &out, Stderr: &errOut}); code != 0 {
		t.Fatalf("presence %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

func hosts(evs []admin.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Hostname+"/"+e.Kind)
	}
	return out
}

// The device text, the kind and the range select as the screen promises,
// against the real history file.
func TestAdminEventsFilter(t *testing.T) {
	f := newFixture(t)
	f.record(t)
	for _, tc := range []struct {
		name string
		q    admin.Query
		want []string
	}{
		{"everything", admin.Query{}, []string{"alpha/up", "beta/auth-failed", "alpha/down", "alpha/up", "beta/up", "alpine/up"}},
		{"host name", admin.Query{Device: "alpha"}, []string{"alpha/up", "alpha/down", "alpha/up"}},
		{"host name in another case, with .amt", admin.Query{Device: "ALPHA.amt"}, []string{"alpha/up", "alpha/down", "alpha/up"}},
		{"GUID in lower case", admin.Query{Device: strings.ToLower(guidB)}, []string{"beta/auth-failed", "beta/up"}},
		{"part of two host names", admin.Query{Device: "alp"}, []string{"alpha/up", "alpha/down", "alpha/up", "alpine/up"}},
		{"part of every GUID", admin.Query{Device: "8c2e1f00"}, []string{"alpha/up", "beta/auth-failed", "alpha/down", "alpha/up", "beta/up", "alpine/up"}},
		{"no such device", admin.Query{Device: "gamma"}, nil},
		{"kind", admin.Query{Kind: history.KindUp}, []string{"alpha/up", "alpha/up", "beta/up", "alpine/up"}},
		{"kind and device", admin.Query{Kind: history.KindDown, Device: "alpha"}, []string{"alpha/down"}},
		{"auth failures", admin.Query{Kind: history.KindAuthFailed}, []string{"beta/auth-failed"}},
		{"last hour", admin.Query{Since: f.ago(time.Hour)}, []string{"alpine/up"}},
		{"last 7 hours, two devices", admin.Query{Since: f.ago(7 * time.Hour), Device: "alp"}, []string{"alpha/up", "alpine/up"}},
		{"limit keeps the newest", admin.Query{Limit: 2}, []string{"beta/up", "alpine/up"}},
		{"limit after the kind", admin.Query{Kind: history.KindUp, Limit: 3}, []string{"alpha/up", "beta/up", "alpine/up"}},
	} {
		evs, err := f.admin.Events(tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := hosts(evs); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Events(%+v) = %q; want %q", tc.name, tc.q, got, tc.want)
		}
	}
	evs, _ := f.admin.Events(admin.Query{Kind: history.KindAuthFailed})
	if len(evs) != 1 || evs[0].User != "admin" || evs[0].Reason != "wrong password" || !evs[0].Time.Equal(f.ago(18*time.Hour)) || evs[0].Device != guidB {
		t.Errorf("auth failure %+v", evs)
	}

	ss, err := f.admin.Sessions(admin.Query{Device: "alpine"})
	if err != nil || len(ss) != 1 || ss[0].User != "bob" || !ss[0].End.IsZero() {
		t.Errorf("alpine's sessions %+v, %v", ss, err)
	}
	ss, err = f.admin.Sessions(admin.Query{Device: "alp"})
	if err != nil || len(ss) != 2 || ss[0].User != "alice" || ss[0].BytesFromDevice != 56000 || ss[0].EndReason != "console closed" {
		t.Errorf("sessions of alp* %+v, %v", ss, err)
	}
	if ss, err = f.admin.Sessions(admin.Query{Since: f.ago(time.Hour)}); err != nil || len(ss) != 1 || ss[0].User != "bob" {
		t.Errorf("sessions of the last hour %+v, %v", ss, err)
	}
}

// The CSV export is byte for byte what `presence history --format csv`
// writes from the same file.
func TestAdminCSVMatchesCLI(t *testing.T) {
	f := newFixture(t)
	f.record(t)
	cases := []struct {
		q    admin.Query
		args []string
	}{
		{admin.Query{}, nil},
		{admin.Query{Device: "alpha"}, []string{"--device", "alpha"}},
		{admin.Query{Device: guidA}, []string{"--device", guidA}},
		{admin.Query{Kind: admin.KindSessions}, []string{"--sessions"}},
		{admin.Query{Kind: admin.KindSessions, Device: guidC}, []string{"--sessions", "--device", guidC}},
	}
	got := make([]string, len(cases))
	for i, c := range cases {
		var b bytes.Buffer
		if err := f.admin.WriteCSV(&b, c.q); err != nil {
			t.Fatalf("WriteCSV(%+v): %v", c.q, err)
		}
		got[i] = b.String()
	}
	// The command opens the file itself: the store must let go of it.
	if err := f.hist.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		want := f.runCLI(t, append([]string{"history", "--format", "csv"}, c.args...)...)
		if got[i] != want {
			t.Errorf("WriteCSV(%+v):\n%s\npresence history --format csv %s:\n%s", c.q, got[i], strings.Join(c.args, " "), want)
		}
		if strings.Count(got[i], "\n") < 2 {
			t.Errorf("WriteCSV(%+v) wrote no rows:\n%s", c.q, got[i])
		}
	}
	// The kind filter narrows the file too.
	f2 := newFixture(t)
	f2.record(t)
	var b bytes.Buffer
	if err := f2.admin.WriteCSV(&b, admin.Query{Kind: history.KindDown}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "TIME,DEVICE,HOSTNAME,EVENT") ||
		!strings.Contains(lines[1], `,down,"keepalive timeout, ""quoted""",`) {
		t.Errorf("CSV of downs:\n%s", b.String())
	}
}

// Availability's spans are the history file's up intervals, and the
// screen's percentage from them is the file's own fraction.
func TestAdminAvailability(t *testing.T) {
	f := newFixture(t)
	f.record(t)
	since := f.ago(24 * time.Hour)
	a, err := f.admin.Availability(guidA, since, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []admin.Span{{Start: f.ago(20 * time.Hour), End: f.ago(12 * time.Hour)}, {Start: f.ago(6 * time.Hour), End: a.To}}
	if !slices.Equal(a.Up, want) || !a.From.Equal(since) || a.To.Before(f.t0) {
		t.Fatalf("Availability = %+v; want spans %v from %v to now", a, want, since)
	}
	h, err := f.hist.Availability(guidA, since, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(a.Fraction()-h.Fraction) > 1e-4 || math.Abs(a.Fraction()-14.0/24) > 1e-3 {
		t.Errorf("fraction from the spans %v, the file's %v; want about 14/24", a.Fraction(), h.Fraction)
	}

	// Inside an outage: the state at the window's start counts.
	a, err = f.admin.Availability(guidA, f.ago(13*time.Hour), f.ago(7*time.Hour))
	if err != nil || len(a.Up) != 1 || !a.Up[0].Start.Equal(f.ago(13*time.Hour)) || math.Abs(a.Fraction()-1.0/6) > 1e-9 {
		t.Errorf("13 h to 7 h ago: %+v, %v; want up its first hour", a, err)
	}
}

// The certificates screen's status is the vault's CA, and the doctor runs
// for the configured address.
func TestAdminCertificates(t *testing.T) {
	f := newFixture(t)
	st, err := f.admin.Certificates()
	if err != nil {
		t.Fatal(err)
	}
	info := f.ca.Info()
	if st.Root.SHA256 != f.ca.RootFingerprintSHA256() || st.Server.SHA256 != info.Server.SHA256 || st.Root.Key != "RSA 3072" || st.Server.Key != "RSA 2048" {
		t.Errorf("status %+v", st)
	}
	if !slices.Equal(st.Server.SANs, []string{"DNS:mps.example.test"}) || st.Address != "mps.example.test" || !st.Server.NotAfter.Equal(info.Server.NotAfter) {
		t.Errorf("server %+v, address %q", st.Server, st.Address)
	}
	if len(st.Problems) != 0 {
		t.Errorf("problems for a fresh CA: %+v", st.Problems)
	}

	f.admin.Address = "mps.example.org"
	if st, err = f.admin.Certificates(); err != nil {
		t.Fatal(err)
	}
	if st.Address != "mps.example.org" || len(st.Problems) == 0 || !st.Problems[0].Severe || !strings.Contains(st.Problems[0].Text, `"mps.example.org"`) {
		t.Errorf("problems for another address: %+v", st.Problems)
	}

	// Five years on, the server certificate is past due.
	f.admin.Address = ""
	f.admin.Now = func() time.Time { return info.Server.NotAfter.Add(-24 * time.Hour) }
	if st, err = f.admin.Certificates(); err != nil || len(st.Problems) != 1 || st.Problems[0].Severe || !strings.Contains(st.Problems[0].Text, "renew it now") {
		t.Errorf("problems a day before expiry: %+v, %v", st.Problems, err)
	}
}

// Renewal keeps the root and saves the new server certificate in the
// vault; OnRenew decides whether it is in use.
func TestAdminRenew(t *testing.T) {
	f := newFixture(t)
	var handed *vault.CA
	f.admin.OnRenew = func(ca *vault.CA) error { handed = ca; return nil }
	r, err := f.admin.RenewServer()
	if err != nil {
		t.Fatal(err)
	}
	old := f.ca.Info().Server
	if !r.InUse || handed == nil || r.Server.SHA256 == old.SHA256 || handed.Info().Server.SHA256 != r.Server.SHA256 {
		t.Fatalf("renewed %+v (in use %v); old server SHA-256 %s", r.Server, r.InUse, old.SHA256)
	}
	// Another reader of the vault (the next start) gets the new one.
	again, err := vault.Open("file", f.dir)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := vault.LoadCA(t.Context(), again)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Info().Server.SHA256 != r.Server.SHA256 || loaded.RootFingerprintSHA256() != f.ca.RootFingerprintSHA256() {
		t.Errorf("after renewal the vault has server %s, root %s", loaded.Info().Server.SHA256, loaded.RootFingerprintSHA256())
	}

	f.admin.OnRenew = func(*vault.CA) error { return errors.New("the listener is paused") }
	if r, err = f.admin.RenewServer(); err != nil || r.InUse {
		t.Errorf("renewal with a failing OnRenew: in use %v, %v; want saved, not in use", r.InUse, err)
	}
	f.admin.OnRenew = nil
	if r, err = f.admin.RenewServer(); err != nil || r.InUse {
		t.Errorf("renewal without OnRenew: in use %v, %v", r.InUse, err)
	}
}

// The exported root is what `presence cert export-root` prints.
func TestAdminRootPEM(t *testing.T) {
	f := newFixture(t)
	pem, err := f.admin.RootPEM()
	if err != nil {
		t.Fatal(err)
	}
	if want := f.runCLI(t, "cert", "export-root", "--vault", "file"); string(pem) != want || !strings.HasPrefix(want, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("RootPEM:\n%s\npresence cert export-root:\n%s", pem, want)
	}
}

// Accounts added and removed through the screen's backend are the
// vault's: the command line lists them and the password verifies.
func TestAdminAccounts(t *testing.T) {
	f := newFixture(t)
	if err := f.admin.AddAccount(vault.KindConsole, "alice", "Wonder-1and"); err != nil {
		t.Fatal(err)
	}
	if err := f.admin.AddAccount(vault.KindCIRA, "amt-devices", "Cira-P4ssw0rd"); err != nil {
		t.Fatal(err)
	}
	if names, err := f.admin.AccountNames(vault.KindConsole); err != nil || !slices.Equal(names, []string{"alice"}) {
		t.Errorf("console accounts %q, %v", names, err)
	}
	if got := f.runCLI(t, "account", "list", "--kind", "cira", "--vault", "file"); got != "amt-devices\n" {
		t.Errorf("presence account list --kind cira = %q", got)
	}
	if ok, err := f.admin.Accounts.Verify(t.Context(), vault.KindConsole, "alice", []byte("Wonder-1and")); !ok || err != nil {
		t.Errorf("alice's password does not verify: %v", err)
	}
	if err := f.admin.RemoveAccount(vault.KindConsole, "alice"); err != nil {
		t.Fatal(err)
	}
	if names, err := f.admin.AccountNames(vault.KindConsole); err != nil || len(names) != 0 {
		t.Errorf("console accounts after remove %q, %v", names, err)
	}
	err := f.admin.RemoveAccount(vault.KindConsole, "alice")
	if !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("second remove: %v; want ErrNotFound", err)
	}
	// A name the vault refuses: the error names the rule, not the password.
	err = f.admin.AddAccount(vault.KindAMT, "bad name", "Top-Secret-9")
	if err == nil || strings.Contains(err.Error(), "Top-Secret-9") || admin.NameProblem("bad name") == "" {
		t.Errorf("bad name: %v", err)
	}
	// Nil Accounts: a fresh view of the same vault.
	f.admin.Accounts = nil
	if names, err := f.admin.AccountNames(vault.KindCIRA); err != nil || !slices.Equal(names, []string{"amt-devices"}) {
		t.Errorf("CIRA accounts without Accounts %q, %v", names, err)
	}
}

// lockedStore is a vault whose keychain is locked: fault injection for
// the sentence the screens show.
type lockedStore struct{}

func locked(key string) error { return fmt.Errorf("vault: keychain %q: %w", key, vault.ErrLocked) }

func (lockedStore) Get(_ context.Context, key string) ([]byte, error) { return nil, locked(key) }
func (lockedStore) Set(_ context.Context, key string, _ []byte) error { return locked(key) }
func (lockedStore) Delete(_ context.Context, key string) error        { return locked(key) }
func (lockedStore) List(_ context.Context, p string) ([]string, error) {
	return nil, locked(p)
}

// A locked keychain reaches the screens as vault's sentinel, which they
// turn into the sentence that says to unlock it.
func TestAdminLockedKeychain(t *testing.T) {
	a := &adapter.Admin{Vault: lockedStore{}}
	const sentence = "The keychain is locked: unlock it and try again."
	_, err := a.AccountNames(vault.KindCIRA)
	if got := admin.Sentence("The accounts could not be read", err); got != "The accounts could not be read. "+sentence {
		t.Errorf("listing: %q", got)
	}
	err = a.AddAccount(vault.KindConsole, "alice", "Wonder-1and")
	if got := admin.Sentence("x", err); !strings.HasSuffix(got, sentence) || strings.Contains(err.Error(), "Wonder-1and") {
		t.Errorf("adding: %q (%v)", got, err)
	}
	if _, err := a.Certificates(); !strings.HasSuffix(admin.Sentence("x", err), sentence) {
		t.Errorf("certificates: %v", err)
	}
	if _, err := a.RenewServer(); !strings.HasSuffix(admin.Sentence("x", err), sentence) {
		t.Errorf("renewal: %v", err)
	}
}

// Without a history file the history methods say so.
func TestAdminNoHistory(t *testing.T) {
	a := &adapter.Admin{}
	if _, err := a.Events(admin.Query{}); !errors.Is(err, adapter.ErrNoHistory) {
		t.Errorf("Events: %v", err)
	}
	if err := a.WriteCSV(&bytes.Buffer{}, admin.Query{Kind: admin.KindSessions}); !errors.Is(err, adapter.ErrNoHistory) {
		t.Errorf("WriteCSV: %v", err)
	}
	if got := admin.Sentence("The history could not be read", adapter.ErrNoHistory); got != "The history could not be read. This Presence keeps no history." {
		t.Errorf("sentence %q", got)
	}
}
