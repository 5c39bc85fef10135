package ui

import (
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// Overview is the first screen: listeners, counts, the fleet (its peers,
// etcd, Send devices home), a chart of connected devices and the latest
// events.
type Overview struct {
	Status, Counts, Events *widget.Label
	Chart                  *Chart
	Fleet                  fleetView
}

func (o *Overview) build(u *UI) fyne.CanvasObject {
	o.Status = widget.NewLabel("")
	o.Status.Wrapping = fyne.TextWrapWord
	o.Counts = widget.NewLabel("")
	o.Counts.Wrapping = fyne.TextWrapWord
	o.Events = widget.NewLabel("")
	o.Chart = NewChart()
	head := container.NewVBox(
		widget.NewLabelWithStyle("Presence", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		o.Status, o.Counts,
		o.Fleet.build(u),
		widget.NewLabelWithStyle("Devices connected", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		o.Chart,
		widget.NewLabelWithStyle("Latest events", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}))
	root := container.NewBorder(head, nil, nil, nil, container.NewVScroll(o.Events))
	o.Fleet.relayout = root.Refresh
	return root
}

func (o *Overview) apply(s Snapshot) {
	state := fmt.Sprintf("Listening: CIRA %s · proxy %s · API %s", or(s.CIRA), or(s.Proxy), or(s.API))
	if s.Paused {
		state = "Paused: no new tunnels or console connections are accepted (resume from the tray). API " + or(s.API)
	}
	setText(o.Status, state)
	setText(o.Counts, fmt.Sprintf("%d devices connected · %d console sessions · %s to devices, %s from devices · %d tunnels accepted, %d refused since start",
		len(s.Devices), len(s.Sessions), bytesText(s.BytesToDevices), bytesText(s.BytesFromDevices), s.Accepted, s.Failures))
	o.Fleet.apply(s)
	o.Chart.SetSamples(s.Samples)
	var b strings.Builder
	for i, e := range s.Recent {
		if i == 30 {
			break
		}
		fmt.Fprintf(&b, "%s  %s %s", e.Time.Local().Format(time.TimeOnly), e.Device, e.Kind)
		if e.Reason != "" {
			b.WriteString(" (" + e.Reason + ")")
		}
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		b.WriteString("No device has come or gone since Presence started.")
	}
	setText(o.Events, strings.TrimRight(b.String(), "\n"))
}

// Chart draws the number of connected devices over time as a line, with
// the latest and the highest value as text. Its drawing is plain canvas
// objects, rebuilt when the samples or the size change.
type Chart struct {
	widget.BaseWidget
	samples []Sample
	label   *canvas.Text
}

// NewChart returns an empty chart.
func NewChart() *Chart {
	c := &Chart{label: canvas.NewText("", theme.Color(theme.ColorNameForeground))}
	c.label.TextSize = theme.CaptionTextSize()
	c.ExtendBaseWidget(c)
	return c
}

// SetSamples replaces the samples and redraws, if they changed.
func (c *Chart) SetSamples(s []Sample) {
	// The last sample is "now": a new time alone does not redraw.
	same := len(s) == len(c.samples) && (len(s) == 0 || s[len(s)-1].Devices == c.samples[len(c.samples)-1].Devices && s[0] == c.samples[0])
	c.samples = s
	if !same {
		c.Refresh()
	}
}

// Label returns the chart's caption, for tests.
func (c *Chart) Label() string { return c.label.Text }

func (c *Chart) CreateRenderer() fyne.WidgetRenderer {
	return &chartRenderer{c: c}
}

type chartRenderer struct {
	c       *Chart
	objects []fyne.CanvasObject
	size    fyne.Size
}

func (r *chartRenderer) MinSize() fyne.Size { return fyne.NewSize(200, 120) }

func (r *chartRenderer) Layout(size fyne.Size) {
	r.size = size
	r.draw()
}

func (r *chartRenderer) Refresh() {
	r.draw()
	canvas.Refresh(r.c)
}

func (r *chartRenderer) Objects() []fyne.CanvasObject { return r.objects }
func (r *chartRenderer) Destroy()                     {}

// maxPoints caps the line's segments whatever the number of samples.
const maxPoints = 240

// draw rebuilds the line from the samples: at most maxPoints points, each
// the highest count of the samples it stands for.
func (r *chartRenderer) draw() {
	c := r.c
	w, h := r.size.Width, r.size.Height
	axis := canvas.NewLine(theme.Color(theme.ColorNameDisabled))
	axis.Position1, axis.Position2 = fyne.NewPos(0, h), fyne.NewPos(w, h)
	objs := []fyne.CanvasObject{axis}
	s := c.samples
	peak := 0
	for _, x := range s {
		peak = max(peak, x.Devices)
	}
	switch {
	case len(s) == 0:
		c.label.Text = "No samples yet."
	default:
		span := "the last minute"
		if d := s[len(s)-1].Time.Sub(s[0].Time).Round(time.Minute); d >= time.Minute {
			span = strings.TrimSuffix(d.String(), "0s")
		}
		c.label.Text = fmt.Sprintf("now %d · highest %d · over %s", s[len(s)-1].Devices, peak, span)
	}
	if len(s) > 1 && w > 0 && h > 0 {
		n := min(len(s), maxPoints)
		pts := make([]int, n)
		for i := range pts {
			lo, hi := i*len(s)/n, (i+1)*len(s)/n
			for _, x := range s[lo:hi] {
				pts[i] = max(pts[i], x.Devices)
			}
		}
		scale := float32(1)
		if peak > 0 {
			scale = (h - 20) / float32(peak)
		}
		col := theme.Color(theme.ColorNamePrimary)
		pos := func(i int) fyne.Position {
			return fyne.NewPos(float32(i)*w/float32(n-1), h-float32(pts[i])*scale)
		}
		for i := 1; i < n; i++ {
			l := canvas.NewLine(col)
			l.StrokeWidth = 2
			l.Position1, l.Position2 = pos(i-1), pos(i)
			objs = append(objs, l)
		}
	}
	c.label.Color = theme.Color(theme.ColorNameForeground)
	c.label.Move(fyne.NewPos(4, 0))
	c.label.Resize(fyne.NewSize(w, 16))
	objs = append(objs, c.label)
	r.objects = objs
}
