package sessions

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidJSONObject(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{`{}`, true},
		{` { } `, true},
		{seedDoc, true},
		{`{"a":[1,-2.5e+3,0,"x\"\\\/\b\f\n\r\t\u00e9",true,false,null,{},[]]}`, true},
		{`{"a":{"b":{"c":[[[]]]}}}`, true},
		{"{\"a\":\"\xff\"}", true},
		{``, false},
		{` `, false},
		{`[]`, false},
		{`"s"`, false},
		{`1`, false},
		{`null`, false},
		{`{`, false},
		{`}`, false},
		{`{"a"}`, false},
		{`{"a":}`, false},
		{`{"a":1,}`, false},
		{`{,"a":1}`, false},
		{`{"a":1}}`, false},
		{`{"a":1} {}`, false},
		{`{"a":[1,]}`, false},
		{`{"a":[1}`, false},
		{`{"a":{]}`, false},
		{`{"a":01}`, false},
		{`{"a":1.}`, false},
		{`{"a":.5}`, false},
		{`{"a":1e}`, false},
		{`{"a":-}`, false},
		{`{"a":tru}`, false},
		{`{"a":"\x"}`, false},
		{`{"a":"\u12"}`, false},
		{"{\"a\":\"\x01\"}", false},
		{`{"a":"unterminated}`, false},
		{`{a:1}`, false},
		{`{"a" 1}`, false},
		{strings.Repeat(`{"a":`, maxJSONDepth) + `1` + strings.Repeat(`}`, maxJSONDepth), true},
		{strings.Repeat(`{"a":`, maxJSONDepth+1) + `1` + strings.Repeat(`}`, maxJSONDepth+1), false},
	}
	for _, tt := range tests {
		if got := validJSONObject(tt.s); got != tt.want {
			t.Errorf("validJSONObject(%.80q) = %v, want %v", tt.s, got, tt.want)
		}
		if tt.want && !json.Valid([]byte(tt.s)) {
			t.Errorf("json.Valid disagrees on %.80q", tt.s)
		}
	}
}

// FuzzValidJSONObject checks validJSONObject against encoding/json.
func FuzzValidJSONObject(f *testing.F) {
	for _, s := range []string{`{}`, seedDoc, `{"a":[1,2,{"b":null}]}`, `{"a":"\u00e9\n"}`, `{"a":1e-5}`, `[1]`, `{"a":}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := validJSONObject(s)
		want := json.Valid([]byte(s)) && strings.HasPrefix(trimJSONSpace(s), "{")
		if got && !want {
			t.Fatalf("validJSONObject(%q) = true, json.Valid: false", s)
		}
		if !got && want && strings.Count(s, "{")+strings.Count(s, "[") <= maxJSONDepth {
			t.Fatalf("validJSONObject(%q) = false, json.Valid: true", s)
		}
	})
}

func BenchmarkValidJSONObject(b *testing.B) {
	b.SetBytes(int64(len(seedDoc)))
	for b.Loop() {
		validJSONObject(seedDoc)
	}
}

func BenchmarkJSONValid(b *testing.B) {
	doc := []byte(seedDoc)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		json.Valid(doc)
	}
}

func TestHasStringSpecial(t *testing.T) {
	special := func(c byte) bool { return c < 0x20 || c == '"' || c == '\\' }
	naive := func(w uint64) bool {
		for k := range 8 {
			if special(byte(w >> (8 * k))) {
				return true
			}
		}
		return false
	}
	// Every byte value at every position, among plain and among high bytes
	// (borrows from a neighbour must not hide or invent a match).
	for _, fill := range []byte{'a', 0xff, 0x80, 0x21, '"' + 1, '\\' + 1} {
		for c := range 256 {
			for p := range 8 {
				b := []byte(strings.Repeat(string(fill), 8))
				b[p] = byte(c)
				w := load64(string(b), 0)
				if got, want := hasStringSpecial(w), naive(w); got != want {
					t.Fatalf("hasStringSpecial(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}
