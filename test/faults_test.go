package test

// Faults around the real binary, fast enough for CI: the upstream stopped,
// hanging or cutting its answers, SIGTERM with work in flight, and a Redis
// Sentinel failover. Redis stops and pauses are redis_outage_test.go's.
// bench/faults runs the same faults under steady load and writes the
// figures to docs/reliability.md.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
)

// Sessiongate's own error bodies (docs/forwarding.md).
const (
	faultsBadGateway     = `{"success":false,"error":"Bad gateway"}`
	faultsGatewayTimeout = `{"success":false,"error":"Gateway timeout"}`
)

func TestUpstreamStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	up := startFaultsUpstream(t)
	rds := StartRedis(t)
	g := StartGate(t, GateEnv(up.URL(), rds.URL()))
	client := faultsClient()

	if status, body := faultsGet(t, client, g.URL+"/api/info"); status != 200 || body != "ok /api/info" {
		t.Fatalf("before: got %d %q, want 200 \"ok /api/info\"", status, body)
	}
	base := faultsResources(t, g)

	up.Stop()
	for i := range 20 {
		status, body := faultsGet(t, client, g.URL+"/api/info?i="+strconv.Itoa(i))
		if status != 502 || body != faultsBadGateway {
			t.Fatalf("upstream stopped: got %d %q, want 502 %s", status, body, faultsBadGateway)
		}
	}

	up.Start(t)
	stopped := time.Now()
	var status int
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if status, body = faultsGet(t, client, g.URL+"/api/info"); status == 200 {
			break
		}
	}
	if status != 200 || body != "ok /api/info" {
		t.Fatalf("after restart: got %d %q, want 200 \"ok /api/info\" within 10 s", status, body)
	}
	t.Logf("recovered %v after the upstream came back", time.Since(stopped).Round(time.Millisecond))
	client.CloseIdleConnections()
	faultsNoGrowth(t, g, base, 4)
}

func TestUpstreamNeverAnswers(t *testing.T) {
	t.Parallel()
	// Accepts, reads, never writes: a wedged Rocket.Chat.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var open, accepted atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			open.Add(1)
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer open.Add(-1)
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				io.Copy(io.Discard, c) // until the gate gives up and closes
			}()
		}
	}()

	rds := StartRedis(t)
	env := GateEnv("http://"+ln.Addr().String(), rds.URL())
	env["SESSIONGATE_UPSTREAM_RESPONSE_HEADER_TIMEOUT"] = "1s"
	g := StartGate(t, env)
	client := faultsClient()
	base := faultsResources(t, g)

	const n = 8
	type result struct {
		status int
		body   string
	}
	results := make(chan result, n)
	sent := time.Now()
	for i := range n {
		go func() {
			status, body := faultsGet(t, client, g.URL+"/api/hang?i="+strconv.Itoa(i))
			results <- result{status, body}
		}()
	}
	for range n {
		r := <-results
		if r.status != 504 || r.body != faultsGatewayTimeout {
			t.Errorf("got %d %q, want 504 %s", r.status, r.body, faultsGatewayTimeout)
		}
	}
	// The gate must close the connections it gave up on, not leave them
	// to the upstream.
	answered := time.Now()
	t.Logf("%d × 504 after %v (upstream.response_header_timeout 1s)", n, answered.Sub(sent).Round(time.Millisecond))
	// A request that was sent and timed out is not retried (docs/forwarding.md: only
	// when nothing was sent yet): a retry multiplies the client's wait and
	// the load on a server that is already stuck.
	if got := accepted.Load(); got != n {
		t.Errorf("upstream got %d connections for %d requests, want %d: timed-out requests were sent again", got, n, n)
	}
	for deadline := time.Now().Add(5 * time.Second); open.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if got := open.Load(); got != 0 {
		t.Errorf("%d upstream connections still open 5 s after their 504, want 0", got)
	} else {
		t.Logf("upstream connections closed %v after the last 504", time.Since(answered).Round(time.Millisecond))
	}
	client.CloseIdleConnections()
	faultsNoGrowth(t, g, base, n+4)
}

func TestUpstreamCutsResponseMidBody(t *testing.T) {
	t.Parallel()
	up := startFaultsUpstream(t)
	rds := StartRedis(t)
	g := StartGate(t, GateEnv(up.URL(), rds.URL()))
	client := faultsClient()

	// A response the upstream breaks off must never reach the client as a
	// complete one: either a 502 (nothing was sent yet) or a body the
	// client sees end early (a cut connection or an unterminated chunked
	// body). A short body that looks whole is a wrong answer.
	for _, path := range []string{"/cut/length", "/cut/chunked"} {
		for i := range 5 {
			resp, err := client.Get(g.URL + path)
			if err != nil {
				t.Logf("%s: %v (cut before the response head)", path, err)
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 502:
				if string(body) != faultsBadGateway {
					t.Errorf("%s #%d: got 502 %q, want %s", path, i, body, faultsBadGateway)
				}
			case resp.StatusCode == 200 && err != nil:
				// The client saw the cut: right.
			case resp.StatusCode == 200:
				t.Errorf("%s #%d: got 200 with a complete-looking %d-byte body of %d: a truncated answer passed as whole", path, i, len(body), faultsCutSize)
			default:
				t.Errorf("%s #%d: got status %d, want 502 or a cut 200", path, i, resp.StatusCode)
			}
		}
	}
	if status, body := faultsGet(t, client, g.URL+"/api/info"); status != 200 || body != "ok /api/info" {
		t.Errorf("after the cuts: got %d %q, want 200", status, body)
	}
}

// TestSIGTERMDrainsUploadsAndTunnels sends SIGTERM while uploads stream,
// a slow request waits for its answer and WebSockets are open. docs/operations.md:
// /readyz turns 503 first, serving continues for shutdown.delay, then the
// listener closes, in-flight requests finish within shutdown.timeout,
// tunnels close, exit 0.
func TestSIGTERMDrainsUploadsAndTunnels(t *testing.T) {
	t.Parallel()
	up := startFaultsUpstream(t)
	rds := StartRedis(t)
	env := GateEnv(up.URL(), rds.URL())
	env["SESSIONGATE_SHUTDOWN_DELAY"] = "1s"
	env["SESSIONGATE_SHUTDOWN_TIMEOUT"] = "6s"
	g := StartGate(t, env)
	client := faultsClient()

	// Uploads that take about 3 s each: they straddle the SIGTERM and the
	// closing of the listener.
	const uploads, chunk, chunks = 3, 64 << 10, 60
	uploadErrs := make(chan error, uploads)
	for range uploads {
		go func() {
			pr, pw := io.Pipe()
			go func() {
				buf := make([]byte, chunk)
				for range chunks {
					if _, err := pw.Write(buf); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", g.URL+"/upload", pr)
			req.ContentLength = chunk * chunks
			resp, err := client.Do(req)
			if err != nil {
				uploadErrs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("received %d", chunk*chunks); resp.StatusCode != 200 || string(body) != want {
				uploadErrs <- fmt.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, want)
				return
			}
			uploadErrs <- nil
		}()
	}
	slowErr := make(chan error, 1)
	go func() {
		status, body := faultsGet(t, client, g.URL+"/slow?ms=2500")
		if status != 200 || body != "slept" {
			slowErr <- fmt.Errorf("got %d %q, want 200 \"slept\"", status, body)
			return
		}
		slowErr <- nil
	}()

	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	var sockets []*websocket.Conn
	for i := range 2 {
		ws, resp, err := dialer.Dial("ws://"+g.Addr+"/websocket", nil)
		if err != nil {
			t.Fatalf("WebSocket %d: %v (%v)", i, err, resp)
		}
		t.Cleanup(func() { ws.Close() })
		faultsEcho(t, ws, "before")
		sockets = append(sockets, ws)
	}

	// Uploads, the slow request and both handshakes are under way.
	waitUntil(t, 5*time.Second, "every request's head at the upstream", func() bool { return up.Heads() >= uploads+3 })
	start := time.Now()
	g.Signal(syscall.SIGTERM)

	// Readiness turns 503 first; the listener keeps accepting meanwhile.
	var readyOff time.Duration
	served, refused := 0, false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !refused; time.Sleep(20 * time.Millisecond) {
		if readyOff == 0 {
			if resp, err := client.Get(g.AdminURL + "/readyz"); err != nil || resp.StatusCode == 503 {
				readyOff = time.Since(start)
				if resp != nil {
					resp.Body.Close()
				}
			} else {
				resp.Body.Close()
			}
			continue
		}
		c, err := net.DialTimeout("tcp", g.Addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, "GET /api/during HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode == 200 {
			served++
		}
		c.Close()
		if served == 1 {
			for i, ws := range sockets {
				faultsEcho(t, ws, "during delay "+strconv.Itoa(i))
			}
		}
	}
	t.Logf("readyz 503 after %v; %d new requests served after it; listener closed after %v", readyOff.Round(time.Millisecond), served, time.Since(start).Round(time.Millisecond))
	if readyOff == 0 {
		t.Errorf("/readyz never turned 503")
	}
	if served == 0 {
		t.Errorf("no new request served between /readyz 503 and the listener closing: want service to continue for shutdown.delay")
	}

	// Tunnels are closed by the gate, before it exits.
	for i, ws := range sockets {
		ws.SetReadDeadline(time.Now().Add(8 * time.Second))
		if _, _, err := ws.ReadMessage(); err == nil {
			t.Errorf("WebSocket %d: got a message, want the gate to close the tunnel", i)
		} else if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
			t.Logf("WebSocket %d closed with code %d", i, ce.Code)
		} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("WebSocket %d still open 8 s after SIGTERM (shutdown.delay 1s, shutdown.timeout 6s)", i)
		}
	}

	for range uploads {
		if err := <-uploadErrs; err != nil {
			t.Errorf("upload in flight at SIGTERM: %v", err)
		}
	}
	if err := <-slowErr; err != nil {
		t.Errorf("slow request in flight at SIGTERM: %v", err)
	}
	if code := g.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// TestSentinelFailover moves the Redis master to its replica with SENTINEL
// FAILOVER while requests run, then stops the old master: the gate must
// follow the new master, and no request may get a 401, 404 or 500 for a
// login and session that exist, or another answer than the right one.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(requireRedisEnv) == "1" {
			t.Fatal("redis-server not on PATH")
		}
		t.Skip("Sentinel needs a real redis-server")
	}
	master := StartRedis(t)
	_, masterPort, _ := net.SplitHostPort(master.Addr)
	replica := StartRedis(t, "--replicaof", "127.0.0.1", masterPort)
	_, replicaPort, _ := net.SplitHostPort(replica.Addr)
	mc, rc := master.Client(), replica.Client()
	login := hostileLogin{UserID: "failoverUser1", Token: "failover-token-0123456789", SessionID: "failoverSession1"}
	hostileSeed(t, mc, login)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	faultsEventually(t, 10*time.Second, "replica in sync", func() bool {
		n, _ := rc.Exists(ctx, "rc:{"+login.UserID+"}:session:"+login.SessionID).Result()
		return n == 1
	})

	sentinel := startFaultsSentinel(t, master.Addr)
	faultsEventually(t, 15*time.Second, "sentinel sees the replica", func() bool {
		replicas, err := sentinel.Replicas(ctx, "mymaster").Result()
		if err != nil || len(replicas) == 0 {
			return false
		}
		flags := replicas[0]["flags"]
		return replicas[0]["port"] == replicaPort && !strings.Contains(flags, "down") && !strings.Contains(flags, "disconnected")
	})

	var forwarded atomic.Int64
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwarded.Add(1)
		w.Header().Set("X-Upstream", "1")
		io.WriteString(w, "forwarded")
	})}
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go upstream.Serve(uln)
	t.Cleanup(func() { upstream.Close() })

	env := GateEnv("http://"+uln.Addr().String(), "redis://127.0.0.1:1/0")
	env["SESSIONGATE_REDIS_SENTINEL_ADDRS"] = sentinel.addr
	env["SESSIONGATE_REDIS_SENTINEL_MASTER"] = "mymaster"
	g := StartGate(t, env)
	client := faultsClient()
	get := func() (int, string, bool) {
		req, _ := http.NewRequest("GET", g.URL+"/api/v1/sessions/info?sessionId="+login.SessionID, nil)
		req.Header.Set("X-User-Id", login.UserID)
		req.Header.Set("X-Auth-Token", login.Token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error(), false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body), resp.Header.Get("X-Upstream") != ""
	}
	if status, body, fwd := get(); status != 200 || body != login.SuccessBody() || fwd {
		t.Fatalf("before the failover: got %d %q (forwarded %v), want 200 with the session from Redis", status, body, fwd)
	}

	// Requests all along: every one is the right answer from Redis, or
	// forwarded (redis.on_error forward); nothing else.
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	var answered, fromUpstream, wrong atomic.Int64
	go func() {
		defer close(loadDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			status, body, fwd := get()
			answered.Add(1)
			switch {
			case fwd && status == 200:
				fromUpstream.Add(1)
			case status == 200 && body == login.SuccessBody():
			default:
				wrong.Add(1)
				t.Errorf("during failover: got %d %q", status, body)
			}
		}
	}()

	start := time.Now()
	if err := sentinel.Failover(ctx, "mymaster").Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	faultsEventually(t, 15*time.Second, "sentinel promotes the replica", func() bool {
		addr, err := sentinel.GetMasterAddrByName(ctx, "mymaster").Result()
		return err == nil && len(addr) == 2 && addr[1] == replicaPort
	})
	t.Logf("sentinel switched the master after %v", time.Since(start).Round(time.Millisecond))
	master.Stop()
	stopped := time.Now()

	// Within a few seconds the gate answers from the new master again.
	faultsEventually(t, 10*time.Second, "answers from Redis after the failover", func() bool {
		status, body, fwd := get()
		return status == 200 && body == login.SuccessBody() && !fwd
	})
	t.Logf("answering from the new master %v after the old one stopped", time.Since(stopped).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-loadDone
	before := fromUpstream.Load()
	for range 20 {
		if status, body, fwd := get(); status != 200 || body != login.SuccessBody() || fwd {
			t.Errorf("after the failover: got %d %q (forwarded %v), want 200 from Redis", status, body, fwd)
		}
	}
	t.Logf("%d requests during the failover: %d forwarded by policy, %d wrong", answered.Load(), before, wrong.Load())
}

// faultsCutSize is what /cut/* announce (or would have sent) before
// breaking off at half of it.
const faultsCutSize = 1 << 20

// faultsUpstream is a stand-in Rocket.Chat on a fixed loopback address that
// can be stopped and started again:
//
//	/upload          reads the body, answers "received N"
//	/slow?ms=N       answers "slept" after N ms
//	/websocket       WebSocket echo
//	/cut/length      Content-Length 1 MiB, half of it, then the connection is cut
//	/cut/chunked     chunked, half a MiB, then the connection is cut
//	anything else    "ok <path>"
type faultsUpstream struct {
	addr   string
	script func(*Req) Answer
	mu     sync.Mutex
	up     *Upstream
}

func startFaultsUpstream(t *testing.T) *faultsUpstream {
	t.Helper()
	u := &faultsUpstream{addr: "127.0.0.1:" + strconv.Itoa(FreePort(t))}
	upgrader := &websocket.Upgrader{}
	u.script = func(r *Req) Answer {
		path, query, _ := strings.Cut(r.Target, "?")
		switch {
		case path == "/upload":
			return Answer{Body: fmt.Sprintf("received %d", len(r.Body))}
		case path == "/slow":
			q, _ := url.ParseQuery(query)
			ms, _ := strconv.Atoi(q.Get("ms"))
			return Answer{Delay: time.Duration(ms) * time.Millisecond, Body: "slept"}
		case path == "/websocket":
			return Answer{Take: func(c net.Conn, br *bufio.Reader) {
				ws, _, err := r.AcceptWebSocket(c, br, upgrader, nil)
				if err != nil {
					return
				}
				defer ws.Close()
				for {
					mt, msg, err := ws.ReadMessage()
					if err != nil {
						return
					}
					if err := ws.WriteMessage(mt, msg); err != nil {
						return
					}
				}
			}}
		case path == "/cut/length":
			return Answer{Raw: "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(faultsCutSize) + "\r\n\r\n" + strings.Repeat("\x00", faultsCutSize/2), Close: true}
		case path == "/cut/chunked":
			return Answer{Raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(faultsCutSize/2, 16) + "\r\n" + strings.Repeat("\x00", faultsCutSize/2) + "\r\n", Close: true}
		default:
			return Answer{Body: "ok " + path}
		}
	}
	u.Start(t)
	t.Cleanup(u.Stop)
	return u
}

// URL is the upstream's http:// URL.
func (u *faultsUpstream) URL() string { return "http://" + u.addr }

// Heads is the number of request heads the running upstream has read.
func (u *faultsUpstream) Heads() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.up.Heads()
}

// Start listens on the upstream's address again.
func (u *faultsUpstream) Start(t *testing.T) {
	t.Helper()
	up := StartUpstreamAt(t, u.addr, u.script)
	u.mu.Lock()
	u.up = up
	u.mu.Unlock()
}

// Stop closes the listener and every connection, WebSockets included, as a
// process that died would.
func (u *faultsUpstream) Stop() {
	u.mu.Lock()
	up := u.up
	u.up = nil
	u.mu.Unlock()
	if up != nil {
		up.Close()
	}
}

// startFaultsSentinel starts one Redis Sentinel monitoring masterAddr as
// "mymaster" with a quorum of one, and returns a client to it.
type faultsSentinel struct {
	*redis.SentinelClient
	addr string
}

func startFaultsSentinel(t *testing.T, masterAddr string) *faultsSentinel {
	t.Helper()
	host, port, _ := net.SplitHostPort(masterAddr)
	dir := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	_, sport, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "sentinel.conf")
	err := os.WriteFile(conf, []byte("port "+sport+"\nbind 127.0.0.1\ndir "+dir+"\n"+
		"sentinel monitor mymaster "+host+" "+port+" 1\n"+
		"sentinel down-after-milliseconds mymaster 2000\n"+
		"sentinel failover-timeout mymaster 10000\n"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf, "--sentinel", "--logfile", filepath.Join(dir, "sentinel.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server --sentinel: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	s := &faultsSentinel{redis.NewSentinelClient(&redis.Options{Addr: addr, DisableIdentity: true, Protocol: 2}), addr}
	t.Cleanup(func() { s.Close() })
	faultsEventually(t, 10*time.Second, "sentinel up", func() bool {
		return s.Ping(context.Background()).Err() == nil
	})
	return s
}

// faultsEcho sends msg on ws and fails t unless it comes back.
func faultsEcho(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Errorf("WebSocket write %q: %v", msg, err)
		return
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := ws.ReadMessage()
	if err != nil || string(got) != msg {
		t.Errorf("WebSocket echo: got %q %v, want %q", got, err, msg)
	}
	ws.SetReadDeadline(time.Time{})
}

// faultsClient is an HTTP client with bounded waits and its own pool.
func faultsClient() *http.Client {
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
	}
}

// faultsGet returns the status and body of GET url; a transport error is
// status 0 with the error text as body.
func faultsGet(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// faultsUsage is what a process holds: goroutines (from /metrics) and open
// file descriptors (from /proc, so Linux only: elsewhere fds is 0 and not
// compared).
type faultsUsage struct{ goroutines, fds int }

func faultsResources(t *testing.T, g *Gate) faultsUsage {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Log("linux only: open file descriptors are counted from /proc, not checked here")
		return faultsUsage{goroutines: int(g.Metric("go_goroutines "))}
	}
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(g.Pid()) + "/fd")
	if err != nil {
		t.Fatalf("counting fds: %v", err)
	}
	return faultsUsage{goroutines: int(g.Metric("go_goroutines ")), fds: len(ents)}
}

// faultsNoGrowth fails t unless goroutines and fds come back to base within
// 5 s, give or take slack: fasthttp keeps an idle worker goroutine per
// recent concurrent connection for 10 s, and pools keep a few connections.
func faultsNoGrowth(t *testing.T, g *Gate, base faultsUsage, slack int) {
	t.Helper()
	var now faultsUsage
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if now = faultsResources(t, g); now.goroutines <= base.goroutines+slack && now.fds <= base.fds+slack {
			t.Logf("goroutines %d → %d, fds %d → %d", base.goroutines, now.goroutines, base.fds, now.fds)
			return
		}
	}
	t.Errorf("after the fault: goroutines %d → %d, fds %d → %d; want at most %d more of each", base.goroutines, now.goroutines, base.fds, now.fds, slack)
}

// faultsEventually polls cond every 50 ms for up to d and fails t if it
// never holds.
func faultsEventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %v", what, d)
}
