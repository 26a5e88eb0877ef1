package h1

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
	ErrBareLF       = errors.New("h1: header line not ended by CRLF")
	ErrObsFold      = errors.New("h1: obsolete line folding")
	ErrFieldName    = errors.New("h1: malformed header field name")
	ErrCLAndTE      = errors.New("h1: both Content-Length and Transfer-Encoding")
	ErrTransferCode = errors.New("h1: transfer coding other than chunked")
	ErrTarget       = errors.New("h1: absolute-form target without an http(s) host")
)

// RequestHead is what AppendRequestHead learned about a request's framing.
type RequestHead struct {
	// Chunked: the body arrives with Transfer-Encoding: chunked and goes
	// upstream re-chunked by the forwarder.
	Chunked bool
	// ContentLength is the declared body length, or -1 without one.
	ContentLength int64
	// ExpectContinue: the client sent "Expect: 100-continue" (dropped
	// from the upstream head).
	ExpectContinue bool
}

// HasBody reports whether a body follows the head.
func (r RequestHead) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// RequestOptions is what AppendRequestHead needs to know of the connection
// a request came on and of the upstream it goes to.
type RequestOptions struct {
	// Peer is the connecting client's address.
	Peer netip.Addr
	// Trusted: Peer is a trusted proxy (proxy.trusted_proxies), whose
	// X-Real-IP and X-Forwarded-For are passed on as they are.
	Trusted bool
	// TLS: the client connection is TLS (X-Forwarded-Proto: https).
	TLS bool
	// Upgrade: a WebSocket handshake; Upgrade is kept.
	Upgrade bool
	// DefaultHost names the upstream in a request that came without Host.
	DefaultHost []byte
}

// AppendRequestHead appends the request line and header block to send
// upstream for the request whose parsed head is h and returns it with the
// request's framing.
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
// With o.Upgrade (a WebSocket handshake) Upgrade is kept and a single
// "Connection: Upgrade" is sent.
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
// empty or carries userinfo (RFC 9110 §4.2.4) is refused with ErrTarget.
//
// A head that could be framed two ways is refused with one of the errors
// above (request smuggling, RFC 9112 §6.1 and §6.3); nothing is written to
// dst then worth sending.
//
// It takes fasthttp's parsed RequestHeader rather than bytes because both
// request paths already parse the head with it (the event loop too, into a
// header of its own): parsing again here would cost a second pass.
func AppendRequestHead(dst []byte, h *fasthttp.RequestHeader, o RequestOptions) ([]byte, RequestHead, error) {
	upgrade, peer := o.Upgrade, o.Peer
	raw := h.RawHeaders()
	head := RequestHead{ContentLength: -1}
	authority, absolute := targetAuthority(h.RequestURI())
	if absolute && authority == nil {
		return dst, head, ErrTarget
	}

	// Pass 1: validate every line and learn what pass 2 needs (Connection
	// tokens must be known before the fields they name are copied).
	var tokens ConnTokens
	var sawTE, sawXFF, sawXFP, sawXFH, sawHost bool
	var host []byte
	for rest := raw; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 1 || rest[i-1] != '\r' {
			return dst, head, ErrBareLF
		}
		line := rest[:i-1]
		rest = rest[i+1:]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return dst, head, ErrObsFold
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			return dst, head, ErrFieldName
		}
		name := line[:c]
		// RFC 9112 §5.1: no whitespace between field name and colon;
		// fasthttp tolerates it, a proxy must not.
		if bytes.IndexByte(name, ' ') >= 0 || bytes.IndexByte(name, '\t') >= 0 {
			return dst, head, ErrFieldName
		}
		value := TrimFieldValue(line[c+1:])
		switch ClassifyField(name) {
		case FieldConnection:
			if err := tokens.Add(value); err != nil {
				return dst, head, err
			}
		case FieldTransferEncoding:
			// fasthttp allows one Transfer-Encoding of "chunked" or
			// "identity"; only chunked frames a body (RFC 9112 §6.1).
			if !EqualFoldASCII(value, "chunked") {
				return dst, head, ErrTransferCode
			}
			sawTE = true
		case FieldContentLength:
			// fasthttp has rejected a second one and a malformed value.
			head.ContentLength = parseDecimal(value)
		case FieldHost:
			sawHost, host = true, value
		case FieldXForwardedFor:
			sawXFF = true
		case FieldXForwardedProto:
			sawXFP = true
		case FieldXForwardedHost:
			sawXFH = true
		}
	}
	if sawTE {
		if head.ContentLength >= 0 {
			return dst, head, ErrCLAndTE
		}
		head.Chunked = true
	}

	trusted := o.Trusted

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
		switch k := ClassifyField(name); {
		case absolute && k == FieldHost:
			dst = append(dst, "Host: "...)
			dst = append(dst, authority...)
			dst = append(dst, "\r\n"...)
			continue
		case upgrade && k == FieldUpgrade:
		case k.HopByHop():
			continue
		case k == FieldXRealIP && !trusted:
			continue
		case k == FieldXForwardedFor && !trusted:
			continue // combined with the peer's address below
		case k == FieldExpect && EqualFoldASCII(TrimFieldValue(line[c+1:len(line)-2]), "100-continue"):
			head.ExpectContinue = true
			continue
		}
		if tokens.n > 0 && tokens.Names(name) {
			// A field named in Connection is hop-by-hop too, except the
			// framing and Host: dropping Content-Length while its body
			// still follows would desynchronize the upstream connection.
			switch ClassifyField(name) {
			case FieldContentLength, FieldHost:
			case FieldUpgrade:
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
			dst = append(dst, o.DefaultHost...)
		}
		dst = append(dst, "\r\n"...)
	}
	if head.Chunked {
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
		if o.TLS {
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
	if !EqualFoldASCII(target[:i], "http") && !EqualFoldASCII(target[:i], "https") {
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

// parseDecimal parses a decimal Content-Length value: -1 for any byte
// other than a digit.
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

// appendClientAddr appends X-Real-IP and X-Forwarded-For for an untrusted
// peer (docs/forwarding.md: Rocket.Chat trusts X-Real-IP blindly for rate
// limits and session.ip, so a client's own value is replaced). raw, when
// not nil, is the client's header block: its X-Forwarded-For values are
// kept, in order and combined into one field (RFC 9110 §5.3), before the
// peer's address.
func appendClientAddr(dst []byte, peer netip.Addr, raw []byte) []byte {
	dst = append(dst, "X-Real-IP: "...)
	dst = peer.AppendTo(dst)
	dst = append(dst, "\r\nX-Forwarded-For: "...)
	if raw != nil {
		ForEachField(raw, func(name, value []byte) {
			if len(value) > 0 && ClassifyField(name) == FieldXForwardedFor {
				dst = append(dst, value...)
				dst = append(dst, ", "...)
			}
		})
	}
	dst = peer.AppendTo(dst)
	return append(dst, "\r\n"...)
}
