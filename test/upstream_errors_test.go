package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Upstream failures (docs/forwarding.md): 502 when the upstream cannot be reached or
// breaks the connection before answering, 504 when it does not answer in
// time, each with sessiongate's small JSON body and within the configured
// timeouts; nothing left behind when either side goes away.

const (
	wantBadGateway     = `{"success":false,"error":"Bad gateway"}`
	wantGatewayTimeout = `{"success":false,"error":"Gateway timeout"}`
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUpstreamDownIs502(t *testing.T) {
	t.Parallel()
	g := fwdGate(t, "http://"+closedPort(t), nil)
	for _, method := range []string{"GET", "POST"} {
		start := time.Now()
		req, _ := http.NewRequest(method, g.URL+"/api/v1/info", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || string(body) != wantBadGateway || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: got %d %q (%s), want 502 %s (application/json)", method, resp.StatusCode, body, resp.Header.Get("Content-Type"), wantBadGateway)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: answered after %v, want at once for a refused connection", method, d)
		}
	}
	if n := g.Metric(`sessiongate_upstream_errors_total{kind="connect"}`); n < 2 {
		t.Errorf("upstream_errors_total{kind=connect}: got %v, want at least 2", n)
	}
}

func TestUpstreamTooSlowIs504(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	up := fwdStartUpstream(t, func(c net.Conn, _ string, _ []byte) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	g := fwdGate(t, up.URL, map[string]string{"SESSIONGATE_UPSTREAM_RESPONSE_HEADER_TIMEOUT": "1s"})
	start := time.Now()
	resp, err := http.Get(g.URL + "/api/v1/slow")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != 504 || string(body) != wantGatewayTimeout {
		t.Errorf("got %d %q, want 504 %s", resp.StatusCode, body, wantGatewayTimeout)
	}
	if d < time.Second || d > 3*time.Second {
		t.Errorf("answered after %v, want about upstream.response_header_timeout (1s)", d)
	}
}

// TestUpstreamClosingConnection: an upstream that closes a kept-alive
// connection instead of answering. A GET (no body, idempotent) is retried
// on a fresh connection; a POST is not, and gets 502.
func TestUpstreamClosingConnection(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	served := map[net.Conn]int{}
	got := map[string]int{}
	up := fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		mu.Lock()
		served[c]++
		n := served[c]
		got[strings.SplitN(head, " ", 2)[0]]++
		mu.Unlock()
		if n == 2 {
			c.Close() // the second request on any connection: no answer
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	for i, tt := range []struct {
		method string
		status int
	}{
		{"GET", 200},  // opens upstream connection 1
		{"GET", 200},  // connection 1 closes on it; retried on connection 2
		{"POST", 502}, // connection 2 closes on it; not retried
	} {
		raw := tt.method + " /x HTTP/1.1\r\nHost: chat\r\n\r\n"
		if tt.method == "POST" {
			raw = "POST /x HTTP/1.1\r\nHost: chat\r\nContent-Length: 1\r\n\r\nx"
		}
		resp, body := fwdRoundTrip(t, c, br, raw, tt.method)
		if resp.StatusCode != tt.status {
			t.Errorf("request %d (%s): got %d %q, want %d", i, tt.method, resp.StatusCode, body, tt.status)
		}
		if tt.status == 502 && string(body) != wantBadGateway {
			t.Errorf("502 body: got %q, want %s", body, wantBadGateway)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got["GET"] != 3 || got["POST"] != 1 {
		t.Errorf("upstream saw %d GET and %d POST, want 3 (one retried) and 1 (not retried)", got["GET"], got["POST"])
	}
}

func TestUpstreamBreaksMidResponse(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		switch {
		case strings.Contains(head, "/small"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("s", 10))
			c.Close()
		case strings.Contains(head, "/large"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("l", 100000))
			c.Close()
		case strings.Contains(head, "/chunked"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			c.Close()
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	g := fwdGate(t, up.URL, nil)
	// Nothing of a small body has gone to the client yet: a clean 502.
	resp, err := http.Get(g.URL + "/small")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || string(body) != wantBadGateway {
		t.Errorf("/small: got %d %q, want 502 %s", resp.StatusCode, body, wantBadGateway)
	}
	// A streamed body was already under way: the client sees it cut
	// (short of its Content-Length, or without the last chunk), never a
	// body that looks complete.
	for _, path := range []string{"/large", "/chunked"} {
		resp, err := http.Get(g.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err == nil {
			t.Errorf("%s: got %d, %d bytes, error %v; want 200 and a truncated body", path, resp.StatusCode, len(got), err)
		}
	}
	resp, err = http.Get(g.URL + "/after")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("after the failures: got %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
}

// TestClientGoneFreesUpstream: a client that disconnects while its request
// waits upstream (a long-poll) or while it uploads leaves no upstream
// connection and no goroutine behind.
func TestClientGoneFreesUpstream(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, _ string, _ []byte) {
		// Hold the request, reading until sessiongate lets go of it.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, c)
	})
	g := fwdGate(t, up.URL, nil)
	base := g.Metric("go_goroutines ")
	for _, tt := range []struct{ name, raw string }{
		{"waiting for the answer", "GET /sockjs/1/a/xhr HTTP/1.1\r\nHost: chat\r\n\r\n"},
		{"mid-upload", "POST /upload HTTP/1.1\r\nHost: chat\r\nContent-Length: 10000000\r\n\r\n" + strings.Repeat("x", 100000)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.Addr)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, tt.raw)
			waitUntil(t, 5*time.Second, "upstream connection opened", func() bool { return up.open.Load() == 1 })
			c.Close()
			waitUntil(t, 5*time.Second, "upstream connection closed", func() bool { return up.open.Load() == 0 })
		})
	}
	// fasthttp keeps idle worker goroutines for a while; allow a few.
	waitUntil(t, 5*time.Second, fmt.Sprintf("goroutines back near %v", base), func() bool {
		return g.Metric("go_goroutines ") <= base+4
	})
}

// waitUntil polls cond every 20 ms until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
