package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/proxy/internal/h1"
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
		lower := strings.Replace(rfChunkHead, "Transfer-Encoding", "transfer-encoding", 1)
		if out, _, err := throughFraming(lower+tt.body, 4096, 8192); !errors.Is(err, errRequestChunked) || out != lower {
			t.Errorf("%s, lower-case field name: %v, passed %q", tt.name, err, out)
		}
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

func scanHead(b []byte) (int, bool) {
	var s headScan
	end := s.scan(b)
	return end, s.framing
}

// headScan spares the parse only for heads without a line that could
// carry framing; any case, any position, a folded line all count.
func TestScanHead(t *testing.T) {
	for _, tt := range []struct {
		head    string
		framing bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"GET /transfer-encoding HTTP/1.1\r\nHost: x\r\nX-Content-Length: 1\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: x\r\ncOnTeNt-LeNgTh: 1\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nHost: x\r\n\r\n", true},
		{"POST / HTTP/1.1\nHost: x\ntransfer-encoding : chunked\n\n", true},
		{"POST / HTTP/1.1\r\nHost: x\r\nX: a\r\n Content-Length: 1\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n", true},
	} {
		end, framing := scanHead([]byte(tt.head + "rest"))
		if end != len(tt.head) || framing != tt.framing {
			t.Errorf("%q: end %d framing %v, want %d %v", tt.head, end, framing, len(tt.head), tt.framing)
		}
	}
	if end, _ := scanHead([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); end != 0 {
		t.Errorf("an unfinished head ends at %d", end)
	}
}

// A head fasthttp's parser refuses, or one too large for it, is fasthttp's
// to answer: the framing check lets it through and stops.
func TestRequestFramingLeavesUnreadableHeadsToFasthttp(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		maxHead  int
	}{
		{"no request line", "\x01\x02\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"x\r\n", 8192},
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
			addr, _ := fwdStartProxy(t, upstream, func(o *Options) { o.EventLoop = loop == "true" })
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

// BenchmarkRequestFraming is the framing check's cost per request on the
// fasthttp path: a browser-sized GET head, and a POST with a chunked body.
func BenchmarkRequestFraming(b *testing.B) {
	get := "GET /api/v1/channels.messages?roomId=GENERAL&count=50 HTTP/1.1\r\nHost: chat.example\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n" +
		"Accept: application/json\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"X-User-Id: aobEdbYhXfu5hkeqG\r\nX-Auth-Token: 9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq\r\n" +
		"Cookie: rc_uid=aobEdbYhXfu5hkeqG; rc_token=9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq\r\n\r\n"
	post := rfChunkHead + "400\r\n" + strings.Repeat("x", 1024) + "\r\n0\r\n\r\n"
	for _, bc := range []struct{ name, req string }{{"get", get}, {"post_chunked_1k", post}} {
		b.Run(bc.name, func(b *testing.B) {
			v := &requestFraming{maxHead: 8192}
			buf := []byte(bc.req)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.scan(buf); err != nil || v.state != rfHead {
					b.Fatal(err, v.state)
				}
			}
		})
	}
}

// FuzzRequestFraming checks that the framing check does not depend on how
// the bytes arrive, and that where it lets a chunked body through, fasthttp
// — which reads the body behind it — ends that body at the same byte.
func FuzzRequestFraming(f *testing.F) {
	f.Add([]byte("5;a=\"x\"\r\nhello\r\n0\r\nX: 1\r\n\r\n"), uint8(3))
	f.Add([]byte("5;a=\"x\r\nhello\r\n0\r\n\r\n"), uint8(1))
	f.Add([]byte("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint8(7))
	f.Fuzz(func(t *testing.T, body []byte, step uint8) {
		in := rfChunkHead + string(body)
		whole, _, errWhole := throughFraming(in, len(in)+1, 8192)
		parts, _, errParts := throughFraming(in, int(step%16)+1, 8192)
		if (errWhole != nil) != (errParts != nil) {
			t.Fatalf("whole: %v, in pieces: %v", errWhole, errParts)
		}
		if errWhole == nil && (whole != in || parts != in) {
			t.Fatalf("accepted, but passed %d and %d of %d bytes", len(whole), len(parts), len(in))
		}
		var d h1.ChunkDecoder
		used := 0
		for used < len(body) && !d.Finished() {
			n, err := d.Frame(body[used:])
			if err != nil {
				return
			}
			m := int(min(int64(len(body)-used-n), d.DataLeft()))
			d.Took(m)
			used += n + m
		}
		if !d.Finished() {
			return
		}
		var req fasthttp.Request
		src := strings.NewReader(in)
		br := bufio.NewReader(src)
		if err := req.ReadLimitBody(br, len(in)+1); err != nil {
			return // fasthttp is stricter: refused either way
		}
		if rest := br.Buffered() + src.Len(); rest != len(body)-used {
			t.Fatalf("the check ends the body at %d, fasthttp at %d", used, len(body)-rest)
		}
	})
}

// FuzzRequestFramingHeads feeds whole requests, heads included, and checks
// that the framing check ends the first request where fasthttp does: an
// end elsewhere would have it check the wrong bytes as the next chunked
// body (or none at all).
func FuzzRequestFramingHeads(f *testing.F) {
	f.Add([]byte(rfGet + rfGet))
	f.Add([]byte(rfLengthHead + "hello, world" + rfGet))
	f.Add([]byte(rfChunkHead + "5\r\nhello\r\n0\r\n\r\n" + rfGet))
	f.Add([]byte("\r\nPOST / HTTP/1.1\nHost: x\ntransfer-encoding: chunked\n\n1\r\na\r\n0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX: a\r\n b\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if bytes.Contains(bytes.ToLower(in), []byte("100-continue")) {
			return // fasthttp's Request.Read leaves that body to the server
		}
		v := &requestFraming{maxHead: 4096}
		end := -1
		for i := range in {
			wasHead, wasBody := len(v.head) > 0, v.state == rfFixed || v.state == rfChunked
			if _, err := v.scan(in[i : i+1]); err != nil {
				return // refused: 400 whatever fasthttp makes of it
			}
			if v.state == rfOff {
				return
			}
			if v.state == rfHead && len(v.head) == 0 && (wasHead || wasBody) {
				end = i + 1
				break
			}
		}
		var req fasthttp.Request
		src := bytes.NewReader(in)
		br := bufio.NewReaderSize(src, 4096)
		// No body can be longer than the input; the limit keeps fasthttp
		// from allocating what a large Content-Length announces.
		if err := req.ReadLimitBody(br, len(in)+1); err != nil {
			return // fasthttp refuses it and closes
		}
		if got := len(in) - br.Buffered() - src.Len(); end != got {
			t.Fatalf("the check ends the first request at %d, fasthttp at %d", end, got)
		}
	})
}
