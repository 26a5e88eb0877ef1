package h1

import (
	"fmt"
	"strconv"
)

// ChunkDecoder walks a chunked body (RFC 9112 §7.1) as it arrives, in
// pieces of any size; both request paths use it for responses (the fasthttp
// path reading from a bufio.Reader, the event loop from its buffer) and for
// requests (proxy/reqframing.go, ahead of fasthttp). It consumes
// the framing — sizes, extensions, CRLFs, trailer fields, which are dropped
// since the body is re-framed for the client — and leaves the chunk data to
// the caller: DataLeft says how much of it comes next, Took counts what was
// taken.
//
// It is strict: a proxy that read sizes loosely could disagree with the
// client about where the body ends. A size line must end in CRLF; chunk
// data must be followed by CRLF; extensions must follow the chunk-ext
// grammar (RFC 9112 §7.1.1), so a quoted-string that runs over the line end
// — which a lenient peer reads as data — is an error; trailer lines must be
// field lines ended by CRLF (no bare LF or CR, no obsolete folding, no
// control bytes), as in a head; extensions and trailers are bounded.
type ChunkDecoder struct {
	state    uint8
	extState uint8 // where in the chunk-ext grammar cdExt is
	size     int64 // chunk size being read
	digits   int
	ext      int   // extension bytes on the current size line
	left     int64 // data bytes left in the chunk
	trailers int   // trailer bytes so far
	trState  uint8 // where in a trailer line cdTrailer is
}

const (
	cdSize    = iota // hex digits of a chunk size
	cdExt            // after the size: extensions up to CR
	cdSizeLF         // LF of the size line
	cdData           // chunk data, taken by the caller
	cdDataCR         // CR after the data
	cdDataLF         // LF after the data
	cdTrailer        // trailer fields up to an empty line
	cdDone           // the body ended
)

// States of the chunk-ext grammar (RFC 9112 §7.1.1, RFC 9110 §5.6):
//
//	chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//	chunk-ext-val = token / quoted-string
//
// Whitespace is also allowed before the CRLF, as net/http and fasthttp
// accept it, but not before a ";" (fasthttp refuses that in requests, so
// both directions read size lines alike).
const (
	extNext       = iota // after the size or a whole extension: ";", SP or CR
	extTrailingWS        // whitespace before the CR: only more of it
	extNameStart         // after ";": BWS or the name's first byte
	extName              // in the name
	extAfterName         // BWS after the name: "=", ";" or CR
	extValueStart        // after "=": BWS, a token or a quoted-string
	extToken             // in a token value
	extQuoted            // in a quoted-string
	extQuotedPair        // after a backslash in a quoted-string
)

const (
	maxChunkExtension = 4096
	maxTrailerBytes   = 64 << 10
)

var errChunked = fmt.Errorf("%w: malformed chunked body", ErrBadResponse)

func (d *ChunkDecoder) Finished() bool { return d.state == cdDone }

// DataLeft is how many data bytes come next (0 while framing is due).
func (d *ChunkDecoder) DataLeft() int64 {
	if d.state == cdData {
		return d.left
	}
	return 0
}

// Took counts n data bytes (at most DataLeft) taken by the caller.
func (d *ChunkDecoder) Took(n int) {
	if n == 0 {
		return
	}
	d.left -= int64(n)
	if d.left == 0 {
		d.state = cdDataCR
	}
}

// Frame consumes framing bytes from the front of b and returns how many it
// used. It stops where chunk data begins (DataLeft > 0), at the body's end
// (Finished), or when b is used up.
func (d *ChunkDecoder) Frame(b []byte) (int, error) {
	i := 0
	for i < len(b) && d.state != cdData && d.state != cdDone {
		c := b[i]
		switch d.state {
		case cdSize:
			if v := unhex(c); v >= 0 {
				if d.digits == 15 {
					return i, fmt.Errorf("%w: chunk size too large", errChunked)
				}
				d.size = d.size<<4 | int64(v)
				d.digits++
				i++
				continue
			}
			if d.digits == 0 {
				return i, fmt.Errorf("%w: chunk size", errChunked)
			}
			d.state = cdExt
			continue
		case cdExt:
			if c == '\r' && d.extState != extQuoted && d.extState != extQuotedPair {
				if d.extState == extNameStart || d.extState == extValueStart {
					return i, fmt.Errorf("%w: chunk extension", errChunked)
				}
				d.state = cdSizeLF
				break
			}
			if d.ext == maxChunkExtension {
				return i, fmt.Errorf("%w: chunk extension too long", errChunked)
			}
			d.ext++
			if !d.extByte(c) {
				return i, fmt.Errorf("%w: chunk extension", errChunked)
			}
		case cdSizeLF:
			if c != '\n' {
				return i, fmt.Errorf("%w: chunk size line", errChunked)
			}
			if d.size == 0 {
				d.state = cdTrailer
			} else {
				d.left, d.state = d.size, cdData
			}
			d.size, d.digits, d.ext, d.extState = 0, 0, 0, extNext
		case cdDataCR:
			if c != '\r' {
				return i, fmt.Errorf("%w: chunk not ended by CRLF", errChunked)
			}
			d.state = cdDataLF
		case cdDataLF:
			if c != '\n' {
				return i, fmt.Errorf("%w: chunk not ended by CRLF", errChunked)
			}
			d.state = cdSize
		case cdTrailer:
			if d.trailers == maxTrailerBytes {
				return i, fmt.Errorf("%w: trailers too long", errChunked)
			}
			d.trailers++
			if !d.trailerByte(c) {
				return i, fmt.Errorf("%w: trailer field", errChunked)
			}
		}
		i++
	}
	return i, nil
}

// extByte advances the chunk-ext grammar by c, a byte of the size line
// other than the CR that ends it; false if c cannot come here.
func (d *ChunkDecoder) extByte(c byte) bool {
	ws := c == ' ' || c == '\t'
	switch d.extState {
	case extNext, extTrailingWS:
		switch {
		case ws:
			d.extState = extTrailingWS
		case c == ';' && d.extState == extNext:
			d.extState = extNameStart
		default:
			return false
		}
	case extNameStart:
		switch {
		case ws:
		case IsTokenByte(c):
			d.extState = extName
		default:
			return false
		}
	case extName, extAfterName:
		switch {
		case IsTokenByte(c) && d.extState == extName:
		case ws:
			d.extState = extAfterName
		case c == '=':
			d.extState = extValueStart
		case c == ';' && d.extState == extName:
			d.extState = extNameStart
		default:
			return false
		}
	case extValueStart:
		switch {
		case ws:
		case c == '"':
			d.extState = extQuoted
		case IsTokenByte(c):
			d.extState = extToken
		default:
			return false
		}
	case extToken:
		switch {
		case IsTokenByte(c):
		case ws:
			d.extState = extTrailingWS
		case c == ';':
			d.extState = extNameStart
		default:
			return false
		}
	case extQuoted:
		switch {
		case c == '"':
			d.extState = extNext
		case c == '\\':
			d.extState = extQuotedPair
		case c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f):
			// qdtext: HTAB, SP, VCHAR other than DQUOTE and
			// backslash, obs-text (RFC 9110 §5.6.4).
		default:
			return false
		}
	case extQuotedPair:
		// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
		if c != '\t' && c != ' ' && (c < 0x21 || c == 0x7f) {
			return false
		}
		d.extState = extQuoted
	}
	return true
}

// States of a trailer line (RFC 9112 §7.1.2, §5):
//
//	trailer-section = *( field-line CRLF )
//	field-line = field-name ":" OWS field-value OWS
const (
	trLineStart = iota // a field name, or the CR of the empty line
	trName             // in the name
	trValue            // after the colon, up to CR
	trLF               // LF ending a field line
	trLastLF           // LF ending the body
)

// trailerByte advances the trailer grammar by c; false if c cannot come
// here.
func (d *ChunkDecoder) trailerByte(c byte) bool {
	switch d.trState {
	case trLineStart:
		switch {
		case c == '\r':
			d.trState = trLastLF
		case IsTokenByte(c):
			d.trState = trName
		default:
			return false
		}
	case trName:
		switch {
		case c == ':':
			d.trState = trValue
		case !IsTokenByte(c):
			return false
		}
	case trValue:
		switch {
		case c == '\r':
			d.trState = trLF
		case c != '\t' && c != ' ' && (c < 0x21 || c == 0x7f):
			return false
		}
	case trLF:
		if c != '\n' {
			return false
		}
		d.trState = trLineStart
	case trLastLF:
		if c != '\n' {
			return false
		}
		d.state = cdDone
	}
	return true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// AppendChunkSize appends a chunk-size line: hex length and CRLF.
func AppendChunkSize(dst []byte, n int) []byte {
	dst = strconv.AppendInt(dst, int64(n), 16)
	return append(dst, '\r', '\n')
}
