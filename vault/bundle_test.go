package vault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

const bundlePass = "a fleet passphrase"

// ciraBytes is a CIRA password that is not UTF-8, which must survive the
// bundle's JSON.
const ciraBytes = "cira-pw\x00\xff\xfe"

// fleetSource is an instance with a CA, a CIRA, a console and an AMT
// account.
func fleetSource(t *testing.T) (vault.Store, *vault.CA) {
	t.Helper()
	st, ca := newCA(t, "a.example.test", nil)
	acc := vault.NewAccounts(st)
	for _, a := range []struct{ kind, name, pw string }{
		{vault.KindCIRA, "dev", ciraBytes},
		{vault.KindConsole, "alice", "console pw"},
		{vault.KindConsole, "bob", "bob's pw"},
		{vault.KindAMT, "admin", "amt pw"},
	} {
		if err := acc.Add(t.Context(), a.kind, a.name, vault.Secret(a.pw)); err != nil {
			t.Fatal(err)
		}
	}
	return st, ca
}

func TestBundleInviteJoin(t *testing.T) {
	ctx := t.Context()
	src, ca := fleetSource(t)
	if _, err := vault.FleetID(ctx, src); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("FleetID before any invite = %v; want ErrNotFound", err)
	}
	b, err := vault.Invite(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	id := b.FleetID()
	if stored, err := vault.FleetID(ctx, src); err != nil || stored != id || len(id) != 32 {
		t.Fatalf("FleetID after invite = %q, %v; want the bundle's %q (32 hex digits)", stored, err, id)
	}
	if again, err := vault.Invite(ctx, src); err != nil || again.FleetID() != id {
		t.Fatalf("second invite: fleet %q, %v; want %q", again.FleetID(), err, id)
	}
	if got := b.AccountNames(vault.KindCIRA); !slices.Equal(got, []string{"dev"}) {
		t.Errorf("CIRA accounts = %q", got)
	}
	if got := b.AccountNames(vault.KindConsole); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("console accounts = %q", got)
	}
	if got := b.AccountNames(vault.KindAMT); got != nil {
		t.Errorf("AMT accounts = %q; want none: they stay behind", got)
	}

	if _, err := b.Seal("short"); err == nil {
		t.Error("Seal accepted a short passphrase")
	}
	sealed, err := b.Seal(bundlePass)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{ciraBytes, "console pw", bundlePass} {
		if bytes.Contains(sealed, []byte(secret)) {
			t.Errorf("the sealed bundle holds %q in the clear", secret)
		}
	}
	if bytes.Contains(sealed, ca.Root().Raw[:64]) || !bytes.Contains(sealed, []byte("Fleet-ID: "+id)) ||
		!bytes.Contains(sealed, []byte("Root-SHA256: "+ca.RootFingerprintSHA256())) {
		t.Fatalf("sealed bundle:\n%s", sealed)
	}

	opened, err := vault.OpenBundle(sealed, bundlePass)
	if err != nil {
		t.Fatal(err)
	}
	if opened.FleetID() != id || !opened.Root().Equal(ca.Root()) || opened.RootFingerprintSHA256() != ca.RootFingerprintSHA256() ||
		!slices.Equal(opened.AccountNames(vault.KindConsole), []string{"alice", "bob"}) {
		t.Fatalf("opened %v; want the invite's %v", opened, b)
	}
	if opened.Inviter() != "" {
		t.Fatalf("a bundle that names no inviter opened with %q", opened.Inviter())
	}
	if _, err := b.WithInviter("a.example.test"); err == nil {
		t.Fatal("WithInviter took an address without a port")
	}
	named, err := b.WithInviter("a.example.test:4433")
	if err != nil || b.Inviter() != "" {
		t.Fatalf("WithInviter: %v; the original now names %q", err, b.Inviter())
	}
	if named, err = named.WithInviterPeer("a.example.test:16991"); err != nil {
		t.Fatal(err)
	}
	sealedNamed, err := named.Seal(bundlePass)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := vault.OpenBundle(sealedNamed, bundlePass); err != nil || o.Inviter() != "a.example.test:4433" || o.InviterPeer() != "a.example.test:16991" {
		t.Fatalf("the inviter after a round trip: %v, %v", o, err)
	}

	dst := vault.NewMemory(vault.ItemLimit)
	now := time.Now()
	joined, err := opened.Join(ctx, dst, vault.JoinOptions{Address: "b.example.test", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := vault.LoadCA(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*vault.CA{joined, loaded} {
		if !c.Root().Equal(ca.Root()) || c.Address() != "b.example.test" || c.Server().Equal(ca.Server()) ||
			c.Server().CheckSignatureFrom(ca.Root()) != nil || c.Server().VerifyHostname("b.example.test") != nil {
			t.Fatalf("joined CA: root %s, server for %q", c.RootFingerprintSHA256(), c.Address())
		}
		if ps := c.Doctor("b.example.test", now); len(ps) != 0 {
			t.Errorf("Doctor after join: %v", ps)
		}
	}
	acc := vault.NewAccounts(dst)
	verify(t, acc, vault.KindCIRA, "dev", ciraBytes, true)
	verify(t, acc, vault.KindConsole, "alice", "console pw", true)
	verify(t, acc, vault.KindConsole, "bob", "bob's pw", true)
	verify(t, acc, vault.KindAMT, "admin", "amt pw", false)
	if got, err := vault.FleetID(ctx, dst); err != nil || got != id {
		t.Fatalf("FleetID after join = %q, %v; want %q", got, err, id)
	}
	// The joined instance invites in the same fleet.
	if b2, err := vault.Invite(ctx, dst); err != nil || b2.FleetID() != id || !b2.Root().Equal(ca.Root()) {
		t.Fatalf("invite from the joined instance: %v, %v", b2, err)
	}

	// Joining the same fleet again is allowed, keeps the instance's own
	// accounts and replaces the fleet's.
	if err := acc.Add(ctx, vault.KindConsole, "local", "local pw"); err != nil {
		t.Fatal(err)
	}
	if err := acc.Add(ctx, vault.KindConsole, "alice", "changed here"); err != nil {
		t.Fatal(err)
	}
	if _, err := opened.Join(ctx, dst, vault.JoinOptions{Address: "10.1.2.3"}); err != nil {
		t.Fatalf("join again: %v", err)
	}
	verify(t, acc, vault.KindConsole, "local", "local pw", true)
	verify(t, acc, vault.KindConsole, "alice", "console pw", true)
}

func TestBundleOpenRefusals(t *testing.T) {
	src, _ := fleetSource(t)
	b, err := vault.Invite(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := b.Seal(bundlePass)
	if err != nil {
		t.Fatal(err)
	}
	// A byte of the ciphertext: the middle of the PEM body, changed to
	// another base64 character.
	body := bytes.Index(sealed, []byte("\n\n")) + 2
	flipped := bytes.Clone(sealed)
	mid := body + (len(sealed)-body)/2
	if flipped[mid] == 'A' {
		flipped[mid] = 'B'
	} else {
		flipped[mid] = 'A'
	}
	cases := []struct {
		name, pass string
		data       []byte
	}{
		{"wrong passphrase", "not the passphrase", sealed},
		{"empty passphrase", "", sealed},
		{"flipped ciphertext byte", bundlePass, flipped},
		{"truncated", bundlePass, sealed[:len(sealed)/2]},
		{"another fleet id in the header", bundlePass, bytes.Replace(sealed, []byte("Fleet-ID: "), []byte("Fleet-ID: 0"), 1)},
		{"another root in the header", bundlePass, bytes.Replace(sealed, []byte("Root-SHA256: "), []byte("Root-SHA256: 00:"), 1)},
		{"another salt", bundlePass, bytes.Replace(sealed, []byte("Salt: "), []byte("Salt: 00"), 1)},
		{"huge KDF cost", bundlePass, bytes.Replace(sealed, []byte("N=32768"), []byte("N=1073741824"), 1)},
		{"unknown version", bundlePass, bytes.Replace(sealed, []byte("Version: 1"), []byte("Version: 2"), 1)},
		{"a CA backup, not a bundle", bundlePass, bytes.ReplaceAll(sealed, []byte("PRESENCE JOIN BUNDLE"), []byte("PRESENCE CA BACKUP"))},
		{"empty", bundlePass, nil},
		{"not PEM", bundlePass, []byte("hello")},
		{"too large", bundlePass, append(bytes.Clone(sealed), make([]byte, vault.MaxBundleLen)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := vault.OpenBundle(tc.data, tc.pass)
			if !errors.Is(err, vault.ErrBadBundle) {
				t.Fatalf("OpenBundle = %v; want ErrBadBundle", err)
			}
			if strings.Contains(err.Error(), bundlePass) {
				t.Fatalf("the error %q holds the passphrase", err)
			}
		})
	}
}

// A bundle whose maker knows the passphrase is still hostile input: its
// contents are checked before anything is stored.
func TestBundleContentsChecked(t *testing.T) {
	src, ca := fleetSource(t)
	_, srvKeyDER := caKeysDER(t, src)
	good := func() map[string]any {
		rootKey, _ := caKeysDER(t, src)
		return map[string]any{
			"fleet": "0123456789abcdef0123456789abcdef", "root_cert": ca.Root().Raw, "root_key": rootKey,
			"accounts": []map[string]any{{"kind": "cira", "name": "dev", "password": []byte("pw")}},
		}
	}
	encode := func(m map[string]any) []byte {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := vault.ParseBundleForTest(encode(good())); err != nil {
		t.Fatalf("good contents: %v", err)
	}
	many := make([]map[string]any, 1001)
	for i := range many {
		many[i] = map[string]any{"kind": "console", "name": fmt.Sprintf("u%d", i), "password": []byte("pw")}
	}
	cases := []struct {
		name string
		mod  func(m map[string]any)
	}{
		{"short fleet id", func(m map[string]any) { m["fleet"] = "0123" }},
		{"an inviter without a port", func(m map[string]any) { m["inviter"] = "a.example.test" }},
		{"an inviter's peer with port 0", func(m map[string]any) { m["inviter_peer"] = "a.example.test:0" }},
		{"an inviter with a newline", func(m map[string]any) { m["inviter"] = "a.example\n.test:4433" }},
		{"upper-case fleet id", func(m map[string]any) { m["fleet"] = "0123456789ABCDEF0123456789ABCDEF" }},
		{"no root", func(m map[string]any) { delete(m, "root_cert") }},
		{"the server certificate as root", func(m map[string]any) { m["root_cert"] = ca.Server().Raw }},
		{"another key", func(m map[string]any) { m["root_key"] = srvKeyDER }},
		{"an ECDSA key", func(m map[string]any) { m["root_key"] = ecdsaPKCS8(t) }},
		{"a root larger than an item", func(m map[string]any) { m["root_cert"] = make([]byte, vault.ItemLimit+1) }},
		{"an AMT account", func(m map[string]any) {
			m["accounts"] = []map[string]any{{"kind": "amt", "name": "admin", "password": []byte("pw")}}
		}},
		{"a bad account name", func(m map[string]any) {
			m["accounts"] = []map[string]any{{"kind": "cira", "name": "../x", "password": []byte("pw")}}
		}},
		{"an empty password", func(m map[string]any) {
			m["accounts"] = []map[string]any{{"kind": "cira", "name": "dev", "password": []byte{}}}
		}},
		{"a long password", func(m map[string]any) {
			m["accounts"] = []map[string]any{{"kind": "cira", "name": "dev", "password": make([]byte, vault.MaxPasswordLen+1)}}
		}},
		{"an account twice", func(m map[string]any) {
			a := map[string]any{"kind": "cira", "name": "dev", "password": []byte("pw")}
			m["accounts"] = []map[string]any{a, a}
		}},
		{"too many accounts", func(m map[string]any) { m["accounts"] = many }},
		{"accounts not a list", func(m map[string]any) { m["accounts"] = "all of them" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := good()
			tc.mod(m)
			if err := vault.ParseBundleForTest(encode(m)); !errors.Is(err, vault.ErrBadBundle) {
				t.Fatalf("contents with %s: %v; want ErrBadBundle", tc.name, err)
			}
		})
	}
	for _, plain := range []string{"", "null", "[]", "{", `{"fleet":1}`} {
		if err := vault.ParseBundleForTest([]byte(plain)); !errors.Is(err, vault.ErrBadBundle) {
			t.Errorf("contents %q: %v; want ErrBadBundle", plain, err)
		}
	}

	// Headers that do not match the contents are refused too.
	sealed, err := vault.SealBundleForTest(encode(good()), bundlePass, ca.RootFingerprintSHA256(), "ffffffffffffffffffffffffffffffff")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.OpenBundle(sealed, bundlePass); !errors.Is(err, vault.ErrBadBundle) || !strings.Contains(err.Error(), "headers do not match") {
		t.Fatalf("mismatched headers: %v", err)
	}
}

// caKeysDER returns the PKCS#8 root and server keys of the CA in s.
func caKeysDER(t *testing.T, s vault.Store) (root, server []byte) {
	t.Helper()
	root, err := s.Get(t.Context(), "ca/root.key")
	if err != nil {
		t.Fatal(err)
	}
	server, err = s.Get(t.Context(), "ca/server.key")
	if err != nil {
		t.Fatal(err)
	}
	return root, server
}

func TestBundleJoinRefusals(t *testing.T) {
	ctx := t.Context()
	src, ca := fleetSource(t)
	b, err := vault.Invite(ctx, src)
	if err != nil {
		t.Fatal(err)
	}

	// An instance with another root: refused, unchanged; joined with Force.
	other, otherCA := newCA(t, "b.example.test", nil)
	before := snapshot(t, other)
	for _, addr := range []string{"", "b.example.test:4433", "https://b.example.test"} {
		if _, err := b.Join(ctx, other, vault.JoinOptions{Address: addr}); err == nil || !strings.Contains(err.Error(), "invalid MPS address") {
			t.Errorf("join with address %q: %v", addr, err)
		}
	}
	_, err = b.Join(ctx, other, vault.JoinOptions{Address: "b.example.test"})
	if !errors.Is(err, vault.ErrRootExists) || !strings.Contains(err.Error(), otherCA.RootFingerprintSHA256()) ||
		!strings.Contains(err.Error(), "provisioned again") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("join over another root: %v", err)
	}
	if !sameSnapshot(before, snapshot(t, other)) {
		t.Fatal("a refused join changed the store")
	}
	if _, err := b.Join(ctx, other, vault.JoinOptions{Address: "b.example.test", Force: true}); err != nil {
		t.Fatalf("forced join: %v", err)
	}
	if got, err := vault.LoadCA(ctx, other); err != nil || !got.Root().Equal(ca.Root()) {
		t.Fatalf("after a forced join: %v", err)
	}

	// Another fleet under the same root (an instance restored from a CA
	// backup that then invited on its own): refused, unchanged; Force moves
	// it.
	twin := vault.NewMemory(vault.ItemLimit)
	for _, k := range caItems {
		v, err := src.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := twin.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := vault.Invite(ctx, twin)
	if err != nil || tb.FleetID() == b.FleetID() {
		t.Fatalf("twin invite: %v, fleet %s", err, tb.FleetID())
	}
	joined := vault.NewMemory(vault.ItemLimit)
	if _, err := b.Join(ctx, joined, vault.JoinOptions{Address: "c.example.test"}); err != nil {
		t.Fatal(err)
	}
	before = snapshot(t, joined)
	if _, err := tb.Join(ctx, joined, vault.JoinOptions{Address: "c.example.test"}); !errors.Is(err, vault.ErrOtherFleet) || !strings.Contains(err.Error(), b.FleetID()) {
		t.Fatalf("join of another fleet: %v", err)
	}
	if !sameSnapshot(before, snapshot(t, joined)) {
		t.Fatal("a refused join changed the store")
	}
	if _, err := tb.Join(ctx, joined, vault.JoinOptions{Address: "c.example.test", Force: true}); err != nil {
		t.Fatal(err)
	}
	if id, _ := vault.FleetID(ctx, joined); id != tb.FleetID() {
		t.Fatalf("fleet after a forced join = %s; want %s", id, tb.FleetID())
	}

	// No CA: nothing to invite to.
	if _, err := vault.Invite(ctx, vault.NewMemory(vault.ItemLimit)); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("invite without a CA: %v", err)
	}
	// A damaged fleet id is reported, not replaced.
	if err := joined.Set(ctx, "fleet/id", []byte("nonsense")); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.Invite(ctx, joined); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("invite with a damaged fleet id: %v", err)
	}
}

// A Bundle holds the root key and passwords; no verb of fmt and no slog
// handler prints them.
func TestBundleDoesNotPrintSecrets(t *testing.T) {
	src, _ := fleetSource(t)
	b, err := vault.Invite(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	desc := b.String()
	if !strings.Contains(desc, b.FleetID()) || !strings.Contains(desc, "1 CIRA and 2 console accounts") {
		t.Fatalf("String = %q", desc)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%X", "%10v", "%-s"} {
		for _, arg := range []any{b, *b} {
			got := fmt.Sprintf(verb, arg)
			if !strings.HasSuffix(got, desc) {
				t.Errorf("Sprintf(%q, %T) = %q; want the description", verb, arg, got)
			}
		}
	}
	if got := fmt.Sprintf("%q", b); got != fmt.Sprintf("%q", desc) {
		t.Errorf("%%q = %s", got)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("joining", "bundle", b)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("joining", "bundle", *b)
	if strings.Count(buf.String(), b.FleetID()) != 2 || strings.Contains(buf.String(), "pw") {
		t.Fatalf("slog wrote %s", buf.String())
	}
}

// FuzzBundleContents: whatever a bundle decrypts to, checking it never
// panics.
func FuzzBundleContents(f *testing.F) {
	st := vault.NewMemory(vault.ItemLimit)
	rootKey, serverKey := vaulttest.Keys(f)
	ca, err := vault.InitCA(context.Background(), st, vault.CAOptions{Address: "a.example.test", RootKey: rootKey, ServerKey: serverKey})
	if err != nil {
		f.Fatal(err)
	}
	keyDER, err := st.Get(context.Background(), "ca/root.key")
	if err != nil {
		f.Fatal(err)
	}
	good, err := json.Marshal(map[string]any{
		"fleet": "0123456789abcdef0123456789abcdef", "root_cert": ca.Root().Raw, "root_key": keyDER,
		"accounts": []map[string]any{{"kind": "cira", "name": "dev", "password": []byte("pw")}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"fleet":"0123456789abcdef0123456789abcdef","accounts":[{"kind":"cira","name":"dev","password":"cHc="}]}`))
	f.Add([]byte(`{"root_cert":"MA==","root_key":"MA=="}`))
	f.Add([]byte(`{"accounts":[{},{}]}`))
	f.Fuzz(func(t *testing.T, plain []byte) {
		vault.ParseBundleForTest(plain) // must not panic; refusals are tested above
	})
}
