package instance

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/enrol"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
)

// enrolled is what the instance remembers of a device it enrolled, for
// unenrol: where it was on the LAN and what to put back.
type enrolled struct {
	guid             string
	lan              string // the LAN address, with its port
	tls              bool
	pin              []byte
	detection        []string
	detectionKnown   bool
	userInitiated    int
	rememberedAtTime time.Time
}

// runEnrol runs an enrolment or its removal.
func (in *Instance) runEnrol(ctx context.Context, req api.EnrolRequest, progress func(api.EnrolStep), remove bool) (api.EnrolResult, error) {
	start := time.Now()
	st := &stepper{progress: progress}
	res := api.EnrolResult{Address: req.Address}
	done := func(err error) (api.EnrolResult, error) {
		res.Steps, res.Millis = st.all(), time.Since(start).Milliseconds()
		return res, err
	}
	es := in.enrolment()
	release, err := es.takeTurn(ctx)
	if err != nil {
		return done(err)
	}
	defer release()
	if req.User == "" {
		req.User = "admin"
	}
	root, prim, back, err := in.enrolEntries()
	if err != nil {
		return done(err)
	}

	// Where the device is: a connected device (named, or enrolled from
	// this address) is reached through its tunnel, else over the LAN.
	var lan string
	var lanErr error
	lan, lanErr = lanAddress(req.Address, req.TLS)
	var tunnelGUID string
	if d, ok := in.Server.Device(req.Address); ok {
		tunnelGUID = d.UUID
	} else if lanErr == nil {
		if g, ok := es.guidOf(lan); ok {
			if _, up := in.Server.Device(g); up {
				tunnelGUID = g
			}
		}
	}
	if tunnelGUID == "" && lanErr != nil {
		return done(lanErr)
	}
	var prev *enrolled
	if tunnelGUID != "" {
		prev = es.byGUID(tunnelGUID)
	} else {
		prev = es.atAddr(lan)
	}

	creds := func(ctx context.Context, device string) (wsman.Credentials, error) {
		if req.Password != "" {
			return wsman.Credentials{User: req.User, Password: req.Password}, nil
		}
		if tunnelGUID != "" {
			return amtCredentials(in.cfg.Accounts)(ctx, tunnelGUID)
		}
		return wsman.Credentials{}, errors.New("the AMT admin password is needed to reach the device over the LAN")
	}
	var pin []byte
	if pin, err = parsePin(req.Pin); err != nil {
		return done(err)
	}
	if pin == nil && prev != nil && prev.tls && req.TLS {
		pin = prev.pin // pinned on first use
	}
	lanClient, seen, err := in.lanClient(req.TLS, pin, creds)
	if err != nil {
		return done(err)
	}
	defer lanClient.Close()
	client, device := lanClient, lan
	if tunnelGUID != "" {
		tc, err := wsman.New(wsman.Config{
			Dial: func(ctx context.Context, guid string) (net.Conn, error) {
				return in.dialConsole(ctx, guid, 16992)
			},
			Credentials: creds,
			Logger:      in.log.With("part", "enrol"),
		})
		if err != nil {
			return done(err)
		}
		defer tc.Close()
		client, device = tc, tunnelGUID
		res.Connected = remove // a removal through the tunnel
	}

	e := &enrol.Enroller{
		Client: client, Device: device, Root: root, Primary: prim, Backup: back, Replace: req.Replace,
		Account: func(ctx context.Context, guid string) (string, []byte, error) {
			user := enrol.NewUser(guid)
			pw, err := in.ciraAccount(ctx, guid, user, enrol.NewPassword)
			return user, pw, err
		},
		Progress: func(s enrol.Step) { st.add(s.Name, string(s.State), s.Sentence) },
	}
	defer func() {
		if fp := seen(); len(fp) > 0 {
			res.Certificate = hex.EncodeToString(fp)
		}
	}()

	if remove {
		opt := enrol.UnenrolOptions{}
		if prev != nil {
			if prev.detectionKnown {
				opt.DetectionStrings = prev.detection
			}
			opt.UserInitiated = prev.userInitiated
		}
		if tunnelGUID != "" && lanErr == nil {
			opt.Fallback, opt.FallbackDevice = lanClient, lan
		}
		r, err := e.Unenrol(ctx, opt)
		res.GUID, res.Notes = r.GUID, r.Notes
		if err != nil {
			return done(err)
		}
		if r.GUID != "" {
			es.forget(r.GUID)
			if err := in.cfg.Accounts.Remove(ctx, vault.KindCIRA, enrol.NewUser(r.GUID)); err == nil {
				in.cfg.Accounts.Flush()
			}
		}
		return done(nil)
	}

	r, err := e.Enrol(ctx)
	res.GUID, res.Notes = r.GUID, r.Notes
	if fp := seen(); len(fp) > 0 {
		res.Certificate = hex.EncodeToString(fp)
	}
	if r.GUID != "" {
		rec := enrolled{guid: r.GUID, lan: lan, tls: req.TLS, pin: seen(), userInitiated: r.UserInitiatedBefore}
		if tunnelGUID != "" && prev != nil {
			rec.lan, rec.tls, rec.pin = prev.lan, prev.tls, prev.pin
		}
		rec.detection, rec.detectionKnown = r.PreviousDetectionStrings, r.PreviousKnown
		if prev != nil && !r.PreviousKnown {
			rec.detection, rec.detectionKnown = prev.detection, prev.detectionKnown
		}
		es.remember(rec)
	}
	if err != nil {
		return done(err)
	}
	if req.Password != "" {
		if note := in.keepAMTAccount(ctx, r.GUID, req.User, req.Password); note != "" {
			res.Notes = append(res.Notes, note)
		}
	}
	if req.WaitSeconds < 0 {
		st.add("tunnel", string(enrol.Skipped), "Not waiting for the tunnel, as asked.")
		return done(nil)
	}
	wait := enrolWait
	if req.WaitSeconds > 0 {
		wait = min(time.Duration(req.WaitSeconds)*time.Second, enrolMaxWait)
	}
	st.add("tunnel", string(enrol.Running), fmt.Sprintf("Waiting up to %s for the device's tunnel.", wait))
	if d, ok := in.waitTunnel(ctx, r.GUID, wait); ok {
		res.Connected = true
		st.add("tunnel", string(enrol.Done), fmt.Sprintf("The device's tunnel is up from %s.", d.Remote))
		return done(nil)
	}
	st.add("tunnel", string(enrol.Failed), "The device did not connect in time.")
	return done(fmt.Errorf("device %s was enrolled but did not connect within %s: run presence doctor --device %s to see why (AMT may wait for its next periodic attempt, every %d s)",
		r.GUID, wait, r.GUID, enrol.PeriodicInterval))
}

// enrolEntries are the MPS root and entries enrolment writes: this
// instance's, and a linked peer's as the backup.
func (in *Instance) enrolEntries() (root []byte, prim enrol.Entry, back *enrol.Entry, err error) {
	cn, cport, root, err := in.mpsEntry()
	if err != nil {
		return nil, prim, nil, err
	}
	prim = enrol.Entry{Address: cn, Port: cport, CN: cn}
	if bcn, bport, ok := in.backupEntry(); ok && !(bcn == cn && bport == cport) {
		back = &enrol.Entry{Address: bcn, Port: bport, CN: bcn}
	}
	return root, prim, back, nil
}

// lanClient is a WS-Man client for the LAN: plain HTTP, or TLS pinned.
func (in *Instance) lanClient(useTLS bool, pin []byte, creds func(context.Context, string) (wsman.Credentials, error)) (*wsman.Client, func() []byte, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	dial := func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	seen := func() []byte { return nil }
	if useTLS {
		var cfg *tls.Config
		cfg, seen = enrol.PinnedTLS(pin)
		td := &tls.Dialer{NetDialer: d, Config: cfg}
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return td.DialContext(ctx, "tcp", addr) }
	}
	c, err := wsman.New(wsman.Config{Dial: dial, Credentials: creds, Logger: in.log.With("part", "enrol")})
	return c, seen, err
}

// remember keeps what unenrol needs of an enrolled device.
func (e *enrolState) remember(r enrolled) {
	r.rememberedAtTime = time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.devices == nil {
		e.devices = map[string]enrolled{}
	}
	e.devices[r.guid] = r
	if r.lan != "" {
		e.byAddr[r.lan] = r.guid
	}
}

func (e *enrolState) byGUID(guid string) *enrolled {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.devices[guid]; ok {
		return &r
	}
	return nil
}

func (e *enrolState) atAddr(addr string) *enrolled {
	e.mu.Lock()
	g, ok := e.byAddr[addr]
	e.mu.Unlock()
	if !ok {
		return nil
	}
	return e.byGUID(g)
}

func (e *enrolState) forget(guid string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.devices[guid]; ok {
		delete(e.byAddr, r.lan)
	}
	delete(e.devices, guid)
}

func (e *enrolState) guidOf(addr string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g, ok := e.byAddr[addr]
	return g, ok
}
