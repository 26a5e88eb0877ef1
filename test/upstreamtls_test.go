package test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tlsHelloUpstream is an https:// stand-in upstream that records, per
// client address, the TLS ClientHello each of the gate's connections sent
// and what kind of request came on it.
type tlsHelloUpstream struct {
	*httptest.Server
	mu     sync.Mutex
	hellos map[string]string // remote address → summary of its ClientHello
	kinds  map[string]string // remote address → "plain" or "websocket"
}

// helloSummary is the part of a ClientHello that the client's tls.Config
// decides.
func helloSummary(h *tls.ClientHelloInfo) string {
	return fmt.Sprintf("server_name=%q alpn=%q versions=%x ciphers=%x curves=%v sigschemes=%v",
		h.ServerName, h.SupportedProtos, h.SupportedVersions, h.CipherSuites, h.SupportedCurves, h.SignatureSchemes)
}

func startTLSHelloUpstream(t *testing.T) *tlsHelloUpstream {
	t.Helper()
	u := &tlsHelloUpstream{hellos: map[string]string{}, kinds: map[string]string{}}
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := "plain"
		if websocket.IsWebSocketUpgrade(r) {
			kind = "websocket"
		}
		u.mu.Lock()
		u.kinds[r.RemoteAddr] = kind
		u.mu.Unlock()
		if r.TLS == nil || r.TLS.NegotiatedProtocol != "http/1.1" {
			http.Error(w, "want TLS with ALPN http/1.1", http.StatusMisdirectedRequest)
			return
		}
		if kind == "plain" {
			io.WriteString(w, "plain "+r.URL.Path)
			return
		}
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if c.WriteMessage(kind, msg) != nil {
				return
			}
		}
	}))
	u.Server.TLS = &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			u.mu.Lock()
			u.hellos[h.Conn.RemoteAddr().String()] = helloSummary(h)
			u.mu.Unlock()
			return nil, nil
		},
	}
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// helloOf returns the ClientHello summary of the connection on which a
// request of kind arrived.
func (u *tlsHelloUpstream) helloOf(t *testing.T, kind string) string {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	var found []string
	for addr, k := range u.kinds {
		if k == kind {
			found = append(found, u.hellos[addr])
		}
	}
	slices.Sort(found)
	found = slices.Compact(found)
	if len(found) != 1 || found[0] == "" {
		t.Fatalf("%s requests came over connections with ClientHellos %q, want exactly one kind", kind, found)
	}
	return found[0]
}

// TestHTTPSUpstreamOneTLSConfig: with an https:// upstream, plain requests
// (the forwarding pool) and WebSocket handshakes (the tunnels) both get
// through, on both settings of proxy.event_loop, and the upstream sees the
// same TLS ClientHello from both: one dialer and one TLS configuration,
// HTTP/1.1 offered by ALPN, nothing below TLS 1.2.
func TestHTTPSUpstreamOneTLSConfig(t *testing.T) {
	t.Parallel()
	for _, loop := range []string{"true", "false"} {
		t.Run("event_loop="+loop, func(t *testing.T) {
			t.Parallel()
			up := startTLSHelloUpstream(t)
			g := startWSGate(t, up.URL, map[string]string{
				"SESSIONGATE_UPSTREAM_TLS_INSECURE_SKIP_VERIFY": "true",
				"SESSIONGATE_PROXY_EVENT_LOOP":                  loop,
			})

			client := &http.Client{Timeout: 5 * time.Second}
			for i := range 3 {
				resp, err := client.Get(fmt.Sprintf("%s/api/v1/info%d", g.URL, i))
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("plain /api/v1/info%d", i); resp.StatusCode != 200 || string(body) != want {
					t.Fatalf("plain request: got %d %q, want 200 %q", resp.StatusCode, body, want)
				}
			}

			d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
			c, resp, err := d.Dial("ws://"+g.Addr+"/websocket", nil)
			if err != nil {
				t.Fatalf("websocket through the gate: %v (response %v)", err, resp)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMessage(websocket.TextMessage, []byte(`{"msg":"ping"}`)); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := c.ReadMessage(); err != nil || string(msg) != `{"msg":"ping"}` {
				t.Fatalf("websocket echo: got %q, %v", msg, err)
			}

			plain, ws := up.helloOf(t, "plain"), up.helloOf(t, "websocket")
			if plain != ws {
				t.Errorf("the forwarding pool and the WebSocket tunnels sent different ClientHellos:\npool:   %s\ntunnel: %s", plain, ws)
			}
			if !strings.Contains(plain, `alpn=["http/1.1"]`) {
				t.Errorf("ClientHello offers %s, want ALPN exactly http/1.1", plain)
			}
			for _, old := range []string{"301", "302", "300"} { // TLS 1.0, 1.1, SSL 3.0
				if strings.Contains(plain[strings.Index(plain, "versions="):strings.Index(plain, " ciphers=")], old) {
					t.Errorf("ClientHello offers a version below TLS 1.2: %s", plain)
				}
			}
		})
	}
}
