package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Forwarding-core behaviour that no client deadline, misbehaving upstream or
// vanished client may bend: a forwarded request waits for its upstream as
// long as upstream.response_header_timeout allows; an upstream connection is
// reused only when its last response ended exactly at its framing; a client
// that drops a streamed response frees its upstream connection at once.

func slowHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("hold")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	})
}

// slowUpstream answers every request, after holding it for the delay its
// "hold" query parameter names (a Go duration), with "<METHOD> <path>
// <body>", so an answer shows which request it belongs to.
func slowUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(slowHandler())
	t.Cleanup(srv.Close)
	return srv
}

// routeOnConn sends a sessions/info request on c, which sessiongate answers
// itself: with the event loop on, this hands the connection over to the
// fasthttp path for good.
func routeOnConn(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	resp, body := fwdRoundTrip(t, c, br, "GET "+routePath+"?sessionId="+routeSeedSession+" HTTP/1.1\r\nHost: chat\r\n"+
		"X-User-Id: "+routeSeedUser+"\r\nX-Auth-Token: "+routeSeedToken+"\r\n\r\n", "GET")
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("sessions/info: %d close=%v %q, want 200 and keep-alive", resp.StatusCode, resp.Close, body)
	}
}

// slowGateEnv is a gate in front of up with a seeded session in Redis.
func slowGateEnv(t *testing.T, upURL string) map[string]string {
	t.Helper()
	r := StartRedis(t)
	_, stored := routeSeedBodies(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
	return GateEnv(upURL, r.URL())
}

// TestSlowUpstreamOutlivesReadHeaderTimeout: an upstream answering after
// proxy.read_header_timeout has passed still gets its answer through, on a
// fresh connection, on one that sessiongate answered a route on, and on one
// that carried a chunked upload — whichever request path serves them.
func TestSlowUpstreamOutlivesReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	up := slowUpstream(t)
	env := slowGateEnv(t, up.URL)
	env["SESSIONGATE_PROXY_READ_HEADER_TIMEOUT"] = "1s"
	g := StartGate(t, env)

	slow := func(t *testing.T, c net.Conn, br *bufio.Reader, raw, method, want string) {
		t.Helper()
		resp, body := fwdRoundTrip(t, c, br, raw, method)
		if resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("slow answer: got %d %q (close=%v), want 200 %q", resp.StatusCode, body, resp.Close, want)
		}
	}
	const slowGet = "GET /poll?hold=3s HTTP/1.1\r\nHost: chat\r\n\r\n"
	t.Run("plain GET", func(t *testing.T) {
		t.Parallel()
		c, br := fwdDial(t, g)
		slow(t, c, br, slowGet, "GET", "GET /poll ")
		slow(t, c, br, slowGet, "GET", "GET /poll ")
	})
	t.Run("after sessions/info", func(t *testing.T) {
		t.Parallel()
		c, br := fwdDial(t, g)
		routeOnConn(t, c, br)
		slow(t, c, br, slowGet, "GET", "GET /poll ")
	})
	t.Run("after a chunked POST", func(t *testing.T) {
		t.Parallel()
		c, br := fwdDial(t, g)
		slow(t, c, br, "POST /send HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", "POST", "POST /send hi")
		slow(t, c, br, slowGet, "GET", "GET /poll ")
		slow(t, c, br, "POST /send?hold=3s HTTP/1.1\r\nHost: chat\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", "POST", "POST /send hi")
	})
	t.Run("slow Content-Length POST", func(t *testing.T) {
		t.Parallel()
		c, br := fwdDial(t, g)
		slow(t, c, br, "POST /send?hold=3s HTTP/1.1\r\nHost: chat\r\nContent-Length: 2\r\n\r\nhi", "POST", "POST /send hi")
	})
}

// TestSlowHTTPSUpstreamOutlivesReadHeaderTimeout: the same with an https://
// upstream, which the fasthttp path serves whatever proxy.event_loop says.
func TestSlowHTTPSUpstreamOutlivesReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	up := httptest.NewTLSServer(slowHandler())
	t.Cleanup(up.Close)
	g := fwdGate(t, up.URL, map[string]string{
		"SESSIONGATE_PROXY_READ_HEADER_TIMEOUT":         "1s",
		"SESSIONGATE_UPSTREAM_TLS_INSECURE_SKIP_VERIFY": "true",
	})
	c, br := fwdDial(t, g)
	for range 2 {
		resp, body := fwdRoundTrip(t, c, br, "GET /poll?hold=2s HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
		if resp.StatusCode != 200 || string(body) != "GET /poll " {
			t.Fatalf("slow answer: got %d %q (close=%v), want 200 %q", resp.StatusCode, body, resp.Close, "GET /poll ")
		}
	}
}

// TestLongPollHeld30s: a SockJS-style long poll held 30 s by the upstream,
// with the default timeouts, on a fresh connection and on one handed to the
// fasthttp path by a route.
func TestLongPollHeld30s(t *testing.T) {
	up := slowUpstream(t)
	g := StartGate(t, slowGateEnv(t, up.URL))
	var wg sync.WaitGroup
	errs := make(chan string, 2)
	for _, viaRoute := range []bool{false, true} {
		c, br := fwdDial(t, g)
		c.SetDeadline(time.Now().Add(60 * time.Second))
		if viaRoute {
			routeOnConn(t, c, br)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.WriteString(c, "POST /sockjs/123/abc/xhr?hold=30s HTTP/1.1\r\nHost: chat\r\nContent-Length: 0\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
			if err != nil {
				errs <- fmt.Sprintf("route first=%v: %v", viaRoute, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "POST /sockjs/123/abc/xhr " {
				errs <- fmt.Sprintf("route first=%v: got %d %q, want the upstream's answer", viaRoute, resp.StatusCode, body)
			}
		}()
	}
	// Parallel once the polls are held, as in TestRealClients: the 30 s
	// wait does not start behind the rest of the suite.
	t.Parallel()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
