package redisstore

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"unsafe"
)

// The route's command in RESP2, written and read without allocating
// (https://redis.io/docs/latest/develop/reference/protocol-spec/). Only
// what MGET, AUTH and SELECT answer is understood: simple strings,
// errors, bulk strings and one level of array. Anything else is a
// protocol error, after which the connection is closed (see direct).

// maxDocLen bounds a session document read from Redis. A Rocket.Chat
// session is about 1 KB; a value this large is not one, and reading it
// would let one bad key hold megabytes per request.
const maxDocLen = 4 << 20

var (
	errProtocol   = errors.New("redisstore: protocol error in reply")
	errDocTooLong = errors.New("redisstore: session value too long")
)

// appendBulk appends b as a RESP bulk string.
func appendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// appendBulkString appends s as a RESP bulk string.
func appendBulkString(dst []byte, s string) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// readLine returns the next line without its CRLF. The slice is valid until
// the next read from r.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, errProtocol
		}
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errProtocol
	}
	return line[:len(line)-2], nil
}

// parseInt parses a RESP integer (an optional '-' and decimal digits).
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// replyError is an error reply of Redis ("-ERR ...", "-NOAUTH ...").
type replyError string

func (e replyError) Error() string { return "redis: " + string(e) }

// newReplyError keeps the text of an error reply, unless it could name a
// key: every data-contract key holds '{' (the hash tag) and a token key the
// hashed token, so a text with a '{' is cut to its first word, the error
// kind (RESP: "the first word after the '-' ... is the error kind").
func newReplyError(line []byte) error {
	text := line[1:]
	if bytes.IndexByte(text, '{') >= 0 {
		if i := bytes.IndexByte(text, ' '); i >= 0 {
			text = text[:i]
		}
		if bytes.IndexByte(text, '{') >= 0 {
			text = []byte("ERR")
		}
	}
	if len(text) > 200 {
		text = text[:200]
	}
	return replyError(text)
}

// readArrayLen reads an array header and returns its length.
func readArrayLen(r *bufio.Reader) (int64, error) {
	line, err := readLine(r)
	if err != nil {
		return 0, err
	}
	switch line[0] {
	case '*':
		if n, ok := parseInt(line[1:]); ok {
			return n, nil
		}
	case '-':
		return 0, newReplyError(line)
	}
	return 0, errProtocol
}

// readOK reads a simple-string reply such as +OK.
func readOK(r *bufio.Reader) error {
	line, err := readLine(r)
	if err != nil {
		return err
	}
	switch line[0] {
	case '+':
		return nil
	case '-':
		return newReplyError(line)
	}
	return errProtocol
}

// readBulk reads a bulk string. With keep it returns the value as a new
// string (the one allocation of a hit); without, it skips the value. found
// is false for the nil bulk string ($-1), which is how MGET answers a key
// that does not exist (or is not a string).
func readBulk(r *bufio.Reader, keep bool) (val string, found bool, err error) {
	line, err := readLine(r)
	if err != nil {
		return "", false, err
	}
	switch line[0] {
	case '$':
	case '-':
		return "", false, newReplyError(line)
	default:
		return "", false, errProtocol
	}
	n, ok := parseInt(line[1:])
	switch {
	case !ok || n < -1:
		return "", false, errProtocol
	case n == -1:
		return "", false, nil
	case !keep:
		if _, err := r.Discard(int(n)); err != nil {
			return "", false, err
		}
	case n > maxDocLen:
		return "", false, errDocTooLong
	case n > 0:
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", false, err
		}
		// b is never written again: the string may share it, as
		// strings.Builder does.
		val = unsafe.String(unsafe.SliceData(b), len(b))
	}
	if err := readCRLF(r); err != nil {
		return "", false, err
	}
	return val, true, nil
}

// readBulkMarked reads a bulk string reply without keeping it, and reports
// whether it was there and whether it starts with VerifyMarker.
func readBulkMarked(r *bufio.Reader) (found, marked bool, err error) {
	line, err := readLine(r)
	if err != nil {
		return false, false, err
	}
	switch line[0] {
	case '$':
	case '-':
		return false, false, newReplyError(line)
	default:
		return false, false, errProtocol
	}
	n, ok := parseInt(line[1:])
	switch {
	case !ok || n < -1:
		return false, false, errProtocol
	case n == -1:
		return false, false, nil
	}
	if n > int64(len(VerifyMarker)) {
		head, err := r.Peek(len(VerifyMarker) + 1)
		if err != nil {
			return false, false, err
		}
		marked = markedHead(head)
	}
	if _, err := r.Discard(int(n)); err != nil {
		return false, false, err
	}
	if err := readCRLF(r); err != nil {
		return false, false, err
	}
	return true, marked, nil
}

func readCRLF(r *bufio.Reader) error {
	cr, err := r.ReadByte()
	if err != nil {
		return err
	}
	lf, err := r.ReadByte()
	if err != nil {
		return err
	}
	if cr != '\r' || lf != '\n' {
		return errProtocol
	}
	return nil
}
