package adapter

import (
	"context"
	"time"

	"github.com/presence-mps/presence/app/ui"
	"github.com/presence-mps/presence/mps/api"
)

// The window's "Add a device on the LAN…": the instance's enrolment, the
// one `presence enrol` and the API run.

var _ ui.EnrolBackend = (*Backend)(nil)

// enrolTimeout bounds an enrolment from the window, its wait for the
// tunnel (2 minutes) included.
const enrolTimeout = 7 * time.Minute

// Enrol enrols the device at req.Address through the instance. It runs
// to its end whatever the window does meanwhile (closing the dialog, or
// the backend): stopping between two writes would leave the device half
// configured; only the instance's shutdown or enrolTimeout stop it.
func (b *Backend) Enrol(req ui.EnrolRequest, progress func(ui.EnrolStep)) (ui.EnrolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), enrolTimeout)
	defer cancel()
	res, err := b.In.Enrol(ctx, api.EnrolRequest{Address: req.Address, User: req.User, Password: req.Password.Reveal(),
		TLS: req.TLS, Replace: req.Replace}, func(s api.EnrolStep) {
		if progress != nil {
			progress(ui.EnrolStep{Step: s.Step, State: s.State, Sentence: s.Sentence, Time: s.Time})
		}
	})
	return ui.EnrolResult{Address: res.Address, GUID: res.GUID, Connected: res.Connected, Certificate: res.Certificate,
		Notes: res.Notes, Millis: res.Millis}, err
}
