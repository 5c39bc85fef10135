package wsman

import (
	"context"
	"fmt"
)

// The user consent service (§1.1 row 5).
const (
	classOptIn = "IPS_OptInService"
	resOptIn   = baseIPS + classOptIn
)

// OptInRequired values: which redirections need the user's consent.
const (
	OptInNone uint32 = 0
	OptInKVM  uint32 = 1
	OptInAll  uint32 = 0xFFFFFFFF
)

// OptInState values.
const (
	OptInNotStarted = 0
	OptInRequested  = 1
	OptInDisplayed  = 2
	OptInReceived   = 3
	OptInInSession  = 4
)

// OptInService is IPS_OptInService: the consent policy and where a
// consent stands.
type OptInService struct {
	Name                    string `xml:"Name"`
	CreationClassName       string `xml:"CreationClassName"`
	SystemName              string `xml:"SystemName"`
	SystemCreationClassName string `xml:"SystemCreationClassName"`
	ElementName             string `xml:"ElementName"`
	OptInRequired           uint32 `xml:"OptInRequired"`
	OptInState              int    `xml:"OptInState"`
	CanModifyOptInPolicy    int    `xml:"CanModifyOptInPolicy"`
	OptInCodeTimeout        int    `xml:"OptInCodeTimeout"`
	OptInDisplayTimeout     int    `xml:"OptInDisplayTimeout"`
}

// Consented reports whether the user has consented (the code was received
// or a session is on).
func (o OptInService) Consented() bool {
	return o.OptInState == OptInReceived || o.OptInState == OptInInSession
}

// OptInService reads IPS_OptInService.
func (s *Session) OptInService(ctx context.Context) (OptInService, error) {
	var v OptInService
	err := s.get(ctx, resOptIn, &v)
	return v, err
}

// StartOptIn asks the device to show a consent code to its user.
func (s *Session) StartOptIn(ctx context.Context) error {
	rv, err := s.invoke(ctx, resOptIn, "StartOptIn", "", nil)
	return check(resOptIn, "StartOptIn", rv, err)
}

// SendOptInCode sends the code the user read from the device's screen.
func (s *Session) SendOptInCode(ctx context.Context, code int) error {
	if code < 0 || code > 999999 {
		return fmt.Errorf("wsman: consent code %d is not six digits", code)
	}
	rv, err := s.invoke(ctx, resOptIn, "SendOptInCode", element("OptInCode", itoa(code)), nil)
	return check(resOptIn, "SendOptInCode", rv, err)
}

// CancelOptIn cancels a consent request or ends a consent.
func (s *Session) CancelOptIn(ctx context.Context) error {
	rv, err := s.invoke(ctx, resOptIn, "CancelOptIn", "", nil)
	return check(resOptIn, "CancelOptIn", rv, err)
}

// SetOptInRequired changes the consent policy (OptInNone, OptInKVM or
// OptInAll; only in admin control mode): IPS_OptInService Get, then Put.
func (s *Session) SetOptInRequired(ctx context.Context, policy uint32) error {
	if policy != OptInNone && policy != OptInKVM && policy != OptInAll {
		return fmt.Errorf("wsman: %d is not a consent policy", policy)
	}
	o, err := s.OptInService(ctx)
	if err != nil {
		return err
	}
	props := element("CanModifyOptInPolicy", itoa(o.CanModifyOptInPolicy)) +
		element("CreationClassName", o.CreationClassName) +
		element("ElementName", o.ElementName) +
		element("Name", o.Name) +
		element("OptInCodeTimeout", itoa(o.OptInCodeTimeout)) +
		element("OptInDisplayTimeout", itoa(o.OptInDisplayTimeout)) +
		element("OptInRequired", itoa(policy)) +
		element("OptInState", itoa(o.OptInState)) +
		element("SystemCreationClassName", o.SystemCreationClassName) +
		element("SystemName", o.SystemName)
	return s.put(ctx, resOptIn, props)
}
