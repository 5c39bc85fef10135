// Package redir encodes and decodes the Intel AMT redirection protocol, the
// session protocol of TCP port 16994 (and TLS 16995, or an APF channel to
// 16994) that carries Serial-over-LAN, IDE-R and KVM.
//
// Every message is a Go type with the fields in wire order; each has an
// Append method that encodes it, and [Parse] decodes the message at the front
// of a buffer. The protocol has no common length header: a message's length
// follows from its code and, for a few codes, a length field. [Len] tells how
// long a message is from its first bytes, and [ReadMessage] reads exactly one
// message from a stream. Both check a declared length against the [Limits]
// before any byte of the value is awaited or allocated. Incomplete input
// ([ErrIncomplete]) is distinct from malformed input (a [*ParseError]).
//
// The data of the authentication messages is made of length-value fields
// ([AppendLV]): [PasswordAuth] for clear text, [Digest] for the digest
// request and response, [Challenge] for the device's digest challenge.
// [Digest.ResponseFor] computes the digest response AMT expects.
//
// Only the session-manager (0x10–0x14) and SOL (0x20–0x2B) messages are
// framed. IDE-R and KVM use codes from 0x40 whose lengths depend on the kind
// of session; this package names their codes but does not decode them.
//
// Decoded byte slices (the data fields) alias the input buffer; copy them
// before the buffer is reused. Strings are copied.
//
// The package starts no goroutines, and its only I/O is [ReadMessage]
// reading from the [io.Reader] it is given. See ../../shared/redirection.md
// (the project's protocol reference) for the byte layouts; section numbers
// in the comments refer to it.
package redir
