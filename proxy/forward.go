package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// forwarder sends requests to the upstream over its own keep-alive pool
// (upstream.go says why not fasthttp.HostClient) and streams bodies both
// ways (docs/forwarding.md).
type forwarder struct {
	upstream *url.URL
	// hostHeader names the upstream in a request that came without Host.
	hostHeader []byte
	pool       *upstreamPool
	log        *zap.Logger
	metrics    *metrics

	// responseHeaderTimeout bounds the wait for response headers once the
	// request is sent, and every later wait for a byte of the response
	// body (an upstream silent that long is gone; SockJS streams send a
	// heartbeat every 25 s).
	responseHeaderTimeout time.Duration
	// clientBodyTimeout bounds each wait for a byte of a request body
	// (nginx's client_body_timeout); proxy.idle_timeout, since a client
	// that stops sending mid-body is as idle as one between requests.
	clientBodyTimeout time.Duration
	// writeTimeout bounds each write of a streamed response to the client
	// (proxy.write_timeout); fasthttp alone would bound the whole response.
	writeTimeout time.Duration
}

func newForwarder(opts *Options, log *zap.Logger, m *metrics) (*forwarder, error) {
	up := &opts.Upstream
	u, err := url.Parse(up.URL)
	if err != nil {
		return nil, err
	}
	return &forwarder{
		upstream:              u,
		hostHeader:            []byte(u.Host),
		pool:                  newUpstreamPool(newUpstreamDialer(u, up.TLSInsecureSkipVerify, up.DialTimeout), up.IdleConnTimeout, up.MaxConns),
		log:                   log,
		metrics:               m,
		responseHeaderTimeout: up.ResponseHeaderTimeout,
		clientBodyTimeout:     opts.IdleTimeout,
		writeTimeout:          opts.WriteTimeout,
	}, nil
}

func (f *forwarder) close() { f.pool.close() }

// writeError answers with one of sessiongate's own JSON error bodies,
// replacing whatever response was started (an upstream header read halfway,
// a body stream, which is closed). The fresh response gets a Date from
// fasthttp, since this answer is ours (RFC 9110 §6.6.1).
func writeError(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.Response.Reset()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyRaw(body)
}

// refuse answers a request that must not be forwarded with an empty-bodied
// status and closes the connection, the way Node's HTTP server (Rocket.Chat
// itself) answers a request it cannot parse.
func refuse(ctx *fasthttp.RequestCtx, status int) {
	ctx.Response.Reset()
	ctx.Response.Header.SetNoDefaultContentType(true)
	ctx.Response.SetStatusCode(status)
	ctx.SetConnectionClose()
}

// dropClient closes the connection of a client that went away while its
// request waited for the upstream, without writing an answer nobody reads
// (the event loop does the same); 400 is what the metrics and the access
// log record, as there.
func dropClient(ctx *fasthttp.RequestCtx) {
	refuse(ctx, fasthttp.StatusBadRequest)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) { c.Close() })
}

// Pools of per-request scratch space, so the steady state allocates nothing.
var (
	headPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
	// copyPool buffers bodies: one read from one side, one write to the other.
	copyPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	// respHeadPool re-parses a filtered response head into fasthttp.
	respHeadPool = sync.Pool{New: func() any {
		s := &respHeadScratch{block: make([]byte, 0, 1024)}
		s.br = bufio.NewReaderSize(&s.r, upstreamBufferSize+512)
		return s
	}}
)

type respHeadScratch struct {
	block []byte
	r     bytes.Reader
	br    *bufio.Reader
}

// outcome of one attempt.
type attempt int

const (
	attemptDone  attempt = iota // response started or error answered
	attemptRetry                // failed before any response byte, safe to repeat
)

// serve forwards ctx's request upstream and sets ctx's response: the
// upstream's, or a 400/502/504 of sessiongate's own. start is when the
// request began to be handled; it stands in for the current time until a
// body read may have waited, since every clock read shows in the profile of
// a small forwarded request (a vDSO clock_gettime costs ~20 ns here, and a
// request used to read the clock about a dozen times).
func (f *forwarder) serve(p *Proxy, ctx *fasthttp.RequestCtx, start time.Time) {
	if ctx.IsConnect() {
		// A CONNECT tunnel is not a request Rocket.Chat answers; Node
		// closes the connection on one. 405 and close.
		refuse(ctx, fasthttp.StatusMethodNotAllowed)
		return
	}
	hb := headPool.Get().(*[]byte)
	defer headPool.Put(hb)
	head, rh, err := p.appendRequestHead((*hb)[:0], ctx, false)
	*hb = head[:0]
	if err != nil {
		f.log.Debug("request refused", zap.Error(err))
		refuse(ctx, fasthttp.StatusBadRequest)
		return
	}

	// Read the first piece of a body before going upstream: a malformed
	// first chunk is then refused before the upstream sees anything, and
	// a small body leaves in the same write as the head.
	var body []byte
	var stream io.Reader
	bodyDone := !rh.HasBody()
	var cb *[]byte
	if rh.HasBody() {
		bs := bodyScratchPool.Get().(*bodyScratch)
		defer bodyScratchPool.Put(bs)
		bs.body = clientBody{r: ctx.RequestBodyStream(), left: rh.ContentLength}
		defer func() { bs.body = clientBody{} }()
		stream, cb = &bs.body, &bs.buf
		n, err := f.readClient(ctx, stream, *cb)
		switch {
		case err == io.EOF:
			bodyDone = true
		case err != nil:
			f.log.Debug("request body", zap.Error(err))
			refuse(ctx, fasthttp.StatusBadRequest)
			return
		}
		body = (*cb)[:n]
	}

	// Only a request that is safe to repeat goes upstream a second time
	// (docs/forwarding.md): no body and an idempotent method (RFC 9110 §9.2.2), or
	// nothing of it sent at all.
	idempotent := exchange.IdempotentRequest(ctx.Method(), rh.HasBody())
	now := start
	if rh.HasBody() {
		now = time.Now() // reading the first body piece may have waited
	}
	deadline := now.Add(f.responseHeaderTimeout)
	for try := 0; ; try++ {
		if try > 0 {
			now = time.Now()
		}
		uc, now, err := f.pool.get(now, deadline, try > 0)
		if err != nil {
			f.fail(ctx, exchange.ClassifyConnect(err))
			return
		}
		r := f.roundTrip(ctx, uc, head, rh, body, bodyDone, stream, cb, idempotent, now, deadline)
		if r == attemptRetry && try == 0 {
			f.log.Debug("retrying on a fresh upstream connection")
			continue
		}
		if r == attemptRetry {
			f.fail(ctx, exchange.Failure(exchange.FailReset, exchange.ErrNoResponse))
		}
		return
	}
}

// bodyScratch is the per-request state of a request body upload.
type bodyScratch struct {
	buf  []byte
	body clientBody
}

var bodyScratchPool = sync.Pool{New: func() any { return &bodyScratch{buf: make([]byte, 32<<10)} }}

// clientBody reads a request body from fasthttp's stream, turning an end
// before the declared Content-Length into io.ErrUnexpectedEOF (fasthttp
// reports a client that went away mid-body as a plain EOF), so a truncated
// body is never completed upstream.
type clientBody struct {
	r    io.Reader
	left int64 // bytes still due, or -1 for a chunked body
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.left >= 0 {
		b.left -= int64(n)
		if err == io.EOF && b.left > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	return n, err
}

// readClient reads the next piece of the request body, waiting at most
// clientBodyTimeout for it. fasthttp's Server.ReadTimeout would otherwise
// bound the whole body (and cut a long upload) or, unset, nothing.
func (f *forwarder) readClient(ctx *fasthttp.RequestCtx, r io.Reader, p []byte) (int, error) {
	if f.clientBodyTimeout > 0 {
		ctx.SetReadDeadline(time.Now().Add(f.clientBodyTimeout))
	}
	for range 100 {
		n, err := r.Read(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// roundTrip sends the request on uc and reads the response head into ctx,
// leaving the body in ctx (small) or streaming (large). It owns uc: it gives
// it back to the pool or closes it, now or when the streamed body ends.
func (f *forwarder) roundTrip(ctx *fasthttp.RequestCtx, uc *upstreamConn, head []byte, rh h1.RequestHead,
	body []byte, bodyDone bool, stream io.Reader, cb *[]byte, idempotent bool, now, deadline time.Time) attempt {
	uc.armDeadline(now, earliest(deadline, now.Add(exchange.LivenessInterval)))

	// The head and what we have of the body, in one write.
	var pre, post []byte
	if rh.Chunked && len(body) > 0 {
		pre = h1.AppendChunkSize(uc.hex[:0], len(body))
		post = crlf
	}
	if rh.Chunked && bodyDone {
		post = lastChunkAfterData
		if len(body) == 0 {
			post = lastChunk
		}
	}
	n, err := uc.writevHead(head, pre, body, post)
	if err != nil {
		f.pool.put(uc, false)
		if (exchange.Attempt{Reused: uc.reused, SentNone: n == 0, WholeInHand: bodyDone}).RetrySafe() {
			// Nothing left: the upstream closed this idle connection.
			return attemptRetry
		}
		f.abortClientBody(ctx, bodyDone)
		f.fail(ctx, exchange.Failure(exchange.FailReset, err))
		return attemptDone
	}

	if !bodyDone {
		if err := f.sendRestOfBody(ctx, uc, rh, stream, *cb); err != nil {
			f.pool.put(uc, false)
			if errors.Is(err, errClientBody) {
				f.log.Debug("request body", zap.Error(err))
				refuse(ctx, fasthttp.StatusBadRequest)
			} else {
				ctx.SetConnectionClose()
				f.fail(ctx, exchange.Failure(exchange.FailReset, err))
			}
			return attemptDone
		}
		// upstream.response_header_timeout counts from the request's end.
		now = time.Now()
		deadline = now.Add(f.responseHeaderTimeout)
		uc.setDeadline(earliest(deadline, now.Add(exchange.LivenessInterval)))
	}

	status, err := f.readResponseHead(ctx, uc, deadline)
	if err != nil {
		f.pool.put(uc, false)
		switch {
		case errors.Is(err, errClientGone):
			f.log.Debug("client gone while waiting for upstream")
			dropClient(ctx)
		case errors.Is(err, exchange.ErrNoResponse) && (exchange.Attempt{Reused: uc.reused, SentAll: true, Idempotent: idempotent}).RetrySafe():
			return attemptRetry
		default:
			f.fail(ctx, exchange.Classify(err))
		}
		return attemptDone
	}
	f.relayBody(ctx, uc, status)
	return attemptDone
}

var (
	crlf               = []byte("\r\n")
	lastChunk          = []byte("0\r\n\r\n")
	lastChunkAfterData = []byte("\r\n0\r\n\r\n")
)

// errClientBody marks a failure to read the request body from the client.
var errClientBody = errors.New("proxy: reading request body")

// sendRestOfBody copies the request body after its first piece to the
// upstream, re-chunked when the client chunked it. Each wait on either side
// has its own deadline, so a large upload is never cut for taking long.
func (f *forwarder) sendRestOfBody(ctx *fasthttp.RequestCtx, uc *upstreamConn, rh h1.RequestHead, stream io.Reader, buf []byte) error {
	for {
		n, rerr := f.readClient(ctx, stream, buf)
		if rerr != nil && rerr != io.EOF {
			return errors.Join(errClientBody, rerr)
		}
		var pre, post []byte
		if rh.Chunked {
			if n > 0 {
				pre = h1.AppendChunkSize(uc.hex[:0], n)
				post = crlf
			}
			if rerr == io.EOF {
				post = lastChunkAfterData
				if n == 0 {
					post = lastChunk
				}
			}
		}
		if n > 0 || len(post) > 0 {
			uc.setWriteDeadline(time.Now().Add(f.responseHeaderTimeout))
			if _, err := uc.writevHead(nil, pre, buf[:n], post); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
	}
}

// abortClientBody makes sure an unread request body does not stay on the
// client connection to be parsed as the next request.
func (f *forwarder) abortClientBody(ctx *fasthttp.RequestCtx, bodyDone bool) {
	if !bodyDone {
		ctx.SetConnectionClose()
	}
}

var (
	errClientGone = errors.New("proxy: client closed the connection")
)

// readResponseHead waits for the upstream's response head on uc (skipping
// 1xx interim responses), filters out hop-by-hop fields and parses the rest
// into ctx.Response.Header. It returns the status code; uc.br is left at the
// start of the body. While it waits it checks every exchange.LivenessInterval that
// the client is still there.
func (f *forwarder) readResponseHead(ctx *fasthttp.RequestCtx, uc *upstreamConn, deadline time.Time) (int, error) {
	for {
		end, err := waitHead(ctx, uc, deadline)
		if err != nil {
			return 0, err
		}
		block, _ := uc.br.Peek(end)
		s := respHeadPool.Get().(*respHeadScratch)
		out, code, fr, err := h1.FilterResponseHead(s.block[:0], block)
		s.block = out
		if err != nil {
			respHeadPool.Put(s)
			return 0, err
		}
		uc.br.Discard(end)
		if skip, err := exchange.InterimResponse(code); skip || err != nil {
			respHeadPool.Put(s)
			if err != nil {
				return 0, err
			}
			continue
		}
		s.r.Reset(s.block)
		s.br.Reset(&s.r)
		err = ctx.Response.Header.Read(s.br)
		respHeadPool.Put(s)
		if err != nil {
			return 0, errors.Join(h1.ErrBadResponse, err)
		}
		// The upstream's Connection: close, or a body delimited by
		// close, concern the upstream connection only.
		ctx.Response.Header.ResetConnectionClose()
		uc.framing = fr
		return code, nil
	}
}

// waitHead reads from uc until a complete head is buffered and returns its
// length, polling the client's liveness while the upstream thinks.
func waitHead(ctx *fasthttp.RequestCtx, uc *upstreamConn, deadline time.Time) (int, error) {
	gotAny := uc.br.Buffered() > 0
	for {
		buf, _ := uc.br.Peek(uc.br.Buffered())
		if end := h1.HeadEnd(buf); end > 0 {
			return end, nil
		}
		if uc.br.Buffered() >= upstreamBufferSize {
			return 0, h1.ErrHeadTooLarge
		}
		_, err := uc.br.Peek(uc.br.Buffered() + 1)
		if err == nil {
			gotAny = true
			continue
		}
		if !exchange.IsTimeout(err) {
			if !gotAny && uc.br.Buffered() == 0 {
				return 0, errors.Join(exchange.ErrNoResponse, err)
			}
			return 0, errors.Join(h1.ErrBadResponse, err)
		}
		now := time.Now()
		if !now.Before(deadline) {
			return 0, err
		}
		if c := ctx.Conn(); c != nil && clientGone(c) {
			return 0, errClientGone
		}
		uc.setReadDeadline(earliest(deadline, now.Add(exchange.LivenessInterval)))
	}
}

// relayBody sets ctx's response body from the upstream, after its head:
// none, read whole (a small Content-Length), or streamed.
func (f *forwarder) relayBody(ctx *fasthttp.RequestCtx, uc *upstreamConn, status int) {
	fr := uc.framing
	mode := exchange.ResponseBodyMode(status, ctx.IsHead(), fr)
	switch {
	case mode == exchange.BodyNone:
		f.pool.put(uc, exchange.Reusable(fr, mode, true, uc.br.Buffered() > 0))
	case exchange.BufferWhole(mode, fr.Length):
		if err := readWhole(ctx, uc, fr.Length, f.responseHeaderTimeout); err != nil {
			f.pool.put(uc, false)
			f.fail(ctx, exchange.Classify(err))
			return
		}
		f.pool.put(uc, exchange.Reusable(fr, mode, true, uc.br.Buffered() > 0))
	case mode == exchange.BodyFixed:
		b := acquireBody(f, ctx, uc, mode, fr.Length)
		// The head goes out at once; each body piece is then written
		// to the client as it arrives (the ReadFrom path of fasthttp's
		// fixed-size writer writes every read straight to the socket).
		ctx.Response.ImmediateHeaderFlush = true
		ctx.Response.SetBodyStream(b, int(fr.Length))
	case !ctx.Request.Header.IsHTTP11():
		f.relayToHTTP10(ctx, acquireBody(f, ctx, uc, mode, 0))
	default: // exchange.ChunkedForClient
		ctx.Response.SetBodyStream(&chunkedWriterTo{acquireBody(f, ctx, uc, mode, 0)}, -1)
	}
}

// relayToHTTP10 sends a body of unknown length to an HTTP/1.0 client, which
// must not get Transfer-Encoding (RFC 9112 §6.1) and so reads until the
// connection closes. fasthttp would chunk it, so the connection is taken
// over once the handler returns: head, body as it arrives, close.
func (f *forwarder) relayToHTTP10(ctx *fasthttp.RequestCtx, b *responseBody) {
	ctx.Response.Header.SetContentLength(-2) // identity: no framing field
	ctx.Response.Header.SetConnectionClose()
	head := append([]byte(nil), ctx.Response.Header.Header()...)
	b.ctx = nil // the copy below sets its own write deadlines
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer c.Close()
		defer b.Close()
		buf := copyPool.Get().(*[]byte)
		defer copyPool.Put(buf)
		if f.writeTimeout > 0 {
			c.SetWriteDeadline(time.Now().Add(f.writeTimeout))
		}
		if _, err := c.Write(head); err != nil {
			return
		}
		for {
			n, err := b.Read(*buf)
			if n > 0 {
				if f.writeTimeout > 0 {
					c.SetWriteDeadline(time.Now().Add(f.writeTimeout))
				}
				if _, werr := c.Write((*buf)[:n]); werr != nil {
					b.err = errClientWrite
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// readWhole appends the next n body bytes from uc to ctx's response body.
// Each wait for a byte is bounded by timeout (the deadline left from the
// head's wait may be close); a body that came with its head waits for
// nothing and touches no deadline.
func readWhole(ctx *fasthttp.RequestCtx, uc *upstreamConn, n int64, timeout time.Duration) error {
	ctx.Response.ResetBody()
	for n > 0 {
		if uc.br.Buffered() == 0 {
			uc.setReadDeadline(time.Now().Add(timeout))
			if _, err := uc.br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		b, _ := uc.br.Peek(int(min(n, int64(uc.br.Buffered()))))
		ctx.Response.AppendBody(b)
		uc.br.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// fail answers ctx for an upstream failure before any of the response
// went out: the answer, the metric and the log line the failure's kind
// calls for.
func (f *forwarder) fail(ctx *fasthttp.RequestCtx, e *exchange.Error) {
	f.metrics.upstreamFailure(e.Kind)
	f.log.Debug("upstream failed", zap.Error(e))
	status, body := e.Kind.Answer()
	writeError(ctx, status, body)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
