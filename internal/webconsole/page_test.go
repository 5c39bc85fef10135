package webconsole_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// pageConfig is what the test page's script gets: amt-toolbox.md §3, "A
// test page".
type pageConfig struct {
	Host   string `json:"host"`   // the device GUID
	Token  string `json:"token"`  // the instance's run token: the only subprotocol
	Server string `json:"server"` // ws://127.0.0.1:<api>/relay
}

// pageHTML builds an AMTRedirector for SOL exactly as the DMT consoles do
// (mode sol, protocol 1, port 16994, user and pass empty so that Presence
// does the AMT login, tls 0, the token, and always server: without it the
// toolkit builds a URL with newlines in it). It sets onNewState (start
// throws without it), onProcessData, onStart and onError; shows the SOL
// text in #term and the state in #state; and sends every key typed on the
// page with the redirector's send(), as a terminal would. window.sol is
// what the test reads back.
const pageHTML = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Presence web console test</title>
<script src="/core.bundle.js"></script></head>
<body>
<p>state <span id="state">none</span></p>
<pre id="term" tabindex="0"></pre>
<script id="cfg" type="application/json">{{CONFIG}}</script>
<script>
"use strict";
const cfg = JSON.parse(document.getElementById("cfg").textContent);
const tk = window["ui-toolkit/core"];
const term = document.getElementById("term");
window.sol = { state: -1, states: [], text: "", starts: 0, errors: 0, tokenEchoed: false, thrown: "" };
try {
	const r = new tk.AMTRedirector({
		mode: "sol", protocol: 1, fr: new FileReader(),
		host: cfg.host, port: 16994, user: "", pass: "", tls: 0, tls1only: 0,
		authToken: cfg.token, server: cfg.server,
	});
	r.onNewState = (s) => {
		sol.state = s;
		sol.states.push(s);
		if (s === 3) sol.tokenEchoed = r.socket !== null && r.socket.protocol === cfg.token;
		document.getElementById("state").textContent = String(s);
	};
	r.onProcessData = (data) => { sol.text += data; term.textContent = sol.text; };
	r.onStart = () => { sol.starts++; };
	r.onError = () => { sol.errors++; };
	document.addEventListener("keydown", (e) => {
		const k = e.key === "Enter" ? "\r" : e.key === "Backspace" ? "\x7f" : e.key.length === 1 ? e.key : "";
		if (k !== "") { r.send(k); e.preventDefault(); }
	});
	window.redirector = r;
	r.start(WebSocket);
} catch (e) {
	sol.thrown = String(e);
}
</script>
</body></html>
`

// servePage serves the test page with cfg and the toolkit's bundle on a
// loopback port of its own (another origin than the API's, as a console
// served from elsewhere is), until the test ends. It returns the page's URL.
func servePage(t *testing.T, bundleDir string, cfg pageConfig) string {
	t.Helper()
	js, err := json.Marshal(cfg) // escapes <, > and &: safe inside <script>
	if err != nil {
		t.Fatal(err)
	}
	page := strings.Replace(pageHTML, "{{CONFIG}}", string(js), 1)
	bundle := filepath.Join(bundleDir, "bundles", "core.bundle.js")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, page)
	})
	mux.HandleFunc("GET /core.bundle.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		http.ServeFile(w, r, bundle)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer(mux) // 127.0.0.1:0
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}
