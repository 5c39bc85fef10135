package api

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// pac serves a proxy auto-config file that sends device names to the proxy
// and everything else DIRECT. Every client gets the rules for "*.amt" and
// GUID-shaped names; a logged-in client also gets the host names and
// aliases of the devices connected now (an anonymous client learns no
// device name).
func (a *API) pac(w http.ResponseWriter, r *http.Request) {
	proxyAddr := a.cfg.ProxyAddr
	if proxyAddr == "" {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		proxyAddr = net.JoinHostPort(host, strconv.FormatInt(a.proxyPort.Load(), 10))
	}
	var names []string
	if _, outcome := a.authenticate(r); outcome == loginOK {
		for _, d := range a.cfg.Server.Devices() {
			if d.Hostname != "" {
				names = append(names, strings.ToLower(d.Hostname))
			}
		}
		for alias := range a.cfg.Server.Aliases() {
			names = append(names, alias)
		}
		slices.Sort(names)
		names = slices.Compact(names)
	}
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, pacScript(proxyAddr, names))
}

// pacScript renders the PAC file. Names are quoted with strconv.Quote,
// which also escapes anything a hostile host name could carry.
func pacScript(proxyAddr string, names []string) string {
	var b strings.Builder
	b.WriteString("// Presence: Intel AMT devices through the Presence proxy, everything else direct.\n")
	b.WriteString("var devices = {")
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(n) + ": 1")
	}
	b.WriteString("};\n")
	fmt.Fprintf(&b, `function FindProxyForURL(url, host) {
  var h = host.toLowerCase();
  var p = %s;
  if (dnsDomainIs(h, ".amt")) return p;
  if (/^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/.test(h)) return p;
  if (devices.hasOwnProperty(h)) return p;
  return "DIRECT";
}
`, strconv.Quote("PROXY "+proxyAddr))
	return b.String()
}
