package proxy

import "fmt"

// chunkDecoder walks a chunked response body (RFC 9112 §7.1) as it
// arrives, in pieces of any size; both request paths use it (responsebody.go
// reading from a bufio.Reader, the event loop from its buffer). It consumes
// the framing — sizes, extensions, CRLFs, trailer fields, which are dropped
// since the body is re-framed for the client — and leaves the chunk data to
// the caller: dataLeft says how much of it comes next, took counts what was
// taken.
//
// It is strict: a proxy that read sizes loosely could disagree with the
// client about where the body ends. A size line must end in CRLF; chunk
// data must be followed by CRLF; extensions and trailers are bounded.
type chunkDecoder struct {
	state  uint8
	size   int64 // chunk size being read
	digits int
	ext    int   // extension bytes on the current size line
	left   int64 // data bytes left in the chunk
	// trailers counts trailer bytes; nonEmpty: the current trailer line
	// has a byte other than CR.
	trailers int
	nonEmpty bool
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

const (
	maxChunkExtension = 4096
	maxTrailerBytes   = 64 << 10
)

var errChunked = fmt.Errorf("%w: malformed chunked body", errBadResponse)

func (d *chunkDecoder) finished() bool { return d.state == cdDone }

// dataLeft is how many data bytes come next (0 while framing is due).
func (d *chunkDecoder) dataLeft() int64 {
	if d.state == cdData {
		return d.left
	}
	return 0
}

// took counts n data bytes (at most dataLeft) taken by the caller.
func (d *chunkDecoder) took(n int) {
	if n == 0 {
		return
	}
	d.left -= int64(n)
	if d.left == 0 {
		d.state = cdDataCR
	}
}

// frame consumes framing bytes from the front of b and returns how many it
// used. It stops where chunk data begins (dataLeft > 0), at the body's end
// (finished), or when b is used up.
func (d *chunkDecoder) frame(b []byte) (int, error) {
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
			switch {
			case c == '\r':
				d.state = cdSizeLF
			case c == '\n':
				return i, fmt.Errorf("%w: chunk size line", errChunked)
			case d.ext == maxChunkExtension:
				return i, fmt.Errorf("%w: chunk extension too long", errChunked)
			default:
				d.ext++ // whitespace, ";name=value" extensions
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
			d.size, d.digits, d.ext = 0, 0, 0
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
			switch c {
			case '\r':
			case '\n':
				if !d.nonEmpty {
					d.state = cdDone
				}
				d.nonEmpty = false
			default:
				d.nonEmpty = true
			}
		}
		i++
	}
	return i, nil
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
