// Package wsman is Presence's own WS-Management client for the Intel AMT
// toolbox: power state and actions, boot options, version and control
// mode, hardware inventory, general settings, the event and audit logs,
// user consent and the redirection switches (../../shared/amt-toolbox.md
// §1.1 lists the calls; section numbers in the comments refer to it).
//
// # Transport
//
// A [Client] speaks HTTP/1.1 POST /wsman over one kept-alive connection per
// device, which it gets from [Config].Dial (in Presence an APF channel to
// the device's port 16992, dialled through the server). A connection the
// device has closed is noticed before it is reused and dialled again. HTTP
// digest authentication (MD5, qop=auth, RFC 7616) keeps the device's nonce
// and counts nc up until the device answers stale=true or challenges again,
// so after the first 401 of a device every request is a single round trip.
// Credentials come from [Config].Credentials for every call, so a vault can
// hold one account per device; the password never appears in an error or a
// log.
//
// # One call at a time
//
// Every operation is a job on the device's queue: the jobs of one device
// run one after another (a [Session] is the device's connection for the
// duration of one job), each within its context's deadline (or
// [Config].Timeout, LongTimeout for the operations of many requests). A queue holds at most [Config].QueueLen jobs; one more
// fails at once with [ErrQueueFull] instead of waiting. At most
// [Config].MaxDevices devices are served at once, client-wide, so polling
// a thousand devices together neither storms one device nor the machine.
// Connections idle for [Config].IdleTimeout are closed.
//
// # Errors
//
// The errors an operation returns can be told apart with [errors.Is] and
// [errors.As], each with one sentence for a window:
//   - [ErrTunnel] ([*TunnelError]): the dial failed, the tunnel went away
//     mid-call, or the device did not answer within the deadline;
//   - [ErrUnsupported]: the platform lacks the class or method (a [*Fault]
//     with subcode DestinationUnreachable, ActionNotSupported or
//     InvalidResourceURI, or HTTP 404);
//   - [ErrConsentRequired]: ReturnValue 0x0821 (a [*StatusError]);
//   - [ErrCredentials] ([*CredentialsError]): the device answered 401 to a
//     digest computed with a fresh nonce. AMT locks an account out after
//     repeated failures, so the client never retries: it refuses every later
//     call for the same device and credentials, without asking the device,
//     until the credentials change (or [Client.Forget]);
//   - [*StatusError]: any other non-zero ReturnValue, with its name;
//   - [ErrMalformed]: the answer broke a limit or could not be decoded.
//
// [Sentence] gives each of them the plain sentence the window, the command
// line and the API show.
//
// # Hostile input
//
// Answers are read under [Limits]: a cap on the HTTP body (4 MiB), on XML
// depth and tokens, on pulls, items and log records, and on the size of
// each record. Decoding never panics; the decoders are fuzzed.
//
// Envelopes are written by hand, with every value XML-escaped, and answers
// are decoded with encoding/xml, matching elements by local name.
package wsman
