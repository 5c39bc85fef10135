package wsman

import (
	"context"
	"fmt"
)

// Classes of the power operations (§1.1 rows 1, 2, 2b).
const (
	classServiceAvailableToElement = "CIM_ServiceAvailableToElement"
	classPowerManagementService    = "CIM_PowerManagementService"
	classIPSPowerManagementService = "IPS_PowerManagementService"
	classComputerSystem            = "CIM_ComputerSystem"

	resServiceAvailableToElement = baseCIM + classServiceAvailableToElement
	resPowerManagementService    = baseCIM + classPowerManagementService
	resIPSPowerManagementService = baseIPS + classIPSPowerManagementService
	resComputerSystem            = baseCIM + classComputerSystem
)

// PowerState is a device's power state: CIM_AssociatedPowerManagementService
// PowerState (§1.1 row 1).
type PowerState struct {
	State int
	// Available lists the AvailableRequestedPowerStates, when the device
	// reports them.
	Available []int
}

// On reports whether the device is on (2).
func (p PowerState) On() bool { return p.State == 2 }

// String names the state the way consoles show it (§1.1 row 1: 2 on, 3/4
// sleep, 6/8/13 off, 7 hibernate, 9 power cycle).
func (p PowerState) String() string {
	switch p.State {
	case 2:
		return "on"
	case 3:
		return "sleep (light)"
	case 4:
		return "sleep (deep)"
	case 6, 8, 13:
		return "off"
	case 7:
		return "hibernate"
	case 9:
		return "power cycle"
	}
	return fmt.Sprintf("power state %d", p.State)
}

// PowerAction is a RequestPowerStateChange PowerState (§1.1 row 2).
type PowerAction int

// The power actions. Sleep, Hibernate, SoftOff and SoftReset need AMT 10 or
// later and the OS agent (LMS) running on the device.
const (
	PowerOn        PowerAction = 2
	PowerSleep     PowerAction = 4
	PowerCycle     PowerAction = 5
	PowerHibernate PowerAction = 7
	PowerOff       PowerAction = 8
	PowerReset     PowerAction = 10
	PowerSoftOff   PowerAction = 12
	PowerSoftReset PowerAction = 14
)

// String names the action.
func (a PowerAction) String() string {
	switch a {
	case PowerOn:
		return "power on"
	case PowerSleep:
		return "sleep"
	case PowerCycle:
		return "power cycle"
	case PowerHibernate:
		return "hibernate"
	case PowerOff:
		return "power off"
	case PowerReset:
		return "reset"
	case PowerSoftOff:
		return "soft off"
	case PowerSoftReset:
		return "soft reset"
	}
	return fmt.Sprintf("power action %d", int(a))
}

// NeedsOSAgent reports whether the action needs AMT 10 or later and the OS
// agent (LMS) on the device.
func (a PowerAction) NeedsOSAgent() bool {
	return a == PowerSleep || a == PowerHibernate || a == PowerSoftOff || a == PowerSoftReset
}

// valid reports whether a is one of the actions.
func (a PowerAction) valid() bool {
	switch a {
	case PowerOn, PowerSleep, PowerCycle, PowerHibernate, PowerOff, PowerReset, PowerSoftOff, PowerSoftReset:
		return true
	}
	return false
}

type associatedPowerService struct {
	PowerState *int  `xml:"PowerState"`
	Available  []int `xml:"AvailableRequestedPowerStates"`
}

// PowerState reads the power state: CIM_ServiceAvailableToElement
// Enumerate and Pull, whose CIM_AssociatedPowerManagementService item holds
// PowerState.
func (s *Session) PowerState(ctx context.Context) (PowerState, error) {
	items, err := enumerate[associatedPowerService](ctx, s, resServiceAvailableToElement)
	if err != nil {
		return PowerState{}, err
	}
	for _, it := range items {
		if it.PowerState != nil {
			return PowerState{State: *it.PowerState, Available: it.Available}, nil
		}
	}
	return PowerState{}, malformed("no CIM_AssociatedPowerManagementService with a PowerState")
}

// RequestPowerStateChange asks for a power action: CIM_PowerManagementService
// RequestPowerStateChange with the ManagedElement CIM_ComputerSystem
// ManagedSystem. ReturnValue 0 means the device accepted it.
func (s *Session) RequestPowerStateChange(ctx context.Context, a PowerAction) error {
	if !a.valid() {
		return fmt.Errorf("wsman: %v is not a power action", a)
	}
	in := element("PowerState", itoa(int(a))) +
		reference("ManagedElement", resComputerSystem, "CreationClassName", classComputerSystem, "Name", "ManagedSystem")
	rv, err := s.invoke(ctx, resPowerManagementService, "RequestPowerStateChange", in, nil)
	return check(resPowerManagementService, "RequestPowerStateChange", rv, err)
}

// OS power saving states of IPS_PowerManagementService (§1.1 row 1).
const (
	OSPowerSavingUnknown     = 0
	OSPowerSavingUnsupported = 1
	OSPowerSavingFullPower   = 2
	OSPowerSavingOn          = 3
)

type ipsPowerManagementService struct {
	OSPowerSavingState int `xml:"OSPowerSavingState"`
}

// OSPowerSavingState reads IPS_PowerManagementService OSPowerSavingState
// (AMT 10 or later; older platforms fail with [ErrUnsupported]).
func (s *Session) OSPowerSavingState(ctx context.Context) (int, error) {
	var v ipsPowerManagementService
	if err := s.get(ctx, resIPSPowerManagementService, &v); err != nil {
		return 0, err
	}
	return v.OSPowerSavingState, nil
}

// RequestOSPowerSavingStateChange asks the OS to wake (state 2) or to save
// power (state 3): IPS_PowerManagementService
// RequestOSPowerSavingStateChange (§1.1 row 2b).
func (s *Session) RequestOSPowerSavingStateChange(ctx context.Context, state int) error {
	if state != OSPowerSavingFullPower && state != OSPowerSavingOn {
		return fmt.Errorf("wsman: OS power saving state %d is neither 2 nor 3", state)
	}
	in := element("OSPowerSavingState", itoa(state)) +
		reference("ManagedElement", resComputerSystem, "CreationClassName", classComputerSystem, "Name", "ManagedSystem")
	rv, err := s.invoke(ctx, resIPSPowerManagementService, "RequestOSPowerSavingStateChange", in, nil)
	return check(resIPSPowerManagementService, "RequestOSPowerSavingStateChange", rv, err)
}
