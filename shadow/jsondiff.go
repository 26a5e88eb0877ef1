package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// value is a parsed JSON value that keeps object members in order, which
// encoding/json's maps do not: member order is part of the route's
// byte-exactness ("success" comes last).
type value struct {
	kind    kind
	text    string   // a string's value, a number's literal
	bool    bool     // a boolean's value
	members []member // an object's members, in order
	items   []value  // an array's items
}

type member struct {
	name  string
	value value
}

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

var kindNames = [...]string{"null", "boolean", "number", "string", "array", "object"}

func (k kind) String() string { return kindNames[k] }

// maxDepth bounds nesting, so a hostile body cannot exhaust the stack.
const maxDepth = 64

var errDepth = errors.New("shadow: JSON nested too deep")

// parseJSON parses b as one JSON value with nothing after it.
func parseJSON(b []byte) (value, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return value{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return value{}, errors.New("shadow: data after the JSON value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (value, error) {
	if depth > maxDepth {
		return value{}, errDepth
	}
	tok, err := dec.Token()
	if err != nil {
		return value{}, err
	}
	switch t := tok.(type) {
	case nil:
		return value{kind: kindNull}, nil
	case bool:
		return value{kind: kindBool, bool: t}, nil
	case json.Number:
		return value{kind: kindNumber, text: string(t)}, nil
	case string:
		return value{kind: kindString, text: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := value{kind: kindArray}
			for dec.More() {
				item, err := parseValue(dec, depth+1)
				if err != nil {
					return value{}, err
				}
				v.items = append(v.items, item)
			}
			_, err := dec.Token() // ']'
			return v, err
		case '{':
			v := value{kind: kindObject}
			for dec.More() {
				name, err := dec.Token()
				if err != nil {
					return value{}, err
				}
				m, err := parseValue(dec, depth+1)
				if err != nil {
					return value{}, err
				}
				v.members = append(v.members, member{name: name.(string), value: m})
			}
			_, err := dec.Token() // '}'
			return v, err
		}
	}
	return value{}, fmt.Errorf("shadow: unexpected JSON token %v", tok)
}

// jsonEqual reports whether a and b are the same JSON value: objects equal
// whatever their member order, numbers equal by value.
func jsonEqual(a, b []byte) bool {
	va, errA := parseJSON(a)
	vb, errB := parseJSON(b)
	return errA == nil && errB == nil && equal(va, vb)
}

func equal(a, b value) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case kindNull:
		return true
	case kindBool:
		return a.bool == b.bool
	case kindString:
		return a.text == b.text
	case kindNumber:
		return numberEqual(a.text, b.text)
	case kindArray:
		if len(a.items) != len(b.items) {
			return false
		}
		for i := range a.items {
			if !equal(a.items[i], b.items[i]) {
				return false
			}
		}
		return true
	default:
		if len(a.members) != len(b.members) {
			return false
		}
		for _, m := range a.members {
			o, ok := lookup(b, m.name)
			if !ok || !equal(m.value, o) {
				return false
			}
		}
		return true
	}
}

// numberEqual compares two JSON number literals by value ("1.0" and "1",
// "1e2" and "100"), as JSON.parse would see them.
func numberEqual(a, b string) bool {
	if a == b {
		return true
	}
	x, okA := new(big.Float).SetPrec(256).SetString(a)
	y, okB := new(big.Float).SetPrec(256).SetString(b)
	return okA && okB && x.Cmp(y) == 0
}

func lookup(obj value, name string) (value, bool) {
	for _, m := range obj.members {
		if m.name == name {
			return m.value, true
		}
	}
	return value{}, false
}

// topString returns the string member name of the JSON object in b, or "".
func topString(b []byte, name string) string {
	v, err := parseJSON(b)
	if err != nil || v.kind != kindObject {
		return ""
	}
	m, ok := lookup(v, name)
	if !ok || m.kind != kindString {
		return ""
	}
	return m.text
}

// protocolMembers are the top-level members of the route's answers whose
// values are its own words, never user data: the diff quotes them. Every
// other value (the session document's: ids, addresses, the session's
// loginToken, which is a token hash) is described by type and length only.
var protocolMembers = map[string]bool{
	"success": true, "error": true, "errorType": true, "status": true, "message": true,
}

// maxDiffItems bounds the differences a diff lists.
const maxDiffItems = 6

// diffBodies describes how sessiongate's body own and the upstream's up
// differ, briefly and safe to log (see protocolMembers).
func diffBodies(own, up []byte) string {
	if bytes.Equal(own, up) {
		return "same bytes"
	}
	va, errA := parseJSON(own)
	vb, errB := parseJSON(up)
	switch {
	case errA != nil && errB != nil:
		return fmt.Sprintf("neither body is JSON (%d vs %d bytes)", len(own), len(up))
	case errA != nil:
		return fmt.Sprintf("sessiongate's body is not JSON (%d bytes)", len(own))
	case errB != nil:
		return fmt.Sprintf("upstream's body is not JSON (%d bytes)", len(up))
	}
	d := differ{}
	d.walk("", va, vb, true)
	if len(d.items) == 0 {
		d.order("", va, vb)
	}
	if len(d.items) == 0 {
		i := 0
		for i < len(own) && i < len(up) && own[i] == up[i] {
			i++
		}
		return fmt.Sprintf("same JSON, same member order; bytes differ from offset %d (white space, escapes or number forms)", i)
	}
	s := strings.Join(d.items, "; ")
	if d.more > 0 {
		s += fmt.Sprintf("; and %d more", d.more)
	}
	return s
}

type differ struct {
	items []string
	more  int
}

func (d *differ) add(format string, args ...any) {
	if len(d.items) >= maxDiffItems {
		d.more++
		return
	}
	item := fmt.Sprintf(format, args...)
	if len(item) > maxItemLen {
		item = item[:maxItemLen] + "..."
	}
	d.items = append(d.items, item)
}

// maxItemLen bounds one listed difference (member names are the upstream's
// and may be long).
const maxItemLen = 200

func pathOf(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// walk lists value differences between a (sessiongate's) and b (the
// upstream's); top says a and b are the bodies themselves, whose protocol
// members may be quoted.
func (d *differ) walk(path string, a, b value, top bool) {
	where := path
	if where == "" {
		where = "body"
	}
	switch {
	case a.kind != b.kind:
		d.add("%s: %s vs %s", where, a.kind, b.kind)
	case a.kind == kindObject:
		if top {
			// The route's own words first: they say the most.
			for _, m := range a.members {
				if o, ok := lookup(b, m.name); ok && protocolMembers[m.name] && !equal(m.value, o) {
					d.add("%s: %s vs %s", m.name, show(m.value), show(o))
				}
			}
		}
		var onlyA, onlyB []member
		for _, m := range a.members {
			o, ok := lookup(b, m.name)
			switch {
			case !ok:
				onlyA = append(onlyA, m)
			case top && protocolMembers[m.name]:
			default:
				d.walk(pathOf(path, m.name), m.value, o, false)
			}
		}
		for _, m := range b.members {
			if _, ok := lookup(a, m.name); !ok {
				onlyB = append(onlyB, m)
			}
		}
		for _, only := range []struct {
			side    string
			members []member
		}{{"sessiongate's", onlyA}, {"upstream's", onlyB}} {
			switch len(only.members) {
			case 0:
			case 1:
				d.add("%s: only in %s", pathOf(path, only.members[0].name), only.side)
			default:
				d.add("%s: %d members only in %s: %s", where, len(only.members), only.side, names(only.members))
			}
		}
	case a.kind == kindArray:
		if len(a.items) != len(b.items) {
			d.add("%s: %d vs %d items", where, len(a.items), len(b.items))
			return
		}
		for i := range a.items {
			d.walk(fmt.Sprintf("%s[%d]", path, i), a.items[i], b.items[i], false)
		}
	case !equal(a, b):
		d.add("%s: %s vs %s", where, describeValue(a), describeValue(b))
	}
}

// order lists objects whose members are the same but in another order;
// walk found no value difference.
func (d *differ) order(path string, a, b value) {
	switch a.kind {
	case kindObject:
		for i := range a.members {
			if a.members[i].name != b.members[i].name {
				where := path
				if where == "" {
					where = "body"
				}
				d.add("%s: member order differs from member %d: sessiongate's %s, upstream's %s",
					where, i, names(a.members[i:]), names(b.members[i:]))
				return
			}
		}
		for _, m := range a.members {
			o, _ := lookup(b, m.name)
			d.order(pathOf(path, m.name), m.value, o)
		}
	case kindArray:
		for i := range a.items {
			d.order(fmt.Sprintf("%s[%d]", path, i), a.items[i], b.items[i])
		}
	}
}

// names lists up to four member names.
func names(ms []member) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, m := range ms {
		if i == 4 {
			b.WriteString(",...")
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.name)
	}
	b.WriteByte(']')
	return b.String()
}

// describeValue says what a value is without showing it.
func describeValue(v value) string {
	switch v.kind {
	case kindString:
		return fmt.Sprintf("string(%d)", len(v.text))
	case kindNumber:
		return fmt.Sprintf("number(%d)", len(v.text))
	case kindArray:
		return fmt.Sprintf("array(%d)", len(v.items))
	case kindObject:
		return fmt.Sprintf("object(%d)", len(v.members))
	default:
		return v.kind.String()
	}
}

// show writes a protocol member's value: quoted when a string or boolean,
// described otherwise.
func show(v value) string {
	switch v.kind {
	case kindString:
		return quoteShort(v.text)
	case kindBool:
		return fmt.Sprint(v.bool)
	case kindNull:
		return "null"
	}
	return describeValue(v)
}
