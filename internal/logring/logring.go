// Package logring keeps the latest log records in memory for the desktop
// window's Log screen: a slog.Handler that records into a bounded ring and
// passes every record on to another handler (stderr).
package logring

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Entry is one log record as the window shows it.
type Entry struct {
	Seq     uint64 // 1, 2, ...: increasing, for Since
	Time    time.Time
	Level   slog.Level
	Message string
	Attrs   string // key=value ..., as slog's text handler writes them
}

// Ring holds the latest entries. Its methods are safe for concurrent use.
type Ring struct {
	mu   sync.Mutex
	buf  []Entry // circular, len ≤ cap
	head int     // index of the oldest entry once full
	seq  uint64
	max  int
}

// New returns a ring that keeps the latest n entries (at least 1).
func New(n int) *Ring { return &Ring{max: max(n, 1)} }

func (r *Ring) add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	e.Seq = r.seq
	if len(r.buf) < r.max {
		r.buf = append(r.buf, e)
		return
	}
	r.buf[r.head] = e
	r.head = (r.head + 1) % r.max
}

// Since returns the entries after seq at level min or above, oldest first.
func (r *Ring) Since(seq uint64, min slog.Level) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Entry
	for i := range r.buf {
		e := r.buf[(r.head+i)%len(r.buf)]
		if e.Seq > seq && e.Level >= min {
			out = append(out, e)
		}
	}
	return out
}

// Last returns the sequence number of the newest entry (0: none yet).
func (r *Ring) Last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Handler returns a handler that records at level and above into the ring
// and passes every record next also handles on to next (nil: none).
func (r *Ring) Handler(level slog.Leveler, next slog.Handler) slog.Handler {
	return &handler{r: r, level: level, next: next}
}

type handler struct {
	r      *Ring
	level  slog.Leveler
	next   slog.Handler
	prefix string // attributes from WithAttrs, formatted
	group  string // group prefix for later keys ("a.b.")
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() || (h.next != nil && h.next.Enabled(ctx, l))
}

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= h.level.Level() {
		var b strings.Builder
		b.WriteString(h.prefix)
		rec.Attrs(func(a slog.Attr) bool {
			writeAttr(&b, h.group, a)
			return true
		})
		h.r.add(Entry{Time: rec.Time, Level: rec.Level, Message: rec.Message, Attrs: strings.TrimSpace(b.String())})
	}
	if h.next != nil && h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		writeAttr(&b, h.group, a)
	}
	c.prefix = b.String()
	if h.next != nil {
		c.next = h.next.WithAttrs(as)
	}
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	if h.next != nil {
		c.next = h.next.WithGroup(name)
	}
	return &c
}

// writeAttr writes " key=value", quoting values with spaces, and groups as
// dotted keys.
func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, x := range v.Group() {
			writeAttr(b, g, x)
		}
		return
	}
	if a.Equal(slog.Attr{}) {
		return
	}
	s := v.String()
	if strings.ContainsAny(s, " \t\n\"=") || s == "" {
		s = quote(s)
	}
	b.WriteByte(' ')
	b.WriteString(group + a.Key)
	b.WriteByte('=')
	b.WriteString(s)
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
