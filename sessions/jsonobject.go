package sessions

// maxJSONDepth bounds the nesting of a served document. Deeper documents
// are treated as not valid (and forwarded); session documents nest three
// levels.
const maxJSONDepth = 512

// validJSONObject reports whether s is exactly one well-formed JSON object
// (RFC 8259), with optional white space around it. Like encoding/json, it
// accepts any byte ≥ 0x20 inside strings.
//
// A stored value is checked in full before it is served: a truncated or
// mangled one would otherwise become a broken 200 body. encoding/json.Valid
// gives the same answer (FuzzValidJSONObject) but is about 5× slower: 1.9 µs
// against 0.4 µs on the seed's 800-byte document on the 2-core CI machine
// (BenchmarkJSONValid, BenchmarkValidJSONObject), where 0.4 µs is already a
// thirtieth of the route's CPU per request.
func validJSONObject(s string) bool {
	var stack [maxJSONDepth / 64]uint64 // bit set: 1 object, 0 array
	depth := 0
	const (
		wantValue = iota
		wantKeyOrEnd
		wantKey
		wantComma
	)
	i := skipJSONSpace(s, 0)
	if i == len(s) || s[i] != '{' {
		return false
	}
	state := wantValue
	for {
		i = skipJSONSpace(s, i)
		if i == len(s) {
			return state == wantComma && depth == 0
		}
		c := s[i]
		switch state {
		case wantValue:
			switch c {
			case '{', '[':
				if depth == maxJSONDepth {
					return false
				}
				if c == '{' {
					stack[depth/64] |= 1 << (depth % 64)
					state = wantKeyOrEnd
				} else {
					stack[depth/64] &^= 1 << (depth % 64)
					if j := skipJSONSpace(s, i+1); j < len(s) && s[j] == ']' {
						i = j + 1
						state = wantComma
						continue
					}
				}
				depth++
				i++
			case '"':
				if i = scanJSONString(s, i); i < 0 {
					return false
				}
				state = wantComma
			case 't':
				if !hasPrefix(s[i:], "true") {
					return false
				}
				i += 4
				state = wantComma
			case 'f':
				if !hasPrefix(s[i:], "false") {
					return false
				}
				i += 5
				state = wantComma
			case 'n':
				if !hasPrefix(s[i:], "null") {
					return false
				}
				i += 4
				state = wantComma
			default:
				if i = scanJSONNumber(s, i); i < 0 {
					return false
				}
				state = wantComma
			}
		case wantKeyOrEnd, wantKey:
			if c == '}' && state == wantKeyOrEnd {
				depth--
				i++
				state = wantComma
				continue
			}
			if c != '"' {
				return false
			}
			if i = scanJSONString(s, i); i < 0 {
				return false
			}
			if i = skipJSONSpace(s, i); i == len(s) || s[i] != ':' {
				return false
			}
			i++
			state = wantValue
		case wantComma:
			if depth == 0 {
				return false // something after the top-level object
			}
			inObject := stack[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			switch {
			case c == ',' && inObject:
				state = wantKey
			case c == ',':
				state = wantValue
			case c == '}' && inObject, c == ']' && !inObject:
				depth--
			default:
				return false
			}
			i++
		}
	}
}

func skipJSONSpace(s string, i int) int {
	for i < len(s) && isJSONSpace(s[i]) {
		i++
	}
	return i
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

// scanJSONString returns the index just past the string starting at s[i]
// ('"'), or -1.
func scanJSONString(s string, i int) int {
	for i++; i < len(s); i++ {
		// Eight plain bytes at a time, then one at a time up to the next
		// special byte.
		for i+8 <= len(s) && !hasStringSpecial(load64(s, i)) {
			i += 8
		}
		for i < len(s) && plainStringByte[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		switch c := s[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		default: // c == '\\'
			i++
			if i == len(s) {
				return -1
			}
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) || !isHex(s[i+3]) || !isHex(s[i+4]) {
					return -1
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// plainStringByte marks the bytes that stand for themselves inside a JSON
// string: all but '"', '\\' and control characters.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// load64 reads s[i:i+8] as a little-endian word (one load once compiled).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// hasStringSpecial reports whether any byte of w is '"', '\\' or below
// 0x20, with the classic SWAR tests (Anderson, "Bit Twiddling Hacks":
// "Determine if a word has a byte less than n"; exact as a yes/no answer
// for n ≤ 128).
func hasStringSpecial(w uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	less := (w - 0x20*lo) &^ w
	q := w ^ ('"' * lo)
	b := w ^ ('\\' * lo)
	return (less|((q-lo)&^q)|((b-lo)&^b))&hi != 0
}

func isHex(c byte) bool {
	_, ok := unhex(c)
	return ok
}

// scanJSONNumber returns the index just past the number starting at s[i],
// or -1.
func scanJSONNumber(s string, i int) int {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return -1
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}
