// Package sol is Presence's Serial-over-LAN client: the console side of
// the Intel AMT redirection protocol (../../shared/redirection.md; section
// numbers in the comments refer to it) over a connection that already
// reaches the device's redirection port 16994 — in Presence an APF channel
// through the server.
//
// [Open] runs the handshake the way web consoles do (§4): 0x10 "SOL ", an
// authentication query, digest authentication (RFC 2617 type 4, else RFC
// 2069 type 3, else clear text type 1 where the device offers only that,
// as amtterm 1.8 and the ui-toolkit pick), 0x20 with the web consoles'
// settings and 0x27. The [Session] it returns is an [io.ReadWriteCloser]:
// Read returns the host's output (the data of 0x2A messages), Write sends
// keystrokes (0x28), and the session sends its own heartbeat (0x2B) every
// two seconds, as web consoles do. [Session.Close] ends the session
// politely, as amtterm does (0x22, then 0x12 once the device has answered
// 0x23), and waits for the session's goroutines.
//
// # Errors
//
// Every error can be told apart with [errors.Is], each with a sentence a
// window can show:
//   - [ErrCredentials] ([*CredentialsError]): the device rejected the AMT
//     user name or password. Open never retries, and neither should its
//     caller without new credentials: AMT locks accounts out;
//   - [ErrRefused] ([*ReplyError]): the device refused the session, more
//     precisely [ErrDisabled] (SOL is not enabled: 0x11 status 1 or 3),
//     [ErrBusy] (another SOL session is open: 0x11 status 2),
//     [ErrNoAuth] (no authentication type both sides support) or
//     [ErrStartRefused] (0x21 with a non-zero status, which is what a
//     device that needs user consent answers in the simulator);
//   - [ErrDeviceGone] ([*GoneError]): the connection ended or broke, or the
//     device did not answer within the deadline;
//   - [ErrProtocol]: the device sent something malformed, oversized or
//     unexpected;
//   - [ErrClosed]: the session was closed.
//
// The password never appears in an error or a log record.
//
// # Limits
//
// Device messages are read with [redir.DefaultLimits] (authentication data
// up to 1 KiB, SOL data up to 16 KiB per message): a declared length above
// them is refused before it is read. The handshake skips at most
// [maxSkipped] heartbeats and notices. Host output waits in at most
// [maxQueued] messages for Read; beyond that the session stops reading the
// connection until Read catches up, so a fast device cannot fill memory.
//
// The package imports only the standard library and mps/redir.
package sol
