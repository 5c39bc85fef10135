// Package tunnel is the server side of one Intel AMT CIRA connection: the TLS
// handshake under a deadline, the APF protocol state machine (version, auth
// service, password authentication, port-forwarding service, tcpip-forward),
// keepalives and the idle timeout, and channels to the ports AMT announced,
// exposed as [net.Conn] with flow-control windows enforced both ways.
//
// Protocol flow (../../shared/apf.md §3):
//
//	AMT                                   Presence
//	TLS ClientHello ───────────────────►  (RSA certificate, AMT-compatible suites)
//	PROTOCOL_VERSION(1.0, UUID) ───────►
//	SERVICE_REQUEST auth@amt ──────────►  ◄─── SERVICE_ACCEPT
//	USERAUTH_REQUEST(user, password) ──►  ◄─── USERAUTH_SUCCESS | USERAUTH_FAILURE (14 bytes)
//	                      [Accept returns here; the handshake deadline is cleared]
//	SERVICE_REQUEST pfwd@amt ──────────►  ◄─── SERVICE_ACCEPT
//	GLOBAL_REQUEST tcpip-forward ×N ───►  ◄─── REQUEST_SUCCESS(port) each
//	                      [no forward for Config.ForwardSettle: "ready"]
//	                                      ◄─── KEEPALIVE_OPTIONS_REQUEST(interval, timeout)
//	KEEPALIVE_REQUEST(cookie) ─────────►  ◄─── KEEPALIVE_REPLY(cookie)
//	                                      ◄─── CHANNEL_OPEN(forwarded-tcpip, port)   [Dial]
//	CHANNEL_OPEN_CONFIRMATION ─────────►
//	CHANNEL_DATA / WINDOW_ADJUST ◄─────►
//	CHANNEL_CLOSE ◄────────────────────►
//
// A tunnel is read either by a goroutine of its own, the one that calls
// [Conn.Serve], or, once [Conn.Park]ed, by a [Poller]'s shard: a goroutine
// that reads many tunnels' sockets as epoll reports them, so that an idle
// tunnel owns no goroutine (the server's default on Linux). Either way the
// reader decodes and dispatches, never blocks on a consumer, and writes its own
// small replies (keepalive replies and the like) before it next waits for
// input, when no write is in progress. At most one writer goroutine drains
// the rest of the write queue (channel data, window adjusts); it runs only
// while there is something to write. So an idle tunnel costs no buffer
// but the 512-byte read buffer (and, served, one goroutine), and a
// keepalive costs no thread handoff: both were measured to matter at
// 19,000 tunnels.
// Backpressure comes from windows: a channel buffers at most the window it
// advertised, and a device that sends more is a protocol error. Memory per
// tunnel is bounded by the window per channel times the channel cap, plus the
// bounded write queue.
package tunnel
