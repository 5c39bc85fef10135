// Package doctor is the connection doctor: it classifies every failed or
// unhealthy CIRA connection (an AMT 11 offering only TLS 1.0, a device that
// does not trust the MPS's root, a wrong CIRA password, two machines
// sharing an OEM UUID, a device gone silent, …), counts them per class and
// device, and says for each the one sentence that fixes it.
//
// [Doctor.Record] is cheap and never waits on the disk: one map update
// under a mutex held for nothing else but a copy. Memory is bounded
// (Options.MaxKeys entries; the oldest go first), and findings reach
// history aggregated: at most Options.MaxWrites events per
// Options.FlushInterval, one per entry that changed, however many
// handshakes fail in a storm.
package doctor

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/history"
	"github.com/presence-mps/presence/mps/tunnel"
)

// Class is a kind of connection problem. Its values are stable: they
// appear in JSON, in history and on the command line.
type Class string

// Classes of connection problems.
const (
	LegacyTLS        Class = "legacy-tls"        // the device offers only TLS 1.0/1.1, or is not allowed it
	NoSharedCipher   Class = "no-shared-cipher"  // the device and the MPS share no cipher suite
	TLSFailed        Class = "tls-failed"        // another TLS handshake failure
	CertRejected     Class = "cert-rejected"     // the device rejected the MPS's certificate
	CertUnsuitable   Class = "cert-unsuitable"   // the MPS's own certificate misses what AMT needs
	WrongPassword    Class = "wrong-password"    // a known CIRA user with a wrong password
	UnknownUser      Class = "unknown-user"      // a CIRA user name that does not exist
	DuplicateUUID    Class = "duplicate-uuid"    // one GUID from two machines replacing each other
	HandshakeTimeout Class = "handshake-timeout" // no authenticated tunnel within the handshake time
	Trickling        Class = "trickling"         // bytes arriving, too slowly to finish the handshake
	ProtocolError    Class = "protocol-error"    // not APF: garbage, an HTTP probe, a bad message
	KeepaliveMissed  Class = "keepalive-missed"  // a connected device stopped sending keepalives
	ClosedEarly      Class = "closed-early"      // the connection ended before the handshake finished
)

// Finding is one observation. Only Class is required; a zero Time is now.
// It holds no secret: User is only the name a device offered.
type Finding struct {
	Class  Class
	Time   time.Time
	Device string // the device's GUID text; "" when not known yet
	User   string // the CIRA user name offered, when known
	Remote string // the device's address, host:port
	// Hello is the device's ClientHello summary, for TLS classes.
	Hello tunnel.Hello
	// Detail is a short explanation (a TLS alert, what arrived, the other
	// address of a duplicate UUID); network text in it must be quoted.
	Detail string
}

// Entry is the aggregate of the findings of one class for one device (or,
// before the device's GUID is known, one remote host).
type Entry struct {
	Class  Class     `json:"class"`
	Device string    `json:"device,omitempty"` // GUID text, when known
	User   string    `json:"user,omitempty"`   // the last user name offered
	Count  uint64    `json:"count"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
	Remote string    `json:"remote,omitempty"` // the last remote address
	// TLS is the ClientHello's highest version and suite families, for
	// TLS classes, e.g. "offers up to TLS 1.0 with 2 suites (RSA-CBC)".
	TLS    string `json:"tls,omitempty"`
	Detail string `json:"detail,omitempty"` // the last finding's detail
	// Fix is the sentence that tells an administrator what to do.
	Fix string `json:"fix"`
}

// Options configure a [Doctor]. Zero fields take defaults.
type Options struct {
	// MaxKeys caps the distinct (class, device or host) entries kept
	// (default 10,000); beyond it the least recently seen tenth goes.
	MaxKeys int
	// History, if set, receives findings as history.TunnelEvent of kind
	// history.KindDoctor: one event per entry that changed since the last
	// flush (its Detail says how many times), at most MaxWrites per
	// FlushInterval (default 1 minute, 256 events); the entries left over
	// wait for the next flush.
	History   Adder
	MaxWrites int
	// FlushInterval is how often findings go to History.
	FlushInterval time.Duration
	// Now is the clock (default time.Now), for tests.
	Now func() time.Time
}

// Adder takes history events without blocking; *history.Store is one.
type Adder interface {
	Add(history.TunnelEvent) bool
}

// Doctor keeps the findings. Its methods are safe for concurrent use. The
// zero value is not usable; see [New].
type Doctor struct {
	opts Options

	mu      sync.Mutex // guards entries and updated; held only for map work and copies
	entries map[key]*entry
	updated chan struct{} // closed at the next Record; nil until Updated asks

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type key struct {
	class Class
	id    string // the device GUID, or "@" and the remote host
}

type entry struct {
	Entry
	hello   tunnel.Hello
	unsaved uint64 // findings since the last write to history
}

// New returns a doctor. With Options.History it starts a goroutine that
// flushes to it until [Doctor.Close].
func New(opts Options) *Doctor {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 10000
	}
	if opts.MaxWrites <= 0 {
		opts.MaxWrites = 256
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Doctor{opts: opts, entries: make(map[key]*entry), stop: make(chan struct{}), done: make(chan struct{})}
	if opts.History != nil {
		go d.run()
	} else {
		close(d.done)
	}
	return d
}

// Close stops the flushing goroutine after a last flush. It is idempotent.
func (d *Doctor) Close() {
	d.once.Do(func() { close(d.stop) })
	<-d.done
}

func (d *Doctor) run() {
	defer close(d.done)
	t := time.NewTicker(d.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			d.Flush()
		case <-d.stop:
			d.Flush()
			return
		}
	}
}

// Record adds a finding. It does not block on anything but a short
// mutex, and allocates only for a new entry.
func (d *Doctor) Record(f Finding) {
	if f.Class == "" {
		return
	}
	if f.Time.IsZero() {
		f.Time = d.opts.Now()
	}
	k := key{class: f.Class, id: f.Device}
	if k.id == "" {
		k.id = "@" + host(f.Remote)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.entries[k]
	if e == nil {
		if len(d.entries) >= d.opts.MaxKeys {
			d.evictLocked()
		}
		e = &entry{Entry: Entry{Class: f.Class, Device: f.Device, First: f.Time}}
		d.entries[k] = e
	}
	e.Count++
	e.unsaved++
	if f.Time.After(e.Last) {
		e.Last = f.Time
	}
	if f.Time.Before(e.First) {
		e.First = f.Time
	}
	if f.Remote != "" {
		e.Remote = f.Remote
	}
	if f.User != "" {
		e.User = f.User
	}
	if f.Hello.MaxVersion != 0 {
		e.hello = f.Hello
	}
	if f.Detail != "" {
		e.Detail = f.Detail
	}
	if d.updated != nil {
		close(d.updated)
		d.updated = nil
	}
}

// Updated returns a channel that is closed at the next Record: a window
// or a test waits on it instead of polling Report.
func (d *Doctor) Updated() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.updated == nil {
		d.updated = make(chan struct{})
	}
	return d.updated
}

// evictLocked drops the least recently seen tenth of the entries, so that
// a storm of new keys sorts once per MaxKeys/10 insertions, not at each.
func (d *Doctor) evictLocked() {
	all := make([]*entry, 0, len(d.entries))
	for _, e := range d.entries {
		all = append(all, e)
	}
	slices.SortFunc(all, func(a, b *entry) int { return a.Last.Compare(b.Last) })
	n := max(1, len(all)/10)
	drop := make(map[*entry]bool, n)
	for _, e := range all[:n] {
		drop[e] = true
	}
	for k, e := range d.entries {
		if drop[e] {
			delete(d.entries, k)
		}
	}
}

// host returns the host of a host:port address, or addr itself.
func host(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// Report returns the entries seen at or after since (zero: all), of one
// device when device is not "" (a GUID, any case), sorted by class, then
// most recent first, then device and remote: a stable order.
func (d *Doctor) Report(since time.Time, device string) []Entry {
	device = normalizeGUID(device)
	d.mu.Lock()
	out := make([]Entry, 0, len(d.entries))
	for _, e := range d.entries {
		if e.Last.Before(since) || (device != "" && e.Device != device) {
			continue
		}
		x := e.Entry
		if e.hello.MaxVersion != 0 {
			x.TLS = e.hello.String()
		}
		out = append(out, x)
	}
	d.mu.Unlock()
	for i := range out {
		out[i].Fix = Fix(out[i])
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), b.Last.Compare(a.Last),
			cmp.Compare(a.Device, b.Device), cmp.Compare(a.Remote, b.Remote))
	})
	return out
}

// Len returns the number of entries kept.
func (d *Doctor) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.entries)
}

// Flush writes the entries changed since the last flush to
// Options.History, at most MaxWrites of them (the most counted first).
func (d *Doctor) Flush() {
	if d.opts.History == nil {
		return
	}
	type dirty struct {
		e Entry
		n uint64
	}
	d.mu.Lock()
	var ds []dirty
	var es []*entry
	for _, e := range d.entries {
		if e.unsaved > 0 {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(b.unsaved, a.unsaved) })
	if len(es) > d.opts.MaxWrites {
		es = es[:d.opts.MaxWrites]
	}
	for _, e := range es {
		x := e.Entry
		if e.hello.MaxVersion != 0 {
			x.TLS = e.hello.String()
		}
		ds = append(ds, dirty{x, e.unsaved})
		e.unsaved = 0
	}
	d.mu.Unlock()
	for _, x := range ds {
		detail := strconv.FormatUint(x.n, 10) + " times since the last record"
		if x.e.Detail != "" {
			detail += "; " + x.e.Detail
		}
		if x.e.TLS != "" {
			detail += "; " + x.e.TLS
		}
		d.opts.History.Add(history.TunnelEvent{Time: x.e.Last, Device: x.e.Device, Kind: history.KindDoctor,
			Reason: string(x.e.Class), Detail: detail, Remote: x.e.Remote, User: x.e.User})
	}
}

// normalizeGUID renders a GUID given by an administrator (any case,
// dashes optional) as the doctor keeps it; other text stays as it is.
func normalizeGUID(s string) string {
	if u, err := apf.ParseUUID(s); err == nil {
		return u.String()
	}
	return s
}
