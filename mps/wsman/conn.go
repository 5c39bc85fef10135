package wsman

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// maxHeaderBytes caps the status line and headers of an answer.
const maxHeaderBytes = 64 << 10

// conn is one kept-alive HTTP/1.1 connection to a device's WS-Man port. It
// belongs to the device's running job; it is not safe for concurrent use.
type conn struct {
	nc  net.Conn
	lim budget
	br  *bufio.Reader
}

func newConn(nc net.Conn) *conn {
	c := &conn{nc: nc}
	c.lim.r = nc
	c.br = bufio.NewReaderSize(&c.lim, 16<<10)
	return c
}

func (c *conn) close() { c.nc.Close() }

// budget reads from r at most n more bytes; past that it fails with
// errTooLarge. It counts the bytes read and keeps the error of r.
type budget struct {
	r        io.Reader
	n        int64
	read     int64
	err      error // from r
	exceeded bool
}

var errTooLarge = errors.New("answer too large")

func (b *budget) Read(p []byte) (int, error) {
	if b.n <= 0 {
		b.exceeded = true
		return 0, errTooLarge
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	b.read += int64(n)
	if err != nil {
		b.err = err
	}
	return n, err
}

// reset gives the budget n bytes for the next answer.
func (b *budget) reset(n int64) { b.n, b.read, b.err, b.exceeded = n, 0, nil, false }

// alive reports whether the device has not closed the idle connection, and
// sent nothing unasked: a read with a deadline in the past must time out.
func (c *conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	c.lim.reset(1)
	c.nc.SetReadDeadline(time.Unix(1, 0))
	_, err := c.br.Peek(1)
	c.nc.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// response is an HTTP answer with its whole body.
type response struct {
	status    int
	header    http.Header
	body      []byte
	keepAlive bool
}

// ioError is a failure of the connection itself.
type ioError struct {
	op  string // "write" or "read"
	err error
	// unanswered: nothing of an answer arrived (the request may be sent
	// again on a new connection if the connection was reused).
	unanswered bool
}

func (e *ioError) Error() string { return e.op + ": " + e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

// roundTrip sends one request and reads its answer, its body at most
// maxBody bytes. On any error the connection must not be used again.
// ctx cancels the exchange by moving the connection's deadline.
func (c *conn) roundTrip(ctx context.Context, host, authorization string, body []byte, maxBody int64) (response, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var req bytes.Buffer
	req.Grow(300 + len(authorization) + len(body))
	req.WriteString("POST /wsman HTTP/1.1\r\nHost: ")
	req.WriteString(host)
	req.WriteString("\r\n")
	if authorization != "" {
		req.WriteString("Authorization: ")
		req.WriteString(authorization)
		req.WriteString("\r\n")
	}
	req.WriteString("Content-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: ")
	req.WriteString(strconv.Itoa(len(body)))
	req.WriteString("\r\n\r\n")
	req.Write(body)
	if _, err := c.nc.Write(req.Bytes()); err != nil {
		return response{}, &ioError{op: "write", err: err, unanswered: true}
	}

	// The status line and headers get their own budget (plus what the
	// buffered reader may read ahead); the body gets maxBody more.
	c.lim.reset(maxHeaderBytes + int64(c.br.Size()))
	var resp *http.Response
	for range 3 { // skip 1xx answers
		r, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return response{}, c.readErr(err, maxBody)
		}
		if r.StatusCode >= 200 || r.StatusCode < 100 {
			resp = r
			break
		}
	}
	if resp == nil {
		return response{}, malformed("more than three informational answers")
	}
	if resp.ContentLength > maxBody {
		return response{}, malformed("the answer has %d bytes; the limit is %d", resp.ContentLength, maxBody)
	}
	c.lim.n += maxBody
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return response{}, c.readErr(err, maxBody)
	}
	if int64(len(b)) > maxBody {
		return response{}, malformed("the answer exceeds the limit of %d bytes", maxBody)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: b, keepAlive: !resp.Close}
	if !stop() {
		// ctx ended as the answer completed: the deadline may be moving
		// under us, so this connection is done.
		r.keepAlive = false
		return r, nil
	}
	c.nc.SetDeadline(time.Time{})
	return r, nil
}

// readErr classifies an error met while reading an answer.
func (c *conn) readErr(err error, maxBody int64) error {
	switch {
	case c.lim.exceeded:
		return malformed("the answer exceeds the limit of %d bytes of headers and %d of body", maxHeaderBytes, maxBody)
	case c.lim.err == nil:
		return malformed("%v", err) // the answer itself is bad
	case errors.Is(c.lim.err, io.EOF):
		// The device closed the connection, before answering or within
		// its answer.
		return &ioError{op: "read", err: io.ErrUnexpectedEOF, unanswered: c.lim.read == 0}
	}
	return &ioError{op: "read", err: c.lim.err, unanswered: c.lim.read == 0}
}
