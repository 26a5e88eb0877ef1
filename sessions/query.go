package sessions

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// queryResult is the outcome of validating the query string against the
// route's parameter schema.
type queryResult uint8

const (
	queryOK         queryResult = iota
	queryRequired               // no sessionId
	queryAdditional             // a parameter other than sessionId
	queryNotString              // sessionId repeated or in bracket form
	queryLimit                  // qs refused the query (throwOnLimitExceeded)
	numQueryResults
)

// message is the ajv message Rocket.Chat puts in the 400 body.
func (r queryResult) message() string {
	switch r {
	case queryRequired:
		return "must have required property 'sessionId'"
	case queryAdditional:
		return "must NOT have additional properties"
	case queryNotString:
		return "must be string"
	case queryLimit:
		return "Invalid query parameters"
	}
	return ""
}

// qsParameterLimit is qs's default parameterLimit: parts after the first
// 1000 are ignored (or, with throwOnLimitExceeded, refused).
const qsParameterLimit = 1000

// qsDepth is qs's default depth: bracket groups after the fifth are kept
// together as one last key.
const qsDepth = 5

// qsOptions are the parts of qs's parse behaviour that differ between the
// Rocket.Chat versions sessiongate answers for.
type qsOptions struct {
	// arrayLimit is qs's arrayLimit. With throwOnLimitExceeded it decides
	// which indices and repetitions are refused; otherwise its only effect
	// is on the shape of values that are not strings anyway.
	arrayLimit int
	// throwOnLimitExceeded refuses the query (queryLimit) when it has more
	// than qsParameterLimit parts, an index of arrayLimit or more, or a key
	// repeated more than arrayLimit times.
	throwOnLimitExceeded bool
	// bracketsFirst is qs 6.14's order: "%5B" and "%5D" become brackets in
	// the whole query before it is split and decoded, so an encoded "]="
	// splits a part and a value that fails to decode keeps them decoded.
	bracketsFirst bool
	// router is how Rocket.Chat's own router hands the query to qs: the
	// request-target becomes a WHATWG URL, whose serialization is split at
	// '?' (packages/http-router: request.raw.url.split('?')[1]), so a
	// second '?' ends the query and a fragment stays in it. Otherwise the
	// query is Node's url.parse's (Meteor's webapp), which ends at '#'.
	router bool
}

// Characters percent-encoded on the way to qs: by Node's url.parse
// (autoEscapeChars in lib/url.js; the white space among them never gets
// past the HTTP parser) and by the WHATWG URL parser in the query (the
// special-query percent-encode set) and in the fragment (the fragment
// percent-encode set), less what cannot be in a request line. They decode
// back to themselves, so they show only where decoding fails and qs keeps
// the raw text.
const (
	urlParseEscapes      = "\"'<>\\^`{|}"
	whatwgQueryEscapes   = "\"'<>"
	whatwgFragmentEscape = "\"<>`"
)

// The qs behaviours of the eras (see docs/eras.md).
var (
	// qsMeteor is qs 6.11 with its defaults, as Meteor's webapp parses
	// every request's query.
	qsMeteor = qsOptions{arrayLimit: 20}
	// qsRouter is qs 6.14 with the options of Rocket.Chat's own router.
	qsRouter = qsOptions{arrayLimit: 500, throwOnLimitExceeded: true, bracketsFirst: true, router: true}
)

// qsPart is one '&'-separated piece of the query whose key names the
// top-level property sessionId.
type qsPart struct {
	key    []byte // the raw key of the first occurrence
	value  []byte // the raw value of the first occurrence
	count  int    // occurrences of the same decoded key
	simple bool   // the key is the property itself: no nesting below it
}

// parseQuery validates a raw query string (the bytes after '?', not
// decoded) the way Rocket.Chat does, and appends the decoded sessionId to
// dst when the query is valid. dst is also used as scratch space: on a
// failure its returned contents are unspecified. parseQuery does not keep
// raw or dst.
//
// Rocket.Chat hands the query to qs.parse (Meteor's webapp up to 7.5, its
// own router after; see qsInput for what each takes from the
// request-target) and checks the result with ajv (coerceTypes, allErrors
// off) against
//
//	{type: object, properties: {sessionId: {type: string}},
//	 required: [sessionId], additionalProperties: false}
//
// qs (lib/parse.js, lib/utils.js) splits the query on '&', decodes keys and
// values, collects repeated keys into arrays, splits each key into bracket
// segments — dropping the whole parameter when its top-level name or a
// segment within the depth names an Object.prototype member — and merges
// the objects the keys describe, in the order the keys first appeared
// (Object.keys puts integer-like keys first, but none of those names
// sessionId). The merge leaves a string alone when a later value for the
// same property is empty, and makes an array of anything else. qs produces
// only strings, arrays and objects, and coerceTypes turns neither of the
// latter into a string, so sessionId is a string exactly when the first parameter
// naming it is "sessionId" itself (or "[sessionId]", which qs reads the
// same) occurring once, and every later one names it plainly, once, with
// an empty value.
//
// ajv stops at the first failing keyword, and its keyword order decides
// which message wins when several apply: the validation vocabulary
// (holding "required") is registered before the applicator vocabulary, and
// in the applicator, "additionalProperties" comes before "properties" (ajv
// v8 lib/vocabularies/applicator/index.ts). So:
//
//  1. no sessionId, whatever else is there → required;
//  2. otherwise any other property → additional properties, even when
//     sessionId is also not a string;
//  3. otherwise sessionId not a string → must be string.
func parseQuery(dst, raw []byte, o qsOptions) ([]byte, queryResult) {
	raw = qsInput(raw, o)
	if o.bracketsFirst {
		raw = replaceEncodedBrackets(raw)
	}
	if o.throwOnLimitExceeded && overLimits(raw, o) {
		return dst, queryLimit
	}
	start := len(dst)
	var (
		keyBuf   [64]byte // decoded keys; longer ones spill to the heap
		cmpBuf   [64]byte // earlier keys decoded again to compare
		partsBuf [4]qsPart
		parts    = partsBuf[:0] // the parameters naming sessionId
		extra    bool           // another property
	)
	for n := 0; n < qsParameterLimit && raw != nil; n++ {
		var part []byte
		if i := bytes.IndexByte(raw, '&'); i >= 0 {
			part, raw = raw[:i], raw[i+1:]
		} else {
			part, raw = raw, nil
		}
		rawKey, rawValue := splitPart(part)
		key := decodeComponent(keyBuf[:0], rawKey)
		if len(key) == 0 {
			continue // qs ignores empty keys
		}
		k := splitKey(key, o)
		switch {
		case k.dropped:
		case o.throwOnLimitExceeded && k.bigIndex:
			return dst, queryLimit
		case !k.sessionID:
			extra = true
		default:
			i := 0
			for i < len(parts) && !bytes.Equal(decodeComponent(cmpBuf[:0], parts[i].key), key) {
				i++
			}
			if i < len(parts) {
				parts[i].count++
				continue
			}
			parts = append(parts, qsPart{key: rawKey, value: rawValue, count: 1, simple: k.simple})
		}
	}
	switch {
	case len(parts) == 0:
		return dst, queryRequired
	case extra:
		return dst, queryAdditional
	}
	for i, p := range parts {
		if !p.simple || p.count > 1 || (i > 0 && len(p.value) > 0) {
			return dst, queryNotString
		}
	}
	return decodeComponent(dst[:start], parts[0].value), queryOK
}

// qsInput returns the string the era's Rocket.Chat hands to qs.parse,
// given raw, the request-target after its first '?'. It returns raw itself
// unless characters must be percent-encoded, the only case that allocates.
func qsInput(raw []byte, o qsOptions) []byte {
	hash := bytes.IndexByte(raw, '#')
	if !o.router {
		// url.parse: the query ends at a fragment. A target without one
		// takes the fast path (lib/url.js, and Express's parseurl), which
		// keeps the query as sent; one with a '#' is auto-escaped.
		if hash < 0 {
			return raw
		}
		return escapeURL(raw[:hash], urlParseEscapes, "", -1)
	}
	if i := bytes.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
		if hash > i {
			hash = -1
		}
	}
	return escapeURL(raw, whatwgQueryEscapes, whatwgFragmentEscape, hash)
}

// escapeURL returns s with the bytes in query percent-encoded before index
// hash and those in fragment after it (hash < 0: no fragment), or s itself
// when there are none.
func escapeURL(s []byte, query, fragment string, hash int) []byte {
	set := func(i int) string {
		if hash >= 0 && i > hash {
			return fragment
		}
		return query
	}
	first := -1
	for i, c := range s {
		if strings.IndexByte(set(i), c) >= 0 {
			first = i
			break
		}
	}
	if first < 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	out := make([]byte, first, len(s)+16)
	copy(out, s[:first])
	for i := first; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte(set(i), c) >= 0 {
			out = append(out, '%', hex[c>>4], hex[c&15])
			continue
		}
		out = append(out, c)
	}
	return out
}

// splitPart splits one part of the query into its raw key and value. qs
// splits at "]=" when present (so "a[b=c]=d" keeps its key), else at the
// first '='; a part without '=' is a key with an empty value.
func splitPart(part []byte) (key, value []byte) {
	pos := bytes.Index(part, []byte("]="))
	if pos >= 0 {
		pos++
	} else {
		pos = bytes.IndexByte(part, '=')
	}
	if pos < 0 {
		return part, nil
	}
	return part[:pos], part[pos+1:]
}

// qsKey is what qs makes of one decoded key.
type qsKey struct {
	dropped   bool // an Object.prototype name: qs ignores the parameter
	sessionID bool // the top-level property is sessionId
	simple    bool // the key is the property itself, nothing nested
	bigIndex  bool // a segment is an array index of arrayLimit or more
}

// splitKey splits key into qs's segments (lib/parse.js parseKeys): the
// parent is the text before the first bracket group matching
// /\[[^[\]]*]/, then up to qsDepth such groups found left to right
// (text between them is lost), then, when another group follows, the rest
// of the key from that group on as one last segment. With no parent, the
// first group names the top-level property: "[sessionId]" is plain
// "sessionId". The parent and each group's content within the depth are
// checked against Object.prototype's members.
func splitKey(key []byte, o qsOptions) qsKey {
	var k qsKey
	open, end := firstBracketGroup(key)
	parent := key
	if open >= 0 {
		parent = key[:open]
	}
	segments := 0
	if len(parent) > 0 {
		if isPrototypeMember(parent) {
			return qsKey{dropped: true}
		}
		k.sessionID = string(parent) == "sessionId"
		segments = 1
	}
	for depth := 0; open >= 0; depth++ {
		if depth == qsDepth {
			segments++ // the rest, as one segment
			break
		}
		content := key[open+1 : end-1]
		if isPrototypeMember(content) {
			return qsKey{dropped: true}
		}
		if segments == 0 {
			k.sessionID = string(content) == "sessionId"
		}
		if n, ok := arrayIndex(content); ok && n >= o.arrayLimit {
			k.bigIndex = true
		}
		segments++
		next, nextEnd := firstBracketGroup(key[end:])
		if next < 0 {
			break
		}
		open, end = end+next, end+nextEnd
	}
	k.simple = segments == 1
	return k
}

// arrayIndex reports whether s is an index qs turns into an array
// position: parseInt(s, 10) >= 0 whose String() is s again. Numbers past
// 2^53 survive that round trip only when a float64 holds them exactly
// and prints them without an exponent (below 1e21), so those are checked
// the way JavaScript would print them. The value is capped at MaxInt32.
func arrayIndex(s []byte) (int, bool) {
	if len(s) == 0 || len(s) > 21 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(s) <= 9 {
		n, _ := strconv.Atoi(string(s))
		return n, true
	}
	f, err := strconv.ParseFloat(string(s), 64)
	if err != nil || strconv.FormatFloat(f, 'f', -1, 64) != string(s) {
		return 0, false
	}
	return math.MaxInt32, true
}

// isPrototypeMember reports whether name is an own property of
// Object.prototype in Node 20 (qs drops such keys unless allowPrototypes).
func isPrototypeMember(name []byte) bool {
	switch string(name) {
	case "constructor", "__defineGetter__", "__defineSetter__", "hasOwnProperty",
		"__lookupGetter__", "__lookupSetter__", "isPrototypeOf", "propertyIsEnumerable",
		"toString", "valueOf", "__proto__", "toLocaleString":
		return true
	}
	return false
}

// overLimits reports whether qs with throwOnLimitExceeded throws in its
// first pass (lib/parse.js parseValues): more than qsParameterLimit parts,
// or a parameter whose '='-holding occurrence finds its key already
// collected into an array of arrayLimit values. (At arrayLimit+1 values
// the array becomes an object and is never counted again.)
func overLimits(raw []byte, o qsOptions) bool {
	n := bytes.Count(raw, []byte("&")) + 1
	if n > qsParameterLimit {
		return true
	}
	if n <= o.arrayLimit {
		return false
	}
	counts := make(map[string]int)
	var keyBuf []byte
	for raw != nil {
		var part []byte
		if i := bytes.IndexByte(raw, '&'); i >= 0 {
			part, raw = raw[:i], raw[i+1:]
		} else {
			part, raw = raw, nil
		}
		rawKey, _ := splitPart(part)
		keyBuf = decodeComponent(keyBuf[:0], rawKey)
		c := counts[string(keyBuf)]
		if c == o.arrayLimit && c > 1 && len(rawKey) < len(part) {
			return true
		}
		counts[string(keyBuf)] = c + 1
	}
	return false
}

// replaceEncodedBrackets returns raw with every "%5B" and "%5D" (either
// case) replaced by '[' and ']', as qs 6.14 does before anything else.
// raw is returned as is when it holds none.
func replaceEncodedBrackets(raw []byte) []byte {
	i := encodedBracket(raw, 0)
	if i < 0 {
		return raw
	}
	out := make([]byte, 0, len(raw))
	for i >= 0 {
		out = append(out, raw[:i]...)
		if raw[i+2] == 'B' || raw[i+2] == 'b' {
			out = append(out, '[')
		} else {
			out = append(out, ']')
		}
		raw = raw[i+3:]
		i = encodedBracket(raw, 0)
	}
	return append(out, raw...)
}

// encodedBracket returns the index of the first "%5B" or "%5D" (either
// case) in raw at or after from, or -1.
func encodedBracket(raw []byte, from int) int {
	for i := from; i+2 < len(raw); i++ {
		if raw[i] == '%' && raw[i+1] == '5' {
			switch raw[i+2] {
			case 'B', 'b', 'D', 'd':
				return i
			}
		}
	}
	return -1
}

// firstBracketGroup finds the first "[...]" in key whose content holds no
// '[' or ']', returning the index of '[' and the index just past ']', or
// -1, -1.
func firstBracketGroup(key []byte) (open, end int) {
	open = -1
	for i, c := range key {
		switch c {
		case '[':
			open = i
		case ']':
			if open >= 0 {
				return open, i + 1
			}
		}
	}
	return -1, -1
}

// decodeComponent appends s decoded the way qs's default decoder does to dst:
// '+' becomes ' ', then decodeURIComponent; when that throws (a '%' not
// followed by two hex digits, or escapes that are not valid UTF-8), qs keeps
// the string with only '+' replaced.
func decodeComponent(dst, s []byte) []byte {
	if bytes.IndexByte(s, '%') < 0 && bytes.IndexByte(s, '+') < 0 {
		return append(dst, s...)
	}
	start := len(dst)
	run := -1 // start in dst of the current run of non-ASCII escapes
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return plusToSpace(dst[:start], s)
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return plusToSpace(dst[:start], s)
			}
			b := hi<<4 | lo
			if b >= 0x80 && run < 0 {
				run = len(dst)
			}
			if b < 0x80 && run >= 0 {
				// decodeURIComponent decodes each UTF-8 sequence from
				// consecutive escapes; an ASCII escape ends the run.
				if !utf8.Valid(dst[run:]) {
					return plusToSpace(dst[:start], s)
				}
				run = -1
			}
			dst = append(dst, b)
			i += 2
			continue
		case c == '+':
			c = ' '
		}
		if run >= 0 {
			if !utf8.Valid(dst[run:]) {
				return plusToSpace(dst[:start], s)
			}
			run = -1
		}
		dst = append(dst, c)
	}
	if run >= 0 && !utf8.Valid(dst[run:]) {
		return plusToSpace(dst[:start], s)
	}
	return dst
}

func plusToSpace(dst, s []byte) []byte {
	for _, c := range s {
		if c == '+' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
