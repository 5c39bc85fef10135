package wsman

import (
	"context"
	"errors"
	"strconv"
)

// The redirection switches (§1.1 row 4).
const (
	classRedirectionService = "AMT_RedirectionService"
	classKVMSAP             = "CIM_KVMRedirectionSAP"
	classKVMSettingData     = "IPS_KVMRedirectionSettingData"

	resRedirectionService = baseAMT + classRedirectionService
	resKVMSAP             = baseCIM + classKVMSAP
	resKVMSettingData     = baseIPS + classKVMSettingData
)

// AMT_RedirectionService EnabledState and RequestStateChange values.
const (
	RedirectionNone    = 32768 // IDE-R and SOL disabled
	RedirectionIDER    = 32769 // IDE-R enabled
	RedirectionSOL     = 32770 // SOL enabled
	RedirectionIDERSOL = 32771 // both
)

// RedirectionService is AMT_RedirectionService.
type RedirectionService struct {
	Name                    string   `xml:"Name"`
	CreationClassName       string   `xml:"CreationClassName"`
	SystemName              string   `xml:"SystemName"`
	SystemCreationClassName string   `xml:"SystemCreationClassName"`
	ElementName             string   `xml:"ElementName"`
	EnabledState            int      `xml:"EnabledState"`
	ListenerEnabled         bool     `xml:"ListenerEnabled"`
	AccessLog               []string `xml:"AccessLog"`
}

// SOL reports whether Serial-over-LAN is enabled.
func (r RedirectionService) SOL() bool {
	return r.EnabledState == RedirectionSOL || r.EnabledState == RedirectionIDERSOL
}

// IDER reports whether IDE redirection is enabled.
func (r RedirectionService) IDER() bool {
	return r.EnabledState == RedirectionIDER || r.EnabledState == RedirectionIDERSOL
}

// KVMRedirectionSAP is CIM_KVMRedirectionSAP.
type KVMRedirectionSAP struct {
	Name           string `xml:"Name"`
	ElementName    string `xml:"ElementName"`
	EnabledState   int    `xml:"EnabledState"` // 2 enabled, 3 disabled, 6 enabled but offline
	RequestedState int    `xml:"RequestedState"`
	KVMProtocol    int    `xml:"KVMProtocol"`
}

// Enabled reports whether KVM is enabled (6, enabled but offline, counts).
func (k KVMRedirectionSAP) Enabled() bool { return k.EnabledState == 2 || k.EnabledState == 6 }

// KVMRedirectionSettingData is IPS_KVMRedirectionSettingData.
type KVMRedirectionSettingData struct {
	ElementName        string `xml:"ElementName"`
	InstanceID         string `xml:"InstanceID"`
	EnabledByMEBx      bool   `xml:"EnabledByMEBx"`
	Is5900PortEnabled  bool   `xml:"Is5900PortEnabled"`
	OptInPolicy        bool   `xml:"OptInPolicy"`
	OptInPolicyTimeout int    `xml:"OptInPolicyTimeout"`
	SessionTimeout     int    `xml:"SessionTimeout"`
	DefaultScreen      int    `xml:"DefaultScreen"`
	// RFBPassword is write-only: the device returns it empty, and an empty
	// one is not sent.
	RFBPassword string `xml:"RFBPassword"`
}

// RedirectionService reads AMT_RedirectionService.
func (s *Session) RedirectionService(ctx context.Context) (RedirectionService, error) {
	var v RedirectionService
	err := s.get(ctx, resRedirectionService, &v)
	return v, err
}

// KVMRedirectionSAP reads CIM_KVMRedirectionSAP; a platform without KVM
// fails with [ErrUnsupported] (DestinationUnreachable).
func (s *Session) KVMRedirectionSAP(ctx context.Context) (KVMRedirectionSAP, error) {
	var v KVMRedirectionSAP
	err := s.get(ctx, resKVMSAP, &v)
	return v, err
}

// KVMRedirectionSettingData reads IPS_KVMRedirectionSettingData.
func (s *Session) KVMRedirectionSettingData(ctx context.Context) (KVMRedirectionSettingData, error) {
	var v KVMRedirectionSettingData
	err := s.get(ctx, resKVMSettingData, &v)
	return v, err
}

// PutKVMRedirectionSettingData writes IPS_KVMRedirectionSettingData.
func (s *Session) PutKVMRedirectionSettingData(ctx context.Context, k KVMRedirectionSettingData) error {
	props := element("ElementName", k.ElementName) + element("InstanceID", k.InstanceID) +
		element("Is5900PortEnabled", strconv.FormatBool(k.Is5900PortEnabled)) +
		element("OptInPolicy", strconv.FormatBool(k.OptInPolicy)) +
		element("OptInPolicyTimeout", itoa(k.OptInPolicyTimeout)) +
		element("SessionTimeout", itoa(k.SessionTimeout))
	if k.RFBPassword != "" {
		props += element("RFBPassword", k.RFBPassword)
	}
	return s.put(ctx, resKVMSettingData, props)
}

// Features is the state of the redirection switches and of consent, what
// a console checks before a SOL, IDE-R or KVM session.
type Features struct {
	Redirection  bool // the redirection listener is enabled
	SOL, IDER    bool
	KVM          bool // KVM is enabled
	KVMAvailable bool // the platform has KVM
	// OptInRequired and OptInState are IPS_OptInService's (zero on
	// platforms without it, AMT before 6).
	OptInRequired uint32
	OptInState    int
}

// Features reads AMT_RedirectionService, CIM_KVMRedirectionSAP and
// IPS_OptInService. A platform without KVM or the consent service reports
// them absent instead of failing.
func (s *Session) Features(ctx context.Context) (Features, error) {
	r, err := s.RedirectionService(ctx)
	if err != nil {
		return Features{}, err
	}
	f := Features{Redirection: r.ListenerEnabled, SOL: r.SOL(), IDER: r.IDER()}
	k, err := s.KVMRedirectionSAP(ctx)
	switch {
	case err == nil:
		f.KVM, f.KVMAvailable = k.Enabled(), true
	case !errors.Is(err, ErrUnsupported):
		return Features{}, err
	}
	o, err := s.OptInService(ctx)
	switch {
	case err == nil:
		f.OptInRequired, f.OptInState = o.OptInRequired, o.OptInState
	case !errors.Is(err, ErrUnsupported):
		return Features{}, err
	}
	return f, nil
}

// FeatureSwitches are the redirection switches to set.
type FeatureSwitches struct {
	SOL, IDER, KVM bool
}

// SetFeatures sets the switches: AMT_RedirectionService RequestStateChange
// (32768 plus 1 for IDE-R and 2 for SOL), then its Put with ListenerEnabled
// true when any redirection is wanted, then CIM_KVMRedirectionSAP
// RequestStateChange 2 or 3. On a platform without KVM, asking for KVM
// fails with [ErrUnsupported] after the SOL and IDE-R switches are set;
// not asking for it skips it.
func (s *Session) SetFeatures(ctx context.Context, want FeatureSwitches) error {
	state := RedirectionNone
	if want.IDER {
		state |= 1
	}
	if want.SOL {
		state |= 2
	}
	rv, err := s.invoke(ctx, resRedirectionService, "RequestStateChange", element("RequestedState", itoa(state)), nil)
	if err := check(resRedirectionService, "RequestStateChange", rv, err); err != nil {
		return err
	}
	r, err := s.RedirectionService(ctx)
	if err != nil {
		return err
	}
	props := element("CreationClassName", r.CreationClassName) + element("ElementName", r.ElementName) +
		element("EnabledState", itoa(r.EnabledState)) +
		element("ListenerEnabled", strconv.FormatBool(want.SOL || want.IDER || want.KVM)) +
		element("Name", r.Name) + element("SystemCreationClassName", r.SystemCreationClassName) +
		element("SystemName", r.SystemName)
	if err := s.put(ctx, resRedirectionService, props); err != nil {
		return err
	}
	kvm := 3
	if want.KVM {
		kvm = 2
	}
	rv, err = s.invoke(ctx, resKVMSAP, "RequestStateChange", element("RequestedState", itoa(kvm)), nil)
	if errors.Is(err, ErrUnsupported) && !want.KVM {
		return nil
	}
	return check(resKVMSAP, "RequestStateChange", rv, err)
}
