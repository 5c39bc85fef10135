package wsman

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Classes of the boot operations (§1.1 row 3).
const (
	classBootCapabilities  = "AMT_BootCapabilities"
	classBootSettingData   = "AMT_BootSettingData"
	classBootConfigSetting = "CIM_BootConfigSetting"
	classBootService       = "CIM_BootService"
	classBootSourceSetting = "CIM_BootSourceSetting"

	resBootCapabilities  = baseAMT + classBootCapabilities
	resBootSettingData   = baseAMT + classBootSettingData
	resBootConfigSetting = baseCIM + classBootConfigSetting
	resBootService       = baseCIM + classBootService
	resBootSourceSetting = baseCIM + classBootSourceSetting
)

// BootConfig is the InstanceID of AMT's boot configuration, the one
// SetBootConfigRole makes the next boot's.
const BootConfig = "Intel(r) AMT: Boot Configuration 0"

// Boot sources of ChangeBootOrder (CIM_BootSourceSetting InstanceIDs).
const (
	SourcePXE        = "Intel(r) AMT: Force PXE Boot"
	SourceCDDVD      = "Intel(r) AMT: Force CD/DVD Boot"
	SourceHardDrive  = "Intel(r) AMT: Force Hard-drive Boot"
	SourceDiagnostic = "Intel(r) AMT: Force Diagnostic Boot"
	SourceUEFIHTTPS  = "Intel(r) AMT: Force OCR UEFI HTTPS Boot"
)

// BootCapabilities is AMT_BootCapabilities: what the platform can boot to.
type BootCapabilities struct {
	IDER                       bool `xml:"IDER"`
	SOL                        bool `xml:"SOL"`
	BIOSReflash                bool `xml:"BIOSReflash"`
	BIOSSetup                  bool `xml:"BIOSSetup"`
	BIOSPause                  bool `xml:"BIOSPause"`
	ForcePXEBoot               bool `xml:"ForcePXEBoot"`
	ForceHardDriveBoot         bool `xml:"ForceHardDriveBoot"`
	ForceHardDriveSafeModeBoot bool `xml:"ForceHardDriveSafeModeBoot"`
	ForceDiagnosticBoot        bool `xml:"ForceDiagnosticBoot"`
	ForceCDorDVDBoot           bool `xml:"ForceCDorDVDBoot"`
	VerbosityScreenBlank       bool `xml:"VerbosityScreenBlank"`
	PowerButtonLock            bool `xml:"PowerButtonLock"`
	ResetButtonLock            bool `xml:"ResetButtonLock"`
	KeyboardLock               bool `xml:"KeyboardLock"`
	SleepButtonLock            bool `xml:"SleepButtonLock"`
	UserPasswordBypass         bool `xml:"UserPasswordBypass"`
	ForcedProgressEvents       bool `xml:"ForcedProgressEvents"`
	VerbosityVerbose           bool `xml:"VerbosityVerbose"`
	VerbosityQuiet             bool `xml:"VerbosityQuiet"`
	ConfigurationDataReset     bool `xml:"ConfigurationDataReset"`
	BIOSSecureBoot             bool `xml:"BIOSSecureBoot"`
	SecureErase                bool `xml:"SecureErase"`
	ForceWinREBoot             bool `xml:"ForceWinREBoot"`
	ForceUEFILocalPBABoot      bool `xml:"ForceUEFILocalPBABoot"`
	ForceUEFIHTTPSBoot         bool `xml:"ForceUEFIHTTPSBoot"`
	AMTSecureBootControl       bool `xml:"AMTSecureBootControl"`
	PlatformErase              int  `xml:"PlatformErase"`
}

// BootSettingData is AMT_BootSettingData, the options of the next boot.
// [Session.PutBootSettingData] writes the writable fields; the read-only
// ones are as the device reported them.
type BootSettingData struct {
	InstanceID             string `xml:"InstanceID"`
	ElementName            string `xml:"ElementName"`
	OwningEntity           string `xml:"OwningEntity"`
	BIOSPause              bool   `xml:"BIOSPause"`
	BIOSSetup              bool   `xml:"BIOSSetup"`
	BootMediaIndex         int    `xml:"BootMediaIndex"`
	ConfigurationDataReset bool   `xml:"ConfigurationDataReset"`
	EnforceSecureBoot      bool   `xml:"EnforceSecureBoot"`
	FirmwareVerbosity      int    `xml:"FirmwareVerbosity"`
	ForcedProgressEvents   bool   `xml:"ForcedProgressEvents"`
	IDERBootDevice         int    `xml:"IDERBootDevice"` // 0 floppy, 1 CD
	LockKeyboard           bool   `xml:"LockKeyboard"`
	LockPowerButton        bool   `xml:"LockPowerButton"`
	LockResetButton        bool   `xml:"LockResetButton"`
	LockSleepButton        bool   `xml:"LockSleepButton"`
	PlatformErase          bool   `xml:"PlatformErase"`
	ReflashBIOS            bool   `xml:"ReflashBIOS"`
	SecureErase            bool   `xml:"SecureErase"`
	UseIDER                bool   `xml:"UseIDER"`
	UseSOL                 bool   `xml:"UseSOL"`
	UseSafeMode            bool   `xml:"UseSafeMode"`
	UserPasswordBypass     bool   `xml:"UserPasswordBypass"`

	// Read-only.
	BIOSLastStatus           []int `xml:"BIOSLastStatus"`
	OptionsCleared           bool  `xml:"OptionsCleared"`
	SecureBootControlEnabled bool  `xml:"SecureBootControlEnabled"`
	UEFIHTTPSBootEnabled     bool  `xml:"UEFIHTTPSBootEnabled"`
	UEFILocalPBABootEnabled  bool  `xml:"UEFILocalPBABootEnabled"`
	WinREBootEnabled         bool  `xml:"WinREBootEnabled"`
	RPEEnabled               bool  `xml:"RPEEnabled"`
}

// clearOptions turns off every boot option, as a console does before it
// sets the one it wants (§1.1 row 3: "rest false").
func (b *BootSettingData) clearOptions() {
	b.BIOSPause, b.BIOSSetup, b.BootMediaIndex = false, false, 0
	b.ConfigurationDataReset, b.EnforceSecureBoot, b.FirmwareVerbosity = false, false, 0
	b.ForcedProgressEvents, b.IDERBootDevice = false, 0
	b.LockKeyboard, b.LockPowerButton, b.LockResetButton, b.LockSleepButton = false, false, false, false
	b.PlatformErase, b.ReflashBIOS, b.SecureErase = false, false, false
	b.UseIDER, b.UseSOL, b.UseSafeMode, b.UserPasswordBypass = false, false, false, false
}

// props returns the writable properties in AMT's schema order.
func (b *BootSettingData) props() string {
	t := strconv.FormatBool
	return element("BIOSPause", t(b.BIOSPause)) +
		element("BIOSSetup", t(b.BIOSSetup)) +
		element("BootMediaIndex", itoa(b.BootMediaIndex)) +
		element("ConfigurationDataReset", t(b.ConfigurationDataReset)) +
		element("ElementName", b.ElementName) +
		element("EnforceSecureBoot", t(b.EnforceSecureBoot)) +
		element("FirmwareVerbosity", itoa(b.FirmwareVerbosity)) +
		element("ForcedProgressEvents", t(b.ForcedProgressEvents)) +
		element("IDERBootDevice", itoa(b.IDERBootDevice)) +
		element("InstanceID", b.InstanceID) +
		element("LockKeyboard", t(b.LockKeyboard)) +
		element("LockPowerButton", t(b.LockPowerButton)) +
		element("LockResetButton", t(b.LockResetButton)) +
		element("LockSleepButton", t(b.LockSleepButton)) +
		element("OwningEntity", b.OwningEntity) +
		element("PlatformErase", t(b.PlatformErase)) +
		element("ReflashBIOS", t(b.ReflashBIOS)) +
		element("SecureErase", t(b.SecureErase)) +
		element("UseIDER", t(b.UseIDER)) +
		element("UseSOL", t(b.UseSOL)) +
		element("UseSafeMode", t(b.UseSafeMode)) +
		element("UserPasswordBypass", t(b.UserPasswordBypass))
}

// BootCapabilities reads AMT_BootCapabilities.
func (s *Session) BootCapabilities(ctx context.Context) (BootCapabilities, error) {
	var v BootCapabilities
	err := s.get(ctx, resBootCapabilities, &v)
	return v, err
}

// BootSettingData reads AMT_BootSettingData.
func (s *Session) BootSettingData(ctx context.Context) (BootSettingData, error) {
	var v BootSettingData
	err := s.get(ctx, resBootSettingData, &v)
	return v, err
}

// PutBootSettingData writes the writable fields of AMT_BootSettingData.
func (s *Session) PutBootSettingData(ctx context.Context, b BootSettingData) error {
	return s.put(ctx, resBootSettingData, b.props())
}

// ChangeBootOrder sets the boot source of the next boot:
// CIM_BootConfigSetting ChangeBootOrder with Source the
// CIM_BootSourceSetting of that InstanceID, or with no Source (clearing the
// order) when source is "". From AMT 7, a Source without the user's consent
// (where it is needed) gets the fault AccessDenied; that error is also
// [ErrConsentRequired].
func (s *Session) ChangeBootOrder(ctx context.Context, source string) error {
	in := ""
	if source != "" {
		in = reference("Source", resBootSourceSetting, "InstanceID", source)
	}
	rv, err := s.invoke(ctx, resBootConfigSetting, "ChangeBootOrder", in, nil)
	var f *Fault
	if source != "" && errors.As(err, &f) && f.Subcode == "AccessDenied" {
		return fmt.Errorf("%w: %w", ErrConsentRequired, err)
	}
	return check(resBootConfigSetting, "ChangeBootOrder", rv, err)
}

// SetBootConfigRole gives the boot configuration config (usually
// [BootConfig]) the role (1: the configuration of the next boot):
// CIM_BootService SetBootConfigRole.
func (s *Session) SetBootConfigRole(ctx context.Context, config string, role int) error {
	in := reference("BootConfigSetting", resBootConfigSetting, "InstanceID", config) + element("Role", itoa(role))
	rv, err := s.invoke(ctx, resBootService, "SetBootConfigRole", in, nil)
	return check(resBootService, "SetBootConfigRole", rv, err)
}

// BootTarget is what the next boot starts.
type BootTarget int

// The boot targets.
const (
	BootBIOS       BootTarget = iota + 1 // the BIOS setup screen
	BootPXE                              // the network (PXE)
	BootCDDVD                            // the local CD/DVD drive
	BootHardDrive                        // the local hard drive
	BootDiagnostic                       // the diagnostic partition
	BootIDERCD                           // the console's CD image over IDE redirection
	BootIDERFloppy                       // the console's floppy image over IDE redirection
)

func (t BootTarget) String() string {
	switch t {
	case BootBIOS:
		return "BIOS setup"
	case BootPXE:
		return "PXE"
	case BootCDDVD:
		return "CD/DVD"
	case BootHardDrive:
		return "hard drive"
	case BootDiagnostic:
		return "diagnostics"
	case BootIDERCD:
		return "IDE-R CD"
	case BootIDERFloppy:
		return "IDE-R floppy"
	}
	return fmt.Sprintf("boot target %d", int(t))
}

// BootRequest is a boot to a target.
type BootRequest struct {
	Target BootTarget
	// SOL redirects the boot's console to Serial-over-LAN (UseSOL).
	SOL bool
	// Power is the action that starts the boot: [PowerOn] (the device is
	// off) or [PowerReset] (it is on); zero reads the power state first and
	// picks one.
	Power PowerAction
}

// Boot boots the device to a target by the sequence of §1.1 row 3:
//  1. (only when req.Power is zero) the power state;
//  2. AMT_BootCapabilities Get, failing with [ErrUnsupported] if the
//     platform lacks the target (or SOL);
//  3. ChangeBootOrder with no Source, so that an earlier one-time boot
//     source does not stick;
//  4. AMT_BootSettingData Get, then Put with the target's options and the
//     others cleared;
//  5. SetBootConfigRole of [BootConfig] to role 1;
//  6. ChangeBootOrder to the target's source (not for BIOS and IDE-R);
//  7. RequestPowerStateChange with req.Power.
//
// It stops at the first error. It records nothing itself: the caller logs
// what was done. In client control mode AMT ignores the boot options unless
// the user consented first (§1.1 notes).
func (s *Session) Boot(ctx context.Context, req BootRequest) error {
	var source string
	switch req.Target {
	case BootPXE:
		source = SourcePXE
	case BootCDDVD:
		source = SourceCDDVD
	case BootHardDrive:
		source = SourceHardDrive
	case BootDiagnostic:
		source = SourceDiagnostic
	case BootBIOS, BootIDERCD, BootIDERFloppy:
	default:
		return fmt.Errorf("wsman: %v is not a boot target", req.Target)
	}
	power := req.Power
	switch power {
	case 0:
		st, err := s.PowerState(ctx)
		if err != nil {
			return err
		}
		power = PowerOn
		if st.On() {
			power = PowerReset
		}
	case PowerOn, PowerReset, PowerCycle:
	default:
		return fmt.Errorf("wsman: a boot cannot start with %v", power)
	}
	caps, err := s.BootCapabilities(ctx)
	if err != nil {
		return err
	}
	ok := map[BootTarget]bool{
		BootBIOS: caps.BIOSSetup, BootPXE: caps.ForcePXEBoot, BootCDDVD: caps.ForceCDorDVDBoot,
		BootHardDrive: caps.ForceHardDriveBoot, BootDiagnostic: caps.ForceDiagnosticBoot,
		BootIDERCD: caps.IDER, BootIDERFloppy: caps.IDER,
	}[req.Target]
	if !ok || req.SOL && !caps.SOL {
		what := req.Target.String()
		if ok {
			what = "SOL"
		}
		return fmt.Errorf("%w: the platform cannot boot to %s", ErrUnsupported, what)
	}
	if err := s.ChangeBootOrder(ctx, ""); err != nil {
		return err
	}
	bs, err := s.BootSettingData(ctx)
	if err != nil {
		return err
	}
	bs.clearOptions()
	bs.UseSOL = req.SOL
	switch req.Target {
	case BootBIOS:
		bs.BIOSSetup = true
	case BootIDERCD:
		bs.UseIDER, bs.IDERBootDevice = true, 1
	case BootIDERFloppy:
		bs.UseIDER, bs.IDERBootDevice = true, 0
	}
	if err := s.PutBootSettingData(ctx, bs); err != nil {
		return err
	}
	if err := s.SetBootConfigRole(ctx, BootConfig, 1); err != nil {
		return err
	}
	if source != "" {
		if err := s.ChangeBootOrder(ctx, source); err != nil {
			return err
		}
	}
	return s.RequestPowerStateChange(ctx, power)
}
