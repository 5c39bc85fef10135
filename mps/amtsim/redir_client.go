package amtsim

// A Serial-over-LAN console for tests and benchmarks: a thin layer over the
// product's client, mps/sol, so that the handshake lives in one place. It
// keeps the simulator's own error values (RedirStatusError and the
// ErrRedir* sentinels) and adds amtterm 1.4's clear-text login without a
// query. The device side (redir.go) is written apart from mps/sol; they
// share only the codec, mps/redir, whose vectors are checked against the
// spec's, so each checks the other's logic.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/presence-mps/presence/mps/redir"
	"github.com/presence-mps/presence/mps/sol"
)

// SOLAuth selects how [DialSOL] authenticates.
type SOLAuth int

const (
	// SOLAuthDigest asks the device for its authentication types (query),
	// then picks RFC 2617 digest (type 4), else RFC 2069 digest (type 3),
	// else clear text (type 1), like web consoles and amtterm 1.8.
	SOLAuthDigest SOLAuth = iota
	// SOLAuthClear sends the user name and password in clear (type 1)
	// without a query, like amtterm 1.4.
	SOLAuthClear
)

// RedirStatusError reports a reply of the device with a non-zero status.
// errors.Is maps it to [ErrRedirBusy] (0x11 status 2),
// [ErrRedirUnsupported] (0x11 status 1 or 3), [ErrRedirAuth] (0x14) and
// [ErrConsentRequired] (0x21 status 0xFF, the simulator's refusal of a
// session without consent).
type RedirStatusError struct {
	Code   byte // the reply: 0x11, 0x14 or 0x21
	Status byte
}

func (e *RedirStatusError) Error() string {
	return fmt.Sprintf("amtsim: redirection reply 0x%02x with status %d", e.Code, e.Status)
}

// Is matches the sentinel errors of the redirection service.
func (e *RedirStatusError) Is(target error) bool {
	switch target {
	case ErrRedirBusy:
		return e.Code == redir.MsgStartSessionReply && e.Status == redir.StatusBusy
	case ErrRedirUnsupported:
		return e.Code == redir.MsgStartSessionReply && (e.Status == redir.StatusUnknownType || e.Status == redir.StatusUnsupported)
	case ErrRedirAuth:
		return e.Code == redir.MsgAuthenticateReply
	case ErrConsentRequired:
		return e.Code == redir.MsgSOLStartReply && e.Status == redir.StatusError
	}
	return false
}

// SOLClient is a running Serial-over-LAN session (a [sol.Session]). Read
// returns the host's output and Write sends keystrokes; the session sends
// 0x2B every 2 s until it is closed. Read and Write may be called
// concurrently with each other, but not each with itself.
type SOLClient struct {
	s *sol.Session
}

// DialSOL starts a SOL session on conn, a connection to a redirection port
// (16994, or an APF channel to it), with [sol.Open]: 0x10 "SOL ",
// authentication as auth selects, 0x20 with the web consoles' settings
// (10000/100/0/10000/100/0) and 0x27. The handshake must complete within
// [DefaultRedirHandshakeTimeout]. DialSOL owns conn: it closes it on error
// and when the client is closed. A non-zero status in a reply is returned
// as a [*RedirStatusError].
func DialSOL(conn net.Conn, user, password string, auth SOLAuth) (*SOLClient, error) {
	opts := []sol.Option{sol.WithHandshakeTimeout(DefaultRedirHandshakeTimeout)}
	if auth == SOLAuthClear {
		opts = append(opts, sol.WithAuth(redir.AuthPassword), sol.WithoutQuery())
	}
	s, err := sol.Open(context.Background(), conn, user, password, opts...)
	if err != nil {
		return nil, solError(err)
	}
	return &SOLClient{s: s}, nil
}

// solError maps an error of mps/sol to the simulator's.
func solError(err error) error {
	var re *sol.ReplyError
	var ce *sol.CredentialsError
	var ge *sol.GoneError
	switch {
	case errors.As(err, &re):
		return &RedirStatusError{Code: re.Code, Status: re.Status}
	case errors.As(err, &ce):
		return &RedirStatusError{Code: redir.MsgAuthenticateReply, Status: redir.StatusAuthFailed}
	case errors.Is(err, sol.ErrNoAuth):
		return fmt.Errorf("%w: %w", ErrRedirAuth, err)
	case errors.Is(err, sol.ErrProtocol):
		return fmt.Errorf("%w: %w", ErrRedirProtocol, err)
	case errors.As(err, &ge):
		return ge.Err // the connection's own error: io.EOF, a timeout, ...
	}
	return err
}

// Read reads the host's output (the data of 0x2A messages). It returns
// io.EOF when the device closes the connection or ends the session.
func (c *SOLClient) Read(p []byte) (int, error) {
	n, err := c.s.Read(p)
	if err != nil && err != io.EOF {
		err = solError(err)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
	}
	return n, err
}

// Write sends p to the host as keystrokes, in 0x28 messages of at most 512
// bytes.
func (c *SOLClient) Write(p []byte) (int, error) {
	n, err := c.s.Write(p)
	if err != nil {
		err = solError(err)
	}
	return n, err
}

// SetReadDeadline sets the deadline of Read.
func (c *SOLClient) SetReadDeadline(t time.Time) error { return c.s.SetReadDeadline(t) }

// End ends the session the way amtterm does: 0x22, then 0x12 once 0x23
// has arrived; host output still arriving is discarded. It then closes the
// client ([sol.Session.Close]).
func (c *SOLClient) End() error { return c.s.Close() }

// Close stops the heartbeats and closes the connection without ending the
// session; web consoles end a session this way ([sol.Session.Abort]).
func (c *SOLClient) Close() error { return c.s.Abort() }
