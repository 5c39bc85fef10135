package amtsim

// The CIRA enrolment classes of enrol.md §2–§10 as the simulated AMT serves
// them, over the LAN (lan.go) and over the tunnel alike; both share one
// Platform and so one enrolment state. Resource URI base:
// http://intel.com/wbem/wscim/1/amt-schema/1/. Requests are matched by local
// element names; answers follow enrol.md §12 and GWM's fixtures.
//
// What is answered (class: operations; fields):
//
//	AMT_SetupAndConfigurationService: Get; ProvisioningMode (1 ACM, 4 CCM),
//	    ProvisioningState (2, or 0 with LANConfig.PreProvisioning),
//	    DhcpDNSSuffix (LANConfig.DNSSuffix), TrustedDNSSuffix ("").
//	AMT_GeneralSettings: Get (toolbox.go).
//	AMT_RemoteAccessCapabilities: Get; MaxTotalMpServers 4 (MaxMPS),
//	    MaxMpsPerPolicy 2, MaxTotalPolicies 3, MaxTotalProxyEntryPoints 0.
//	AMT_RemoteAccessService: Get (IsRemoteTunnelConnected,
//	    RemoteTunnelKeepAliveTimeout); AddMpServer(AccessInfo, InfoFormat,
//	    Port, AuthMethod, Username, Password, CN[, Certificate]) → MpServer
//	    EPR (selectors CreationClassName, Name "Intel(r) AMT:Management
//	    Presence Server N", SystemCreationClassName, SystemName) +
//	    ReturnValue 0/23/36/2066, or a bare HTTP 400 for a password over 16;
//	    AddRemoteAccessPolicyRule(Trigger, TunnelLifeTime, ExtendedData,
//	    MpServer EPR ×1–2 by Name selector[, InternalMpServer EPR ×0–2]) →
//	    PolicyRule EPR (CreationClassName, PolicyRuleName,
//	    SystemCreationClassName, SystemName) + ReturnValue 0/36/2058.
//	AMT_UserInitiatedConnectionService: Get (EnabledState 32768–32771);
//	    RequestStateChange(RequestedState) → ReturnValue 0/5.
//	AMT_PublicKeyManagementService: Get; AddTrustedRootCertificate(
//	    CertificateBlob) → CreatedCertificate EPR (InstanceID
//	    "Intel(r) AMT Certificate: Handle: N") + ReturnValue 0/23/2058/2063.
//	AMT_PublicKeyCertificate: Enumerate/Pull/Get/Delete by InstanceID;
//	    ElementName, InstanceID, Issuer, ReadOnlyCertificate,
//	    Subject, TrustedRootCertficate (sic), X509Certificate (base64 DER).
//	AMT_ManagementPresenceRemoteSAP: Enumerate/Pull/Get/Delete by Name;
//	    AccessInfo, CN, CreationClassName, ElementName, InfoFormat, Name,
//	    Port, SystemCreationClassName, SystemName (no credentials).
//	    Delete while a rule references it: HTTP 400 AccessDenied fault
//	    whose reason names NOT_PERMITTED (16).
//	AMT_RemoteAccessPolicyRule: Enumerate/Pull/Get/Delete by PolicyRuleName;
//	    CreationClassName, ElementName, ExtendedData, PolicyRuleName,
//	    SystemCreationClassName, SystemName, Trigger, TunnelLifeTime.
//	AMT_RemoteAccessPolicyAppliesToMPS: Enumerate/Pull/Put; ManagedElement
//	    (EPR to the SAP), MpsType, OrderOfAccess, PolicySet (EPR to the
//	    rule). Put: header selectors ManagedElement and PolicySet each an
//	    EndpointReference (also accepted: the EPR's children directly, or,
//	    without header selectors, the body's ManagedElement and PolicySet);
//	    body MpsType 0–2, OrderOfAccess 0–65535.
//	AMT_EnvironmentDetectionSettingData: Get/Put (InstanceID "Intel(r) AMT
//	    Environment Detection Settings"); DetectionAlgorithm,
//	    DetectionIPv6LocalPrefixes[], DetectionStrings[] (≤ 5, each ≤ 190),
//	    ElementName, InstanceID. A Put replaces the whole instance.
//	AMT_EthernetPortSettings: Enumerate/Pull/Get; DHCPEnabled true.
//
// A missing instance (Get or Delete) answers HTTP 400 with a
// wsa:DestinationUnreachable fault, as AMT does; a transfer Delete answers
// DeleteResponse with an empty Body. Every successful Add, Put, Delete and
// RequestStateChange counts as one flash write of its kind ([EnrolState]
// Writes): AMT rewrites flash even when nothing changes.

import (
	"bytes"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// WS-Transfer Delete.
const (
	ActionDelete         = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
	ActionDeleteResponse = "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse"
)

// Names AMT gives the enrolment instances.
const (
	// SAPNamePrefix is followed by the SAP's handle, from 0.
	SAPNamePrefix = "Intel(r) AMT:Management Presence Server "
	// CertIDPrefix is followed by the certificate's handle, from 0.
	CertIDPrefix = "Intel(r) AMT Certificate: Handle: "
	// EnvDetectionID is AMT_EnvironmentDetectionSettingData's InstanceID.
	EnvDetectionID = "Intel(r) AMT Environment Detection Settings"
)

// Status codes of the enrolment methods (enrol.md §1).
const (
	amtNotPermitted   = 16
	amtMaxLimit       = 23
	amtDuplicate      = 0x080A
	amtInvalidCert    = 0x080F
	uicInvalidParam   = 5 // RequestStateChange's "invalid parameter"
	maxTrustedRoots   = 8 // AMT's store size is not documented; the simulator's
	maxDetectionStrs  = 5 // MCM's dialog limit; AMT's own is not documented
	maxDetectionLen   = 190
	maxAccessInfo     = 256
	maxMPSUser        = 16
	minMPSPassword    = 8
	maxMPSPassword    = 16
	maxExtendedData   = 32
	maxMpsPerPolicy   = 2
	maxTotalPolicies  = 3
	defaultDNSSuffix  = "office.example"
	uicAllDisabled    = 32768
	uicBIOSAndOS      = 32771
	mpsTypeExternal   = 0
	mpsTypeInternal   = 1
	mpsTypeBoth       = 2
	triggerUser       = 0
	triggerAlert      = 1
	triggerPeriodic   = 2
	infoFormatIPv4    = 3
	infoFormatIPv6    = 4
	infoFormatFQDN    = 201
	authMethodPasswd  = 2
	amtSystemName     = "Intel(r) AMT"
	computerSystemCCN = "CIM_ComputerSystem"
)

// ruleNames are AMT's PolicyRuleNames by trigger.
var ruleNames = [...]string{"User Initiated", "Alert", "Periodic"}

// enrolState is a platform's CIRA configuration, guarded by Platform.mu.
type enrolState struct {
	preProvisioning bool
	dnsSuffix       string
	failAt          string

	certs    []*trustedRoot
	nextCert int
	saps     []*sapEntry
	nextSAP  int
	rules    []*policyRule
	uic      int
	detect   []string
	detAlg   int
	detIPv6  []string
	writes   map[string]int

	gen uint64 // bumped by every write; lan.go applies a change it sees
}

type trustedRoot struct {
	handle int
	der    []byte
	cert   *x509.Certificate
}

type sapEntry struct {
	handle     int
	accessInfo string
	infoFormat int
	port       int
	user       string
	password   []byte
	cn         string
}

func (s *sapEntry) name() string { return SAPNamePrefix + strconv.Itoa(s.handle) }

type policyRule struct {
	trigger  int
	lifetime uint32
	ext      []byte
	servers  []ruleServer // in the order given
}

func (r *policyRule) name() string { return ruleNames[r.trigger] }

// ruleServer is one AMT_RemoteAccessPolicyAppliesToMPS.
type ruleServer struct {
	sap     string // the SAP's Name
	mpsType int
	order   int
}

// enrolment returns p's enrolment state, made on first use. Called with
// p.mu held.
func (p *Platform) enrolment() *enrolState {
	if p.enrol == nil {
		p.enrol = &enrolState{dnsSuffix: defaultDNSSuffix, uic: uicAllDisabled, writes: map[string]int{}}
	}
	return p.enrol
}

// wrote counts a flash write of kind.
func (e *enrolState) wrote(kind string) {
	e.writes[kind]++
	e.gen++
}

// fails reports whether fault injection fails op, and whether as a bare
// HTTP 400 (LANConfig.FailAt).
func (e *enrolState) fails(op string) (fail, bare bool) {
	f := e.failAt
	if f == "" {
		return false, false
	}
	name, suffix, _ := strings.Cut(f, ":")
	if name == "PutEnvironmentDetection" {
		name = "PutEnvironmentDetectionSettingData"
	}
	if name != op {
		return false, false
	}
	return true, suffix == "bare400"
}

func (e *enrolState) sap(name string) *sapEntry {
	for _, s := range e.saps {
		if s.name() == name {
			return s
		}
	}
	return nil
}

func (e *enrolState) rule(name string) *policyRule {
	for _, r := range e.rules {
		if r.name() == name {
			return r
		}
	}
	return nil
}

// outside reports whether the device considers itself outside the
// enterprise: detection strings are set and none is a suffix of its DNS
// suffix (case-insensitive). No strings means inside, as AMT without
// environment detection keeps its LAN ports open.
func (e *enrolState) outside() bool {
	if len(e.detect) == 0 {
		return false
	}
	suffix := strings.ToLower(strings.TrimSuffix(e.dnsSuffix, "."))
	for _, s := range e.detect {
		s = strings.ToLower(strings.TrimSuffix(s, "."))
		if s != "" && (suffix == s || strings.HasSuffix(suffix, "."+s)) {
			return false
		}
	}
	return true
}

// --- the classes ---

func enrolmentClasses() []*wsClass {
	return []*wsClass{
		{name: "AMT_SetupAndConfigurationService", instances: one((*wsman).setupService)},
		{name: "AMT_RemoteAccessCapabilities", instances: one((*wsman).remoteAccessCapabilities)},
		{name: "AMT_RemoteAccessService", instances: one((*wsman).remoteAccessService),
			methods: map[string]wsMethod{"AddMpServer": addMpServer, "AddRemoteAccessPolicyRule": addPolicyRule}},
		{name: "AMT_UserInitiatedConnectionService", instances: one((*wsman).uicService),
			methods: map[string]wsMethod{"RequestStateChange": uicStateChange}},
		{name: "AMT_PublicKeyManagementService", instances: one((*wsman).publicKeyService),
			methods: map[string]wsMethod{"AddTrustedRootCertificate": addTrustedRoot}},
		{name: "AMT_PublicKeyCertificate", instances: (*wsman).publicKeyCerts, missingUnreachable: true, del: deleteCert},
		{name: "AMT_ManagementPresenceRemoteSAP", instances: (*wsman).mpsSAPs, missingUnreachable: true, del: deleteSAP},
		{name: "AMT_RemoteAccessPolicyRule", instances: (*wsman).policyRules, missingUnreachable: true, del: deleteRule},
		{name: "AMT_RemoteAccessPolicyAppliesToMPS", instances: (*wsman).appliesToMPS, put: putAppliesToMPS},
		{name: "AMT_EnvironmentDetectionSettingData", instances: one((*wsman).envDetection), put: putEnvDetection},
		{name: "AMT_EthernetPortSettings", instances: one((*wsman).ethernetPort)},
	}
}

// refuseUnprovisioned is what a device in pre-provisioning answers: only
// the setup service's Get (state 0), so that an enrolment tool can say
// why it stops; everything else gets an AccessDenied fault. Real AMT in
// pre-provisioning has no admin account to authenticate against over the
// LAN at all; the simulator keeps digest auth and this narrow answer as
// the tolerant, observable reading. Called with plat.mu held.
func (h *wsman) refuseUnprovisioned(rq *wsRequest) *wsFault {
	if h.plat.enrol == nil || !h.plat.enrol.preProvisioning {
		return nil
	}
	if rq.action == ActionGet && rq.resource == ResourceURI("AMT_SetupAndConfigurationService") {
		return nil
	}
	return &wsFault{subcode: "c:AccessDenied", reason: "The sender was not authorized to access the resource: the device is not provisioned (ProvisioningState 0)."}
}

func serviceInstance(class, name string) *instance {
	in := newInstance(class)
	in.set("CreationClassName", class)
	in.set("ElementName", name)
	in.set("Name", name)
	in.set("SystemCreationClassName", computerSystemCCN)
	in.set("SystemName", amtSystemName)
	return in
}

func (h *wsman) remoteAccessCapabilities() *instance {
	in := newInstance("AMT_RemoteAccessCapabilities")
	in.set("ElementName", "Intel(r) AMT's Remote Access Capabilities")
	in.set("InstanceID", "Intel(r) AMT Remote Access Capabilities")
	in.setInt("MaxMpsPerPolicy", maxMpsPerPolicy)
	in.setInt("MaxTotalMpServers", MaxMPS)
	in.setInt("MaxTotalPolicies", maxTotalPolicies)
	in.setInt("MaxTotalProxyEntryPoints", 0)
	return in
}

func (h *wsman) remoteAccessService() *instance {
	in := serviceInstance("AMT_RemoteAccessService", "Intel(r) AMT Remote Access Service")
	in.setBool("IsRemoteTunnelConnected", h.plat.tunnelUp.Load())
	in.setInt("RemoteTunnelKeepAliveTimeout", 30)
	return in
}

func (h *wsman) uicService() *instance {
	in := newInstance("AMT_UserInitiatedConnectionService")
	in.set("CreationClassName", "AMT_UserInitiatedConnectionService")
	in.set("ElementName", "Intel(r) AMT User Initiated Connection Service")
	in.setInt("EnabledState", h.plat.enrolment().uic)
	in.set("Name", "Intel(r) AMT User Initiated Connection Service")
	in.set("SystemCreationClassName", computerSystemCCN)
	in.set("SystemName", amtSystemName)
	return in
}

func (h *wsman) publicKeyService() *instance {
	return serviceInstance("AMT_PublicKeyManagementService", "Intel(r) AMT Public Key Management Service")
}

func certDN(n interface{ String() string }) string { return n.String() }

func (h *wsman) publicKeyCerts() []*instance {
	var out []*instance
	for _, c := range h.plat.enrolment().certs {
		in := newInstance("AMT_PublicKeyCertificate")
		in.set("ElementName", "Intel(r) AMT Certificate")
		in.set("InstanceID", CertIDPrefix+strconv.Itoa(c.handle))
		in.set("Issuer", certDN(c.cert.Issuer.ToRDNSequence()))
		in.setBool("ReadOnlyCertificate", false)
		in.set("Subject", certDN(c.cert.Subject.ToRDNSequence()))
		in.setBool("TrustedRootCertficate", true) // AMT's spelling
		in.set("X509Certificate", base64.StdEncoding.EncodeToString(c.der))
		out = append(out, in)
	}
	return out
}

func (h *wsman) mpsSAPs() []*instance {
	var out []*instance
	for _, s := range h.plat.enrolment().saps {
		in := newInstance("AMT_ManagementPresenceRemoteSAP")
		in.set("AccessInfo", s.accessInfo)
		if s.cn != "" {
			in.set("CN", s.cn)
		}
		in.set("CreationClassName", "AMT_ManagementPresenceRemoteSAP")
		in.set("ElementName", "Intel(r) AMT:Management Presence Server")
		in.setInt("InfoFormat", s.infoFormat)
		in.set("Name", s.name())
		in.setInt("Port", s.port)
		in.set("SystemCreationClassName", computerSystemCCN)
		in.set("SystemName", amtSystemName)
		out = append(out, in)
	}
	return out
}

func (h *wsman) policyRules() []*instance {
	var out []*instance
	for _, r := range h.plat.enrolment().rules {
		in := newInstance("AMT_RemoteAccessPolicyRule")
		in.set("CreationClassName", "AMT_RemoteAccessPolicyRule")
		in.set("ElementName", r.name())
		in.set("ExtendedData", base64.StdEncoding.EncodeToString(r.ext))
		in.set("PolicyRuleName", r.name())
		in.set("SystemCreationClassName", computerSystemCCN)
		in.set("SystemName", amtSystemName)
		in.setInt("Trigger", r.trigger)
		in.set("TunnelLifeTime", strconv.FormatUint(uint64(r.lifetime), 10))
		out = append(out, in)
	}
	return out
}

func sapEPR(name string) string {
	return eprXML("AMT_ManagementPresenceRemoteSAP", "CreationClassName", "AMT_ManagementPresenceRemoteSAP",
		"Name", name, "SystemCreationClassName", computerSystemCCN, "SystemName", amtSystemName)
}

func ruleEPR(name string) string {
	return eprXML("AMT_RemoteAccessPolicyRule", "CreationClassName", "AMT_RemoteAccessPolicyRule",
		"PolicyRuleName", name, "SystemCreationClassName", computerSystemCCN, "SystemName", amtSystemName)
}

func appliesInstance(r *policyRule, s ruleServer) *instance {
	in := newInstance("AMT_RemoteAccessPolicyAppliesToMPS")
	in.raw("ManagedElement", sapEPR(s.sap))
	in.setInt("MpsType", s.mpsType)
	in.setInt("OrderOfAccess", s.order)
	in.raw("PolicySet", ruleEPR(r.name()))
	return in
}

func (h *wsman) appliesToMPS() []*instance {
	var out []*instance
	for _, r := range h.plat.enrolment().rules {
		for _, s := range r.servers {
			out = append(out, appliesInstance(r, s))
		}
	}
	return out
}

func (h *wsman) envDetection() *instance {
	e := h.plat.enrolment()
	in := newInstance("AMT_EnvironmentDetectionSettingData")
	in.setInt("DetectionAlgorithm", e.detAlg)
	if len(e.detIPv6) > 0 {
		in.set("DetectionIPv6LocalPrefixes", e.detIPv6...)
	}
	if len(e.detect) > 0 {
		in.set("DetectionStrings", e.detect...)
	}
	in.set("ElementName", EnvDetectionID)
	in.set("InstanceID", EnvDetectionID)
	return in
}

func (h *wsman) ethernetPort() *instance {
	in := newInstance("AMT_EthernetPortSettings")
	in.setBool("DHCPEnabled", true)
	in.set("ElementName", "Intel(r) AMT Ethernet Port Settings")
	in.set("InstanceID", "Intel(r) AMT Ethernet Port Settings 0")
	in.setBool("IpSyncEnabled", true)
	in.setBool("LinkIsUp", true)
	in.set("LinkPolicy", "1", "14", "16")
	in.set("MACAddress", macOf(h.plat.uuid[:]))
	in.setBool("SharedMAC", true)
	in.setBool("SharedStaticIp", false)
	return in
}

// macOf derives a locally administered MAC address from the device UUID.
func macOf(u []byte) string {
	return fmt.Sprintf("%02x-%02x-%02x-%02x-%02x-%02x", u[10]|2, u[11], u[12], u[13], u[14], u[15])
}

// --- methods ---

// failed applies fault injection to a method: ReturnValue 1, or a bare
// HTTP 400.
func (c *callCtx) failed(op string) (bool, int) {
	fail, bare := c.p.enrolment().fails(op)
	if !fail {
		return false, 0
	}
	if bare {
		c.bare400 = true
	}
	return true, amtInternalError
}

func eprProp(name, xml string) prop { return prop{name: name, vals: []string{xml}, raw: true} }

// addTrustedRoot is AddTrustedRootCertificate(CertificateBlob): base64 DER,
// whitespace tolerated. 2063 for what does not parse as a certificate,
// 2058 for one already stored, 23 when the store is full.
func addTrustedRoot(c *callCtx) ([]prop, int) {
	if f, rv := c.failed("AddTrustedRootCertificate"); f {
		return nil, rv
	}
	e := c.p.enrolment()
	blob, _ := c.in.textOf("CertificateBlob")
	blob = strings.Join(strings.Fields(blob), "")
	der, err := base64.StdEncoding.DecodeString(blob)
	if err != nil || len(der) == 0 {
		return nil, amtInvalidCert
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, amtInvalidCert
	}
	for _, r := range e.certs {
		if bytes.Equal(r.der, der) {
			return nil, amtDuplicate
		}
	}
	if len(e.certs) >= maxTrustedRoots {
		return nil, amtMaxLimit
	}
	r := &trustedRoot{handle: e.nextCert, der: der, cert: cert}
	e.nextCert++
	e.certs = append(e.certs, r)
	e.wrote("AddTrustedRootCertificate")
	id := CertIDPrefix + strconv.Itoa(r.handle)
	return []prop{eprProp("CreatedCertificate", eprXML("AMT_PublicKeyCertificate", "InstanceID", id))}, amtSuccess
}

// validMPSUser: 1–16 characters of 7-bit ASCII 32–126 (SDK
// validusernamesandpasswords, enrol.md §4).
func validMPSUser(u string) bool {
	if len(u) == 0 || len(u) > maxMPSUser {
		return false
	}
	for i := 0; i < len(u); i++ {
		if u[i] < 32 || u[i] > 126 {
			return false
		}
	}
	return true
}

// strongMPSPassword: 8–16 characters of 7-bit ASCII 32–126 with a digit, an
// upper-case and a lower-case letter and a non-alphanumeric character above
// 32, where '_' counts as alphanumeric (enrol.md §4 "What AMT accepts").
func strongMPSPassword(pw string) bool {
	if len(pw) < minMPSPassword || len(pw) > maxMPSPassword {
		return false
	}
	var digit, upper, lower, other bool
	for i := 0; i < len(pw); i++ {
		switch ch := pw[i]; {
		case ch < 32 || ch > 126:
			return false
		case ch >= '0' && ch <= '9':
			digit = true
		case ch >= 'A' && ch <= 'Z':
			upper = true
		case ch >= 'a' && ch <= 'z':
			lower = true
		case ch == '_' || ch == ' ':
		default:
			other = true
		}
	}
	return digit && upper && lower && other
}

// addMpServer is AddMpServer. A password over 16 characters gets a bare
// HTTP 400, as AMT 19.0.5 answered (DMT/rps#2756); other invalid input 36;
// AuthMethod 1 (mutual TLS) 2066, which the simulator does not model; a
// fifth SAP 23 (unverified, enrol.md §4). InfoFormat 3 with a host name is
// accepted (RPC sends it; AMT's answer is unverified) and the name is then
// checked against CN. Identical entries are accepted: AMT's answer to a
// duplicate is not known, and a careful client does not send one.
func addMpServer(c *callCtx) ([]prop, int) {
	if f, rv := c.failed("AddMpServer"); f {
		return nil, rv
	}
	e := c.p.enrolment()
	pw, _ := c.in.textOf("Password")
	if len(pw) > maxMPSPassword {
		c.bare400 = true
		return nil, amtInvalidParameter
	}
	access, _ := c.in.textOf("AccessInfo")
	format, okF := c.methodInt("InfoFormat", 0, 65535)
	port, okP := c.methodInt("Port", 1, 65535)
	auth, okA := c.methodInt("AuthMethod", 0, 255)
	user, _ := c.in.textOf("Username")
	cn, _ := c.in.textOf("CN")
	if !okA || (auth != authMethodPasswd && auth != 1) {
		return nil, amtInvalidParameter
	}
	if auth == 1 {
		return nil, amtUnsupported
	}
	if access == "" || len(access) > maxAccessInfo || len(cn) > maxAccessInfo || !okF || !okP ||
		(format != infoFormatIPv4 && format != infoFormatIPv6 && format != infoFormatFQDN) ||
		!validMPSUser(user) || !strongMPSPassword(pw) {
		return nil, amtInvalidParameter
	}
	if format == infoFormatIPv6 && net.ParseIP(access) == nil {
		return nil, amtInvalidParameter
	}
	if len(e.saps) >= MaxMPS {
		return nil, amtMaxLimit
	}
	s := &sapEntry{handle: e.nextSAP, accessInfo: access, infoFormat: int(format), port: int(port),
		user: user, password: []byte(pw), cn: cn}
	e.nextSAP++
	e.saps = append(e.saps, s)
	e.wrote("AddMpServer")
	return []prop{eprProp("MpServer", sapEPR(s.name()))}, amtSuccess
}

// parseExtendedData checks a rule's ExtendedData: ≤ 32 bytes; for a
// periodic rule u32 0 + u32 seconds (> 0), or u32 1 + u32 hour (0–23) + u32
// minute (0–59), in network order.
func parseExtendedData(trigger int, b []byte) bool {
	if len(b) > maxExtendedData {
		return false
	}
	if trigger != triggerPeriodic {
		return true
	}
	if len(b) < 8 {
		return false
	}
	switch binary.BigEndian.Uint32(b) {
	case 0:
		return binary.BigEndian.Uint32(b[4:]) > 0
	case 1:
		return len(b) >= 12 && binary.BigEndian.Uint32(b[4:]) <= 23 && binary.BigEndian.Uint32(b[8:]) <= 59
	}
	return false
}

// addPolicyRule is AddRemoteAccessPolicyRule: one rule per trigger (a
// second is 2058, inferred from the ValueMap, enrol.md §5), 1–2 MpServer
// EPRs naming existing SAPs by Name, and 0–2 InternalMpServer EPRs. Each
// server gets an association, MpsType 0 (1 for internal ones) and
// OrderOfAccess by position.
func addPolicyRule(c *callCtx) ([]prop, int) {
	if f, rv := c.failed("AddRemoteAccessPolicyRule"); f {
		return nil, rv
	}
	e := c.p.enrolment()
	trig, ok := c.methodInt("Trigger", 0, 2)
	if !ok {
		return nil, amtInvalidParameter
	}
	life, ok := c.methodInt("TunnelLifeTime", 0, 0xFFFFFFFF)
	if !ok {
		return nil, amtInvalidParameter
	}
	extS, _ := c.in.textOf("ExtendedData")
	ext, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(extS), ""))
	if err != nil || !parseExtendedData(int(trig), ext) {
		return nil, amtInvalidParameter
	}
	var servers []ruleServer
	var nExt, nInt int
	for _, k := range c.in.kids {
		if k.local != "MpServer" && k.local != "InternalMpServer" {
			continue
		}
		ep, _ := parseEPR(k)
		name := ep.selectors["Name"]
		if e.sap(name) == nil {
			return nil, amtInvalidParameter
		}
		typ := mpsTypeExternal
		if k.local == "InternalMpServer" {
			typ = mpsTypeInternal
			nInt++
		} else {
			nExt++
		}
		for _, s := range servers {
			if s.sap == name {
				return nil, amtInvalidParameter
			}
		}
		servers = append(servers, ruleServer{sap: name, mpsType: typ})
	}
	if nExt < 1 || nExt > maxMpsPerPolicy || nInt > maxMpsPerPolicy {
		return nil, amtInvalidParameter
	}
	order := map[int]int{}
	for i := range servers {
		servers[i].order = order[servers[i].mpsType]
		order[servers[i].mpsType]++
	}
	r := &policyRule{trigger: int(trig), lifetime: uint32(life), ext: ext, servers: servers}
	if e.rule(r.name()) != nil {
		return nil, amtDuplicate
	}
	e.rules = append(e.rules, r)
	e.wrote("AddRemoteAccessPolicyRule")
	return []prop{eprProp("PolicyRule", ruleEPR(r.name()))}, amtSuccess
}

func uicStateChange(c *callCtx) ([]prop, int) {
	if f, rv := c.failed("RequestStateChange"); f {
		return nil, rv
	}
	s, ok := c.methodInt("RequestedState", uicAllDisabled, uicBIOSAndOS)
	if !ok {
		return nil, uicInvalidParam
	}
	e := c.p.enrolment()
	e.uic = int(s)
	e.wrote("RequestStateChange")
	return nil, amtSuccess
}

// --- Delete and Put ---

// faultMissing is AMT's answer for an instance that does not exist.
func faultMissing() *wsFault {
	return &wsFault{"b:DestinationUnreachable",
		"No route can be determined to reach the destination role defined by the WS-Addressing To.", ""}
}

func faultInternal(op string) *wsFault {
	return &wsFault{subcode: "c:InternalError", reason: "The service cannot comply with the request due to internal processing errors (" + op + ")."}
}

// deleteOp applies fault injection to a Put or Delete.
func (c *callCtx) deleteOp(op string) *wsFault {
	fail, bare := c.p.enrolment().fails(op)
	if !fail {
		return nil
	}
	if bare {
		c.bare400 = true
	}
	return faultInternal(op)
}

func keySelector(sel map[string]string, key string) (string, *wsFault) {
	v, ok := sel[key]
	if !ok {
		return "", &wsFault{subcode: "c:InvalidSelectors", reason: "The selectors for the resource are not valid: " + key + " is required."}
	}
	return v, nil
}

func deleteCert(c *callCtx, sel map[string]string) *wsFault {
	id, f := keySelector(sel, "InstanceID")
	if f != nil {
		return f
	}
	if f := c.deleteOp("DeletePublicKeyCertificate"); f != nil {
		return f
	}
	e := c.p.enrolment()
	for i, r := range e.certs {
		if CertIDPrefix+strconv.Itoa(r.handle) == id {
			e.certs = append(e.certs[:i:i], e.certs[i+1:]...)
			e.wrote("DeletePublicKeyCertificate")
			return nil
		}
	}
	return faultMissing()
}

// deleteSAP refuses a SAP a rule still references (SDK
// removeamanagementpresenceserver: "not permitted", 16). A transfer
// Delete has no ReturnValue, so the simulator answers a SOAP fault naming
// the status; AMT's exact fault for it is not documented (unverified).
func deleteSAP(c *callCtx, sel map[string]string) *wsFault {
	name, f := keySelector(sel, "Name")
	if f != nil {
		return f
	}
	if f := c.deleteOp("DeleteManagementPresenceRemoteSAP"); f != nil {
		return f
	}
	e := c.p.enrolment()
	for i, s := range e.saps {
		if s.name() != name {
			continue
		}
		for _, r := range e.rules {
			for _, rs := range r.servers {
				if rs.sap == name {
					return &wsFault{subcode: "c:AccessDenied",
						reason: fmt.Sprintf("The operation is not permitted (PT_STATUS_NOT_PERMITTED, %d): the remote access policy rule %q uses this server.", amtNotPermitted, r.name())}
				}
			}
		}
		e.saps = append(e.saps[:i:i], e.saps[i+1:]...)
		e.wrote("DeleteManagementPresenceRemoteSAP")
		return nil
	}
	return faultMissing()
}

func deleteRule(c *callCtx, sel map[string]string) *wsFault {
	name, f := keySelector(sel, "PolicyRuleName")
	if f != nil {
		return f
	}
	if f := c.deleteOp("DeleteRemoteAccessPolicyRule"); f != nil {
		return f
	}
	e := c.p.enrolment()
	for i, r := range e.rules {
		if r.name() == name {
			e.rules = append(e.rules[:i:i], e.rules[i+1:]...)
			e.wrote("DeleteRemoteAccessPolicyRule")
			return nil
		}
	}
	return faultMissing()
}

// eprSelector reads an EPR-valued header selector: an EndpointReference
// inside the Selector, or the EPR's children directly.
func eprSelector(set *xnode, name string) (epr, bool) {
	if set == nil {
		return epr{}, false
	}
	for _, k := range set.kids {
		if k.local != "Selector" || k.attr("Name") != name {
			continue
		}
		if ref := k.child("EndpointReference"); ref != nil {
			return parseEPR(ref)
		}
		if k.child("ReferenceParameters") != nil {
			return parseEPR(k)
		}
	}
	return epr{}, false
}

// putAppliesToMPS sets MpsType and OrderOfAccess of the association the
// selectors (or, tolerantly, the body's references) name.
func putAppliesToMPS(c *callCtx) *wsFault {
	if f := c.deleteOp("PutRemoteAccessPolicyAppliesToMPS"); f != nil {
		return f
	}
	me, ok1 := eprSelector(c.selNode, "ManagedElement")
	ps, ok2 := eprSelector(c.selNode, "PolicySet")
	if !ok1 || !ok2 {
		me, ok1 = parseEPR(c.in.child("ManagedElement"))
		ps, ok2 = parseEPR(c.in.child("PolicySet"))
	}
	if !ok1 || !ok2 {
		return &wsFault{subcode: "c:InvalidSelectors", reason: "The selectors for the resource are not valid: ManagedElement and PolicySet are required."}
	}
	e := c.p.enrolment()
	r := e.rule(ps.selectors["PolicyRuleName"])
	if r == nil {
		return faultMissing()
	}
	idx := -1
	for i, s := range r.servers {
		if s.sap == me.selectors["Name"] {
			idx = i
		}
	}
	if idx < 0 {
		return faultMissing()
	}
	rs := r.servers[idx]
	if v, ok := c.in.textOf("MpsType"); ok {
		n, ok := parseInt(v, 0, 2)
		if !ok {
			return faultInvalidRepresentation("MpsType must be 0, 1 or 2.")
		}
		rs.mpsType = int(n)
	}
	if v, ok := c.in.textOf("OrderOfAccess"); ok {
		n, ok := parseInt(v, 0, 65535)
		if !ok {
			return faultInvalidRepresentation("OrderOfAccess must be from 0 to 65535.")
		}
		rs.order = int(n)
	}
	r.servers[idx] = rs
	e.wrote("PutRemoteAccessPolicyAppliesToMPS")
	c.result = appliesInstance(r, rs)
	return nil
}

// putEnvDetection replaces the environment detection settings with the
// body's: DetectionStrings (≤ 5, each 1–190 characters), DetectionAlgorithm
// (0 or 1) and DetectionIPv6LocalPrefixes.
func putEnvDetection(c *callCtx) *wsFault {
	if id, ok := c.sel["InstanceID"]; ok && id != EnvDetectionID {
		return faultMissing()
	}
	if f := c.deleteOp("PutEnvironmentDetectionSettingData"); f != nil {
		return f
	}
	var strs, v6 []string
	alg := 0
	for _, k := range c.in.kids {
		switch k.local {
		case "DetectionStrings":
			if k.text == "" {
				continue // an empty element: no string
			}
			if len(k.text) > maxDetectionLen || len(strs) == maxDetectionStrs {
				return faultInvalidRepresentation(fmt.Sprintf("DetectionStrings holds at most %d strings of at most %d characters.", maxDetectionStrs, maxDetectionLen))
			}
			strs = append(strs, k.text)
		case "DetectionIPv6LocalPrefixes":
			if k.text != "" && len(v6) < maxDetectionStrs {
				v6 = append(v6, k.text)
			}
		case "DetectionAlgorithm":
			n, ok := parseInt(k.text, 0, 1)
			if !ok {
				return faultInvalidRepresentation("DetectionAlgorithm must be 0 or 1.")
			}
			alg = int(n)
		}
	}
	e := c.p.enrolment()
	e.detect, e.detIPv6, e.detAlg = strs, v6, alg
	e.wrote("PutEnvironmentDetectionSettingData")
	return nil
}

// --- what tests observe ---

// EnrolState is a snapshot of a device's CIRA configuration, as WS-Man
// wrote it (see enrolment.go for the classes). Passwords are not in it;
// see [Device.PasswordMatches].
type EnrolState struct {
	ProvisioningState int
	// Roots are the trusted root certificates (DER), in handle order.
	Roots [][]byte
	MPS   []EnrolMPS
	Rules []EnrolRule
	// UserInitiated is AMT_UserInitiatedConnectionService EnabledState.
	UserInitiated    int
	DetectionStrings []string
	// Outside: detection strings are set and none matches the DNS suffix.
	Outside bool
	// LANOpen: the LAN listeners accept connections.
	LANOpen bool
	// Writes counts flash writes by kind: a method name
	// (AddTrustedRootCertificate, AddMpServer, AddRemoteAccessPolicyRule,
	// RequestStateChange) or Put/Delete and the class without AMT_
	// (PutEnvironmentDetectionSettingData, ...).
	Writes map[string]int
}

// EnrolMPS is one AMT_ManagementPresenceRemoteSAP.
type EnrolMPS struct {
	Name, AccessInfo string
	InfoFormat, Port int
	CN, Username     string
}

// EnrolRule is one AMT_RemoteAccessPolicyRule and its associations.
type EnrolRule struct {
	Name           string
	Trigger        int
	TunnelLifeTime uint32
	ExtendedData   []byte
	// MPS are the SAP names in the order the rule was given them.
	MPS          []string
	Associations []EnrolAssociation
}

// EnrolAssociation is one AMT_RemoteAccessPolicyAppliesToMPS.
type EnrolAssociation struct {
	MPS           string
	MpsType       int
	OrderOfAccess int
}

// snapshot copies e. Called with Platform.mu held.
func (e *enrolState) snapshot() EnrolState {
	s := EnrolState{ProvisioningState: 2, UserInitiated: e.uic, Outside: e.outside(),
		DetectionStrings: append([]string(nil), e.detect...), Writes: map[string]int{}}
	if e.preProvisioning {
		s.ProvisioningState = 0
	}
	for _, r := range e.certs {
		s.Roots = append(s.Roots, append([]byte(nil), r.der...))
	}
	for _, m := range e.saps {
		s.MPS = append(s.MPS, EnrolMPS{Name: m.name(), AccessInfo: m.accessInfo, InfoFormat: m.infoFormat, Port: m.port, CN: m.cn, Username: m.user})
	}
	for _, r := range e.rules {
		er := EnrolRule{Name: r.name(), Trigger: r.trigger, TunnelLifeTime: r.lifetime, ExtendedData: append([]byte(nil), r.ext...)}
		for _, rs := range r.servers {
			er.MPS = append(er.MPS, rs.sap)
			er.Associations = append(er.Associations, EnrolAssociation{MPS: rs.sap, MpsType: rs.mpsType, OrderOfAccess: rs.order})
		}
		s.Rules = append(s.Rules, er)
	}
	for k, v := range e.writes {
		s.Writes[k] = v
	}
	return s
}

// Enrolment returns a snapshot of the device's CIRA configuration.
func (d *Device) Enrolment() EnrolState {
	p := d.Platform()
	p.mu.Lock()
	s := p.enrolment().snapshot()
	p.mu.Unlock()
	if d.rt.lan != nil {
		s.LANOpen = d.rt.lan.isOpen()
	}
	return s
}

// PasswordMatches reports whether the SAP named sapName (e.g.
// SAPNamePrefix+"0") stores password pw, in constant time.
func (d *Device) PasswordMatches(sapName string, pw []byte) bool {
	p := d.Platform()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.enrolment().sap(sapName)
	return s != nil && subtle.ConstantTimeCompare(s.password, pw) == 1
}

// SetFailAt changes the fault injection of LANConfig.FailAt ("" for none).
func (d *Device) SetFailAt(op string) {
	p := d.Platform()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enrolment().failAt = op
}

// periodicInterval is the pause a rule's ExtendedData asks for: the
// interval, or a day for a daily time (the simulator does not wait for
// the hour).
func periodicInterval(ext []byte) time.Duration {
	if len(ext) >= 8 && binary.BigEndian.Uint32(ext) == 0 {
		return time.Duration(binary.BigEndian.Uint32(ext[4:])) * time.Second
	}
	if len(ext) >= 8 {
		return 24 * time.Hour
	}
	return DefaultRetryInterval
}
