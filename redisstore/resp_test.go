package redisstore

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
)

// parseMGET reads an MGET reply of two values as respConn.mget does.
func parseMGET(reply string) (doc string, tokenFound, docFound bool, err error) {
	doc, tokenFound, _, docFound, err = parseMGETMarked(reply)
	return doc, tokenFound, docFound, err
}

func parseMGETMarked(reply string) (doc string, tokenFound, marked, docFound bool, err error) {
	r := bufio.NewReaderSize(strings.NewReader(reply), 16)
	n, err := readArrayLen(r)
	if err != nil {
		return "", false, false, false, err
	}
	if n != 2 {
		return "", false, false, false, errShortReply
	}
	if tokenFound, marked, err = readBulkMarked(r); err != nil {
		return "", false, false, false, err
	}
	doc, docFound, err = readBulk(r, tokenFound)
	return doc, tokenFound, marked, docFound, err
}

// The token's value is read only as far as the marker, across the
// reader's buffer (16 bytes here) too.
func TestParseMGETMarked(t *testing.T) {
	bulk := func(v string) string { return "$" + strconv.Itoa(len(v)) + "\r\n" + v + "\r\n" }
	for v, want := range map[string]bool{
		`{"verify":true}`:                          true,
		`{"verify":true,"when":"2023-05-23T16"}`:   true,
		`{"verify":true` + strings.Repeat("x", 40): false,
		`{"verify":true`:                           false,
		`{"verify":false}`:                         false,
		`{}`:                                       false,
		``:                                         false,
	} {
		doc, tokenFound, marked, docFound, err := parseMGETMarked("*2\r\n" + bulk(v) + bulk("{}"))
		if err != nil || !tokenFound || marked != want || !docFound || doc != "{}" {
			t.Errorf("token value %q: got %q, %v, marked %v, %v, %v; want marked %v", v, doc, tokenFound, marked, docFound, err, want)
		}
	}
}

func TestParseMGET(t *testing.T) {
	long := strings.Repeat("d", 100) // longer than the reader's buffer
	tests := []struct {
		reply                string
		doc                  string
		tokenFound, docFound bool
		ok                   bool
	}{
		{"*2\r\n$1\r\nt\r\n$2\r\n{}\r\n", "{}", true, true, true},
		{"*2\r\n$1\r\nt\r\n$100\r\n" + long + "\r\n", long, true, true, true},
		{"*2\r\n$100\r\n" + long + "\r\n$2\r\n{}\r\n", "{}", true, true, true},
		{"*2\r\n$1\r\nt\r\n$0\r\n\r\n", "", true, true, true},
		{"*2\r\n$1\r\nt\r\n$-1\r\n", "", true, false, true},
		{"*2\r\n$-1\r\n$2\r\n{}\r\n", "", false, true, true}, // read, not kept
		{"*2\r\n$-1\r\n$-1\r\n", "", false, false, true},
		{"-ERR x\r\n", "", false, false, false},
		{"*1\r\n$-1\r\n", "", false, false, false},
		{"*2\r\n$1\r\nt\r\n$3\r\n{}\r\n", "", false, false, false},
		{"*2\r\n$1\r\nt\r\n$2\r\n{}", "", false, false, false},
		{"*2\r\n$1\r\nt\r\n$+2\r\n{}\r\n", "", false, false, false},
		{"*2\r\n$1\r\nt\r\n$99999999999999999999\r\n", "", false, false, false},
		{"", "", false, false, false},
	}
	for _, tt := range tests {
		doc, tokenFound, docFound, err := parseMGET(tt.reply)
		if (err == nil) != tt.ok || doc != tt.doc || (tt.ok && (tokenFound != tt.tokenFound || docFound != tt.docFound)) {
			t.Errorf("%.40q: got %q, %v, %v, %v; want %q, %v, %v, ok=%v", tt.reply, doc, tokenFound, docFound, err, tt.doc, tt.tokenFound, tt.docFound, tt.ok)
		}
	}
}

func TestNewReplyErrorHidesKeys(t *testing.T) {
	tests := []struct{ line, want string }{
		{"-ERR max number of clients reached", "redis: ERR max number of clients reached"},
		{"-NOPERM no access to rc:{alice}:token:abc=", "redis: NOPERM"},
		{"-rc:{alice}:token:abc=", "redis: ERR"},
	}
	for _, tt := range tests {
		if got := newReplyError([]byte(tt.line)).Error(); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.line, got, tt.want)
		}
	}
}

// FuzzParseMGET: any bytes from the socket give an answer or an error,
// never a panic, and never a document longer than maxDocLen.
//
//	go test -run '^$' -fuzz FuzzParseMGET -fuzztime 20s ./redisstore/
func FuzzParseMGET(f *testing.F) {
	for _, s := range []string{
		"*2\r\n$1\r\nt\r\n$2\r\n{}\r\n",
		"*2\r\n$-1\r\n$-1\r\n",
		"*2\r\n$-1\r\n$2\r\n{}\r\n",
		"-ERR x\r\n",
		"*3\r\n:1\r\n",
		"*2\r\n$1\r\nt\r\n$999999999\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		doc, tokenFound, marked, docFound, err := parseMGETMarked(reply)
		if marked && (err != nil || !tokenFound) {
			t.Errorf("marked without a token value (err %v)", err)
		}
		if err != nil && doc != "" {
			t.Errorf("error %v with a document", err)
		}
		if len(doc) > maxDocLen || (!docFound && doc != "") {
			t.Errorf("document of %d bytes, found=%v", len(doc), docFound)
		}
		if err == nil && !strings.Contains(reply, doc) {
			t.Errorf("document %q not in the reply", doc)
		}
	})
}
