package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"time"
)

// SOCKS5 constants (RFC 1928, RFC 1929).
const (
	socks5Version = 0x05

	socks5MethodNoAuth   = 0x00
	socks5MethodUserPass = 0x02
	socks5MethodNone     = 0xFF

	socks5UserPassVersion = 0x01

	socks5CmdConnect = 0x01

	socks5AddrIPv4   = 0x01
	socks5AddrDomain = 0x03
	socks5AddrIPv6   = 0x04

	socks5RepSucceeded          = 0x00
	socks5RepGeneralFailure     = 0x01
	socks5RepNotAllowed         = 0x02
	socks5RepHostUnreachable    = 0x04
	socks5RepCmdNotSupported    = 0x07
	socks5RepAddrTypeNotSupport = 0x08
)

// SOCKS4/4a constants.
const (
	socks4Version    = 0x04
	socks4CmdConnect = 0x01
	socks4Granted    = 0x5A
	socks4Rejected   = 0x5B
	socks4MaxField   = 255
)

// socks5Reply maps a dial error to an RFC 1928 reply code.
func socks5Reply(err error) byte {
	switch {
	case err == nil:
		return socks5RepSucceeded
	case errors.Is(err, ErrPortNotAllowed):
		return socks5RepNotAllowed
	case errors.Is(err, ErrUnknownHost):
		return socks5RepHostUnreachable
	default:
		return socks5RepGeneralFailure
	}
}

// writeSOCKS5Reply writes a reply with an all-zero IPv4 bound address: the
// bound address of a device channel means nothing to the console.
func (pc *conn) writeSOCKS5Reply(rep byte) error {
	if rep != socks5RepSucceeded {
		pc.c.SetWriteDeadline(time.Now().Add(errorWriteTimeout))
	}
	_, err := pc.c.Write([]byte{socks5Version, rep, 0, socks5AddrIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

func (pc *conn) serveSOCKS5() {
	// Greeting: VER NMETHODS METHODS...
	var hdr [2]byte
	if _, err := io.ReadFull(pc.br, hdr[:]); err != nil {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(pc.br, methods); err != nil {
		return
	}
	// Without a login requirement, "no auth" is taken when offered;
	// otherwise username/password (RFC 1929) is required.
	var want byte
	switch {
	case pc.noAuth && bytes.IndexByte(methods, socks5MethodNoAuth) >= 0:
		want = socks5MethodNoAuth
	case bytes.IndexByte(methods, socks5MethodUserPass) >= 0:
		want = socks5MethodUserPass
	default:
		pc.c.Write([]byte{socks5Version, socks5MethodNone})
		pc.logger.Info("proxy: socks5 client offers no username/password method")
		return
	}
	if _, err := pc.c.Write([]byte{socks5Version, want}); err != nil {
		return
	}
	user := ""
	if want == socks5MethodUserPass {
		// VER ULEN UNAME PLEN PASSWD
		u, p, err := readUserPass(pc.br)
		if err != nil {
			return
		}
		res := authOK
		if !pc.noAuth {
			res = pc.authenticate(u, p)
		} else if pc.s.cfg.Auth != nil && !pc.s.cfg.Auth(u, p) {
			u = "" // loopback without auth: wrong credentials name nobody
		}
		if res != authOK {
			pc.c.Write([]byte{socks5UserPassVersion, 0x01})
			if res == authBlocked {
				pc.logger.Warn("proxy: socks5 login refused: too many failures from this address", "user", u)
			} else {
				pc.logger.Info("proxy: socks5 auth failed", "user", u)
			}
			return
		}
		if _, err := pc.c.Write([]byte{socks5UserPassVersion, 0x00}); err != nil {
			return
		}
		user = u
	}

	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT
	var req [4]byte
	if _, err := io.ReadFull(pc.br, req[:]); err != nil {
		return
	}
	if req[0] != socks5Version {
		return
	}
	var host string
	switch req[3] {
	case socks5AddrIPv4:
		var a [4]byte
		if _, err := io.ReadFull(pc.br, a[:]); err != nil {
			return
		}
		host = netip.AddrFrom4(a).String()
	case socks5AddrIPv6:
		var a [16]byte
		if _, err := io.ReadFull(pc.br, a[:]); err != nil {
			return
		}
		host = netip.AddrFrom16(a).String()
	case socks5AddrDomain:
		n, err := pc.br.ReadByte()
		if err != nil {
			return
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(pc.br, name); err != nil {
			return
		}
		host = string(name)
	default:
		pc.writeSOCKS5Reply(socks5RepAddrTypeNotSupport)
		return
	}
	var pb [2]byte
	if _, err := io.ReadFull(pc.br, pb[:]); err != nil {
		return
	}
	port := uint32(binary.BigEndian.Uint16(pb[:]))
	if req[1] != socks5CmdConnect {
		pc.writeSOCKS5Reply(socks5RepCmdNotSupported)
		return
	}
	logger := pc.logger.With("proto", "socks5", "user", user, "host", host, "port", port)
	ctx, cancel := pc.dialCtx()
	dc, err := pc.s.dial(ctx, host, port, Console{User: user, Addr: pc.c.RemoteAddr().String()})
	cancel()
	if err != nil {
		logger.Info("proxy: refused", "err", err)
		pc.writeSOCKS5Reply(socks5Reply(err))
		return
	}
	if err := pc.writeSOCKS5Reply(socks5RepSucceeded); err != nil {
		dc.Close()
		pc.s.untrack(dc)
		return
	}
	logger.Debug("proxy: relaying")
	pc.startRelay(dc, KindSOCKS5, user, host, port)
}

// readUserPass reads an RFC 1929 username/password request.
func readUserPass(r *bufio.Reader) (user, pass string, err error) {
	ver, err := r.ReadByte()
	if err != nil {
		return "", "", err
	}
	if ver != socks5UserPassVersion {
		return "", "", errors.New("proxy: bad socks5 auth version")
	}
	readField := func() (string, error) {
		n, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b), nil
	}
	if user, err = readField(); err != nil {
		return "", "", err
	}
	if pass, err = readField(); err != nil {
		return "", "", err
	}
	return user, pass, nil
}

// serveSOCKS4 handles SOCKS4 and SOCKS4a CONNECT. SOCKS4 carries only a user
// id and no password, so it is refused whenever Auth is set.
func (pc *conn) serveSOCKS4() {
	// VN CD DSTPORT(2) DSTIP(4) USERID NUL [HOST NUL]
	var req [8]byte
	if _, err := io.ReadFull(pc.br, req[:]); err != nil {
		return
	}
	reply := func(code byte) error {
		_, err := pc.c.Write([]byte{0x00, code, 0, 0, 0, 0, 0, 0})
		return err
	}
	if _, err := readNulString(pc.br); err != nil { // user id, ignored
		return
	}
	port := uint32(binary.BigEndian.Uint16(req[2:4]))
	ip := netip.AddrFrom4([4]byte(req[4:8]))
	host := ip.String()
	if req[4] == 0 && req[5] == 0 && req[6] == 0 && req[7] != 0 { // SOCKS4a
		name, err := readNulString(pc.br)
		if err != nil {
			return
		}
		host = name
	}
	logger := pc.logger.With("proto", "socks4", "host", host, "port", port)
	if req[1] != socks4CmdConnect || !pc.noAuth {
		logger.Info("proxy: socks4 refused", "cmd", req[1], "auth_required", !pc.noAuth)
		reply(socks4Rejected)
		return
	}
	ctx, cancel := pc.dialCtx()
	dc, err := pc.s.dial(ctx, host, port, Console{Addr: pc.c.RemoteAddr().String()})
	cancel()
	if err != nil {
		logger.Info("proxy: refused", "err", err)
		reply(socks4Rejected)
		return
	}
	if err := reply(socks4Granted); err != nil {
		dc.Close()
		pc.s.untrack(dc)
		return
	}
	pc.startRelay(dc, KindSOCKS4, "", host, port)
}

var errFieldTooLong = errors.New("proxy: socks4 field too long")

// readNulString reads a NUL-terminated string of at most socks4MaxField bytes.
func readNulString(r io.ByteReader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == 0 {
			return string(b), nil
		}
		if len(b) >= socks4MaxField {
			return "", errFieldTooLong
		}
		b = append(b, c)
	}
}

// portString formats a port for host:port reasons.
func portString(p uint32) string { return strconv.FormatUint(uint64(p), 10) }
