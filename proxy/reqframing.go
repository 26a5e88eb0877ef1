package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/proxy/internal/h1"
	"github.com/sessiongate/sessiongate/proxy/internal/loop"
)

// Chunked request bodies are decoded by fasthttp on both request paths (the
// event loop hands every chunked request over), and fasthttp skips a chunk
// extension up to the first CR without reading it: "5;a=\"x\r\n" passes,
// though a peer that reads the quoted-string over the line end sees a
// different body and then a different next request (request smuggling).
// fasthttp offers no hook into its chunk reader, so the connection it reads
// from is wrapped instead: framingConn follows the request framing of the
// bytes that pass through it — a head, its Content-Length or chunked body,
// the next head — and feeds every chunked body to chunkDecoder, the one
// chunk grammar, which also reads upstream responses. A body it refuses
// fails the read: fasthttp then reports a broken body to the forwarder,
// which answers 400 and closes; the upstream never gets that request's end
// (nor anything of it, when the fault came in the read that brought the
// head, as the forwarder reads a first piece of body before going
// upstream).
//
// A head that may declare a body is parsed with fasthttp's own parser, so
// the wrapper and the server reading behind it agree on where each body
// starts and ends (headScan says which heads need it). A head that parser
// refuses, or one too large for it, is passed through untouched: fasthttp
// answers it (400, 431) and closes, so nothing after it is read.

// errRequestChunked is the read error of a request body whose chunked
// framing breaks RFC 9112 §7.1 (chunked.go's grammar).
var errRequestChunked = errors.New("proxy: malformed chunked request body")

// What requestFraming expects next.
const (
	rfHead    = iota // a request head
	rfFixed          // left bytes of a Content-Length body
	rfChunked        // a chunked body, through chunk
	rfOff            // nothing more is checked: a WebSocket tunnel, or a head fasthttp refuses
)

// requestFraming follows one client connection's request framing.
type requestFraming struct {
	state   uint8
	maxHead int      // fasthttp's read buffer: no longer head can be served
	head    []byte   // a head arriving in pieces
	hs      headScan // how far head was scanned
	left    int64
	chunk   h1.ChunkDecoder
	err     error // sticky: once refused, every read fails
}

// read reads from r into p and checks what it read. When the bytes refuse
// a chunked body, it returns those up to where that request's body begins
// in p (so fasthttp still reads its head, and answers it), and the error
// from then on.
func (v *requestFraming) read(r io.Reader, p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := r.Read(p)
	if n > 0 && v.state != rfOff {
		if keep, ferr := v.scan(p[:n]); ferr != nil {
			v.err = ferr
			if keep == 0 {
				return 0, ferr
			}
			return keep, nil
		}
	}
	return n, err
}

// scan advances the framing over b. On a malformed chunked body it returns
// the offset in b where that body began (0 if it began in an earlier read).
func (v *requestFraming) scan(b []byte) (int, error) {
	bodyFrom := 0
	for off := 0; off < len(b); {
		switch v.state {
		case rfHead:
			m, done := v.headBytes(b[off:])
			off += m
			if done {
				bodyFrom = off
			}
		case rfFixed:
			m := int(min(v.left, int64(len(b)-off)))
			v.left -= int64(m)
			off += m
			if v.left == 0 {
				v.state = rfHead
			}
		case rfChunked:
			if d := v.chunk.DataLeft(); d > 0 {
				m := int(min(d, int64(len(b)-off)))
				v.chunk.Took(m)
				off += m
				continue
			}
			m, err := v.chunk.Frame(b[off:])
			off += m
			if err != nil {
				return bodyFrom, errRequestChunked
			}
			if v.chunk.Finished() {
				v.state = rfHead
			}
		default: // rfOff
			return 0, nil
		}
	}
	return 0, nil
}

// headBytes takes the bytes of a request head from the front of b and
// returns how many it took, and whether the head is complete (the state is
// then what follows it).
func (v *requestFraming) headBytes(b []byte) (int, bool) {
	took := 0
	if len(v.head) == 0 {
		// fasthttp skips empty lines before a request line (RFC 9112
		// §2.2); they belong to no head.
		for took < len(b) && (b[took] == '\r' || b[took] == '\n') {
			took++
		}
		b = b[took:]
		if len(b) == 0 {
			return took, false
		}
		var hs headScan
		if end := hs.scan(b); end > 0 {
			v.headDone(b[:end], hs.framing)
			return took + end, true
		}
		if len(b) > v.maxHead {
			// fasthttp answers 431 and closes.
			v.state = rfOff
			return took + len(b), false
		}
		// A head in pieces: gather it (a CRLF may straddle two reads),
		// and go on scanning where this scan stopped.
		v.head = append(v.head, b...)
		v.hs = hs
		return took + len(b), false
	}
	old := len(v.head)
	room := min(v.maxHead+1-old, len(b))
	v.head = append(v.head, b[:room]...)
	if end := v.hs.scan(v.head); end > 0 {
		v.headDone(v.head[:end], v.hs.framing)
		// Let the buffer go: most connections never need one again.
		v.head, v.hs = nil, headScan{}
		return end - old, true
	}
	if len(v.head) > v.maxHead {
		v.state, v.head = rfOff, nil
	}
	return room, false
}

// headScan finds the end of a request head (lines split at LF, as fasthttp
// and headEnd split them) and notes whether it may declare a body: a field
// line that starts with Content-Length or Transfer-Encoding in any case,
// or with whitespace (a folded line, whatever fasthttp makes of it).
// fasthttp learns a request's framing from those fields alone, so a head
// without such a line has no body for it either, and need not be parsed
// here: most requests are bodiless GETs, and a full parse costs several
// times this scan. A scan resumes where it stopped, so a head arriving a
// byte at a time costs linear time.
type headScan struct {
	next    int // where the first line not yet scanned starts
	lines   int // lines scanned
	framing bool
}

// scan goes on over b, the head so far (what an earlier scan saw, and
// more), and returns the head's length once its empty line is in b, else
// 0.
func (s *headScan) scan(b []byte) int {
	for {
		i := bytes.IndexByte(b[s.next:], '\n')
		if i < 0 {
			return 0
		}
		line := b[s.next : s.next+i]
		s.next += i + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return s.next
		}
		if s.lines++; s.lines == 1 {
			continue // the request line
		}
		switch line[0] {
		case ' ', '\t':
			s.framing = true
		case 'c', 'C':
			s.framing = s.framing || len(line) >= 14 && h1.EqualFoldASCII(line[:14], "content-length")
		case 't', 'T':
			s.framing = s.framing || len(line) >= 17 && h1.EqualFoldASCII(line[:17], "transfer-encoding")
		}
	}
}

// headDone sets the state for what follows a whole head.
func (v *requestFraming) headDone(head []byte, framing bool) {
	if framing {
		v.parseHead(head)
	} else {
		v.state = rfHead
	}
}

// parseHead reads the framing of a whole head the way fasthttp's server
// will, and sets the state for its body.
func (v *requestFraming) parseHead(head []byte) {
	s := headParsePool.Get().(*headParse)
	defer headParsePool.Put(s)
	s.src.Reset(head)
	if s.br.Size() < len(head) {
		s.br = bufio.NewReaderSize(&s.src, len(head))
	}
	s.br.Reset(&s.src)
	if err := s.hdr.Read(s.br); err != nil || s.src.Len()+s.br.Buffered() != 0 {
		v.state = rfOff
		return
	}
	switch cl := s.hdr.ContentLength(); {
	case cl == -1:
		v.state, v.chunk = rfChunked, h1.ChunkDecoder{}
	case cl > 0:
		v.state, v.left = rfFixed, int64(cl)
	default:
		// 0, or -2: no Content-Length nor Transfer-Encoding, which in a
		// request means no body (RFC 9112 §6.3).
		v.state = rfHead
	}
}

// headParse is scratch space to parse one head; heads are parsed whole,
// so the reader's buffer only has to hold the largest one (it grows to
// proxy.max_header_bytes at most).
type headParse struct {
	hdr fasthttp.RequestHeader
	src bytes.Reader
	br  *bufio.Reader
}

var headParsePool = sync.Pool{New: func() any {
	s := &headParse{}
	s.hdr.DisableNormalizing()
	s.br = bufio.NewReaderSize(nil, 4096)
	return s
}}

// framingConn is a client connection whose reads are checked by
// requestFraming. The embedded TCPConn gives the liveness peek and the
// tunnels' read waiter the socket itself (peek_unix.go, websocket_wait_linux.go):
// the wrapper holds no bytes back, so what the socket has is what comes next.
type framingConn struct {
	*net.TCPConn
	r io.Reader // the TCPConn, or a handed-over prefixConn around it
	v requestFraming
}

func (c *framingConn) Read(p []byte) (int, error) { return c.v.read(c.r, p) }

// framingNetConn is framingConn for a connection other than TCP.
type framingNetConn struct {
	net.Conn
	v requestFraming
}

func (c *framingNetConn) Read(p []byte) (int, error) { return c.v.read(c.Conn, p) }

// stopFraming ends the checks on c once it carries a WebSocket tunnel: its
// bytes are frames, not requests.
func stopFraming(c net.Conn) {
	switch fc := c.(type) {
	case *framingConn:
		fc.v.state = rfOff
	case *framingNetConn:
		fc.v.state = rfOff
	}
}

// framingListener wraps every connection fasthttp accepts, from the
// listener itself or handed over by the event loop, in a framing check.
type framingListener struct {
	net.Listener
	maxHead int
}

func newFramingListener(ln net.Listener, maxHead int) net.Listener {
	return &framingListener{Listener: ln, maxHead: maxHead}
}

func (l *framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrapFraming(c, l.maxHead), nil
}

func wrapFraming(c net.Conn, maxHead int) net.Conn {
	v := requestFraming{maxHead: maxHead}
	switch tc := c.(type) {
	case *net.TCPConn:
		return &framingConn{TCPConn: tc, r: tc, v: v}
	case *loop.PrefixConn:
		return &framingConn{TCPConn: tc.TCPConn, r: tc, v: v}
	}
	return &framingNetConn{Conn: c, v: v}
}
