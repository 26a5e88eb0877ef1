package proxy

import (
	"errors"
	"net"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// newServer configures fasthttp for transparent proxying:
//
//   - header names keep their case (DisableHeaderNamesNormalizing); the
//     forwarder sends the client's raw header block upstream anyway, and for
//     responses fasthttp re-emits Server, Content-Type, Content-Encoding and
//     Content-Length in canonical case at the head of the block and
//     Set-Cookie at its end (every other field keeps its case and order);
//   - request bodies stream (StreamRequestBody) instead of being buffered,
//     and multipart bodies are never pre-parsed;
//   - no Server, Date or Content-Type is invented on a forwarded response:
//     the upstream's Date passes through (answers of sessiongate's own get a
//     Date, see writeError);
//   - ReadTimeout (proxy.read_header_timeout) bounds reading a request's
//     line and headers, which cuts slowloris clients; the forwarder replaces
//     it with a per-read deadline while it streams a body, so it never cuts
//     a long upload;
//   - ReadBufferSize is proxy.max_header_bytes: a request line plus headers
//     that do not fit are answered 431 (Node, Rocket.Chat's own server,
//     answers 431 for both an oversized request line and oversized headers;
//     fasthttp cannot tell the two apart, so there is no separate 414);
//   - error logs never carry request bytes (SecureErrorLogMessage), which
//     could hold tokens or cookies;
//   - the request time is not read for every request (LazyRequestTime):
//     nothing here calls RequestCtx.Time, and a clock read is a visible
//     part of a small forwarded request's cost.
func (p *Proxy) newServer() *fasthttp.Server {
	s := &fasthttp.Server{
		Handler:                       p.handle,
		ErrorHandler:                  p.parseError,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		StreamRequestBody:             true,
		SecureErrorLogMessage:         true,
		ReadBufferSize:                p.opts.MaxHeaderBytes,
		ReadTimeout:                   p.opts.ReadHeaderTimeout,
		IdleTimeout:                   p.opts.IdleTimeout,
		WriteTimeout:                  p.opts.WriteTimeout,
		Concurrency:                   p.opts.MaxConns,
		CloseOnShutdown:               true,
		LazyRequestTime:               true,
		Logger:                        zapPrintf{p.log},
	}
	// WebSocket tunnels keep hijacked connections without fasthttp's
	// per-connection goroutine and buffers (websocket.go).
	p.tunnels.prepareServer(s)
	return s
}

// parseError answers a request fasthttp could not read, with an empty body
// and Connection: close as Node does: 431 when the line and headers exceed
// proxy.max_header_bytes, 408 when they did not arrive within
// proxy.read_header_timeout, else 400. Nothing of it reaches the upstream.
func (p *Proxy) parseError(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		status = fasthttp.StatusRequestTimeout
	}
	p.log.Debug("request not parsed", zap.Int("status", status), zap.Error(err))
	p.metrics.observe(ClassForward, status, 0)
	refuse(ctx, status)
}

// zapPrintf adapts fasthttp's Printf logger to zap at debug level: fasthttp
// logs client mistakes (bad requests, timeouts) that are not ours to alarm on.
type zapPrintf struct{ log *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.log.Sugar().Debugf(format, args...)
}
