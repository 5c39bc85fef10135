package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
)

// Each kind of error of the toolbox gets its status (the end-to-end tests
// in internal/instance reach most of them over real tunnels; these are
// the ones hard to provoke there).
func TestAMTStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{&toolbox.NotOfferedError{Action: toolbox.On, Why: "the device is on already"}, 400},
		{toolbox.ErrBadCode, 400},
		{fmt.Errorf("x: %w", wsman.ErrConsentRequired), 403},
		{&wsman.StatusError{Class: "CIM_BootConfigSetting", Method: "ChangeBootOrder", Value: wsman.StatusUserConsentRequired}, 403},
		{&wsman.CredentialsError{User: "admin"}, 502},
		{fmt.Errorf("wsman: the AMT credentials of %q: %w", "g", vault.ErrNoAMTAccount), 502},
		{&wsman.TunnelError{Op: "dial", Err: fmt.Errorf("%w: no connected device", proxy.ErrUnknownHost)}, 404},
		{&wsman.TunnelError{Op: "read", Err: errors.New("EOF")}, 504},
		{&wsman.TunnelError{Op: "wait", Err: context.DeadlineExceeded}, 504},
		{&wsman.Fault{Status: 400, Subcode: "DestinationUnreachable"}, 501},
		{toolbox.ErrNoConsentService, 501},
		{wsman.ErrQueueFull, 503},
		{wsman.ErrClosed, 503},
		{fmt.Errorf("%w: too deep", wsman.ErrMalformed), 502},
		{&wsman.StatusError{Class: "AMT_AuditLog", Method: "ReadRecords", Value: 2}, 502},
		{&wsman.Fault{Status: 400, Subcode: "InvalidSelectors", Reason: "no"}, 502},
	} {
		code, sentence := amtStatus(tc.err)
		if code != tc.code || sentence == "" || sentence == "The request failed." && tc.code != 502 {
			t.Errorf("%v: %d %q; want %d", tc.err, code, sentence, tc.code)
		}
	}
	if _, s := amtStatus(fmt.Errorf("x: %w", vault.ErrNoAMTAccount)); s != errNoAMTAccountSentence {
		t.Errorf("no AMT account: %q", s)
	}
}

func TestAMTCapabilitiesJSON(t *testing.T) {
	in := AMTCapabilities{{"Reset", 10}, {"Power cycle", 5}, {`Odd "label"`, 2}}
	b, err := json.Marshal(in)
	if err != nil || string(b) != `{"Reset":10,"Power cycle":5,"Odd \"label\"":2}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var out AMTCapabilities
	if err := json.Unmarshal(b, &out); err != nil || len(out) != 3 || out[2] != in[2] {
		t.Fatalf("unmarshal = %v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`[1]`), &out); err == nil {
		t.Fatal("an array read as capabilities")
	}
}

func TestAMTConsentCode(t *testing.T) {
	for raw, want := range map[string]int{`123456`: 123456, `"012345"`: 12345, `7`: 7, `" 42 "`: 42} {
		if n, ok := (AMTConsentCode{ConsentCode: json.RawMessage(raw)}).code(); !ok || n != want {
			t.Errorf("%s = %d, %v; want %d", raw, n, ok, want)
		}
	}
	for _, raw := range []string{``, `null`, `"1234567"`, `-1`, `1.5`, `"12a456"`, `1e3`, `true`} {
		if n, ok := (AMTConsentCode{ConsentCode: json.RawMessage(raw)}).code(); ok {
			t.Errorf("%s read as %d", raw, n)
		}
	}
}

func TestCrossSite(t *testing.T) {
	for _, tc := range []struct {
		site, origin string
		cross        bool
	}{
		{"", "", false},
		{"cross-site", "", true},
		{"same-site", "", true},
		{"same-origin", "http://evil.example", false}, // the browser's word wins
		{"none", "", false},
		{"", "http://evil.example", true},
		{"", "http://127.0.0.1:16990", false},
		{"", "::bad::", true},
	} {
		r := httptest.NewRequest("POST", "http://127.0.0.1:16990/api/v1/amt/power/action/x", nil)
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := crossSite(r); got != tc.cross {
			t.Errorf("Sec-Fetch-Site %q, Origin %q: cross-site %v; want %v", tc.site, tc.origin, got, tc.cross)
		}
	}
}
