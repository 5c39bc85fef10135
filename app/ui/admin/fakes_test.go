package admin

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/presence-mps/presence/vault"
)

// inline runs a backend call at once, on the test's goroutine; fyne's test
// driver runs fyne.Do inline too, so a screen's answer is applied before
// the call that asked returns.
func inline(f func()) { f() }

// now is the tests' clock.
var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

const (
	guidA = "8C2E1F00-0000-4000-8000-00000000000A"
	guidB = "8C2E1F00-0000-4000-8000-00000000000B"
)

// fakeHistory answers queries from fixed records, filtering them as the
// engine does (device text in GUID or host name, kind, time).
type fakeHistory struct {
	events   []Event   // oldest first
	sessions []Session // oldest first
	avail    map[string]Availability
	err      error // returned by every method when set
	queries  []Query
	exported []Query
}

func contains(s, sub string) bool { return strings.Contains(strings.ToLower(s), strings.ToLower(sub)) }

func (f *fakeHistory) Events(q Query) ([]Event, error) {
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	var out []Event
	for _, e := range f.events {
		if (q.Device == "" || contains(e.Device, q.Device) || contains(e.Hostname, q.Device)) &&
			(q.Kind == "" || e.Kind == q.Kind) && !e.Time.Before(q.Since) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeHistory) Sessions(q Query) ([]Session, error) {
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	var out []Session
	for _, s := range f.sessions {
		if (q.Device == "" || contains(s.Device, q.Device)) && !s.Start.Before(q.Since) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeHistory) Availability(device string, since, until time.Time) (Availability, error) {
	if f.err != nil {
		return Availability{}, f.err
	}
	a := f.avail[device]
	a.From, a.To = since, now
	return a, nil
}

// WriteCSV writes a header and one row per event (or session) q selects.
func (f *fakeHistory) WriteCSV(w io.Writer, q Query) error {
	f.exported = append(f.exported, q)
	cw := csv.NewWriter(w)
	if q.Kind == KindSessions {
		ss, err := f.Sessions(q)
		if err != nil {
			return err
		}
		cw.Write([]string{"START", "DEVICE"})
		for _, s := range ss {
			cw.Write([]string{s.Start.UTC().Format(time.DateTime), s.Device})
		}
	} else {
		evs, err := f.Events(q)
		if err != nil {
			return err
		}
		cw.Write([]string{"TIME", "DEVICE", "EVENT"})
		for _, e := range evs {
			cw.Write([]string{e.Time.UTC().Format(time.DateTime), e.Device, e.Kind})
		}
	}
	cw.Flush()
	return cw.Error()
}

// sampleHistory has two devices over the last day: alpha flapped, beta
// failed to log in once, and one console session.
func sampleHistory() *fakeHistory {
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	return &fakeHistory{
		events: []Event{
			{Time: at(20 * time.Hour), Device: guidA, Hostname: "alpha", Kind: "up", Remote: "203.0.113.7:50123"},
			{Time: at(18 * time.Hour), Device: guidB, Hostname: "beta", Kind: "auth-failed", Reason: "wrong password", Remote: "198.51.100.9:40000", User: "admin"},
			{Time: at(12 * time.Hour), Device: guidA, Hostname: "alpha", Kind: "down", Reason: "keepalive timeout", Remote: "203.0.113.7:50123"},
			{Time: at(6 * time.Hour), Device: guidA, Hostname: "alpha", Kind: "up", Remote: "203.0.113.7:50200"},
			{Time: at(30 * time.Minute), Device: guidB, Hostname: "beta", Kind: "up", Remote: "198.51.100.9:40001"},
		},
		sessions: []Session{
			{Start: at(5 * time.Hour), End: at(4 * time.Hour), Kind: "socks5", User: "alice", Console: "10.0.0.9:51000", Device: guidA, Port: 16994, BytesToDevice: 1200, BytesFromDevice: 56000, EndReason: "console closed"},
		},
		avail: map[string]Availability{
			// alpha: up 8 of the last 24 hours, then 6 more: 14 h.
			guidA: {Up: []Span{{at(20 * time.Hour), at(12 * time.Hour)}, {at(6 * time.Hour), now}}},
			guidB: {Up: []Span{{at(30 * time.Minute), now}}},
		},
	}
}

// fakeCerts is a certificate authority that renews on demand.
type fakeCerts struct {
	st       CertStatus
	err      error // from Certificates
	renewErr error
	inUse    bool
	renewed  int
	pem      string
}

func (f *fakeCerts) Certificates() (CertStatus, error) { return f.st, f.err }

func (f *fakeCerts) RenewServer() (Renewed, error) {
	if f.renewErr != nil {
		return Renewed{}, f.renewErr
	}
	f.renewed++
	f.st.Server.SHA256 = fmt.Sprintf("RENEWED:%02d", f.renewed)
	f.st.Server.NotAfter = now.AddDate(5, 0, 0)
	return Renewed{Server: f.st.Server, InUse: f.inUse}, nil
}

func (f *fakeCerts) RootPEM() ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	return []byte(f.pem), nil
}

const rootSHA = "3A:5F:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:0D"

func sampleCerts() *fakeCerts {
	return &fakeCerts{
		st: CertStatus{
			Root: Cert{Subject: "CN=Presence MPS Root 1a2b3c4d,O=Presence", Issuer: "CN=Presence MPS Root 1a2b3c4d,O=Presence", SHA256: rootSHA,
				NotBefore: now.AddDate(-1, 0, -1), NotAfter: now.AddDate(19, 0, 0), Key: "RSA 3072", Signature: "SHA256-RSA"},
			Server: Cert{Subject: "CN=mps.example.com,O=Presence", Issuer: "CN=Presence MPS Root 1a2b3c4d,O=Presence", SANs: []string{"DNS:mps.example.com"},
				SHA256: "9F:00:AB", NotBefore: now.AddDate(-1, 0, -1), NotAfter: now.Add(20 * 24 * time.Hour), Key: "RSA 2048", Signature: "SHA256-RSA"},
			Address: "mps.example.com",
			Primary: MPSEntry{Address: "mps.example.com", Port: 4433},
			Problems: []Problem{
				{Severe: false, Text: "The server certificate expires on 2026-05-21: renew it now (presence cert renew); devices keep trusting the root."},
				{Severe: true, Text: "The server certificate's common name is \"mps.example.com\", but devices are configured to reach \"mps.example.org\"."},
			},
		},
		pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	}
}

// fakeAccounts keeps accounts in maps; passwords are kept to check what
// arrived, never shown.
type fakeAccounts struct {
	pw    map[string]map[string]vault.Secret // kind → name → password
	bound map[string][]string                // AMT account → devices
	err   error                              // returned by every method when set
	calls int
}

func newFakeAccounts() *fakeAccounts {
	return &fakeAccounts{pw: map[string]map[string]vault.Secret{
		vault.KindCIRA:    {"amt-devices": "cira-pass-1"},
		vault.KindConsole: {"alice": "x", "bob": "y"},
		vault.KindAMT:     {"admin": "P@ssw0rd!"},
	}}
}

func (f *fakeAccounts) AccountNames(kind string) ([]string, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	var out []string
	for n := range f.pw[kind] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakeAccounts) AddAccount(kind, name string, password vault.Secret) error {
	f.calls++
	if f.err != nil {
		return f.err
	}
	f.pw[kind][name] = password
	return nil
}

func (f *fakeAccounts) AMTDevices(name string) ([]string, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return f.bound[name], nil
}

func (f *fakeAccounts) AddAMTAccount(name string, password vault.Secret, devices []string) error {
	f.calls++
	if f.err != nil {
		return f.err
	}
	for other, devs := range f.bound {
		for _, d := range devices {
			if other != name && slices.Contains(devs, d) {
				return fmt.Errorf("vault: device %s is bound to AMT account %q already", d, other)
			}
		}
	}
	f.pw[vault.KindAMT][name] = password
	if f.bound == nil {
		f.bound = map[string][]string{}
	}
	f.bound[name] = devices
	return nil
}

func (f *fakeAccounts) RemoveAccount(kind, name string) error {
	f.calls++
	if f.err != nil {
		return f.err
	}
	if _, ok := f.pw[kind][name]; !ok {
		return fmt.Errorf("vault: no %s account %q: %w", kind, name, vault.ErrNotFound)
	}
	delete(f.pw[kind], name)
	return nil
}

// closeRecorder is a buffer that records Close.
type closeRecorder struct {
	strings.Builder
	closed  bool
	failing bool
}

func (c *closeRecorder) Write(p []byte) (int, error) {
	if c.failing {
		return 0, errors.New("disk full")
	}
	return c.Builder.Write(p)
}

func (c *closeRecorder) Close() error {
	c.closed = true
	return nil
}
