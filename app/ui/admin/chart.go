package admin

import (
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// Span is a time the tunnel was up, [Start, End).
type Span struct{ Start, End time.Time }

// Availability is when a device's tunnel was up in the window [From, To).
type Availability struct {
	From, To time.Time
	Up       []Span // oldest first
}

// Length returns the length of the window.
func (a Availability) Length() time.Duration { return a.To.Sub(a.From) }

// UpTime returns how long the tunnel was up in the window: the spans' total
// length, each cut to the window.
func (a Availability) UpTime() time.Duration {
	var d time.Duration
	for _, s := range a.Up {
		if s, ok := a.clip(s); ok {
			d += s.End.Sub(s.Start)
		}
	}
	return d
}

// Fraction returns UpTime over the window's length (0 for an empty window).
func (a Availability) Fraction() float64 {
	if a.Length() <= 0 {
		return 0
	}
	return float64(a.UpTime()) / float64(a.Length())
}

// clip cuts s to the window and reports whether anything is left.
func (a Availability) clip(s Span) (Span, bool) {
	if s.Start.Before(a.From) {
		s.Start = a.From
	}
	if s.End.After(a.To) {
		s.End = a.To
	}
	return s, s.End.After(s.Start)
}

// chartResolution is how many parts of the window the chart tells apart:
// spans closer together than one part are drawn as one bar, so a device
// that flapped ten thousand times is still a few hundred rectangles.
const chartResolution = 1000

// bars returns the spans to draw: clipped, and merged where the gap
// between them is below the chart's resolution.
func (a Availability) bars() []Span {
	var out []Span
	gap := a.Length() / chartResolution
	for _, s := range a.Up {
		s, ok := a.clip(s)
		if !ok {
			continue
		}
		if n := len(out); n > 0 && s.Start.Sub(out[n-1].End) <= gap {
			if s.End.After(out[n-1].End) {
				out[n-1].End = s.End
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// Chart draws an [Availability] as a horizontal bar: the window in grey,
// the spans the tunnel was up in green. Use it on the Fyne goroutine.
type Chart struct {
	widget.BaseWidget
	a Availability
}

// NewChart returns an empty chart.
func NewChart() *Chart {
	c := &Chart{}
	c.ExtendBaseWidget(c)
	return c
}

// Set shows a.
func (c *Chart) Set(a Availability) {
	c.a = a
	c.Refresh()
}

// CreateRenderer implements fyne.Widget.
func (c *Chart) CreateRenderer() fyne.WidgetRenderer {
	r := &chartRenderer{c: c, down: canvas.NewRectangle(theme.Color(theme.ColorNameDisabledButton))}
	r.Refresh()
	return r
}

type chartRenderer struct {
	c     *Chart
	down  *canvas.Rectangle
	up    []*canvas.Rectangle
	spans []Span // what up draws
	size  fyne.Size
}

func (r *chartRenderer) Layout(size fyne.Size) {
	r.size = size
	r.down.Move(fyne.NewPos(0, 0))
	r.down.Resize(size)
	a := r.c.a
	w := float64(a.Length())
	for i, s := range r.spans {
		x := float32(float64(s.Start.Sub(a.From)) / w * float64(size.Width))
		width := float32(float64(s.End.Sub(s.Start)) / w * float64(size.Width))
		if width < 1 {
			width = 1 // an outage-free minute in a month is still seen
		}
		r.up[i].Move(fyne.NewPos(x, 0))
		r.up[i].Resize(fyne.NewSize(width, size.Height))
	}
}

func (r *chartRenderer) MinSize() fyne.Size {
	return fyne.NewSize(120, theme.Size(theme.SizeNameText)+2*theme.Size(theme.SizeNameInnerPadding))
}

func (r *chartRenderer) Refresh() {
	r.spans = nil
	if r.c.a.Length() > 0 {
		r.spans = r.c.a.bars()
	}
	r.down.FillColor = theme.Color(theme.ColorNameDisabledButton)
	for len(r.up) < len(r.spans) {
		r.up = append(r.up, canvas.NewRectangle(nil))
	}
	r.up = r.up[:len(r.spans)]
	for _, u := range r.up {
		u.FillColor = theme.Color(theme.ColorNameSuccess)
	}
	r.Layout(r.size)
	for _, o := range r.Objects() {
		canvas.Refresh(o)
	}
}

func (r *chartRenderer) Objects() []fyne.CanvasObject {
	objs := make([]fyne.CanvasObject, 0, 1+len(r.up))
	objs = append(objs, r.down)
	for _, u := range r.up {
		objs = append(objs, u)
	}
	return objs
}

func (r *chartRenderer) Destroy() {}
