package test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Chunked request bodies are held to RFC 9112 §7.1 on both request paths
// (CI runs this package with the event loop on and off): a chunk extension
// outside the §7.1.1 grammar — an unterminated quoted-string above all,
// which a lenient front proxy reads over the line end — a malformed size, a
// line ended by LF alone or a trailer that is not a field line gets 400,
// the connection is closed, and the upstream never sees the request.

// chunkExtUpstream is a stand-in upstream that records every byte it
// receives and answers each request, once its whole body has arrived, with
// 200 and the body it read.
type chunkExtUpstream struct {
	URL string
	mu  sync.Mutex
	raw bytes.Buffer
}

func (u *chunkExtUpstream) received() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.raw.String()
}

type chunkExtRecorder struct {
	net.Conn
	u *chunkExtUpstream
}

func (c chunkExtRecorder) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.u.mu.Lock()
	c.u.raw.Write(p[:n])
	c.u.mu.Unlock()
	return n, err
}

type chunkExtListener struct {
	net.Listener
	u *chunkExtUpstream
}

func (l chunkExtListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return chunkExtRecorder{Conn: c, u: l.u}, nil
}

func startChunkExtUpstream(t *testing.T) *chunkExtUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &chunkExtUpstream{URL: "http://" + ln.Addr().String()}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Write(body)
	})}
	go s.Serve(chunkExtListener{Listener: ln, u: u})
	t.Cleanup(func() { s.Close() })
	return u
}

// chunkExtAnswers sends writes on a fresh connection and reads answers
// until the gate closes the connection; it returns their statuses and
// bodies and whether the connection was closed. open is how many answers
// a connection that stays open gives: once they are read, a little more
// time shows whether another comes, instead of the whole timeout.
func chunkExtAnswers(t *testing.T, addr string, open int, writes ...string) (statuses []int, bodies []string, closed bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for i, w := range writes {
		if i > 0 {
			// Let the gate read the previous piece (and go upstream with
			// it) before the rest arrives.
			time.Sleep(150 * time.Millisecond)
		}
		if _, err := io.WriteString(c, w); err != nil {
			break
		}
	}
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			// EOF or a reset: closed; a timeout: still open.
			ne, ok := err.(net.Error)
			return statuses, bodies, !(ok && ne.Timeout())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		bodies = append(bodies, string(b))
		if len(statuses) == open {
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		}
	}
}

func TestChunkExtRefused(t *testing.T) {
	t.Parallel()
	up := startChunkExtUpstream(t)
	g := StartGate(t, GateEnv(up.URL, StartRedis(t).URL()))
	const head = "POST /chunkext-refused HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n"
	cases := []struct{ name, body string }{
		{"unterminated quoted-string", "5;a=\"x\r\nhello\r\n0\r\n\r\n"},
		{"quoted-string over the line end", "5;a=\"\r\n\"\r\nhello\r\n0\r\n\r\n"},
		{"quoted-pair escaping CR", "5;a=\"\\\r\n\"\r\nhello\r\n0\r\n\r\n"},
		{"control byte in a quoted value", "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n"},
		{"NUL in an extension name", "5;a\x00b\r\nhello\r\n0\r\n\r\n"},
		{"bare CR in an extension", "5;a\rb\r\nhello\r\n0\r\n\r\n"},
		{"extension without a name", "5;=b\r\nhello\r\n0\r\n\r\n"},
		{"extension without a value", "5;a=\r\nhello\r\n0\r\n\r\n"},
		{"text after a quoted value", "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n"},
		{"whitespace before ;", "5 ;a\r\nhello\r\n0\r\n\r\n"},
		{"bad extension on the last chunk", "5\r\nhello\r\n0;a=\"x\r\n\r\n"},
		{"bad extension on a later chunk", "5\r\nhello\r\n1;a=\"x\r\nx\r\n0\r\n\r\n"},
		{"size overflow", "10000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"leading space in a size", " 5\r\nhello\r\n0\r\n\r\n"},
		{"sign in a size", "+5\r\nhello\r\n0\r\n\r\n"},
		{"LF-only size line", "5\nhello\r\n0\r\n\r\n"},
		{"LF-only after data", "5\r\nhello\n0\r\n\r\n"},
		{"LF-only last chunk", "5\r\nhello\r\n0\n\r\n"},
		{"LF-only end of trailers", "5\r\nhello\r\n0\r\n\n"},
		{"trailer ended by LF", "5\r\nhello\r\n0\r\nX-T: 1\n\r\n"},
		{"trailer without a colon", "5\r\nhello\r\n0\r\nX-T\r\n\r\n"},
		{"trailer with space before the colon", "5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n"},
		{"trailer folded", "5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"},
		{"trailer with a NUL", "5\r\nhello\r\n0\r\nX-T: 1\x002\r\n\r\n"},
	}
	// The cases run at once; the group returns when all have.
	t.Run("cases", func(t *testing.T) {
		for _, tt := range cases {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				statuses, _, closed := chunkExtAnswers(t, g.Addr, 0, head+tt.body+"GET /chunkext-behind HTTP/1.1\r\nHost: chat\r\n\r\n")
				if len(statuses) != 1 || statuses[0] != 400 || !closed {
					t.Errorf("answers %v, closed %v; want one 400 and the connection closed", statuses, closed)
				}
			})
		}
	})
	time.Sleep(200 * time.Millisecond)
	if raw := up.received(); strings.Contains(raw, "chunkext-") {
		t.Errorf("the upstream received a refused request:\n%q", raw)
	}
}

// A bad chunk that arrives after the first chunk went upstream: the
// request is still refused, and the upstream never gets its end.
func TestChunkExtRefusedMidBody(t *testing.T) {
	t.Parallel()
	up := startChunkExtUpstream(t)
	g := StartGate(t, GateEnv(up.URL, StartRedis(t).URL()))
	statuses, _, closed := chunkExtAnswers(t, g.Addr, 0,
		"POST /chunkext-mid HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
		"1;a=\"x\r\nx\r\n0\r\n\r\n")
	if len(statuses) != 1 || statuses[0] != 400 || !closed {
		t.Errorf("answers %v, closed %v; want one 400 and the connection closed", statuses, closed)
	}
	time.Sleep(200 * time.Millisecond)
	if raw := up.received(); strings.Contains(raw, "0\r\n\r\n") || strings.Contains(raw, "x\r\n") {
		t.Errorf("the upstream received more than the first chunk:\n%q", raw)
	}
}

// Well-formed extensions and trailers pass, and a refused request behind
// a good one on the same connection does not cost the good one its answer.
func TestChunkExtAccepted(t *testing.T) {
	t.Parallel()
	up := startChunkExtUpstream(t)
	g := StartGate(t, GateEnv(up.URL, StartRedis(t).URL()))
	good := "POST /chunkext-good HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;a=\"x;\\\"y\";b = c;d\r\nhello\r\n3 \r\n, x\r\n0;e=\"\xe9\"\r\nX-T: 1\r\nX-U:\r\n\r\n"
	bad := "POST /chunkext-bad HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"x\r\nhello\r\n0\r\n\r\n"
	statuses, bodies, _ := chunkExtAnswers(t, g.Addr, 2, good+good)
	if len(statuses) != 2 || statuses[0] != 200 || statuses[1] != 200 || bodies[0] != "hello, x" {
		t.Fatalf("answers %v %q, want two 200 \"hello, x\"", statuses, bodies)
	}
	statuses, bodies, closed := chunkExtAnswers(t, g.Addr, 0, good+bad)
	if len(statuses) != 2 || statuses[0] != 200 || bodies[0] != "hello, x" || statuses[1] != 400 || !closed {
		t.Errorf("answers %v %q, closed %v; want 200 then 400 and the connection closed", statuses, bodies, closed)
	}
	time.Sleep(200 * time.Millisecond)
	if raw := up.received(); strings.Contains(raw, "chunkext-bad") {
		t.Errorf("the upstream received the refused request:\n%q", raw)
	}
}

// The intercepted route answers from Redis without reading a body; behind
// a malformed chunked one the connection is closed after that answer, so
// nothing after it is read as a request, and nothing goes upstream.
func TestChunkExtRouteClosesAfterAnswer(t *testing.T) {
	t.Parallel()
	up := startChunkExtUpstream(t)
	g := StartGate(t, GateEnv(up.URL, StartRedis(t).URL()))
	const head = "GET /api/v1/sessions/info HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n"
	const behind = "GET /chunkext-behind HTTP/1.1\r\nHost: chat\r\n\r\n"
	statuses, _, closed := chunkExtAnswers(t, g.Addr, 0, head+"5;a=\"x\r\nhello\r\n0\r\n\r\n"+behind)
	if len(statuses) != 1 || statuses[0] != 401 || !closed {
		t.Errorf("answers %v, closed %v; want the route's 401 and the connection closed", statuses, closed)
	}
	// A well-formed body: the request behind it is served.
	statuses, _, _ = chunkExtAnswers(t, g.Addr, 2, head+"5\r\nhello\r\n0\r\n\r\n"+behind)
	if len(statuses) != 2 || statuses[0] != 401 || statuses[1] != 200 {
		t.Errorf("answers %v, want 401 then 200", statuses)
	}
	time.Sleep(200 * time.Millisecond)
	if raw := up.received(); strings.Count(raw, "chunkext-behind") != 1 {
		t.Errorf("the upstream got the request behind the route's %d times, want once:\n%q", strings.Count(raw, "chunkext-behind"), raw)
	}
}
