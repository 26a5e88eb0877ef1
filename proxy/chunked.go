package proxy

import "errors"

// chunkDecoder walks a chunked body (RFC 9112 §7.1) as it arrives, in
// pieces of any size, for the event loop: it consumes the framing (sizes,
// extensions, CRLFs, trailer fields, which are dropped as on the fasthttp
// path) and hands out the chunk data.
type chunkDecoder struct {
	state  uint8
	size   int64 // chunk size being read
	digits int
	left   int64 // data bytes left in the chunk
}

const (
	cdSize         = iota // hex digits of a chunk size
	cdExt                 // after the size: extensions up to LF
	cdData                // chunk data
	cdDataCR              // CR after the data
	cdDataLF              // LF after the data
	cdTrailerStart        // start of a trailer line, or the final empty line
	cdTrailer             // inside a trailer line
	cdTrailerLF           // LF of the final empty line
	cdDone                // the body ended
)

var errChunked = errors.New("proxy: malformed chunked body")

func (d *chunkDecoder) finished() bool { return d.state == cdDone }

// next consumes b from the front and returns how many bytes it used and,
// when it reached chunk data, that data (the end of the used bytes). It
// stops after data so the caller can pass it on, and at the body's end.
func (d *chunkDecoder) next(b []byte) (int, []byte, error) {
	i := 0
	for i < len(b) {
		ch := b[i]
		switch d.state {
		case cdSize:
			if v := unhex(ch); v >= 0 {
				if d.digits == 15 {
					return i, nil, errChunked // over 2^60 bytes
				}
				d.size = d.size<<4 | int64(v)
				d.digits++
				i++
				continue
			}
			if d.digits == 0 {
				return i, nil, errChunked
			}
			d.state = cdExt
		case cdExt:
			i++
			if ch != '\n' {
				continue // CR, whitespace, ";name=value" extensions
			}
			if d.size == 0 {
				d.state = cdTrailerStart
			} else {
				d.left, d.state = d.size, cdData
			}
			d.size, d.digits = 0, 0
		case cdData:
			n := int(min(int64(len(b)-i), d.left))
			d.left -= int64(n)
			if d.left == 0 {
				d.state = cdDataCR
			}
			return i + n, b[i : i+n], nil
		case cdDataCR:
			if ch != '\r' {
				return i, nil, errChunked
			}
			i++
			d.state = cdDataLF
		case cdDataLF:
			if ch != '\n' {
				return i, nil, errChunked
			}
			i++
			d.state = cdSize
		case cdTrailerStart:
			i++
			switch ch {
			case '\n':
				d.state = cdDone
				return i, nil, nil
			case '\r':
				d.state = cdTrailerLF
			default:
				d.state = cdTrailer
			}
		case cdTrailerLF:
			if ch != '\n' {
				return i, nil, errChunked
			}
			d.state = cdDone
			return i + 1, nil, nil
		case cdTrailer:
			i++
			if ch == '\n' {
				d.state = cdTrailerStart
			}
		case cdDone:
			return i, nil, nil
		}
	}
	return i, nil, nil
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
