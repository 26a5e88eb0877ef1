package h1

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestFilterResponseHeadRefuses: every head that breaks RFC 9112 is refused
// by the one check both request paths call, so both answer 502.
func TestFilterResponseHeadRefuses(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\n"
	tests := []struct{ name, block string }{
		{"NUL in value", ok + "X-A: a\x00b\r\n\r\n"},
		{"bare CR in value", ok + "X-A: a\rb\r\n\r\n"},
		{"CR before CRLF", ok + "X-A: ab\r\r\n\r\n"},
		{"control byte in value", ok + "X-A: a\x1bb\r\n\r\n"},
		{"DEL in value", ok + "X-A: a\x7fb\r\n\r\n"},
		{"space before colon", ok + "X-A : b\r\n\r\n"},
		{"tab before colon", ok + "X-A\t: b\r\n\r\n"},
		{"separator in name", ok + "X(A): b\r\n\r\n"},
		{"no name", ok + ": b\r\n\r\n"},
		{"no colon", ok + "X-A b\r\n\r\n"},
		{"obsolete line folding", ok + "X-A: a\r\n b\r\n\r\n"},
		{"two equal Content-Lengths", ok + "Content-Length: 2\r\nContent-Length: 2\r\n\r\n"},
		{"two Content-Lengths", ok + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n"},
		{"Content-Length list", ok + "Content-Length: 2, 2\r\n\r\n"},
		{"signed Content-Length", ok + "Content-Length: +2\r\n\r\n"},
		{"empty Content-Length", ok + "Content-Length: \r\n\r\n"},
		{"Content-Length and chunked", ok + "Content-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"chunked and Content-Length", ok + "Transfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n"},
		{"two Transfer-Encodings", ok + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"gzip, chunked", ok + "Transfer-Encoding: gzip, chunked\r\n\r\n"},
		{"HTTP/2", "HTTP/2 200 OK\r\n\r\n"},
		{"HTTP/1.x", "HTTP/1.x 200 OK\r\n\r\n"},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n"},
		{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"},
		{"status 099", "HTTP/1.1 099 OK\r\n\r\n"},
		{"letter in status", "HTTP/1.1 2x0 OK\r\n\r\n"},
		{"NUL in reason", "HTTP/1.1 200 O\x00K\r\n\r\n"},
		{"bare CR in reason", "HTTP/1.1 200 O\rK\r\n\r\n"},
		{"two spaces after version", "HTTP/1.1  200 OK\r\n\r\n"},
		{"over the limit", ok + strings.Repeat("X-Big: "+strings.Repeat("b", 100)+"\r\n", 160) + "\r\n"},
		{"over the limit once re-issued with CRLF", "HTTP/1.1 200 OK\n" + strings.Repeat("X-B: b\n", 2200) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := FilterResponseHead(nil, []byte(tt.block))
			if !errors.Is(err, ErrBadResponse) && !errors.Is(err, ErrHeadTooLarge) {
				t.Errorf("got error %v, want ErrBadResponse or ErrHeadTooLarge", err)
			}
		})
	}
}

// TestFilterResponseHeadAccepts: what RFC 9112 allows passes.
func TestFilterResponseHeadAccepts(t *testing.T) {
	for _, block := range []string{
		"HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\tb\r\nContent-Length: 2\r\n\r\n", // obs-text, HTAB
		"HTTP/1.1 200\r\n\r\n",                                     // no reason phrase
		"HTTP/1.1 599 Whatever \r\n\r\n",                           // odd status, trailing SP
		"HTTP/1.0 200 OK\nX-A: b\n\n",                              // bare LF lines
		"HTTP/1.1 204 No Content\r\nX!#$%&'*+-.^_`|~09: v\r\n\r\n", // every tchar
		"HTTP/1.1 200 OK\r\nX-A:\r\n\r\n",                          // empty value
		"HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Big: "+strings.Repeat("b", 100)+"\r\n", 140) + "\r\n",
	} {
		if _, _, _, err := FilterResponseHead(nil, []byte(block)); err != nil {
			t.Errorf("FilterResponseHead(%.60q): %v", block, err)
		}
	}
}

// FuzzFilterResponseHeadAgreesWithFasthttp: whatever FilterResponseHead
// accepts, fasthttp's parser (which the fasthttp path runs on its output)
// accepts too, so the event loop, which relays the output as it is, never
// passes a head the other path answers with 502.
func FuzzFilterResponseHeadAgreesWithFasthttp(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nConnection: keep-alive, x\r\nX: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.0 204 No Content\nKeep-Alive: 1\n\n",
		"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	br := bufio.NewReaderSize(nil, MaxResponseHeadBytes+512)
	f.Fuzz(func(t *testing.T, block []byte) {
		if end := HeadEnd(block); end == 0 || end != len(block) {
			return // not one whole head
		}
		out, code, _, err := FilterResponseHead(nil, block)
		if err != nil || code < 200 {
			return
		}
		var h fasthttp.ResponseHeader
		h.DisableNormalizing()
		br.Reset(bytes.NewReader(out))
		if err := h.Read(br); err != nil {
			t.Fatalf("FilterResponseHead accepted %q as %q, fasthttp refuses it: %v", block, out, err)
		}
	})
}
