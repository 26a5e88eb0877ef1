package test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Request smuggling and hostile heads (RFC 9112 §6.3 and §11.2): a
// request the proxy and the upstream could frame differently is refused
// with 400 and never forwarded; what the upstream actually received is
// checked on a raw TCP stand-in.

// rawExchange sends raw on a fresh connection to g and returns the status
// of the answer (0 if the connection closed without one).
func rawExchange(t *testing.T, g *Gate, raw string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", g.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSmugglingRefused(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, nil)
	const h = "POST /api/v1/method.call HTTP/1.1\r\nHost: chat\r\n"
	tests := []struct{ name, raw string }{
		{"content-length and chunked", h + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: chat\r\n\r\n"},
		{"chunked and content-length", h + "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: chat\r\n\r\n"},
		{"two content-lengths", h + "Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello"},
		{"two equal content-lengths", h + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
		{"content-length list", h + "Content-Length: 5, 5\r\n\r\nhello"},
		{"signed content-length", h + "Content-Length: +5\r\n\r\nhello"},
		{"two transfer-encodings", h + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunked not last", h + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{"unknown coding", h + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{"identity coding", h + "Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"},
		{"chunked in HTTP/1.0", "POST / HTTP/1.0\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunk size not hex", h + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
		{"chunk size 0x prefix", h + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"},
		{"chunk size negative", h + "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"},
		{"chunk size overflow", h + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff5\r\nhello\r\n0\r\n\r\n"},
		{"chunk size bare LF", h + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"},
		{"chunk data too long", h + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"},
		{"obsolete line folding", h + "X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
		{"folded transfer-encoding", h + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
		{"bare LF in headers", h + "X-A: 1\nContent-Length: 0\r\n\r\n"},
		{"space before colon", h + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"bare CR in value", h + "X-A: a\rb\r\nContent-Length: 0\r\n\r\n"},
		{"NUL in value", h + "X-A: a\x00b\r\nContent-Length: 0\r\n\r\n"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
		{"no host", "GET / HTTP/1.1\r\n\r\n"},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: chat\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawExchange(t, g, tt.raw); got != 400 {
				t.Errorf("got status %d, want 400", got)
			}
		})
	}
	// The upstream received none of them, in any form.
	up.none(t, 200*time.Millisecond)
	if n := up.total.Load(); n != 0 {
		t.Errorf("upstream got %d connections, want 0", n)
	}
}

// TestBrokenChunkAfterForwardingStarted: a chunked upload that turns
// malformed after its first chunk has gone upstream is cut there: the
// upstream connection is closed before the last chunk, so the upstream
// never sees a complete request nor what followed the bad chunk, and the
// client gets 400.
func TestBrokenChunkAfterForwardingStarted(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c) // everything, until sessiongate closes
		received <- string(b)
	}()
	g := fwdGate(t, "http://"+ln.Addr().String(), nil)
	c, err := net.Dial("tcp", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	time.Sleep(200 * time.Millisecond)
	io.WriteString(c, "zz\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: chat\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Errorf("got %v %v, want 400", resp, err)
	}
	select {
	case got := <-received:
		if !strings.Contains(got, "\r\n\r\n5\r\nhello\r\n") {
			t.Errorf("upstream did not get the first chunk:\n%q", got)
		}
		if strings.HasSuffix(got, "0\r\n\r\n") || strings.Contains(got, "smuggled") {
			t.Errorf("upstream got a complete request or the smuggled one:\n%q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream connection not closed")
	}
}

func TestOversizedHeadRefused(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, map[string]string{"SESSIONGATE_PROXY_MAX_HEADER_BYTES": "4096"})
	tests := []struct {
		name string
		raw  string
		want int
	}{
		{"fits", "GET /?q=" + strings.Repeat("a", 3000) + " HTTP/1.1\r\nHost: chat\r\n\r\n", 200},
		{"long request line", "GET /?q=" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: chat\r\n\r\n", 431},
		{"many headers", "GET / HTTP/1.1\r\nHost: chat\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 90)+"\r\n", 50) + "\r\n", 431},
		{"one huge cookie", "GET / HTTP/1.1\r\nHost: chat\r\nCookie: c=" + strings.Repeat("c", 8000) + "\r\n\r\n", 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawExchange(t, g, tt.raw); got != tt.want {
				t.Errorf("got status %d, want %d", got, tt.want)
			}
		})
	}
	if n := up.total.Load(); n != 1 {
		t.Errorf("upstream connections: got %d, want 1 (only the request that fits)", n)
	}
}

// TestSlowlorisCut: headers trickling in are cut after
// proxy.read_header_timeout, whatever the client keeps sending.
func TestSlowlorisCut(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, map[string]string{"SESSIONGATE_PROXY_READ_HEADER_TIMEOUT": "1s"})
	c, err := net.Dial("tcp", g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	go func() {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: chat\r\n")
		for i := 0; i < 50; i++ {
			if _, err := io.WriteString(c, "X"); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c) // until sessiongate closes the connection
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("connection cut after %v, want about read_header_timeout (1s)", d)
	}
	if n := up.total.Load(); n != 0 {
		t.Errorf("upstream connections: got %d, want 0", n)
	}
}

// TestHeaderInjectionNotForwarded: encoded CR/LF in the target and a value
// are passed on as the inert bytes they are, never decoded into new lines.
func TestHeaderInjectionNotForwarded(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	resp, _ := fwdRoundTrip(t, c, br, "GET /x?a=%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: chat\r\nX-V: %0d%0aX-Injected: 2\r\n\r\n", "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	head := up.next(t)
	for _, line := range fwdHeaderLines(head) {
		if strings.HasPrefix(line, "X-Injected") {
			t.Errorf("upstream got an injected line %q:\n%s", line, head)
		}
	}
}

// TestBareLFRequestNeverForwarded: a head ended only by bare LFs is not a
// complete HTTP/1.1 head to fasthttp, which waits for CRLFCRLF; the request
// is held until proxy.read_header_timeout and answered 408, never
// forwarded. (A bare LF inside a CRLF-terminated head is a 400, above.)
func TestBareLFRequestNeverForwarded(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, map[string]string{"SESSIONGATE_PROXY_READ_HEADER_TIMEOUT": "1s"})
	start := time.Now()
	if got := rawExchange(t, g, "GET / HTTP/1.1\nHost: chat\n\n"); got != 408 {
		t.Errorf("got status %d, want 408", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %v, want about read_header_timeout (1s)", d)
	}
	if n := up.total.Load(); n != 0 {
		t.Errorf("upstream connections: got %d, want 0", n)
	}
}
