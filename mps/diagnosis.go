package mps

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"
	"weak"

	"github.com/presence-mps/presence/mps/apf"
	"github.com/presence-mps/presence/mps/doctor"
	"github.com/presence-mps/presence/mps/tunnel"
)

// The connection doctor's side of the server: classification at the
// failure points, the suspect sweep, and the per-device TLS policy.

// Doctor returns the server's connection doctor (Config.Doctor, or the
// one the server made).
func (s *Server) Doctor() *doctor.Doctor { return s.doctor }

// SetLegacyDevices replaces the list of devices (GUIDs, any case, dashes
// optional) allowed TLS 1.0/1.1 on a modern listener, for connections from
// now on. A device on no list with a legacy session is closed right after
// its PROTOCOL_VERSION (see tunnel.LegacyTLS). With the listener's global
// legacy TLS (tunnel.TLSConfig with legacy, --legacy-tls) every device is
// allowed anyway. Nothing changes when a GUID does not parse.
func (s *Server) SetLegacyDevices(devices []string) error {
	us := make([]apf.UUID, 0, len(devices))
	for _, d := range devices {
		u, err := apf.ParseUUID(strings.TrimSpace(d))
		if err != nil {
			return fmt.Errorf("mps: %q is not a device GUID, so the legacy TLS list was not changed", d)
		}
		us = append(us, u)
	}
	s.legacy.Set(us)
	return nil
}

// LegacyDevices returns the devices allowed TLS 1.0/1.1 by
// SetLegacyDevices, sorted.
func (s *Server) LegacyDevices() []string {
	us := s.legacy.Devices()
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

// LegacyTLSEverywhere reports whether the listener accepts TLS 1.0/1.1 from
// every device (--legacy-tls).
func (s *Server) LegacyTLSEverywhere() bool { return tunnel.GlobalLegacy(s.tcfg.Load().TLS) }

// LegacySessions returns the connected devices whose tunnel runs TLS 1.0
// or 1.1, sorted by UUID: those that still need legacy TLS.
func (s *Server) LegacySessions() []Device {
	var out []Device
	for _, d := range s.Devices() {
		if d.LegacyTLS {
			out = append(out, d)
		}
	}
	return out
}

// legacyVersion reports whether a negotiated version name is TLS 1.0/1.1.
func legacyVersion(name string) bool {
	return name == tls.VersionName(tls.VersionTLS10) || name == tls.VersionName(tls.VersionTLS11)
}

// diagnoseFailure records why a connection failed before its tunnel was up.
func (s *Server) diagnoseFailure(err error, remote string) {
	if f, ok := doctor.FromError(err, remote); ok {
		s.doctor.Record(f)
	}
}

// diagnoseReplaced records a duplicate UUID when a device's tunnel is
// replaced by a connection from another host. A replacement from the same
// IP address is the ordinary reconnect of one device whose old tunnel had
// not been noticed dead yet (its port differs every time), so the host is
// compared, not host:port. Two machines behind one NAT share the address
// and are not told apart: the cost of never calling a reconnect a
// duplicate.
func (s *Server) diagnoseReplaced(old *tunnel.Conn, newRemote string, u apf.UUID) {
	oldRemote := old.Info().Remote
	if hostOf(oldRemote) == hostOf(newRemote) {
		return
	}
	s.doctor.Record(doctor.Finding{Class: doctor.DuplicateUUID, Device: u.String(), Remote: newRemote,
		Detail: "connections from " + hostOf(oldRemote) + " and " + hostOf(newRemote) + " replace each other"})
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// suspectAfter is how long a tunnel with keepalive interval ka may be
// silent before it is suspect: one interval and half of one as grace
// (AMT's timer and the network's jitter).
func suspectAfter(ka time.Duration) time.Duration { return ka + ka/2 }

// startSweep starts the suspect sweep once, with the first listener.
func (s *Server) startSweep() {
	s.sweepOnce.Do(func() {
		s.wg.Add(1)
		go s.sweep()
	})
}

// watchSilence schedules a newly registered tunnel's first check. The
// entry of a tunnel that ends is dropped when it is due (at most
// suspectAfter later).
func (s *Server) watchSilence(c *tunnel.Conn) {
	at := c.LastReceived().Add(suspectAfter(c.KeepaliveInterval())).UnixNano()
	s.silenceMu.Lock()
	s.silences.Push(at, weak.Make(c))
	s.silenceMu.Unlock()
}

// sweep marks tunnels suspect that have been silent for longer than
// suspectAfter, and clears the mark when input comes again. It wakes a
// quarter of the keepalive interval apart (10 ms to 5 s) and looks only
// at the tunnels whose check is due, in a heap by time: a tunnel that
// sent something since is put back at its new time, so a tunnel costs
// about one heap push per keepalive interval, and nothing per message,
// with no pass over the fleet. The idle timeout itself stays the
// tunnel's own (its read deadline, or the poller's heap).
func (s *Server) sweep() {
	defer s.wg.Done()
	for {
		ka := s.tcfg.Load().KeepaliveInterval
		if ka <= 0 {
			ka = tunnel.DefaultKeepalive
		}
		t := time.NewTimer(min(max(ka/4, 10*time.Millisecond), 5*time.Second))
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		now := time.Now()
		s.sweepNow(now)
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		s.returnMemory(now, n)
	}
}

// sweepNow is one pass of sweep: the checks due by now.
func (s *Server) sweepNow(now time.Time) {
	var became, cleared []*tunnel.Conn
	t := now.UnixNano()
	for {
		s.silenceMu.Lock()
		wc, ok := s.silences.PopDue(t)
		s.silenceMu.Unlock()
		if !ok {
			break
		}
		c := wc.Value()
		if c == nil {
			continue // ended, and freed
		}

		ka := c.KeepaliveInterval()
		last := c.LastReceived()
		next := last.Add(suspectAfter(ka)).UnixNano()
		s.mu.Lock()
		if s.devices[c.UUID()] != c {
			s.mu.Unlock()
			continue // ended or replaced: no more checks
		}
		_, was := s.suspects[c]
		is := next < t
		switch {
		case is && !was:
			s.suspects[c] = struct{}{}
			became = append(became, c)
		case !is && was:
			delete(s.suspects, c)
			cleared = append(cleared, c)
		}
		s.mu.Unlock()
		if is {
			// Suspect: look again at the next pass, to see it resume.
			next = t + 1
		}
		s.silenceMu.Lock()
		s.silences.Push(next, wc)
		s.silenceMu.Unlock()
	}
	for _, c := range became {
		d := snapshot(c.Info())
		d.Suspect = true
		s.doctor.Record(doctor.Finding{Class: doctor.KeepaliveMissed, Time: now, Device: d.UUID, User: d.Info.User, Remote: d.Remote,
			Detail: fmt.Sprintf("nothing received for %s (keepalive interval %s)", d.Silent.Round(time.Millisecond), c.KeepaliveInterval())})
		s.publish(Event{Kind: EventSuspect, Time: now, Device: d, Reason: string(doctor.KeepaliveMissed),
			Detail: fmt.Sprintf("silent for %s; dropped at %s", d.Silent.Round(time.Millisecond), c.IdleTimeout())})
	}
	for _, c := range cleared {
		s.publish(Event{Kind: EventResumed, Time: now, Device: snapshot(c.Info())})
	}
}

// unsuspectLocked forgets an ended tunnel and reports whether it was suspect.
func (s *Server) unsuspectLocked(c *tunnel.Conn) bool {
	_, was := s.suspects[c]
	delete(s.suspects, c)
	return was
}

// deviceOf is the snapshot of a registered tunnel, with its suspect mark.
func (s *Server) deviceOf(c *tunnel.Conn) Device {
	d := snapshot(c.Info())
	s.mu.Lock()
	_, d.Suspect = s.suspects[c]
	s.mu.Unlock()
	return d
}
