package test

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// strayUpstream is a raw upstream for the reuse tests: it answers a request
// for /<case> the way that case misbehaves, and any other request for
// /<path> with a 200 whose body is "for /<path>".
func strayUpstream(t *testing.T) *fwdUpstream {
	// A complete response, so a connection that carries it on looks
	// like it answered the next request.
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTRAY!"
	return fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		line, _, _ := strings.Cut(head, "\r\n")
		f := strings.Fields(line)
		method, path := f[0], f[1]
		answer := func(body string) string {
			return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		}
		switch path {
		case "/beyond-length":
			io.WriteString(c, answer("first")+stray)
		case "/beyond-long-length":
			io.WriteString(c, answer(strings.Repeat("x", 100<<10))+stray)
		case "/no-content":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n"+stray)
		case "/not-modified":
			io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n"+stray)
		case "/head":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(stray))+"\r\n\r\n"+stray)
		case "/after-last-chunk":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n"+stray)
		case "/while-idle":
			io.WriteString(c, answer("first"))
			time.Sleep(100 * time.Millisecond)
			io.WriteString(c, stray)
		default:
			if method == "HEAD" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
				return
			}
			io.WriteString(c, answer("for "+path))
		}
	})
}

// TestUpstreamConnReusedOnlyWhenClean: with one upstream connection for all,
// a response that leaves bytes behind (beyond its Content-Length, after a
// 204/304/HEAD, after the last chunk, or sent while the connection is idle)
// must not let those bytes answer the next client's request.
func TestUpstreamConnReusedOnlyWhenClean(t *testing.T) {
	t.Parallel()
	up := strayUpstream(t)
	g := fwdGate(t, up.URL, map[string]string{
		"SESSIONGATE_UPSTREAM_MAX_CONNS": "1",
		// One loop, so both clients share its idle connections.
		"SESSIONGATE_PROXY_EVENT_LOOPS": "1",
	})
	get := func(t *testing.T, method, path string) (int, string) {
		t.Helper()
		c, br := fwdDial(t, g)
		defer c.Close()
		resp, body := fwdRoundTrip(t, c, br, method+" "+path+" HTTP/1.1\r\nHost: chat\r\n\r\n", method)
		return resp.StatusCode, string(body)
	}

	// The control: a clean response leaves its connection to the next
	// client (else the cases below would prove nothing).
	get(t, "GET", "/a")
	before := up.total.Load()
	if code, body := get(t, "GET", "/b"); code != 200 || body != "for /b" {
		t.Fatalf("control: got %d %q, want 200 \"for /b\"", code, body)
	}
	if up.total.Load() != before {
		t.Fatalf("control: a clean upstream connection was not reused (%d connections, want %d)", up.total.Load(), before)
	}

	cases := []struct {
		name, method, path, want string
	}{
		{"bytes beyond Content-Length", "GET", "/beyond-length", "first"},
		{"bytes beyond a long Content-Length", "GET", "/beyond-long-length", strings.Repeat("x", 100<<10)},
		{"a body after 204", "GET", "/no-content", ""},
		{"a body after 304", "GET", "/not-modified", ""},
		{"a body after HEAD", "HEAD", "/head", ""},
		{"bytes after the last chunk", "GET", "/after-last-chunk", "first"},
		{"bytes while idle", "GET", "/while-idle", "first"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, body := get(t, tc.method, tc.path); body != tc.want {
				t.Errorf("first client: got %.60q, want %.60q", body, tc.want)
			}
			time.Sleep(300 * time.Millisecond) // the stray bytes of the idle case arrive
			next := "/next" + strconv.Itoa(i)
			code, body := get(t, "GET", next)
			if code != 200 || body != "for "+next {
				t.Errorf("second client: got %d %.60q, want 200 %q", code, body, "for "+next)
			}
		})
	}
}
