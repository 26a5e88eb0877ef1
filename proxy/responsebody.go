package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// responseBody streams an upstream response body to fasthttp, which writes
// it to the client after the handler returned: its Read yields the decoded
// body, and Close, which fasthttp calls when the response is written (or
// abandoned), gives the upstream connection back to the pool if the body
// was read to its end, or closes it.
//
// Each wait for upstream bytes is bounded by responseHeaderTimeout, and
// each write to the client by proxy.write_timeout, so neither a silent
// upstream nor a client that stops reading holds the pair forever, however
// long the stream lasts. A client that goes away while the upstream is
// silent (a SockJS xhr-streaming client between heartbeats) is noticed
// within exchange.LivenessInterval, and the upstream connection closed then, not
// at the next write to the client, which may be tens of seconds later.
type responseBody struct {
	f   *forwarder
	ctx *fasthttp.RequestCtx
	// client is the client's connection, watched while the upstream is
	// silent (ctx.Conn(), kept when ctx is not).
	client net.Conn
	uc     *upstreamConn
	kind   exchange.BodyMode
	// left is the bytes left of a fixed body; chunk walks a chunked one.
	left  int64
	chunk h1.ChunkDecoder
	// done: the body was read to its end (for chunked, trailers too).
	done bool
	err  error
}

var bodyPool = sync.Pool{New: func() any { return new(responseBody) }}

func acquireBody(f *forwarder, ctx *fasthttp.RequestCtx, uc *upstreamConn, kind exchange.BodyMode, length int64) *responseBody {
	b := bodyPool.Get().(*responseBody)
	*b = responseBody{f: f, ctx: ctx, uc: uc, kind: kind, left: length}
	if ctx != nil {
		b.client = ctx.Conn()
	}
	if kind == exchange.BodyFixed && length == 0 {
		b.done = true
	}
	return b
}

// Read reads decoded body bytes.
func (b *responseBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	if n > 0 && b.f.writeTimeout > 0 && b.ctx != nil {
		// The caller writes these bytes to the client next.
		b.ctx.SetWriteDeadline(time.Now().Add(b.f.writeTimeout))
	}
	return n, err
}

func (b *responseBody) read(p []byte) (int, error) {
	br := b.uc.br
	switch b.kind {
	case exchange.BodyFixed:
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err := b.fill(p)
		b.left -= int64(n)
		if b.left == 0 {
			b.done = true
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	case exchange.BodyUntilClose:
		n, err := b.fill(p)
		if err == io.EOF {
			b.done = true
		}
		return n, err
	}
	// Chunked (RFC 9112 §7.1): the decoder walks the framing in what is
	// buffered; chunk data is read straight into p.
	for {
		if left := b.chunk.DataLeft(); left > 0 {
			if int64(len(p)) > left {
				p = p[:left]
			}
			n, err := b.fill(p)
			b.chunk.Took(n)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if b.chunk.Finished() {
			b.done = true
			return 0, io.EOF
		}
		if err := b.waitBuffered(); err != nil {
			return 0, unexpected(err)
		}
		buf, _ := br.Peek(br.Buffered())
		n, err := b.chunk.Frame(buf)
		br.Discard(n)
		if err != nil {
			return 0, err
		}
	}
}

// fill reads what is there (at least one byte), waiting as waitBuffered.
func (b *responseBody) fill(p []byte) (int, error) {
	if err := b.waitBuffered(); err != nil {
		return 0, err
	}
	return b.uc.br.Read(p)
}

// waitBuffered waits until a byte from the upstream is buffered, for at most
// responseHeaderTimeout, looking every exchange.LivenessInterval of silence whether
// the client is still there (errClientGone when it is not).
func (b *responseBody) waitBuffered() error {
	br := b.uc.br
	if br.Buffered() > 0 {
		return nil
	}
	now := time.Now()
	deadline := now.Add(b.f.responseHeaderTimeout)
	for {
		b.uc.setReadDeadline(earliest(deadline, now.Add(exchange.LivenessInterval)))
		_, err := br.Peek(1)
		if err == nil || !exchange.IsTimeout(err) {
			return err
		}
		now = time.Now()
		if !now.Before(deadline) {
			return err
		}
		if b.client != nil && clientGone(b.client) {
			return errClientGone
		}
	}
}

// Close returns the upstream connection: to the pool when the body was
// read to the end and the upstream keeps it open, else closed.
func (b *responseBody) Close() error {
	if b.uc == nil {
		return nil
	}
	if !b.done && b.err != nil && !errors.Is(b.err, errClientWrite) && !errors.Is(b.err, errClientGone) {
		// The response is under way: the failure is counted, and the
		// client sees the body cut short.
		e := exchange.Classify(b.err)
		b.f.metrics.upstreamFailure(e.Kind)
		b.f.log.Debug("upstream body", zap.Error(e))
	}
	if errors.Is(b.err, errClientGone) {
		b.f.log.Debug("client gone while the response streamed")
	}
	b.f.pool.put(b.uc, exchange.Reusable(b.uc.framing, b.kind, b.done, b.uc.br.Buffered() > 0))
	*b = responseBody{}
	bodyPool.Put(b)
	return nil
}

var errClientWrite = errors.New("proxy: writing response to client")

// chunkedWriterTo lets fasthttp's chunked writer take the body in pieces as
// large as the upstream delivers them (up to 32 KiB) instead of its 4 KiB
// copy buffer; fasthttp flushes each piece to the client as one chunk, so a
// SockJS xhr_streaming frame reaches the client when it leaves the upstream.
type chunkedWriterTo struct{ *responseBody }

// SupportsBodyWriteTo opts in to fasthttp using WriteTo (see
// fasthttp.BodyWriterTo).
func (c *chunkedWriterTo) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the decoded body to w, one upstream read per write.
func (c *chunkedWriterTo) WriteTo(w io.Writer) (int64, error) {
	bp := copyPool.Get().(*[]byte)
	defer copyPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := c.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				c.err = errClientWrite
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close closes the underlying body.
func (c *chunkedWriterTo) Close() error { return c.responseBody.Close() }

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
