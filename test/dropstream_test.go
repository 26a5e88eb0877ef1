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

// TestDroppedStreamClosesUpstream: a client that goes away in the middle of
// a streamed response (SockJS xhr-streaming) frees its upstream connection
// within about a second, not at sessiongate's next failed write to it.
func TestDroppedStreamClosesUpstream(t *testing.T) {
	t.Parallel()
	closed := make(chan time.Duration, 10)
	up := fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		line, _, _ := strings.Cut(head, "\r\n")
		var start, beat string
		switch strings.Fields(line)[1] {
		case "/chunked":
			start = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"
			beat = "2\r\nh\n\r\n"
		case "/until-close":
			start = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst\n"
			beat = "h\n"
		case "/long-length":
			start = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst\n"
			beat = "h\n"
		default:
			io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
			return
		}
		sent := time.Now()
		io.WriteString(c, start)
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Second):
				}
				if _, err := io.WriteString(c, beat); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		var b [1]byte
		c.Read(b[:]) // returns when sessiongate closes the connection
		closed <- time.Since(sent)
		c.Close()
	})
	g := fwdGate(t, up.URL, nil)
	for _, tc := range []struct{ path, version string }{
		{"/chunked", "HTTP/1.1"},
		{"/until-close", "HTTP/1.1"},
		{"/long-length", "HTTP/1.1"},
		// An HTTP/1.0 client gets a body of unknown length delimited by
		// close: sessiongate takes the connection over to relay it.
		{"/chunked", "HTTP/1.0"},
	} {
		t.Run(tc.version+tc.path, func(t *testing.T) {
			c, br := fwdDial(t, g)
			io.WriteString(c, "GET "+tc.path+" "+tc.version+"\r\nHost: chat\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if err != nil || line != "first\n" {
				t.Fatalf("first piece: %q, %v", line, err)
			}
			c.Close()
			select {
			case d := <-closed:
				t.Logf("upstream connection closed %v after the stream started", d.Round(time.Millisecond))
				if d > 3*time.Second {
					t.Errorf("upstream connection closed %v after the stream started, want within ~1s of the client leaving", d)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("upstream connection still open 15s after the client left")
			}
		})
	}
}

// TestPausingStreamOutlivesReadHeaderTimeout: a streamed response whose
// upstream falls silent for longer than proxy.read_header_timeout between
// pieces reaches a client that is still there, whole, on a fresh
// connection and on one handed to the fasthttp path by a route: watching
// the client while the upstream is silent must not take a passed
// request-head deadline for the client leaving.
func TestPausingStreamOutlivesReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
		time.Sleep(2500 * time.Millisecond)
		io.WriteString(c, "5\r\nlast\n\r\n0\r\n\r\n")
	})
	env := slowGateEnv(t, up.URL)
	env["SESSIONGATE_PROXY_READ_HEADER_TIMEOUT"] = "1s"
	g := StartGate(t, env)
	for _, viaRoute := range []bool{false, true} {
		t.Run(map[bool]string{false: "fresh connection", true: "after sessions/info"}[viaRoute], func(t *testing.T) {
			t.Parallel()
			c, br := fwdDial(t, g)
			if viaRoute {
				routeOnConn(t, c, br)
			}
			resp, body := fwdRoundTrip(t, c, br, "GET /stream HTTP/1.1\r\nHost: chat\r\n\r\n", "GET")
			if resp.StatusCode != 200 || string(body) != "first\nlast\n" {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, "first\nlast\n")
			}
		})
	}
}
