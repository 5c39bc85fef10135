package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/vault"
)

// vaultFiles returns the files of dir's file vault, name → content (none
// if there is no vault).
func vaultFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	entries, err := os.ReadDir(filepath.Join(dir, "vault"))
	if os.IsNotExist(err) {
		return m
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "vault", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func sameFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func fileStore(t *testing.T, dir string) vault.Store {
	t.Helper()
	st, err := vault.NewFile(filepath.Join(dir, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var fleetLine = regexp.MustCompile(`(?m)^Join bundle of fleet ([0-9a-f]{32}) written to `)

// fleet invite on A, fleet join on B, in two data dirs through the
// command line: B gets A's root, its own server certificate, A's accounts
// and the fleet id; a wrong passphrase, a tampered or oversized file and
// another root are refused, writing nothing.
func TestFleetInviteJoin(t *testing.T) {
	ctx := context.Background()
	dirA, caA := fileCA(t)
	const consolePW = "console-Pw-1"
	for _, a := range []struct{ kind, name, pw string }{{"cira", "dev", ciraPW}, {"console", "alice", consolePW}} {
		if r := run(t, a.pw+"\n", "account", "add", "--kind", a.kind, "--data-dir", dirA, a.name); r.code != 0 {
			t.Fatalf("account add: %+v", r)
		}
	}
	if ok, err := vault.NewAccounts(fileStore(t, dirA)).Verify(ctx, vault.KindCIRA, "dev", []byte(ciraPW)); !ok || err != nil {
		t.Fatalf("the CIRA password does not verify on A: %v", err)
	}

	const pass = "the fleet's passphrase"
	bundle := filepath.Join(t.TempDir(), "fleet.bundle")
	r := run(t, pass+"\n", "fleet", "invite", "--out", bundle, "--data-dir", dirA)
	m := fleetLine.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil || !strings.Contains(r.stdout, caA.RootFingerprintSHA256()) ||
		!strings.Contains(r.stdout, "1 CIRA, 1 console") || strings.Contains(r.stdout+r.stderr, pass) {
		t.Fatalf("invite: %+v", r)
	}
	fleet := m[1]
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle file: %v, %v", fi, err)
	}
	again := filepath.Join(t.TempDir(), "again.bundle")
	if r := run(t, pass+"\n", "fleet", "invite", "--out", again, "--data-dir", dirA); r.code != 0 || fleetLine.FindStringSubmatch(r.stdout)[1] != fleet {
		t.Fatalf("second invite: %+v; want fleet %s", r, fleet)
	}

	// Refusals on a new instance: nothing is written, not even the data
	// dir.
	dirB := filepath.Join(t.TempDir(), "b")
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Index(data, []byte("\n\n")) + 2
	flipped := bytes.Clone(data)
	i := body + (len(data)-body)/2
	for data[i] == '\n' {
		i++
	}
	if flipped[i] == 'A' { // another base64 character
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	tampered := filepath.Join(t.TempDir(), "tampered.bundle")
	os.WriteFile(tampered, flipped, 0o600)
	huge := filepath.Join(t.TempDir(), "huge.bundle")
	os.WriteFile(huge, append(bytes.Clone(data), make([]byte, vault.MaxBundleLen)...), 0o600)
	for _, tc := range []struct {
		name, stdin, file, want string
	}{
		{"wrong passphrase", "not the passphrase\n", bundle, "wrong passphrase, or the join bundle is damaged"},
		{"flipped byte", pass + "\n", tampered, "wrong passphrase, or the join bundle is damaged"},
		{"oversized file", pass + "\n", huge, "larger than a join bundle can be"},
		{"no such file", pass + "\n", filepath.Join(t.TempDir(), "none"), "no such file"},
	} {
		r := run(t, tc.stdin, "fleet", "join", "--in", tc.file, "--cn", "10.0.0.2", "--data-dir", dirB)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stdout+r.stderr, pass) {
			t.Errorf("join, %s: %+v; want %q", tc.name, r, tc.want)
		}
		if _, err := os.Stat(dirB); !os.IsNotExist(err) {
			t.Fatalf("join, %s, made the data dir: %v", tc.name, err)
		}
	}

	start := time.Now()
	r = run(t, pass+"\n", "fleet", "join", "--in", bundle, "--cn", "10.0.0.2", "--data-dir", dirB)
	t.Logf("join took %s", time.Since(start))
	if r.code != 0 || !strings.Contains(r.stdout, "Joined fleet "+fleet) || !strings.Contains(r.stdout, "MPS address:       10.0.0.2") ||
		!strings.Contains(r.stdout, "Common name (CN):  10.0.0.2") || !strings.Contains(r.stdout, caA.RootFingerprintSHA256()) ||
		!strings.Contains(r.stdout, string(caA.RootPEM())) || strings.Contains(r.stdout+r.stderr, pass) {
		t.Fatalf("join: %+v", r)
	}
	// A, the inviter, is the backup entry of B's devices' policy, with
	// its own address and CN (the default CIRA port: A saved no settings).
	if _, back, ok := strings.Cut(r.stdout, "second MPS entry (backup)"); !ok || !strings.Contains(back, "MPS address:       "+caA.Address()) ||
		!strings.Contains(back, "Port:              4433") || !strings.Contains(back, "Common name (CN):  "+caA.Address()) {
		t.Fatalf("join's backup entry:\n%s", r.stdout)
	}
	// B links to A from its first start: the bundle named A's peer
	// listener (A was not running: the default port).
	if saved, err := launch.Dir(dirB).Load(); err != nil || !slices.Equal(saved.Peers, []string{net.JoinHostPort(caA.Address(), "16991")}) {
		t.Fatalf("B's saved peers: %q, %v", saved.Peers, err)
	}
	stB := fileStore(t, dirB)
	caB, err := vault.LoadCA(ctx, stB)
	if err != nil {
		t.Fatal(err)
	}
	if !caB.Root().Equal(caA.Root()) || caB.Address() != "10.0.0.2" || caB.Server().Equal(caA.Server()) ||
		caB.Server().CheckSignatureFrom(caA.Root()) != nil || caB.Server().VerifyHostname("10.0.0.2") != nil {
		t.Fatalf("B's CA: root %s, server for %q", caB.RootFingerprintSHA256(), caB.Address())
	}
	accB := vault.NewAccounts(stB)
	for _, a := range []struct{ kind, name, pw string }{{vault.KindCIRA, "dev", ciraPW}, {vault.KindConsole, "alice", consolePW}} {
		if ok, err := accB.Verify(ctx, a.kind, a.name, []byte(a.pw)); !ok || err != nil {
			t.Errorf("the %s password of %q does not verify on B: %v", a.kind, a.name, err)
		}
	}
	if ok, _ := accB.Verify(ctx, vault.KindCIRA, "dev", []byte("another password")); ok {
		t.Error("a wrong CIRA password verifies on B")
	}
	if id, err := vault.FleetID(ctx, stB); err != nil || id != fleet {
		t.Fatalf("B's fleet = %q, %v; want %s", id, err, fleet)
	}

	// A and B are peers: their peer certificates, from the one root,
	// complete a mutual-TLS handshake on loopback.
	caA2, err := vault.LoadCA(ctx, fileStore(t, dirA))
	if err != nil {
		t.Fatal(err)
	}
	peerHandshake(t, caA2, caB)

	// An instance with a root of its own: refused, unchanged, unless
	// --force.
	dirC, caC := fileCA(t)
	before := vaultFiles(t, dirC)
	for _, tc := range []struct {
		name, stdin, file string
		want              []string
	}{
		{"wrong passphrase", "not the passphrase\n", bundle, []string{"wrong passphrase"}},
		{"flipped byte", pass + "\n", tampered, []string{"damaged"}},
		{"another root", pass + "\n", bundle, []string{"different MPS root", caC.RootFingerprintSHA256(), "provisioned again", "--force"}},
	} {
		r := run(t, tc.stdin, "fleet", "join", "--in", tc.file, "--cn", "10.0.0.3", "--data-dir", dirC)
		for _, w := range tc.want {
			if r.code != 1 || !strings.Contains(r.stderr, w) {
				t.Errorf("join over another root, %s: %+v; want %q", tc.name, r, w)
			}
		}
		if !sameFiles(before, vaultFiles(t, dirC)) {
			t.Fatalf("join over another root, %s, changed the vault", tc.name)
		}
	}
	if r := run(t, pass+"\n", "fleet", "join", "--in", bundle, "--cn", "10.0.0.3", "--force", "--data-dir", dirC); r.code != 0 {
		t.Fatalf("join --force: %+v", r)
	}
	if got := run(t, "", "cert", "export-root", "--data-dir", dirC).stdout; got != string(caA.RootPEM()) {
		t.Fatal("join --force kept the old root")
	}
}

// peerHandshake runs a mutual-TLS handshake on 127.0.0.1 between peer
// identities of two instances and checks that each learns the other's id.
func peerHandshake(t *testing.T, a, b *vault.CA) {
	t.Helper()
	pa, err := vault.NewPeerIdentity(a, "instance-a", vault.PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := vault.NewPeerIdentity(b, "instance-b", vault.PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, _ := pa.TLSConfigs()
	_, cliCfg := pb.TLSConfigs()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		id  string
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, srvCfg)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			got <- result{err: err}
			return
		}
		id, err := pa.PeerID(tc.ConnectionState())
		got <- result{id, err}
	}()
	d := tls.Dialer{Config: cliCfg}
	c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial the peer: %v", err)
	}
	defer c.Close()
	if id, err := pb.PeerID(c.(*tls.Conn).ConnectionState()); id != "instance-a" || err != nil {
		t.Errorf("B learnt %q, %v; want instance-a", id, err)
	}
	if r := <-got; r.id != "instance-b" || r.err != nil {
		t.Errorf("A learnt %q, %v; want instance-b", r.id, r.err)
	}
}

func TestFleetUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"fleet"}, "invite, join, status or send-home"},
		{[]string{"fleet", "status", "extra"}, "takes no arguments"},
		{[]string{"fleet", "frobnicate"}, `unknown subcommand "frobnicate"`},
		{[]string{"fleet", "invite", "--data-dir", dir}, "--out FILE is required"},
		{[]string{"fleet", "join", "--in", "x", "--data-dir", dir}, "--cn ADDRESS is required"},
		{[]string{"fleet", "join", "--cn", "10.0.0.2", "--data-dir", dir}, "--in FILE is required"},
	} {
		if r := run(t, "", tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: %+v; want exit 2 and %q", tc.args, r, tc.want)
		}
	}
	// A short passphrase, and no CA to invite to.
	out := filepath.Join(t.TempDir(), "b")
	if r := run(t, "short\n", "fleet", "invite", "--out", out, "--data-dir", dir); r.code != 1 || !strings.Contains(r.stderr, "no MPS certificate yet") {
		t.Errorf("invite without a CA: %+v", r)
	}
	dirA, _ := fileCA(t)
	if r := run(t, "short\n", "fleet", "invite", "--out", out, "--data-dir", dirA); r.code != 1 || !strings.Contains(r.stderr, "passphrase needs at least") {
		t.Errorf("invite with a short passphrase: %+v", r)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed invite wrote %s", out)
	}
	if r := run(t, "", "help"); !strings.Contains(r.stdout, "presence fleet   invite --out F | join --in F --cn ADDRESS") {
		t.Errorf("usage lacks fleet:\n%s", r.stdout)
	}
}
