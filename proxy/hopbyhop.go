package proxy

import (
	"bytes"
	"errors"

	"github.com/valyala/fasthttp"
)

// fieldKind classifies a header field name for forwarding. Names are
// compared ASCII case-insensitively (RFC 9110 §5.1) on the raw bytes, so no
// name is ever normalized or copied to be classified.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	// Hop-by-hop fields (RFC 9110 §7.6.1, docs/forwarding.md): never forwarded as
	// received, in either direction.
	fieldConnection
	fieldKeepAlive
	fieldProxyConnection
	fieldProxyAuthenticate
	fieldProxyAuthorization
	fieldTE
	fieldTrailer
	fieldTransferEncoding
	fieldUpgrade
	// End-to-end fields the forwarder reads or rewrites.
	fieldContentLength
	fieldHost
	fieldExpect
	fieldXRealIP
	fieldXForwardedFor
	fieldXForwardedProto
	fieldXForwardedHost
)

// hopByHop reports whether k is dropped at every hop.
func (k fieldKind) hopByHop() bool { return k >= fieldConnection && k <= fieldUpgrade }

// classifyField returns the kind of the header field called name. It
// switches on the length first so most names cost one comparison or none.
func classifyField(name []byte) fieldKind {
	switch len(name) {
	case 2:
		if equalFoldASCII(name, "TE") {
			return fieldTE
		}
	case 4:
		if equalFoldASCII(name, "Host") {
			return fieldHost
		}
	case 6:
		if equalFoldASCII(name, "Expect") {
			return fieldExpect
		}
	case 7:
		switch {
		case equalFoldASCII(name, "Upgrade"):
			return fieldUpgrade
		case equalFoldASCII(name, "Trailer"):
			return fieldTrailer
		}
	case 9:
		if equalFoldASCII(name, "X-Real-IP") {
			return fieldXRealIP
		}
	case 10:
		switch {
		case equalFoldASCII(name, "Connection"):
			return fieldConnection
		case equalFoldASCII(name, "Keep-Alive"):
			return fieldKeepAlive
		}
	case 14:
		if equalFoldASCII(name, "Content-Length") {
			return fieldContentLength
		}
	case 15:
		if equalFoldASCII(name, "X-Forwarded-For") {
			return fieldXForwardedFor
		}
	case 16:
		switch {
		case equalFoldASCII(name, "Proxy-Connection"):
			return fieldProxyConnection
		case equalFoldASCII(name, "X-Forwarded-Host"):
			return fieldXForwardedHost
		}
	case 17:
		switch {
		case equalFoldASCII(name, "Transfer-Encoding"):
			return fieldTransferEncoding
		case equalFoldASCII(name, "X-Forwarded-Proto"):
			return fieldXForwardedProto
		}
	case 18:
		if equalFoldASCII(name, "Proxy-Authenticate") {
			return fieldProxyAuthenticate
		}
	case 19:
		if equalFoldASCII(name, "Proxy-Authorization") {
			return fieldProxyAuthorization
		}
	}
	return fieldOther
}

// equalFoldASCII reports whether b equals s ignoring ASCII case. s must be
// ASCII; header names are tokens (RFC 9110 §5.1), so nothing else matters.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// trimFieldValue trims optional whitespace (SP and HTAB, RFC 9110 §5.6.3).
func trimFieldValue(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// connTokens holds the field names listed in Connection headers (RFC 9110
// §7.6.1): those fields are hop-by-hop too. The slices point into the
// request or response being forwarded and live as long as it does. Eight
// inline slots cover every real client and are scanned; more (up to
// maxConnTokens) spill to the heap and are looked up through a hash index
// built on first use, so a head full of fields costs time linear in its
// size, not in fields times tokens.
type connTokens struct {
	inline [8][]byte
	n      int
	more   [][]byte
	// index is an open-addressing table over inline and more: 0 is an
	// empty slot, i+1 the token at position i. indexed is how many tokens
	// it holds; it is rebuilt when add has added more since.
	index   []int32
	indexed int
}

// maxConnTokens bounds the tokens of a message's Connection fields. Real
// peers list one to three (keep-alive, close, Upgrade); a head listing more
// is refused (400 from a client, 502 from the upstream) rather than held
// token by token.
const maxConnTokens = 64

// errConnTokens refuses a head whose Connection fields list more than
// maxConnTokens tokens.
var errConnTokens = errors.New("proxy: too many Connection options")

// add records the comma-separated tokens of one Connection field value; it
// returns errConnTokens, having recorded none past it, when they pass
// maxConnTokens.
func (t *connTokens) add(value []byte) error {
	for len(value) > 0 {
		var tok []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			tok, value = value[:i], value[i+1:]
		} else {
			tok, value = value, nil
		}
		tok = trimFieldValue(tok)
		if len(tok) == 0 {
			continue
		}
		switch {
		case t.n < len(t.inline):
			t.inline[t.n] = tok
			t.n++
		case t.count() == maxConnTokens:
			return errConnTokens
		default:
			t.more = append(t.more, tok)
		}
	}
	return nil
}

// count is the number of tokens recorded.
func (t *connTokens) count() int { return t.n + len(t.more) }

// at returns the i-th token recorded.
func (t *connTokens) at(i int) []byte {
	if i < len(t.inline) {
		return t.inline[i]
	}
	return t.more[i-len(t.inline)]
}

// names reports whether the Connection headers named the field name.
func (t *connTokens) names(name []byte) bool {
	if len(t.more) == 0 {
		for i := 0; i < t.n; i++ {
			if bytes.EqualFold(t.inline[i], name) {
				return true
			}
		}
		return false
	}
	if t.indexed != t.count() {
		t.buildIndex()
	}
	mask := uint64(len(t.index) - 1)
	for s := foldHash(name) & mask; ; s = (s + 1) & mask {
		j := t.index[s]
		if j == 0 {
			return false
		}
		if bytes.EqualFold(t.at(int(j-1)), name) {
			return true
		}
	}
}

// buildIndex hashes every token into index, at most half full; repeated
// tokens take one slot.
func (t *connTokens) buildIndex() {
	n := t.count()
	size := 16
	for size < 2*n {
		size <<= 1
	}
	if cap(t.index) >= size {
		t.index = t.index[:size]
		clear(t.index)
	} else {
		t.index = make([]int32, size)
	}
	mask := uint64(size - 1)
	for i := range n {
		tok := t.at(i)
		for s := foldHash(tok) & mask; ; s = (s + 1) & mask {
			j := t.index[s]
			if j == 0 {
				t.index[s] = int32(i + 1)
				break
			}
			if bytes.EqualFold(t.at(int(j-1)), tok) {
				break
			}
		}
	}
	t.indexed = n
}

// foldHash hashes b as if it were ASCII lower case (FNV-1a). It is not
// keyed: a client can make tokens collide, but maxConnTokens bounds a
// lookup to as many comparisons as a scan would make.
func foldHash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// has reports whether token (ASCII, any case) was listed.
func (t *connTokens) has(token string) bool {
	for i := 0; i < t.n; i++ {
		if equalFoldASCII(t.inline[i], token) {
			return true
		}
	}
	for _, tok := range t.more {
		if equalFoldASCII(tok, token) {
			return true
		}
	}
	return false
}

// removeHopByHopRequest deletes the hop-by-hop fields of docs/forwarding.md from h: the
// fixed list and every field named in a Connection header. With
// keepUpgrade (a WebSocket handshake) Upgrade is kept and Connection is
// reduced to "Upgrade". If the Connection fields list more than
// maxConnTokens tokens it returns errConnTokens and leaves h as it was.
//
// The names to delete are found in h.RawHeaders(), exactly as the client
// spelled them, because with DisableHeaderNamesNormalizing fasthttp's Del
// only matches a name byte for byte; the Cookie header is never touched
// (reading it through fasthttp would re-serialize it). fasthttp deletes by
// moving the last field into the hole, so the order of the remaining fields
// may change: forwarding code that must keep the order writes the raw block
// instead (appendRequestHead).
func removeHopByHopRequest(h *fasthttp.RequestHeader, keepUpgrade bool) error {
	raw := h.RawHeaders()
	var tokens connTokens
	var err error
	found := false
	forEachField(raw, func(name, value []byte) {
		k := classifyField(name)
		if k == fieldConnection && err == nil {
			err = tokens.add(value)
		}
		found = found || k.hopByHop()
	})
	if err != nil || !found {
		return err
	}
	var del [][]byte
	forEachField(raw, func(name, _ []byte) {
		k := classifyField(name)
		switch {
		case keepUpgrade && k == fieldUpgrade:
		case k.hopByHop(), tokens.names(name):
			del = append(del, name)
		}
	})
	for _, name := range del {
		h.DelBytes(name)
	}
	// Transfer-Encoding is kept by fasthttp under its canonical name, and
	// Connection: close only as a flag.
	h.Del(fasthttp.HeaderTransferEncoding)
	h.ResetConnectionClose()
	if keepUpgrade {
		h.Set(fasthttp.HeaderConnection, "Upgrade")
	}
	return nil
}

// removeHopByHopResponse deletes the hop-by-hop fields of docs/forwarding.md from an
// upstream response header h, like removeHopByHopRequest: the fixed list and
// every field named in a Connection header; with keepUpgrade (a 101 answer
// to a WebSocket handshake) Upgrade is kept and Connection is "Upgrade";
// errConnTokens, with h as it was, past maxConnTokens tokens.
// The order of the remaining fields may change (see removeHopByHopRequest).
func removeHopByHopResponse(h *fasthttp.ResponseHeader, keepUpgrade bool) error {
	var tokens connTokens
	var del [][]byte
	for name, value := range h.All() {
		if classifyField(name) == fieldConnection {
			if err := tokens.add(value); err != nil {
				return err
			}
		}
	}
	for name := range h.All() {
		k := classifyField(name)
		switch {
		case keepUpgrade && k == fieldUpgrade:
		case k.hopByHop(), tokens.names(name):
			del = append(del, append([]byte(nil), name...))
		}
	}
	for _, name := range del {
		h.DelBytes(name)
	}
	h.Del(fasthttp.HeaderTransferEncoding)
	h.ResetConnectionClose()
	if keepUpgrade {
		h.Set(fasthttp.HeaderConnection, "Upgrade")
	}
	return nil
}

// forEachField calls f for each field of a raw header block (lines ending
// in CRLF or LF, up to the empty line). It does not validate: callers that
// need validation use scanRequestFields.
func forEachField(raw []byte, f func(name, value []byte)) {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			i = len(raw)
		}
		line := raw[:i]
		if i < len(raw) {
			raw = raw[i+1:]
		} else {
			raw = nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			return
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		f(line[:c], trimFieldValue(line[c+1:]))
	}
}

// tokenBytes marks the bytes of a token (tchar, RFC 9110 §5.6.2).
var tokenBytes = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isTokenByte reports whether c may appear in a token (field names,
// Connection options, chunk extension names).
func isTokenByte(c byte) bool { return tokenBytes[c] }
