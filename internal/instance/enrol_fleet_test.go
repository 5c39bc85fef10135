package instance_test

import (
	"context"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presence-mps/presence/internal/instance"
	"github.com/presence-mps/presence/internal/instance/instancetest"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/fleet/fleettest"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
	"github.com/presence-mps/presence/vault/vaulttest"
)

// TestEnrolWithFleetPeer enrols an unconfigured simulated device through
// instance A of a two-instance fleet (one MPS root, as a fleet has): the
// device is given both entries, A's first, in both rules, and its tunnel
// comes up on A. The CIRA account Presence made for it reaches B over the
// peer link; when A stops, the device, going down its entries as AMT
// does, comes up on B with that account.
func TestEnrolWithFleetPeer(t *testing.T) {
	root := fleettest.NewRoot(t, "fleet")
	ca := vaulttest.CA(t, "127.0.0.1")
	start := func(id string, peers ...string) *instance.Instance {
		in, _ := startPeerWith(t, root, id, func(c *instance.Config) {
			c.CA = ca
			c.Fleet.Name = "127.0.0.1" // as presence serve names it: its certificate's CN
		}, peers...)
		return in
	}
	b := start("inst-b")
	a := start("inst-a", b.PeerAddr.String())
	waitUntil(t, "A's link to B", func() bool {
		for _, l := range a.Fleet().Links() {
			if l.Up && l.Member.CIRAAddr != "" {
				return true
			}
		}
		return false
	})

	const amtPW = "Lan-Amt-P@ss1"
	d := lanDevice(t, 0, amtPW, nil)
	res, st, err := enrol(t, a, api.EnrolRequest{Address: d.LANAddr(), User: "admin", Password: amtPW})
	if err != nil || !res.Connected {
		t.Fatalf("enrol through A: %+v, %v (steps %+v)", res, err, st.all)
	}
	if !slices.Contains(st.states("backup-mps"), "done") {
		t.Errorf("backup step: %v; want done", st.states("backup-mps"))
	}
	guid := d.UUID().String()
	portA, portB := port(t, a.Listening().CIRA.String()), port(t, b.Listening().CIRA.String())
	e := d.Enrolment()
	if len(e.MPS) != 2 || e.MPS[0].Port != portA || e.MPS[1].Port != portB || e.MPS[1].AccessInfo != "127.0.0.1" ||
		e.MPS[1].CN != "127.0.0.1" || e.MPS[0].Username != e.MPS[1].Username {
		t.Fatalf("MPS entries %+v; want A's (port %d) then B's (port %d), one CIRA account", e.MPS, portA, portB)
	}
	for _, trig := range []int{0, 2} { // user-initiated and periodic
		i := slices.IndexFunc(e.Rules, func(r amtsim.EnrolRule) bool { return r.Trigger == trig })
		if i < 0 {
			t.Fatalf("no rule with trigger %d: %+v", trig, e.Rules)
		}
		r := e.Rules[i]
		if !slices.Equal(r.MPS, []string{e.MPS[0].Name, e.MPS[1].Name}) {
			t.Errorf("rule %s names %v; want primary then backup", r.Name, r.MPS)
		}
		for _, as := range r.Associations {
			want := slices.Index(r.MPS, as.MPS)
			if as.OrderOfAccess != want {
				t.Errorf("rule %s: %s has OrderOfAccess %d; want %d", r.Name, as.MPS, as.OrderOfAccess, want)
			}
		}
	}
	if _, ok := a.Server.Device(guid); !ok {
		t.Fatal("the device is not on A")
	}
	user := e.MPS[0].Username
	waitUntil(t, "the device's CIRA account to reach B", func() bool {
		pw, err := b.Accounts().Password(context.Background(), vault.KindCIRA, user)
		return err == nil && d.PasswordMatches(e.MPS[1].Name, []byte(pw.Reveal()))
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if dev, ok := b.Server.Device(guid); ok {
			if dev.Info.User != user {
				t.Errorf("the device came up on B as %q; want %q", dev.Info.User, user)
			}
			break
		}
		if time.Now().After(deadline) {
			rep, _ := b.DoctorReport(time.Time{}, "")
			t.Fatalf("the device did not come up on B within 30 s of A stopping: device %+v, entries %+v, B's doctor %+v", d.Stats(), e.MPS, rep)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEnrolKeepsOtherMPS: a device that already has another MPS's entry,
// with an Alert rule naming it, keeps both through enrolment and
// unenrolment; another MPS's Periodic rule refuses enrolment before any
// write, and --replace (Replace) takes it away.
func TestEnrolKeepsOtherMPS(t *testing.T) {
	in, _ := instancetest.Start(t, nil)
	const amtPW = "Lan-Amt-P@ss1"
	other := func(d *amtsim.Device, trigger int) string {
		t.Helper()
		c, err := wsman.New(wsman.Config{
			Dial: func(ctx context.Context, addr string) (net.Conn, error) {
				var nd net.Dialer
				return nd.DialContext(ctx, "tcp", addr)
			},
			Credentials: func(context.Context, string) (wsman.Credentials, error) {
				return wsman.Credentials{User: "admin", Password: amtPW}, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var sap string
		err = c.Do(context.Background(), d.LANAddr(), func(ctx context.Context, s *wsman.Session) error {
			var err error
			sap, err = s.AddMpServer(ctx, wsman.MPServerEntry{AccessInfo: "rps.example", InfoFormat: wsman.InfoFormatFQDN,
				Port: 4433, CN: "rps.example", Username: "other", Password: []byte("Other-P@ss1")})
			if err != nil {
				return err
			}
			_, err = s.AddRemoteAccessPolicyRule(ctx, wsman.PolicyRuleSpec{Trigger: trigger, ExtendedData: wsman.PeriodicInterval(60),
				MpServers: []string{sap}})
			return err
		})
		if err != nil {
			t.Fatalf("writing the other MPS: %v", err)
		}
		return sap
	}
	hasOther := func(d *amtsim.Device, sap string, trigger int) bool {
		e := d.Enrolment()
		i := slices.IndexFunc(e.MPS, func(m amtsim.EnrolMPS) bool { return m.Name == sap && m.AccessInfo == "rps.example" })
		j := slices.IndexFunc(e.Rules, func(r amtsim.EnrolRule) bool {
			return r.Trigger == trigger && slices.Equal(r.MPS, []string{sap})
		})
		return i >= 0 && j >= 0
	}

	// An Alert rule of another MPS: kept, with its entry, both ways.
	kept := lanDevice(t, 0, amtPW, nil)
	sap := other(kept, wsman.TriggerAlert)
	res, st, err := enrol(t, in, api.EnrolRequest{Address: kept.LANAddr(), Password: amtPW})
	if err != nil || !res.Connected {
		t.Fatalf("enrol: %+v, %v (steps %+v)", res, err, st.all)
	}
	if e := kept.Enrolment(); len(e.MPS) != 2 || !hasOther(kept, sap, wsman.TriggerAlert) {
		t.Fatalf("after enrolment: MPS %+v rules %+v; want the other MPS and its Alert rule kept beside ours", e.MPS, e.Rules)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := in.Unenrol(ctx, api.EnrolRequest{Address: kept.LANAddr(), Password: amtPW}, nil); err != nil {
		t.Fatalf("unenrol: %v", err)
	}
	if e := kept.Enrolment(); len(e.MPS) != 1 || !hasOther(kept, sap, wsman.TriggerAlert) {
		t.Fatalf("after unenrolment: MPS %+v rules %+v; want only the other MPS and its rule", e.MPS, e.Rules)
	}

	// A Periodic rule of another MPS: refused, nothing written; then
	// replaced when asked.
	taken := lanDevice(t, 1, amtPW, nil)
	sap = other(taken, wsman.TriggerPeriodic)
	before := taken.Enrolment().Writes
	_, _, err = enrol(t, in, api.EnrolRequest{Address: taken.LANAddr(), Password: amtPW})
	if err == nil || !strings.Contains(err.Error(), "rps.example") || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("enrol over another MPS's Periodic rule: %v; want a refusal naming it and --replace", err)
	}
	if after := taken.Enrolment().Writes; !maps.Equal(before, after) || !hasOther(taken, sap, wsman.TriggerPeriodic) {
		t.Fatalf("the refused enrolment wrote: %v → %v", before, after)
	}
	res, st, err = enrol(t, in, api.EnrolRequest{Address: taken.LANAddr(), Password: amtPW, Replace: true})
	if err != nil || !res.Connected {
		t.Fatalf("enrol with Replace: %+v, %v (steps %+v)", res, err, st.all)
	}
	if e := taken.Enrolment(); len(e.MPS) != 1 || e.MPS[0].AccessInfo != "127.0.0.1" {
		t.Fatalf("after Replace: MPS %+v; want ours only", e.MPS)
	}
}
