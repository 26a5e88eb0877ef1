package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Upstream is the suite's stand-in upstream: a raw HTTP/1.1 peer on a
// loopback port that records every request exactly as it arrived (request
// line, header lines in order and case, body, which connection carried it)
// and answers as the test's script says. A raw listener rather than
// net/http, so that a test sees the bytes sessiongate sent, not a
// normalised copy, and so that a script can answer with bytes no
// well-behaved server would write.
type Upstream struct {
	URL  string // http://127.0.0.1:port
	Addr string // 127.0.0.1:port

	script    func(*Req) Answer
	ln        net.Listener
	wg        sync.WaitGroup
	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	open      atomic.Int64
	total     atomic.Int64
	heads     atomic.Int64

	mu      sync.Mutex
	reqs    []*Req
	next    int // index in reqs of the next request Next returns
	arrived chan struct{}
	conns   map[net.Conn]struct{}
}

// Req is one request as the upstream read it.
type Req struct {
	Conn   int      // the connection that carried it: 1 for the first accepted
	N      int      // its place on that connection: 1 for the first
	Line   string   // the request line, without CRLF
	Method string   // from the request line
	Target string   // the request-target, byte for byte
	Lines  []string // the header lines, without CRLF, in order, as received
	Head   string   // the whole head, empty line included, byte for byte
	Body   []byte   // the body (Content-Length, or chunked and decoded)
}

// Values returns the values of every header line named name (any case),
// trimmed, in order.
func (r *Req) Values(name string) []string {
	var out []string
	for _, l := range r.Lines {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// Get returns the first value of the header name, or "".
func (r *Req) Get(name string) string {
	if v := r.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Query returns the first value of the query parameter name in Target.
func (r *Req) Query(name string) string {
	_, q, _ := strings.Cut(r.Target, "?")
	v, _ := url.ParseQuery(q)
	return v.Get(name)
}

// Answer is what the upstream does with one request. The zero Answer is
// 200 with an empty body.
type Answer struct {
	Status int      // 200 when 0
	Header []string // "Name: value" lines, in order
	Body   string
	// Content-Length is added from Body unless Header already frames the
	// body (Content-Length or Transfer-Encoding) or the status has none.
	// A HEAD request gets the head only.

	Delay time.Duration // wait before answering (or until Close)
	Raw   string        // written as is instead of Status, Header and Body
	Close bool          // close the connection after the answer

	// Take, when set, is given the connection after the request was read,
	// Delay waited and Raw written (or the answer, if Status, Header or
	// Body is set; otherwise nothing): a WebSocket peer, a peer that
	// trickles or stalls. The upstream closes the connection when Take
	// returns unless Keep is set, in which case it reads the next request.
	Take func(c net.Conn, br *bufio.Reader)
	Keep bool
}

// StartUpstream starts an upstream that answers each request with
// script(req); a nil script answers 200 "ok". It stops, closing every
// connection, at cleanup.
func StartUpstream(t testing.TB, script func(*Req) Answer) *Upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startUpstreamOn(t, ln, script)
}

// StartUpstreamAt is StartUpstream on addr, typically a stopped
// Upstream's, retrying while the port is still held by its connections.
func StartUpstreamAt(t testing.TB, addr string, script func(*Req) Answer) *Upstream {
	t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("upstream listen %s: %v", addr, err)
	}
	return startUpstreamOn(t, ln, script)
}

func startUpstreamOn(t testing.TB, ln net.Listener, script func(*Req) Answer) *Upstream {
	if script == nil {
		script = func(*Req) Answer { return Answer{Body: "ok"} }
	}
	u := &Upstream{
		URL:     "http://" + ln.Addr().String(),
		Addr:    ln.Addr().String(),
		script:  script,
		ln:      ln,
		arrived: make(chan struct{}, 1),
		conns:   map[net.Conn]struct{}{},
		closed:  make(chan struct{}),
	}
	u.wg.Add(1)
	go u.accept()
	t.Cleanup(u.Close)
	return u
}

func (u *Upstream) accept() {
	defer u.wg.Done()
	for id := 1; ; id++ {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.open.Add(1)
		u.total.Add(1)
		u.wg.Add(1)
		go func(id int) {
			defer u.wg.Done()
			u.serve(id, c)
			c.Close()
			u.mu.Lock()
			delete(u.conns, c)
			u.mu.Unlock()
			u.open.Add(-1)
		}(id)
	}
}

// Close stops listening and closes every connection, as a process that died
// would.
func (u *Upstream) Close() {
	u.closeOnce.Do(func() { close(u.closed) })
	u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// Heads is the number of request heads read so far, whether or not their
// bodies have arrived yet: requests under way.
func (u *Upstream) Heads() int64 { return u.heads.Load() }

// Open is the number of connections open now; Total, of connections ever
// accepted.
func (u *Upstream) Open() int64  { return u.open.Load() }
func (u *Upstream) Total() int64 { return u.total.Load() }

func (u *Upstream) serve(id int, c net.Conn) {
	br := bufio.NewReader(c)
	for n := 1; ; n++ {
		r, err := upstreamReadReq(br, func() { u.heads.Add(1) })
		if err != nil {
			return
		}
		r.Conn, r.N = id, n
		u.mu.Lock()
		u.reqs = append(u.reqs, r)
		u.mu.Unlock()
		select {
		case u.arrived <- struct{}{}:
		default:
		}
		a := u.script(r)
		if a.Delay > 0 {
			select {
			case <-time.After(a.Delay):
			case <-u.closed:
				return
			}
		}
		if _, err := io.WriteString(c, a.bytes(r.Method)); err != nil {
			return
		}
		if a.Take != nil {
			a.Take(c, br)
			if !a.Keep {
				return
			}
		}
		if a.Close {
			return
		}
	}
}

// upstreamReadReq reads one request head and its body from br, calling
// onHead in between.
func upstreamReadReq(br *bufio.Reader, onHead func()) (*Req, error) {
	r := &Req{}
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		head.WriteString(line)
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if r.Line == "" {
				continue // tolerated empty lines before a request line
			}
			break
		}
		if r.Line == "" {
			r.Line = line
		} else {
			r.Lines = append(r.Lines, line)
		}
		if head.Len() > 1<<20 {
			return nil, fmt.Errorf("head over 1 MiB")
		}
	}
	r.Head = head.String()
	r.Method, r.Target, _ = strings.Cut(r.Line, " ")
	r.Target, _, _ = strings.Cut(r.Target, " ")
	onHead()
	var body io.Reader
	if te := r.Values("Transfer-Encoding"); len(te) > 0 && strings.EqualFold(te[len(te)-1], "chunked") {
		body = httputil.NewChunkedReader(br)
	} else if cl := r.Values("Content-Length"); len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad Content-Length %q", cl[0])
		}
		body = io.LimitReader(br, n)
	}
	if body != nil {
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		r.Body = b
	}
	return r, nil
}

// bytes is the answer on the wire to a request with method.
func (a Answer) bytes(method string) string {
	if a.Raw != "" || (a.Take != nil && a.Status == 0 && a.Header == nil && a.Body == "") {
		return a.Raw
	}
	status := a.Status
	if status == 0 {
		status = 200
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	framed := false
	for _, h := range a.Header {
		b.WriteString(h + "\r\n")
		k, _, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "Transfer-Encoding") {
			framed = true
		}
	}
	bodyless := status < 200 || status == 204 || status == 304
	if !framed && !bodyless {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(a.Body))
	}
	b.WriteString("\r\n")
	if !bodyless && method != "HEAD" {
		b.WriteString(a.Body)
	}
	return b.String()
}

// Reqs returns every request received so far.
func (u *Upstream) Reqs() []*Req {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*Req(nil), u.reqs...)
}

// Take returns the requests received since the last Take or Reset and
// forgets them.
func (u *Upstream) Take() []*Req {
	u.mu.Lock()
	defer u.mu.Unlock()
	got := u.reqs
	u.reqs, u.next = nil, 0
	return got
}

// Reset forgets every request received so far.
func (u *Upstream) Reset() { u.Take() }

// Next waits up to 5 s for the next request Next has not returned yet.
func (u *Upstream) Next(t testing.TB) *Req {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		u.mu.Lock()
		if u.next < len(u.reqs) {
			r := u.reqs[u.next]
			u.next++
			u.mu.Unlock()
			return r
		}
		u.mu.Unlock()
		select {
		case <-u.arrived:
		case <-deadline:
			t.Fatal("upstream got no request in 5s")
			return nil
		}
	}
}

// None fails t if a request Next has not returned arrives within d.
func (u *Upstream) None(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		u.mu.Lock()
		if u.next < len(u.reqs) {
			r := u.reqs[u.next]
			u.mu.Unlock()
			t.Fatalf("upstream got a request it should not have:\n%s", r.Head)
		}
		u.mu.Unlock()
		select {
		case <-u.arrived:
		case <-deadline:
			return
		}
	}
}

// WaitFor polls cond every 10 ms until it holds or d passes, and reports
// whether it held: the suite waits for a condition, not for a time.
func WaitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// AcceptWebSocket completes r, a WebSocket upgrade request the upstream
// read from c (br is c's reader, as Answer.Take gets them), with
// gorilla/websocket's server handshake and extra headers h. It returns the
// server end and the 101 head as written on the wire.
func (r *Req) AcceptWebSocket(c net.Conn, br *bufio.Reader, u *websocket.Upgrader, h http.Header) (*websocket.Conn, string, error) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(r.Head)))
	if err != nil {
		return nil, "", err
	}
	rec := &headRecorder{Conn: c}
	ws, err := u.Upgrade(&hijackWriter{conn: rec, br: br, header: http.Header{}}, req, h)
	return ws, rec.head(), err
}

// hijackWriter is the http.ResponseWriter gorilla/websocket's Upgrader
// needs: it hands over the raw connection, and writes a refusal plainly.
type hijackWriter struct {
	conn   net.Conn
	br     *bufio.Reader
	header http.Header
	status int
}

func (w *hijackWriter) Header() http.Header { return w.header }

func (w *hijackWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	fmt.Fprintf(w.conn, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	w.header.Set("Connection", "close")
	w.header.Write(w.conn)
	io.WriteString(w.conn, "\r\n")
}

func (w *hijackWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.conn.Write(p)
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(w.br, bufio.NewWriter(w.conn)), nil
}

// headRecorder keeps what is written on a connection up to the end of the
// first head.
type headRecorder struct {
	net.Conn
	mu      sync.Mutex
	written strings.Builder
}

func (c *headRecorder) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !strings.Contains(c.written.String(), "\r\n\r\n") {
		c.written.Write(p)
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *headRecorder) head() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.written.String()
	if i := strings.Index(s, "\r\n\r\n"); i >= 0 {
		return s[:i+4]
	}
	return s
}
