package instance

import (
	"time"

	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/doctor"
	"github.com/presence-mps/presence/vault"
)

// Doctor returns the connection doctor.
func (in *Instance) Doctor() *doctor.Doctor { return in.doctor }

// DoctorReport is the doctor's report since a time (zero: everything it
// holds), for one device (a GUID, host name or alias; "" for all), with
// the devices on legacy TLS and the suspect ones.
func (in *Instance) DoctorReport(since time.Time, device string) (api.DoctorReport, error) {
	guid := device
	if device != "" {
		if d, ok := in.Server.Device(device); ok {
			guid = d.UUID
		} else if g, err := vault.CanonicalGUID(device); err == nil {
			guid = g
		}
	}
	rep := api.DoctorReport{
		Since:          since,
		Problems:       in.doctor.Report(since, guid),
		LegacyAllowed:  in.Server.LegacyDevices(),
		LegacyEveryone: in.Server.LegacyTLSEverywhere(),
		Legacy:         []api.DoctorDevice{},
		Suspect:        []api.DoctorDevice{},
	}
	if rep.Problems == nil {
		rep.Problems = []doctor.Entry{}
	}
	if rep.LegacyAllowed == nil {
		rep.LegacyAllowed = []string{}
	}
	for _, d := range in.Server.LegacySessions() {
		if guid == "" || d.UUID == guid {
			rep.Legacy = append(rep.Legacy, api.DoctorDeviceOf(d))
		}
	}
	for _, d := range in.Server.Devices() {
		if d.Suspect && (guid == "" || d.UUID == guid) {
			rep.Suspect = append(rep.Suspect, api.DoctorDeviceOf(d))
		}
	}
	return rep, nil
}

// AllowLegacyTLS allows the device TLS 1.0 and 1.1 (or takes it back),
// at once and in the saved settings: the fix of a legacy-tls finding.
func (in *Instance) AllowLegacyTLS(guid string, allow bool) error {
	s, err := in.Settings().WithLegacyDevice(guid, allow)
	if err != nil {
		return err
	}
	if err := in.Apply(s); err != nil {
		return err
	}
	if in.cfg.SaveSettings != nil {
		return in.cfg.SaveSettings(s)
	}
	return nil
}
