package vault_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/presence-mps/presence/vault"
)

const password = "hunter2-Sup3rSecret"

func TestSecretNeverPrints(t *testing.T) {
	s := vault.Secret(password)
	if s.Reveal() != password {
		t.Fatalf("Reveal() = %q; want the value", s.Reveal())
	}
	type login struct {
		User     string
		Password vault.Secret
		Ptr      *vault.Secret
	}
	l := login{User: "admin", Password: s, Ptr: &s}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s", "%-8v", "%T"} {
		outputs = append(outputs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, l), fmt.Sprintf(verb, []vault.Secret{s}))
	}
	outputs = append(outputs, fmt.Sprint(s), fmt.Sprintln(s, l), s.String(), s.GoString())
	if got := fmt.Sprintf("%q", s); got != `"REDACTED"` {
		t.Errorf(`Sprintf("%%q") = %s; want "REDACTED"`, got)
	}

	js, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(js))
	if !strings.Contains(string(js), `"Password":"REDACTED"`) {
		t.Errorf("json = %s; want the password REDACTED", js)
	}

	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(h(&buf))
		log.Info("login", "password", s, "login", l, slog.Any("ptr", &s), slog.Group("g", "pw", s))
		log.With("pw", s).WithGroup("x").Info("again", "pw", s)
		outputs = append(outputs, buf.String())
		if !strings.Contains(buf.String(), "REDACTED") {
			t.Errorf("slog output %q lacks REDACTED", buf.String())
		}
	}

	for _, out := range outputs {
		if strings.Contains(out, password) || strings.Contains(out, fmt.Sprintf("%x", password)) || strings.Contains(out, "hunter2") {
			t.Errorf("output shows the secret: %s", out)
		}
	}
}
