package enrol_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/amtsim/simenv"
	"github.com/presence-mps/presence/mps/enrol"
	"github.com/presence-mps/presence/mps/wsman"
)

// Integration: a simulated AMT on the LAN (amtsim.LANConfig) enrolled to a
// real server through its LAN WS-Man, then removed through its tunnel.

func simClient(t *testing.T, dial func(ctx context.Context, device string) (net.Conn, error), pass string) *wsman.Client {
	t.Helper()
	c, err := wsman.New(wsman.Config{
		Dial: dial,
		Credentials: func(context.Context, string) (wsman.Credentials, error) {
			return wsman.Credentials{User: simenv.AMTUser, Password: pass}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func lanDial(addr string) func(ctx context.Context, _ string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

func simEnroller(t *testing.T, e *simenv.Env, c *wsman.Client, device string) *enrol.Enroller {
	_, port, _ := net.SplitHostPort(e.Addr)
	p, _ := strconv.Atoi(port)
	return &enrol.Enroller{
		Client: c, Device: device, Root: e.RootDER,
		Primary: enrol.Entry{Address: "127.0.0.1", Port: p, CN: "127.0.0.1"},
		Account: func(context.Context, string) (string, []byte, error) {
			return simenv.CIRAUser, []byte(simenv.CIRAPass), nil
		},
	}
}

func requireNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("opens sockets")
	}
}

func TestSimEnrolAndRemove(t *testing.T) {
	requireNetns(t)
	e := simenv.New(t)
	d, _ := e.LANDevice(0, nil)
	c := simClient(t, lanDial(d.LANAddr()), simenv.AMTPass)
	en := simEnroller(t, e, c, d.LANAddr())
	var steps []enrol.Step
	en.Progress = func(s enrol.Step) { steps = append(steps, s) }
	ctx := simenv.Ctx(t)
	res, err := en.Enrol(ctx)
	if err != nil {
		t.Fatalf("Enrol: %v\nsteps: %+v", err, steps)
	}
	if res.GUID != d.UUID().String() {
		t.Errorf("GUID = %q; want the tunnel's %q", res.GUID, d.UUID())
	}
	e.WaitConnected(d)

	st := d.Enrolment()
	if len(st.Roots) != 1 || string(st.Roots[0]) != string(e.RootDER) {
		t.Errorf("roots = %d; want Presence's only", len(st.Roots))
	}
	_, port, _ := net.SplitHostPort(e.Addr)
	if len(st.MPS) != 1 || st.MPS[0].AccessInfo != "127.0.0.1" || st.MPS[0].InfoFormat != 3 ||
		strconv.Itoa(st.MPS[0].Port) != port || st.MPS[0].CN != "127.0.0.1" || st.MPS[0].Username != simenv.CIRAUser {
		t.Errorf("MPS = %+v", st.MPS)
	}
	if !d.PasswordMatches(st.MPS[0].Name, []byte(simenv.CIRAPass)) {
		t.Error("the SAP does not hold the account's password")
	}
	if len(st.Rules) != 2 {
		t.Fatalf("rules = %+v; want Periodic and User Initiated", st.Rules)
	}
	for _, r := range st.Rules {
		switch r.Trigger {
		case 2:
			if r.TunnelLifeTime != 0 || string(r.ExtendedData) != "\x00\x00\x00\x00\x00\x00\x00\x19" {
				t.Errorf("periodic rule = %+v", r)
			}
		case 0:
			if r.TunnelLifeTime != 300 {
				t.Errorf("user-initiated rule = %+v", r)
			}
		default:
			t.Errorf("rule %+v", r)
		}
		if len(r.Associations) != 1 || r.Associations[0].MpsType != 2 || r.Associations[0].OrderOfAccess != 0 || r.Associations[0].MPS != st.MPS[0].Name {
			t.Errorf("associations of %s = %+v", r.Name, r.Associations)
		}
	}
	if st.UserInitiated != 32771 {
		t.Errorf("UIC = %d", st.UserInitiated)
	}
	if len(st.DetectionStrings) != 1 || !strings.HasSuffix(st.DetectionStrings[0], ".presence.invalid") || st.DetectionStrings[0] != res.DetectionString {
		t.Errorf("detection strings = %q (result %q)", st.DetectionStrings, res.DetectionString)
	}
	if !res.PreviousKnown || len(res.PreviousDetectionStrings) != 0 {
		t.Errorf("previous strings = %q known %v", res.PreviousDetectionStrings, res.PreviousKnown)
	}
	// One write of each kind: nothing rewritten.
	for k, n := range st.Writes {
		want := 1
		if k == "AddRemoteAccessPolicyRule" || k == "PutRemoteAccessPolicyAppliesToMPS" {
			want = 2
		}
		if n != want {
			t.Errorf("writes %s = %d; want %d", k, n, want)
		}
	}
	last := steps[len(steps)-1]
	if last.Name != enrol.StepEnvironment || last.State != enrol.Done {
		t.Errorf("last step = %+v; want environment detection done", last)
	}

	// Removal through the tunnel.
	tc := simClient(t, func(ctx context.Context, device string) (net.Conn, error) {
		return e.Srv.Dial(ctx, device, amtsim.PortWSMan)
	}, simenv.AMTPass)
	lc := simClient(t, lanDial(d.LANAddr()), simenv.AMTPass)
	un := simEnroller(t, e, tc, res.GUID)
	ures, err := un.Unenrol(ctx, enrol.UnenrolOptions{DetectionStrings: res.PreviousDetectionStrings, UserInitiated: res.UserInitiatedBefore,
		Fallback: lc, FallbackDevice: d.LANAddr()})
	if err != nil {
		t.Fatalf("Unenrol: %v", err)
	}
	st = d.Enrolment()
	if len(st.Roots) != 0 || len(st.MPS) != 0 || len(st.Rules) != 0 || len(st.DetectionStrings) != 0 || st.UserInitiated != 32768 {
		t.Errorf("after Unenrol: %+v", st)
	}
	if ures.Steps[2].Name != enrol.StepEnvironment {
		t.Errorf("first step after the reads = %q; want environment detection", ures.Steps[2].Name)
	}
	// The LAN reopens; a second removal there writes nothing.
	writes := st.Writes
	deadline := time.Now().Add(10 * time.Second)
	for !d.Enrolment().LANOpen {
		if time.Now().After(deadline) {
			t.Fatal("the LAN did not reopen")
		}
		time.Sleep(10 * time.Millisecond) // polling the simulator's state, no event to await
	}
	again := simEnroller(t, e, lc, d.LANAddr())
	if _, err := again.Unenrol(ctx, enrol.UnenrolOptions{}); err != nil {
		t.Fatalf("second Unenrol: %v", err)
	}
	st = d.Enrolment()
	for k, n := range st.Writes {
		if writes[k] != n {
			t.Errorf("second Unenrol wrote %s", k)
		}
	}
}

func TestSimFailHalfwayThenFinish(t *testing.T) {
	requireNetns(t)
	e := simenv.New(t)
	d, _ := e.LANDevice(0, func(c *amtsim.Config) { c.LAN.FailAt = "AddRemoteAccessPolicyRule" })
	c := simClient(t, lanDial(d.LANAddr()), simenv.AMTPass)
	en := simEnroller(t, e, c, d.LANAddr())
	_, err := en.Enrol(simenv.Ctx(t))
	var ee *enrol.Error
	if !errors.As(err, &ee) || ee.Step != enrol.StepPeriodic {
		t.Fatalf("Enrol = %v; want an *Error at the periodic rule", err)
	}
	msg := err.Error()
	for _, want := range []string{"root certificate", "Management Presence Server 0", "presence enrol " + d.LANAddr(), "presence unenrol " + d.LANAddr(), "INTERNAL_ERROR"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, simenv.CIRAPass) {
		t.Error("the error holds the CIRA password")
	}
	d.SetFailAt("")
	res, err := en.Enrol(simenv.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	st := d.Enrolment()
	if st.Writes["AddTrustedRootCertificate"] != 1 || st.Writes["AddMpServer"] != 1 || len(st.MPS) != 1 {
		t.Errorf("re-run rewrote the root or the entry: %+v", st.Writes)
	}
	for _, s := range res.Steps {
		if (s.Name == enrol.StepRoot || s.Name == enrol.StepPrimary) && s.State == enrol.Done {
			t.Errorf("re-run step %+v; want skipped", s)
		}
	}
	e.WaitConnected(d)
}

func TestSimBareHTTP400(t *testing.T) {
	requireNetns(t)
	e := simenv.New(t)
	d, _ := e.LANDevice(0, func(c *amtsim.Config) { c.LAN.FailAt = "AddMpServer:bare400" })
	c := simClient(t, lanDial(d.LANAddr()), simenv.AMTPass)
	_, err := simEnroller(t, e, c, d.LANAddr()).Enrol(simenv.Ctx(t))
	var he *wsman.HTTPError
	if !errors.As(err, &he) || he.Status != 400 || !strings.Contains(err.Error(), "HTTP 400 with no body") {
		t.Fatalf("Enrol = %v; want the bare 400 surfaced", err)
	}
}

func TestSimUnprovisioned(t *testing.T) {
	requireNetns(t)
	e := simenv.New(t)
	d, _ := e.LANDevice(0, func(c *amtsim.Config) { c.LAN.PreProvisioning = true })
	c := simClient(t, lanDial(d.LANAddr()), simenv.AMTPass)
	_, err := simEnroller(t, e, c, d.LANAddr()).Enrol(simenv.Ctx(t))
	if !errors.Is(err, enrol.ErrNotProvisioned) || !strings.Contains(err.Error(), "activate it in CCM or ACM first") || !strings.Contains(err.Error(), "Nothing was written") {
		t.Fatalf("Enrol = %v", err)
	}
}

func TestSimPinnedTLS(t *testing.T) {
	requireNetns(t)
	e := simenv.New(t)
	d, _ := e.LANDevice(0, nil)
	cfg, seen := enrol.PinnedTLS(nil)
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		td := tls.Dialer{Config: cfg}
		return td.DialContext(ctx, "tcp", d.LANTLSAddr())
	}
	c := simClient(t, dial, simenv.AMTPass)
	if _, err := simEnroller(t, e, c, d.LANTLSAddr()).Enrol(simenv.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(d.LANCertificate().Raw)
	if !slices.Equal(seen(), sum[:]) {
		t.Fatalf("seen = %x; want %x", seen(), sum)
	}
	e.WaitConnected(d)

	// Another device's certificate under that pin is refused.
	d2, _ := e.LANDevice(1, nil)
	cfg2, _ := enrol.PinnedTLS(sum[:])
	td := tls.Dialer{Config: cfg2}
	_, err := td.DialContext(simenv.Ctx(t), "tcp", d2.LANTLSAddr())
	other := sha256.Sum256(d2.LANCertificate().Raw)
	if err == nil || !strings.Contains(err.Error(), enrol.Fingerprint(d2.LANCertificate().Raw)) || !strings.Contains(err.Error(), enrol.Fingerprint(d.LANCertificate().Raw)) {
		t.Fatalf("dial with another pin = %v; want a refusal naming %x and %x", err, other, sum)
	}
}
