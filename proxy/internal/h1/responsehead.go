package h1

import (
	"bytes"
	"errors"
	"fmt"
)

// Framing is how an upstream response body is delimited (RFC 9112
// §6.3) and whether the upstream connection survives it.
type Framing struct {
	// Length is the Content-Length, or -1 without one.
	Length int64
	// Chunked: Transfer-Encoding: chunked (it wins over Content-Length).
	Chunked bool
	// Close: the upstream asked to close the connection after this
	// response (Connection: close, or HTTP/1.0 without keep-alive). A body
	// with neither length nor chunking runs to the close as well.
	Close bool
}

// MaxResponseHeadBytes bounds an upstream response head, as received and
// as re-issued (bare-LF lines grow by their CR), like Node's own 16 KiB
// default: both request paths read upstream heads through a buffer this
// large, so both refuse the same heads.
const MaxResponseHeadBytes = 16 << 10

// Errors of an upstream response that cannot be relayed: answered 502.
var (
	ErrHeadTooLarge = errors.New("h1: upstream response head too large")
	ErrBadResponse  = errors.New("h1: malformed upstream response")
)

// FilterResponseHead validates the upstream response head in block and
// appends it to dst with its hop-by-hop fields removed (docs/forwarding.md, RFC 9110
// §7.6.1: the fixed list and every field named in Connection), its status
// line re-issued as HTTP/1.1 (the client is spoken to in HTTP/1.1 whatever
// the upstream speaks) and every line ended by CRLF. The other fields keep
// their bytes and order. It returns the status code and the body's framing.
//
// It is the one check of upstream heads for both request paths: a head
// that breaks RFC 9112 — a malformed status line, a field name that is not
// a token (whitespace before the colon, RFC 9112 §5.1), a control byte or
// bare CR in a line, obsolete line folding, Content-Length twice or beside
// Transfer-Encoding (§6.3: a smuggling sign), a coding other than chunked,
// more than MaxResponseHeadBytes — returns an error wrapping
// ErrBadResponse or ErrHeadTooLarge, answered 502, and nothing is relayed.
// Lines may end in a bare LF (RFC 9112 §2.2 lets a recipient accept it);
// they leave as CRLF.
//
// The result is parsed by fasthttp (ResponseHeader.Read) into the client
// response; parsing a filtered block rather than deleting fields afterwards
// keeps the order, since fasthttp deletes a field by moving the last one
// into its place, and keeps the upstream's Date, which fasthttp's Set/Add
// would drop.
func FilterResponseHead(dst, block []byte) ([]byte, int, Framing, error) {
	fr := Framing{Length: -1}
	if len(block) > MaxResponseHeadBytes {
		return dst, 0, fr, ErrHeadTooLarge
	}
	start := len(dst)
	line, rest := NextLine(block)
	code, ok := ParseStatusLine(line)
	if !ok {
		return dst, 0, fr, fmt.Errorf("%w: status line %q", ErrBadResponse, truncate(line))
	}
	if line[7] == '0' {
		// An HTTP/1.0 upstream closes after each response unless it
		// said keep-alive (RFC 9112 §9.3); checked below.
		fr.Close = true
	}
	http10 := fr.Close
	dst = append(dst, "HTTP/1.1 "...)
	dst = append(dst, line[9:]...)
	dst = append(dst, '\r', '\n')

	var tokens ConnTokens
	sawCL, sawTE := false, false
	for r := rest; len(r) > 0; {
		l, next := NextLine(r)
		r = next
		if len(l) == 0 {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			return dst, 0, fr, fmt.Errorf("%w: obsolete line folding", ErrBadResponse)
		}
		c := bytes.IndexByte(l, ':')
		if c <= 0 || !IsToken(l[:c]) || !IsFieldValue(l[c+1:]) {
			return dst, 0, fr, fmt.Errorf("%w: header line %q", ErrBadResponse, truncate(l))
		}
		name, value := l[:c], TrimFieldValue(l[c+1:])
		switch ClassifyField(name) {
		case FieldConnection:
			if err := tokens.Add(value); err != nil {
				return dst, 0, fr, fmt.Errorf("%w: %w", ErrBadResponse, err)
			}
		case FieldContentLength:
			n := parseDecimal(value)
			if n < 0 || len(value) == 0 || sawCL {
				return dst, 0, fr, fmt.Errorf("%w: Content-Length %q", ErrBadResponse, truncate(value))
			}
			sawCL, fr.Length = true, n
		case FieldTransferEncoding:
			// Only "chunked" is understood; a coding the proxy would
			// have to strip (gzip, chunked) cannot be relayed.
			if sawTE || !EqualFoldASCII(value, "chunked") {
				return dst, 0, fr, fmt.Errorf("%w: Transfer-Encoding %q", ErrBadResponse, truncate(value))
			}
			sawTE = true
		}
	}
	if sawCL && sawTE {
		// RFC 9112 §6.3: "ought to be handled as an error"; relaying it
		// would trust the upstream to frame the body as this proxy does.
		return dst, 0, fr, fmt.Errorf("%w: both Content-Length and Transfer-Encoding", ErrBadResponse)
	}
	if tokens.Has("close") {
		fr.Close = true
	}
	if http10 && tokens.Has("keep-alive") {
		fr.Close = false
	}
	if sawTE {
		fr.Chunked = true
	}

	// Second pass: copy the end-to-end fields.
	for r := rest; len(r) > 0; {
		l, next := NextLine(r)
		r = next
		if len(l) == 0 {
			break
		}
		c := bytes.IndexByte(l, ':')
		name := l[:c]
		k := ClassifyField(name)
		if k.HopByHop() || (tokens.n > 0 && k != FieldContentLength && tokens.Names(name)) {
			continue
		}
		dst = append(dst, l...)
		dst = append(dst, '\r', '\n')
	}
	dst = append(dst, '\r', '\n')
	if len(dst)-start > MaxResponseHeadBytes {
		return dst, 0, fr, ErrHeadTooLarge
	}
	return dst, code, fr, nil
}

// ParseStatusLine parses status-line = HTTP-version SP
// status-code SP [ reason-phrase ] (RFC 9112 §4) for HTTP/1.x and returns
// the status code. The reason phrase may hold HTAB, SP, VCHAR and obs-text
// only.
func ParseStatusLine(line []byte) (int, bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) ||
		line[7] < '0' || line[7] > '9' || line[8] != ' ' {
		return 0, false
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || (len(line) > 12 && (line[12] != ' ' || !IsFieldValue(line[13:]))) {
		return 0, false
	}
	return code, true
}

// IsToken reports whether b is a non-empty token (RFC 9110 §5.6.2).
func IsToken(b []byte) bool {
	for _, c := range b {
		if !IsTokenByte(c) {
			return false
		}
	}
	return len(b) > 0
}

// IsFieldValue reports whether b holds only field-value bytes (RFC 9110
// §5.5): HTAB, SP, VCHAR and obs-text; no NUL, CR, LF or other control.
func IsFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// truncate keeps error messages short; upstream heads are not secret but
// may be long.
func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
