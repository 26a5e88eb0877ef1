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
	errTarget       = errors.New("proxy: absolute-form target without an http(s) host")
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
// An absolute-form target ("GET http://chat.example/api/v1/me HTTP/1.1")
// names the request's host itself, and RFC 9112 §3.2.2 has a proxy
// replace the received Host with it: the target goes upstream as sent, and
// Host (and X-Forwarded-Host, when the proxy sets it) is the target's
// authority. Node — Rocket.Chat's server — takes the authority from the
// absolute URL too, so the upstream and the Host it is told agree, and a
// client cannot show the upstream one host in Host and another in the
// target. A server must accept absolute-form (RFC 9112 §3.2.2), so it is
// not refused; one whose scheme is not http or https, whose authority is
// empty or carries userinfo (RFC 9110 §4.2.4) is refused with errTarget.
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
	authority, absolute := targetAuthority(h.RequestURI())
	if absolute && authority == nil {
		return dst, head, errTarget
	}

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
		// fasthttp tolerates it, a proxy must not.
		if bytes.IndexByte(name, ' ') >= 0 || bytes.IndexByte(name, '\t') >= 0 {
			return dst, head, errFieldName
		}
		value := trimFieldValue(line[c+1:])
		switch classifyField(name) {
		case fieldConnection:
			if err := tokens.add(value); err != nil {
				return dst, head, err
			}
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
		case absolute && k == fieldHost:
			dst = append(dst, "Host: "...)
			dst = append(dst, authority...)
			dst = append(dst, "\r\n"...)
			continue
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

	if absolute {
		host = authority
	}
	if !sawHost {
		// HTTP/1.0 clients may omit Host; HTTP/1.1 requires one upstream
		// (RFC 9112 §3.2), so name the target's authority or, in
		// origin-form, the upstream as nginx does.
		dst = append(dst, "Host: "...)
		if absolute {
			dst = append(dst, authority...)
		} else {
			dst = append(dst, p.fwd.hostHeader...)
		}
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

// targetAuthority reports whether target is in absolute-form (RFC 9112
// §3.2.2: scheme "://" authority, as opposed to origin-form "/path",
// asterisk-form and authority-form) and returns its authority, or nil if
// the scheme is not http or https or the authority is empty, carries
// userinfo or holds a byte no host or port may hold (RFC 3986 §3.2).
func targetAuthority(target []byte) ([]byte, bool) {
	if len(target) == 0 || target[0] == '/' || target[0] == '*' {
		return nil, false
	}
	i := bytes.Index(target, []byte("://"))
	if i < 0 || bytes.IndexByte(target[:i], '/') >= 0 {
		return nil, false
	}
	if !equalFoldASCII(target[:i], "http") && !equalFoldASCII(target[:i], "https") {
		return nil, true
	}
	rest := target[i+3:]
	end := len(rest)
	if j := bytes.IndexAny(rest, "/?#"); j >= 0 {
		end = j
	}
	authority := rest[:end]
	if len(authority) == 0 {
		return nil, true
	}
	for _, c := range authority {
		if !authorityBytes[c] {
			return nil, true
		}
	}
	return authority, true
}

// authorityBytes marks the bytes of host [ ":" port ] (RFC 3986 §3.2.2:
// unreserved, sub-delims, pct-encoded, IP-literal brackets and ":"); "@"
// (userinfo) is left out on purpose.
var authorityBytes = func() (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%" {
		t[c] = true
	}
	return t
}()

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
