package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
)

// fwdSlowUpstream answers every request on a connection it reads, in
// order, with the steps of answers[i]: each step is written after its
// pause. It serves one connection at a time, keep-alive.
func fwdSlowUpstream(t *testing.T, answers [][]fwdStep) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		i := 0
		for i < len(answers) {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			for ; i < len(answers); i++ {
				req, err := http.ReadRequest(br)
				if err != nil {
					break
				}
				io.Copy(io.Discard, req.Body)
				for _, s := range answers[i] {
					time.Sleep(s.pause)
					if _, err := io.WriteString(c, s.data); err != nil {
						break
					}
				}
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

type fwdStep struct {
	pause time.Duration
	data  string
}

// TestForwardSlowSmallBody: a small Content-Length body that arrives more
// than exchange.LivenessInterval after its head is still relayed. Each wait for a
// body byte is bounded by upstream.response_header_timeout, not by what is
// left of the liveness deadline armed for the head.
func TestForwardSlowSmallBody(t *testing.T) {
	up := fwdSlowUpstream(t, [][]fwdStep{{
		{0, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"},
		{exchange.LivenessInterval + 300*time.Millisecond, "hello"},
	}})
	addr, _ := fwdStartProxy(t, "http://"+up, withResponseHeaderTimeout(5*time.Second))
	status, body := fwdGet(t, addr)
	if status != 200 || body != "hello" {
		t.Fatalf("got %d %q, want 200 \"hello\"", status, body)
	}
}

// TestForwardKeptDeadlineRearms: the second request on a kept-alive
// upstream connection reuses the deadline armed for the first (armDeadline);
// an upstream slower than that deadline but within
// upstream.response_header_timeout is still waited for, and one slower than
// the timeout is answered 504. It is about the fasthttp path's
// upstreamConn; the event loop keeps one idle pool per loop, so its
// second request may go out on another connection, which this upstream
// (one connection at a time) would not serve.
func TestForwardKeptDeadlineRearms(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	up := fwdSlowUpstream(t, [][]fwdStep{
		{{0, ok}},
		{{exchange.LivenessInterval + 300*time.Millisecond, ok}},
		{{0, ok}},
	})
	addr, _ := fwdStartProxy(t, "http://"+up, withResponseHeaderTimeout(3*time.Second), withoutEventLoop)
	for i, want := range []int{200, 200} {
		if status, body := fwdGet(t, addr); status != want || body != "ok" {
			t.Fatalf("request %d: got %d %q, want %d \"ok\"", i, status, body, want)
		}
	}

	up2 := fwdSlowUpstream(t, [][]fwdStep{
		{{0, ok}},
		{{2 * time.Second, ok}},
	})
	addr2, _ := fwdStartProxy(t, "http://"+up2, withResponseHeaderTimeout(1500*time.Millisecond), withoutEventLoop)
	if status, _ := fwdGet(t, addr2); status != 200 {
		t.Fatalf("first request: got %d, want 200", status)
	}
	if status, _ := fwdGet(t, addr2); status != 504 {
		t.Fatalf("slow request: got %d, want 504", status)
	}
}

// fwdGet sends one GET through the proxy on a new connection.
func fwdGet(t *testing.T, addr string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /api/v1/me HTTP/1.1\r\nHost: chat.example\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
