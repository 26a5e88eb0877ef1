package mirror

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// appendREST appends doc as Rocket.Chat's REST API renders it: the Node.js
// driver decodes the BSON (js-bson, promoteLongs and promoteValues on) and
// the route answers JSON.stringify of the result, compact. So members keep
// their stored order, dates become Date.prototype.toJSON strings
// ("2023-05-23T16:33:45.202Z"), ObjectIds their 24-hex toJSON, and numbers
// print the way JavaScript prints them.
func appendREST(dst []byte, doc bson.D) []byte {
	dst = append(dst, '{')
	first := true
	for _, e := range doc {
		if _, ok := e.Value.(bson.Undefined); ok {
			continue // JSON.stringify drops undefined members
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSString(dst, e.Key)
		dst = append(dst, ':')
		dst = appendRESTValue(dst, e.Value)
	}
	return append(dst, '}')
}

func appendRESTValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil, bson.Null, bson.Undefined:
		// Undefined inside an array stringifies as null.
		return append(dst, "null"...)
	case string:
		return appendJSString(dst, v)
	case bool:
		return strconv.AppendBool(dst, v)
	case int32:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		// js-bson promotes a Long to a Number only within ±2^53; beyond,
		// the Long object stringifies with its own fields.
		if v >= -(1<<53) && v <= 1<<53 {
			return strconv.AppendInt(dst, v, 10)
		}
		dst = append(dst, `{"low":`...)
		dst = strconv.AppendInt(dst, int64(int32(uint32(v))), 10)
		dst = append(dst, `,"high":`...)
		dst = strconv.AppendInt(dst, int64(int32(v>>32)), 10)
		return append(dst, `,"unsigned":false}`...)
	case float64:
		return appendJSNumber(dst, v)
	case bson.DateTime:
		return appendJSDate(dst, int64(v))
	case bson.ObjectID:
		dst = append(dst, '"')
		dst = append(dst, v.Hex()...)
		return append(dst, '"')
	case bson.D:
		return appendREST(dst, v)
	case bson.A:
		dst = append(dst, '[')
		for i, x := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendRESTValue(dst, x)
		}
		return append(dst, ']')
	case bson.Binary:
		// Binary.prototype.toJSON is the base64 of the bytes.
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v.Data)
		return append(dst, '"')
	case bson.Decimal128:
		dst = append(dst, `{"$numberDecimal":`...)
		dst = appendJSString(dst, v.String())
		return append(dst, '}')
	case bson.Timestamp:
		dst = append(dst, `{"$timestamp":"`...)
		dst = strconv.AppendUint(dst, uint64(v.T)<<32|uint64(v.I), 10)
		return append(dst, `"}`...)
	case bson.Symbol:
		return appendJSString(dst, string(v))
	case bson.JavaScript:
		dst = append(dst, `{"code":`...)
		dst = appendJSString(dst, string(v))
		return append(dst, '}')
	case bson.CodeWithScope:
		dst = append(dst, `{"code":`...)
		dst = appendJSString(dst, string(v.Code))
		dst = append(dst, `,"scope":`...)
		if scope, ok := v.Scope.(bson.D); ok {
			dst = appendREST(dst, scope)
		} else {
			dst = append(dst, "{}"...)
		}
		return append(dst, '}')
	case bson.DBPointer:
		dst = append(dst, `{"$ref":`...)
		dst = appendJSString(dst, v.DB)
		dst = append(dst, `,"$id":"`...)
		dst = append(dst, v.Pointer.Hex()...)
		return append(dst, `"}`...)
	default:
		// A RegExp, MinKey or MaxKey has no enumerable own members:
		// JSON.stringify gives {}.
		return append(dst, "{}"...)
	}
}

// appendJSDate appends Date.prototype.toJSON: toISOString, or null for an
// invalid date (beyond ±8.64e15 ms, ECMAScript §21.4.1.1).
func appendJSDate(dst []byte, ms int64) []byte {
	const maxTime = 8_640_000_000_000_000
	if ms > maxTime || ms < -maxTime {
		return append(dst, "null"...)
	}
	t := time.UnixMilli(ms).UTC()
	dst = append(dst, '"')
	// ECMAScript §21.4.4.36: years outside 0..9999 use six digits and a sign.
	switch y := t.Year(); {
	case y >= 0 && y <= 9999:
		dst = appendPadded(dst, int64(y), 4)
	case y < 0:
		dst = append(dst, '-')
		dst = appendPadded(dst, int64(-y), 6)
	default:
		dst = append(dst, '+')
		dst = appendPadded(dst, int64(y), 6)
	}
	dst = append(dst, '-')
	dst = appendPadded(dst, int64(t.Month()), 2)
	dst = append(dst, '-')
	dst = appendPadded(dst, int64(t.Day()), 2)
	dst = append(dst, 'T')
	dst = appendPadded(dst, int64(t.Hour()), 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, int64(t.Minute()), 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, int64(t.Second()), 2)
	dst = append(dst, '.')
	dst = appendPadded(dst, int64(t.Nanosecond()/1e6), 3)
	return append(dst, `Z"`...)
}

func appendPadded(dst []byte, v int64, width int) []byte {
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// appendJSNumber appends a double as JSON.stringify does: Number::toString
// (ECMAScript §6.1.6.1.20), the shortest round-tripping digits, with null
// for NaN and the infinities.
func appendJSNumber(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if f == 0 {
		return append(dst, '0') // -0 too
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // d.ddde±XX
	mant, exp := e, 0
	for i, c := range e {
		if c == 'e' {
			mant = e[:i]
			x, _ := strconv.Atoi(string(e[i+1:]))
			exp = x
			break
		}
	}
	digits := make([]byte, 0, len(mant))
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	k, n := len(digits), exp+1 // value = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, "0."...)
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}

// appendJSString appends s quoted as JSON.stringify does (ECMAScript
// §25.5.2.3 QuoteJSONString): only '"', '\\' and control characters are
// escaped, lower-case hex; '<', '>', '&', U+2028 and U+2029 stay as they are,
// unlike Go's encoding/json. Invalid UTF-8 becomes U+FFFD.
func appendJSString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = utf8.AppendRune(dst, utf8.RuneError)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
