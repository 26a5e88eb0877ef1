package proxy

import (
	"errors"
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// The exchange rulebook: what a forwarded request and its response mean
// for the connection they travel on, written once and consulted by both
// engines (the fasthttp path in forward.go, upstream.go and responsebody.go;
// the event loop in eventloop_linux.go; the tunnels in websocket.go for
// failures). Below it, internal/h1 reads and writes the bytes; above it,
// each engine only moves them. A rule the engines disagree on belongs
// here, not in both.

// failureKind classes an upstream failure. Its String is the kind label of
// sessiongate_upstream_errors_total: the dashboard and the alert rules in
// deploy/monitoring select on these values, so they do not change.
type failureKind uint8

const (
	// failConnect: no connection to the upstream (the dial failed, or
	// the pool was closed).
	failConnect failureKind = iota
	// failTimeout: the upstream did not connect, answer or go on within
	// its timeout.
	failTimeout
	// failReset: the upstream closed or broke the connection before the
	// response was whole.
	failReset
	// failProtocol: the upstream's response breaks HTTP/1.1 (a malformed
	// head or chunked body, a head over the limit, an unasked 101).
	failProtocol
)

var failureLabels = [...]string{
	failConnect:  "connect",
	failTimeout:  "timeout",
	failReset:    "reset",
	failProtocol: "protocol",
}

func (k failureKind) String() string { return failureLabels[k] }

// answer is sessiongate's own answer to a request whose upstream failed
// before any of the response went to the client (docs/forwarding.md):
// 504 when it did not answer in time, 502 for the rest.
func (k failureKind) answer() (int, []byte) {
	if k == failTimeout {
		return fasthttp.StatusGatewayTimeout, bodyGatewayTimeout
	}
	return fasthttp.StatusBadGateway, bodyBadGateway
}

var (
	bodyBadGateway     = []byte(`{"success":false,"error":"Bad gateway"}`)
	bodyGatewayTimeout = []byte(`{"success":false,"error":"Gateway timeout"}`)
)

// upstreamError is an upstream failure with its kind, which decides the
// answer, the metric label and the log line in one place.
type upstreamError struct {
	kind failureKind
	err  error
}

func (e *upstreamError) Error() string {
	if e.err == nil {
		return "upstream " + e.kind.String()
	}
	return "upstream " + e.kind.String() + ": " + e.err.Error()
}

func (e *upstreamError) Unwrap() error { return e.err }

func upstreamFailure(kind failureKind, err error) *upstreamError {
	return &upstreamError{kind: kind, err: err}
}

// connectFailure classes a failure to get an upstream connection (a dial,
// or a wait for a free one in a full pool).
func connectFailure(err error) *upstreamError {
	if isTimeout(err) {
		return upstreamFailure(failTimeout, err)
	}
	return upstreamFailure(failConnect, err)
}

// exchangeFailure classes a failure on an upstream connection once the
// request was on its way: writing it, waiting for the head, reading the
// body. A response that breaks the protocol is failProtocol, a timeout
// failTimeout, anything else (a close, a reset, a write error) failReset.
func exchangeFailure(err error) *upstreamError {
	var ue *upstreamError
	switch {
	case errors.As(err, &ue):
		return ue
	case isTimeout(err):
		return upstreamFailure(failTimeout, err)
	case errors.Is(err, h1.ErrBadResponse), errors.Is(err, h1.ErrHeadTooLarge):
		return upstreamFailure(failProtocol, err)
	}
	return upstreamFailure(failReset, err)
}

// bodyMode is how a response body is delimited (RFC 9112 §6.3).
type bodyMode uint8

const (
	bodyNone       bodyMode = iota // none, whatever the head says
	bodyFixed                      // Content-Length
	bodyChunked                    // Transfer-Encoding: chunked, decoded here
	bodyUntilClose                 // neither: the body ends when the upstream closes
)

// responseBodyMode is the framing of the body of a final response with
// status and framing fr to a request (HEAD or not): none after HEAD, 204
// and 304 whatever the head says (RFC 9112 §6.3), else as the head says.
func responseBodyMode(status int, head bool, fr h1.Framing) bodyMode {
	switch {
	case head || status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified:
		return bodyNone
	case fr.Chunked:
		return bodyChunked
	case fr.Length >= 0:
		return bodyFixed
	}
	return bodyUntilClose
}

// errUnaskedSwitch is a 101 to a request that asked for no upgrade: only
// a WebSocket handshake (websocket.go) may switch protocols.
var errUnaskedSwitch = fmt.Errorf("%w: 101 to a request that asked for no upgrade", h1.ErrBadResponse)

// interimResponse reports whether a response with status is an interim
// one to skip and read on (100, 102, 103: RFC 9110 §15.2); a 101 to a
// forwarded request is errUnaskedSwitch.
func interimResponse(status int) (bool, error) {
	switch {
	case status >= 200:
		return false, nil
	case status == fasthttp.StatusSwitchingProtocols:
		return false, errUnaskedSwitch
	}
	return true, nil
}

// maxBufferedBody is the largest response body with a Content-Length that
// is read whole before the response goes out, so head and body leave in one
// write and an upstream that breaks off still gets a clean 502; larger ones,
// and every chunked or close-delimited body, stream.
const maxBufferedBody = 64 << 10

// bufferWhole reports whether a body of mode and length is read whole
// before the head goes to the client.
func bufferWhole(mode bodyMode, length int64) bool {
	return mode == bodyFixed && length <= maxBufferedBody
}

// chunkedForClient reports whether a body of mode goes to an HTTP/1.1
// client chunked: its length is not known when the head leaves (a chunked
// body is decoded and chunked again, so its trailers and extensions stay
// behind; a close-delimited one would otherwise cost the client
// connection).
func chunkedForClient(mode bodyMode) bool { return mode == bodyChunked || mode == bodyUntilClose }

// reusable reports whether the upstream connection may carry another
// request after a response with framing fr and body mode: only when the
// body was read to its end (done), the upstream did not ask to close, the
// body was not delimited by the close, and nothing more is pending on it
// (bytes buffered past the response, or the upstream spoke or closed
// since). Bytes past a response's framing answer nothing: on a reused
// connection they would answer the next request, another client's.
func reusable(fr h1.Framing, mode bodyMode, done, pending bool) bool {
	return done && !fr.Close && mode != bodyUntilClose && !pending
}

// idempotentRequest reports whether a request may be sent twice without
// harm: no body and an idempotent method (RFC 9110 §9.2.2).
func idempotentRequest(method []byte, hasBody bool) bool {
	return !hasBody && idempotentMethod(method)
}

// attemptState is what an engine knows of a request that failed on an
// upstream connection, for retrySafe.
type attemptState struct {
	reused      bool // the connection had carried a request before
	sentNone    bool // nothing of the request left
	sentAll     bool // all of the request left
	gotAny      bool // a byte of a response came back
	idempotent  bool // idempotentRequest
	wholeInHand bool // the whole request is still at hand to send again
}

// retrySafe reports whether the request may go again, once, on a fresh
// connection (docs/forwarding.md). Only a reused connection qualifies (the
// upstream may have closed it while it was idle, which the request could
// not know) and only when nothing came back on it; then either nothing of
// the request left and all of it is at hand, or it all left, went
// unanswered and is idempotent.
func (a attemptState) retrySafe() bool {
	if !a.reused || a.gotAny {
		return false
	}
	return (a.sentNone && a.wholeInHand) || (a.sentAll && a.idempotent)
}

// idempotentMethod reports RFC 9110 §9.2.2's idempotent methods.
func idempotentMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
