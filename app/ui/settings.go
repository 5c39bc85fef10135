package ui

import (
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/presence-mps/presence/internal/settings"
)

// SettingsBackend applies and keeps the settings.
type SettingsBackend interface {
	// Settings returns the settings in force.
	Settings() settings.Settings
	// ApplySettings puts s in force without dropping tunnels and keeps it
	// for the next start. It returns a note on what waits for a restart.
	ApplySettings(s settings.Settings) (note string, err error)
}

// SettingsScreen edits the settings.
type SettingsScreen struct {
	Root fyne.CanvasObject
	// Go runs the apply off the Fyne goroutine (default: a goroutine).
	Go func(func())

	b                                  SettingsBackend
	CIRA, Proxy, API, Keepalive, Idle  *widget.Entry
	LegacyTLS, MDNS, Minimised, ToTray *widget.Check
	Level                              *widget.Select
	ApplyBtn                           *widget.Button
	Message                            *widget.Label
}

// NewSettings builds the Settings screen over b, filled with b's settings.
func NewSettings(b SettingsBackend) *SettingsScreen {
	s := &SettingsScreen{b: b, Go: func(f func()) { go f() }}
	s.CIRA, s.Proxy, s.API = widget.NewEntry(), widget.NewEntry(), widget.NewEntry()
	s.Keepalive, s.Idle = widget.NewEntry(), widget.NewEntry()
	s.LegacyTLS = widget.NewCheck("Accept TLS 1.0 and 1.1 (AMT 11 and older)", nil)
	s.MDNS = widget.NewCheck("Advertise on the LAN (mDNS), so consoles find the proxy", nil)
	s.Minimised = widget.NewCheck("Start minimised to the tray", nil)
	s.ToTray = widget.NewCheck("Closing the window keeps Presence running in the tray", nil)
	s.Level = widget.NewSelect(settings.LogLevels, nil)
	s.Message = widget.NewLabel("")
	s.Message.Wrapping = fyne.TextWrapWord
	s.ApplyBtn = widget.NewButton("Apply", s.apply)
	s.ApplyBtn.Importance = widget.HighImportance
	form := widget.NewForm(
		widget.NewFormItem("CIRA address", s.CIRA),
		widget.NewFormItem("Proxy address", s.Proxy),
		widget.NewFormItem("API address", s.API),
		widget.NewFormItem("Keepalive", s.Keepalive),
		widget.NewFormItem("Idle timeout", s.Idle),
		widget.NewFormItem("", s.LegacyTLS),
		widget.NewFormItem("", s.MDNS),
		widget.NewFormItem("", s.Minimised),
		widget.NewFormItem("", s.ToTray),
		widget.NewFormItem("Log level", s.Level),
	)
	form.Items[1].HintText = `HOST:PORT, or "off"`
	form.Items[2].HintText = `takes effect at the next start; "off" turns it off`
	form.Items[3].HintText = "how often AMT sends keepalives, e.g. 30s"
	form.Items[4].HintText = "drop a silent tunnel after this long, e.g. 90s"
	note := widget.NewLabel("Changes apply at once. Connected devices stay connected: a new CIRA port takes new tunnels, and new keepalive settings reach a device when it next connects.")
	note.Wrapping = fyne.TextWrapWord
	s.Root = container.NewVScroll(container.NewVBox(form, note, container.NewHBox(s.ApplyBtn), s.Message))
	s.Fill(b.Settings())
	return s
}

// Fill puts v in the form.
func (s *SettingsScreen) Fill(v settings.Settings) {
	s.CIRA.SetText(v.CIRAAddr)
	s.Proxy.SetText(v.ProxyAddr)
	s.API.SetText(v.APIAddr)
	s.Keepalive.SetText(v.Keepalive.String())
	s.Idle.SetText(v.IdleTimeout.String())
	s.LegacyTLS.SetChecked(v.LegacyTLS)
	s.MDNS.SetChecked(v.MDNS)
	s.Minimised.SetChecked(v.StartMinimised)
	s.ToTray.SetChecked(v.CloseToTray)
	s.Level.SetSelected(v.LogLevel)
}

// Read returns the form's settings, or the first problem with them.
func (s *SettingsScreen) Read() (settings.Settings, error) {
	v := settings.Settings{
		CIRAAddr: strings.TrimSpace(s.CIRA.Text), ProxyAddr: strings.TrimSpace(s.Proxy.Text), APIAddr: strings.TrimSpace(s.API.Text),
		LegacyTLS: s.LegacyTLS.Checked, MDNS: s.MDNS.Checked, StartMinimised: s.Minimised.Checked, CloseToTray: s.ToTray.Checked,
		LogLevel: s.Level.Selected,
	}
	var err error
	if v.Keepalive, err = time.ParseDuration(strings.TrimSpace(s.Keepalive.Text)); err != nil {
		return v, fmt.Errorf("the keepalive %q is not a duration such as 30s or 1m", s.Keepalive.Text)
	}
	if v.IdleTimeout, err = time.ParseDuration(strings.TrimSpace(s.Idle.Text)); err != nil {
		return v, fmt.Errorf("the idle timeout %q is not a duration such as 90s or 2m", s.Idle.Text)
	}
	return v, v.Check()
}

func (s *SettingsScreen) apply() {
	v, err := s.Read()
	if err != nil {
		s.Message.SetText(sentence(err))
		return
	}
	s.ApplyBtn.Disable()
	s.Message.SetText("Applying…")
	s.Go(func() {
		note, err := s.b.ApplySettings(v)
		fyne.Do(func() {
			s.ApplyBtn.Enable()
			if err != nil {
				s.Message.SetText("The settings could not be applied: " + strings.TrimSuffix(err.Error(), ".") + ".")
				s.Fill(s.b.Settings())
				return
			}
			msg := "Applied and saved."
			if note != "" {
				msg += " " + note
			}
			s.Message.SetText(msg)
		})
	})
}

// sentence is an error's text as a sentence: a capital first letter and
// a full stop.
func sentence(err error) string {
	t := err.Error()
	if t == "" {
		return t
	}
	t = strings.ToUpper(t[:1]) + t[1:]
	if !strings.HasSuffix(t, ".") {
		t += "."
	}
	return t
}
