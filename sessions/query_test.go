package sessions

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		raw       string
		want      queryResult
		sessionID string // when want is queryOK
	}{
		{"", queryRequired, ""},
		{"sessionId=QoYYFw2t9oKks2niG", queryOK, "QoYYFw2t9oKks2niG"},
		{"sessionId=", queryOK, ""},
		{"sessionId", queryOK, ""},
		{"sessionId=a%20b", queryOK, "a b"},
		{"sessionId=a+b", queryOK, "a b"},
		{"sessionId=a%2Bb", queryOK, "a+b"},
		{"sessionId=a=b", queryOK, "a=b"},
		{"sessionId=%C3%A9", queryOK, "é"},
		{"sessionId=%7Bx%7D", queryOK, "{x}"},
		// decodeURIComponent throws on these; qs then keeps the raw value
		// with only '+' replaced.
		{"sessionId=%zz", queryOK, "%zz"},
		{"sessionId=a+%zz", queryOK, "a %zz"},
		{"sessionId=a%2", queryOK, "a%2"},
		{"sessionId=%E9", queryOK, "%E9"},
		{"sessionId=%C3%41", queryOK, "%C3%41"},
		{"sessionId=%ED%A0%80", queryOK, "%ED%A0%80"}, // a UTF-16 surrogate
		{"sessionId=%C3\xa9", queryOK, "%C3\xa9"},
		{"session%49d=a", queryOK, "a"},
		{"[sessionId]=a", queryOK, "a"},
		{"&&sessionId=a&", queryOK, "a"},
		{"=x&sessionId=a", queryOK, "a"},
		{"sessionId=a&__proto__=x", queryOK, "a"},
		{"sessionId=a&__proto__[x]=y", queryOK, "a"},
		{"sessionId=a#b=c", queryOK, "a"},
		// qs drops a parameter whose top-level name or a bracket segment
		// within depth 5 is an Object.prototype member.
		{"sessionId=a&toString=x", queryOK, "a"},
		{"sessionId=a&constructor", queryOK, "a"},
		{"sessionId=a&x[hasOwnProperty]=y", queryOK, "a"},
		{"sessionId=a&valueOf[x]=y", queryOK, "a"},
		{"sessionId=a&[__proto__]=y", queryOK, "a"},
		{"sessionId=a&a[b][c][d][isPrototypeOf]=1", queryOK, "a"},
		{"sessionId=a&a[b][c][d][e][toLocaleString]=1", queryOK, "a"},
		{"sessionId[toString]=a&sessionId=b", queryOK, "b"},
		{"sessionId=a&sessionId[__lookupGetter__]=b", queryOK, "a"},
		// qs merges "sessionId" and "[sessionId]" (different keys to it);
		// the merge keeps a string when the later value is empty.
		{"sessionId=a&[sessionId]=", queryOK, "a"},
		{"[sessionId]=a&sessionId", queryOK, "a"},
		{"[sessionId]x=a", queryOK, "a"},
		{"sessionId=a&[sessionId]x=", queryOK, "a"},
		{"sessionId=&[sessionId]=", queryOK, ""},

		{"sessionId=a&sessionId=b", queryNotString, ""},
		{"sessionId=a&sessionId=a", queryNotString, ""},
		{"sessionId&sessionId", queryNotString, ""},
		{"sessionId[]=a", queryNotString, ""},
		{"sessionId[x]=a", queryNotString, ""},
		{"sessionId[0]=a", queryNotString, ""},
		{"sessionId%5B%5D=a", queryNotString, ""},
		{"sessionId[x]y=a", queryNotString, ""},
		{"[sessionId][x]=a", queryNotString, ""},
		{"sessionId=a&[sessionId]=b", queryNotString, ""},
		{"sessionId[a=b]=c", queryNotString, ""},
		{"sessionId=&[sessionId]=a", queryNotString, ""},
		{"sessionId=a&[sessionId]&[sessionId]", queryNotString, ""},
		{"sessionId=a&sessionId[]=", queryNotString, ""},

		{"sessionId=a&foo=b", queryAdditional, ""},
		{"foo=b&sessionId=a", queryAdditional, ""},
		{"sessionId=a&foo", queryAdditional, ""},
		{"sessionId=a&[]=b", queryAdditional, ""},
		{"sessionId=a&session+Id=b", queryAdditional, ""},
		// ajv checks additionalProperties before properties.
		{"sessionId[]=a&foo=b", queryAdditional, ""},
		{"sessionId=a&sessionId=b&foo=c", queryAdditional, ""},

		// ajv checks required before anything else.
		{"foo=b", queryRequired, ""},
		{"SessionId=a", queryRequired, ""},
		{"sessionid=a", queryRequired, ""},
		{"sessionId[=a", queryRequired, ""},
		{"sessionId]=a", queryRequired, ""},
		{"sessionId%3Da", queryRequired, ""}, // the key decodes to "sessionId=a"
		{"&", queryRequired, ""},
		{"__proto__=x", queryRequired, ""},
		{"toString=x", queryRequired, ""},
		{"sessionId[propertyIsEnumerable]=x", queryRequired, ""},
		{"sessionId[[x]]=a", queryRequired, ""},
		// Past the depth the rest of the key is one segment, never checked.
		{"sessionId=a&a[b][c][d][e][f][toString]=1", queryAdditional, ""},
		// qs reads only the first 1000 parts.
		{strings.Repeat("&", qsParameterLimit) + "sessionId=a", queryRequired, ""},
		{strings.Repeat("&", qsParameterLimit-1) + "sessionId=a", queryOK, "a"},
	}
	for _, tt := range tests {
		got, res := parseQuery(nil, []byte(tt.raw), qsMeteor)
		if res != tt.want {
			t.Errorf("parseQuery(%.60q): got %q, want %q", tt.raw, res.message(), tt.want.message())
			continue
		}
		if res == queryOK && string(got) != tt.sessionID {
			t.Errorf("parseQuery(%.60q): got sessionId %q, want %q", tt.raw, got, tt.sessionID)
		}
	}
}

func TestParseQueryAppendsToDst(t *testing.T) {
	dst := []byte("keep")
	got, res := parseQuery(dst, []byte("sessionId=a+b"), qsMeteor)
	if res != queryOK || string(got) != "keepa b" {
		t.Errorf("got %q, %v; want \"keepa b\", ok", got, res)
	}
}

func TestParseQueryDoesNotAllocate(t *testing.T) {
	dst := make([]byte, 0, 64)
	raw := []byte("sessionId=Qo%20YY+Fw2t9oKks2niG")
	for _, o := range []qsOptions{qsMeteor, qsRouter} {
		if n := testing.AllocsPerRun(100, func() { dst, _ = parseQuery(dst[:0], raw, o) }); n != 0 {
			t.Errorf("parseQuery(%+v) allocates %v times, want 0", o, n)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"rbAXPnMktTFbNpwtJ", true},
		{"646ceae9a8c3a3ba32d0e897", true},
		{"a b", true},
		{"é", true},
		{"a:b*c", true},
		{strings.Repeat("a", 256), true},
		{"\xff", true}, // not a control character; simply never found
		{"", false},
		{" ", false},
		{" \t ", false},
		{"\u00a0", false}, // white space by Unicode
		{strings.Repeat("a", 257), false},
		{"{a", false},
		{"a}", false},
		{"a\r\nb", false},
		{"a\x00", false},
		{"a\x7f", false},
		{"a\u0085", false},
		{"a\u009f", false},
	}
	for _, tt := range tests {
		if got := validID([]byte(tt.id)); got != tt.want {
			t.Errorf("validID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

// parseQueryFuzzSeeds seed FuzzParseQuery; the differential test runs them
// too.
var parseQueryFuzzSeeds = []string{
	"", "sessionId=a", "sessionId=", "sessionId=a%20b", "sessionId=a+b", "sessionId[]=a",
	"sessionId[x]=a", "sessionId=a&sessionId=b", "sessionId=a&x=1", "x=1", "sessionId=%zz",
	"sessionId=%E9", "[sessionId]=a", "sessionId=a&__proto__=b", "sessionId=%7B%7D", "sessionId=a%0D%0Ab",
	"sessionId=a&toString=b", "sessionId=a&[sessionId]=", "sessionId=a&x[constructor]=y",
}

// FuzzParseQuery checks parseQuery against a naive reading of the same
// rules on every input: it never panics, a sessionId found is exactly what
// url.QueryUnescape gives for well-formed input, and encoding any id and
// parsing it back returns the id.
func FuzzParseQuery(f *testing.F) {
	for _, s := range parseQueryFuzzSeeds {
		f.Add(s, "id")
	}
	f.Fuzz(func(t *testing.T, raw, id string) {
		got, res := parseQuery(nil, []byte(raw), qsMeteor)
		if value, ok := strings.CutPrefix(raw, "sessionId="); ok && !strings.ContainsAny(value, "&#") && !strings.Contains(value, "]=") {
			// A single plain parameter: valid, and decoded like
			// url.QueryUnescape wherever that succeeds with UTF-8. (qs
			// splits a part at "]=" before '=', so "sessionId=]=" has
			// the key "sessionId=]".)
			if res != queryOK {
				t.Errorf("parseQuery(%q): got %q, want ok", raw, res.message())
			}
			if want, err := url.QueryUnescape(value); err == nil && utf8.ValidString(want) && string(got) != want {
				t.Errorf("parseQuery(%q) = %q, want %q", raw, got, want)
			}
		}
		if utf8.ValidString(id) {
			q := "sessionId=" + url.QueryEscape(id)
			got, res := parseQuery(nil, []byte(q), qsMeteor)
			if res != queryOK || string(got) != id {
				t.Errorf("parseQuery(%q) = %q, %v; want %q, ok", q, got, res, id)
			}
		}
	})
}
