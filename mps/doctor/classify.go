package doctor

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/tunnel"
)

// FromError classifies why a connection from remote ended before its
// tunnel was up (an error of tunnel.Accept) and reports false for what
// is no device's problem (the server shutting down). It allocates little
// more than the Finding's strings.
func FromError(err error, remote string) (Finding, bool) {
	var ce *tunnel.CloseError
	if !errors.As(err, &ce) {
		return Finding{Class: TLSFailed, Remote: remote, Detail: err.Error()}, true
	}
	f := Finding{Remote: remote, Detail: ce.Detail}
	hf := ce.Handshake
	if hf != nil {
		f.Hello, f.User = hf.Hello, hf.User
		if !hf.Device.IsZero() {
			f.Device = hf.Device.String()
		}
	}
	switch ce.Reason {
	case tunnel.ReasonShutdown, tunnel.ReasonReplaced, tunnel.ReasonMoved, tunnel.ReasonAdmin:
		return Finding{}, false
	case tunnel.ReasonLegacyTLS:
		f.Class = LegacyTLS
	case tunnel.ReasonAuthFailed:
		f.Class = WrongPassword
		if hf != nil && hf.Auth == tunnel.AuthUnknownUser {
			f.Class = UnknownUser
		}
	case tunnel.ReasonHandshakeTimeout:
		f.Class = HandshakeTimeout
		if hf != nil && hf.Trickling {
			f.Class = Trickling
		}
	case tunnel.ReasonProtocolError:
		f.Class = ProtocolError
		if ce.Err != nil {
			f.Detail = joinDetail(f.Detail, ce.Err.Error())
		}
	case tunnel.ReasonTLSError:
		f.Class, f.Detail = classifyTLS(ce.Err, f.Hello)
	case tunnel.ReasonDeviceClosed, tunnel.ReasonDisconnect, tunnel.ReasonNetworkError:
		f.Class = ClosedEarly
		if hf != nil && hf.TLSVersion == 0 && hf.Hello.MaxVersion != 0 {
			// The device sent its ClientHello and then hung up: AMT does
			// so on a certificate it does not accept (apf.md §10).
			f.Class, f.Detail = TLSFailed, "the device closed the connection during the TLS handshake"
		}
	default:
		f.Class = ClosedEarly
	}
	return f, true
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + ": " + b
}

// classifyTLS names a TLS handshake error.
func classifyTLS(err error, h tunnel.Hello) (Class, string) {
	if err == nil {
		return TLSFailed, ""
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		// The device sent an alert. Go's alert type is unexported: its
		// text is the alert's name.
		alert := oe.Err.Error()
		if strings.Contains(alert, "certificate") || strings.Contains(alert, "access denied") {
			return CertRejected, "the device sent the TLS alert " + strings.TrimPrefix(alert, "tls: ")
		}
		return TLSFailed, "the device sent the TLS alert " + strings.TrimPrefix(alert, "tls: ")
	}
	if h.Legacy() {
		return LegacyTLS, "offers only " + tlsName(h.MaxVersion)
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return ProtocolError, "not TLS: " + fmt.Sprintf("%q", rh.RecordHeader[:])
	}
	msg := err.Error()
	if strings.Contains(msg, "no cipher suite supported") {
		return NoSharedCipher, "no cipher suite in common"
	}
	return TLSFailed, msg
}

func tlsName(v uint16) string { return tls.VersionName(v) }

// Fix returns the sentence that tells an administrator what to do about
// an entry.
func Fix(e Entry) string {
	dev := "device " + e.Device
	if e.Device == "" {
		dev = "the device at " + host(e.Remote)
	}
	Dev := strings.ToUpper(dev[:1]) + dev[1:]
	switch e.Class {
	case LegacyTLS:
		if e.Device != "" {
			return "Allow legacy TLS for device " + e.Device + " (it is AMT 11 or older and cannot do TLS 1.2), or update its firmware."
		}
		return "The device at " + host(e.Remote) + " offers only TLS 1.0/1.1 (AMT 11 or older): turn on legacy TLS for this device (allow its GUID), or update its firmware."
	case NoSharedCipher:
		return "The device at " + host(e.Remote) + " shares no cipher suite with this MPS: update its firmware, or check that nothing between them rewrites TLS."
	case TLSFailed:
		return "The TLS handshake with " + dev + " failed: check that it is configured for this MPS's address and root, and that nothing between them intercepts TLS."
	case CertRejected:
		return "The device does not trust this MPS's root or the name in its certificate: re-enrol it (presence enrol ADDRESS) or install the root."
	case CertUnsuitable:
		return "Issue the MPS a certificate AMT accepts (RSA of 2048 bits or more, the MPS address as CN, nsCertType server): AMT may refuse this one."
	case WrongPassword:
		return "The CIRA password " + dev + " sends for user " + quote(e.User) + " is not this account's: enrol it again (presence enrol ADDRESS) or set the account's password to the device's."
	case UnknownUser:
		return "No CIRA account is named " + quote(e.User) + ": add it, or enrol " + dev + " again with an account of this MPS."
	case DuplicateUUID:
		return "Two machines share the OEM UUID " + e.Device + " and replace each other's tunnel: have the OEM set a unique UUID (a BIOS update); until then only one of them can be managed."
	case HandshakeTimeout:
		return Dev + " did not finish its handshake in time: check the network path (MTU, a proxy) and that the port is not reached by something other than AMT."
	case Trickling:
		return "Bytes from " + dev + " arrive too slowly to finish the handshake: check the link between it and the MPS (congestion, a throttling firewall)."
	case ProtocolError:
		return "Something other than Intel AMT talks to the CIRA port from " + host(e.Remote) + " (a scanner, a browser or a proxy): find what connects from there."
	case KeepaliveMissed:
		return Dev + " stopped sending keepalives: it may have lost power or its network; the tunnel is dropped at the idle timeout and AMT reconnects on its own when it can."
	case ClosedEarly:
		return Dev + " closed the connection before its tunnel was up: a port check, or a device giving up; repeated, check its MPS settings."
	}
	return "Look at the MPS's log for " + dev + "."
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// oidNSCertType is Netscape's certificate type extension, which AMT 12
// wants on the MPS certificate (apf.md §6.2, deployment #165).
var oidNSCertType = asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 1}

// CertificateProblems returns what the MPS's certificate misses of what
// AMT needs (apf.md §6.2): an RSA key of at least 2048 bits, a CN (AMT
// matches the CN against its configured MPS address), the nsCertType
// extension; and whether it is valid at now. nil means none.
func CertificateProblems(leaf *x509.Certificate, now time.Time) []string {
	var out []string
	if k, ok := leaf.PublicKey.(*rsa.PublicKey); !ok {
		out = append(out, "its key is not RSA")
	} else if k.N.BitLen() < 2048 {
		out = append(out, fmt.Sprintf("its RSA key has %d bits, fewer than 2048", k.N.BitLen()))
	}
	if leaf.Subject.CommonName == "" {
		out = append(out, "it has no CN")
	}
	has := false
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidNSCertType) {
			has = true
		}
	}
	if !has {
		out = append(out, "it has no nsCertType extension")
	}
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		out = append(out, "it is not valid now")
	}
	return out
}

// CheckCertificate records a [CertUnsuitable] finding when the first
// certificate of cfg misses what AMT needs, and returns the problems.
func (d *Doctor) CheckCertificate(cfg *tls.Config) []string {
	if cfg == nil || len(cfg.Certificates) == 0 {
		return nil
	}
	c := cfg.Certificates[0]
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			p := []string{"it cannot be parsed: " + err.Error()}
			d.Record(Finding{Class: CertUnsuitable, Detail: p[0]})
			return p
		}
	}
	if leaf == nil {
		return nil
	}
	p := CertificateProblems(leaf, d.opts.Now())
	if len(p) > 0 {
		d.Record(Finding{Class: CertUnsuitable, Device: "", Remote: "", Detail: "the MPS certificate " + leaf.Subject.CommonName + ": " + strings.Join(p, "; ")})
	}
	return p
}
