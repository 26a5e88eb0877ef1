// Package exchange is the exchange rulebook: what a forwarded request and
// its response mean for the connection they travel on, written once and
// consulted by both engines (the fasthttp path in package proxy, the event
// loop in proxy/internal/loop; the WebSocket tunnels for failures). Below
// it, proxy/internal/h1 reads and writes the bytes; above it, each engine
// only moves them. A rule the engines disagree on belongs here, not in
// both.
package exchange

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// FailureKind classes an upstream failure. Its String is the kind label of
// sessiongate_upstream_errors_total: the dashboard and the alert rules in
// deploy/monitoring select on these values, so they do not change.
type FailureKind uint8

const (
	// FailConnect: no connection to the upstream (the dial failed, or
	// the pool was closed).
	FailConnect FailureKind = iota
	// FailTimeout: the upstream did not connect, answer or go on within
	// its timeout.
	FailTimeout
	// FailReset: the upstream closed or broke the connection before the
	// response was whole.
	FailReset
	// FailProtocol: the upstream's response breaks HTTP/1.1 (a malformed
	// head or chunked body, a head over the limit, an unasked 101).
	FailProtocol
)

var failureLabels = [...]string{
	FailConnect:  "connect",
	FailTimeout:  "timeout",
	FailReset:    "reset",
	FailProtocol: "protocol",
}

func (k FailureKind) String() string { return failureLabels[k] }

// Answer is sessiongate's own answer to a request whose upstream failed
// before any of the response went to the client (docs/forwarding.md):
// 504 when it did not answer in time, 502 for the rest.
func (k FailureKind) Answer() (int, []byte) {
	if k == FailTimeout {
		return fasthttp.StatusGatewayTimeout, BodyGatewayTimeout
	}
	return fasthttp.StatusBadGateway, BodyBadGateway
}

// LivenessInterval is how often a request waiting for upstream headers
// checks whether its client has gone, so a client abandoning a long-poll
// frees its upstream connection within about this long.
const LivenessInterval = time.Second

// AppendOwnAnswer appends a whole response of sessiongate's own with a JSON
// body, in the bytes the fasthttp path sends for its own answers (writeError).
func AppendOwnAnswer(dst, dateLine []byte, status int, body []byte, closeConn bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, fasthttp.StatusMessage(status)...)
	dst = append(dst, "\r\n"...)
	dst = append(dst, dateLine...)
	dst = append(dst, "Content-Type: application/json\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n"...)
	if closeConn {
		dst = append(dst, "Connection: close\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, body...)
}

var (
	BodyBadGateway     = []byte(`{"success":false,"error":"Bad gateway"}`)
	BodyGatewayTimeout = []byte(`{"success":false,"error":"Gateway timeout"}`)
)

// Error is an upstream failure with its kind, which decides the
// answer, the metric label and the log line in one place.
type Error struct {
	Kind FailureKind
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "upstream " + e.Kind.String()
	}
	return "upstream " + e.Kind.String() + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func Failure(kind FailureKind, err error) *Error {
	return &Error{Kind: kind, Err: err}
}

// ClassifyConnect classes a failure to get an upstream connection (a dial,
// or a wait for a free one in a full pool).
func ClassifyConnect(err error) *Error {
	if IsTimeout(err) {
		return Failure(FailTimeout, err)
	}
	return Failure(FailConnect, err)
}

// Classify classes a failure on an upstream connection once the
// request was on its way: writing it, waiting for the head, reading the
// body. A response that breaks the protocol is FailProtocol, a timeout
// FailTimeout, anything else (a close, a reset, a write error) FailReset.
func Classify(err error) *Error {
	var ue *Error
	switch {
	case errors.As(err, &ue):
		return ue
	case IsTimeout(err):
		return Failure(FailTimeout, err)
	case errors.Is(err, h1.ErrBadResponse), errors.Is(err, h1.ErrHeadTooLarge):
		return Failure(FailProtocol, err)
	}
	return Failure(FailReset, err)
}

// BodyMode is how a response body is delimited (RFC 9112 §6.3).
type BodyMode uint8

const (
	BodyNone       BodyMode = iota // none, whatever the head says
	BodyFixed                      // Content-Length
	BodyChunked                    // Transfer-Encoding: chunked, decoded here
	BodyUntilClose                 // neither: the body ends when the upstream closes
)

// ResponseBodyMode is the framing of the body of a final response with
// status and framing fr to a request (HEAD or not): none after HEAD, 204
// and 304 whatever the head says (RFC 9112 §6.3), else as the head says.
func ResponseBodyMode(status int, head bool, fr h1.Framing) BodyMode {
	switch {
	case head || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified:
		return BodyNone
	case fr.Chunked:
		return BodyChunked
	case fr.Length >= 0:
		return BodyFixed
	}
	return BodyUntilClose
}

// ErrUnaskedSwitch is a 101 to a request that asked for no upgrade: only
// a WebSocket handshake (websocket.go) may switch protocols.
var ErrUnaskedSwitch = fmt.Errorf("%w: 101 to a request that asked for no upgrade", h1.ErrBadResponse)

// InterimResponse reports whether a response with status is an interim
// one to skip and read on (100, 102, 103: RFC 9110 §15.2); a 101 to a
// forwarded request is ErrUnaskedSwitch.
func InterimResponse(status int) (bool, error) {
	switch {
	case status >= 200:
		return false, nil
	case status == fasthttp.StatusSwitchingProtocols:
		return false, ErrUnaskedSwitch
	}
	return true, nil
}

// MaxBufferedBody is the largest response body with a Content-Length that
// is read whole before the response goes out, so head and body leave in one
// write and an upstream that breaks off still gets a clean 502; larger ones,
// and every chunked or close-delimited body, stream.
const MaxBufferedBody = 64 << 10

// BufferWhole reports whether a body of mode and length is read whole
// before the head goes to the client.
func BufferWhole(mode BodyMode, length int64) bool {
	return mode == BodyFixed && length <= MaxBufferedBody
}

// ChunkedForClient reports whether a body of mode goes to an HTTP/1.1
// client chunked: its length is not known when the head leaves (a chunked
// body is decoded and chunked again, so its trailers and extensions stay
// behind; a close-delimited one would otherwise cost the client
// connection).
func ChunkedForClient(mode BodyMode) bool { return mode == BodyChunked || mode == BodyUntilClose }

// reusable reports whether the upstream connection may carry another
// request after a response with framing fr and body mode: only when the
// body was read to its end (done), the upstream did not ask to close, the
// body was not delimited by the close, and nothing more is pending on it
// (bytes buffered past the response, or the upstream spoke or closed
// since). Bytes past a response's framing answer nothing: on a reused
// connection they would answer the next request, another client's.
func Reusable(fr h1.Framing, mode BodyMode, done, pending bool) bool {
	return done && !fr.Close && mode != BodyUntilClose && !pending
}

// IdempotentRequest reports whether a request may be sent twice without
// harm: no body and an idempotent method (RFC 9110 §9.2.2).
func IdempotentRequest(method []byte, hasBody bool) bool {
	return !hasBody && IdempotentMethod(method)
}

// Attempt is what an engine knows of a request that failed on an
// upstream connection, for retrySafe.
type Attempt struct {
	Reused      bool // the connection had carried a request before
	SentNone    bool // nothing of the request left
	SentAll     bool // all of the request left
	GotAny      bool // a byte of a response came back
	Idempotent  bool // IdempotentRequest
	WholeInHand bool // the whole request is still at hand to send again
}

// RetrySafe reports whether the request may go again, once, on a fresh
// connection (docs/forwarding.md). Only a reused connection qualifies (the
// upstream may have closed it while it was idle, which the request could
// not know) and only when nothing came back on it; then either nothing of
// the request left and all of it is at hand, or it all left, went
// unanswered and is idempotent.
func (a Attempt) RetrySafe() bool {
	if !a.Reused || a.GotAny {
		return false
	}
	return (a.SentNone && a.WholeInHand) || (a.SentAll && a.Idempotent)
}

// IdempotentMethod reports RFC 9110 §9.2.2's idempotent methods.
func IdempotentMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// Errors the engines report that the rulebook classes.
var (
	// ErrNoResponse: the upstream closed the connection before a byte of
	// the response came back.
	ErrNoResponse = errors.New("proxy: upstream closed the connection before answering")
	// ErrPoolTimeout: no upstream connection came free before the
	// request's deadline (a timeout).
	ErrPoolTimeout = errors.New("proxy: no upstream connection free in time")
	// ErrPoolClosed: the upstream connections are shut down.
	ErrPoolClosed = errors.New("proxy: upstream pool closed")
)

// IsTimeout reports whether err is a deadline that passed: a socket's, a
// context's or the wait for a free upstream connection.
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrPoolTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
