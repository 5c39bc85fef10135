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
	"strings"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// WS-Man names the simulated device understands.
const (
	ActionGet                     = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
	ActionGetResponse             = "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse"
	ResourceGeneralSettings       = "http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings"
	ResourceComputerSystemPackage = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ComputerSystemPackage"
)

const (
	nsSOAP       = "http://www.w3.org/2003/05/soap-envelope"
	nsAddressing = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
	nsWSMan      = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
	anonymous    = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
	actionFault  = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"

	defaultNonceLifetime = 5 * time.Minute
	defaultMaxBody       = 64 << 10
	maxAuthHeader        = 4 << 10
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
}

// PlatformGUID renders a device UUID the way AMT's
// CIM_ComputerSystemPackage.PlatformGUID does: the 16 bytes in wire order
// as 32 upper-case hex digits without dashes.
func PlatformGUID(u apf.UUID) string { return strings.ToUpper(hex.EncodeToString(u[:])) }

// WSManHandler returns the WS-Man service of a simulated AMT: POST /wsman
// with HTTP digest authentication (RFC 7616 with MD5 and qop="auth", the
// realm "Digest:" and the PlatformGUID, like real AMT's realm). It answers a
// transfer Get of [ResourceGeneralSettings] and
// [ResourceComputerSystemPackage]; any other resource gets a
// wsa:DestinationUnreachable fault with status 400.
//
// Nonces are stateless (an HMAC over an expiry time) and nonce counts are
// not tracked, so a captured request can be replayed while its nonce lives:
// acceptable for a simulator, not for a real service.
func WSManHandler(cfg WSManConfig) http.Handler {
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
	h := &wsman{cfg: cfg, guid: PlatformGUID(cfg.UUID)}
	h.realm = "Digest:" + h.guid
	rand.Read(h.key[:])
	return h
}

type wsman struct {
	cfg   WSManConfig
	guid  string
	realm string
	key   [32]byte
	msgID atomic.Uint64
}

func (h *wsman) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/wsman" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ok, stale := h.authorized(r, time.Now()); !ok {
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
	var env envelope
	if err := xml.Unmarshal(body, &env); err != nil || env.XMLName.Local != "Envelope" {
		h.fault(w, "", "b:InvalidMessageInformationHeader", "The request is not a SOAP envelope.", "")
		return
	}
	hd := env.Header
	action, resource, id := strings.TrimSpace(hd.Action), strings.TrimSpace(hd.ResourceURI), strings.TrimSpace(hd.MessageID)
	if action != ActionGet {
		h.fault(w, id, "b:ActionNotSupported", "The action is not supported by the service.", "")
		return
	}
	var out strings.Builder
	switch resource {
	case ResourceGeneralSettings:
		h.generalSettings(&out, id)
	case ResourceComputerSystemPackage:
		h.computerSystemPackage(&out, id)
	default:
		h.fault(w, id, "b:DestinationUnreachable",
			"No route can be determined to reach the destination role defined by the WS-Addressing To.",
			"http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI")
		return
	}
	writeSOAP(w, http.StatusOK, out.String())
}

// envelope is the part of a request the handler reads.
type envelope struct {
	XMLName xml.Name
	Header  struct {
		Action      string `xml:"Action"`
		ResourceURI string `xml:"ResourceURI"`
		MessageID   string `xml:"MessageID"`
	} `xml:"Header"`
}

func writeSOAP(w http.ResponseWriter, status int, body string) {
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
	b.WriteString(`</b:RelatesTo><b:Action a:mustUnderstand="true">` + action + `</b:Action>`)
	fmt.Fprintf(b, `<b:MessageID>uuid:00000000-8086-8086-8086-%012X</b:MessageID>`, h.msgID.Add(1))
	if resource != "" {
		b.WriteString(`<c:ResourceURI>` + resource + `</c:ResourceURI>`)
	}
	b.WriteString(`</a:Header>`)
}

func (h *wsman) generalSettings(b *strings.Builder, relatesTo string) {
	h.header(b, ActionGetResponse, relatesTo, ResourceGeneralSettings, ` xmlns:g="`+ResourceGeneralSettings+`"`)
	b.WriteString(`<a:Body><g:AMT_GeneralSettings>`)
	field := func(name, value string) {
		b.WriteString("<g:" + name + ">")
		esc(b, value)
		b.WriteString("</g:" + name + ">")
	}
	field("AMTNetworkEnabled", "1")
	field("DDNSPeriodicUpdateInterval", "1440")
	field("DDNSTTL", "900")
	field("DDNSUpdateByDHCPServerEnabled", "true")
	field("DDNSUpdateEnabled", "false")
	field("DHCPv6ConfigurationTimeout", "0")
	field("DigestRealm", h.realm)
	field("DomainName", h.cfg.DomainName)
	field("ElementName", "Intel(r) AMT: General Settings")
	field("HostName", h.cfg.Hostname)
	fqdn := h.cfg.Hostname
	if h.cfg.DomainName != "" {
		fqdn += "." + h.cfg.DomainName
	}
	field("HostOSFQDN", fqdn)
	field("IdleWakeTimeout", "65535")
	field("InstanceID", "Intel(r) AMT: General Settings")
	field("NetworkInterfaceEnabled", "true")
	field("PingResponseEnabled", "true")
	field("PowerSource", "0")
	field("PreferredAddressFamily", "0")
	field("PresenceNotificationInterval", "0")
	field("PrivacyLevel", "0")
	field("RmcpPingResponseEnabled", "true")
	field("SharedFQDN", "true")
	field("ThunderboltDockEnabled", "0")
	field("WsmanOnlyMode", "false")
	b.WriteString(`</g:AMT_GeneralSettings></a:Body></a:Envelope>`)
}

func (h *wsman) computerSystemPackage(b *strings.Builder, relatesTo string) {
	h.header(b, ActionGetResponse, relatesTo, ResourceComputerSystemPackage, ` xmlns:h="`+ResourceComputerSystemPackage+`"`)
	ref := func(elem, class string, selectors ...string) {
		b.WriteString(`<h:` + elem + `><b:Address>` + anonymous + `</b:Address><b:ReferenceParameters>`)
		b.WriteString(`<c:ResourceURI>http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/` + class + `</c:ResourceURI><c:SelectorSet>`)
		for i := 0; i+1 < len(selectors); i += 2 {
			b.WriteString(`<c:Selector Name="` + selectors[i] + `">` + selectors[i+1] + `</c:Selector>`)
		}
		b.WriteString(`</c:SelectorSet></b:ReferenceParameters></h:` + elem + `>`)
	}
	b.WriteString(`<a:Body><h:CIM_ComputerSystemPackage>`)
	ref("Antecedent", "CIM_Chassis", "CreationClassName", "CIM_Chassis", "Tag", "CIM_Chassis")
	ref("Dependent", "CIM_ComputerSystem", "CreationClassName", "CIM_ComputerSystem", "Name", "ManagedSystem")
	b.WriteString(`<h:PlatformGUID>` + h.guid + `</h:PlatformGUID>`)
	b.WriteString(`</h:CIM_ComputerSystemPackage></a:Body></a:Envelope>`)
}

// fault writes a SOAP fault with status 400, as AMT does.
func (h *wsman) fault(w http.ResponseWriter, relatesTo, subcode, reason, detail string) {
	var b strings.Builder
	h.header(&b, actionFault, relatesTo, "", "")
	b.WriteString(`<a:Body><a:Fault><a:Code><a:Value>a:Sender</a:Value><a:Subcode><a:Value>` + subcode + `</a:Value></a:Subcode></a:Code>`)
	b.WriteString(`<a:Reason><a:Text xml:lang="en-US">` + reason + `</a:Text></a:Reason>`)
	if detail != "" {
		b.WriteString(`<a:Detail><c:FaultDetail>` + detail + `</c:FaultDetail></a:Detail>`)
	}
	b.WriteString(`</a:Fault></a:Body></a:Envelope>`)
	writeSOAP(w, http.StatusBadRequest, b.String())
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
// correct response computed with an expired nonce.
func (h *wsman) authorized(r *http.Request, now time.Time) (ok, stale bool) {
	hdr := r.Header.Get("Authorization")
	if hdr == "" || len(hdr) > maxAuthHeader || len(h.cfg.Password) == 0 {
		return false, false
	}
	p, isDigest := parseDigest(hdr)
	if !isDigest {
		return false, false
	}
	if p["realm"] != h.realm || p["uri"] != r.RequestURI || p["qop"] != "auth" ||
		p["cnonce"] == "" || len(p["nc"]) != 8 ||
		(p["algorithm"] != "" && !strings.EqualFold(p["algorithm"], "MD5")) {
		return false, false
	}
	ours, expired := h.checkNonce(p["nonce"], now)
	if !ours {
		return false, false
	}
	ha1 := md5.New()
	io.WriteString(ha1, h.cfg.User+":"+h.realm+":")
	ha1.Write(h.cfg.Password)
	ha2 := md5hex(r.Method + ":" + p["uri"])
	want := md5hex(hex.EncodeToString(ha1.Sum(nil)) + ":" + p["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":auth:" + ha2)
	userOK := subtle.ConstantTimeCompare([]byte(p["username"]), []byte(h.cfg.User))
	respOK := subtle.ConstantTimeCompare([]byte(strings.ToLower(p["response"])), []byte(want))
	if userOK&respOK != 1 {
		return false, false
	}
	if expired {
		return false, true
	}
	return true, false
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
