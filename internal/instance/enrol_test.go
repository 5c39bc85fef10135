package instance_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/api"
	mpsenrol "github.com/presence-mps/presence/mps/enrol"
	"github.com/presence-mps/presence/vault"
)

// lanDevice starts simulated device i of the test as an unconfigured AMT
// on the LAN (plain and TLS WS-Man on loopback), with the AMT password
// amtPW, until the test ends.
func lanDevice(t *testing.T, i int, amtPW string, mod func(*amtsim.Config)) *amtsim.Device {
	t.Helper()
	cfg := amtsim.Config{
		UUID: amtsim.DeviceUUID(t.Name(), i), Hostname: amtsim.DeviceHostname(i),
		AMTPassword: []byte(amtPW),
		LAN:         &amtsim.LANConfig{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", Interval: 50 * time.Millisecond},
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := amtsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// steps records the steps an enrolment reports.
type steps struct {
	mu  sync.Mutex
	all []api.EnrolStep
}

func (s *steps) add(st api.EnrolStep) { s.mu.Lock(); s.all = append(s.all, st); s.mu.Unlock() }

func (s *steps) states(step string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, st := range s.all {
		if st.Step == step {
			out = append(out, st.State)
		}
	}
	return out
}

func enrol(t *testing.T, in *instance.Instance, req api.EnrolRequest) (api.EnrolResult, *steps, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var s steps
	res, err := in.Enrol(ctx, req, s.add)
	return res, &s, err
}

// TestEnrolEndToEnd enrols unconfigured simulated devices over the LAN,
// plain and over TLS pinned on first use, into a real instance: each opens
// its tunnel with the CIRA account Presence made for it, is then managed
// over the tunnel with the AMT account kept, a second run writes nothing,
// and unenrol (through the tunnel) removes every entry enrol wrote.
func TestEnrolEndToEnd(t *testing.T) {
	in, ca := instancetest.Start(t, nil)
	const amtPW = "Lan-Amt-P@ss1"
	plain := lanDevice(t, 0, amtPW, nil)
	overTLS := lanDevice(t, 1, amtPW, nil)

	res, st, err := enrol(t, in, api.EnrolRequest{Address: plain.LANAddr(), User: "admin", Password: amtPW})
	if err != nil {
		t.Fatalf("enrol: %v (steps %+v)", err, st.all)
	}
	guid := plain.UUID().String()
	if res.GUID != guid || !res.Connected {
		t.Fatalf("result %+v; want GUID %s connected", res, guid)
	}
	if _, ok := in.Server.Device(guid); !ok {
		t.Fatal("the enrolled device has no tunnel")
	}
	e := plain.Enrolment()
	if len(e.MPS) != 1 || e.MPS[0].CN != "127.0.0.1" || e.MPS[0].AccessInfo != "127.0.0.1" || e.MPS[0].InfoFormat != 3 ||
		e.MPS[0].Port != port(t, in.Listening().CIRA.String()) {
		t.Errorf("MPS entries %+v; want this instance's", e.MPS)
	}
	if len(e.Roots) != 1 || string(e.Roots[0]) != string(ca.Root().Raw) {
		t.Errorf("%d trusted roots; want this instance's root", len(e.Roots))
	}
	if e.LANOpen || !e.Outside {
		t.Errorf("after enrolment: LAN open %v, outside %v; want the LAN closed", e.LANOpen, e.Outside)
	}
	// The device's CIRA account is in the vault (its password only there
	// and in AMT), and AMT's account came along for the tunnel.
	user := e.MPS[0].Username
	pw, err := in.Accounts().Password(context.Background(), vault.KindCIRA, user)
	if err != nil || !plain.PasswordMatches(e.MPS[0].Name, []byte(pw.Reveal())) {
		t.Fatalf("CIRA account %q: %v; want the password AMT was given", user, err)
	}
	if len(user) > 16 || len(pw.Reveal()) < 8 || len(pw.Reveal()) > 16 {
		t.Errorf("CIRA account %q with a %d-character password; AMT wants ≤ 16 and 8–16", user, len(pw.Reveal()))
	}
	if name, apw, err := in.Accounts().AMTFor(context.Background(), guid); err != nil || name != "admin" ||
		(apw.Reveal() != amtPW && apw.Reveal() != instancetest.AMTPass) {
		t.Errorf("AMT account for %s: %q, %v", guid, name, err)
	}
	for _, s := range []string{mpsenrol.StepRoot, mpsenrol.StepPrimary, mpsenrol.StepEnvironment, "tunnel"} {
		if !slices.Contains(st.states(s), "done") {
			t.Errorf("step %s: %v; want done", s, st.states(s))
		}
	}

	// Over TLS, the certificate is pinned on first use and reported.
	res2, _, err := enrol(t, in, api.EnrolRequest{Address: overTLS.LANTLSAddr(), Password: amtPW, TLS: true})
	if err != nil || !res2.Connected {
		t.Fatalf("enrol over TLS: %+v, %v", res2, err)
	}
	sum := sha256.Sum256(overTLS.LANCertificate().Raw)
	if res2.Certificate != hex.EncodeToString(sum[:]) {
		t.Errorf("certificate %q; want %x", res2.Certificate, sum)
	}

	// A second run writes nothing: the device is connected, so it goes
	// through the tunnel, and every entry already holds.
	writes := plain.Enrolment().Writes
	again, _, err := enrol(t, in, api.EnrolRequest{Address: plain.LANAddr(), Password: amtPW})
	if err != nil || !again.Connected {
		t.Fatalf("enrol again: %+v, %v", again, err)
	}
	if after := plain.Enrolment(); !mapsEqual(after.Writes, writes) || len(after.MPS) != 1 || len(after.Rules) != len(e.Rules) {
		t.Errorf("a second enrolment wrote %v (before %v), %d entries, %d rules", after.Writes, writes, len(after.MPS), len(after.Rules))
	}

	// Unenrol by the address it was enrolled from: through the tunnel.
	un, _, err := unenrol(t, in, api.EnrolRequest{Address: plain.LANAddr(), Password: amtPW})
	if err != nil {
		t.Fatalf("unenrol: %v", err)
	}
	if !un.Connected {
		t.Errorf("unenrol went over the LAN; want the tunnel")
	}
	if e := plain.Enrolment(); len(e.MPS) != 0 || len(e.Rules) != 0 || len(e.Roots) != 0 || len(e.DetectionStrings) != 0 || !e.LANOpen {
		t.Errorf("after unenrol: %d entries, %d rules, %d roots, detection %v, LAN open %v; want none and the LAN open",
			len(e.MPS), len(e.Rules), len(e.Roots), e.DetectionStrings, e.LANOpen)
	}
	// Unenrol again: harmless, over the LAN now.
	if _, _, err := unenrol(t, in, api.EnrolRequest{Address: plain.LANAddr(), Password: amtPW}); err != nil {
		t.Errorf("unenrol again: %v", err)
	}
}

func unenrol(t *testing.T, in *instance.Instance, req api.EnrolRequest) (api.EnrolResult, *steps, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var s steps
	res, err := in.Unenrol(ctx, req, s.add)
	return res, &s, err
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestEnrolRefusals: a wrong AMT password fails at once with one failed
// login on the device, an unprovisioned device is refused with a sentence,
// and a device that fails halfway says what was written and how to finish
// or undo it.
func TestEnrolRefusals(t *testing.T) {
	in, _ := instancetest.Start(t, nil)
	const amtPW = "Lan-Amt-P@ss1"
	d := lanDevice(t, 0, amtPW, nil)
	_, _, err := enrol(t, in, api.EnrolRequest{Address: d.LANAddr(), Password: "Wrong-P@ss1"})
	if err == nil || strings.Contains(err.Error(), "Wrong-P@ss1") {
		t.Fatalf("wrong AMT password: %v", err)
	}
	if e := d.Enrolment(); len(e.MPS) != 0 || len(e.Roots) != 0 {
		t.Errorf("a refused login wrote %+v", e)
	}
	pre := lanDevice(t, 1, amtPW, func(c *amtsim.Config) { c.LAN.PreProvisioning = true })
	if _, _, err := enrol(t, in, api.EnrolRequest{Address: pre.LANAddr(), Password: amtPW}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "provision") {
		t.Errorf("unprovisioned: %v; want a sentence about provisioning", err)
	}
	half := lanDevice(t, 2, amtPW, func(c *amtsim.Config) { c.LAN.FailAt = "AddRemoteAccessPolicyRule" })
	_, _, err = enrol(t, in, api.EnrolRequest{Address: half.LANAddr(), Password: amtPW})
	if err == nil || !strings.Contains(err.Error(), "unenrol") || !strings.Contains(err.Error(), "enrol") {
		t.Errorf("failing halfway: %v; want what was written and how to finish or undo", err)
	}
	// Undo works on the half-configured device.
	if _, _, err := unenrol(t, in, api.EnrolRequest{Address: half.LANAddr(), Password: amtPW}); err != nil {
		t.Errorf("unenrol after a failure halfway: %v", err)
	}
	if e := half.Enrolment(); len(e.MPS) != 0 || len(e.Roots) != 0 {
		t.Errorf("after unenrol: %+v", e)
	}
}

func port(t *testing.T, addr string) int {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	n := 0
	for _, c := range addr[i+1:] {
		n = n*10 + int(c-'0')
	}
	return n
}
