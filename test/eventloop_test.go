package test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Black-box tests of the two request paths (proxy/internal/loop): the
// event loop serves plain HTTP/1.1 requests itself and hands every other
// connection over to the fasthttp path with the bytes it already read in
// front. A client cannot tell which path served it, so
// these tests pass with the loop on and off (SESSIONGATE_TEST_EVENT_LOOP=
// false); with it on, they exercise a connection crossing from one path to
// the other mid-stream, pipelined bytes carried over, partial heads and
// bodies, backpressure and the connection cap shared by both paths.

// evStartEcho starts an Upstream that answers 200 with "METHOD TARGET BODY",
// the target in X-Echo-Target and the X-Real-IP values it got in
// X-Echo-Real-IP. It takes chunked request bodies too.
func evStartEcho(t *testing.T) *Upstream {
	t.Helper()
	return StartUpstream(t, func(r *Req) Answer {
		return Answer{
			Header: []string{"X-Echo-Target: " + r.Target, "X-Echo-Real-IP: " + strings.Join(r.Values("X-Real-IP"), "|")},
			Body:   fmt.Sprintf("%s %s %s", r.Method, r.Target, r.Body),
		}
	})
}

// evRead reads the next final response on br (interim 1xx answers are
// skipped), body included.
func evRead(t *testing.T, br *bufio.Reader, method string) (*http.Response, []byte) {
	t.Helper()
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("read response to %s: %v", method, err)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read body of the response to %s: %v", method, err)
		}
		return resp, body
	}
}

// evShort cuts s for a failure message.
func evShort(s string) string {
	if len(s) > 200 {
		return s[:200] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// evNothingMore fails t if c yields any byte (or closes) within d.
func evNothingMore(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) {
	t.Helper()
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		t.Fatalf("unexpected bytes after the last answer: %q", b)
	}
	c.SetReadDeadline(time.Now().Add(d))
	b, err := br.ReadByte()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("after the last answer: got byte %q + %q, err %v; want nothing (connection open and silent)", b, rest, err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
}

// evClosed fails t unless the server closes c (after what was read).
func evClosed(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("connection still open: got %q + %q, want EOF", b, rest)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 5s, want it closed")
	}
}

// TestEventLoopOneConnectionSwitchesPaths: one keep-alive connection whose
// requests go to the loop, then to the route (answered while the connection
// stays on the loop), then to the upstream again and with a chunked body
// (handed over), all answered in order.
func TestEventLoopOneConnectionSwitchesPaths(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	answer, stored := routeSeedBodies(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
	up := evStartEcho(t)
	g := StartGate(t, GateEnv(up.URL, r.URL()))
	c, br := fwdDial(t, g)

	forwarded := func(what, raw, method, want string) {
		t.Helper()
		resp, body := fwdRoundTrip(t, c, br, raw, method)
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s: got %d %q, want 200 %q", what, resp.StatusCode, body, want)
		}
		if ip := resp.Header.Get("X-Echo-Real-IP"); ip != "127.0.0.1" {
			t.Errorf("%s: upstream got X-Real-IP %q, want \"127.0.0.1\"", what, ip)
		}
		if resp.Close {
			t.Fatalf("%s: the gate closes the connection, want keep-alive", what)
		}
	}

	forwarded("GET /a", "GET /a?x=1 HTTP/1.1\r\nHost: chat\r\n\r\n", "GET", "GET /a?x=1 ")
	loopOn := os.Getenv("SESSIONGATE_TEST_EVENT_LOOP") != "false"
	// Which path holds the connection shows in the metrics.
	conns := func(when string, loop, fast float64) {
		t.Helper()
		if !loopOn {
			loop, fast = 0, 1
		}
		if got := g.Metric(`sessiongate_client_connections{path="event_loop"} `); got != loop {
			t.Errorf("%s: client_connections{path=event_loop} = %v, want %v", when, got, loop)
		}
		if got := g.Metric(`sessiongate_client_connections{path="fasthttp"} `); got != fast {
			t.Errorf("%s: client_connections{path=fasthttp} = %v, want %v", when, got, fast)
		}
	}
	conns("after GET /a", 1, 0)

	routeReq := "GET " + routePath + "?sessionId=" + routeSeedSession + " HTTP/1.1\r\nHost: chat\r\n" +
		"X-User-Id: " + routeSeedUser + "\r\nX-Auth-Token: " + routeSeedToken + "\r\n\r\n"
	resp, body := fwdRoundTrip(t, c, br, routeReq, "GET")
	routeCheck(t, "sessions/info on the kept connection", routeResponse{resp.StatusCode, resp.Header, string(body)}, 200, answer)
	if resp.Close {
		t.Fatal("sessions/info: the gate closes the connection, want keep-alive")
	}
	// The route is answered without the connection leaving the loop,
	// and the next forwarded request is the loop's again.
	conns("after sessions/info", 1, 0)
	if got := g.Metric(`sessiongate_event_loop_handoffs_total{reason="route"} `); got != -1 {
		t.Errorf("event_loop_handoffs_total{reason=route} = %v, want none", got)
	}
	loopServed := g.Metric("sessiongate_event_loop_requests_total ")

	forwarded("GET /b", "GET /b HTTP/1.1\r\nHost: chat\r\nX-Real-IP: 6.6.6.6\r\n\r\n", "GET", "GET /b ")
	if got := g.Metric("sessiongate_event_loop_requests_total "); loopOn && got != loopServed+1 {
		t.Errorf("GET /b after sessions/info: event_loop_requests_total went from %v to %v, want the loop to answer it", loopServed, got)
	}
	// A request pipelined behind the route is answered after it.
	resp, body = fwdRoundTrip(t, c, br, routeReq+"GET /p HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
	routeCheck(t, "pipelined sessions/info", routeResponse{resp.StatusCode, resp.Header, string(body)}, 200, answer)
	forwarded("GET /p behind it", "", "GET", "GET /p ")

	forwarded("chunked POST", "POST /c HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "POST", "POST /c hello world")
	forwarded("POST with Content-Length", "POST /d HTTP/1.1\r\nHost: chat\r\nContent-Length: 3\r\n\r\nxyz", "POST", "POST /d xyz")
	forwarded("GET /e", "GET /e HTTP/1.1\r\nHost: chat\r\n\r\n", "GET", "GET /e ")

	seen := up.Take()
	var got []string
	for _, s := range seen {
		got = append(got, s.Method+" "+s.Target+" "+string(s.Body))
		if ip := s.Values("X-Real-IP"); strings.Join(ip, "|") != "127.0.0.1" {
			t.Errorf("%s %s: upstream got X-Real-IP %q, want exactly [127.0.0.1]", s.Method, s.Target, ip)
		}
	}
	want := []string{"GET /a?x=1 ", "GET /b ", "GET /p ", "POST /c hello world", "POST /d xyz", "GET /e "}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("upstream received (in order):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// evPipeReq is one request of a pipeline and what its answer must be.
type evPipeReq struct {
	raw, method string
	status      int
	body        string // the echo's body; for HEAD, the X-Echo-Target value
}

func evGet(path string) evPipeReq {
	return evPipeReq{"GET " + path + " HTTP/1.1\r\nHost: chat\r\n\r\n", "GET", 200, "GET " + path + " "}
}

func evPost(path, body string) evPipeReq {
	return evPipeReq{fmt.Sprintf("POST %s HTTP/1.1\r\nHost: chat\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body), "POST", 200, "POST " + path + " " + body}
}

// TestEventLoopPipelining: requests written in one write, loop-eligible
// ones before and after ones the loop hands over, are answered in order.
func TestEventLoopPipelining(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	answer, stored := routeSeedBodies(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
	up := evStartEcho(t)
	g := StartGate(t, GateEnv(up.URL, r.URL()))

	handedOver := map[string]evPipeReq{
		"http1.0": {"GET /old HTTP/1.0\r\nHost: chat\r\nConnection: keep-alive\r\n\r\n", "GET", 200, "GET /old "},
		"chunked": {"POST /chunked HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", "POST", 200, "POST /chunked abcdefg"},
		"expect":  {"PUT /expect HTTP/1.1\r\nHost: chat\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata", "PUT", 200, "PUT /expect data"},
		"route": {"GET " + routePath + "?sessionId=" + routeSeedSession + " HTTP/1.1\r\nHost: chat\r\nX-User-Id: " + routeSeedUser +
			"\r\nX-Auth-Token: " + routeSeedToken + "\r\n\r\n", "GET", 200, answer},
		"big body": evPost("/bigbody", strings.Repeat("b", 100<<10)),
	}
	run := func(t *testing.T, reqs []evPipeReq) {
		t.Helper()
		c, br := fwdDial(t, g)
		var all strings.Builder
		for _, q := range reqs {
			all.WriteString(q.raw)
		}
		if _, err := io.WriteString(c, all.String()); err != nil {
			t.Fatal(err)
		}
		for i, q := range reqs {
			resp, body := evRead(t, br, q.method)
			got := string(body)
			if q.method == "HEAD" {
				got = resp.Header.Get("X-Echo-Target")
				if len(body) != 0 {
					t.Errorf("answer %d (HEAD): %d body bytes, want none", i, len(body))
				}
			}
			if resp.StatusCode != q.status || got != q.body {
				t.Fatalf("answer %d: got %d %q, want %d %q (request %q)", i, resp.StatusCode, evShort(got), q.status, evShort(q.body), evShort(q.raw))
			}
			if i < len(reqs)-1 && resp.Close {
				t.Fatalf("answer %d closes the connection with %d requests left", i, len(reqs)-1-i)
			}
		}
		evNothingMore(t, c, br, 200*time.Millisecond)
	}

	for _, name := range []string{"http1.0", "chunked", "expect", "route", "big body"} {
		t.Run(name, func(t *testing.T) {
			run(t, []evPipeReq{
				evGet("/p1"), evPost("/p2", "hello"),
				{"HEAD /p3 HTTP/1.1\r\nHost: chat\r\n\r\n", "HEAD", 200, "/p3"},
				handedOver[name],
				evGet("/p5"), evPost("/p6", "world"), evGet("/p7"),
			})
		})
	}
	t.Run("all mixed", func(t *testing.T) {
		run(t, []evPipeReq{
			evGet("/m1"), handedOver["chunked"], evPost("/m3", "x"), handedOver["http1.0"],
			evGet("/m5"), handedOver["route"], handedOver["expect"], evPost("/m8", strings.Repeat("y", 1000)), evGet("/m9"),
		})
	})
	t.Run("many", func(t *testing.T) {
		var reqs []evPipeReq
		for i := range 120 {
			switch {
			case i == 60:
				reqs = append(reqs, handedOver["chunked"])
			case i%3 == 0:
				reqs = append(reqs, evPost("/n"+strconv.Itoa(i), strings.Repeat("z", i)))
			default:
				reqs = append(reqs, evGet("/n"+strconv.Itoa(i)))
			}
		}
		run(t, reqs)
	})
	t.Run("last closes", func(t *testing.T) {
		c, br := fwdDial(t, g)
		io.WriteString(c, evGet("/c1").raw+evPost("/c2", "ab").raw+
			"GET /c3 HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n"+
			evGet("/never").raw)
		for _, want := range []string{"GET /c1 ", "POST /c2 ab", "GET /c3 "} {
			resp, body := evRead(t, br, "GET")
			if resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, want)
			}
		}
		evClosed(t, c, br)
		for _, s := range up.Take() {
			if s.Target == "/never" {
				t.Errorf("the request after Connection: close reached the upstream")
			}
		}
	})
}

// TestEventLoopPartialArrival: heads and bodies trickling in are forwarded
// intact once whole.
func TestEventLoopPartialArrival(t *testing.T) {
	t.Parallel()
	bodies := make(chan []byte, 10)
	up := fwdStartUpstream(t, func(c net.Conn, head string, body []byte) {
		bodies <- append([]byte(nil), body...)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	})
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	c.(*net.TCPConn).SetNoDelay(true)

	writeSlowly := func(s string, pause time.Duration) {
		for i := 0; i < len(s); i++ {
			if _, err := c.Write([]byte{s[i]}); err != nil {
				t.Fatalf("write: %v", err)
			}
			time.Sleep(pause)
		}
	}
	expect := func(what string, head string, body []byte) {
		t.Helper()
		resp, got := evRead(t, br, "POST")
		if resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("%s: got %d, %d body bytes, want 200 and the %d bytes sent", what, resp.StatusCode, len(got), len(body))
		}
		upHead := up.next(t)
		if !strings.HasPrefix(upHead, head) {
			t.Errorf("%s: upstream request line %q, want %q", what, strings.SplitN(upHead, "\r\n", 2)[0], head)
		}
		if got := fieldValues(upHead, "X-Real-IP"); strings.Join(got, "|") != "127.0.0.1" {
			t.Errorf("%s: upstream X-Real-IP %q", what, got)
		}
		if len(body) > 0 {
			if got := fieldValues(upHead, "Content-Length"); strings.Join(got, "|") != strconv.Itoa(len(body)) {
				t.Errorf("%s: upstream Content-Length %q, want %d", what, got, len(body))
			}
		}
		select {
		case b := <-bodies:
			if !bytes.Equal(b, body) {
				t.Errorf("%s: upstream body differs: got %d bytes %q..., want %d bytes", what, len(b), b[:min(len(b), 40)], len(body))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: upstream got no body", what)
		}
	}
	pattern := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = "0123456789abcdefghijklmnopqrstuvwxyz"[i%36]
		}
		return b
	}

	t.Run("head byte by byte", func(t *testing.T) {
		writeSlowly("GET /slow/head?q=1 HTTP/1.1\r\nHost: chat\r\nX-A: b\r\n\r\n", 3*time.Millisecond)
		expect("GET", "GET /slow/head?q=1 HTTP/1.1\r\n", nil)
	})
	t.Run("body 200ms after head", func(t *testing.T) {
		body := pattern(1000)
		fmt.Fprintf(c, "POST /slow/body HTTP/1.1\r\nHost: chat\r\nContent-Length: %d\r\n\r\n", len(body))
		time.Sleep(200 * time.Millisecond)
		c.Write(body)
		expect("POST", "POST /slow/body HTTP/1.1\r\n", body)
	})
	t.Run("head split, body in pieces", func(t *testing.T) {
		body := pattern(48 << 10)
		head := fmt.Sprintf("POST /slow/pieces HTTP/1.1\r\nHost: chat\r\nContent-Length: %d\r\n\r\n", len(body))
		writeSlowly(head[:20], time.Millisecond)
		time.Sleep(100 * time.Millisecond)
		c.Write([]byte(head[20:] + string(body[:10])))
		time.Sleep(100 * time.Millisecond)
		c.Write(body[10 : 30<<10])
		time.Sleep(200 * time.Millisecond)
		c.Write(body[30<<10:])
		expect("POST pieces", "POST /slow/pieces HTTP/1.1\r\n", body)
	})
	t.Run("body larger than the loop buffers, late", func(t *testing.T) {
		body := pattern(200 << 10)
		fmt.Fprintf(c, "POST /slow/big HTTP/1.1\r\nHost: chat\r\nContent-Length: %d\r\n\r\n", len(body))
		c.Write(body[:1000])
		time.Sleep(200 * time.Millisecond)
		c.Write(body[1000:])
		expect("POST big", "POST /slow/big HTTP/1.1\r\n", body)
	})
	t.Run("then a plain request", func(t *testing.T) {
		io.WriteString(c, "GET /after HTTP/1.1\r\nHost: chat\r\n\r\n")
		expect("GET after", "GET /after HTTP/1.1\r\n", nil)
	})
}

// evSlowReader reads at most step bytes per Read, pausing before each,
// until slowFor bytes went through; then it reads at full speed.
type evSlowReader struct {
	r       io.Reader
	slowFor int64
	step    int
	pause   time.Duration
	n       int64
}

func (s *evSlowReader) Read(p []byte) (int, error) {
	if s.n < s.slowFor {
		if len(p) > s.step {
			p = p[:s.step]
		}
		time.Sleep(s.pause)
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

// evHWM is the process's peak resident set size (VmHWM) in bytes.
func evHWM(t *testing.T, g *Gate) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.Pid()))
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return -1
}

// TestEventLoopSlowReaderDownload: a 32 MiB download read slowly at first
// arrives byte-exact, the gate holding it back (backpressure) rather than
// buffering it, and the connection is reusable afterwards.
func TestEventLoopSlowReaderDownload(t *testing.T) {
	t.Parallel()
	linuxOnly(t, "the peak resident set size is read from /proc")
	const n = 32 << 20
	want := hashOf(n)
	big := patternHandler(n)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			io.WriteString(w, "small")
			return
		}
		big(w, r)
	}))
	defer up.Close()
	g := fwdGate(t, up.URL, nil)
	for _, tt := range []struct {
		name, query string
		wantLength  int64
	}{
		{"content-length", "", n},
		{"chunked", "?chunked=1", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", g.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			slow := &evSlowReader{r: c, slowFor: 4 << 20, step: 16 << 10, pause: 4 * time.Millisecond}
			br := bufio.NewReader(slow)
			stop := rssWatch(g)
			start := time.Now()
			io.WriteString(c, "GET /big"+tt.query+" HTTP/1.1\r\nHost: chat\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				stop()
				t.Fatal(err)
			}
			h := sha256.New()
			got, err := io.Copy(h, resp.Body)
			peak := stop()
			t.Logf("%d MiB in %v, peak RSS %.1f MiB", n>>20, time.Since(start).Round(time.Millisecond), float64(peak)/(1<<20))
			if err != nil || got != n || hex.EncodeToString(h.Sum(nil)) != want {
				t.Fatalf("got %d bytes (%v), hash match %v; want %d bytes, same hash", got, err, hex.EncodeToString(h.Sum(nil)) == want, n)
			}
			if resp.StatusCode != 200 || resp.ContentLength != tt.wantLength {
				t.Errorf("got %d with Content-Length %d, want 200 with %d", resp.StatusCode, resp.ContentLength, tt.wantLength)
			}
			if peak > maxRSS {
				t.Errorf("peak RSS %d bytes, want under %d", peak, maxRSS)
			}
			if hwm := evHWM(t, g); hwm > maxRSS {
				t.Errorf("VmHWM %d bytes, want under %d", hwm, maxRSS)
			}
			if resp.Close {
				t.Fatal("the gate closes the connection after the download, want keep-alive")
			}
			io.WriteString(c, "GET /small HTTP/1.1\r\nHost: chat\r\n\r\n")
			resp, body := evRead(t, br, "GET")
			if resp.StatusCode != 200 || string(body) != "small" {
				t.Errorf("next request: got %d %q, want 200 \"small\"", resp.StatusCode, body)
			}
		})
	}
}

// TestEventLoopCloseDelimitedResponse: a body the upstream ends by closing
// reaches an HTTP/1.1 client whole, re-framed as chunked, and the client's
// connection goes on.
func TestEventLoopCloseDelimitedResponse(t *testing.T) {
	t.Parallel()
	payload := bytes.Repeat([]byte("close-delimited body 0123456789\n"), 5000) // 160 000 bytes
	up := fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		if !strings.Contains(head, "/close") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Up: 1\r\n\r\n")
		c.Write(payload[:1000])
		time.Sleep(50 * time.Millisecond)
		c.Write(payload[1000:])
		c.Close()
	})
	g := fwdGate(t, up.URL, nil)

	t.Run("http1.1", func(t *testing.T) {
		c, br := fwdDial(t, g)
		for i := range 3 {
			resp, body := fwdRoundTrip(t, c, br, "GET /close HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
			if resp.StatusCode != 200 || !bytes.Equal(body, payload) {
				t.Fatalf("round %d: got %d with %d body bytes, want 200 with the %d bytes sent", i, resp.StatusCode, len(body), len(payload))
			}
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Errorf("round %d: Transfer-Encoding %q, want chunked", i, resp.TransferEncoding)
			}
			if resp.Header.Get("X-Up") != "1" {
				t.Errorf("round %d: upstream header lost: %v", i, resp.Header)
			}
			if resp.Close {
				t.Fatalf("round %d: the gate closes the client connection, want keep-alive", i)
			}
			resp, body = fwdRoundTrip(t, c, br, "GET /next HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("round %d: next request got %d %q, want 200 \"ok\"", i, resp.StatusCode, body)
			}
		}
	})
	t.Run("pipelined behind", func(t *testing.T) {
		c, br := fwdDial(t, g)
		io.WriteString(c, "GET /close HTTP/1.1\r\nHost: chat\r\n\r\nGET /next HTTP/1.1\r\nHost: chat\r\n\r\n")
		resp, body := evRead(t, br, "GET")
		if resp.StatusCode != 200 || !bytes.Equal(body, payload) {
			t.Fatalf("got %d with %d body bytes, want 200 with %d", resp.StatusCode, len(body), len(payload))
		}
		resp, body = evRead(t, br, "GET")
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("pipelined next request: got %d %q, want 200 \"ok\"", resp.StatusCode, body)
		}
	})
	t.Run("http1.0", func(t *testing.T) {
		c, br := fwdDial(t, g)
		io.WriteString(c, "GET /close HTTP/1.0\r\nHost: chat\r\n\r\n")
		resp, body := evRead(t, br, "GET")
		if resp.StatusCode != 200 || !bytes.Equal(body, payload) {
			t.Fatalf("got %d with %d body bytes, want 200 with %d", resp.StatusCode, len(body), len(payload))
		}
		if len(resp.TransferEncoding) != 0 {
			t.Errorf("an HTTP/1.0 client got Transfer-Encoding %q", resp.TransferEncoding)
		}
	})
}

// TestEventLoopMaxConns: proxy.max_conns caps client connections on both
// paths together.
func TestEventLoopMaxConns(t *testing.T) {
	t.Parallel()
	up := evStartEcho(t)
	g := fwdGate(t, up.URL, map[string]string{"SESSIONGATE_PROXY_MAX_CONNS": "2"})

	works := func(what string, c net.Conn, br *bufio.Reader) {
		t.Helper()
		resp, body := fwdRoundTrip(t, c, br, "GET /"+what+" HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
		if resp.StatusCode != 200 || string(body) != "GET /"+what+" " || resp.Close {
			t.Fatalf("%s: got %d %q close=%v, want 200 %q keep-alive", what, resp.StatusCode, body, resp.Close, "GET /"+what+" ")
		}
	}
	refused := func(what string) {
		t.Helper()
		c, br := fwdDial(t, g)
		// Nothing is written: the refusal comes at accept, and a request
		// left unread would turn the close into a reset.
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: want a 503 answer, got %v", what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 {
			t.Fatalf("%s: got %d %q, want 503", what, resp.StatusCode, body)
		}
		// Then the connection closes, with nothing after the body its
		// Content-Length announced.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		rest, err := io.ReadAll(br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: connection still open 5s after the 503", what)
		}
		if len(rest) > 0 {
			t.Errorf("%s: %q follows the 503's body %q (Content-Length %d): the announced length is not the body's",
				what, rest, body, resp.ContentLength)
		}
		c.Close()
	}
	// dialUntilServed dials until a connection is served (the gate learns
	// of a client's close asynchronously).
	dialUntilServed := func(what string) (net.Conn, *bufio.Reader) {
		t.Helper()
		var c net.Conn
		var br *bufio.Reader
		faultsEventually(t, 3*time.Second, what+" served", func() bool {
			var err error
			c, err = net.DialTimeout("tcp", g.Addr, 5*time.Second)
			if err != nil {
				return false
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br = bufio.NewReader(c)
			io.WriteString(c, "GET /"+what+" HTTP/1.1\r\nHost: chat\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode == 200 && string(body) == "GET /"+what+" " {
					return true
				}
			}
			c.Close()
			return false
		})
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c, br
	}

	c1, br1 := fwdDial(t, g)
	works("one", c1, br1)
	c2, br2 := fwdDial(t, g)
	// A chunked body: with the loop on, this connection is handed over
	// to the fasthttp path, and still counts.
	resp, body := fwdRoundTrip(t, c2, br2, "POST /two HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "POST")
	if resp.StatusCode != 200 || string(body) != "POST /two x" {
		t.Fatalf("two: got %d %q", resp.StatusCode, body)
	}
	refused("third")
	works("one-again", c1, br1)
	works("two-again", c2, br2)

	c2.Close()
	c4, br4 := dialUntilServed("four")
	refused("fifth")
	works("one-third-time", c1, br1)
	works("four-again", c4, br4)

	c1.Close()
	c6, br6 := dialUntilServed("six")
	refused("seventh")
	works("six-again", c6, br6)
	works("four-third-time", c4, br4)
}

// TestEventLoopBodylessAnswers: answers without a body (HEAD with a
// Content-Length, 204, 304) carry no body bytes, one at a time and
// pipelined, on the loop and after a handover.
func TestEventLoopBodylessAnswers(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		target := strings.Fields(head)[1]
		switch {
		case strings.HasPrefix(head, "HEAD ") && target == "/head-chunked":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		case strings.HasPrefix(head, "HEAD "):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: 123456\r\n\r\n")
		case target == "/204":
			io.WriteString(c, "HTTP/1.1 204 No Content\r\nX-Kept: 204\r\n\r\n")
		case target == "/304":
			io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 99\r\n\r\n")
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
		}
	})
	g := fwdGate(t, up.URL, nil)
	type step struct {
		method, path string
		status       int
		header       string
	}
	steps := []step{
		{"HEAD", "/file", 200, "Content-Length: 123456"},
		{"GET", "/after", 200, "Content-Length: 4"},
		{"GET", "/204", 204, "X-Kept: 204"},
		{"GET", "/after", 200, "Content-Length: 4"},
		{"GET", "/304", 304, "ETag: \"e\""},
		{"GET", "/after", 200, "Content-Length: 4"},
		{"HEAD", "/head-chunked", 200, ""},
		{"GET", "/after", 200, "Content-Length: 4"},
		{"HEAD", "/file2", 200, "Content-Length: 123456"},
		{"GET", "/204", 204, ""},
		{"GET", "/304", 304, ""},
		{"GET", "/after", 200, "Content-Length: 4"},
	}
	raw := func(s step) string { return s.method + " " + s.path + " HTTP/1.1\r\nHost: chat\r\n\r\n" }
	check := func(t *testing.T, br *bufio.Reader, i int, s step) {
		t.Helper()
		// Heads are read raw: a stray body would show as garbage where
		// the next answer's status line belongs.
		head, err := fwdReadHead(br)
		if err != nil {
			t.Fatalf("answer %d (%s %s): %v after %q", i, s.method, s.path, err, head)
		}
		if want := fmt.Sprintf("HTTP/1.1 %d ", s.status); !strings.HasPrefix(head, want) {
			t.Fatalf("answer %d (%s %s): got %q, want status %d", i, s.method, s.path, strings.SplitN(head, "\r\n", 2)[0], s.status)
		}
		if s.header != "" && indexOf(fwdHeaderLines(head), s.header) < 0 {
			t.Errorf("answer %d (%s %s) lacks %q:\n%s", i, s.method, s.path, s.header, head)
		}
		if s.path == "/after" {
			b := make([]byte, 4)
			if _, err := io.ReadFull(br, b); err != nil || string(b) != "next" {
				t.Fatalf("answer %d: body %q %v, want \"next\"", i, b, err)
			}
		}
	}
	handover := "GET /after HTTP/1.0\r\nHost: chat\r\nConnection: keep-alive\r\n\r\n"
	for _, mode := range []string{"one at a time", "pipelined", "after handover, one at a time", "after handover, pipelined"} {
		t.Run(mode, func(t *testing.T) {
			c, br := fwdDial(t, g)
			if strings.HasPrefix(mode, "after handover") {
				io.WriteString(c, handover)
				resp, body := evRead(t, br, "GET")
				if resp.StatusCode != 200 || string(body) != "next" || resp.Close {
					t.Fatalf("HTTP/1.0 keep-alive request: got %d %q close=%v", resp.StatusCode, body, resp.Close)
				}
			}
			if strings.HasSuffix(mode, "pipelined") {
				var all strings.Builder
				for _, s := range steps {
					all.WriteString(raw(s))
				}
				io.WriteString(c, all.String())
				for i, s := range steps {
					check(t, br, i, s)
				}
			} else {
				for i, s := range steps {
					io.WriteString(c, raw(s))
					check(t, br, i, s)
				}
			}
			evNothingMore(t, c, br, 200*time.Millisecond)
		})
	}
}

// TestEventLoopIdleTimeout: proxy.idle_timeout closes a kept-alive client
// connection that sends nothing for that long, and only such a one.
func TestEventLoopIdleTimeout(t *testing.T) {
	t.Parallel()
	up := evStartEcho(t)
	r := StartRedis(t)
	env := GateEnv(up.URL, r.URL())
	env["SESSIONGATE_PROXY_IDLE_TIMEOUT"] = "1s"
	g := StartGate(t, env)
	c, br := fwdDial(t, g)
	for i := range 4 {
		// Pauses shorter than the timeout, 1.6 s in all: still open.
		resp, body := fwdRoundTrip(t, c, br, "GET /i HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
		if resp.StatusCode != 200 || string(body) != "GET /i " {
			t.Fatalf("request %d: got %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(400 * time.Millisecond)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := br.Read(make([]byte, 1))
	idle := time.Since(start) + 400*time.Millisecond
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection: read %d bytes, %v; want it closed by the gate", n, err)
	}
	if idle < 900*time.Millisecond || idle > 2500*time.Millisecond {
		t.Errorf("closed after %v idle, want about proxy.idle_timeout (1s)", idle)
	}
}
