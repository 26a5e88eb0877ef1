package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/valyala/fasthttp"
)

func serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: handle, StreamRequestBody: true, MaxRequestBodySize: 1 << 20}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown() })
	return ln.Addr().String()
}

func TestJSONBody(t *testing.T) {
	if len(JSONBody) != 1024 {
		t.Errorf("JSONBody: got %d bytes want 1024", len(JSONBody))
	}
	if !json.Valid(JSONBody) {
		t.Error("JSONBody is not JSON")
	}
}

func TestEndpoints(t *testing.T) {
	base := "http://" + serve(t)

	resp, err := http.Get(base + "/download?bytes=300001")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 300001 || resp.ContentLength != 300001 {
		t.Errorf("download: got %d bytes, Content-Length %d, want 300001", n, resp.ContentLength)
	}

	// 8 MiB: more than the 1 MiB body limit, so this only passes streamed.
	resp, err = http.Post(base+"/upload", "application/octet-stream", io.LimitReader(neverEnding('x'), 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"received":8388608}` {
		t.Errorf("upload: got %d %s want {\"received\":8388608}", resp.StatusCode, b)
	}

	body := strings.Repeat("y", 16<<10)
	resp, err = http.Post(base+"/api/v1/method.call/x", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != body || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("echo: got %d bytes (%q) want the 16 KiB body back as application/json", len(b), resp.Header.Get("Content-Type"))
	}

	resp, err = http.Get(base + "/api/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b, JSONBody) {
		t.Errorf("GET: got %d bytes want JSONBody", len(b))
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// The WebSocket stand-in: RFC 6455 §1.3's sample key must get the sample
// accept value, and a client frame gets "ok" back.
func TestWebSocket(t *testing.T) {
	c, err := net.DialTimeout("tcp", serve(t), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); resp.StatusCode != 101 || got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: got %d accept %q want 101 s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.StatusCode, got)
	}
	c.Write([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2})
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, frameOK) {
		t.Errorf("frame: got %q, %v want %q", got, err, frameOK)
	}
}

// TestSockJSEndpoints checks the rcmix case's three endpoints: the held
// poll, the stream and the DDP WebSocket's echo and ping.
func TestSockJSEndpoints(t *testing.T) {
	addr := serve(t)
	base := "http://" + addr

	start := time.Now()
	resp, err := http.Post(base+"/sockjs/1/abc/xhr?hold_ms=200", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != PollAnswer || time.Since(start) < 200*time.Millisecond {
		t.Errorf("poll: got %q after %v, want %q after 200ms", b, time.Since(start), PollAnswer)
	}

	resp, err = http.Post(base+"/sockjs/1/abc/xhr_streaming?interval_ms=50", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := string(StreamPrelude) + StreamFrame + StreamFrame
	got := make([]byte, len(want))
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != want {
		t.Errorf("stream: got %q, %v; want the prelude and two frames", got, err)
	}
	resp.Body.Close()

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/sockjs/1/abc/websocket?ping_ms=100", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	pinged := make(chan struct{}, 1)
	ws.SetPingHandler(func(string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return nil
	})
	msg := strings.Repeat("m", 300) // over 125 bytes: the 16-bit length form
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, echo, err := ws.ReadMessage()
	if err != nil || typ != websocket.TextMessage || string(echo) != msg {
		t.Fatalf("echo: got %d %q, %v", typ, echo, err)
	}
	go ws.ReadMessage() // runs the ping handler
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Error("no ping within 5s (ping_ms=100)")
	}
}
