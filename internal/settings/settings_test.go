package settings

import (
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// A settings.json of an earlier release (every field optional, pointers
// for the booleans) loads over the defaults; what is missing keeps its
// default, unknown keys are ignored, and saving writes every field.
func TestJSONKeepsTheFileFormat(t *testing.T) {
	old := `{"cira_addr":"127.0.0.1:4433","proxy_addr":"off","keepalive":"20s","legacy_tls":true,"mdns":false,"start_minimised":true,"from_the_future":1}`
	s := Defaults()
	if err := json.Unmarshal([]byte(old), &s); err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.CIRAAddr, want.ProxyAddr, want.Keepalive, want.LegacyTLS, want.MDNS, want.StartMinimised = "127.0.0.1:4433", Off, 20*time.Second, true, false, true
	if s != want {
		t.Fatalf("loaded %+v\nwant %+v", s, want)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if !strings.Contains(string(b), `"`+f.key+`":`) {
			t.Errorf("%s is not saved: %s", f.key, b)
		}
	}
	if !strings.Contains(string(b), `"keepalive":"20s"`) || !strings.Contains(string(b), `"legacy_tls":true`) {
		t.Errorf("saved as %s; want durations as strings and booleans as booleans", b)
	}
	back := Settings{}
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Fatalf("round trip: %+v, %v; want %+v", back, err, s)
	}
}

func TestJSONBadValueNamesKeyAndFlag(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"idle_timeout":"soon"}`, "idle_timeout (--idle-timeout)"},
		{`{"mdns":"perhaps"}`, "mdns (--mdns)"},
		{`{"log_level":"loud"}`, "log_level (--log-level)"},
		{`{"keepalive":"-5s"}`, "keepalive (--keepalive)"},
	} {
		s := Defaults()
		err := json.Unmarshal([]byte(c.in), &s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Unmarshal(%s) = %v; want an error naming %s", c.in, err, c.want)
		}
	}
}

// A flag given on the command line wins over the saved value, and the
// saved value over the default; the window's own settings are flags of
// the window only.
func TestFlagsAndFillUnset(t *testing.T) {
	s := Defaults()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s.Register(fs, Server)
	if err := fs.Parse([]string{"--keepalive", "10s", "--mdns=false"}); err != nil {
		t.Fatal(err)
	}
	if fs.Lookup("close-to-tray") != nil {
		t.Error("serve takes a window-only flag")
	}
	saved := Defaults()
	saved.CIRAAddr, saved.Keepalive, saved.MDNS, saved.CloseToTray = ":5000", 40*time.Second, true, false
	s.FillUnset(fs, saved)
	want := Defaults()
	want.CIRAAddr, want.Keepalive, want.MDNS = ":5000", 10*time.Second, false
	if s != want {
		t.Fatalf("got %+v\nwant %+v (close-to-tray is no flag of serve, so its saved value is not taken)", s, want)
	}
	w := Defaults()
	wfs := flag.NewFlagSet("presence", flag.ContinueOnError)
	w.Register(wfs, Server|Window)
	if err := wfs.Parse([]string{"--close-to-tray=false"}); err != nil || w.CloseToTray {
		t.Fatalf("--close-to-tray=false: %v, %v", err, w.CloseToTray)
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Settings)
		want string // "" valid
	}{
		{func(*Settings) {}, ""},
		{func(s *Settings) { s.ProxyAddr, s.APIAddr = Off, Off }, ""},
		{func(s *Settings) { s.CIRAAddr = Off }, "CIRA address"},
		{func(s *Settings) { s.ProxyAddr = "1080" }, "proxy address"},
		{func(s *Settings) { s.Keepalive = 500 * time.Millisecond }, "between 1s and 1h"},
		{func(s *Settings) { s.IdleTimeout = s.Keepalive }, "longer than the keepalive"},
		{func(s *Settings) { s.LogLevel = "loud" }, "log level"},
	} {
		s := Defaults()
		c.mod(&s)
		err := s.Check()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%+v) = %v; want %q", s, err, c.want)
		}
	}
}

// The devices allowed legacy TLS: a flag and a key of GUIDs in any form,
// kept canonical and without repeats; a bad GUID names the key; adding
// and removing one device leaves the others.
func TestLegacyTLSDevices(t *testing.T) {
	const a, b = "0123456789ABCDEF0123456789abcdef", "fedcba98-7654-3210-fedc-ba9876543210"
	s := Defaults()
	if err := json.Unmarshal([]byte(`{"legacy_tls_devices":"`+a+`, `+b+`,`+a+`"}`), &s); err != nil {
		t.Fatal(err)
	}
	want := []string{"01234567-89ab-cdef-0123-456789abcdef", b}
	if got := s.LegacyDevices(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("LegacyDevices = %v; want %v", got, want)
	}
	if err := json.Unmarshal([]byte(`{"legacy_tls_devices":"nope"}`), &s); err == nil || !strings.Contains(err.Error(), "legacy_tls_devices (--legacy-tls-devices)") {
		t.Errorf("a bad GUID: %v", err)
	}
	s2, err := s.WithLegacyDevice(strings.ToUpper(b), false)
	if err != nil || s2.LegacyTLSDevices != want[0] {
		t.Errorf("without %s: %q, %v", b, s2.LegacyTLSDevices, err)
	}
	s3, err := s2.WithLegacyDevice(b, true)
	if err != nil || strings.Join(s3.LegacyDevices(), " ") != strings.Join(want, " ") {
		t.Errorf("with %s again: %v, %v", b, s3.LegacyDevices(), err)
	}
	if _, err := s.WithLegacyDevice("x", true); err == nil {
		t.Error("WithLegacyDevice accepted a bad GUID")
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := Defaults()
	f.Register(fs, Server)
	if err := fs.Parse([]string{"--legacy-tls-devices", b}); err != nil || f.LegacyTLSDevices != b {
		t.Errorf("--legacy-tls-devices: %q, %v", f.LegacyTLSDevices, err)
	}
}
