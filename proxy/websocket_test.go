package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// parseRequestHeader parses raw as the client-facing server does: header
// names kept as sent.
func parseRequestHeader(t testing.TB, raw string) *fasthttp.RequestHeader {
	t.Helper()
	var h fasthttp.RequestHeader
	h.DisableNormalizing()
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return &h
}

func TestIsWebSocketUpgrade(t *testing.T) {
	const key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	tests := []struct {
		name string
		raw  string
		want bool
	}{
		{"canonical", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "\r\n", true},
		{"sockjs path", "GET /sockjs/123/abc/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "\r\n", true},
		{"lower-case names and values", "GET /websocket HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n", true},
		{"mixed-case token", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: UPGRADE\r\n\r\n", true},
		// Firefox sends this Connection header.
		{"connection list", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n", true},
		// Only an Upgrade of exactly websocket is a WebSocket handshake;
		// anything else is a plain request with Upgrade dropped (docs/forwarding.md).
		{"upgrade list", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: foo/2, websocket\r\nConnection: Upgrade\r\n\r\n", false},
		{"h2c first", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade\r\n\r\n", false},
		{"websocket first", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\n\r\n", false},
		{"two upgrade fields", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false},
		{"websocket with spaces", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade:  websocket \r\nConnection: Upgrade\r\n\r\n", true},
		{"empty list items", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket,\r\nConnection: Upgrade\r\n\r\n", false},
		{"connection split over two lines", "GET /websocket HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", true},
		{"no connection upgrade", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n", false},
		{"no upgrade header", "GET /websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n", false},
		{"other protocol", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n", false},
		{"token as substring only", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websockets\r\nConnection: upgraded\r\n\r\n", false},
		{"post", "POST /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n", false},
		{"get with a body", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 3\r\n\r\nabc", false},
		{"get with a chunked body", "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"plain get", "GET /api/v1/me HTTP/1.1\r\nHost: x\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h1.IsWebSocketUpgrade(parseRequestHeader(t, tt.raw)); got != tt.want {
				t.Errorf("h1.IsWebSocketUpgrade(%q) = %v, want %v", tt.raw, got, tt.want)
			}
		})
	}
}

func TestIsWebSocketUpgradeBuiltRequest(t *testing.T) {
	// A request built in process has no raw header block.
	var h fasthttp.RequestHeader
	h.SetMethod("GET")
	h.SetRequestURI("/websocket")
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	if !h1.IsWebSocketUpgrade(&h) {
		t.Errorf("h1.IsWebSocketUpgrade(built request) = false, want true")
	}
}

func TestAppendHandshakeHead(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want string
	}{{
		name: "everything end to end passes in order and case",
		raw: "GET /sockjs/123/abc/websocket?x=%2F HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ddp, v2\r\n" +
			"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nOrigin: https://chat.example\r\n" +
			"Cookie: rc_uid=u1; rc_token=t1\r\nx-ODD-Case: 1\r\nAuthorization: Bearer z\r\n\r\n",
		want: "GET /sockjs/123/abc/websocket?x=%2F HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ddp, v2\r\n" +
			"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nOrigin: https://chat.example\r\n" +
			"Cookie: rc_uid=u1; rc_token=t1\r\nx-ODD-Case: 1\r\nAuthorization: Bearer z\r\n" +
			"X-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: chat.example\r\nConnection: Upgrade\r\n\r\n",
	}, {
		name: "hop-by-hop headers and those Connection names are dropped",
		raw: "GET /websocket HTTP/1.1\r\nHost: x\r\nupgrade: websocket\r\nconnection: keep-alive, Upgrade, X-Hop\r\n" +
			"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\n" +
			"x-hop: 1\r\nX-Stay: 2\r\n\r\n",
		want: "GET /websocket HTTP/1.1\r\nHost: x\r\nupgrade: websocket\r\nX-Stay: 2\r\n" +
			"X-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\nConnection: Upgrade\r\n\r\n",
	}, {
		// A client naming the client-address headers in Connection must
		// not take away the values the proxy sets, nor keep its own.
		name: "client-address headers survive being named in Connection",
		raw: "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Real-IP, X-Forwarded-For, Host\r\n" +
			"x-real-ip: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
		want: "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" +
			"X-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 6.6.6.6, 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\nConnection: Upgrade\r\n\r\n",
	}, {
		name: "repeated headers keep their order",
		raw:  "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nCookie: a=1\r\nX-A: 1\r\nCookie: b=2\r\nX-A: 2\r\n\r\n",
		want: "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nCookie: a=1\r\nX-A: 1\r\nCookie: b=2\r\nX-A: 2\r\n" +
			"X-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: x\r\nConnection: Upgrade\r\n\r\n",
	}}
	p := fwdTestProxy()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.appendHandshakeHead(nil, fwdParseRequest(t, tt.raw, "192.0.2.7:1"))
			if err != nil || string(got) != tt.want {
				t.Errorf("appendHandshakeHead:\n got %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
}

func FuzzAppendHandshakeHead(f *testing.F) {
	f.Add("GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade, X-Hop\r\nX-Hop: 1\r\nCookie: a=b\r\n\r\n")
	f.Add("GET /sockjs/1/a/websocket HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nconnection: upgrade\r\nTE: x\r\nKeep-Alive: 1\r\n\r\n")
	f.Add("GET / HTTP/1.0\r\nConnection: ,,, ,\r\n\r\n")
	p := fwdTestProxy()
	f.Fuzz(func(t *testing.T, raw string) {
		ctx := &fasthttp.RequestCtx{}
		ctx.Request.Header.DisableNormalizing()
		if ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(raw))) != nil {
			return
		}
		h1.IsWebSocketUpgrade(&ctx.Request.Header)
		out, err := p.appendHandshakeHead(nil, ctx)
		if err != nil {
			return // refused: nothing goes upstream
		}
		// The result is one well-formed request head the upstream can parse,
		// ending with our Connection header, and without hop-by-hop headers.
		if !bytes.HasSuffix(out, []byte("\r\nConnection: Upgrade\r\n\r\n")) {
			t.Fatalf("handshake %q does not end with Connection: Upgrade", out)
		}
		// net/http's parser, not fasthttp's: fasthttp refuses an empty Host,
		// which RFC 9112 §3.2 allows and the client may have sent.
		if _, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out))); err != nil {
			t.Fatalf("handshake %q does not parse: %v", out, err)
		}
		_, headers := h1.NextLine(out)
		for rest := headers; len(rest) > 0; {
			var line []byte
			line, rest = h1.NextLine(rest)
			i := bytes.IndexByte(line, ':')
			if i <= 0 {
				continue
			}
			if k := h1.ClassifyField(line[:i]); k != h1.FieldConnection && k != h1.FieldUpgrade && k.HopByHop() {
				t.Fatalf("handshake %q keeps hop-by-hop %q", out, line[:i])
			}
		}
	})
}

func TestParseStatusLine(t *testing.T) {
	tests := []struct {
		head   string
		code   int
		wantOK bool
	}{
		{"HTTP/1.1 101 Switching Protocols\r\n\r\n", 101, true},
		{"HTTP/1.0 400 Bad Request\r\n\r\n", 400, true},
		{"HTTP/1.1 426\r\n\r\n", 426, true},
		{"HTTP/2 200 OK\r\n\r\n", 0, false},
		{"HTTP/1.1 1011 x\r\n\r\n", 0, false},
		{"HTTP/1.1 09x \r\n\r\n", 0, false},
		{"HTTP/1.1 099 x\r\n\r\n", 0, false},
		{"SSH-2.0-OpenSSH\r\n\r\n", 0, false},
		{"HTTP/1.1 101 Switching\x00Protocols\r\n\r\n", 0, false},
		{"HTTP/1.1 101\rX\r\n\r\n", 0, false},
	}
	for _, tt := range tests {
		code, ok := parseStatusLine([]byte(tt.head))
		if code != tt.code || ok != tt.wantOK {
			t.Errorf("parseStatusLine(%q) = %d, %v; want %d, %v", tt.head, code, ok, tt.code, tt.wantOK)
		}
	}
}

func FuzzPeekResponseHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"))
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 101 OK\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad"))
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), maxResponseHead)
		head, err := writeAndReadHead(discardConn{}, br, nil)
		if err != nil {
			return
		}
		// A head ends with the blank line, is a prefix of what is left in
		// br, and starts with a final status line.
		if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			t.Fatalf("head %q lacks the blank line", head)
		}
		if code, ok := parseStatusLine(head); !ok || (code < 200 && code != 101) {
			t.Fatalf("head %q: status %d, %v", head, code, ok)
		}
	})
}

// discardConn is a net.Conn whose writes vanish, for the fuzz target.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// wsFixture is a tunnels instance behind a real fasthttp server on loopback.
type wsFixture struct {
	t       *testing.T
	tunnels *tunnels
	addr    string // the proxy's client-facing address
	reg     *prometheus.Registry
	server  *fasthttp.Server
}

// newWSFixture serves t.serve for every request. keep selects fasthttp's
// KeepHijackedConns mode (prepareServer).
func newWSFixture(t *testing.T, upstream string, keep bool, headerWait time.Duration) *wsFixture {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, []string{ClassWebSocket})
	if err != nil {
		t.Fatal(err)
	}
	f := &wsFixture{t: t, tunnels: newTunnels(headerWait, newUpstreamDialer(u, true, time.Second), zap.NewNop(), m), reg: reg}
	f.server = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			f.tunnels.serve(ctx, fwdTestProxy().appendHandshakeHead)
		},
		DisableHeaderNamesNormalizing: true,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		NoDefaultDate:                 true,
		StreamRequestBody:             true,
	}
	if keep {
		f.tunnels.prepareServer(f.server)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); f.server.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.server.ShutdownWithContext(ctx)
		f.tunnels.closeAll(ctx)
		<-done
	})
	return f
}

// rawUpstream is a TCP upstream that hands each accepted connection, with
// the request head it read, to handle.
func rawUpstream(t *testing.T, handle func(c net.Conn, head []byte, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				head, err := peekResponseHead(br) // a request head ends the same way
				if err != nil {
					return
				}
				head = bytes.Clone(head)
				br.Discard(len(head))
				handle(c, head, br)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

const wsClientHead = "GET /sockjs/123/abc/websocket HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nx-Odd: 1\r\nX-Real-IP: 6.6.6.6\r\n\r\n"

const wsUpstreamHead = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Upstream: yes\r\n\r\n"

// TestTunnelBytes joins a client and an upstream that both send bytes
// right behind their handshake heads (so they sit in a reader's buffer), then
// exchange 1 MiB each way; every byte must arrive unchanged, in both
// fasthttp hijack modes.
func TestTunnelBytes(t *testing.T) {
	checkLeaks(t)
	for _, keep := range []bool{true, false} {
		t.Run(map[bool]string{true: "keep_hijacked", false: "fasthttp_owns_conn"}[keep], func(t *testing.T) {
			upPayload, clientPayload := randomBytes(t, 1<<20), randomBytes(t, 1<<20)
			gotHead := make(chan string, 1)
			gotFromClient := make(chan []byte, 1)
			upstream := rawUpstream(t, func(c net.Conn, head []byte, br *bufio.Reader) {
				gotHead <- string(head)
				go c.Write(append([]byte(wsUpstreamHead+"greeting"), upPayload...))
				b := make([]byte, len("early")+len(clientPayload))
				_, err := io.ReadFull(br, b)
				if err != nil {
					t.Errorf("upstream read: %v", err)
				}
				gotFromClient <- b
			})
			f := newWSFixture(t, upstream, keep, 5*time.Second)

			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// "early" travels in the same segment as the head: fasthttp reads
			// it into its buffer along with the request.
			go c.Write(append([]byte(wsClientHead+"early"), clientPayload...))

			want := append([]byte(wsUpstreamHead+"greeting"), upPayload...)
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("client read: %v", err)
			}
			if !bytes.Equal(got[:len(wsUpstreamHead)], []byte(wsUpstreamHead)) {
				t.Errorf("client got head %q, want %q", got[:len(wsUpstreamHead)], wsUpstreamHead)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("client got %d bytes differing from the %d the upstream sent", len(got), len(want))
			}
			head := <-gotHead
			for _, h := range []string{"\r\nx-Odd: 1\r\n", "\r\nX-Real-IP: 127.0.0.1\r\n", "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"} {
				if !strings.Contains(head, h) {
					t.Errorf("upstream head %q lacks %q", head, h)
				}
			}
			if strings.Contains(head, "6.6.6.6") {
				t.Errorf("upstream head %q carries the client's X-Real-IP", head)
			}
			if b := <-gotFromClient; !bytes.Equal(b, append([]byte("early"), clientPayload...)) {
				t.Errorf("upstream got %d bytes differing from what the client sent", len(b))
			}
			c.Close()
			waitFor(t, "tunnel count 0", func() bool { return f.tunnels.count() == 0 })
			if got := metricValue(t, f.tunnels.metrics.tunnelsTotal); got != 1 {
				t.Errorf("tunnels_total = %v, want 1", got)
			}
			if got := metricValue(t, f.tunnels.metrics.tunnelsOpen); got != 0 {
				t.Errorf("tunnels_open = %v, want 0", got)
			}
		})
	}
}

// TestTunnelTLSUpstream tunnels to an https upstream (a gorilla/websocket
// echo server behind TLS) and echoes a message through it.
func TestTunnelTLSUpstream(t *testing.T) {
	checkLeaks(t)
	upgrader := websocket.Upgrader{}
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil || c.WriteMessage(kind, msg) != nil {
				return
			}
		}
	}))
	up.StartTLS()
	t.Cleanup(up.Close)
	f := newWSFixture(t, up.URL, true, 5*time.Second)

	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+f.addr+"/websocket", nil)
	if err != nil {
		t.Fatalf("dial through the proxy: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg := randomBytes(t, 256<<10)
	if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo over TLS: %d bytes, %v; want the %d bytes sent", len(got), err, len(msg))
	}
	c.Close()
	waitFor(t, "tunnel count 0", func() bool { return f.tunnels.count() == 0 })
}

// TestTunnelCloses checks that either side closing closes the other.
func TestTunnelCloses(t *testing.T) {
	for _, side := range []string{"client", "upstream"} {
		t.Run("closer="+side, func(t *testing.T) {
			upConn := make(chan net.Conn, 1)
			upDone := make(chan error, 1)
			upstream := rawUpstream(t, func(c net.Conn, _ []byte, br *bufio.Reader) {
				c.Write([]byte(wsUpstreamHead))
				upConn <- c
				_, err := br.ReadByte() // returns when the tunnel closes
				upDone <- err
			})
			f := newWSFixture(t, upstream, true, 5*time.Second)
			c := dialTunnel(t, f.addr)
			waitFor(t, "tunnel count 1", func() bool { return f.tunnels.count() == 1 })
			up := <-upConn
			if side == "client" {
				c.Close()
				select {
				case err := <-upDone:
					if err == nil {
						t.Errorf("upstream read a byte, want EOF")
					}
				case <-time.After(5 * time.Second):
					t.Fatal("upstream side still open 5s after the client closed")
				}
			} else {
				up.Close()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Errorf("client read after upstream close: %v, want EOF", err)
				}
			}
			waitFor(t, "tunnel count 0", func() bool { return f.tunnels.count() == 0 })
		})
	}
}

func TestTunnelRefusedAndFailures(t *testing.T) {
	refuse := func(resp string) string {
		return rawUpstream(t, func(c net.Conn, _ []byte, _ *bufio.Reader) { c.Write([]byte(resp)) })
	}
	silent := rawUpstream(t, func(c net.Conn, _ []byte, br *bufio.Reader) { br.ReadByte() })
	tests := []struct {
		name       string
		upstream   string
		wantStatus int
		wantBody   string
		wantHeader map[string]string // "" means absent
		wantKind   string            // the upstream_errors_total kind counted, "" none
	}{
		{"400 relayed", refuse("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nX-Why: origin\r\nConnection: close\r\nContent-Length: 29\r\n\r\nNot a valid websocket request"),
			400, "Not a valid websocket request", map[string]string{"X-Why": "origin", "Content-Type": "text/plain"}, ""},
		{"chunked 403 relayed", refuse("HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nno!\r\n0\r\n\r\n"),
			403, "no!", nil, ""},
		{"426 keeps Upgrade", refuse("HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n"),
			426, "", map[string]string{"Upgrade": "websocket"}, ""},
		{"interim response skipped", refuse("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 1\r\n\r\nx"),
			400, "x", nil, ""},
		{"closed before answering", refuse(""), 502, string(exchange.BodyBadGateway), nil, "reset"},
		{"garbage answer", refuse("SSH-2.0-OpenSSH_9.2\r\n\r\n"), 502, string(exchange.BodyBadGateway), nil, "protocol"},
		{"unreachable", "http://" + closedAddr(t), 502, string(exchange.BodyBadGateway), nil, "connect"},
		{"too slow", silent, 504, string(exchange.BodyGatewayTimeout), nil, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newWSFixture(t, tt.upstream, true, 300*time.Millisecond)
			var req fasthttp.Request
			req.Header.DisableNormalizing()
			req.Header.SetRequestURI("http://" + f.addr + "/websocket")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Connection", "Upgrade")
			var resp fasthttp.Response
			if err := fasthttp.DoTimeout(&req, &resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tt.wantStatus || string(resp.Body()) != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode(), resp.Body(), tt.wantStatus, tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if got := string(resp.Header.Peek(k)); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if f.tunnels.count() != 0 {
				t.Errorf("tunnel count = %d, want 0", f.tunnels.count())
			}
			for _, kind := range []string{"connect", "timeout", "reset", "protocol"} {
				want := 0.0
				if kind == tt.wantKind {
					want = 1
				}
				if got := counterValue(t, f.tunnels.metrics.upstreamErrors.WithLabelValues(kind)); got != want {
					t.Errorf("upstream_errors_total{kind=%q} = %v, want %v", kind, got, want)
				}
			}
		})
	}
}

// TestCloseAllGradual opens tunnels, closes them all with a deadline and
// checks the closes are spread (the last one no earlier than the spread
// allows), that closeAll returns before the deadline, and that no tunnel
// starts afterwards.
func TestCloseAllGradual(t *testing.T) {
	checkLeaks(t)
	upstream := rawUpstream(t, func(c net.Conn, _ []byte, br *bufio.Reader) {
		c.Write([]byte(wsUpstreamHead))
		br.ReadByte()
	})
	f := newWSFixture(t, upstream, true, 5*time.Second)
	const n = 5
	closedAt := make(chan time.Time, n)
	for range n {
		c := dialTunnel(t, f.addr)
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			c.Read(make([]byte, 1))
			closedAt <- time.Now()
		}()
	}
	waitFor(t, "tunnel count 5", func() bool { return f.tunnels.count() == n })

	const timeout = time.Second // spread: half of it
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	if err := f.tunnels.closeAll(ctx); err != nil {
		t.Fatalf("closeAll: %v", err)
	}
	var first, last time.Time
	for range n {
		at := <-closedAt
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if spread := last.Sub(first); spread < timeout/2*3/4 {
		t.Errorf("closes spread over %v, want about %v", spread, timeout/2)
	}
	if first.Sub(start) > timeout/4 {
		t.Errorf("first close %v after closeAll began, want at once", first.Sub(start))
	}
	if got := f.tunnels.count(); got != 0 {
		t.Errorf("count after closeAll = %d, want 0", got)
	}
	// A handshake that completes after closeAll (a request already in
	// flight when the listener closed) gets its connection closed instead
	// of a tunnel.
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(wsClientHead))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Errorf("late handshake got %q, %v; want the connection closed", b, err)
	}
	if got := metricValue(t, f.tunnels.metrics.tunnelsTotal); got != n {
		t.Errorf("tunnels_total = %v, want %d (the late one never opens)", got, n)
	}
}

func TestCloseAllDeadline(t *testing.T) {
	upstream := rawUpstream(t, func(c net.Conn, _ []byte, br *bufio.Reader) {
		c.Write([]byte(wsUpstreamHead))
		br.ReadByte()
	})
	f := newWSFixture(t, upstream, true, 5*time.Second)
	for range 3 {
		dialTunnel(t, f.addr)
	}
	waitFor(t, "tunnel count 3", func() bool { return f.tunnels.count() == 3 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no time left: everything closes at once
	if err := f.tunnels.closeAll(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("closeAll = %v, want nil or context.Canceled", err)
	}
	waitFor(t, "tunnel count 0", func() bool { return f.tunnels.count() == 0 })
}

// dialTunnel opens a tunnel through the proxy at addr and reads the 101
// head; the connection is closed at cleanup.
func dialTunnel(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(wsClientHead)); err != nil {
		t.Fatal(err)
	}
	head := make([]byte, len(wsUpstreamHead))
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatalf("reading 101: %v", err)
	}
	if string(head) != wsUpstreamHead {
		t.Fatalf("got head %q, want %q", head, wsUpstreamHead)
	}
	c.SetDeadline(time.Time{})
	return c
}

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func BenchmarkIsWebSocketUpgrade(b *testing.B) {
	for _, c := range []struct{ name, raw string }{
		{"req=websocket", wsClientHead},
		{"req=rest", "GET /api/v1/rooms.get HTTP/1.1\r\nHost: chat\r\nX-User-Id: u\r\nX-Auth-Token: t\r\nAccept: application/json\r\nUser-Agent: bench\r\n\r\n"},
	} {
		h := parseRequestHeader(b, c.raw)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h1.IsWebSocketUpgrade(h)
			}
		})
	}
}

// BenchmarkTunnel measures throughput through a tunnel (path=tunnel) against
// the same echo over a direct loopback connection (path=direct), 32 KiB per
// round trip.
func BenchmarkTunnel(b *testing.B) {
	for _, path := range []string{"direct", "tunnel"} {
		b.Run("path="+path, func(b *testing.B) {
			addr := startEcho(b, path == "tunnel")
			if path == "tunnel" {
				addr = benchProxy(b, "http://"+addr)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if path == "tunnel" {
				c.Write([]byte(wsClientHead))
				io.ReadFull(c, make([]byte, len(wsUpstreamHead)))
			}
			msg := randomBytes(b, 32<<10)
			back := make([]byte, len(msg))
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				go c.Write(msg)
				if _, err := io.ReadFull(c, back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// startEcho starts an upstream that echoes what each connection sends;
// with handshake set it first reads a request head and answers
// wsUpstreamHead. It returns its address and stops at cleanup.
func startEcho(tb testing.TB, handshake bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if handshake {
					head, err := peekResponseHead(br)
					if err != nil {
						return
					}
					br.Discard(len(head))
					c.Write([]byte(wsUpstreamHead))
				}
				io.Copy(c, br)
			}()
		}
	}()
	return ln.Addr().String()
}

func benchProxy(b *testing.B, upstream string) string {
	u, _ := url.Parse(upstream)
	m, _ := newMetrics(prometheus.NewRegistry(), []string{ClassWebSocket})
	tn := newTunnels(time.Second, newUpstreamDialer(u, false, time.Second), zap.NewNop(), m)
	s := &fasthttp.Server{
		Handler:                       func(ctx *fasthttp.RequestCtx) { tn.serve(ctx, fwdTestProxy().appendHandshakeHead) },
		DisableHeaderNamesNormalizing: true,
	}
	tn.prepareServer(s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ln)
	b.Cleanup(func() {
		s.Shutdown()
		tn.closeAll(context.Background())
	})
	return ln.Addr().String()
}

// metricValue reads a gauge's or counter's current value.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// checkLeaks fails t if goroutines started during t outlive its cleanups.
func checkLeaks(t *testing.T) {
	t.Helper()
	opts := []goleak.Option{
		goleak.IgnoreCurrent(),
		// fasthttp's worker-pool cleaner sleeps out its interval after
		// Shutdown before it notices.
		goleak.IgnoreTopFunction("time.Sleep"),
	}
	// Registered first, so it runs after every later cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
}

func TestCheckSwitchHead(t *testing.T) {
	const sw = "HTTP/1.1 101 Switching Protocols\r\n"
	for _, tt := range []struct {
		name, head string
		ok         bool
	}{
		{"websocket", sw + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n", true},
		{"any case", sw + "upgrade: WebSocket\r\nconnection: upgrade\r\n\r\n", true},
		{"no upgrade", sw + "Connection: Upgrade\r\n\r\n", false},
		{"h2c", sw + "Upgrade: h2c\r\nConnection: Upgrade\r\n\r\n", false},
		{"list", sw + "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n\r\n", false},
		{"two fields", sw + "Upgrade: websocket\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", false},
		{"malformed head", sw + "Upgrade: websocket\r\nX-A: a\x00b\r\n\r\n", false},
		{"space before colon", sw + "Upgrade : websocket\r\n\r\n", false},
	} {
		if err := checkSwitchHead([]byte(tt.head)); (err == nil) != tt.ok {
			t.Errorf("%s: got %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
