package h1

import (
	"bytes"
	"errors"

	"github.com/valyala/fasthttp"
)

// FieldKind classifies a header field name for forwarding. Names are
// compared ASCII case-insensitively (RFC 9110 §5.1) on the raw bytes, so no
// name is ever normalized or copied to be classified.
type FieldKind uint8

const (
	FieldOther FieldKind = iota
	// Hop-by-hop fields (RFC 9110 §7.6.1, docs/forwarding.md): never forwarded as
	// received, in either direction.
	FieldConnection
	FieldKeepAlive
	FieldProxyConnection
	FieldProxyAuthenticate
	FieldProxyAuthorization
	FieldTE
	FieldTrailer
	FieldTransferEncoding
	FieldUpgrade
	// End-to-end fields the forwarder reads or rewrites.
	FieldContentLength
	FieldHost
	FieldExpect
	FieldXRealIP
	FieldXForwardedFor
	FieldXForwardedProto
	FieldXForwardedHost
)

// HopByHop reports whether k is dropped at every hop.
func (k FieldKind) HopByHop() bool { return k >= FieldConnection && k <= FieldUpgrade }

// ClassifyField returns the kind of the header field called name. It
// switches on the length first so most names cost one comparison or none.
func ClassifyField(name []byte) FieldKind {
	switch len(name) {
	case 2:
		if EqualFoldASCII(name, "TE") {
			return FieldTE
		}
	case 4:
		if EqualFoldASCII(name, "Host") {
			return FieldHost
		}
	case 6:
		if EqualFoldASCII(name, "Expect") {
			return FieldExpect
		}
	case 7:
		switch {
		case EqualFoldASCII(name, "Upgrade"):
			return FieldUpgrade
		case EqualFoldASCII(name, "Trailer"):
			return FieldTrailer
		}
	case 9:
		if EqualFoldASCII(name, "X-Real-IP") {
			return FieldXRealIP
		}
	case 10:
		switch {
		case EqualFoldASCII(name, "Connection"):
			return FieldConnection
		case EqualFoldASCII(name, "Keep-Alive"):
			return FieldKeepAlive
		}
	case 14:
		if EqualFoldASCII(name, "Content-Length") {
			return FieldContentLength
		}
	case 15:
		if EqualFoldASCII(name, "X-Forwarded-For") {
			return FieldXForwardedFor
		}
	case 16:
		switch {
		case EqualFoldASCII(name, "Proxy-Connection"):
			return FieldProxyConnection
		case EqualFoldASCII(name, "X-Forwarded-Host"):
			return FieldXForwardedHost
		}
	case 17:
		switch {
		case EqualFoldASCII(name, "Transfer-Encoding"):
			return FieldTransferEncoding
		case EqualFoldASCII(name, "X-Forwarded-Proto"):
			return FieldXForwardedProto
		}
	case 18:
		if EqualFoldASCII(name, "Proxy-Authenticate") {
			return FieldProxyAuthenticate
		}
	case 19:
		if EqualFoldASCII(name, "Proxy-Authorization") {
			return FieldProxyAuthorization
		}
	}
	return FieldOther
}

// EqualFoldASCII reports whether b equals s ignoring ASCII case. s must be
// ASCII; header names are tokens (RFC 9110 §5.1), so nothing else matters.
func EqualFoldASCII(b []byte, s string) bool {
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

// TrimFieldValue trims optional whitespace (SP and HTAB, RFC 9110 §5.6.3).
func TrimFieldValue(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// ConnTokens holds the field names listed in Connection headers (RFC 9110
// §7.6.1): those fields are hop-by-hop too. The slices point into the
// request or response being forwarded and live as long as it does. Eight
// inline slots cover every real client and are scanned; more (up to
// MaxConnTokens) spill to the heap and are looked up through a hash index
// built on first use, so a head full of fields costs time linear in its
// size, not in fields times tokens.
type ConnTokens struct {
	inline [8][]byte
	n      int
	more   [][]byte
	// index is an open-addressing table over inline and more: 0 is an
	// empty slot, i+1 the token at position i. indexed is how many tokens
	// it holds; it is rebuilt when add has added more since.
	index   []int32
	indexed int
}

// MaxConnTokens bounds the tokens of a message's Connection fields. Real
// peers list one to three (keep-alive, close, Upgrade); a head listing more
// is refused (400 from a client, 502 from the upstream) rather than held
// token by token.
const MaxConnTokens = 64

// ErrConnTokens refuses a head whose Connection fields list more than
// MaxConnTokens tokens.
var ErrConnTokens = errors.New("h1: too many Connection options")

// Add records the comma-separated tokens of one Connection field value; it
// returns ErrConnTokens, having recorded none past it, when they pass
// MaxConnTokens.
func (t *ConnTokens) Add(value []byte) error {
	for len(value) > 0 {
		var tok []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			tok, value = value[:i], value[i+1:]
		} else {
			tok, value = value, nil
		}
		tok = TrimFieldValue(tok)
		if len(tok) == 0 {
			continue
		}
		switch {
		case t.n < len(t.inline):
			t.inline[t.n] = tok
			t.n++
		case t.Count() == MaxConnTokens:
			return ErrConnTokens
		default:
			t.more = append(t.more, tok)
		}
	}
	return nil
}

// Count is the number of tokens recorded.
func (t *ConnTokens) Count() int { return t.n + len(t.more) }

// at returns the i-th token recorded.
func (t *ConnTokens) at(i int) []byte {
	if i < len(t.inline) {
		return t.inline[i]
	}
	return t.more[i-len(t.inline)]
}

// Names reports whether the Connection headers named the field name.
func (t *ConnTokens) Names(name []byte) bool {
	if len(t.more) == 0 {
		for i := 0; i < t.n; i++ {
			if bytes.EqualFold(t.inline[i], name) {
				return true
			}
		}
		return false
	}
	if t.indexed != t.Count() {
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
func (t *ConnTokens) buildIndex() {
	n := t.Count()
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
// keyed: a client can make tokens collide, but MaxConnTokens bounds a
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

// Has reports whether token (ASCII, any case) was listed.
func (t *ConnTokens) Has(token string) bool {
	for i := 0; i < t.n; i++ {
		if EqualFoldASCII(t.inline[i], token) {
			return true
		}
	}
	for _, tok := range t.more {
		if EqualFoldASCII(tok, token) {
			return true
		}
	}
	return false
}

// RemoveHopByHopRequest deletes the hop-by-hop fields of docs/forwarding.md from h: the
// fixed list and every field named in a Connection header. With
// keepUpgrade (a WebSocket handshake) Upgrade is kept and Connection is
// reduced to "Upgrade". If the Connection fields list more than
// MaxConnTokens tokens it returns ErrConnTokens and leaves h as it was.
//
// The names to delete are found in h.RawHeaders(), exactly as the client
// spelled them, because with DisableHeaderNamesNormalizing fasthttp's Del
// only matches a name byte for byte; the Cookie header is never touched
// (reading it through fasthttp would re-serialize it). fasthttp deletes by
// moving the last field into the hole, so the order of the remaining fields
// may change: forwarding code that must keep the order writes the raw block
// instead (AppendRequestHead).
func RemoveHopByHopRequest(h *fasthttp.RequestHeader, keepUpgrade bool) error {
	raw := h.RawHeaders()
	var tokens ConnTokens
	var err error
	found := false
	ForEachField(raw, func(name, value []byte) {
		k := ClassifyField(name)
		if k == FieldConnection && err == nil {
			err = tokens.Add(value)
		}
		found = found || k.HopByHop()
	})
	if err != nil || !found {
		return err
	}
	var del [][]byte
	ForEachField(raw, func(name, _ []byte) {
		k := ClassifyField(name)
		switch {
		case keepUpgrade && k == FieldUpgrade:
		case k.HopByHop(), tokens.Names(name):
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

// RemoveHopByHopResponse deletes the hop-by-hop fields of docs/forwarding.md from an
// upstream response header h, like RemoveHopByHopRequest: the fixed list and
// every field named in a Connection header; with keepUpgrade (a 101 answer
// to a WebSocket handshake) Upgrade is kept and Connection is "Upgrade";
// ErrConnTokens, with h as it was, past MaxConnTokens tokens.
// The order of the remaining fields may change (see RemoveHopByHopRequest).
func RemoveHopByHopResponse(h *fasthttp.ResponseHeader, keepUpgrade bool) error {
	var tokens ConnTokens
	var del [][]byte
	for name, value := range h.All() {
		if ClassifyField(name) == FieldConnection {
			if err := tokens.Add(value); err != nil {
				return err
			}
		}
	}
	for name := range h.All() {
		k := ClassifyField(name)
		switch {
		case keepUpgrade && k == FieldUpgrade:
		case k.HopByHop(), tokens.Names(name):
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

// ForEachField calls f for each field of a raw header block (lines ending
// in CRLF or LF, up to the empty line). It does not validate: callers that
// need validation check the lines themselves (AppendRequestHead,
// FilterResponseHead).
func ForEachField(raw []byte, f func(name, value []byte)) {
	for len(raw) > 0 {
		var line []byte
		line, raw = NextLine(raw)
		if len(line) == 0 {
			return
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		f(line[:c], TrimFieldValue(line[c+1:]))
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

// IsTokenByte reports whether c may appear in a token (field names,
// Connection options, chunk extension names).
func IsTokenByte(c byte) bool { return tokenBytes[c] }
