package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// pieces reads s in reads of at most step bytes.
type pieces struct {
	s    string
	step int
}

func (p *pieces) Read(b []byte) (int, error) {
	if p.s == "" {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), p.step)], p.s)
	p.s = p.s[n:]
	return n, nil
}

// throughFraming reads in through a requestFraming, step bytes at a time,
// and returns what it let through and the error that stopped it.
func throughFraming(in string, step, maxHead int) (string, *requestFraming, error) {
	v := &requestFraming{maxHead: maxHead}
	r := &pieces{s: in, step: step}
	var out strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := v.read(r, buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.String(), v, nil
		}
		if err != nil {
			return out.String(), v, err
		}
	}
}

const (
	rfGet        = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	rfChunkHead  = "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	rfLengthHead = "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n"
)

func TestRequestFramingPassesWellFramedRequests(t *testing.T) {
	in := "\r\n" + rfGet +
		rfChunkHead + "5;a=\"x;\\\"y\"\r\nhello\r\n3; q = \"v\" \r\nabc\r\n0\r\nX-T: 1\r\n\r\n" +
		// A Content-Length body is not chunked, whatever it looks like.
		rfLengthHead + "5;a=\"x\r\nhel" +
		rfGet
	for _, step := range []int{1, 2, 5, 13, 4096} {
		out, v, err := throughFraming(in, step, 8192)
		if err != nil || out != in {
			t.Fatalf("pieces of %d: %v, passed %d of %d bytes", step, err, len(out), len(in))
		}
		if v.state != rfHead || len(v.head) != 0 {
			t.Fatalf("pieces of %d: ended in state %d with %d head bytes held", step, v.state, len(v.head))
		}
	}
}

func TestRequestFramingRefusesMalformedChunks(t *testing.T) {
	for _, tt := range []struct{ name, body string }{
		{"unterminated quoted-string", "5;a=\"x\r\nhello\r\n0\r\n\r\n"},
		{"quoted-string over CRLF", "5;a=\"\r\n\"\r\nhello\r\n0\r\n\r\n"},
		{"NUL in an extension", "5;a\x00\r\nhello\r\n0\r\n\r\n"},
		{"whitespace before ;", "5 ;a\r\nhello\r\n0\r\n\r\n"},
		{"size overflow", "10000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"leading junk in a size", " 5\r\nhello\r\n0\r\n\r\n"},
		{"LF-only size line", "5\nhello\r\n0\r\n\r\n"},
		{"LF-only after data", "5\r\nhello\n0\r\n\r\n"},
		{"bad second chunk", "5\r\nhello\r\n1;=\r\nx\r\n0\r\n\r\n"},
		{"trailer with a bare LF", "5\r\nhello\r\n0\r\nX: a\n\r\n"},
		{"trailer, obsolete folding", "5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"},
		{"trailer, no colon", "5\r\nhello\r\n0\r\nX\r\n\r\n"},
	} {
		// Behind a well-framed request, in one read: fasthttp gets the
		// first request and the bad one's head, so it answers both.
		in := rfGet + rfChunkHead + tt.body + rfGet
		out, _, err := throughFraming(in, 1<<20, 8192)
		if !errors.Is(err, errRequestChunked) {
			t.Errorf("%s: error %v, want %v", tt.name, err, errRequestChunked)
		}
		if out != rfGet+rfChunkHead {
			t.Errorf("%s: passed %q, want up to the bad request's body", tt.name, out)
		}
		// In small pieces, the read that carries the fault fails and no
		// byte of it or after it passes.
		for _, step := range []int{1, 3} {
			out, _, err := throughFraming(in, step, 8192)
			if !errors.Is(err, errRequestChunked) {
				t.Errorf("%s, pieces of %d: error %v", tt.name, step, err)
			}
			if len(out) >= len(rfGet+rfChunkHead+tt.body) {
				t.Errorf("%s, pieces of %d: passed all of the body", tt.name, step)
			}
		}
	}
}

// A head fasthttp's parser refuses, or one too large for it, is fasthttp's
// to answer: the framing check lets it through and stops.
func TestRequestFramingLeavesUnreadableHeadsToFasthttp(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		maxHead  int
	}{
		{"no request line", "\x01\x02\r\n\r\n5;a=\"x\r\n", 8192},
		{"head above the limit", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 200) + "\r\n\r\n5;a=\"x\r\n", 100},
	} {
		out, v, err := throughFraming(tt.in, 7, tt.maxHead)
		if err != nil || out != tt.in || v.state != rfOff {
			t.Errorf("%s: %v, passed %q, state %d", tt.name, err, out, v.state)
		}
	}
}

// Once refused, a connection stays refused.
func TestRequestFramingErrorSticks(t *testing.T) {
	v := &requestFraming{maxHead: 8192}
	buf := make([]byte, 4096)
	v.read(&pieces{s: rfChunkHead, step: 4096}, buf)
	if _, err := v.read(&pieces{s: "5;a=\"x\r\n", step: 4096}, buf); !errors.Is(err, errRequestChunked) {
		t.Fatalf("error %v", err)
	}
	if n, err := v.read(&pieces{s: rfGet, step: 4096}, buf); n != 0 || !errors.Is(err, errRequestChunked) {
		t.Fatalf("after the refusal: %d bytes, %v", n, err)
	}
}

// Once a connection carries a WebSocket tunnel its bytes are frames: ones
// that read like a malformed chunked request pass through unchanged, on
// both request paths.
func TestRequestFramingStopsInTunnel(t *testing.T) {
	frames := rfChunkHead + "5;a=\"x\r\nhello\r\n"
	for _, loop := range []string{"true", "false"} {
		t.Run("event_loop="+loop, func(t *testing.T) {
			upstream := rawUpstream(t, func(c net.Conn, _ []byte, br *bufio.Reader) {
				io.WriteString(c, wsUpstreamHead)
				b := make([]byte, len(frames))
				if _, err := io.ReadFull(br, b); err == nil {
					c.Write(b)
				}
			})
			addr, _ := fwdStartProxy(t, upstream, "--proxy.event_loop="+loop)
			c := dialTunnel(t, addr)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, frames)
			got := make([]byte, len(frames))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != frames {
				t.Fatalf("echo %q, %v; want the frames unchanged", got, err)
			}
		})
	}
}
