// Package apf encodes and decodes the Intel AMT Port Forwarding protocol (APF),
// the SSH-connection-protocol lookalike that Intel AMT speaks inside a CIRA TLS
// tunnel to a Management Presence Server.
//
// Every message is a Go type with the fields in wire order; each has an
// Append method that encodes it, and [Parse] decodes the message at the front
// of a buffer. APF has no outer length prefix: a message's length follows from
// its type and fields, so a reader accumulates bytes and calls [Parse] until it
// stops returning [ErrIncomplete]. Incomplete input ([ErrIncomplete]) is
// distinct from malformed input (a [*ParseError]): a length field that exceeds
// the [Limits] is reported as malformed as soon as the field itself has
// arrived, before any byte of the value is awaited or allocated.
//
// Decoded byte slices (ChannelData.Data and other data fields) alias the input
// buffer; copy them before the buffer is reused. Strings are copied.
//
// The package does no I/O and starts no goroutines. See ../../shared/apf.md
// (the project's protocol reference) for the byte layouts; section numbers in
// the comments refer to it.
package apf
