package amtsim

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// WS-Man names the simulated device understands.
const (
	ActionGet                     = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
	ActionGetResponse             = "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse"
	ActionPut                     = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put"
	ActionPutResponse             = "http://schemas.xmlsoap.org/ws/2004/09/transfer/PutResponse"
	ActionEnumerate               = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
	ActionEnumerateResponse       = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/EnumerateResponse"
	ActionPull                    = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"
	ActionPullResponse            = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/PullResponse"
	ActionRelease                 = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release"
	ActionReleaseResponse         = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/ReleaseResponse"
	ResourceGeneralSettings       = "http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings"
	ResourceComputerSystemPackage = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ComputerSystemPackage"
)

// Resource URI bases (amt-toolbox.md §1.0): a class's resource URI is its
// base and its name.
const (
	ResourceBaseAMT = "http://intel.com/wbem/wscim/1/amt-schema/1/"
	ResourceBaseCIM = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
	ResourceBaseIPS = "http://intel.com/wbem/wscim/1/ips-schema/1/"
)

// ResourceURI returns the resource URI of an AMT_, CIM_ or IPS_ class.
func ResourceURI(class string) string {
	switch {
	case strings.HasPrefix(class, "AMT_"):
		return ResourceBaseAMT + class
	case strings.HasPrefix(class, "IPS_"):
		return ResourceBaseIPS + class
	}
	return ResourceBaseCIM + class
}

const (
	nsSOAP        = "http://www.w3.org/2003/05/soap-envelope"
	nsAddressing  = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
	nsWSMan       = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
	nsEnumeration = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
	nsTransfer    = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
	nsCommon      = "http://schemas.dmtf.org/wbem/wscim/1/common"
	anonymous     = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
	actionFault   = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"

	defaultNonceLifetime = 5 * time.Minute
	defaultMaxBody       = 64 << 10
	maxAuthHeader        = 4 << 10
	maxEnumContexts      = 32  // open enumerations per handler; the oldest goes first
	maxPullElements      = 999 // GWM's default MaxElements
)

// WSManConfig configures [WSManHandler].
type WSManConfig struct {
	UUID       apf.UUID
	Hostname   string
	DomainName string
	// User is the AMT admin user; default [DefaultAMTUser].
	User string
	// Password is the admin password; when empty every request is refused.
	Password []byte
	// NonceLifetime is how long a digest nonce stays valid (then the client
	// gets stale=true); default 5 minutes.
	NonceLifetime time.Duration
	// MaxBody caps the request body; default 64 KiB.
	MaxBody int64
	// Platform is the simulated platform the calls read and change; nil
	// means one of its own with the defaults ([NewPlatform] with a nil
	// [AMTConfig]).
	Platform *Platform
}

// PlatformGUID renders a device UUID the way AMT's
// CIM_ComputerSystemPackage.PlatformGUID does: the 16 bytes in wire order
// as 32 upper-case hex digits without dashes.
func PlatformGUID(u apf.UUID) string { return strings.ToUpper(hex.EncodeToString(u[:])) }

// WSManHandler returns the WS-Man service of a simulated AMT: POST /wsman
// with HTTP digest authentication (RFC 7616 with MD5 and qop="auth", the
// realm "Digest:" and the PlatformGUID, like real AMT's realm). Every reply
// carries AMT's Server header with the platform's version.
//
// It answers the calls of amt-toolbox.md §1.1 (see toolbox.go for the
// classes, their methods and the state rules): transfer Get and, where a
// class allows it, Put; Enumerate, Pull (with MaxElements) and Release;
// and the classes' methods, whose ReturnValue carries AMT's status codes.
// A resource the platform does not have (an unknown class, or one its AMT
// version or hardware lacks) gets a wsa:DestinationUnreachable fault with
// the InvalidResourceURI detail, and an action a class does not support a
// wsa:ActionNotSupported fault, both with status 400, as AMT answers.
//
// Nonces are stateless (an HMAC over an expiry time) and nonce counts are
// not tracked, so a captured request can be replayed while its nonce lives:
// acceptable for a simulator, not for a real service.
func WSManHandler(cfg WSManConfig) http.Handler { return makeWSMan(cfg) }

func makeWSMan(cfg WSManConfig) *wsman {
	if cfg.User == "" {
		cfg.User = DefaultAMTUser
	}
	if cfg.NonceLifetime <= 0 {
		cfg.NonceLifetime = defaultNonceLifetime
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = defaultMaxBody
	}
	cfg.Password = append([]byte(nil), cfg.Password...)
	h := &wsman{cfg: cfg, guid: PlatformGUID(cfg.UUID), plat: cfg.Platform}
	if h.plat == nil {
		h.plat, _ = NewPlatform(nil, cfg.UUID, nil) // the defaults are valid
	}
	h.realm = "Digest:" + h.guid
	h.server = "Intel(R) Active Management Technology " + h.plat.Version()
	rand.Read(h.key[:])
	return h
}

type wsman struct {
	cfg    WSManConfig
	guid   string
	realm  string
	server string
	key    [32]byte
	msgID  atomic.Uint64
	plat   *Platform

	// Open enumerations, guarded by plat.mu.
	enums     map[string]*enumeration
	enumOrder []string
	enumNext  uint32
}

// enumeration is an open Enumerate: a snapshot of the instances, and how
// many Pulls have taken.
type enumeration struct {
	class string
	items []*instance
	pos   int
}

func (h *wsman) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", h.server)
	if r.URL.Path != "/wsman" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ok, stale, failedUser := h.authorized(r, time.Now()); !ok {
		if failedUser != "" {
			h.plat.loginFailed(failedUser, r.RemoteAddr)
		}
		h.challenge(w, stale)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "cannot read the request body", http.StatusBadRequest)
		return
	}
	status, out := h.serve(body, r.RemoteAddr)
	writeSOAP(w, status, out)
}

// serve answers an authenticated request body from the console at addr.
func (h *wsman) serve(body []byte, addr string) (int, string) {
	rq, err := parseRequest(body)
	if err != nil {
		return http.StatusBadRequest, h.faultBody("", "b:InvalidMessageInformationHeader", "The request is not a SOAP envelope.", "")
	}
	rq.action, rq.resource, rq.messageID = strings.TrimSpace(rq.action), strings.TrimSpace(rq.resource), strings.TrimSpace(rq.messageID)
	return h.dispatch(rq, addr)
}

func writeSOAP(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if body == "" { // a bare status, as AMT 19 answers some bad input
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/soap+xml;charset=UTF-8")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// header writes the envelope start and the response header.
func (h *wsman) header(b *strings.Builder, action, relatesTo, resource, extraNS string) {
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<a:Envelope xmlns:a="` + nsSOAP + `" xmlns:b="` + nsAddressing + `" xmlns:c="` + nsWSMan + `"`)
	b.WriteString(` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"` + extraNS + `>`)
	b.WriteString(`<a:Header><b:To>` + anonymous + `</b:To><b:RelatesTo>`)
	esc(b, relatesTo)
	b.WriteString(`</b:RelatesTo><b:Action a:mustUnderstand="true">`)
	esc(b, action)
	b.WriteString(`</b:Action>`)
	fmt.Fprintf(b, `<b:MessageID>uuid:00000000-8086-8086-8086-%012X</b:MessageID>`, h.msgID.Add(1))
	if resource != "" {
		b.WriteString(`<c:ResourceURI>`)
		esc(b, resource)
		b.WriteString(`</c:ResourceURI>`)
	}
	b.WriteString(`</a:Header>`)
}

// generalSettings is AMT_GeneralSettings (amt-toolbox.md §1.1 row 8).
func (h *wsman) generalSettings() *instance {
	in := newInstance("AMT_GeneralSettings")
	in.set("AMTNetworkEnabled", "1")
	in.set("DDNSPeriodicUpdateInterval", "1440")
	in.set("DDNSTTL", "900")
	in.set("DDNSUpdateByDHCPServerEnabled", "true")
	in.set("DDNSUpdateEnabled", "false")
	in.set("DHCPv6ConfigurationTimeout", "0")
	in.set("DigestRealm", h.realm)
	in.set("DomainName", h.cfg.DomainName)
	in.set("ElementName", "Intel(r) AMT: General Settings")
	in.set("HostName", h.cfg.Hostname)
	fqdn := h.cfg.Hostname
	if h.cfg.DomainName != "" {
		fqdn += "." + h.cfg.DomainName
	}
	in.set("HostOSFQDN", fqdn)
	in.set("IdleWakeTimeout", "65535")
	in.set("InstanceID", "Intel(r) AMT: General Settings")
	in.set("NetworkInterfaceEnabled", "true")
	in.set("PingResponseEnabled", "true")
	in.set("PowerSource", "0")
	in.set("PreferredAddressFamily", "0")
	in.set("PresenceNotificationInterval", "0")
	in.set("PrivacyLevel", "0")
	in.set("RmcpPingResponseEnabled", "true")
	in.set("SharedFQDN", "true")
	in.set("ThunderboltDockEnabled", "0")
	in.set("WsmanOnlyMode", "false")
	return in
}

// computerSystemPackage is CIM_ComputerSystemPackage, which carries the
// PlatformGUID.
func (h *wsman) computerSystemPackage() *instance {
	in := newInstance("CIM_ComputerSystemPackage")
	in.raw("Antecedent", eprXML("CIM_Chassis", "CreationClassName", "CIM_Chassis", "Tag", "CIM_Chassis"))
	in.raw("Dependent", eprXML("CIM_ComputerSystem", "CreationClassName", "CIM_ComputerSystem", "Name", "ManagedSystem"))
	in.set("PlatformGUID", h.guid)
	return in
}

// eprXML renders an endpoint reference to class with selectors given as
// name, value pairs, for the inside of a reference property.
func eprXML(class string, selectors ...string) string {
	var b strings.Builder
	b.WriteString(`<b:Address>` + anonymous + `</b:Address><b:ReferenceParameters><c:ResourceURI>`)
	esc(&b, ResourceURI(class))
	b.WriteString(`</c:ResourceURI><c:SelectorSet>`)
	for i := 0; i+1 < len(selectors); i += 2 {
		b.WriteString(`<c:Selector Name="`)
		esc(&b, selectors[i])
		b.WriteString(`">`)
		esc(&b, selectors[i+1])
		b.WriteString(`</c:Selector>`)
	}
	b.WriteString(`</c:SelectorSet></b:ReferenceParameters>`)
	return b.String()
}

// faultBody renders a SOAP fault, which AMT sends with status 400. A
// subcode's prefix is a, b or c (SOAP, addressing, WS-Man), or g
// (enumeration) or t (transfer), declared where it is used.
func (h *wsman) faultBody(relatesTo, subcode, reason, detail string) string {
	var b strings.Builder
	h.header(&b, actionFault, relatesTo, "", "")
	b.WriteString(`<a:Body><a:Fault><a:Code><a:Value>a:Sender</a:Value><a:Subcode><a:Value`)
	switch {
	case strings.HasPrefix(subcode, "g:"):
		b.WriteString(` xmlns:g="` + nsEnumeration + `"`)
	case strings.HasPrefix(subcode, "t:"):
		b.WriteString(` xmlns:t="` + nsTransfer + `"`)
	}
	b.WriteString(`>` + subcode + `</a:Value></a:Subcode></a:Code>`)
	b.WriteString(`<a:Reason><a:Text xml:lang="en-US">`)
	esc(&b, reason)
	b.WriteString(`</a:Text></a:Reason>`)
	if detail != "" {
		b.WriteString(`<a:Detail><c:FaultDetail>` + detail + `</c:FaultDetail></a:Detail>`)
	}
	b.WriteString(`</a:Fault></a:Body></a:Envelope>`)
	return b.String()
}

func esc(b *strings.Builder, s string) {
	xml.EscapeText(b, []byte(s))
}

// challenge answers 401 with a fresh nonce.
func (h *wsman) challenge(w http.ResponseWriter, stale bool) {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Digest realm="%s", nonce="%s", stale="%t", qop="auth"`,
		h.realm, h.nonce(time.Now()), stale))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusUnauthorized)
}

// nonce is hex(expiry ‖ 8 random bytes ‖ HMAC-SHA256(key, first 16)[:16]).
func (h *wsman) nonce(now time.Time) string {
	var b [32]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.Add(h.cfg.NonceLifetime).UnixNano()))
	rand.Read(b[8:16])
	copy(b[16:], h.mac(b[:16]))
	return hex.EncodeToString(b[:])
}

func (h *wsman) mac(b []byte) []byte {
	m := hmac.New(sha256.New, h.key[:])
	m.Write(b)
	return m.Sum(nil)[:16]
}

// checkNonce reports whether n is one of ours and, if so, whether it has
// expired.
func (h *wsman) checkNonce(n string, now time.Time) (ours, expired bool) {
	b, err := hex.DecodeString(n)
	if err != nil || len(b) != 32 || !hmac.Equal(b[16:], h.mac(b[:16])) {
		return false, false
	}
	return true, now.UnixNano() > int64(binary.BigEndian.Uint64(b[:8]))
}

// authorized verifies the request's digest credentials. stale reports a
// correct response computed with an expired nonce; failedUser names the
// user of a wrong response to a live nonce of ours, a failed login that
// AMT records (a request without credentials is not one).
func (h *wsman) authorized(r *http.Request, now time.Time) (ok, stale bool, failedUser string) {
	hdr := r.Header.Get("Authorization")
	if hdr == "" || len(hdr) > maxAuthHeader || len(h.cfg.Password) == 0 {
		return false, false, ""
	}
	p, isDigest := parseDigest(hdr)
	if !isDigest {
		return false, false, ""
	}
	if p["realm"] != h.realm || p["uri"] != r.RequestURI || p["qop"] != "auth" ||
		p["cnonce"] == "" || len(p["nc"]) != 8 ||
		(p["algorithm"] != "" && !strings.EqualFold(p["algorithm"], "MD5")) {
		return false, false, ""
	}
	ours, expired := h.checkNonce(p["nonce"], now)
	if !ours {
		return false, false, ""
	}
	ha1 := md5.New()
	io.WriteString(ha1, h.cfg.User+":"+h.realm+":")
	ha1.Write(h.cfg.Password)
	ha2 := md5hex(r.Method + ":" + p["uri"])
	want := md5hex(hex.EncodeToString(ha1.Sum(nil)) + ":" + p["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":auth:" + ha2)
	userOK := subtle.ConstantTimeCompare([]byte(p["username"]), []byte(h.cfg.User))
	respOK := subtle.ConstantTimeCompare([]byte(strings.ToLower(p["response"])), []byte(want))
	if userOK&respOK != 1 {
		if expired {
			return false, false, ""
		}
		u := sanitize(p["username"])
		if u == "" {
			u = "?"
		}
		return false, false, u
	}
	if expired {
		return false, true, ""
	}
	return true, false, ""
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// parseDigest splits a Digest Authorization header into its parameters.
func parseDigest(h string) (map[string]string, bool) {
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Digest") {
		return nil, false
	}
	p := map[string]string{}
	s := rest
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return p, true
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, false
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var v strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, false // unterminated
			}
			val, s = v.String(), s[i+1:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		if _, dup := p[key]; dup {
			return nil, false
		}
		p[key] = val
	}
}

// WSManGetRequest returns a WS-Man transfer Get envelope for resourceURI,
// the request a console sends to port 16992 (POST /wsman).
func WSManGetRequest(resourceURI, messageID string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>`)
	b.WriteString(`<Envelope xmlns="` + nsSOAP + `" xmlns:a="` + nsAddressing + `" xmlns:w="` + nsWSMan + `">`)
	b.WriteString(`<Header><a:Action>` + ActionGet + `</a:Action><a:To>/wsman</a:To><w:ResourceURI>`)
	esc(&b, resourceURI)
	b.WriteString(`</w:ResourceURI><a:MessageID>`)
	esc(&b, messageID)
	b.WriteString(`</a:MessageID><a:ReplyTo><a:Address>` + anonymous + `</a:Address></a:ReplyTo>`)
	b.WriteString(`<w:OperationTimeout>PT60S</w:OperationTimeout></Header><Body></Body></Envelope>`)
	return []byte(b.String())
}
