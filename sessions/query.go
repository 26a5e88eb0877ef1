package sessions

import (
	"bytes"
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
	}
	return ""
}

// qsParameterLimit is qs's default parameterLimit: parts after the first
// 1000 are ignored.
const qsParameterLimit = 1000

// parseQuery validates a raw query string (the bytes after '?', not
// decoded) the way Rocket.Chat does, and appends the decoded sessionId to
// dst when the query is valid. dst is also used as scratch space: on a
// failure its returned contents are unspecified. parseQuery does not keep
// raw or dst.
//
// Rocket.Chat parses the query with qs (Express's "extended" parser:
// '&'-separated, keys and values decoded by decodeURIComponent after '+' →
// ' ', bracket keys build arrays and objects, __proto__ dropped) and checks
// it with ajv (coerceTypes, allErrors off) against
//
//	{type: object, properties: {sessionId: {type: string}},
//	 required: [sessionId], additionalProperties: false}
//
// ajv stops at the first failing keyword, and its keyword order decides
// which message wins when several apply: the validation vocabulary
// (holding "required") is registered before the applicator vocabulary, and
// in the applicator, "additionalProperties" comes before "properties" (ajv
// v8 lib/vocabularies/applicator/index.ts). So:
//
//  1. no sessionId, whatever else is there → required;
//  2. otherwise any other parameter → additional properties, even when
//     sessionId is also not a string;
//  3. otherwise sessionId repeated or bracketed (an array or an object to
//     qs; coerceTypes does not turn those into strings) → must be string.
func parseQuery(dst, raw []byte) ([]byte, queryResult) {
	// Node's URL parsing ends the query at a fragment.
	if i := bytes.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	start := len(dst)
	var (
		keyBuf [64]byte // decoded keys; longer ones spill to the heap
		count  int      // sessionId occurrences
		nested bool     // a bracketed sessionId
		extra  bool     // another parameter
		value  []byte   // the raw value of the first plain sessionId
	)
	for parts := 0; parts < qsParameterLimit && raw != nil; parts++ {
		var part []byte
		if i := bytes.IndexByte(raw, '&'); i >= 0 {
			part, raw = raw[:i], raw[i+1:]
		} else {
			part, raw = raw, nil
		}
		if len(part) == 0 {
			continue
		}
		// qs splits a part at "]=" when present (so "a[b=c]=d" keeps its
		// key), else at the first '='.
		pos := bytes.Index(part, []byte("]="))
		if pos >= 0 {
			pos++
		} else {
			pos = bytes.IndexByte(part, '=')
		}
		rawKey, rawValue := part, []byte(nil)
		if pos >= 0 {
			rawKey, rawValue = part[:pos], part[pos+1:]
		}
		key := decodeComponent(keyBuf[:0], rawKey)
		if len(key) == 0 {
			continue // qs ignores empty keys
		}
		root, bracketed := qsRoot(key)
		switch string(root) {
		case "sessionId":
			count++
			if bracketed {
				nested = true
			} else if count == 1 {
				value = rawValue
			}
		case "__proto__":
			// qs drops it (prototype pollution guard), so ajv never sees it.
		default:
			extra = true
		}
	}
	switch {
	case count == 0:
		return dst, queryRequired
	case extra:
		return dst, queryAdditional
	case count > 1 || nested:
		return dst, queryNotString
	}
	return decodeComponent(dst[:start], value), queryOK
}

// qsRoot returns the top-level property name qs assigns key to, and
// whether the value goes into a nested array or object there.
//
// qs (lib/parse.js parseKeys) takes the text before the first bracket group
// matching /\[[^[\]]*]/ as the parent: "sessionId[]" and "sessionId[x]" are
// arrays and objects under "sessionId". With no parent, the first group
// itself names the property: "[sessionId]" is plain "sessionId", and
// "[sessionId][x]" an object under it.
func qsRoot(key []byte) (root []byte, bracketed bool) {
	open, end := firstBracketGroup(key)
	if open < 0 {
		return key, false
	}
	if open > 0 {
		return key[:open], true
	}
	// No parent: the group's content is the root; more groups nest.
	next, _ := firstBracketGroup(key[end:])
	return key[1 : end-1], next >= 0
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
