// Package h1 is sessiongate's HTTP/1.1 codec, shared by both request paths
// (the fasthttp server and the event loop): building and validating the
// request head sent upstream, validating and filtering the upstream's
// response head, hop-by-hop and Connection tokens, chunked-body decoding.
// It holds no connection and no proxy state: what a caller must tell it
// comes in options, and what it learns of a message's framing comes back
// as values for the exchange rules to act on.
package h1

import "bytes"

// The one line splitter of the codec: heads from either side, and the
// header blocks fasthttp hands over, are walked with NextLine, and the end
// of a head is found with HeadEnd, which agrees with it on what a line is.

// NextLine splits the first line (without its CRLF or LF) off b.
func NextLine(b []byte) (line, rest []byte) {
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

// HeadEnd returns the length of the head at the start of b (up to and
// including its empty line), or 0 if b does not hold a whole head yet.
// Lines may end in CRLF or a bare LF, as NextLine reads them.
func HeadEnd(b []byte) int {
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return 0
		}
		line := b[off : off+i]
		off += i + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return off
		}
	}
}

// HasToken reports whether the comma-separated list v holds token,
// case-insensitively (RFC 9110 §5.6.1, §7.6.1, §7.8).
func HasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if EqualFoldASCII(TrimFieldValue(item), token) {
			return true
		}
	}
	return false
}
