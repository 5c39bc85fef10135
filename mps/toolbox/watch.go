package toolbox

import (
	"cmp"
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/presence-mps/presence/mps/wsman"
)

// Defaults of [WatchOptions].
const (
	DefaultWatchEvery    = time.Minute
	DefaultSelectedEvery = 10 * time.Second
	DefaultWatchInFlight = 8
)

// WatchOptions tune a [Watch]. Zero fields take the defaults.
type WatchOptions struct {
	// Every is how often each device's power state is read: at most
	// one call a device per Every (default a minute), so a window open
	// all day does not keep AMT busy.
	Every time.Duration
	// SelectedEvery is how often the selected device is read (default
	// 10 s).
	SelectedEvery time.Duration
	// InFlight caps the watch's calls at once, over all devices
	// (default 8): the window's column fills in a few seconds for a
	// thousand devices without crowding out the admin's own calls.
	InFlight int
	// OnChange, if set, is called (from the watch's goroutines) when a
	// device's reading changed.
	OnChange func(device string)
}

// PowerReading is the last power state read of a device.
type PowerReading struct {
	State wsman.PowerState
	At    time.Time // when it was read
	Err   error     // why the last read failed (State is then the one before)
}

// Watch keeps the power state of a set of devices, read gently, for the
// window's Power column. Use [Toolbox.Watch]; Close it when done.
type Watch struct {
	t    *Toolbox
	opts WatchOptions

	mu       sync.Mutex
	devices  map[string]*watched // guarded by mu
	due      dueHeap             // the devices not being read, soonest first; guarded by mu
	selected string              // guarded by mu
	inFlight int                 // reads running; guarded by mu
	closed   bool                // guarded by mu

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type watched struct {
	device   string
	next     time.Time
	index    int // in due, -1 while it is being read or once dropped
	inFlight bool
	again    bool // asked for while being read: read again at once
	reading  PowerReading
	read     bool // reading holds a result
}

// dueHeap orders devices by their next read, so that a wake costs
// O(log n) per read started rather than a sort of every device.
type dueHeap []*watched

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*watched)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// resched moves e to next in the heap (e is not being read).
func (w *Watch) resched(e *watched, next time.Time) {
	if e.inFlight {
		e.again = true // the read running may predate what was asked for
		return
	}
	e.next = next
	if e.index >= 0 {
		heap.Fix(&w.due, e.index)
	}
}

// Watch starts a watch over no devices; give it some with SetDevices.
func (t *Toolbox) Watch(opts WatchOptions) *Watch {
	opts.Every = cmp.Or(opts.Every, DefaultWatchEvery)
	opts.SelectedEvery = cmp.Or(opts.SelectedEvery, DefaultSelectedEvery)
	opts.InFlight = cmp.Or(opts.InFlight, DefaultWatchInFlight)
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watch{t: t, opts: opts, devices: map[string]*watched{}, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	w.wg.Add(1)
	go w.loop()
	return w
}

// SetDevices replaces the devices watched (GUIDs). New ones are read at
// once (InFlight at a time); the readings of the others are kept.
func (w *Watch) SetDevices(devices []string) {
	w.mu.Lock()
	keep := make(map[string]*watched, len(devices))
	for _, d := range devices {
		if e, ok := w.devices[d]; ok {
			keep[d] = e
		} else {
			keep[d] = &watched{device: d, index: -1}
		}
	}
	for _, e := range w.devices {
		e.index = -1
	}
	w.devices = keep
	w.due = w.due[:0]
	for _, e := range keep {
		if !e.inFlight {
			w.due = append(w.due, e)
		}
	}
	for i, e := range w.due {
		e.index = i
	}
	heap.Init(&w.due)
	w.mu.Unlock()
	w.poke()
}

// Select makes a device the selected one ("" for none): it is read every
// SelectedEvery, and at once if its reading is older than that.
func (w *Watch) Select(device string) {
	w.mu.Lock()
	w.selected = device
	if e, ok := w.devices[device]; ok && time.Since(e.reading.At) >= w.opts.SelectedEvery {
		w.resched(e, time.Time{})
	}
	w.mu.Unlock()
	w.poke()
}

// Refresh reads a device again at once (after a power action, say).
func (w *Watch) Refresh(device string) {
	w.mu.Lock()
	if e, ok := w.devices[device]; ok {
		w.resched(e, time.Time{})
	}
	w.mu.Unlock()
	w.poke()
}

// Get returns the device's last reading, and false if it has none yet.
func (w *Watch) Get(device string) (PowerReading, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.devices[device]
	if !ok || !e.read {
		return PowerReading{}, false
	}
	return e.reading, true
}

// Close stops the watch and waits for its calls.
func (w *Watch) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

func (w *Watch) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watch) loop() {
	defer w.wg.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		w.launch()
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		case <-w.wake:
		}
	}
}

// launch starts the reads that are due, oldest first, up to InFlight.
func (w *Watch) launch() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	now := time.Now()
	for w.inFlight < w.opts.InFlight && len(w.due) > 0 && !w.due[0].next.After(now) {
		e := heap.Pop(&w.due).(*watched)
		e.inFlight = true
		w.inFlight++
		w.wg.Add(1)
		go w.read(e.device, e)
	}
}

func (w *Watch) read(device string, e *watched) {
	defer w.wg.Done()
	ps, err := w.t.c.PowerState(w.ctx, device)
	if w.ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	e.inFlight = false
	w.inFlight--
	now := time.Now()
	every := w.opts.Every
	if device == w.selected {
		every = w.opts.SelectedEvery
	}
	e.next = now.Add(every)
	if e.again {
		e.next, e.again = time.Time{}, false
	}
	before, had := e.reading, e.read
	e.reading.At, e.reading.Err = now, err
	if err == nil {
		e.reading.State = ps
	}
	e.read = true
	changed := !had || before.State.State != e.reading.State.State || (before.Err == nil) != (err == nil) ||
		(err != nil && before.Err.Error() != err.Error())
	cur, still := w.devices[device]
	still = still && cur == e
	if still {
		heap.Push(&w.due, e)
	}
	w.mu.Unlock()
	w.poke() // a slot is free
	if changed && still && w.opts.OnChange != nil {
		w.opts.OnChange(device)
	}
}
