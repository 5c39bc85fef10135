package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// An administrator on one instance may disconnect a device another holds:
// DELETE /fleet/v1/devices/<guid> on the owner, with the administrator in
// the Presence-User header. The owner closes only its own tunnel; a
// device it does not hold is 404 with Presence-Error "not-here".
const devicesPath = "/fleet/v1/devices/"

// serveDisconnect answers a peer's request to close a device's tunnel.
func (p *Peers) serveDisconnect(w http.ResponseWriter, r *http.Request, peer string) {
	guid := strings.TrimPrefix(r.URL.Path, devicesPath)
	if guid == "" || len(guid) > 64 || strings.Contains(guid, "/") {
		http.Error(w, "want DELETE "+devicesPath+"<guid>", http.StatusBadRequest)
		return
	}
	c := Console{User: clip(r.Header.Get(headerUser)), Via: peer}
	if err := p.cfg.Local.Disconnect(NormalizeGUID(guid), c); err != nil {
		w.Header().Set(headerError, refusalCode(err))
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Disconnect asks the peer that holds o's device to close its tunnel, on
// behalf of the administrator c. A peer that no longer holds it answers
// ErrNotHere.
func (p *Peers) Disconnect(ctx context.Context, o Owner, c Console) error {
	l, ok := p.linkTo(o.Instance)
	if !ok {
		return fmt.Errorf("%w %s", ErrNoPeer, o.Instance)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "https://"+l.addr+devicesPath+url.PathEscape(NormalizeGUID(o.GUID)), nil)
	if err != nil {
		return err
	}
	req.Header.Set(headerUser, clip(c.User))
	resp, err := p.client.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("fleet: asking %s to disconnect %s: %w", o.Instance, o.GUID, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil
	case resp.Header.Get(headerError) == "not-here":
		return fmt.Errorf("%w (%s on %s)", ErrNotHere, o.GUID, o.Instance)
	}
	return errors.New("fleet: " + o.Instance + " refused to disconnect " + o.GUID + ": " + resp.Status)
}
