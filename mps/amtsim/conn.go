package amtsim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presence-mps/presence/mps/apf"
)

// hsState is the handshake step a connection is at (apf.md §3).
type hsState uint8

const (
	stGarbage    hsState = iota // FaultGarbage: waiting for the MPS's verdict
	stAuthAccept                // sent PROTOCOL_VERSION + SERVICE_REQUEST auth
	stAuthResult                // sent USERAUTH_REQUEST
	stPfwdAccept                // sent SERVICE_REQUEST pfwd
	stForwards                  // sent tcpip-forward for ports[fwd]
	stReady                     // every forward answered
)

const (
	initialReadBuf = 1024
	garbageLen     = 64
	maxSendChunk   = 16 << 10 // largest CHANNEL_DATA the device sends
	maxRecvString  = 2048     // apf.DefaultLimits.MaxString
	readBufFloor   = 9 << 10  // room for any non-data message (USERAUTH_REQUEST ≤ 18+4·2048)
)

// errTunnelClosed is what channel I/O returns once the tunnel is gone.
var errTunnelClosed = errors.New("amtsim: tunnel closed")

// conn is one TLS connection to the MPS. The goroutine that calls run is
// the only reader; it also writes the handshake and every reply. Channel
// users and timers write too, so writes are serialized by wmu.
//
// Lock order: channel.mu before conn.mu before wmu; wmu is never held while
// taking another lock.
type conn struct {
	d       *Device
	cfg     *Config
	ent     *entry // the MPS entry dialed
	log     *slog.Logger
	raw     net.Conn // the TCP connection, for abrupt closes
	nc      net.Conn // the TLS connection
	onReady func()

	done      chan struct{} // closed by abort
	abortOnce sync.Once
	cause     error // why abort was called; written before done is closed

	ready atomic.Bool // the handshake has completed

	wmu  sync.Mutex
	wbuf []byte // guarded by wmu

	// Owned by the reader.
	rbuf  []byte
	r, w  int
	lim   apf.Limits
	st    hsState
	fwd   int      // index in d.rt.ports of the pending tcpip-forward
	bound []uint32 // ports whose forward the MPS acknowledged

	mu        sync.Mutex // guards the fields below
	closed    bool
	chans     map[uint32]*channel
	nextID    uint32
	kaTimer   *time.Timer
	kaEvery   time.Duration
	kaSent    uint32 // cookie of the last KEEPALIVE_REQUEST
	kaAcked   uint32 // cookie of the last answered one
	dropTimer *time.Timer
	httpL     *listener
	httpSrv   *http.Server

	wg sync.WaitGroup // channel services
}

func newConn(d *Device, ent *entry, raw, nc net.Conn) *conn {
	cookie := mrand.Uint32()
	return &conn{
		d:       d,
		cfg:     &d.cfg,
		ent:     ent,
		log:     d.log,
		raw:     raw,
		nc:      nc,
		done:    make(chan struct{}),
		rbuf:    make([]byte, initialReadBuf),
		lim:     apf.Limits{MaxString: maxRecvString, MaxData: d.cfg.Window},
		st:      stAuthAccept,
		chans:   make(map[uint32]*channel),
		kaEvery: d.cfg.KeepaliveInterval,
		kaSent:  cookie,
		kaAcked: cookie,
	}
}

func (c *conn) isReady() bool { return c.ready.Load() }

// abort ends the connection with cause: it closes the TCP connection under
// the TLS layer, which fails every pending read and write. The first cause
// wins.
func (c *conn) abort(cause error) {
	c.abortOnce.Do(func() {
		c.cause = cause
		close(c.done)
		c.raw.Close()
	})
}

// run performs the handshake and then serves the tunnel until it ends. It
// returns the reason, after every channel service has exited.
//
// Write errors are ignored where the reader writes: a broken connection
// also fails the next read, which reports the real cause (EOF, reset).
func (c *conn) run() error {
	err := c.loop()
	if errors.Is(err, ErrProtocol) {
		// Tell the MPS why, unless we are silent (send checks).
		c.send(&apf.Disconnect{Reason: apf.DisconnectProtocolError})
	}
	c.abort(err) // a cause set earlier (ctx, timer) wins
	c.teardown()
	return c.cause
}

func (c *conn) loop() error {
	c.start()
	for {
		m, err := c.readMsg()
		if err != nil {
			return err
		}
		if err := c.handle(m); err != nil {
			return err
		}
	}
}

// teardown stops the timers, closes every channel and the HTTP server, and
// waits for the channel services.
func (c *conn) teardown() {
	c.mu.Lock()
	c.closed = true
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
	if c.dropTimer != nil {
		c.dropTimer.Stop()
	}
	chans := c.chans
	c.chans = nil
	srv, l := c.httpSrv, c.httpL
	c.mu.Unlock()
	for _, ch := range chans {
		ch.shutdown()
	}
	if l != nil {
		l.Close()
	}
	if srv != nil {
		srv.Close()
	}
	c.wg.Wait()
}

// start sends the first flight: PROTOCOL_VERSION and the auth
// SERVICE_REQUEST in one write (a correct MPS splits coalesced messages),
// or the garbage of FaultGarbage.
func (c *conn) start() {
	pv := &apf.ProtocolVersion{Major: 1, Minor: 0, Trigger: c.cfg.Trigger, UUID: c.cfg.UUID}
	var b []byte
	if c.cfg.Fault == FaultGarbage {
		if c.cfg.GarbageAfterVersion {
			b = pv.Append(b)
		}
		g := make([]byte, garbageLen)
		rand.Read(g)
		g[0] = 0xFF // not a message type
		c.st = stGarbage
		c.writeRaw(append(b, g...))
		return
	}
	b = pv.Append(b)
	b = (&apf.ServiceRequest{Service: apf.ServiceAuth}).Append(b)
	c.writeRaw(b)
}

// readMsg returns the next message from the MPS. Data in the message
// aliases the read buffer until the next call.
func (c *conn) readMsg() (apf.Message, error) {
	for {
		if c.w > c.r {
			m, n, err := c.lim.Parse(c.rbuf[c.r:c.w])
			if err == nil {
				c.r += n
				if c.r == c.w {
					c.r, c.w = 0, 0
				}
				return m, nil
			}
			if !errors.Is(err, apf.ErrIncomplete) {
				return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
			}
		}
		if c.r > 0 {
			c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.rbuf) {
			// The limits bound every message: data by the window,
			// everything else by readBufFloor.
			max := max(int(c.cfg.Window)+9, readBufFloor)
			if len(c.rbuf) >= max {
				return nil, fmt.Errorf("%w: message longer than %d bytes", ErrProtocol, max)
			}
			nb := make([]byte, min(2*len(c.rbuf), max))
			copy(nb, c.rbuf[:c.w])
			c.rbuf = nb
		}
		n, err := c.nc.Read(c.rbuf[c.w:])
		c.w += n
		c.d.bytesIn.Add(int64(n))
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("amtsim: read: %w", err)
		}
	}
}

// handle processes one message from the MPS.
func (c *conn) handle(m apf.Message) error {
	switch m := m.(type) {
	case *apf.Disconnect:
		c.d.lastDisconnect.Store(uint32(m.Reason))
		return &DisconnectError{Reason: m.Reason}
	case *apf.ProtocolVersion:
		return nil // some servers echo it (apf.md §3 step 2)
	case *apf.JSONControl:
		return nil // MeshCentral only
	}
	if c.st == stGarbage {
		return nil // only DISCONNECT or the close matters now
	}
	switch m := m.(type) {
	case *apf.KeepaliveRequest:
		c.d.serverKeepalives.Add(1)
		c.send(&apf.KeepaliveReply{Cookie: m.Cookie})
		return nil
	case *apf.KeepaliveReply:
		c.keepaliveReply(m.Cookie)
		return nil
	case *apf.KeepaliveOptionsRequest:
		c.keepaliveOptions(m.Interval)
		c.send(&apf.KeepaliveOptionsReply{Interval: m.Interval, Timeout: m.Timeout})
		return nil
	}
	switch c.st {
	case stAuthAccept:
		if sa, ok := m.(*apf.ServiceAccept); ok && sa.Service == apf.ServiceAuth {
			c.st = stAuthResult
			c.sendUserauth()
			return nil
		}
	case stAuthResult:
		switch m.(type) {
		case *apf.UserauthSuccess:
			if c.cfg.Fault == FaultWrongPassword {
				return ErrWrongPasswordAccepted
			}
			c.st = stPfwdAccept
			c.writeMsg(&apf.ServiceRequest{Service: apf.ServicePfwd})
			return nil
		case *apf.UserauthFailure:
			// The 15-byte form some servers send leaves a stray zero
			// byte; it is never read because the exchange ends here.
			return ErrAuthFailed
		}
	case stPfwdAccept:
		if sa, ok := m.(*apf.ServiceAccept); ok && sa.Service == apf.ServicePfwd {
			c.st = stForwards
			return c.nextForward()
		}
	case stForwards:
		switch m := m.(type) {
		case *apf.RequestSuccess:
			if want := c.d.rt.ports[c.fwd]; m.Port != want {
				return fmt.Errorf("%w: REQUEST_SUCCESS for port %d, want %d", ErrProtocol, m.Port, want)
			}
			c.bound = append(c.bound, m.Port)
			c.fwd++
			return c.nextForward()
		case *apf.RequestFailure:
			c.log.Debug("amtsim: tcpip-forward refused", "port", c.d.rt.ports[c.fwd])
			c.fwd++
			return c.nextForward()
		}
		return c.handleTunnel(m)
	case stReady:
		return c.handleTunnel(m)
	}
	return fmt.Errorf("%w: unexpected %s during the handshake", ErrProtocol, apf.TypeName(m.Type()))
}

// sendUserauth sends the entry's login and wipes the copies of the
// password it made.
func (c *conn) sendUserauth() {
	user, pw := c.cfg.User, c.cfg.Password
	if c.ent.user != "" {
		user, pw = c.ent.user, c.ent.password
	}
	if c.cfg.Fault == FaultWrongPassword {
		pw = append(append([]byte(nil), pw...), "-wrong"...)
		defer clear(pw)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = (&apf.UserauthRequest{
		Username: user,
		Service:  apf.ServicePfwd,
		Method:   apf.MethodPassword,
		Password: pw,
	}).Append(c.wbuf[:0])
	c.writeLocked(c.wbuf)
	clear(c.wbuf)
}

// nextForward announces the next port, or completes the handshake.
func (c *conn) nextForward() error {
	if c.fwd < len(c.d.rt.ports) {
		c.writeMsg(&apf.TCPIPForward{WantReply: true, Address: c.cfg.Hostname, Port: c.d.rt.ports[c.fwd]})
		return nil
	}
	c.st = stReady
	c.ready.Store(true)
	c.onReady()
	return c.startTimers()
}

// startTimers arms the keepalive timer and the fault's drop timer.
func (c *conn) startTimers() error {
	hold := c.cfg.Hold
	switch c.cfg.Fault {
	case FaultSilent:
		return nil
	case FaultDropAfter, FaultReconnectLoop:
		if hold <= 0 {
			c.abort(ErrDropped)
			return ErrDropped
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.kaTimer = time.AfterFunc(jitter(c.kaEvery), c.keepaliveTick)
	if c.cfg.Fault == FaultDropAfter || c.cfg.Fault == FaultReconnectLoop {
		c.dropTimer = time.AfterFunc(hold, func() { c.abort(ErrDropped) })
	}
	return nil
}

// jitter returns a random duration in [d/2, 3d/2): the first tick of many
// devices spreads over a whole interval.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + mrand.N(d)
}

func (c *conn) keepaliveTick() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if misses := int(c.kaSent - c.kaAcked); c.cfg.KeepaliveMisses > 0 && misses >= c.cfg.KeepaliveMisses {
		c.mu.Unlock()
		c.abort(ErrKeepaliveTimeout)
		return
	}
	c.kaSent++
	cookie := c.kaSent
	c.kaTimer.Reset(c.kaEvery)
	c.mu.Unlock()
	c.d.keepalivesSent.Add(1)
	c.send(&apf.KeepaliveRequest{Cookie: cookie})
}

// keepaliveReply accepts the cookie of any outstanding request; cookies
// increase by one per request.
func (c *conn) keepaliveReply(cookie uint32) {
	c.mu.Lock()
	ok := cookie-c.kaAcked != 0 && cookie-c.kaAcked <= c.kaSent-c.kaAcked
	if ok {
		c.kaAcked = cookie
	}
	c.mu.Unlock()
	if ok {
		c.d.keepalivesAnswered.Add(1)
	} else {
		c.d.keepaliveBad.Add(1)
		c.log.Debug("amtsim: KEEPALIVE_REPLY with an unknown cookie", "cookie", cookie)
	}
}

// keepaliveOptions adopts the interval the MPS asked for (0 keeps the
// current one).
func (c *conn) keepaliveOptions(seconds uint32) {
	if seconds == 0 {
		return
	}
	every := time.Duration(seconds) * time.Second
	c.d.kaInterval.Store(int64(every))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kaEvery = every
	if c.kaTimer != nil && !c.closed {
		c.kaTimer.Reset(jitter(every))
	}
}

// handleTunnel processes the messages of an established tunnel.
func (c *conn) handleTunnel(m apf.Message) error {
	switch m := m.(type) {
	case *apf.ChannelOpen:
		return c.channelOpen(m)
	case *apf.ChannelData:
		if ch := c.channel(m.Recipient); ch != nil {
			return ch.deliver(m.Data)
		}
		// Data for a channel we no longer know: it crossed our CLOSE.
	case *apf.WindowAdjust:
		if ch := c.channel(m.Recipient); ch != nil {
			return ch.adjust(m.BytesToAdd)
		}
	case *apf.ChannelClose:
		if ch := c.channel(m.Recipient); ch != nil {
			ch.remoteClose()
		}
	case *apf.TCPIPForward:
		if m.WantReply {
			c.send(&apf.RequestFailure{})
		}
	case *apf.GlobalRequest:
		if m.WantReply {
			c.send(&apf.RequestFailure{})
		}
	case *apf.RequestSuccess, *apf.RequestFailure, *apf.UDPSendTo,
		*apf.ChannelOpenConfirmation, *apf.ChannelOpenFailure:
		// Nothing pending expects them; ignore like the anchors do.
	default:
		return fmt.Errorf("%w: unexpected %s", ErrProtocol, apf.TypeName(m.Type()))
	}
	return nil
}

func (c *conn) channel(id uint32) *channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chans[id]
}

func (c *conn) forget(id uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.chans, id)
}

func (c *conn) isBound(port uint32) bool { return containsPort(c.bound, port) }

// channelOpen answers the MPS's CHANNEL_OPEN (apf.md §4).
func (c *conn) channelOpen(m *apf.ChannelOpen) error {
	if c.cfg.Fault == FaultSilent && c.isReady() {
		return nil
	}
	refuse := func(r apf.OpenFailureReason) error {
		c.d.channelsRefused.Add(1)
		c.log.Debug("amtsim: channel refused", "port", m.ConnectedPort, "reason", r)
		c.send(&apf.ChannelOpenFailure{Recipient: m.Sender, Reason: r})
		return nil
	}
	if m.ChannelType != apf.ChannelForwardedTCPIP {
		return refuse(apf.OpenUnknownChannelType)
	}
	if !c.isBound(m.ConnectedPort) {
		return refuse(apf.OpenAdministrativelyProhibited)
	}
	if m.ConnectedPort == PortRedirect && c.cfg.EchoPort != PortRedirect && !c.d.Platform().listenerEnabled() {
		// AMT_RedirectionService ListenerEnabled is false: nothing
		// listens on 16994.
		return refuse(apf.OpenConnectFailed)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	if len(c.chans) >= c.cfg.MaxChannels {
		c.mu.Unlock()
		return refuse(apf.OpenResourceShortage)
	}
	c.nextID++
	ch := newChannel(c, c.nextID, m)
	c.chans[ch.id] = ch
	c.mu.Unlock()
	c.d.channelsOpened.Add(1)
	c.send(&apf.ChannelOpenConfirmation{Recipient: m.Sender, Sender: ch.id, Window: c.cfg.Window, Reserved: math.MaxUint32})

	switch port := m.ConnectedPort; {
	case port == c.cfg.EchoPort:
		c.wg.Add(1)
		go c.echo(ch)
	case port == PortWSMan:
		c.serveHTTP(ch)
	case port == PortRedirect:
		c.wg.Add(1)
		go c.serveRedirection(ch)
	default:
		ch.Close() // a port without a service: accept, then close
	}
	return nil
}

// echo writes back whatever the MPS sends until it closes the channel.
func (c *conn) echo(ch *channel) {
	defer c.wg.Done()
	defer ch.Close()
	buf := make([]byte, min(int(c.cfg.Window), maxSendChunk))
	for {
		n, err := ch.Read(buf)
		if n > 0 {
			if _, werr := ch.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// serveHTTP hands a 16992 channel to the connection's HTTP server, started
// on the first such channel.
func (c *conn) serveHTTP(ch *channel) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		ch.Close()
		return
	}
	if c.httpL == nil {
		c.httpL = newListener(addr{c.cfg.Hostname, PortWSMan}, c.cfg.MaxChannels)
		c.httpSrv = &http.Server{
			Handler:           c.d.tunnelHandler(),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
			ConnState: func(_ net.Conn, s http.ConnState) {
				// Track the server's connection goroutines so that
				// teardown waits for them. StateNew happens inside
				// Serve, which is tracked itself.
				switch s {
				case http.StateNew:
					c.wg.Add(1)
				case http.StateClosed, http.StateHijacked:
					c.wg.Done()
				}
			},
		}
		c.wg.Add(1)
		go func(srv *http.Server, l *listener) {
			defer c.wg.Done()
			srv.Serve(l)
		}(c.httpSrv, c.httpL)
	}
	l := c.httpL
	c.mu.Unlock()
	if !l.push(ch) {
		ch.Close()
	}
}

func (d *Device) wsmanHandler() *wsman {
	d.wsmanOnce.Do(func() {
		// Config.AMT was checked by New or NewFleet.
		plat, _ := NewPlatform(d.cfg.AMT, d.cfg.UUID, d.log)
		d.wsman.Store(makeWSMan(WSManConfig{
			UUID:       d.cfg.UUID,
			Hostname:   d.cfg.Hostname,
			DomainName: d.cfg.DomainName,
			User:       d.cfg.AMTUser,
			Password:   d.cfg.AMTPassword,
			Platform:   plat,
		}))
		d.mu.Lock()
		plat.tunnelUp.Store(d.isUp) // setUp keeps it from now on
		d.mu.Unlock()
	})
	return d.wsman.Load()
}

// tunnelHandler is the handler of 16992 channels: a LAN device's applies
// the configuration changes it answers (lan.go).
func (d *Device) tunnelHandler() http.Handler {
	if d.rt.lan != nil {
		return d.rt.lan
	}
	return d.wsmanHandler()
}

// platformIfMade returns the device's platform if something has used it,
// else nil.
func (d *Device) platformIfMade() *Platform {
	if h := d.wsman.Load(); h != nil {
		return h.plat
	}
	return nil
}

// writeMsg writes a handshake message: trickled with FaultTrickle.
func (c *conn) writeMsg(m apf.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = m.Append(c.wbuf[:0])
	return c.writeLocked(c.wbuf)
}

// writeRaw writes b as it is.
func (c *conn) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

// send writes m unless the device is silent. Its error matters only to
// channel writers: the reader learns about a broken connection by reading.
func (c *conn) send(m apf.Message) error {
	if c.cfg.Fault == FaultSilent && c.isReady() {
		return nil
	}
	return c.writeMsg(m)
}

// sendData writes one CHANNEL_DATA.
func (c *conn) sendData(recipient uint32, p []byte) error {
	if c.cfg.Fault == FaultSilent && c.isReady() {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = apf.AppendChannelDataHeader(c.wbuf[:0], recipient, len(p))
	c.wbuf = append(c.wbuf, p...)
	return c.writeLocked(c.wbuf)
}

func (c *conn) writeLocked(b []byte) error {
	select {
	case <-c.done:
		return errTunnelClosed
	default:
	}
	if c.cfg.Fault == FaultTrickle && !c.isReady() {
		return c.trickle(b)
	}
	n, err := c.nc.Write(b)
	c.d.bytesOut.Add(int64(n))
	return err
}

// trickle writes b one byte per write, TrickleGap apart.
func (c *conn) trickle(b []byte) error {
	var t *time.Timer
	for i := range b {
		if i > 0 && c.cfg.TrickleGap > 0 {
			if t == nil {
				t = time.NewTimer(c.cfg.TrickleGap)
				defer t.Stop()
			} else {
				t.Reset(c.cfg.TrickleGap)
			}
			select {
			case <-t.C:
			case <-c.done:
				return errTunnelClosed
			}
		}
		n, err := c.nc.Write(b[i : i+1])
		c.d.bytesOut.Add(int64(n))
		if err != nil {
			return err
		}
	}
	return nil
}
