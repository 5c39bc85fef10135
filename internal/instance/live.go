package instance

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"

	"github.com/presence-mps/presence/internal/settings"
	"github.com/presence-mps/presence/mps/tunnel"
	"github.com/presence-mps/presence/vault"
)

// Listening is where the instance accepts connections now.
type Listening struct {
	CIRA, Proxy, API net.Addr // nil: off (or paused)
	Paused           bool
}

// Settings returns the settings in force.
func (in *Instance) Settings() settings.Settings {
	in.live.Lock()
	defer in.live.Unlock()
	return in.settings
}

// Listening returns the addresses the instance listens on now.
func (in *Instance) Listening() Listening {
	in.live.Lock()
	defer in.live.Unlock()
	l := Listening{API: in.APIAddr, Paused: in.paused}
	if !in.paused {
		l.CIRA, l.Proxy = in.ciraNow, in.proxyNow
	}
	return l
}

// Apply puts s in force. A listener whose address changed is replaced:
// the new one is opened first, so an address in use leaves the old one
// serving and Apply returns the error. Tunnels and console sessions
// already up are never dropped; keepalive and idle timeout apply to
// tunnels that connect from now on (AMT takes the keepalive interval in
// the handshake). While paused, the new addresses are only remembered.
func (in *Instance) Apply(s settings.Settings) error {
	if s.CIRAAddr == "" {
		return errors.New("the CIRA listener needs an address")
	}
	if err := tunnel.CheckTimeouts(s.Keepalive, s.IdleTimeout); err != nil {
		return err
	}
	in.live.Lock()
	defer in.live.Unlock()
	old := in.settings
	if !in.paused {
		// Open every new listener before closing an old one, so that a
		// failure changes nothing.
		var cira net.Addr
		if s.CIRAAddr != old.CIRAAddr {
			var err error
			if cira, err = in.Server.Listen(s.CIRAAddr); err != nil {
				return err
			}
		}
		var proxyLn net.Listener
		proxyMoved := settings.Listen(s.ProxyAddr) != settings.Listen(old.ProxyAddr)
		if proxyMoved && settings.Listen(s.ProxyAddr) != "" {
			var err error
			if proxyLn, err = net.Listen("tcp", s.ProxyAddr); err != nil {
				if cira != nil {
					in.Server.CloseListener(cira)
				}
				return fmt.Errorf("proxy listener: %w", err)
			}
		}
		if cira != nil {
			if in.ciraNow != nil {
				in.Server.CloseListener(in.ciraNow)
			}
			in.ciraNow = cira
		}
		if proxyMoved {
			in.useProxyLocked(proxyLn)
		}
	}
	if s.Keepalive != old.Keepalive || s.IdleTimeout != old.IdleTimeout || s.LegacyTLS != old.LegacyTLS {
		in.Server.SetTunnelSettings(s.Keepalive, s.IdleTimeout, tunnel.TLSConfig(in.cfg.CA.TLSCertificate(), s.LegacyTLS))
	}
	if s.LegacyTLSDevices != old.LegacyTLSDevices {
		if err := in.Server.SetLegacyDevices(s.LegacyDevices()); err != nil {
			return err
		}
	}
	portsMoved := port(in.ciraNow) != in.advertised.CIRAPort || port(in.proxyNow) != in.advertised.ProxyPort
	in.settings = s
	if portsMoved || s.MDNS != old.MDNS {
		in.advertiseLocked()
	}
	in.log.Info("settings applied", "cira", addrString(in.ciraNow), "proxy", addrString(in.proxyNow),
		"keepalive", s.Keepalive, "idle_timeout", s.IdleTimeout, "legacy_tls", s.LegacyTLS)
	return nil
}

// useProxyLocked makes ln the proxy's listener (nil: off), closing the
// one before.
func (in *Instance) useProxyLocked(ln net.Listener) {
	if in.proxyLn != nil {
		in.proxyLn.Close()
	}
	in.proxyLn, in.proxyNow = ln, nil
	if ln != nil {
		in.proxyNow = ln.Addr()
		in.serve(func() error { return in.Proxy.Serve(ln) })
		if in.API != nil {
			in.API.SetProxyPort(port(in.proxyNow))
		}
	}
}

// Pause stops accepting new tunnels and console connections; tunnels,
// sessions, port mappings and the API stay. Resume opens the listeners
// again on the same ports.
func (in *Instance) Pause() {
	in.live.Lock()
	defer in.live.Unlock()
	if in.paused {
		return
	}
	in.paused = true
	if in.ciraNow != nil {
		in.Server.CloseListener(in.ciraNow)
	}
	if in.proxyLn != nil {
		in.proxyLn.Close()
		in.proxyLn = nil
	}
	in.advertiseLocked()
	in.log.Info("listeners paused: no new tunnels or console connections")
}

// Resume undoes Pause. A port taken meanwhile by another program is an
// error, and the instance stays paused.
func (in *Instance) Resume() error {
	in.live.Lock()
	defer in.live.Unlock()
	if !in.paused {
		return nil
	}
	// The same ports as before the pause, even where the setting was :0.
	cira := in.settings.CIRAAddr
	if in.ciraNow != nil {
		cira = in.ciraNow.String()
	}
	addr, err := in.Server.Listen(cira)
	if err != nil {
		return err
	}
	if proxyAddr := settings.Listen(in.settings.ProxyAddr); proxyAddr != "" {
		if in.proxyNow != nil {
			proxyAddr = in.proxyNow.String()
		}
		ln, err := net.Listen("tcp", proxyAddr)
		if err != nil {
			in.Server.CloseListener(addr)
			return fmt.Errorf("proxy listener: %w", err)
		}
		in.useProxyLocked(ln)
	}
	in.ciraNow, in.paused = addr, false
	in.advertiseLocked()
	in.log.Info("listeners resumed", "cira", addr.String(), "proxy", addrString(in.proxyNow))
	return nil
}

// advertiseLocked makes the mDNS advertisement match the settings and the
// ports listened on: it withdraws the one out there, if any, and
// announces again when MDNS is on and the instance is not paused.
func (in *Instance) advertiseLocked() {
	if in.withdraw != nil {
		in.withdraw()
		in.withdraw = nil
		in.advertised = Announcement{}
	}
	if !in.settings.MDNS || in.paused || in.cfg.Advertise == nil {
		return
	}
	a := Announcement{
		ProxyPort: port(in.proxyNow), APIPort: port(in.APIAddr), CIRAPort: port(in.ciraNow), PeerPort: port(in.PeerAddr),
		InstanceID: in.cfg.InstanceID, Version: in.cfg.Version, Fingerprint: in.rootFingerprintLocked(),
	}
	withdraw, err := in.cfg.Advertise(a)
	if err != nil {
		// The instance works without it; peers just will not see it.
		in.log.Warn("mDNS advertisement failed; consoles must be told the proxy address", "err", err)
		return
	}
	in.withdraw, in.advertised = withdraw, a
}

// rootFingerprintLocked is the SHA-256 of the MPS root in lowercase hex,
// as mDNS announces it (in.live held: UseCA changes the CA).
func (in *Instance) rootFingerprintLocked() string {
	return fmt.Sprintf("%x", sha256.Sum256(in.cfg.CA.Root().Raw))
}

// rootFingerprint is rootFingerprintLocked for a caller without in.live.
func (in *Instance) rootFingerprint() string {
	in.live.Lock()
	defer in.live.Unlock()
	return in.rootFingerprintLocked()
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// UseCA presents ca's server certificate to tunnels from now on (after a
// renewal); tunnels up keep the one they saw. mDNS announces the new root
// fingerprint, if the root changed.
func (in *Instance) UseCA(ca *vault.CA) {
	in.live.Lock()
	defer in.live.Unlock()
	in.cfg.CA = ca
	s := in.settings
	in.Server.SetTunnelSettings(s.Keepalive, s.IdleTimeout, tunnel.TLSConfig(ca.TLSCertificate(), s.LegacyTLS))
	in.advertiseLocked()
	in.log.Info("certificate in use changed", "root_sha256", ca.RootFingerprintSHA256())
}
