package instance

import (
	"context"
	"errors"

	"github.com/presence-mps/presence/mps/api"
)

// runEnrol runs an enrolment or its removal. (The WS-Man sequence of
// mps/enrol is wired in next; until then the API answers that it is not
// available.)
func (in *Instance) runEnrol(ctx context.Context, req api.EnrolRequest, progress func(api.EnrolStep), remove bool) (api.EnrolResult, error) {
	return api.EnrolResult{Address: req.Address}, errors.New("enrolment is not available in this build yet")
}
