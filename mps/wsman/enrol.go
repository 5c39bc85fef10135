package wsman

// The CIRA enrolment calls (enrol.md): what a tool on the LAN reads and
// writes to make a provisioned AMT open its tunnel to an MPS, and to undo
// it. mps/enrol runs the sequence; these are the single operations.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Classes of enrolment (enrol.md §0, §2).
const (
	classRemoteAccessCaps      = "AMT_RemoteAccessCapabilities"
	classRemoteAccessService   = "AMT_RemoteAccessService"
	classUserInitiated         = "AMT_UserInitiatedConnectionService"
	classPublicKeyManagement   = "AMT_PublicKeyManagementService"
	classPublicKeyCertificate  = "AMT_PublicKeyCertificate"
	classMPSSAP                = "AMT_ManagementPresenceRemoteSAP"
	classPolicyRule            = "AMT_RemoteAccessPolicyRule"
	classAppliesToMPS          = "AMT_RemoteAccessPolicyAppliesToMPS"
	classEnvironmentDetection  = "AMT_EnvironmentDetectionSettingData"
	classComputerSystemPackage = "CIM_ComputerSystemPackage"

	resRemoteAccessCaps      = baseAMT + classRemoteAccessCaps
	resRemoteAccessService   = baseAMT + classRemoteAccessService
	resUserInitiated         = baseAMT + classUserInitiated
	resPublicKeyManagement   = baseAMT + classPublicKeyManagement
	resPublicKeyCertificate  = baseAMT + classPublicKeyCertificate
	resMPSSAP                = baseAMT + classMPSSAP
	resPolicyRule            = baseAMT + classPolicyRule
	resAppliesToMPS          = baseAMT + classAppliesToMPS
	resEnvironmentDetection  = baseAMT + classEnvironmentDetection
	resComputerSystemPackage = baseCIM + classComputerSystemPackage

	actionDelete = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"

	// EnvironmentDetectionID is the InstanceID of AMT's one
	// AMT_EnvironmentDetectionSettingData.
	EnvironmentDetectionID = "Intel(r) AMT Environment Detection Settings"
)

// Triggers of a remote access policy rule (enrol.md §5).
const (
	TriggerUserInitiated = 0
	TriggerAlert         = 1
	TriggerPeriodic      = 2
)

// InfoFormat values of an MPS entry's AccessInfo (enrol.md §4).
const (
	InfoFormatIPv4 = 3
	InfoFormatIPv6 = 4
	InfoFormatFQDN = 201
)

// MpsType values of an AMT_RemoteAccessPolicyAppliesToMPS (enrol.md §6).
const (
	MpsTypeExternal = 0
	MpsTypeInternal = 1
	MpsTypeBoth     = 2
)

// EnabledState values of AMT_UserInitiatedConnectionService (enrol.md §7).
const (
	UserInitiatedDisabled  = 32768
	UserInitiatedBIOS      = 32769
	UserInitiatedOS        = 32770
	UserInitiatedBIOSAndOS = 32771
)

// StatusDuplicate is ReturnValue 2058 (0x80A): the instance already exists.
const StatusDuplicate = 0x080A

// Limits of what AMT accepts for an MPS entry (enrol.md §4 "What AMT
// accepts"); the client refuses more before sending.
const (
	MaxMPSUser       = 16
	MinMPSPassword   = 8
	MaxMPSPassword   = 16
	maxAccessInfo    = 256
	maxExtendedData  = 32
	maxMpsPerPolicy  = 2
	maxDetectionStrs = 5
	maxDetectionLen  = 190
)

// ErrAbsent: the instance to delete does not exist (AMT answers a missing
// instance with a DestinationUnreachable fault). The error is an
// [*AbsentError]; removal treats it as done.
var ErrAbsent = errors.New("wsman: no such instance on the device")

// AbsentError reports that the instance a call named does not exist.
type AbsentError struct {
	Class string // e.g. "AMT_RemoteAccessPolicyRule"
	Key   string // the key's value, e.g. "Periodic"
}

func (e *AbsentError) Error() string {
	return fmt.Sprintf("wsman: the device has no %s %q", e.Class, e.Key)
}

// Is reports whether target is [ErrAbsent].
func (e *AbsentError) Is(target error) bool { return target == ErrAbsent }

func init() {
	// RequestStateChange's own ReturnValues (enrol.md §7, GWM).
	methodStatus[classUserInitiated+".RequestStateChange"] = map[uint32]string{
		1: "not supported", 2: "unknown error", 3: "timeout", 4: "failed", 5: "invalid parameter",
		6: "in use", 4096: "job started", 4097: "invalid state transition",
		4098: "timeout parameter not supported", 4099: "busy",
	}
}

// Provisioning is AMT_SetupAndConfigurationService as enrolment reads it
// (by Get).
type Provisioning struct {
	ProvisioningMode  int    `xml:"ProvisioningMode"`  // 1 ACM, 4 CCM
	ProvisioningState int    `xml:"ProvisioningState"` // 0 pre, 1 in, 2 post
	DhcpDNSSuffix     string `xml:"DhcpDNSSuffix"`
	TrustedDNSSuffix  string `xml:"TrustedDNSSuffix"`
}

// ControlMode names the provisioning mode: "ACM", "CCM" or "".
func (p Provisioning) ControlMode() string {
	return SetupAndConfiguration{ProvisioningMode: p.ProvisioningMode}.ControlMode()
}

// Provisioned reports whether the device is in post-provisioning (2).
func (p Provisioning) Provisioned() bool { return p.ProvisioningState == 2 }

// RemoteAccessCapabilities is AMT_RemoteAccessCapabilities.
type RemoteAccessCapabilities struct {
	MaxTotalMpServers int `xml:"MaxTotalMpServers"`
	MaxMpsPerPolicy   int `xml:"MaxMpsPerPolicy"`
	MaxTotalPolicies  int `xml:"MaxTotalPolicies"`
}

// RemoteAccessService is AMT_RemoteAccessService. IsRemoteTunnelConnected
// exists from CSME 17 only (nil before).
type RemoteAccessService struct {
	IsRemoteTunnelConnected      *bool `xml:"IsRemoteTunnelConnected"`
	RemoteTunnelKeepAliveTimeout int   `xml:"RemoteTunnelKeepAliveTimeout"`
}

// UserInitiatedConnection is AMT_UserInitiatedConnectionService.
type UserInitiatedConnection struct {
	EnabledState int `xml:"EnabledState"` // 32768–32771
}

// Selector is one key of an endpoint reference.
type Selector struct {
	Name  string `xml:"Name,attr"`
	Value string `xml:",chardata"`
}

// EPR is an endpoint reference to an instance: its class's resource URI
// and its keys.
type EPR struct {
	ResourceURI string
	Selectors   []Selector
}

// Selector returns the value of the key name, or "".
func (e EPR) Selector(name string) string {
	for _, s := range e.Selectors {
		if s.Name == name {
			return s.Value
		}
	}
	return ""
}

// eprXML is how an EPR is decoded.
type eprXML struct {
	ReferenceParameters struct {
		ResourceURI string `xml:"ResourceURI"`
		SelectorSet struct {
			Selector []Selector `xml:"Selector"`
		} `xml:"SelectorSet"`
	} `xml:"ReferenceParameters"`
}

// maxSelectors caps the keys of one decoded EPR.
const maxSelectors = 16

func (x *eprXML) epr() (EPR, error) {
	sel := x.ReferenceParameters.SelectorSet.Selector
	if len(sel) > maxSelectors {
		return EPR{}, malformed("an endpoint reference with %d selectors", len(sel))
	}
	e := EPR{ResourceURI: strings.TrimSpace(x.ReferenceParameters.ResourceURI)}
	for _, s := range sel {
		e.Selectors = append(e.Selectors, Selector{Name: s.Name, Value: strings.TrimSpace(s.Value)})
	}
	return e, nil
}

// inner writes the EPR's children: Address and ReferenceParameters (the
// form of a method parameter or a property, enrol.md §12).
func (e EPR) inner(b *strings.Builder) {
	b.WriteString("<a:Address>" + anonymous + "</a:Address><a:ReferenceParameters><w:ResourceURI>")
	b.WriteString(esc(e.ResourceURI))
	b.WriteString("</w:ResourceURI><w:SelectorSet>")
	for _, s := range e.Selectors {
		b.WriteString(`<w:Selector Name="` + esc(s.Name) + `">` + esc(s.Value) + `</w:Selector>`)
	}
	b.WriteString("</w:SelectorSet></a:ReferenceParameters>")
}

// param returns the EPR as the element <h:name> with the EPR's children
// directly inside (no EndpointReference wrapper).
func (e EPR) param(name string) string {
	var b strings.Builder
	b.WriteString("<h:" + name + ">")
	e.inner(&b)
	b.WriteString("</h:" + name + ">")
	return b.String()
}

// wrapped returns the EPR inside an a:EndpointReference element: the form
// of an EPR-valued header selector (enrol.md §12).
func (e EPR) wrapped() string {
	var b strings.Builder
	b.WriteString("<a:EndpointReference>")
	e.inner(&b)
	b.WriteString("</a:EndpointReference>")
	return b.String()
}

// SAPRef returns the EPR of the AMT_ManagementPresenceRemoteSAP named name
// with all four keys.
func SAPRef(name string) EPR {
	return EPR{ResourceURI: resMPSSAP, Selectors: []Selector{
		{"CreationClassName", classMPSSAP}, {"Name", name},
		{"SystemCreationClassName", classComputerSystem}, {"SystemName", "Intel(r) AMT"}}}
}

// RuleRef returns the EPR of the AMT_RemoteAccessPolicyRule named name
// with all four keys.
func RuleRef(name string) EPR {
	return EPR{ResourceURI: resPolicyRule, Selectors: []Selector{
		{"CreationClassName", classPolicyRule}, {"PolicyRuleName", name},
		{"SystemCreationClassName", classComputerSystem}, {"SystemName", "Intel(r) AMT"}}}
}

// MPServer is one AMT_ManagementPresenceRemoteSAP, an MPS entry (AMT does
// not return its credentials).
type MPServer struct {
	Name       string `xml:"Name"` // "Intel(r) AMT:Management Presence Server N"
	AccessInfo string `xml:"AccessInfo"`
	InfoFormat int    `xml:"InfoFormat"`
	Port       int    `xml:"Port"`
	CN         string `xml:"CN"`
}

// PolicyRule is one AMT_RemoteAccessPolicyRule.
type PolicyRule struct {
	PolicyRuleName string `xml:"PolicyRuleName"`
	Trigger        int    `xml:"Trigger"`
	TunnelLifeTime uint32 `xml:"TunnelLifeTime"`
	ExtendedData   string `xml:"ExtendedData"` // base64
}

// PolicyAppliesToMPS is one AMT_RemoteAccessPolicyAppliesToMPS: the link of
// a rule (PolicySet) to an MPS entry (ManagedElement).
type PolicyAppliesToMPS struct {
	ManagedElement EPR
	PolicySet      EPR
	MpsType        int
	OrderOfAccess  int
}

// SAP returns the Name of the MPS entry.
func (a PolicyAppliesToMPS) SAP() string { return a.ManagedElement.Selector("Name") }

// Rule returns the PolicyRuleName of the rule.
func (a PolicyAppliesToMPS) Rule() string { return a.PolicySet.Selector("PolicyRuleName") }

type appliesXML struct {
	ManagedElement eprXML `xml:"ManagedElement"`
	PolicySet      eprXML `xml:"PolicySet"`
	MpsType        int    `xml:"MpsType"`
	OrderOfAccess  int    `xml:"OrderOfAccess"`
}

// PublicKeyCertificate is one AMT_PublicKeyCertificate.
type PublicKeyCertificate struct {
	InstanceID      string `xml:"InstanceID"` // "Intel(r) AMT Certificate: Handle: N"
	X509Certificate string `xml:"X509Certificate"`
	Subject         string `xml:"Subject"`
	Issuer          string `xml:"Issuer"`
	TrustedRoot     bool   `xml:"TrustedRootCertficate"` // AMT's spelling
	ReadOnly        bool   `xml:"ReadOnlyCertificate"`
}

// DER returns the certificate's DER bytes, or nil if X509Certificate is
// not base64.
func (c PublicKeyCertificate) DER() []byte {
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(c.X509Certificate), ""))
	if err != nil {
		return nil
	}
	return b
}

// EnvironmentDetection is AMT_EnvironmentDetectionSettingData.
type EnvironmentDetection struct {
	InstanceID                 string   `xml:"InstanceID"`
	ElementName                string   `xml:"ElementName"`
	DetectionAlgorithm         int      `xml:"DetectionAlgorithm"`
	DetectionStrings           []string `xml:"DetectionStrings"`
	DetectionIPv6LocalPrefixes []string `xml:"DetectionIPv6LocalPrefixes"`
}

type computerSystemPackage struct {
	PlatformGUID string `xml:"PlatformGUID"`
}

// Provisioning reads AMT_SetupAndConfigurationService by Get.
func (s *Session) Provisioning(ctx context.Context) (Provisioning, error) {
	var v Provisioning
	err := s.get(ctx, resSetupAndConfig, &v)
	v.DhcpDNSSuffix = cleanText(v.DhcpDNSSuffix, 256)
	v.TrustedDNSSuffix = cleanText(v.TrustedDNSSuffix, 256)
	return v, err
}

// PlatformGUID reads CIM_ComputerSystemPackage PlatformGUID: 32 hex digits,
// the GUID's 16 bytes in the order AMT sends them in APF.
func (s *Session) PlatformGUID(ctx context.Context) (string, error) {
	var v computerSystemPackage
	if err := s.get(ctx, resComputerSystemPackage, &v); err != nil {
		return "", err
	}
	g := strings.ReplaceAll(strings.TrimSpace(v.PlatformGUID), "-", "")
	if len(g) != 32 {
		return "", malformed("PlatformGUID of %d characters", len(g))
	}
	for i := 0; i < len(g); i++ {
		if !strings.ContainsRune("0123456789abcdefABCDEF", rune(g[i])) {
			return "", malformed("PlatformGUID is not hexadecimal")
		}
	}
	return g, nil
}

// RemoteAccessCapabilities reads AMT_RemoteAccessCapabilities.
func (s *Session) RemoteAccessCapabilities(ctx context.Context) (RemoteAccessCapabilities, error) {
	var v RemoteAccessCapabilities
	err := s.get(ctx, resRemoteAccessCaps, &v)
	return v, err
}

// RemoteAccessService reads AMT_RemoteAccessService.
func (s *Session) RemoteAccessService(ctx context.Context) (RemoteAccessService, error) {
	var v RemoteAccessService
	err := s.get(ctx, resRemoteAccessService, &v)
	return v, err
}

// UserInitiatedConnection reads AMT_UserInitiatedConnectionService. A
// device without it does not support CIRA (enrol.md §2).
func (s *Session) UserInitiatedConnection(ctx context.Context) (UserInitiatedConnection, error) {
	var v UserInitiatedConnection
	err := s.get(ctx, resUserInitiated, &v)
	return v, err
}

// MPServers enumerates AMT_ManagementPresenceRemoteSAP.
func (s *Session) MPServers(ctx context.Context) ([]MPServer, error) {
	items, err := enumerate[MPServer](ctx, s, resMPSSAP)
	for i := range items {
		m := &items[i]
		m.Name, m.AccessInfo, m.CN = cleanText(m.Name, 256), cleanText(m.AccessInfo, 256), cleanText(m.CN, 256)
	}
	return items, err
}

// PolicyRules enumerates AMT_RemoteAccessPolicyRule.
func (s *Session) PolicyRules(ctx context.Context) ([]PolicyRule, error) {
	items, err := enumerate[PolicyRule](ctx, s, resPolicyRule)
	for i := range items {
		items[i].PolicyRuleName = cleanText(items[i].PolicyRuleName, 256)
		items[i].ExtendedData = cleanText(strings.TrimSpace(items[i].ExtendedData), 64)
	}
	return items, err
}

// PolicyAppliesToMPS enumerates AMT_RemoteAccessPolicyAppliesToMPS.
func (s *Session) PolicyAppliesToMPS(ctx context.Context) ([]PolicyAppliesToMPS, error) {
	items, err := enumerate[appliesXML](ctx, s, resAppliesToMPS)
	if err != nil {
		return nil, err
	}
	out := make([]PolicyAppliesToMPS, 0, len(items))
	for _, it := range items {
		me, err := it.ManagedElement.epr()
		if err != nil {
			return nil, err
		}
		ps, err := it.PolicySet.epr()
		if err != nil {
			return nil, err
		}
		out = append(out, PolicyAppliesToMPS{ManagedElement: me, PolicySet: ps, MpsType: it.MpsType, OrderOfAccess: it.OrderOfAccess})
	}
	return out, nil
}

// PublicKeyCertificates enumerates AMT_PublicKeyCertificate.
func (s *Session) PublicKeyCertificates(ctx context.Context) ([]PublicKeyCertificate, error) {
	return enumerate[PublicKeyCertificate](ctx, s, resPublicKeyCertificate)
}

// EnvironmentDetection reads AMT_EnvironmentDetectionSettingData.
func (s *Session) EnvironmentDetection(ctx context.Context) (EnvironmentDetection, error) {
	var v EnvironmentDetection
	if err := s.get(ctx, resEnvironmentDetection, &v); err != nil {
		return v, err
	}
	if len(v.DetectionStrings) > 64 || len(v.DetectionIPv6LocalPrefixes) > 64 {
		return EnvironmentDetection{}, malformed("environment detection with %d strings", len(v.DetectionStrings)+len(v.DetectionIPv6LocalPrefixes))
	}
	return v, nil
}

type createdCertificateOutput struct {
	methodOutput
	CreatedCertificate eprXML `xml:"CreatedCertificate"`
}

// AddTrustedRootCertificate installs der as a trusted root:
// AMT_PublicKeyManagementService AddTrustedRootCertificate. It returns the
// certificate's InstanceID. When the device already holds it (2058,
// DUPLICATE) it finds the existing one by its X509Certificate and returns
// its InstanceID with existed set.
func (s *Session) AddTrustedRootCertificate(ctx context.Context, der []byte) (instanceID string, existed bool, err error) {
	if len(der) == 0 {
		return "", false, errors.New("wsman: no certificate to add")
	}
	var out createdCertificateOutput
	in := element("CertificateBlob", base64.StdEncoding.EncodeToString(der))
	rv, err := s.invoke(ctx, resPublicKeyManagement, "AddTrustedRootCertificate", in, &out)
	if err == nil && rv == StatusDuplicate {
		id, ferr := s.findCertificate(ctx, der)
		if ferr != nil {
			return "", false, ferr
		}
		if id == "" {
			return "", false, fmt.Errorf("%w; yet no AMT_PublicKeyCertificate holds it", check(resPublicKeyManagement, "AddTrustedRootCertificate", rv, nil))
		}
		return id, true, nil
	}
	if err := check(resPublicKeyManagement, "AddTrustedRootCertificate", rv, err); err != nil {
		return "", false, err
	}
	e, err := out.CreatedCertificate.epr()
	if err != nil {
		return "", false, err
	}
	id := cleanText(e.Selector("InstanceID"), 256)
	if id == "" {
		return "", false, malformed("AddTrustedRootCertificate_OUTPUT has no CreatedCertificate InstanceID")
	}
	return id, false, nil
}

// findCertificate returns the InstanceID of the certificate whose DER is
// der, or "".
func (s *Session) findCertificate(ctx context.Context, der []byte) (string, error) {
	certs, err := s.PublicKeyCertificates(ctx)
	if err != nil {
		return "", err
	}
	for _, c := range certs {
		if bytes.Equal(c.DER(), der) {
			return cleanText(c.InstanceID, 256), nil
		}
	}
	return "", nil
}

// MPServerEntry is the input of AddMpServer with AuthMethod 2 (user name
// and password).
type MPServerEntry struct {
	AccessInfo string // the address AMT dials: an FQDN or an IP literal
	InfoFormat int    // InfoFormatIPv4, InfoFormatIPv6 or InfoFormatFQDN
	Port       int
	CN         string // the name in the MPS's certificate
	Username   string // at most 16 characters
	Password   []byte // 8–16 characters; never logged nor put in errors
}

func (m *MPServerEntry) check() error {
	switch {
	case m.AccessInfo == "" || len(m.AccessInfo) > maxAccessInfo:
		return fmt.Errorf("wsman: the MPS address must have 1 to %d characters", maxAccessInfo)
	case m.InfoFormat != InfoFormatIPv4 && m.InfoFormat != InfoFormatIPv6 && m.InfoFormat != InfoFormatFQDN:
		return fmt.Errorf("wsman: InfoFormat %d is none of 3 (IPv4), 4 (IPv6) and 201 (FQDN)", m.InfoFormat)
	case m.Port <= 0 || m.Port > 65535:
		return fmt.Errorf("wsman: MPS port %d is out of range", m.Port)
	case len(m.CN) > maxAccessInfo:
		return fmt.Errorf("wsman: the MPS certificate name has more than %d characters", maxAccessInfo)
	case m.Username == "" || len(m.Username) > MaxMPSUser:
		return fmt.Errorf("wsman: the CIRA user name must have 1 to %d characters (AMT's limit)", MaxMPSUser)
	case len(m.Password) < MinMPSPassword || len(m.Password) > MaxMPSPassword:
		return fmt.Errorf("wsman: the CIRA password must have %d to %d characters (AMT's limit)", MinMPSPassword, MaxMPSPassword)
	}
	for _, c := range m.Username {
		if c < 32 || c > 126 {
			return errors.New("wsman: the CIRA user name must be printable 7-bit ASCII")
		}
	}
	for _, c := range m.Password {
		if c < 32 || c > 126 {
			return errors.New("wsman: the CIRA password must be printable 7-bit ASCII")
		}
	}
	return nil
}

type mpServerOutput struct {
	methodOutput
	MpServer eprXML `xml:"MpServer"`
}

// AddMpServer adds an MPS entry: AMT_RemoteAccessService AddMpServer with
// AuthMethod 2. It returns the new entry's Name, from the MpServer EPR.
func (s *Session) AddMpServer(ctx context.Context, m MPServerEntry) (string, error) {
	if err := m.check(); err != nil {
		return "", err
	}
	in := element("AccessInfo", m.AccessInfo) + element("InfoFormat", itoa(m.InfoFormat)) +
		element("Port", itoa(m.Port)) + element("AuthMethod", "2") +
		element("Username", m.Username) + element("Password", string(m.Password))
	if m.CN != "" {
		in += element("CN", m.CN)
	}
	var out mpServerOutput
	rv, err := s.invoke(ctx, resRemoteAccessService, "AddMpServer", in, &out)
	if err := check(resRemoteAccessService, "AddMpServer", rv, err); err != nil {
		return "", err
	}
	e, err := out.MpServer.epr()
	if err != nil {
		return "", err
	}
	name := cleanText(e.Selector("Name"), 256)
	if name == "" {
		return "", malformed("AddMpServer_OUTPUT has no MpServer Name")
	}
	return name, nil
}

// PolicyRuleSpec is the input of AddRemoteAccessPolicyRule.
type PolicyRuleSpec struct {
	Trigger        int    // TriggerUserInitiated, TriggerAlert or TriggerPeriodic
	TunnelLifeTime uint32 // seconds; 0: until closed
	ExtendedData   []byte // at most 32 bytes; see PeriodicInterval
	// MpServers are the Names of 1 or 2 MPS entries, primary first.
	MpServers []string
}

// PeriodicInterval returns the ExtendedData of a periodic rule that opens
// the tunnel every seconds: u32 0 then u32 seconds, network order
// (enrol.md §5: 25 s is AAAAAAAAABk=).
func PeriodicInterval(seconds uint32) []byte {
	return []byte{0, 0, 0, 0, byte(seconds >> 24), byte(seconds >> 16), byte(seconds >> 8), byte(seconds)}
}

type policyRuleOutput struct {
	methodOutput
	PolicyRule eprXML `xml:"PolicyRule"`
}

// AddRemoteAccessPolicyRule adds a rule: AMT_RemoteAccessService
// AddRemoteAccessPolicyRule, one MpServer EPR (Name key only, as every tool
// sends) per server in order. It returns the rule's PolicyRuleName.
func (s *Session) AddRemoteAccessPolicyRule(ctx context.Context, r PolicyRuleSpec) (string, error) {
	if r.Trigger < 0 || r.Trigger > 3 {
		return "", fmt.Errorf("wsman: trigger %d is not a remote access trigger", r.Trigger)
	}
	if len(r.ExtendedData) > maxExtendedData {
		return "", fmt.Errorf("wsman: ExtendedData holds at most %d bytes", maxExtendedData)
	}
	if len(r.MpServers) < 1 || len(r.MpServers) > maxMpsPerPolicy {
		return "", fmt.Errorf("wsman: a rule names 1 or 2 MPS entries, not %d", len(r.MpServers))
	}
	in := element("Trigger", itoa(r.Trigger)) + element("TunnelLifeTime", strconv.FormatUint(uint64(r.TunnelLifeTime), 10)) +
		element("ExtendedData", base64.StdEncoding.EncodeToString(r.ExtendedData))
	for _, name := range r.MpServers {
		in += EPR{ResourceURI: resMPSSAP, Selectors: []Selector{{"Name", name}}}.param("MpServer")
	}
	var out policyRuleOutput
	rv, err := s.invoke(ctx, resRemoteAccessService, "AddRemoteAccessPolicyRule", in, &out)
	if err := check(resRemoteAccessService, "AddRemoteAccessPolicyRule", rv, err); err != nil {
		return "", err
	}
	e, err := out.PolicyRule.epr()
	if err != nil {
		return "", err
	}
	name := cleanText(e.Selector("PolicyRuleName"), 256)
	if name == "" {
		return "", malformed("AddRemoteAccessPolicyRule_OUTPUT has no PolicyRule PolicyRuleName")
	}
	return name, nil
}

// selectorSet returns a header w:SelectorSet of plain selectors (name,
// value pairs).
func selectorSet(kv ...string) string {
	var b strings.Builder
	b.WriteString("<w:SelectorSet>")
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(`<w:Selector Name="` + esc(kv[i]) + `">` + esc(kv[i+1]) + `</w:Selector>`)
	}
	b.WriteString("</w:SelectorSet>")
	return b.String()
}

// PutPolicyAppliesToMPS writes an association's MpsType and OrderOfAccess.
// Its header selectors ManagedElement and PolicySet are built from a's
// EPRs, each wrapped in an EndpointReference; the body holds them as
// properties without the wrapper (enrol.md §6, §12). Pass an instance as
// [Session.PolicyAppliesToMPS] returned it.
func (s *Session) PutPolicyAppliesToMPS(ctx context.Context, a PolicyAppliesToMPS) error {
	if a.SAP() == "" || a.Rule() == "" {
		return errors.New("wsman: the association names no MPS entry or no rule")
	}
	if a.MpsType < 0 || a.MpsType > 2 || a.OrderOfAccess < 0 || a.OrderOfAccess > 65535 {
		return fmt.Errorf("wsman: MpsType %d or OrderOfAccess %d out of range", a.MpsType, a.OrderOfAccess)
	}
	sel := `<w:SelectorSet><w:Selector Name="ManagedElement">` + a.ManagedElement.wrapped() +
		`</w:Selector><w:Selector Name="PolicySet">` + a.PolicySet.wrapped() + `</w:Selector></w:SelectorSet>`
	props := a.ManagedElement.param("ManagedElement") + a.PolicySet.param("PolicySet") +
		element("OrderOfAccess", itoa(a.OrderOfAccess)) + element("MpsType", itoa(a.MpsType))
	return s.putSelected(ctx, resAppliesToMPS, sel, props)
}

// putSelected is a transfer Put of an instance named by header selectors.
func (s *Session) putSelected(ctx context.Context, resource, selectors, props string) error {
	class := className(resource)
	body := `<h:` + class + ` xmlns:h="` + esc(resource) + `">` + props + `</h:` + class + `>`
	return s.call(ctx, &request{action: actionPut, resource: resource, selectors: selectors, body: body, idempotent: true}, "", nil)
}

// RequestUserInitiatedState sets AMT_UserInitiatedConnectionService's state
// (UserInitiatedDisabled … UserInitiatedBIOSAndOS): RequestStateChange.
func (s *Session) RequestUserInitiatedState(ctx context.Context, state int) error {
	if state < UserInitiatedDisabled || state > UserInitiatedBIOSAndOS {
		return fmt.Errorf("wsman: user-initiated state %d is not 32768–32771", state)
	}
	rv, err := s.invoke(ctx, resUserInitiated, "RequestStateChange", element("RequestedState", itoa(state)), nil)
	return check(resUserInitiated, "RequestStateChange", rv, err)
}

// PutEnvironmentDetection writes the whole
// AMT_EnvironmentDetectionSettingData back: pass what
// [Session.EnvironmentDetection] returned with new DetectionStrings (each
// string one element; none for an empty list).
func (s *Session) PutEnvironmentDetection(ctx context.Context, e EnvironmentDetection) error {
	if e.InstanceID == "" {
		e.InstanceID = EnvironmentDetectionID
	}
	if len(e.DetectionStrings) > maxDetectionStrs {
		return fmt.Errorf("wsman: at most %d detection strings", maxDetectionStrs)
	}
	var b strings.Builder
	b.WriteString(element("DetectionAlgorithm", itoa(e.DetectionAlgorithm)))
	for _, p := range e.DetectionIPv6LocalPrefixes {
		b.WriteString(element("DetectionIPv6LocalPrefixes", p))
	}
	for _, d := range e.DetectionStrings {
		if d == "" || len(d) > maxDetectionLen {
			return fmt.Errorf("wsman: a detection string has 1 to %d characters", maxDetectionLen)
		}
		b.WriteString(element("DetectionStrings", d))
	}
	if e.ElementName != "" {
		b.WriteString(element("ElementName", e.ElementName))
	}
	b.WriteString(element("InstanceID", e.InstanceID))
	return s.putSelected(ctx, resEnvironmentDetection, selectorSet("InstanceID", e.InstanceID), b.String())
}

// del is a transfer Delete of the instance whose one key is key=value. A
// missing instance is an [*AbsentError].
func (s *Session) del(ctx context.Context, resource, key, value string) error {
	if value == "" {
		return fmt.Errorf("wsman: no %s to delete", key)
	}
	err := s.call(ctx, &request{action: actionDelete, resource: resource, selectors: selectorSet(key, value), idempotent: true}, "", nil)
	var f *Fault
	if errors.As(err, &f) && f.Subcode == "DestinationUnreachable" {
		return &AbsentError{Class: className(resource), Key: value}
	}
	return err
}

// DeletePolicyRule deletes the AMT_RemoteAccessPolicyRule of that
// PolicyRuleName ([ErrAbsent] if none).
func (s *Session) DeletePolicyRule(ctx context.Context, name string) error {
	return s.del(ctx, resPolicyRule, "PolicyRuleName", name)
}

// DeleteMpServer deletes the AMT_ManagementPresenceRemoteSAP of that Name
// ([ErrAbsent] if none). AMT refuses while a rule still names it.
func (s *Session) DeleteMpServer(ctx context.Context, name string) error {
	return s.del(ctx, resMPSSAP, "Name", name)
}

// DeleteCertificate deletes the AMT_PublicKeyCertificate of that InstanceID
// ([ErrAbsent] if none).
func (s *Session) DeleteCertificate(ctx context.Context, instanceID string) error {
	return s.del(ctx, resPublicKeyCertificate, "InstanceID", instanceID)
}

// FirmwareVersion returns the AMT major and minor version from a Server
// header ("Intel(R) Active Management Technology 16.1.25"), ok false when it
// names none.
func FirmwareVersion(server string) (major, minor int, ok bool) {
	const prefix = "Active Management Technology "
	i := strings.Index(server, prefix)
	if i < 0 {
		return 0, 0, false
	}
	v := strings.Fields(server[i+len(prefix):])
	if len(v) == 0 {
		return 0, 0, false
	}
	parts := strings.Split(v[0], ".")
	if len(parts) < 2 {
		return 0, 0, false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || ma < 0 || mi < 0 || ma > 1000 || mi > 1000 {
		return 0, 0, false
	}
	return ma, mi, true
}
