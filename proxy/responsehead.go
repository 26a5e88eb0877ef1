package proxy

import (
	"bytes"
	"fmt"
)

// respFraming is how an upstream response body is delimited (RFC 9112
// §6.3) and whether the upstream connection survives it.
type respFraming struct {
	// length is the Content-Length, or -1 without one.
	length int64
	// chunked: Transfer-Encoding: chunked (it wins over Content-Length).
	chunked bool
	// close: the upstream asked to close the connection after this
	// response (Connection: close, or HTTP/1.0 without keep-alive). A body
	// with neither length nor chunking runs to the close as well.
	close bool
}

// filterResponseHead appends to dst the upstream response head in block
// with its hop-by-hop fields removed (docs/forwarding.md, RFC 9110 §7.6.1: the fixed
// list and every field named in Connection), its status line re-issued as
// HTTP/1.1 (the client is spoken to in HTTP/1.1 whatever the upstream
// speaks) and every line ended by CRLF. The other fields keep their bytes
// and order. It returns the status code and the body's framing.
//
// The result is parsed by fasthttp (ResponseHeader.Read) into the client
// response; parsing a filtered block rather than deleting fields afterwards
// keeps the order, since fasthttp deletes a field by moving the last one
// into its place, and keeps the upstream's Date, which fasthttp's Set/Add
// would drop.
func filterResponseHead(dst, block []byte) ([]byte, int, respFraming, error) {
	fr := respFraming{length: -1}
	line, rest := nextHeadLine(block)
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return dst, 0, fr, fmt.Errorf("%w: status line %q", errBadResponse, truncate(line))
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return dst, 0, fr, fmt.Errorf("%w: status line %q", errBadResponse, truncate(line))
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || (len(line) > 12 && line[12] != ' ') {
		return dst, 0, fr, fmt.Errorf("%w: status line %q", errBadResponse, truncate(line))
	}
	if line[7] == '0' {
		// An HTTP/1.0 upstream closes after each response unless it
		// said keep-alive (RFC 9112 §9.3); checked below.
		fr.close = true
	}
	http10 := fr.close
	dst = append(dst, "HTTP/1.1 "...)
	dst = append(dst, line[9:]...)
	dst = append(dst, '\r', '\n')

	var tokens connTokens
	sawCL, sawTE := false, false
	for r := rest; len(r) > 0; {
		l, next := nextHeadLine(r)
		r = next
		if len(l) == 0 {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			return dst, 0, fr, fmt.Errorf("%w: obsolete line folding", errBadResponse)
		}
		c := bytes.IndexByte(l, ':')
		if c <= 0 {
			return dst, 0, fr, fmt.Errorf("%w: header line %q", errBadResponse, truncate(l))
		}
		name, value := l[:c], trimFieldValue(l[c+1:])
		switch classifyField(name) {
		case fieldConnection:
			tokens.add(value)
		case fieldContentLength:
			n := parseDecimal(value)
			if n < 0 || len(value) == 0 || (sawCL && n != fr.length) {
				return dst, 0, fr, fmt.Errorf("%w: Content-Length %q", errBadResponse, truncate(value))
			}
			sawCL, fr.length = true, n
		case fieldTransferEncoding:
			// Only "chunked" is understood; a coding the proxy would
			// have to strip (gzip, chunked) cannot be relayed.
			if sawTE || !equalFoldASCII(value, "chunked") {
				return dst, 0, fr, fmt.Errorf("%w: Transfer-Encoding %q", errBadResponse, truncate(value))
			}
			sawTE = true
		}
	}
	if tokens.has("close") {
		fr.close = true
	}
	if http10 && tokens.has("keep-alive") {
		fr.close = false
	}
	if sawTE {
		// RFC 9112 §6.3: chunked wins over Content-Length, and such a
		// message must not be reused for a next one.
		if sawCL {
			fr.close = true
		}
		fr.chunked, fr.length = true, -1
	}

	// Second pass: copy the end-to-end fields.
	for r := rest; len(r) > 0; {
		l, next := nextHeadLine(r)
		r = next
		if len(l) == 0 {
			break
		}
		c := bytes.IndexByte(l, ':')
		name := l[:c]
		k := classifyField(name)
		if k.hopByHop() || (tokens.n > 0 && k != fieldContentLength && tokens.names(name)) {
			continue
		}
		if k == fieldContentLength && sawTE {
			continue
		}
		dst = append(dst, l...)
		dst = append(dst, '\r', '\n')
	}
	dst = append(dst, '\r', '\n')
	return dst, code, fr, nil
}

// nextHeadLine splits the first line (without its CRLF or LF) off b.
func nextHeadLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// truncate keeps error messages short; upstream heads are not secret but
// may be long.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
