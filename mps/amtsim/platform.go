package amtsim

// The simulated platform behind a device's WS-Man and redirection services:
// its AMT version and control mode, its hardware, and the state that the
// toolbox calls of amt-toolbox.md §1.1 change (power, boot settings, user
// consent, the redirection switches) and fill (the event and audit logs,
// and the record of calls received).

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// DefaultAMTVersion is the AMT version of a device whose [AMTConfig]
// Version is empty: the version the redirection service has always
// announced.
const DefaultAMTVersion = "11.8.55"

// knownVersions completes a version given as a major number (or major and
// minor) with a build that real firmware of that generation carried.
var knownVersions = map[int]string{
	11: "11.8.55", 12: "12.0.45", 13: "13.0.40", 14: "14.1.67",
	15: "15.0.35", 16: "16.1.27", 17: "17.0.10", 18: "18.0.5",
}

// minAMTVersion is the oldest major version the simulator models: user
// consent and KVM exist from AMT 6 (amt-toolbox.md §1.1 rows 4 and 5).
const minAMTVersion = 6

// ControlMode is how AMT was activated (amt-toolbox.md §1.1 row 6,
// AMT_SetupAndConfigurationService.ProvisioningMode). The zero value is
// admin control mode.
type ControlMode uint8

const (
	// ACM, admin control mode (ProvisioningMode 1): user consent is
	// needed only where [AMTConfig] UserConsent asks for it.
	ACM ControlMode = iota
	// CCM, client control mode (ProvisioningMode 4): user consent is
	// always needed for KVM, SOL, IDE-R and boot options, and the policy
	// cannot be changed (DOC controlModes.md).
	CCM
)

var controlModeNames = [...]string{"acm", "ccm"}

func (m ControlMode) String() string {
	if int(m) < len(controlModeNames) {
		return controlModeNames[m]
	}
	return fmt.Sprintf("control mode %d", m)
}

// MarshalText renders the mode's name, "acm" or "ccm".
func (m ControlMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses "acm" or "ccm" (for flags).
func (m *ControlMode) UnmarshalText(b []byte) error {
	for i, n := range controlModeNames {
		if strings.EqualFold(n, string(b)) {
			*m = ControlMode(i)
			return nil
		}
	}
	return fmt.Errorf("amtsim: unknown control mode %q (want acm or ccm)", sanitize(string(b)))
}

// provisioningMode is AMT's ProvisioningMode for m.
func (m ControlMode) provisioningMode() int {
	if m == CCM {
		return 4
	}
	return 1
}

// UserConsent is IPS_OptInService.OptInRequired: which redirection
// features need the user's consent (amt-toolbox.md §1.1 row 5). The zero
// value is none.
type UserConsent uint32

const (
	ConsentNone UserConsent = 0          // no consent needed
	ConsentKVM  UserConsent = 1          // KVM only
	ConsentAll  UserConsent = 0xFFFFFFFF // KVM, SOL, IDE-R and boot options
)

func (c UserConsent) String() string {
	switch c {
	case ConsentNone:
		return "none"
	case ConsentKVM:
		return "kvm"
	case ConsentAll:
		return "all"
	}
	return fmt.Sprintf("consent %d", uint32(c))
}

// MarshalText renders "none", "kvm" or "all".
func (c UserConsent) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses "none", "kvm" or "all" (for flags).
func (c *UserConsent) UnmarshalText(b []byte) error {
	for _, v := range []UserConsent{ConsentNone, ConsentKVM, ConsentAll} {
		if strings.EqualFold(v.String(), string(b)) {
			*c = v
			return nil
		}
	}
	return fmt.Errorf("amtsim: unknown user consent %q (want none, kvm or all)", sanitize(string(b)))
}

func (c UserConsent) valid() bool { return c == ConsentNone || c == ConsentKVM || c == ConsentAll }

// SOLScreen selects what the host behind the serial port shows.
type SOLScreen uint8

const (
	// SOLShell is a line-mode shell: a banner, a prompt, and "you typed"
	// for every line (the default, and the redirection service's
	// behaviour before screens existed).
	SOLShell SOLScreen = iota
	// SOLBIOS is a full-screen BIOS setup utility drawn with VT100
	// sequences: cursor addressing (CSI H), colours (SGR), a frame of DEC
	// special graphics, a menu the arrow keys move through, and an input
	// field that echoes keystrokes (see bios.go).
	SOLBIOS
)

var solScreenNames = [...]string{"shell", "bios"}

func (s SOLScreen) String() string {
	if int(s) < len(solScreenNames) {
		return solScreenNames[s]
	}
	return fmt.Sprintf("screen %d", s)
}

// MarshalText renders "shell" or "bios".
func (s SOLScreen) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses "shell" or "bios" (for flags).
func (s *SOLScreen) UnmarshalText(b []byte) error {
	for i, n := range solScreenNames {
		if strings.EqualFold(n, string(b)) {
			*s = SOLScreen(i)
			return nil
		}
	}
	return fmt.Errorf("amtsim: unknown SOL screen %q (want shell or bios)", sanitize(string(b)))
}

// AMTConfig describes the platform a simulated device runs on: what its
// WS-Man service reports and allows, and what its serial console shows.
// The zero value of each field selects the default named in its comment,
// so a nil *AMTConfig is an AMT 11.8 desktop in ACM without consent, with
// the shell on SOL.
//
// It is read-only once given to [New] or a [Fleet]: a fleet's devices
// share it, and each derives its own serial numbers from its UUID.
type AMTConfig struct {
	// Version is the AMT firmware version, "major", "major.minor" or
	// "major.minor.build" (e.g. "16", "11.8", "16.1.27"); missing parts
	// are those of a real firmware of that generation. It gates what
	// amt-toolbox.md §1.1 marks by version: IPS_PowerManagementService and
	// power states 4, 7, 12 and 14 need 10 or later; the extra KVM
	// settings and UEFI HTTPS boot need 16 or later. It is also the
	// version of the 0x11 redirection reply and of every HTTP reply's
	// Server header. Default [DefaultAMTVersion].
	Version string
	// ControlMode is ACM (default) or CCM.
	ControlMode ControlMode
	// UserConsent is the consent policy in ACM (OptInRequired); CCM
	// always needs consent for everything. Default none.
	UserConsent UserConsent
	// OSAgent reports an OS agent (Intel LMS) running in the host OS,
	// without which AMT cannot sleep, hibernate or shut down and reset
	// gracefully (power states 4, 7, 12, 14).
	OSAgent bool
	// Off starts the host powered off (PowerState 8) rather than on.
	Off bool
	// Hardware is the inventory; nil means [HardwareProfile]("desktop").
	Hardware *Hardware
	// EventLogRecords pre-fills the event log with that many records of
	// earlier boots (390, a full AMT log, is the benchmark size). The log
	// holds 390 records, or EventLogRecords if more, up to
	// [MaxEventLogRecords].
	EventLogRecords int
	// SOLScreen is what the serial console shows. Default [SOLShell]; a
	// host booted into BIOS setup (AMT_BootSettingData BIOSSetup) shows
	// [SOLBIOS] until its next boot either way.
	SOLScreen SOLScreen
}

// MaxEventLogRecords caps [AMTConfig] EventLogRecords.
const MaxEventLogRecords = 8192

// check validates c; a nil c is valid.
func (c *AMTConfig) check() error {
	if c == nil {
		return nil
	}
	if _, err := parseAMTVersion(c.Version); err != nil {
		return err
	}
	if c.ControlMode > CCM {
		return fmt.Errorf("amtsim: unknown control mode %d", c.ControlMode)
	}
	if !c.UserConsent.valid() {
		return fmt.Errorf("amtsim: UserConsent %d: want ConsentNone, ConsentKVM or ConsentAll", uint32(c.UserConsent))
	}
	if c.EventLogRecords < 0 || c.EventLogRecords > MaxEventLogRecords {
		return fmt.Errorf("amtsim: EventLogRecords %d out of range 0 to %d", c.EventLogRecords, MaxEventLogRecords)
	}
	if c.SOLScreen > SOLBIOS {
		return fmt.Errorf("amtsim: unknown SOL screen %d", c.SOLScreen)
	}
	return nil
}

// amtVersion is a parsed firmware version.
type amtVersion struct {
	major, minor, build int
}

func (v amtVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.build) }

// atLeast reports whether v's major version is at least major.
func (v amtVersion) atLeast(major int) bool { return v.major >= major }

// parseAMTVersion parses an AMTConfig Version ("" is the default).
func parseAMTVersion(s string) (amtVersion, error) {
	if s == "" {
		s = DefaultAMTVersion
	}
	parts := strings.Split(s, ".")
	bad := fmt.Errorf("amtsim: AMT version %q: want major, major.minor or major.minor.build, major %d to 99", sanitize(s), minAMTVersion)
	if len(parts) > 3 {
		return amtVersion{}, bad
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > 65535 || (p != "0" && strings.HasPrefix(p, "0")) {
			return amtVersion{}, bad
		}
		n[i] = v
	}
	if n[0] < minAMTVersion || n[0] > 99 {
		return amtVersion{}, bad
	}
	v := amtVersion{n[0], n[1], n[2]}
	if len(parts) < 3 {
		if k, ok := knownVersions[v.major]; ok {
			kv, _ := parseAMTVersion(k)
			if len(parts) == 1 || kv.minor == v.minor {
				v = kv
			}
		}
	}
	return v, nil
}

// Hardware is a simulated platform's inventory, what CIM_Chassis,
// CIM_Card, CIM_BIOSElement, CIM_PhysicalMemory, CIM_Chip, CIM_Processor,
// CIM_MediaAccessDevice and CIM_PhysicalPackage report (amt-toolbox.md
// §1.1 row 7).
type Hardware struct {
	// Profile names the profile this came from, "" if custom.
	Profile string
	// Manufacturer, Model and Version describe the system and its
	// chassis; ChassisType is CIM's ChassisPackageType (3 desktop, 10
	// notebook).
	Manufacturer, Model, Version string
	ChassisType                  int
	// The baseboard (CIM_Card).
	BoardManufacturer, BoardModel, BoardVersion string
	// The BIOS (CIM_BIOSElement).
	BIOSVendor, BIOSVersion string
	BIOSDate                time.Time
	// The processor: its name (CIM_Chip Version), current and maximum
	// clock in MHz, and CIM family code (e.g. 198 Core i7).
	CPU               string
	CPUMHz, CPUMaxMHz int
	CPUFamily         int
	Memory            []MemoryModule
	Disks             []Disk
	// NoKVM makes the platform one without KVM (for example with a
	// discrete graphics card only): the KVM classes fault with
	// DestinationUnreachable, as amt-toolbox.md §1.1 row 4 says.
	NoKVM bool
}

// MemoryModule is one CIM_PhysicalMemory.
type MemoryModule struct {
	Bank         string // BankLabel, e.g. "BANK 0"
	SizeMB       int
	MHz          int
	Type         int // CIM MemoryType: 26 DDR4, 34 DDR5
	FormFactor   int // CIM FormFactor: 8 DIMM, 13 SODIMM
	Manufacturer string
	PartNumber   string
}

// Disk is one CIM_MediaAccessDevice with its CIM_PhysicalPackage.
type Disk struct {
	Model  string
	SizeGB int
}

// HardwareProfiles lists the names [HardwareProfile] knows.
var HardwareProfiles = []string{"desktop", "laptop", "headless"}

// HardwareProfile returns a named inventory: "desktop" (a small-form-factor
// business PC with KVM), "laptop" (a notebook with KVM) or "headless" (a
// workstation with a discrete graphics card, hence no KVM). The bool
// reports whether the name is known.
func HardwareProfile(name string) (Hardware, bool) {
	biosDate := time.Date(2024, 3, 14, 0, 0, 0, 0, time.UTC)
	switch name {
	case "desktop":
		return Hardware{
			Profile: name, Manufacturer: "Presence Simulated Systems", Model: "SimDesk 800 G9", Version: "SFF",
			ChassisType: 3, BoardManufacturer: "Presence Simulated Systems", BoardModel: "8A61", BoardVersion: "KBC Version 08.94.00",
			BIOSVendor: "SimBIOS Inc.", BIOSVersion: "U21 Ver. 02.13.00", BIOSDate: biosDate,
			CPU: "Intel(R) Core(TM) i7-12700 CPU @ 2.10GHz", CPUMHz: 2100, CPUMaxMHz: 4900, CPUFamily: 198,
			Memory: []MemoryModule{
				{Bank: "BANK 0", SizeMB: 16384, MHz: 4800, Type: 34, FormFactor: 8, Manufacturer: "SimRAM", PartNumber: "SR5D16G48A1"},
				{Bank: "BANK 2", SizeMB: 16384, MHz: 4800, Type: 34, FormFactor: 8, Manufacturer: "SimRAM", PartNumber: "SR5D16G48A1"},
			},
			Disks: []Disk{{Model: "SIMNVME 512GB PCIe Gen4", SizeGB: 512}},
		}, true
	case "laptop":
		return Hardware{
			Profile: name, Manufacturer: "Presence Simulated Systems", Model: "SimBook 14 G10", Version: "Notebook",
			ChassisType: 10, BoardManufacturer: "Presence Simulated Systems", BoardModel: "8B41", BoardVersion: "KBC Version 41.2C.00",
			BIOSVendor: "SimBIOS Inc.", BIOSVersion: "V70 Ver. 01.07.02", BIOSDate: biosDate.AddDate(0, 4, 0),
			CPU: "Intel(R) Core(TM) Ultra 7 165U", CPUMHz: 1700, CPUMaxMHz: 4900, CPUFamily: 198,
			Memory: []MemoryModule{
				{Bank: "BANK 0", SizeMB: 16384, MHz: 5600, Type: 34, FormFactor: 13, Manufacturer: "SimRAM", PartNumber: "SR5S16G56B2"},
			},
			Disks: []Disk{{Model: "SIMNVME 1TB PCIe Gen4", SizeGB: 1024}},
		}, true
	case "headless":
		return Hardware{
			Profile: name, Manufacturer: "Presence Simulated Systems", Model: "SimStation Z4", Version: "Tower",
			ChassisType: 7, BoardManufacturer: "Presence Simulated Systems", BoardModel: "8C2A", BoardVersion: "A00",
			BIOSVendor: "SimBIOS Inc.", BIOSVersion: "W05 Ver. 03.01.10", BIOSDate: biosDate.AddDate(-1, 0, 0),
			CPU: "Intel(R) Xeon(R) w5-2455X", CPUMHz: 3200, CPUMaxMHz: 4600, CPUFamily: 179,
			Memory: []MemoryModule{
				{Bank: "DIMM 1", SizeMB: 32768, MHz: 4800, Type: 34, FormFactor: 8, Manufacturer: "SimRAM", PartNumber: "SR5R32G48E"},
				{Bank: "DIMM 2", SizeMB: 32768, MHz: 4800, Type: 34, FormFactor: 8, Manufacturer: "SimRAM", PartNumber: "SR5R32G48E"},
				{Bank: "DIMM 3", SizeMB: 32768, MHz: 4800, Type: 34, FormFactor: 8, Manufacturer: "SimRAM", PartNumber: "SR5R32G48E"},
				{Bank: "DIMM 4", SizeMB: 32768, MHz: 4800, Type: 34, FormFactor: 8, Manufacturer: "SimRAM", PartNumber: "SR5R32G48E"},
			},
			Disks: []Disk{{Model: "SIMNVME 2TB PCIe Gen4", SizeGB: 2048}, {Model: "SIMHDD 4TB SATA 7200", SizeGB: 4096}},
			NoKVM: true,
		}, true
	}
	return Hardware{}, false
}

// Power states (CIM_AssociatedPowerManagementService.PowerState) and power
// actions (RequestPowerStateChange's PowerState), amt-toolbox.md §1.1 rows
// 1 and 2.
const (
	PowerOn         = 2  // state on; action power up
	PowerSleepLight = 3  // state
	PowerSleepDeep  = 4  // state; action sleep (standby)
	PowerCycle      = 5  // action: off, then on
	PowerOffHard    = 6  // state
	PowerHibernate  = 7  // state; action hibernate
	PowerOffSoft    = 8  // state off; action power down (hard)
	PowerReset      = 10 // action: master bus reset
	PowerSoftOff    = 12 // action: OS shutdown, then off
	PowerSoftReset  = 14 // action: OS restart
)

// AMT status codes of ReturnValue (amt-toolbox.md §1.0).
const (
	amtSuccess            = 0
	amtInternalError      = 1
	amtNotReady           = 2 // also "invalid in the current state"
	amtInvalidParameter   = 36
	amtUnsupported        = 0x0812 // a wrong consent code too (DMT/mps statusMapper)
	amtUserConsentNeeded  = 0x0821
	auditInvalidIndex     = 35
	messageLogInvalidIter = 2
)

// Opt-in states (IPS_OptInService.OptInState).
const (
	optInNotStarted = 0
	optInRequested  = 1
	optInDisplayed  = 2
	optInReceived   = 3
	optInInSession  = 4
)

// Consent timing and limits. AMT's defaults for OptInCodeTimeout and
// OptInDisplayTimeout are 120 s and 300 s (GWM ips/optin fixtures); how
// long a received consent lasts before a session must start is not
// documented, so it is OptInCodeTimeout here.
const (
	defaultOptInCodeTimeout    = 120
	defaultOptInDisplayTimeout = 300
	maxConsentAttempts         = 3 // wrong codes before AMT cancels the request
	maxCalls                   = 256
)

// Boot source settings (CIM_BootSourceSetting InstanceIDs) and the boot
// configuration (amt-toolbox.md §1.1 row 3).
const (
	BootSourcePXE   = "Intel(r) AMT: Force PXE Boot"
	BootSourceHDD   = "Intel(r) AMT: Force Hard-drive Boot"
	BootSourceCD    = "Intel(r) AMT: Force CD/DVD Boot"
	BootSourceDiag  = "Intel(r) AMT: Force Diagnostic Boot"
	BootSourceHTTPS = "Intel(r) AMT: Force OCR UEFI HTTPS Boot" // AMT 16 and later
	BootConfig      = "Intel(r) AMT: Boot Configuration 0"
)

// Call is one WS-Man request the device answered after authentication, as
// [Device.Calls] records it.
type Call struct {
	Time time.Time
	// Action is "Get", "Put", "Enumerate", "Pull", "Release" or "Invoke",
	// or the action URI for anything else.
	Action string
	// Class is the resource's class name, e.g. "CIM_BootConfigSetting";
	// for an unknown resource, its whole URI.
	Class string
	// Method is the invoked method, e.g. "ChangeBootOrder"; "" unless
	// Action is "Invoke".
	Method string
	// Args holds the simple input parameters of an Invoke and the
	// properties of a Put, by name. A reference parameter (an EPR such as
	// ChangeBootOrder's Source) is given by its InstanceID selector, else
	// its Name selector, else its class; a parameter left out is absent.
	Args map[string]string
	// ReturnValue is the method's ReturnValue; 0 for other actions.
	ReturnValue int
	// Fault is the SOAP fault subcode the request got (e.g.
	// "DestinationUnreachable"), "" if none.
	Fault string
}

// bootSettings holds AMT_BootSettingData's writable properties.
type bootSettings struct {
	BIOSPause, BIOSSetup, ConfigurationDataReset, EnforceSecureBoot, ForcedProgressEvents     bool
	LockKeyboard, LockPowerButton, LockResetButton, LockSleepButton                           bool
	ReflashBIOS, SecureErase, UseIDER, UseSOL, UseSafeMode, UserPasswordBypass, PlatformErase bool
	BootMediaIndex, FirmwareVerbosity, IDERBootDevice                                         int
}

// needsConsent reports whether applying s on a boot needs user consent in
// CCM: every option that hands the boot to the remote operator.
func (s bootSettings) needsConsent() bool {
	return s.BIOSPause || s.BIOSSetup || s.UseIDER || s.UseSOL || s.ReflashBIOS || s.SecureErase ||
		s.ConfigurationDataReset || s.PlatformErase || s.UserPasswordBypass
}

// Platform is the state of one simulated AMT platform: what its WS-Man
// service reports and what the calls change. [Device.Platform] returns a
// device's; [WSManConfig] and [RedirConfig] take one to share it between
// the two services. It is safe for concurrent use.
type Platform struct {
	version  amtVersion
	mode     ControlMode
	agent    bool
	hw       Hardware
	serial   string // the system's serial number, from the UUID
	uuid     apf.UUID
	screen   SOLScreen
	log      *slog.Logger
	now      func() time.Time // time.Now; tests replace it
	randCode func() int       // a 6-digit code; tests replace it
	// The fields above are read-only once NewPlatform returns.

	mu sync.Mutex // guards the fields below, and the handler's enumerations
	// Power.
	power       int
	osSaving    int // IPS_PowerManagementService.OSPowerSavingState
	boots       int // boots since the simulation started
	inSetup     bool
	lastBoot    string // what the last boot did, for tests and the BIOS screen
	redirActive int    // redirection sessions running
	// Boot.
	boot        bootSettings
	bootSource  string // the forced source of ChangeBootOrder, "" when cleared
	bootNext    bool   // SetBootConfigRole made the configuration the next boot's
	optsCleared bool   // AMT_BootSettingData OptionsCleared
	bootSvc     int    // CIM_BootService EnabledState
	// Consent.
	consent        UserConsent
	optInState     int
	code           int // the displayed code, while optInState is 1 or 2
	codeShown      string
	attempts       int
	displayedUntil time.Time
	grantedUntil   time.Time
	codeTimeout    int
	displayTimeout int
	// Redirection.
	redirState      int // AMT_RedirectionService EnabledState, 32768 to 32771
	listener        bool
	kvmEnabled      bool
	kvm5900         bool
	kvmTimeout      int
	kvmOptInTimeout int
	kvmDefaultScr   int
	// Logs and the call record.
	events     *eventLog
	audit      *auditLog
	loginFails int
	calls      []Call // the last maxCalls, oldest first
	// CIRA enrolment (enrolment.go), made on first use.
	enrol *enrolState

	tunnelUp atomic.Bool // AMT_RemoteAccessService IsRemoteTunnelConnected
}

// NewPlatform returns the platform cfg describes (nil: the defaults) for
// the device id; its serial numbers derive from id, and consent codes are
// logged to logger (nil discards them).
func NewPlatform(cfg *AMTConfig, id apf.UUID, logger *slog.Logger) (*Platform, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &AMTConfig{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v, _ := parseAMTVersion(cfg.Version)
	hw, _ := HardwareProfile("desktop")
	if cfg.Hardware != nil {
		hw = *cfg.Hardware
		hw.Memory = append([]MemoryModule(nil), hw.Memory...)
		hw.Disks = append([]Disk(nil), hw.Disks...)
	}
	p := &Platform{
		version: v, mode: cfg.ControlMode, agent: cfg.OSAgent, hw: hw, uuid: id,
		serial: strings.ToUpper(PlatformGUID(id)[:10]), screen: cfg.SOLScreen, log: logger,
		now: time.Now, randCode: randomCode,
		power: PowerOn, osSaving: 2, bootSvc: 2, optsCleared: true,
		consent: cfg.UserConsent, codeTimeout: defaultOptInCodeTimeout, displayTimeout: defaultOptInDisplayTimeout,
		redirState: 32771, listener: true, kvmEnabled: !hw.NoKVM, kvmTimeout: 3, kvmOptInTimeout: 300,
	}
	if cfg.Off {
		p.power, p.osSaving = PowerOffSoft, 0
	}
	if p.mode == CCM {
		p.consent = ConsentAll
	}
	capacity := max(defaultEventLogSize, cfg.EventLogRecords)
	p.events = newEventLog(capacity)
	p.audit = newAuditLog(defaultAuditLogSize)
	now := p.now()
	p.events.prefill(cfg.EventLogRecords, now, id)
	p.audit.add(provisionedRecord(now.Add(-30*24*time.Hour), p.mode))
	return p, nil
}

func randomCode() int {
	n, err := rand.Int(rand.Reader, big.NewInt(1000000))
	if err != nil {
		return 0
	}
	return int(n.Int64())
}

// Version returns the AMT version, "major.minor.build".
func (p *Platform) Version() string { return p.version.String() }

// ControlMode returns the control mode.
func (p *Platform) ControlMode() ControlMode { return p.mode }

// PowerState returns the host's power state: [PowerOn], [PowerOffSoft],
// [PowerSleepDeep] or [PowerHibernate].
func (p *Platform) PowerState() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.power
}

// Boots returns how many times the host has booted since the platform was
// made, and what the last boot did: "" (none yet), "normal", "bios setup",
// "pxe", "ider", "hdd", "cd", "diagnostic" or "https".
func (p *Platform) Boots() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.boots, p.lastBoot
}

// ConsentCode returns the user consent code the host's screen shows, six
// digits, or "" when no consent request is pending (IPS_OptInService
// OptInState 0, 3 or 4).
func (p *Platform) ConsentCode() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tick()
	if p.optInState == optInRequested || p.optInState == optInDisplayed {
		return p.codeShown
	}
	return ""
}

// OptInState returns IPS_OptInService.OptInState.
func (p *Platform) OptInState() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tick()
	return p.optInState
}

// Calls returns the WS-Man calls the platform answered after
// authentication, oldest first: the last 256.
func (p *Platform) Calls() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Call, len(p.calls))
	for i, c := range p.calls {
		out[i] = c
		if c.Args != nil {
			out[i].Args = make(map[string]string, len(c.Args))
			for k, v := range c.Args {
				out[i].Args[k] = v
			}
		}
	}
	return out
}

// EventRecords returns the event log, newest first, as AMT_MessageLog
// GetRecords returns it.
func (p *Platform) EventRecords() []EventRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events.newestFirst()
}

// AuditRecords returns the audit log, oldest first, as AMT_AuditLog
// ReadRecords returns it.
func (p *Platform) AuditRecords() []AuditRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]AuditRecord(nil), p.audit.recs...)
}

// record appends c to the call record. Called with p.mu held.
func (p *Platform) record(c Call) {
	if len(p.calls) == maxCalls {
		copy(p.calls, p.calls[1:])
		p.calls = p.calls[:maxCalls-1]
	}
	p.calls = append(p.calls, c)
}

// --- power ---

// availablePowerStates is AvailableRequestedPowerStates: the actions the
// current state allows (MCM's state-aware list, amt-toolbox.md §1.1
// notes). Called with p.mu held.
func (p *Platform) availablePowerStates() []int {
	switch p.power {
	case PowerOn:
		s := []int{PowerReset, PowerOffSoft, PowerCycle}
		if p.osActions() {
			s = append(s, PowerSleepDeep, PowerHibernate, PowerSoftReset, PowerSoftOff)
		}
		return s
	case PowerSleepDeep, PowerSleepLight, PowerHibernate:
		return []int{PowerOn, PowerOffSoft}
	}
	return []int{PowerOn}
}

// osActions reports whether sleep, hibernate and the graceful actions are
// possible: AMT 10 or later and an OS agent (amt-toolbox.md §1.1 row 2).
func (p *Platform) osActions() bool { return p.version.atLeast(10) && p.agent }

// isOn reports whether the host runs (on, or asleep).
func (p *Platform) isOn() bool { return p.power != PowerOffSoft && p.power != PowerOffHard }

// requestPowerStateChange carries out a RequestPowerStateChange and
// returns its ReturnValue. Called with p.mu held.
//
// The rules: 2 powers up a host that is off (or wakes one asleep); 8
// powers down, 5 cycles and 10 resets a host that is on; 4, 7, 12 and 14
// need an OS agent and AMT 10 or later. An action the state does not
// allow, such as a reset while off, gets 2, as AMT refuses it; 5 and 8
// get 2 as well while a redirection session runs (DOC manageDevice.md).
// A boot that would apply boot options needing consent (CCM, or
// UserConsent all) without consent gets 0x0821 and nothing happens; real
// AMT is reported to reset anyway and ignore the options
// (DMT/cloud-deployment#291), which the simulator makes visible instead.
func (p *Platform) requestPowerStateChange(state int, user, addr string) int {
	switch state {
	case PowerOn, PowerCycle, PowerOffSoft, PowerReset:
	case PowerSleepDeep, PowerHibernate, PowerSoftOff, PowerSoftReset:
		if !p.osActions() {
			return amtNotReady
		}
	default:
		return amtInvalidParameter
	}
	allowed := false
	for _, s := range p.availablePowerStates() {
		allowed = allowed || s == state
	}
	if !allowed {
		return amtNotReady
	}
	if (state == PowerCycle || state == PowerOffSoft) && p.redirActive > 0 {
		return amtNotReady
	}
	boots := state == PowerCycle || state == PowerReset || state == PowerSoftReset ||
		(state == PowerOn && !p.isOn())
	if boots && p.bootPending() && p.consentNeeded(featureBoot) && !p.consentGranted() {
		return amtUserConsentNeeded
	}
	now := p.now()
	var opts []byte
	if boots {
		opts = p.bootOptionsData()
	}
	switch state {
	case PowerOn:
		if p.isOn() { // asleep: it wakes, no boot
			p.power, p.osSaving = PowerOn, 2
			p.auditRC(now, 0, nil, user, addr)
			return amtSuccess
		}
		p.auditRC(now, 0, opts, user, addr)
	case PowerCycle:
		p.auditRC(now, 2, opts, user, addr)
	case PowerReset:
		p.auditRC(now, 3, opts, user, addr)
	case PowerOffSoft:
		p.auditRC(now, 1, nil, user, addr)
	case PowerSoftOff:
		p.auditRC(now, 5, nil, user, addr)
	case PowerSoftReset:
		p.auditRC(now, 6, opts, user, addr)
	case PowerSleepDeep:
		p.auditRC(now, 7, nil, user, addr)
	case PowerHibernate:
		p.auditRC(now, 8, nil, user, addr)
	}
	switch state {
	case PowerOffSoft, PowerSoftOff:
		p.power, p.osSaving, p.inSetup = PowerOffSoft, 0, false
	case PowerSleepDeep:
		p.power, p.osSaving = PowerSleepDeep, 0
	case PowerHibernate:
		p.power, p.osSaving = PowerHibernate, 0
	default:
		p.bootHost(now)
	}
	return amtSuccess
}

// bootPending reports whether the next boot applies boot options.
func (p *Platform) bootPending() bool {
	return p.bootNext && (p.bootSource != "" || p.boot.needsConsent())
}

// bootHost boots the host: the boot configuration, when it is the next
// boot's, applies the forced source and the settings; the settings are
// then cleared, as BIOS clears them, but the boot order stays until
// ChangeBootOrder clears it (a one-time PXE sticks, DMT/mps#752).
func (p *Platform) bootHost(now time.Time) {
	p.power, p.osSaving = PowerOn, 2
	p.boots++
	what := "normal"
	setup := false
	if p.bootNext {
		switch {
		case p.boot.BIOSSetup:
			what, setup = "bios setup", true
		case p.boot.UseIDER:
			what = "ider"
		case p.bootSource == BootSourcePXE:
			what = "pxe"
		case p.bootSource == BootSourceHDD:
			what = "hdd"
		case p.bootSource == BootSourceCD:
			what = "cd"
		case p.bootSource == BootSourceDiag:
			what = "diagnostic"
		case p.bootSource == BootSourceHTTPS:
			what = "https"
		}
		if p.boot != (bootSettings{}) {
			p.boot = bootSettings{}
			p.optsCleared = true
		}
	}
	p.lastBoot, p.inSetup = what, setup
	p.events.bootSequence(now, setup)
}

// bootOptionsData is the boot options the next boot applies, in the audit
// records of power actions; nil when none applies.
func (p *Platform) bootOptionsData() []byte {
	if !p.bootPending() {
		return nil
	}
	return bootOptions(p.boot, p.bootSource)
}

// bootOptions is the 7 bytes of boot options of an audit record (GWM
// auditlog RemoteControlEvent): the special command, its parameter (high,
// low), two mask bytes and two OEM bytes.
func bootOptions(s bootSettings, source string) []byte {
	var cmd, hi, lo byte
	switch {
	case s.BIOSSetup:
		cmd, lo = 0xC1, 0x08
	case s.UseIDER:
		cmd, lo = 0xC1, 0x01
		if s.IDERBootDevice == 0 {
			hi = 1 // floppy
		}
	case source == BootSourcePXE:
		cmd = 1
	case source == BootSourceHDD:
		cmd = 2
	case source == BootSourceDiag:
		cmd = 4
	case source == BootSourceCD:
		cmd = 5
	case source == BootSourceHTTPS:
		cmd = 0xC2
	}
	if s.BIOSPause {
		lo |= 0x10
	}
	return []byte{cmd, hi, lo, 0, 0, 0, 0}
}

// --- consent ---

// Features that may need consent.
const (
	featureKVM = iota
	featureSOL
	featureIDER
	featureBoot
)

// consentNeeded reports whether f needs user consent under the current
// policy. Called with p.mu held.
func (p *Platform) consentNeeded(f int) bool {
	switch p.consent {
	case ConsentAll:
		return true
	case ConsentKVM:
		return f == featureKVM
	}
	return false
}

// consentGranted reports whether the user has consented (OptInState 3 or
// 4). Called with p.mu held.
func (p *Platform) consentGranted() bool {
	p.tick()
	return p.optInState == optInReceived || p.optInState == optInInSession
}

// tick expires a displayed code and an unused consent. Called with p.mu
// held.
func (p *Platform) tick() {
	now := p.now()
	switch p.optInState {
	case optInRequested, optInDisplayed:
		if now.After(p.displayedUntil) {
			p.clearConsent()
		}
	case optInReceived:
		if now.After(p.grantedUntil) {
			p.clearConsent()
		}
	}
}

func (p *Platform) clearConsent() {
	p.optInState, p.code, p.codeShown, p.attempts = optInNotStarted, 0, "", 0
}

// startOptIn is IPS_OptInService.StartOptIn: the host shows a new 6-digit
// code for OptInDisplayTimeout seconds. With a request or a consent
// already in place it returns 2 (NOT_READY), as the MPS's status mapper
// describes. Called with p.mu held.
func (p *Platform) startOptIn() int {
	p.tick()
	if p.optInState != optInNotStarted {
		return amtNotReady
	}
	p.code = p.randCode() % 1000000
	p.codeShown = fmt.Sprintf("%06d", p.code)
	p.optInState, p.attempts = optInDisplayed, 0
	p.displayedUntil = p.now().Add(time.Duration(p.displayTimeout) * time.Second)
	p.log.Info("amtsim: user consent code displayed", "device", p.uuid.String(), "code", p.codeShown)
	return amtSuccess
}

// sendOptInCode is IPS_OptInService.SendOptInCode. The right code grants
// consent (OptInState 3) for OptInCodeTimeout seconds, or until the
// redirection session it starts ends. A wrong one gets 0x0812; the third
// wrong one also cancels the request, as AMT allows three attempts
// (audit: "failed (3 times) to enter a one-time password"). Without a
// displayed code it returns 2. Called with p.mu held.
func (p *Platform) sendOptInCode(code int64, user, addr string) int {
	p.tick()
	if p.optInState != optInDisplayed && p.optInState != optInRequested {
		return amtNotReady
	}
	now := p.now()
	if code != int64(p.code) {
		p.attempts++
		if p.attempts >= maxConsentAttempts {
			p.audit.add(auditRecord(now, auditUserOptIn, 1, user, addr, []byte{1}))
			p.clearConsent()
		}
		return amtUnsupported
	}
	p.audit.add(auditRecord(now, auditUserOptIn, 1, user, addr, []byte{0}))
	p.optInState, p.code, p.codeShown, p.attempts = optInReceived, 0, "", 0
	p.grantedUntil = now.Add(time.Duration(p.codeTimeout) * time.Second)
	p.log.Info("amtsim: user consent granted", "device", p.uuid.String())
	return amtSuccess
}

// cancelOptIn is IPS_OptInService.CancelOptIn: it ends a request or an
// unused consent; in a session or with nothing to cancel it returns 2.
// Called with p.mu held.
func (p *Platform) cancelOptIn() int {
	p.tick()
	switch p.optInState {
	case optInRequested, optInDisplayed, optInReceived:
		p.clearConsent()
		return amtSuccess
	}
	return amtNotReady
}

// setConsent changes OptInRequired (a Put of IPS_OptInService or of
// IPS_KVMRedirectionSettingData's OptInPolicy). CCM refuses any change.
// Called with p.mu held.
func (p *Platform) setConsent(c UserConsent, user, addr string) error {
	if c == p.consent {
		return nil
	}
	if p.mode == CCM {
		return errors.New("the opt-in policy cannot be changed in client control mode")
	}
	p.audit.add(auditRecord(p.now(), auditUserOptIn, 0, user, addr, []byte{policyByte(p.consent), policyByte(c)}))
	p.consent = c
	return nil
}

// policyByte is an OptInRequired value in an audit record: 0, 1 or 255.
func policyByte(c UserConsent) byte {
	switch c {
	case ConsentKVM:
		return 1
	case ConsentAll:
		return 255
	}
	return 0
}

// --- redirection ---

// Redirection features for the service's checks.
const (
	redirSOL  = "SOL"
	redirIDER = "IDER"
	redirKVM  = "KVM"
)

// ErrConsentRequired: a redirection session needs the user's consent,
// which has not been given (IPS_OptInService); see [RedirServer].
var ErrConsentRequired = errors.New("amtsim: user consent required")

// ErrRedirDisabled: the redirection feature is disabled in
// AMT_RedirectionService or CIM_KVMRedirectionSAP.
var ErrRedirDisabled = errors.New("amtsim: redirection feature disabled")

// listenerEnabled reports whether AMT listens for redirection (16994):
// AMT_RedirectionService ListenerEnabled.
func (p *Platform) listenerEnabled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.listener
}

// redirEnabled reports whether feature is enabled.
func (p *Platform) redirEnabled(feature string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch feature {
	case redirSOL:
		return p.redirState == 32770 || p.redirState == 32771
	case redirIDER:
		return p.redirState == 32769 || p.redirState == 32771
	case redirKVM:
		return p.kvmEnabled && !p.hw.NoKVM
	}
	return false
}

// startRedirection admits a redirection session of feature for user at
// addr: [ErrRedirDisabled] when it is switched off, [ErrConsentRequired]
// when it needs consent that has not been given. An admitted session moves
// a consent to OptInState 4 (in session) and counts as running until
// [Platform.endRedirection].
func (p *Platform) startRedirection(feature, user, addr string) error {
	if !p.redirEnabled(feature) {
		return fmt.Errorf("%w: %s", ErrRedirDisabled, feature)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := map[string]int{redirSOL: featureSOL, redirIDER: featureIDER, redirKVM: featureKVM}[feature]
	if p.consentNeeded(f) {
		if !p.consentGranted() {
			return ErrConsentRequired
		}
		p.optInState = optInInSession
	}
	p.redirActive++
	if feature == redirSOL {
		p.audit.add(auditRecord(p.now(), auditRedirection, 4, user, addr, nil))
	}
	return nil
}

// endRedirection ends a session startRedirection admitted. The last one to
// end uses up a consent.
func (p *Platform) endRedirection(feature, user, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.redirActive > 0 {
		p.redirActive--
	}
	if p.redirActive == 0 && p.optInState == optInInSession {
		p.clearConsent()
	}
	if feature == redirSOL {
		p.audit.add(auditRecord(p.now(), auditRedirection, 5, user, addr, nil))
	}
}

// solScreen is what a new SOL session shows.
func (p *Platform) solScreen() SOLScreen {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inSetup && p.isOn() {
		return SOLBIOS
	}
	return p.screen
}

// loginFailed records a wrong WS-Man or redirection login: an audit record
// (Security Admin "ACL access with invalid credentials") and an event log
// record with the count of failures.
func (p *Platform) loginFailed(user, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.loginFails++
	p.audit.add(auditRecord(now, auditSecurityAdmin, 5, user, addr, []byte{0}))
	p.events.add(authFailureEvent(now, p.loginFails))
}

// ConsentCode returns the user consent code the device's screen shows, or
// "" when none is; see [Platform.ConsentCode].
func (d *Device) ConsentCode() string { return d.Platform().ConsentCode() }

// Calls returns the WS-Man calls the device answered after authentication,
// oldest first; see [Platform.Calls].
func (d *Device) Calls() []Call { return d.Platform().Calls() }

// PowerState returns the host's power state; see [Platform.PowerState].
func (d *Device) PowerState() int { return d.Platform().PowerState() }

// Platform returns the device's simulated platform, made from Config.AMT
// on first use.
func (d *Device) Platform() *Platform { return d.wsmanHandler().plat }
