package wsman

import (
	"context"
	"encoding/xml"
	"errors"
	"strconv"
	"strings"
)

// Classes of the information operations (§1.1 rows 6, 7, 8).
const (
	classSoftwareIdentity = "CIM_SoftwareIdentity"
	classSetupAndConfig   = "AMT_SetupAndConfigurationService"
	classGeneralSettings  = "AMT_GeneralSettings"
	classChassis          = "CIM_Chassis"
	classCard             = "CIM_Card"
	classBIOSElement      = "CIM_BIOSElement"
	classPhysicalMemory   = "CIM_PhysicalMemory"
	classChip             = "CIM_Chip"
	classProcessor        = "CIM_Processor"
	classMediaAccess      = "CIM_MediaAccessDevice"
	classPhysicalPackage  = "CIM_PhysicalPackage"

	resSoftwareIdentity = baseCIM + classSoftwareIdentity
	resSetupAndConfig   = baseAMT + classSetupAndConfig
	resGeneralSettings  = baseAMT + classGeneralSettings
	resChassis          = baseCIM + classChassis
	resCard             = baseCIM + classCard
	resBIOSElement      = baseCIM + classBIOSElement
	resPhysicalMemory   = baseCIM + classPhysicalMemory
	resChip             = baseCIM + classChip
	resProcessor        = baseCIM + classProcessor
	resMediaAccess      = baseCIM + classMediaAccess
	resPhysicalPackage  = baseCIM + classPhysicalPackage
)

// SoftwareIdentity is one CIM_SoftwareIdentity instance: a firmware part
// keyed by InstanceID ("AMT", "Flash", "Sku", "Build Number", ...).
type SoftwareIdentity struct {
	InstanceID    string `xml:"InstanceID"`
	VersionString string `xml:"VersionString"`
	IsEntity      bool   `xml:"IsEntity"`
}

// SetupAndConfiguration is AMT_SetupAndConfigurationService.
type SetupAndConfiguration struct {
	ProvisioningMode  int `xml:"ProvisioningMode"`  // 1 ACM, 4 CCM
	ProvisioningState int `xml:"ProvisioningState"` // 0 pre, 1 in, 2 post
	EnabledState      int `xml:"EnabledState"`
}

// ControlMode names the provisioning mode: "ACM", "CCM" or "".
func (sc SetupAndConfiguration) ControlMode() string {
	switch sc.ProvisioningMode {
	case 1:
		return "ACM"
	case 4:
		return "CCM"
	}
	return ""
}

// Version is what a device says of its firmware (§1.1 row 6).
type Version struct {
	AMT          string            // the "AMT" VersionString, e.g. "16.1.25"
	Parts        map[string]string // every CIM_SoftwareIdentity: InstanceID → VersionString
	Setup        SetupAndConfiguration
	ControlMode  string // "ACM", "CCM" or ""
	ServerHeader string // the HTTP Server header
}

// Major returns the AMT major version, or 0 if unknown.
func (v Version) Major() int {
	m, _, _ := strings.Cut(v.AMT, ".")
	n, err := strconv.Atoi(m)
	if err != nil {
		return 0
	}
	return n
}

// SoftwareIdentity enumerates CIM_SoftwareIdentity.
func (s *Session) SoftwareIdentity(ctx context.Context) ([]SoftwareIdentity, error) {
	return enumerate[SoftwareIdentity](ctx, s, resSoftwareIdentity)
}

// SetupAndConfiguration enumerates AMT_SetupAndConfigurationService (one
// instance).
func (s *Session) SetupAndConfiguration(ctx context.Context) (SetupAndConfiguration, error) {
	items, err := enumerate[SetupAndConfiguration](ctx, s, resSetupAndConfig)
	if err != nil {
		return SetupAndConfiguration{}, err
	}
	if len(items) == 0 {
		return SetupAndConfiguration{}, malformed("no %s instance", classSetupAndConfig)
	}
	return items[0], nil
}

// Version reads the AMT version and control mode: CIM_SoftwareIdentity and
// AMT_SetupAndConfigurationService, both by Enumerate and Pull.
func (s *Session) Version(ctx context.Context) (Version, error) {
	ids, err := s.SoftwareIdentity(ctx)
	if err != nil {
		return Version{}, err
	}
	v := Version{Parts: make(map[string]string, len(ids))}
	for _, id := range ids {
		v.Parts[id.InstanceID] = id.VersionString
	}
	v.AMT = v.Parts["AMT"]
	if v.Setup, err = s.SetupAndConfiguration(ctx); err != nil {
		return Version{}, err
	}
	v.ControlMode = v.Setup.ControlMode()
	v.ServerHeader = s.Server()
	return v, nil
}

// GeneralSettings is AMT_GeneralSettings (§1.1 row 8).
type GeneralSettings struct {
	HostName                     string `xml:"HostName"`
	DomainName                   string `xml:"DomainName"`
	DigestRealm                  string `xml:"DigestRealm"`
	InstanceID                   string `xml:"InstanceID"`
	NetworkInterfaceEnabled      bool   `xml:"NetworkInterfaceEnabled"`
	AMTNetworkEnabled            int    `xml:"AMTNetworkEnabled"`
	PingResponseEnabled          bool   `xml:"PingResponseEnabled"`
	RmcpPingResponseEnabled      bool   `xml:"RmcpPingResponseEnabled"`
	WsmanOnlyMode                bool   `xml:"WsmanOnlyMode"`
	PowerSource                  int    `xml:"PowerSource"`
	PrivacyLevel                 int    `xml:"PrivacyLevel"`
	IdleWakeTimeout              int    `xml:"IdleWakeTimeout"`
	PresenceNotificationInterval int    `xml:"PresenceNotificationInterval"`
	PreferredAddressFamily       int    `xml:"PreferredAddressFamily"`
	DDNSUpdateEnabled            bool   `xml:"DDNSUpdateEnabled"`
	DDNSUpdateByDHCPServer       bool   `xml:"DDNSUpdateByDHCPServerEnabled"`
	DDNSPeriodicUpdateInterval   int    `xml:"DDNSPeriodicUpdateInterval"`
	DDNSTTL                      int    `xml:"DDNSTTL"`
	SharedFQDN                   bool   `xml:"SharedFQDN"`
	HostOSFQDN                   string `xml:"HostOSFQDN"`
}

// GeneralSettings reads AMT_GeneralSettings.
func (s *Session) GeneralSettings(ctx context.Context) (GeneralSettings, error) {
	var v GeneralSettings
	err := s.get(ctx, resGeneralSettings, &v)
	return v, err
}

// PhysicalPackage is a CIM_Chassis, a CIM_Card (the baseboard) or a
// CIM_PhysicalPackage (a disk's package).
type PhysicalPackage struct {
	Manufacturer string `xml:"Manufacturer"`
	Model        string `xml:"Model"`
	SerialNumber string `xml:"SerialNumber"`
	Version      string `xml:"Version"`
	Tag          string `xml:"Tag"`
	ElementName  string `xml:"ElementName"`
	PackageType  int    `xml:"PackageType"`
}

// physicalPackageXML is an item of a CIM_PhysicalPackage enumeration, which
// also yields its subclasses.
type physicalPackageXML struct {
	XMLName xml.Name
	PhysicalPackage
}

// cimDatetime is a CIM datetime property (<Datetime> inside).
type cimDatetime struct {
	Datetime string `xml:"Datetime"`
}

// BIOS is CIM_BIOSElement.
type BIOS struct {
	Manufacturer string `xml:"Manufacturer"`
	Version      string `xml:"Version"`
	Name         string `xml:"Name"`
	ReleaseDate  string `xml:"-"` // the CIM datetime, e.g. "2023-01-01T00:00:00Z"
	PrimaryBIOS  bool   `xml:"PrimaryBIOS"`
}

type biosXML struct {
	BIOS
	ReleaseDate cimDatetime `xml:"ReleaseDate"`
}

// PhysicalMemory is one CIM_PhysicalMemory (a memory module).
type PhysicalMemory struct {
	Manufacturer string `xml:"Manufacturer"`
	PartNumber   string `xml:"PartNumber"`
	SerialNumber string `xml:"SerialNumber"`
	BankLabel    string `xml:"BankLabel"`
	Capacity     int64  `xml:"Capacity"` // bytes
	Speed        int    `xml:"Speed"`    // ns, or MT/s on newer firmware
	MemoryType   int    `xml:"MemoryType"`
	FormFactor   int    `xml:"FormFactor"`
	ElementName  string `xml:"ElementName"`
}

// Processor is one CIM_Processor.
type Processor struct {
	DeviceID          string `xml:"DeviceID"`
	Family            int    `xml:"Family"`
	CurrentClockSpeed int    `xml:"CurrentClockSpeed"` // MHz
	MaxClockSpeed     int    `xml:"MaxClockSpeed"`     // MHz
	Stepping          string `xml:"Stepping"`
	ElementName       string `xml:"ElementName"`
}

// Chip is one CIM_Chip (the processor package: its Version is the model
// name).
type Chip struct {
	Manufacturer string `xml:"Manufacturer"`
	Version      string `xml:"Version"`
	ElementName  string `xml:"ElementName"`
}

// MediaAccessDevice is one CIM_MediaAccessDevice (a disk).
type MediaAccessDevice struct {
	DeviceID     string `xml:"DeviceID"`
	MaxMediaSize int64  `xml:"MaxMediaSize"` // KB
	ElementName  string `xml:"ElementName"`
}

// Hardware is a device's hardware inventory (§1.1 row 7).
type Hardware struct {
	Chassis    PhysicalPackage
	Board      PhysicalPackage // CIM_Card
	BIOS       BIOS
	Memory     []PhysicalMemory
	Processors []Processor
	Chips      []Chip
	Disks      []MediaAccessDevice
	Packages   []PhysicalPackage // CIM_PhysicalPackage: the disks' models and serial numbers
	// Missing names the classes the platform does not have (they failed
	// with [ErrUnsupported] and are left empty).
	Missing []string
}

// Hardware reads the inventory: CIM_Chassis, CIM_Card and CIM_BIOSElement by
// Get; CIM_PhysicalMemory, CIM_Chip, CIM_Processor (not Get: AMT 21 may have
// none, and Get faults), CIM_MediaAccessDevice and CIM_PhysicalPackage by
// Enumerate and Pull. A class the platform lacks does not fail the whole:
// it is listed in Missing.
func (s *Session) Hardware(ctx context.Context) (Hardware, error) {
	var h Hardware
	skip := func(class string, err error) error {
		if errors.Is(err, ErrUnsupported) {
			h.Missing = append(h.Missing, class)
			return nil
		}
		return err
	}
	if err := skip(classChassis, s.get(ctx, resChassis, &h.Chassis)); err != nil {
		return Hardware{}, err
	}
	if err := skip(classCard, s.get(ctx, resCard, &h.Board)); err != nil {
		return Hardware{}, err
	}
	var b biosXML
	if err := skip(classBIOSElement, s.get(ctx, resBIOSElement, &b)); err != nil {
		return Hardware{}, err
	}
	h.BIOS = b.BIOS
	h.BIOS.ReleaseDate = strings.TrimSpace(b.ReleaseDate.Datetime)
	var err error
	if h.Memory, err = enumerate[PhysicalMemory](ctx, s, resPhysicalMemory); skip(classPhysicalMemory, err) != nil {
		return Hardware{}, err
	}
	if h.Chips, err = enumerate[Chip](ctx, s, resChip); skip(classChip, err) != nil {
		return Hardware{}, err
	}
	if h.Processors, err = enumerate[Processor](ctx, s, resProcessor); skip(classProcessor, err) != nil {
		return Hardware{}, err
	}
	if h.Disks, err = enumerate[MediaAccessDevice](ctx, s, resMediaAccess); skip(classMediaAccess, err) != nil {
		return Hardware{}, err
	}
	var pkgs []physicalPackageXML
	if pkgs, err = enumerate[physicalPackageXML](ctx, s, resPhysicalPackage); skip(classPhysicalPackage, err) != nil {
		return Hardware{}, err
	}
	for _, p := range pkgs {
		if p.XMLName.Local == classPhysicalPackage { // not the chassis or cards again
			h.Packages = append(h.Packages, p.PhysicalPackage)
		}
	}
	return h, nil
}
