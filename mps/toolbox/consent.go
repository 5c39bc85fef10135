package toolbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/presence-mps/presence/mps/wsman"
)

// ErrBadCode: a consent code that is not six digits.
var ErrBadCode = errors.New("toolbox: the consent code is the six digits the device shows")

// ErrWrongCode: the device did not take the consent code (AMT answers a
// wrong code with PT_STATUS 0x812, and ends the request after a few).
// The error also wraps the device's *wsman.StatusError.
var ErrWrongCode = errors.New("toolbox: the device did not take the consent code")

// ErrCodeExpired: the device shows no code any more (after three wrong
// ones, or its time ran out): AMT answers the code with 2, invalid state.
// The error also wraps the device's *wsman.StatusError.
var ErrCodeExpired = errors.New("toolbox: the device shows no consent code any more")

// ErrNoConsentService: the platform has no consent service (AMT before 6),
// so nothing needs consent.
var ErrNoConsentService = fmt.Errorf("toolbox: this device has no user consent service: %w", wsman.ErrUnsupported)

// Consent reads where consent stands on the device.
func (t *Toolbox) Consent(ctx context.Context, device string) (wsman.OptInService, error) {
	o, err := t.c.OptInService(ctx, device)
	if errors.Is(err, wsman.ErrUnsupported) {
		return o, ErrNoConsentService
	}
	return o, err
}

// StartConsent asks the device to show a consent code to its user, unless
// one is shown already or consent was given (then it does nothing), and
// returns the state after.
func (t *Toolbox) StartConsent(ctx context.Context, device string) (wsman.OptInService, error) {
	var o wsman.OptInService
	err := t.c.Do(ctx, device, func(ctx context.Context, s *wsman.Session) error {
		var err error
		if o, err = s.OptInService(ctx); err != nil {
			if errors.Is(err, wsman.ErrUnsupported) {
				return ErrNoConsentService
			}
			return err
		}
		switch o.OptInState {
		case wsman.OptInRequested, wsman.OptInDisplayed, wsman.OptInReceived, wsman.OptInInSession:
			return nil
		}
		if err := s.StartOptIn(ctx); err != nil {
			return err
		}
		o, err = s.OptInService(ctx)
		return err
	})
	if err == nil {
		t.log.Info("AMT consent code requested", "device", device)
	}
	return o, err
}

// SendConsentCode sends the code the user read off the device's screen.
// A wrong code is the device's refusal (a *wsman.StatusError); AMT allows
// a few tries before it ends the request.
func (t *Toolbox) SendConsentCode(ctx context.Context, device string, code int) error {
	if code < 0 || code > 999_999 {
		return ErrBadCode
	}
	err := t.c.SendOptInCode(ctx, device, code)
	var se *wsman.StatusError
	switch {
	case errors.As(err, &se) && se.Value == wsman.StatusUnsupported:
		return fmt.Errorf("%w: %w", ErrWrongCode, err)
	case errors.As(err, &se) && se.Value == wsman.StatusNotReady:
		return fmt.Errorf("%w: %w", ErrCodeExpired, err)
	}
	if errors.Is(err, wsman.ErrUnsupported) {
		return ErrNoConsentService
	}
	if err == nil {
		t.log.Info("AMT consent code accepted", "device", device)
	}
	return err
}

// CancelConsent withdraws a consent request, or ends a consent given.
func (t *Toolbox) CancelConsent(ctx context.Context, device string) error {
	err := t.c.CancelOptIn(ctx, device)
	if errors.Is(err, wsman.ErrUnsupported) {
		return ErrNoConsentService
	}
	return err
}
