package proxy

import (
	"bytes"
	"errors"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// Errors of a request head that cannot be forwarded unambiguously; each is
// answered with 400 and the client connection is closed (RFC 9112 §11.2:
// a message an intermediary might frame differently than the next hop must
// not be forwarded). fasthttp itself rejects duplicate Content-Length,
// unknown transfer codings, bare CR and control bytes; these are the cases
// it tolerates.
var (
	errBareLF       = errors.New("proxy: header line not ended by CRLF")
	errObsFold      = errors.New("proxy: obsolete line folding")
	errFieldName    = errors.New("proxy: malformed header field name")
	errCLAndTE      = errors.New("proxy: both Content-Length and Transfer-Encoding")
	errTransferCode = errors.New("proxy: transfer coding other than chunked")
)

// requestHead is what appendRequestHead learned about a request's framing.
type requestHead struct {
	// chunked: the body arrives with Transfer-Encoding: chunked and goes
	// upstream re-chunked by the forwarder.
	chunked bool
	// contentLength is the declared body length, or -1 without one.
	contentLength int64
	// expectContinue: the client sent "Expect: 100-continue" (dropped
	// from the upstream head).
	expectContinue bool
}

// hasBody reports whether a body follows the head.
func (r requestHead) hasBody() bool { return r.chunked || r.contentLength > 0 }

// appendRequestHead appends the request line and header block to send
// upstream for ctx's request and returns it with the request's framing.
//
// The block is the client's own (RequestHeader.RawHeaders: names in their
// case, repeated fields in their order, Cookie and Authorization as sent),
// minus hop-by-hop fields (docs/forwarding.md, RFC 9110 §7.6.1) including those named
// in Connection, minus a client's X-Real-IP and X-Forwarded-For unless the
// peer is trusted, and minus "Expect: 100-continue" (fasthttp has already
// answered 100 Continue to the client, so the body is coming either way).
// The client-address fields are appended after that filtering, so a
// "Connection: X-Real-IP" cannot strip the value the proxy sets. The request
// line is rebuilt as "METHOD target HTTP/1.1" with the target byte for byte.
//
// With upgrade (a WebSocket handshake, for websocket.go) Upgrade is kept and
// a single "Connection: Upgrade" is sent.
//
// A head that could be framed two ways is refused with one of the errors
// above (request smuggling, RFC 9112 §6.1 and §6.3); nothing is written to
// dst then worth sending.
func (p *Proxy) appendRequestHead(dst []byte, ctx *fasthttp.RequestCtx, upgrade bool) ([]byte, requestHead, error) {
	return p.appendHead(dst, &ctx.Request.Header, remoteAddr(ctx), ctx.IsTLS(), upgrade)
}

// appendHead is appendRequestHead for a parsed header h from peer, over TLS
// or not; the event loop (eventloop_linux.go) parses heads without a
// RequestCtx.
func (p *Proxy) appendHead(dst []byte, h *fasthttp.RequestHeader, peer netip.Addr, isTLS, upgrade bool) ([]byte, requestHead, error) {
	raw := h.RawHeaders()
	head := requestHead{contentLength: -1}

	// Pass 1: validate every line and learn what pass 2 needs (Connection
	// tokens must be known before the fields they name are copied).
	var tokens connTokens
	var sawTE, sawXFF, sawXFP, sawXFH, sawHost bool
	var host []byte
	for rest := raw; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 1 || rest[i-1] != '\r' {
			return dst, head, errBareLF
		}
		line := rest[:i-1]
		rest = rest[i+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return dst, head, errObsFold
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			return dst, head, errFieldName
		}
		name := line[:c]
		// RFC 9112 §5.1: no whitespace between field name and colon;
		// fasthttp tolerates it (its issue #1917), a proxy must not.
		if bytes.IndexByte(name, ' ') >= 0 || bytes.IndexByte(name, '\t') >= 0 {
			return dst, head, errFieldName
		}
		value := trimFieldValue(line[c+1:])
		switch classifyField(name) {
		case fieldConnection:
			tokens.add(value)
		case fieldTransferEncoding:
			// fasthttp allows one Transfer-Encoding of "chunked" or
			// "identity"; only chunked frames a body (RFC 9112 §6.1).
			if !equalFoldASCII(value, "chunked") {
				return dst, head, errTransferCode
			}
			sawTE = true
		case fieldContentLength:
			// fasthttp has rejected a second one and a malformed value.
			head.contentLength = parseDecimal(value)
		case fieldHost:
			sawHost, host = true, value
		case fieldXForwardedFor:
			sawXFF = true
		case fieldXForwardedProto:
			sawXFP = true
		case fieldXForwardedHost:
			sawXFH = true
		}
	}
	if sawTE {
		if head.contentLength >= 0 {
			return dst, head, errCLAndTE
		}
		head.chunked = true
	}

	trusted := p.isTrusted(peer)

	dst = append(dst, h.Method()...)
	dst = append(dst, ' ')
	dst = append(dst, h.RequestURI()...)
	dst = append(dst, " HTTP/1.1\r\n"...)

	// Pass 2: copy what survives, line by line, as received.
	for rest := raw; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i+1]
		rest = rest[i+1:]
		if len(line) == 2 {
			break
		}
		c := bytes.IndexByte(line, ':')
		name := line[:c]
		switch k := classifyField(name); {
		case upgrade && k == fieldUpgrade:
		case k.hopByHop():
			continue
		case k == fieldXRealIP && !trusted:
			continue
		case k == fieldXForwardedFor && !trusted:
			continue // combined with the peer's address below
		case k == fieldExpect && equalFoldASCII(trimFieldValue(line[c+1:len(line)-2]), "100-continue"):
			head.expectContinue = true
			continue
		}
		if tokens.n > 0 && tokens.names(name) {
			// A field named in Connection is hop-by-hop too, except the
			// framing and Host: dropping Content-Length while its body
			// still follows would desynchronize the upstream connection.
			switch classifyField(name) {
			case fieldContentLength, fieldHost:
			case fieldUpgrade:
				if !upgrade {
					continue
				}
			default:
				continue
			}
		}
		dst = append(dst, line...)
	}

	if !sawHost {
		// HTTP/1.0 clients may omit Host; HTTP/1.1 requires one upstream
		// (RFC 9112 §3.2), so name the upstream as nginx does.
		dst = append(dst, "Host: "...)
		dst = append(dst, p.fwd.hostHeader...)
		dst = append(dst, "\r\n"...)
	}
	if head.chunked {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	if !trusted {
		var prior []byte
		if sawXFF {
			prior = raw
		}
		dst = appendClientAddr(dst, peer, prior)
	}
	if !sawXFP {
		if isTLS {
			dst = append(dst, "X-Forwarded-Proto: https\r\n"...)
		} else {
			dst = append(dst, "X-Forwarded-Proto: http\r\n"...)
		}
	}
	if !sawXFH && len(host) > 0 {
		dst = append(dst, "X-Forwarded-Host: "...)
		dst = append(dst, host...)
		dst = append(dst, "\r\n"...)
	}
	if upgrade {
		dst = append(dst, "Connection: Upgrade\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return dst, head, nil
}

// parseDecimal parses a Content-Length fasthttp has already validated.
func parseDecimal(b []byte) int64 {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// remoteAddr is the connecting peer's address, without allocating.
func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}
