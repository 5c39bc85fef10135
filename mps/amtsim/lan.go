package amtsim

// The LAN side of a device: WS-Man served directly on a LAN address (the
// 16992 equivalent, and optionally TLS, the 16993 equivalent), so that an
// enrolment tool can configure CIRA (enrolment.go), and the CIRA that AMT
// then opens to what was written. See [LANConfig].

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LANConfig makes a device an unconfigured AMT on the LAN: it serves
// WS-Man on Addr (and TLSAddr), has no MPS entries of its own, and dials
// the MPS entries that enrolment writes over WS-Man, as AMT does:
//
//   - It considers itself outside the enterprise when
//     AMT_EnvironmentDetectionSettingData DetectionStrings is non-empty and
//     none is a suffix of DNSSuffix (case-insensitive). Outside, the LAN
//     listeners close: they stop accepting and close their connections
//     once the current answer is sent (enrol.md §8, "LAN trap"). When the
//     strings are cleared again (over the tunnel) they reopen on the same
//     addresses.
//   - It dials CIRA when a Periodic rule (or, failing that, a User
//     Initiated rule, which the simulator treats as always triggered)
//     exists and at least one of its servers is eligible: outside, those
//     with MpsType 0 (external) or 2 (both); inside, those with MpsType 1
//     or 2. That MpsType 2 makes AMT dial while inside is the reading of
//     enrol.md §6, unverified on hardware. Servers are tried in
//     OrderOfAccess (then the rule's order), each attempt repeated
//     Config.MPSRetries times, as for Config.MPS; after a pass in which
//     none took the device, or after a tunnel ends, it waits the rule's
//     periodic interval (ExtendedData) and tries again.
//   - It verifies the MPS certificate against the installed trusted
//     roots only, never the system roots, and the name: for InfoFormat 201
//     the certificate's Subject CN must equal AccessInfo (a matching DNS
//     SAN is accepted too); for an IP address (3, 4) the Subject CN must
//     equal the SAP's CN exactly (apf.md §6.2). A failure aborts the
//     handshake from the device with a bad_certificate alert, as Go's TLS
//     client sends.
//   - It logs in with the SAP's Username and Password.
//   - When the configuration changes (a SAP, rule or association
//     deleted or changed, a root removed), the tunnel closes after the
//     answer to the change is sent, and the device dials the new entries,
//     or stops dialing when none are left.
//
// WS-Man over the tunnel (port 16992 channels) serves the same state, so
// that removal can run through the tunnel.
type LANConfig struct {
	// Addr is where plain WS-Man listens, e.g. "127.0.0.1:0". Required.
	Addr string
	// TLSAddr, if set, is where WS-Man over TLS listens, with a
	// self-signed ECDSA P-256 certificate made for the device
	// ([Device.LANCertificate]).
	TLSAddr string
	// PreProvisioning makes the device unprovisioned (ProvisioningState
	// 0): it answers only the Get of AMT_SetupAndConfigurationService and
	// refuses every other call with an AccessDenied fault. It never dials.
	PreProvisioning bool
	// DNSSuffix is the DHCP DNS suffix the device sees
	// (AMT_SetupAndConfigurationService DhcpDNSSuffix), which environment
	// detection compares. Default "office.example".
	DNSSuffix string
	// FailAt makes one enrolment operation fail, for tests of a client's
	// error handling. It names a method (AddTrustedRootCertificate,
	// AddMpServer, AddRemoteAccessPolicyRule, RequestStateChange — the
	// user-initiated connection service's) or Put or Delete and the class
	// without "AMT_" (PutEnvironmentDetectionSettingData, or
	// PutEnvironmentDetection for short; PutRemoteAccessPolicyAppliesToMPS,
	// DeleteRemoteAccessPolicyRule, DeleteManagementPresenceRemoteSAP,
	// DeletePublicKeyCertificate). A method then returns ReturnValue 1
	// (INTERNAL_ERROR) and a Put or Delete an InternalError fault, and
	// nothing is written. A ":bare400" suffix ("AddMpServer:bare400")
	// answers a bare HTTP 400 with no body instead. Every call of that
	// operation fails; [Device.SetFailAt] changes it.
	FailAt string
	// Interval, if positive, replaces the periodic rule's interval as the
	// pause between passes, so that tests need not wait 25 s. What the
	// rule records (ExtendedData) is unchanged.
	Interval time.Duration
	// Listen opens the listeners. Default net.Listen.
	Listen func(network, addr string) (net.Listener, error)
}

// lanRun is a LAN device's listeners and CIRA state.
type lanRun struct {
	d    *Device
	cfg  LANConfig
	cert tls.Certificate
	leaf *x509.Certificate
	kick chan struct{} // a write happened; capacity 1

	mu      sync.Mutex // guards the fields below
	addr    string     // bound plain address, kept across reopenings
	tlsAddr string
	open    bool
	srvs    []*http.Server
	wg      sync.WaitGroup // Serve goroutines
}

// checkLAN checks c.LAN and fills its defaults; c.LAN is c's own copy.
func (c *Config) checkLAN() error {
	l := c.LAN
	if l == nil {
		return nil
	}
	if len(c.MPS) > 0 || c.MPSAddr != "" {
		return errors.New("amtsim: set Config.LAN or Config.MPS/MPSAddr, not both: a LAN device gets its MPS entries from enrolment")
	}
	if _, _, err := net.SplitHostPort(l.Addr); err != nil {
		return fmt.Errorf("amtsim: LANConfig.Addr %q: %v", l.Addr, err)
	}
	if l.TLSAddr != "" {
		if _, _, err := net.SplitHostPort(l.TLSAddr); err != nil {
			return fmt.Errorf("amtsim: LANConfig.TLSAddr %q: %v", l.TLSAddr, err)
		}
	}
	if l.DNSSuffix == "" {
		l.DNSSuffix = defaultDNSSuffix
	}
	if l.Listen == nil {
		l.Listen = net.Listen
	}
	return nil
}

// startLAN makes the platform's enrolment state, the certificate and the
// listeners of a LAN device.
func (d *Device) startLAN() error {
	l := &lanRun{d: d, cfg: *d.cfg.LAN, kick: make(chan struct{}, 1), addr: d.cfg.LAN.Addr, tlsAddr: d.cfg.LAN.TLSAddr}
	p := d.Platform()
	p.mu.Lock()
	e := p.enrolment()
	e.preProvisioning, e.dnsSuffix, e.failAt = l.cfg.PreProvisioning, l.cfg.DNSSuffix, l.cfg.FailAt
	p.mu.Unlock()
	if l.tlsAddr != "" {
		if err := l.makeCert(d.cfg.Hostname); err != nil {
			return err
		}
	}
	d.rt.lan = l
	return l.listen()
}

// makeCert makes the self-signed certificate of TLS WS-Man: CN the host
// name, SANs the host name and the TLS address's IP.
func (l *lanRun) makeCert(host string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"Intel(R) Active Management Technology (simulated)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // self-signed, so that a client can pin it as a root
		DNSNames:              []string{host},
	}
	if h, _, _ := net.SplitHostPort(l.tlsAddr); net.ParseIP(h) != nil {
		tmpl.IPAddresses = []net.IP{net.ParseIP(h)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	l.leaf, _ = x509.ParseCertificate(der)
	l.cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: l.leaf}
	return nil
}

// listen opens the listeners on their (bound) addresses and serves them.
func (l *lanRun) listen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open {
		return nil
	}
	ln, err := l.cfg.Listen("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("amtsim: cannot listen for LAN WS-Man on %s: %w", l.addr, err)
	}
	lns := []net.Listener{ln}
	if l.tlsAddr != "" {
		tln, err := l.cfg.Listen("tcp", l.tlsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("amtsim: cannot listen for LAN WS-Man over TLS on %s: %w", l.tlsAddr, err)
		}
		l.tlsAddr = tln.Addr().String()
		lns = append(lns, tls.NewListener(tln, &tls.Config{Certificates: []tls.Certificate{l.cert}, MinVersion: tls.VersionTLS12}))
	}
	l.addr = ln.Addr().String()
	l.srvs = l.srvs[:0]
	for _, x := range lns {
		srv := &http.Server{
			Handler:           l,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(l.d.log.Handler(), slog.LevelDebug),
		}
		l.srvs = append(l.srvs, srv)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			srv.Serve(x)
		}()
	}
	l.open = true
	return nil
}

// shut closes the listeners; each connection closes once its current
// answer has been sent.
func (l *lanRun) shut() {
	l.mu.Lock()
	srvs := l.srvs
	l.srvs, l.open = nil, false
	l.mu.Unlock()
	for _, s := range srvs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if s.Shutdown(ctx) != nil {
			s.Close()
		}
		cancel()
	}
	l.wg.Wait()
}

func (l *lanRun) isOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// ServeHTTP serves WS-Man over the LAN, and over the tunnel of a LAN
// device: after an answer that changed the configuration it flushes the
// answer, then tells Run to apply the change, so that a Put that closes
// the LAN, or a Delete that ends the tunnel, still gets its reply. (Two
// requests in parallel may let the other's answer be cut; enrolment tools
// send one at a time.)
func (l *lanRun) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := l.d.wsmanHandler()
	before := l.gen()
	h.ServeHTTP(w, r)
	if l.gen() != before {
		http.NewResponseController(w).Flush()
		l.signal()
	}
}

func (l *lanRun) gen() uint64 {
	p := l.d.Platform()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enrolment().gen
}

func (l *lanRun) signal() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// LANAddr returns the address of plain LAN WS-Man, "" for a device
// without [LANConfig].
func (d *Device) LANAddr() string {
	if d.rt.lan == nil {
		return ""
	}
	d.rt.lan.mu.Lock()
	defer d.rt.lan.mu.Unlock()
	return d.rt.lan.addr
}

// LANTLSAddr returns the address of LAN WS-Man over TLS, or "".
func (d *Device) LANTLSAddr() string {
	if d.rt.lan == nil || d.rt.lan.leaf == nil {
		return ""
	}
	d.rt.lan.mu.Lock()
	defer d.rt.lan.mu.Unlock()
	return d.rt.lan.tlsAddr
}

// LANCertificate returns the certificate of LAN WS-Man over TLS, to pin,
// or nil.
func (d *Device) LANCertificate() *x509.Certificate {
	if d.rt.lan == nil {
		return nil
	}
	return d.rt.lan.leaf
}

// Close closes the LAN listeners of a device whose Run is not running
// (Run closes them when it returns). It is a no-op for other devices.
func (d *Device) Close() error {
	if d.rt.lan != nil {
		d.rt.lan.shut()
	}
	return nil
}

// ciraPlan is what a LAN device dials: built from the enrolment state.
type ciraPlan struct {
	rt       *route
	interval time.Duration
	key      string // equal keys: the same plan
}

// plan builds the dial plan of the current enrolment state, nil when the
// device should not dial, and reports whether the device is outside.
func (d *Device) plan() (*ciraPlan, bool) {
	p := d.Platform()
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.enrolment()
	outside := e.outside()
	if e.preProvisioning {
		return nil, outside
	}
	r := e.rule(ruleNames[triggerPeriodic])
	if r == nil {
		r = e.rule(ruleNames[triggerUser])
	}
	if r == nil {
		return nil, outside
	}
	var servers []ruleServer
	for _, s := range r.servers {
		if s.mpsType == mpsTypeBoth || (outside && s.mpsType == mpsTypeExternal) || (!outside && s.mpsType == mpsTypeInternal) {
			servers = append(servers, s)
		}
	}
	slices.SortStableFunc(servers, func(a, b ruleServer) int { return a.order - b.order })
	if len(servers) == 0 {
		return nil, outside
	}
	pool := x509.NewCertPool()
	var key strings.Builder
	for _, c := range e.certs {
		pool.AddCert(c.cert)
		sum := sha256.Sum256(c.der)
		fmt.Fprintf(&key, "root %x\n", sum[:8])
	}
	pl := &ciraPlan{rt: &route{ports: d.rt.ports, tries: 1}, interval: periodicInterval(r.ext)}
	if d.cfg.LAN.Interval > 0 {
		pl.interval = d.cfg.LAN.Interval
	}
	for _, s := range servers {
		sap := e.sap(s.sap)
		if sap == nil {
			continue // not reachable: a referenced SAP cannot be deleted
		}
		addr := net.JoinHostPort(sap.accessInfo, strconv.Itoa(sap.port))
		sum := sha256.Sum256(sap.password)
		fmt.Fprintf(&key, "%s %d %q %q %x\n", addr, sap.infoFormat, sap.cn, sap.user, sum[:8])
		pl.rt.entries = append(pl.rt.entries, entry{
			addr:     addr,
			tls:      d.sapTLS(pool, sap),
			user:     sap.user,
			password: append([]byte(nil), sap.password...),
		})
	}
	if len(pl.rt.entries) > 1 {
		pl.rt.tries += max(d.cfg.MPSRetries, 0)
	}
	fmt.Fprintf(&key, "every %s", pl.interval)
	pl.key = key.String()
	return pl, outside
}

// sapTLS is the TLS configuration of one SAP: AMT's own checks replace
// Go's (see [LANConfig]), so InsecureSkipVerify only turns off Go's
// SAN-based name check, and VerifyConnection does the chain and the name.
func (d *Device) sapTLS(roots *x509.CertPool, sap *sapEntry) *tls.Config {
	access, format, cn := sap.accessInfo, sap.infoFormat, sap.cn
	name := ""
	if net.ParseIP(access) == nil {
		name = access // SNI
	}
	return &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: true, // verified below against the installed roots
		MinVersion:         d.cfg.MinVersion,
		MaxVersion:         d.cfg.MaxVersion,
		CipherSuites:       d.cfg.CipherSuites,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("amtsim: the MPS sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return fmt.Errorf("amtsim: the MPS certificate does not chain to a root installed with AddTrustedRootCertificate: %w", err)
			}
			got := leaf.Subject.CommonName
			if format == infoFormatFQDN {
				if !strings.EqualFold(got, access) && leaf.VerifyHostname(access) != nil {
					return fmt.Errorf("amtsim: the MPS certificate is for %q, not the SAP's AccessInfo %q", sanitize(got), sanitize(access))
				}
				return nil
			}
			if got != cn {
				return fmt.Errorf("amtsim: the MPS certificate's CN %q is not the SAP's CN %q", sanitize(got), sanitize(cn))
			}
			return nil
		},
	}
}

// runLAN is Run for a LAN device: it serves the LAN, follows the
// enrolment state and dials what it says, until ctx is done.
func (d *Device) runLAN(ctx context.Context) error {
	l := d.rt.lan
	defer l.shut()
	var cur *dialer
	defer func() { cur.stop() }()
	for {
		pl, outside := d.plan()
		if outside && l.isOpen() {
			d.log.Debug("amtsim: outside the enterprise; LAN ports closed")
			l.shut()
		} else if !outside && !l.isOpen() {
			if err := l.listen(); err != nil {
				d.log.Warn("amtsim: cannot reopen the LAN ports", "err", err)
			}
		}
		if (pl == nil) != (cur == nil) || (pl != nil && pl.key != cur.plan.key) {
			cur.stop()
			cur = nil
			if pl != nil {
				cur = d.startDialer(ctx, pl)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.kick:
		}
	}
}

// dialer is a running dialPlan.
type dialer struct {
	plan   *ciraPlan
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *Device) startDialer(ctx context.Context, pl *ciraPlan) *dialer {
	ctx, cancel := context.WithCancel(ctx)
	dl := &dialer{plan: pl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(dl.done)
		d.dialPlan(ctx, pl)
	}()
	return dl
}

// stop ends the dialer and its tunnel, and waits; a nil dialer is none.
func (dl *dialer) stop() {
	if dl != nil {
		dl.cancel()
		<-dl.done
	}
}

// dialPlan dials pl's entries in AMT's order until ctx is done, pausing
// the periodic interval after each pass and after each tunnel.
func (d *Device) dialPlan(ctx context.Context, pl *ciraPlan) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		connected, err := d.passOn(ctx, pl.rt)
		if ctx.Err() != nil {
			return
		}
		d.log.Debug("amtsim: CIRA pass ended", "connected", connected, "reason", Reason(err))
		if !sleep(ctx, &t, pl.interval) {
			return
		}
	}
}
