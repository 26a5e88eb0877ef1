package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Black-box tests of forwarding (docs/forwarding.md): the built binary between a client
// speaking raw HTTP/1.1 and a stand-in upstream on loopback, so what the
// upstream receives and what the client gets can be compared byte for byte.

// fwdGate starts sessiongate forwarding to upstreamURL, with extra settings
// (SESSIONGATE_* names) on top of GateEnv.
func fwdGate(t *testing.T, upstreamURL string, extra map[string]string) *Gate {
	t.Helper()
	env := GateEnv(upstreamURL, StartRedis(t).URL())
	for k, v := range extra {
		env[k] = v
	}
	return StartGate(t, env)
}

// fwdUpstream is Upstream driven by a handler that writes each answer on
// the raw connection itself, for peers whose misbehaviour is a matter of
// timing (a trickle, a stall, a close mid-body) rather than of bytes.
type fwdUpstream struct {
	*Upstream
	URL   string
	open  fwdCount
	total fwdCount
}

// fwdCount reads one of Upstream's connection counters.
type fwdCount func() int64

func (c fwdCount) Load() int64 { return c() }

// fwdStartUpstream starts an Upstream whose answer to each request is
// written by handle (head is the request head, body its decoded body); a
// nil handle answers 200 "ok".
func fwdStartUpstream(t *testing.T, handle func(c net.Conn, head string, body []byte)) *fwdUpstream {
	t.Helper()
	var script func(*Req) Answer
	if handle != nil {
		script = func(r *Req) Answer {
			return Answer{Keep: true, Take: func(c net.Conn, _ *bufio.Reader) { handle(c, r.Head, r.Body) }}
		}
	}
	u := StartUpstream(t, script)
	return &fwdUpstream{Upstream: u, URL: u.URL, open: u.Open, total: u.Total}
}

// next returns the next recorded request head.
func (u *fwdUpstream) next(t *testing.T) string {
	t.Helper()
	return u.Next(t).Head
}

// none fails if the upstream got a request head within d.
func (u *fwdUpstream) none(t *testing.T, d time.Duration) {
	t.Helper()
	u.None(t, d)
}

// fwdReadHead reads one request or response head, up to its empty line.
func fwdReadHead(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" || line == "\n" {
			return b.String(), nil
		}
		if b.Len() > 1<<20 {
			return b.String(), fmt.Errorf("head too long")
		}
	}
}

// fwdContentLength is the head's Content-Length, or 0.
func fwdContentLength(head string) int {
	for _, line := range strings.Split(head, "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(name, "Content-Length") {
			n, _ := strconv.Atoi(strings.TrimSpace(value))
			return n
		}
	}
	return 0
}

// fwdHeaderLines are the field lines of a head, without the start line.
func fwdHeaderLines(head string) []string {
	lines := strings.Split(strings.TrimRight(head, "\r\n"), "\r\n")
	return lines[1:]
}

// fwdDial opens a raw client connection to the gate, closed at cleanup.
func fwdDial(t *testing.T, g *Gate) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", g.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// fwdRoundTrip sends raw on c and reads one response (its body included).
func fwdRoundTrip(t *testing.T, c net.Conn, br *bufio.Reader, raw, method string) (*http.Response, []byte) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, body
}

func TestForwardEveryMethod(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, head string, body []byte) {
		method, _, _ := strings.Cut(head, " ")
		if method == "HEAD" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n")
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s", len(method)+len(body), method+string(body))
	})
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "X-CUSTOM"} {
		t.Run(method, func(t *testing.T) {
			body := ""
			if method == "POST" || method == "PUT" || method == "PATCH" || method == "PROPFIND" {
				body = "payload"
			}
			raw := fmt.Sprintf("%s /api/v1/thing HTTP/1.1\r\nHost: chat\r\nContent-Length: %d\r\n\r\n%s", method, len(body), body)
			if body == "" {
				raw = method + " /api/v1/thing HTTP/1.1\r\nHost: chat\r\n\r\n"
			}
			resp, got := fwdRoundTrip(t, c, br, raw, method)
			head := up.next(t)
			if want := method + " /api/v1/thing HTTP/1.1\r\n"; !strings.HasPrefix(head, want) {
				t.Errorf("upstream request line: got %q, want %q", strings.SplitN(head, "\r\n", 2)[0], want)
			}
			if method == "HEAD" {
				if resp.StatusCode != 200 || len(got) != 0 || resp.ContentLength != 7 {
					t.Errorf("HEAD: got %d, %d body bytes, Content-Length %d; want 200, none, 7", resp.StatusCode, len(got), resp.ContentLength)
				}
				return
			}
			if resp.StatusCode != 201 || string(got) != method+body {
				t.Errorf("got %d %q, want 201 %q", resp.StatusCode, got, method+body)
			}
		})
	}
}

func TestForwardRequestTargetByteForByte(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	long := "/api/v1/search?q=" + strings.Repeat("a%20b", 6<<10/5)
	for _, target := range []string{
		"/api/v1/x%2Fy?a=1&a=2&b=%20",
		"//double//slashes",
		"/a/./b/../c",
		"/%2e%2e/%2E/x;param?y=%00%ff",
		"/api/v1/sessions/info/",
		"/API/v1/sessions/info?sessionId=x",
		"/sockjs/info?cb=abc",
		long,
	} {
		name := target
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			resp, _ := fwdRoundTrip(t, c, br, "GET "+target+" HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %d, want 200", resp.StatusCode)
			}
			head := up.next(t)
			if got, want := strings.SplitN(head, "\r\n", 2)[0], "GET "+target+" HTTP/1.1"; got != want {
				t.Errorf("request line: got %q, want %q", got, want)
			}
		})
	}
}

func TestForwardHeadersKeepCaseOrderAndValues(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	sent := []string{
		"host: Chat.Example:8443",
		"user-agent: RC/7.0 (iOS)",
		"x-lower-case: a",
		"X-MiXeD-CaSe: b",
		"X-Repeat: 1",
		"content-type: text/plain; charset=UTF-8",
		"Cookie: rc_uid=u1; rc_token=tok%3D;  spaced = v ; a=b",
		"X-Other: o",
		"X-Repeat: 2",
		"Authorization: Bearer  abc.def.ghi",
		"X-Empty:",
		"cookie: second=cookie",
		"X-Repeat: 3",
		"Content-Length: 4",
	}
	raw := "POST /api/v1/method.call/x HTTP/1.1\r\n" + strings.Join(sent, "\r\n") + "\r\n\r\nbody"
	resp, _ := fwdRoundTrip(t, c, br, raw, "POST")
	if resp.StatusCode != 200 {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	got := fwdHeaderLines(up.next(t))
	// Every line arrives as sent, in the order sent; the proxy's own
	// fields (X-Real-IP, X-Forwarded-*) come after them.
	pos := -1
	for _, want := range sent {
		i := indexOf(got, want)
		if i < 0 {
			t.Errorf("upstream lacks %q; got:\n%s", want, strings.Join(got, "\n"))
			continue
		}
		if i < pos {
			t.Errorf("%q arrived out of order; got:\n%s", want, strings.Join(got, "\n"))
		}
		pos = i
	}
}

func indexOf(lines []string, s string) int {
	for i, l := range lines {
		if l == s {
			return i
		}
	}
	return -1
}

func TestForwardResponseHeadersKept(t *testing.T) {
	t.Parallel()
	const date = "Date: Tue, 01 Jan 2030 00:00:00 GMT"
	up := fwdStartUpstream(t, func(c net.Conn, _ string, _ []byte) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\n"+
			"x-lower: 1\r\n"+
			"X-Repeat: a\r\n"+
			"Set-Cookie: rc_token=x; Path=/; HttpOnly\r\n"+
			"Cache-Control: no-store\r\n"+
			"X-Repeat: b\r\n"+
			"Set-Cookie: second=y\r\n"+
			date+"\r\n"+
			"Vary: Origin\r\n"+
			"Content-Type: application/json\r\n"+
			"Content-Length: 2\r\n\r\n{}")
	})
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	io.WriteString(c, "GET /api/info HTTP/1.1\r\nHost: chat\r\n\r\n")
	head, err := fwdReadHead(br)
	if err != nil {
		t.Fatal(err)
	}
	lines := fwdHeaderLines(head)
	// Every field keeps its case and its order among the others, and the
	// upstream's Date passes unchanged. The event loop keeps the
	// upstream's exact order; on the fasthttp path Content-Type and
	// Content-Length come first and Set-Cookie last (documented in
	// proxy/server.go), so Set-Cookie is checked on its own.
	for _, ordered := range [][]string{
		{"x-lower: 1", "X-Repeat: a", "Cache-Control: no-store", "X-Repeat: b", date, "Vary: Origin"},
		{"Set-Cookie: rc_token=x; Path=/; HttpOnly", "Set-Cookie: second=y"},
	} {
		pos := -1
		for _, want := range ordered {
			i := indexOf(lines, want)
			if i < 0 || i < pos {
				t.Errorf("response line %q missing or out of order; got:\n%s", want, head)
			}
			pos = i
		}
	}
	for _, want := range []string{"Content-Type: application/json", "Content-Length: 2"} {
		if indexOf(lines, want) < 0 {
			t.Errorf("response lacks %q; got:\n%s", want, head)
		}
	}
	if n := strings.Count(head, "Date:"); n != 1 {
		t.Errorf("got %d Date fields, want 1:\n%s", n, head)
	}
}

func TestForwardHopByHopRemovedBothWays(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, _ string, _ []byte) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\n"+
			"Connection: keep-alive, X-Up-Private\r\n"+
			"Keep-Alive: timeout=5\r\n"+
			"X-Up-Private: hidden\r\n"+
			"Proxy-Authenticate: Basic realm=x\r\n"+
			"Proxy-Connection: keep-alive\r\n"+
			"Upgrade: h2c\r\n"+
			"X-Kept: yes\r\n"+
			"Transfer-Encoding: chunked\r\n\r\n"+
			"2\r\nok\r\n0\r\n\r\n")
	})
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	resp, body := fwdRoundTrip(t, c, br, "GET /x HTTP/1.1\r\nHost: chat\r\n"+
		"Connection: keep-alive, X-Client-Private, x-second\r\n"+
		"connection: Upgrade\r\n"+
		"Keep-Alive: 300\r\n"+
		"X-Client-Private: secret\r\n"+
		"X-Second: 2\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"TE: trailers\r\n"+
		"Upgrade: h2c\r\n"+
		"X-Kept: yes\r\n\r\n", "GET")
	head := up.next(t)
	for _, name := range []string{"connection", "keep-alive", "x-client-private", "x-second", "proxy-authorization", "proxy-connection", "te", "upgrade"} {
		for _, line := range fwdHeaderLines(head) {
			if n, _, _ := strings.Cut(line, ":"); strings.EqualFold(n, name) {
				t.Errorf("upstream got hop-by-hop %q", line)
			}
		}
	}
	if !strings.Contains(head, "X-Kept: yes\r\n") {
		t.Errorf("upstream lacks X-Kept:\n%s", head)
	}
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("got %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
	for _, name := range []string{"Keep-Alive", "X-Up-Private", "Proxy-Authenticate", "Proxy-Connection", "Upgrade"} {
		if v := resp.Header.Get(name); v != "" {
			t.Errorf("client got hop-by-hop %s: %s", name, v)
		}
	}
	if v := resp.Header.Get("Connection"); v != "" {
		t.Errorf("client got Connection: %s", v)
	}
	if resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("client lacks X-Kept: %v", resp.Header)
	}
}

func TestForwardBodylessAnswers(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		switch {
		case strings.HasPrefix(head, "HEAD "):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: 123456\r\nETag: \"e\"\r\n\r\n")
		case strings.Contains(head, "/204"):
			io.WriteString(c, "HTTP/1.1 204 No Content\r\nX-Kept: 204\r\n\r\n")
		case strings.Contains(head, "/304"):
			io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 99\r\nCache-Control: max-age=60\r\n\r\n")
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
		}
	})
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	tests := []struct {
		method, path string
		status       int
		header       string // name: value expected in the answer
	}{
		{"HEAD", "/file", 200, "Content-Length: 123456"},
		{"GET", "/204", 204, "X-Kept: 204"},
		{"GET", "/304", 304, "Content-Length: 99"},
		{"GET", "/after", 200, "Content-Length: 4"},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			// Heads read raw: a body where none belongs would show as
			// garbage before the next answer on this connection.
			io.WriteString(c, tt.method+" "+tt.path+" HTTP/1.1\r\nHost: chat\r\n\r\n")
			head, err := fwdReadHead(br)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("HTTP/1.1 %d ", tt.status); !strings.HasPrefix(head, want) {
				t.Fatalf("got %q, want status %d", strings.SplitN(head, "\r\n", 2)[0], tt.status)
			}
			if indexOf(fwdHeaderLines(head), tt.header) < 0 {
				t.Errorf("answer lacks %q:\n%s", tt.header, head)
			}
			if tt.path == "/after" {
				b := make([]byte, 4)
				if _, err := io.ReadFull(br, b); err != nil || string(b) != "next" {
					t.Errorf("body: got %q %v, want \"next\"", b, err)
				}
			}
		})
	}
}

func TestForwardKeepsConnectionsAlive(t *testing.T) {
	t.Parallel()
	up := StartUpstream(t, nil)
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	for i := range 20 {
		resp, body := fwdRoundTrip(t, c, br, "GET /k HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
		if resp.StatusCode != 200 || string(body) != "ok" || resp.Close {
			t.Fatalf("request %d: got %d %q close=%v, want 200 \"ok\" keep-alive", i, resp.StatusCode, body, resp.Close)
		}
	}
	if n := up.Total(); n != 1 {
		t.Errorf("upstream connections for 20 sequential requests: got %d, want 1", n)
	}
}

func TestForwardExpectContinue(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, head string, body []byte) {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	io.WriteString(c, "PUT /upload HTTP/1.1\r\nHost: chat\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q %v, want HTTP/1.1 100 Continue", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "hello world")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "hello world" {
		t.Errorf("got %d %q, want 200 \"hello world\"", resp.StatusCode, body)
	}
	if head := up.next(t); strings.Contains(strings.ToLower(head), "expect:") {
		t.Errorf("upstream got Expect although sessiongate answered it:\n%s", head)
	}
}

func TestForwardPoolLimit(t *testing.T) {
	t.Parallel()
	var cur, peak atomic.Int64
	up := StartUpstream(t, func(*Req) Answer {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
		return Answer{Body: "ok"}
	})
	g := fwdGate(t, up.URL, map[string]string{"SESSIONGATE_UPSTREAM_MAX_CONNS": "2"})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(g.URL + "/slow")
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request: %v", err)
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("concurrent upstream requests: got %d, want at most upstream.max_conns=2", p)
	}
}

func TestAccessLogKeepsSecretsOut(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	secrets := []string{"QUERYSECRET", "TOKENSECRET", "COOKIESECRET", "AUTHSECRET", "USERSECRET"}
	resp, _ := fwdRoundTrip(t, c, br, "GET /file-upload/abc/name.png?rc_token=QUERYSECRET&rc_uid=USERSECRET HTTP/1.1\r\n"+
		"Host: chat\r\nX-Auth-Token: TOKENSECRET\r\nCookie: rc_token=COOKIESECRET\r\nAuthorization: Bearer AUTHSECRET\r\n\r\n", "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// A refused request is logged too, and must not leak either.
	c2, br2 := fwdDial(t, g)
	fwdRoundTrip(t, c2, br2, "POST /x?rc_token=QUERYSECRET HTTP/1.1\r\nHost: chat\r\nX-Auth-Token: TOKENSECRET\r\n"+
		"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "POST")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.Logs(), `"path":"/file-upload/abc/name.png"`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	logs := g.Logs()
	for _, want := range []string{`"method":"GET"`, `"path":"/file-upload/abc/name.png"`, `"status":200`, `"client":"127.0.0.1"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s:\n%s", want, logs)
		}
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %s:\n%s", s, logs)
		}
	}
	if bytes.Contains([]byte(logs), []byte("Bearer")) {
		t.Errorf("logs contain an Authorization value:\n%s", logs)
	}
}
