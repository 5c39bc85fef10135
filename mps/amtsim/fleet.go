package amtsim

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// DeviceUUID derives the UUID of fleet device i from seed: the same seed and
// index give the same identity on every run, so an MPS keeps recognising
// the simulated devices. The result is a random-looking version 4 UUID.
func DeviceUUID(seed string, i int) apf.UUID {
	sum := sha256.Sum256([]byte("presence amtsim\x00" + seed + "\x00" + strconv.Itoa(i)))
	var u apf.UUID
	copy(u[:], sum[:16])
	// Wire byte 7 is the high byte of the third group, wire byte 8 the
	// first of the fourth (apf.md §2.1).
	u[7] = u[7]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// DeviceHostname is the host name of fleet device i: "sim-000123".
func DeviceHostname(i int) string { return fmt.Sprintf("sim-%06d", i) }

// FleetConfig configures a [Fleet].
type FleetConfig struct {
	// Device is the template of every device. UUID and Hostname are
	// replaced by [DeviceUUID] and [DeviceHostname]; the rest (MPS address,
	// roots, credentials, fault...) is shared.
	Device Config
	// Password, if set, gives device i its own CIRA password instead of
	// Device.Password. Entries of Device.MPS with credentials of their
	// own keep them.
	Password func(i int, id apf.UUID) []byte
	// Devices is how many devices to run, with indexes First to
	// First+Devices-1. Split large fleets over processes by giving each
	// its own range.
	Devices int
	First   int
	// Seed makes the identities; see [DeviceUUID].
	Seed string
	// StartRate is how many devices start per second; 0 starts them all
	// at once. Reconnects are not rate-limited.
	StartRate float64
	// MaxHandshakes caps handshakes in flight (dial to last forward
	// reply), reconnects included; 0 means no cap.
	MaxHandshakes int
	// NoRetry stops a device after its first connection ends. Otherwise a
	// device reconnects after a backoff that starts at RetryMin (default
	// 1 s), doubles on every failed handshake up to RetryMax (default
	// 30 s), and is jittered by ±50%. FaultReconnectLoop devices
	// reconnect at once after their deliberate drop.
	//
	// A device with several MPS entries (Config.MPS) follows AMT's order
	// instead (see [Device.Run] for one pass over the entries): when no
	// entry took it, it pauses RetryInterval, then starts over at the
	// first entry. When a tunnel that was up ends, for whatever reason,
	// it starts over at the first entry after the jittered RetryMin.
	// This is how a backup MPS sends devices home: it closes their
	// tunnels and they try their primary again. Whether real AMT does so,
	// rather than staying with the MPS that last worked, is not confirmed
	// (fleet.md §1); restarting at the lowest OrderOfAccess is the
	// inference made there, and the one this simulator assumes. With
	// NoRetry such a device makes one pass.
	NoRetry            bool
	RetryMin, RetryMax time.Duration
	// RetryInterval is the pause after a pass in which no entry took the
	// device: AMT's periodic policy interval, "when a new connection
	// should be attempted". Default [DefaultRetryInterval]. It is exact,
	// not jittered, like AMT's timer; a fleet's devices spread over it as
	// their failures did.
	RetryInterval time.Duration
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// Fleet runs many simulated devices. Its methods are safe for concurrent
// use; Run may be called once.
type Fleet struct {
	cfg     FleetConfig
	devices []*Device
	stats   fleetStats
	started atomic.Int64
	begin   atomic.Int64 // Run's start, UnixNano
}

// NewFleet builds the devices of cfg. It fails when the process may not
// open enough files for them (see the package documentation).
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Devices <= 0 {
		return nil, errors.New("amtsim: FleetConfig.Devices must be positive")
	}
	if lim := openFileLimit(); lim > 0 && uint64(cfg.Devices)+64 > lim {
		return nil, fmt.Errorf("amtsim: %d devices need %d open files but this process may open %d: split the fleet over several processes",
			cfg.Devices, cfg.Devices+64, lim)
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(30*time.Second, cfg.RetryMin)
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Device.LAN != nil {
		return nil, errors.New("amtsim: a fleet's devices cannot share LAN listeners: make LAN devices with New")
	}
	tmpl := cfg.Device
	tmpl.copySlices()
	if tmpl.Logger == nil {
		tmpl.Logger = cfg.Logger
	}
	// Validate the template once with a stand-in identity; every device
	// then shares its slices and one route (the TLS configuration of
	// each MPS entry).
	tmpl.UUID = DeviceUUID(cfg.Seed, cfg.First)
	tmpl.Hostname = DeviceHostname(cfg.First)
	if cfg.Password != nil {
		tmpl.Password = []byte("x")
	}
	if err := tmpl.setDefaults(); err != nil {
		return nil, err
	}
	rt, err := tmpl.route()
	if err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, devices: make([]*Device, cfg.Devices)}
	if rt.multi() {
		f.stats.byMPS = make([]atomic.Int64, len(rt.entries))
	}
	var gate chan struct{}
	if cfg.MaxHandshakes > 0 {
		gate = make(chan struct{}, cfg.MaxHandshakes)
	}
	for k := range f.devices {
		i := cfg.First + k
		dc := tmpl
		dc.UUID = DeviceUUID(cfg.Seed, i)
		dc.Hostname = DeviceHostname(i)
		if cfg.Password != nil {
			dc.Password = append([]byte(nil), cfg.Password(i, dc.UUID)...)
			if len(dc.Password) == 0 {
				return nil, fmt.Errorf("amtsim: empty password for device %d", i)
			}
		}
		d := newDevice(dc, rt)
		d.gate = gate
		d.fleet = &f.stats
		f.devices[k] = d
	}
	return f, nil
}

// Devices returns the fleet's devices, in index order.
func (f *Fleet) Devices() []*Device { return append([]*Device(nil), f.devices...) }

// Run starts the devices at the configured rate and keeps them connected
// until ctx is done (or, with NoRetry, until every device has stopped);
// then it waits for every device goroutine and returns the final summary.
func (f *Fleet) Run(ctx context.Context) Summary {
	f.begin.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	start := time.Now()
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for k, d := range f.devices {
		if f.cfg.StartRate > 0 && k > 0 {
			wait := time.Until(start.Add(time.Duration(float64(k) / f.cfg.StartRate * float64(time.Second))))
			if wait > 0 {
				sleep(ctx, &t, wait)
			}
		}
		if ctx.Err() != nil {
			break
		}
		f.started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.serve(ctx, d)
		}()
	}
	stopped := make(chan struct{})
	go func() {
		wg.Wait()
		close(stopped)
	}()
	select {
	case <-ctx.Done():
	case <-stopped: // only with NoRetry
	}
	<-stopped
	return f.Summary()
}

// sleep waits for d or ctx, reusing *t, and reports whether d elapsed.
// The caller stops *t when done with it.
func sleep(ctx context.Context, t **time.Timer, d time.Duration) bool {
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-(*t).C:
		return true
	case <-ctx.Done():
		return false
	}
}

// serve keeps one device connected until ctx is done.
func (f *Fleet) serve(ctx context.Context, d *Device) {
	backoff := f.cfg.RetryMin
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		connected, err := d.pass(ctx) // counts the attempts
		if ctx.Err() != nil || f.cfg.NoRetry {
			return
		}
		var wait time.Duration
		switch {
		case connected:
			backoff = f.cfg.RetryMin
			if d.cfg.Fault == FaultReconnectLoop && errors.Is(err, ErrDropped) {
				continue
			}
			wait = backoff/2 + mrand.N(backoff)
		case d.rt.multi():
			wait = f.cfg.RetryInterval // AMT's periodic policy, then the primary again
		default:
			wait = backoff/2 + mrand.N(backoff)
			backoff = min(2*backoff, f.cfg.RetryMax)
		}
		if !sleep(ctx, &t, wait) {
			return
		}
	}
}

// Summary is a JSON-marshalable report of a fleet.
type Summary struct {
	Devices      int   `json:"devices"`
	Started      int   `json:"started"`       // devices whose goroutine started
	ConnectedNow int   `json:"connected_now"` // tunnels up at the snapshot
	Attempts     int64 `json:"attempts"`      // connections begun
	Handshakes   int64 `json:"handshakes"`    // handshakes completed
	// ConnectedByMPS and HandshakesByMPS split ConnectedNow and
	// Handshakes by the index of the MPS entry (Config.MPS; 0 is the
	// primary). They are present only for devices with several entries.
	ConnectedByMPS  []int   `json:"connected_by_mps,omitempty"`
	HandshakesByMPS []int64 `json:"handshakes_by_mps,omitempty"`
	// Failed counts connections that ended before their handshake
	// completed, by [Reason]; Ended counts tunnels that ended after it.
	Failed map[string]int64 `json:"failed,omitempty"`
	Ended  map[string]int64 `json:"ended,omitempty"`
	// ConsentCodes holds the user consent codes the devices' screens
	// show now (IPS_OptInService StartOptIn), by device UUID.
	ConsentCodes       map[string]string `json:"consent_codes,omitempty"`
	HandshakeMS        Latency           `json:"handshake_ms"`
	HandshakesPerSec   float64           `json:"handshakes_per_sec"` // over ElapsedSec
	ElapsedSec         float64           `json:"elapsed_sec"`
	KeepalivesSent     int64             `json:"keepalives_sent"`
	KeepalivesAnswered int64             `json:"keepalives_answered"`
	KeepaliveBad       int64             `json:"keepalive_bad_replies,omitempty"`
	ServerKeepalives   int64             `json:"server_keepalives"`
	ChannelsOpened     int64             `json:"channels_opened"`
	ChannelsRefused    int64             `json:"channels_refused"`
	BytesIn            int64             `json:"bytes_in"`
	BytesOut           int64             `json:"bytes_out"`
}

// Latency summarises handshake durations in milliseconds. Percentiles are
// read from a log-scale histogram, within about 3%.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summary returns a snapshot; it may be called while Run runs.
func (f *Fleet) Summary() Summary {
	s := Summary{
		Devices:    len(f.devices),
		Started:    int(f.started.Load()),
		Attempts:   f.stats.attempts.Load(),
		Handshakes: f.stats.handshakes.Load(),
	}
	if n := len(f.stats.byMPS); n > 0 {
		s.ConnectedByMPS = make([]int, n)
		s.HandshakesByMPS = make([]int64, n)
		for i := range f.stats.byMPS {
			s.HandshakesByMPS[i] = f.stats.byMPS[i].Load()
		}
	}
	s.Failed, s.Ended = f.stats.reasons()
	s.HandshakeMS = f.stats.hist.latency()
	if b := f.begin.Load(); b != 0 {
		s.ElapsedSec = time.Since(time.Unix(0, b)).Seconds()
		if s.ElapsedSec > 0 {
			s.HandshakesPerSec = float64(s.Handshakes) / s.ElapsedSec
		}
	}
	for _, d := range f.devices {
		st := d.Stats()
		if st.State == StateConnected {
			s.ConnectedNow++
			if st.MPS < len(s.ConnectedByMPS) {
				s.ConnectedByMPS[st.MPS]++
			}
		}
		s.KeepalivesSent += st.KeepalivesSent
		s.KeepalivesAnswered += st.KeepalivesAnswered
		s.KeepaliveBad += st.KeepaliveBadReplies
		s.ServerKeepalives += st.ServerKeepalives
		s.ChannelsOpened += st.ChannelsOpened
		s.ChannelsRefused += st.ChannelsRefused
		s.BytesIn += st.BytesIn
		s.BytesOut += st.BytesOut
		if p := d.platformIfMade(); p != nil {
			if code := p.ConsentCode(); code != "" {
				if s.ConsentCodes == nil {
					s.ConsentCodes = map[string]string{}
				}
				s.ConsentCodes[d.UUID().String()] = code
			}
		}
	}
	return s
}

// fleetStats aggregates what the devices of a fleet report.
type fleetStats struct {
	attempts   atomic.Int64
	handshakes atomic.Int64
	byMPS      []atomic.Int64 // handshakes per MPS entry; nil for a single MPS
	hist       histogram

	mu     sync.Mutex
	failed map[string]int64
	ended  map[string]int64
}

func (s *fleetStats) handshake(d time.Duration, mps int) {
	s.handshakes.Add(1)
	if mps < len(s.byMPS) {
		s.byMPS[mps].Add(1)
	}
	s.hist.add(d)
}

func (s *fleetStats) count(connected bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &s.failed
	if connected {
		m = &s.ended
	}
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[reason]++
}

func (s *fleetStats) reasons() (failed, ended map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := func(m map[string]int64) map[string]int64 {
		if len(m) == 0 {
			return nil
		}
		out := make(map[string]int64, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return cp(s.failed), cp(s.ended)
}

// histogram counts durations in microseconds in log-linear buckets: exact
// below 32 µs, then 16 buckets per power of two (≤ 6.25% wide, so a
// bucket's midpoint is within about 3%).
type histogram struct {
	buckets [32 + 16*40]atomic.Int64
	count   atomic.Int64
	sumUS   atomic.Int64
	maxUS   atomic.Int64
}

func bucketOf(us uint64) int {
	if us < 32 {
		return int(us)
	}
	e := bits.Len64(us) - 5 // us>>e is in [16, 31]
	return min(32+(e-1)*16+int(us>>e)-16, 32+16*40-1)
}

// bucketMid returns the midpoint of bucket i in microseconds.
func bucketMid(i int) float64 {
	if i < 32 {
		return float64(i)
	}
	e := (i-32)/16 + 1
	m := uint64((i-32)%16 + 16)
	lo, hi := m<<e, (m+1)<<e
	return float64(lo+hi) / 2
}

func (h *histogram) add(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.buckets[bucketOf(uint64(us))].Add(1)
	h.count.Add(1)
	h.sumUS.Add(us)
	for {
		m := h.maxUS.Load()
		if us <= m || h.maxUS.CompareAndSwap(m, us) {
			break
		}
	}
}

func (h *histogram) latency() Latency {
	n := h.count.Load()
	if n == 0 {
		return Latency{}
	}
	var counts [len(h.buckets)]int64
	total := int64(0)
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	maxMS := float64(h.maxUS.Load()) / 1000
	pct := func(p float64) float64 {
		rank := int64(p * float64(total))
		if rank >= total {
			rank = total - 1
		}
		seen := int64(0)
		for i, c := range counts {
			seen += c
			if seen > rank {
				return min(bucketMid(i)/1000, maxMS)
			}
		}
		return maxMS
	}
	return Latency{
		P50:  pct(0.50),
		P90:  pct(0.90),
		P99:  pct(0.99),
		Max:  maxMS,
		Mean: float64(h.sumUS.Load()) / float64(n) / 1000,
	}
}
