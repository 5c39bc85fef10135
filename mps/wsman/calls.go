package wsman

import (
	"context"
	"time"
)

// The Client methods below each run one [Session] operation as a call on
// the device's queue ([Client.Do]); see the Session method of the same name.
// A context without a deadline gets [Config].Timeout, or LongTimeout for the
// operations that make many requests.

// call runs f as one call on the device's queue and returns its result.
func call[T any](c *Client, ctx context.Context, device string, f func(*Session, context.Context) (T, error)) (T, error) {
	return callWithin(c, ctx, device, c.cfg.Timeout, f)
}

// long is call with Config.LongTimeout.
func long[T any](c *Client, ctx context.Context, device string, f func(*Session, context.Context) (T, error)) (T, error) {
	return callWithin(c, ctx, device, c.cfg.LongTimeout, f)
}

func callWithin[T any](c *Client, ctx context.Context, device string, timeout time.Duration, f func(*Session, context.Context) (T, error)) (T, error) {
	var v T
	err := c.do(ctx, device, timeout, func(ctx context.Context, s *Session) (err error) {
		v, err = f(s, ctx)
		return err
	})
	return v, err
}

// PowerState: see [Session.PowerState].
func (c *Client) PowerState(ctx context.Context, device string) (PowerState, error) {
	return call(c, ctx, device, (*Session).PowerState)
}

// RequestPowerStateChange: see [Session.RequestPowerStateChange].
func (c *Client) RequestPowerStateChange(ctx context.Context, device string, a PowerAction) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.RequestPowerStateChange(ctx, a) })
}

// OSPowerSavingState: see [Session.OSPowerSavingState].
func (c *Client) OSPowerSavingState(ctx context.Context, device string) (int, error) {
	return call(c, ctx, device, (*Session).OSPowerSavingState)
}

// RequestOSPowerSavingStateChange: see [Session.RequestOSPowerSavingStateChange].
func (c *Client) RequestOSPowerSavingStateChange(ctx context.Context, device string, state int) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.RequestOSPowerSavingStateChange(ctx, state) })
}

// BootCapabilities: see [Session.BootCapabilities].
func (c *Client) BootCapabilities(ctx context.Context, device string) (BootCapabilities, error) {
	return call(c, ctx, device, (*Session).BootCapabilities)
}

// BootSettingData: see [Session.BootSettingData].
func (c *Client) BootSettingData(ctx context.Context, device string) (BootSettingData, error) {
	return call(c, ctx, device, (*Session).BootSettingData)
}

// PutBootSettingData: see [Session.PutBootSettingData].
func (c *Client) PutBootSettingData(ctx context.Context, device string, b BootSettingData) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.PutBootSettingData(ctx, b) })
}

// ChangeBootOrder: see [Session.ChangeBootOrder].
func (c *Client) ChangeBootOrder(ctx context.Context, device, source string) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.ChangeBootOrder(ctx, source) })
}

// SetBootConfigRole: see [Session.SetBootConfigRole].
func (c *Client) SetBootConfigRole(ctx context.Context, device, config string, role int) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.SetBootConfigRole(ctx, config, role) })
}

// Boot: see [Session.Boot]. The whole sequence is one call: nothing else
// reaches the device between its steps.
func (c *Client) Boot(ctx context.Context, device string, req BootRequest) error {
	return c.do(ctx, device, c.cfg.LongTimeout, func(ctx context.Context, s *Session) error { return s.Boot(ctx, req) })
}

// Version: see [Session.Version].
func (c *Client) Version(ctx context.Context, device string) (Version, error) {
	return long(c, ctx, device, (*Session).Version)
}

// SoftwareIdentity: see [Session.SoftwareIdentity].
func (c *Client) SoftwareIdentity(ctx context.Context, device string) ([]SoftwareIdentity, error) {
	return call(c, ctx, device, (*Session).SoftwareIdentity)
}

// SetupAndConfiguration: see [Session.SetupAndConfiguration].
func (c *Client) SetupAndConfiguration(ctx context.Context, device string) (SetupAndConfiguration, error) {
	return call(c, ctx, device, (*Session).SetupAndConfiguration)
}

// GeneralSettings: see [Session.GeneralSettings].
func (c *Client) GeneralSettings(ctx context.Context, device string) (GeneralSettings, error) {
	return call(c, ctx, device, (*Session).GeneralSettings)
}

// Hardware: see [Session.Hardware].
func (c *Client) Hardware(ctx context.Context, device string) (Hardware, error) {
	return long(c, ctx, device, (*Session).Hardware)
}

// EventLog: see [Session.EventLog].
func (c *Client) EventLog(ctx context.Context, device string) ([]Event, error) {
	return long(c, ctx, device, (*Session).EventLog)
}

// AuditLog: see [Session.AuditLog].
func (c *Client) AuditLog(ctx context.Context, device string) (AuditLog, error) {
	return long(c, ctx, device, (*Session).AuditLog)
}

// OptInService: see [Session.OptInService].
func (c *Client) OptInService(ctx context.Context, device string) (OptInService, error) {
	return call(c, ctx, device, (*Session).OptInService)
}

// StartOptIn: see [Session.StartOptIn].
func (c *Client) StartOptIn(ctx context.Context, device string) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.StartOptIn(ctx) })
}

// SendOptInCode: see [Session.SendOptInCode].
func (c *Client) SendOptInCode(ctx context.Context, device string, code int) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.SendOptInCode(ctx, code) })
}

// CancelOptIn: see [Session.CancelOptIn].
func (c *Client) CancelOptIn(ctx context.Context, device string) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.CancelOptIn(ctx) })
}

// SetOptInRequired: see [Session.SetOptInRequired].
func (c *Client) SetOptInRequired(ctx context.Context, device string, policy uint32) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.SetOptInRequired(ctx, policy) })
}

// RedirectionService: see [Session.RedirectionService].
func (c *Client) RedirectionService(ctx context.Context, device string) (RedirectionService, error) {
	return call(c, ctx, device, (*Session).RedirectionService)
}

// KVMRedirectionSAP: see [Session.KVMRedirectionSAP].
func (c *Client) KVMRedirectionSAP(ctx context.Context, device string) (KVMRedirectionSAP, error) {
	return call(c, ctx, device, (*Session).KVMRedirectionSAP)
}

// KVMRedirectionSettingData: see [Session.KVMRedirectionSettingData].
func (c *Client) KVMRedirectionSettingData(ctx context.Context, device string) (KVMRedirectionSettingData, error) {
	return call(c, ctx, device, (*Session).KVMRedirectionSettingData)
}

// PutKVMRedirectionSettingData: see [Session.PutKVMRedirectionSettingData].
func (c *Client) PutKVMRedirectionSettingData(ctx context.Context, device string, k KVMRedirectionSettingData) error {
	return c.Do(ctx, device, func(ctx context.Context, s *Session) error { return s.PutKVMRedirectionSettingData(ctx, k) })
}

// Features: see [Session.Features].
func (c *Client) Features(ctx context.Context, device string) (Features, error) {
	return long(c, ctx, device, (*Session).Features)
}

// SetFeatures: see [Session.SetFeatures].
func (c *Client) SetFeatures(ctx context.Context, device string, want FeatureSwitches) error {
	return c.do(ctx, device, c.cfg.LongTimeout, func(ctx context.Context, s *Session) error { return s.SetFeatures(ctx, want) })
}
