package demo

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/config"
)

func TestMain(m *testing.M) {
	// Every goroutine the demo starts must be stopped by Close.
	goleak.VerifyTestMain(m)
}

// seedBody is the route documentation's success body, compact, without
// "success":true: what must be stored.
const seedBody = `{"_id":"646ceae9a8c3a3ba32d0e897","type":"session","sessionId":"QoYYFw2t9oKks2niG",` +
	`"instanceId":"f0313fa9-ebe6-4a84-8580-3104f6a09988","loginToken":"orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU=",` +
	`"ip":"172.20.0.2","host":"localhost:3000","device":{"type":"browser","name":"Chrome","longVersion":"113.0.0.0",` +
	`"os":{"name":"Windows","version":"10"},"version":"113.0.0"},"userId":"rbAXPnMktTFbNpwtJ",` +
	`"roles":["user","admin","livechat-agent","livechat-manager"],"mostImportantRole":"admin",` +
	`"loginAt":"2023-05-23T16:33:45.202Z","day":23,"month":5,"year":2023,` +
	`"searchTerm":"ChromebrowserWindowsQoYYFw2t9oKks2niGrbAXPnMktTFbNpwtJ","createdAt":"2023-05-23T16:33:45.203Z",` +
	`"_updatedAt":"2023-05-23T17:56:31.599Z","closedAt":"2023-05-23T17:56:31.599Z","lastActivityAt":"2023-05-23T17:56:31.599Z"}`

// hashedToken is SHA-256 of Token in standard base64, computed outside Go:
// printf %s 4uBK... | openssl dgst -sha256 -binary | base64
const hashedToken = "bJCsKEnxCJdAoBz87DTXSNNL2PueE5TPxazkhm8L44A="

func TestSessionIsTheSeed(t *testing.T) {
	if got := string(Session()); got != seedBody {
		t.Errorf("Session():\n got %s\nwant %s", got, seedBody)
	}
}

func TestEnviron(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want map[string]string
	}{
		{"defaults added", []string{"HOME=/root"}, map[string]string{
			"HOME":                     "/root",
			"SESSIONGATE_LISTEN":       DefaultListen,
			"SESSIONGATE_ADMIN_LISTEN": DefaultAdminListen,
			"SESSIONGATE_LOG_FORMAT":   "console",
			"SESSIONGATE_LOG_ACCESS":   "true",
		}},
		{"user settings kept", []string{"SESSIONGATE_LISTEN=127.0.0.1:0", "SESSIONGATE_LOG_FORMAT=json", "SESSIONGATE_ADMIN_LISTEN="}, map[string]string{
			"SESSIONGATE_LISTEN":       "127.0.0.1:0",
			"SESSIONGATE_ADMIN_LISTEN": "",
			"SESSIONGATE_LOG_FORMAT":   "json",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string][]string{}
			for _, kv := range Environ(tt.in) {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = append(got[k], v)
			}
			for k, want := range tt.want {
				if len(got[k]) != 1 || got[k][0] != want {
					t.Errorf("%s: got %q, want exactly [%q]", k, got[k], want)
				}
			}
		})
	}
}

// startDemo starts a demo on free loopback ports with cfg adjusted by edit.
func startDemo(t *testing.T, edit func(*config.Config)) (*Demo, *config.Config, *syncBuffer) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	if edit != nil {
		edit(cfg)
	}
	out := &syncBuffer{}
	d, err := Start(cfg, zap.NewNop(), out)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(d.Close)
	return d, cfg, out
}

func TestStartSeedsRedisAndRewritesConfig(t *testing.T) {
	d, cfg, _ := startDemo(t, func(c *config.Config) {
		c.Redis.KeyPrefix = "demo:"
		c.Redis.Password = "not-for-the-embedded-redis"
		c.Redis.Sentinel.Addrs = []string{"s1:26379"}
		c.Upstream.URL = "http://127.0.0.1:3000"
	})
	if cfg.Upstream.URL != d.UpstreamURL || !strings.HasPrefix(d.UpstreamURL, "http://127.0.0.1:") {
		t.Errorf("upstream.url: got %q, want the stand-in %q on loopback", cfg.Upstream.URL, d.UpstreamURL)
	}
	if cfg.Redis.URL != d.RedisURL || !strings.HasPrefix(d.RedisURL, "redis://127.0.0.1:") {
		t.Errorf("redis.url: got %q, want the embedded %q on loopback", cfg.Redis.URL, d.RedisURL)
	}
	if cfg.Redis.Password != "" || cfg.Redis.Sentinel.Addrs != nil {
		t.Errorf("redis credentials or topology kept: password %q, sentinel %q", cfg.Redis.Password, cfg.Redis.Sentinel.Addrs)
	}
	for _, addr := range []string{cfg.Listen, cfg.Admin.Listen} {
		if _, port, _ := net.SplitHostPort(addr); port == "0" || port == "" {
			t.Errorf("listen address %q: port 0 not resolved", addr)
		}
	}

	want := map[string]string{
		"demo:{rbAXPnMktTFbNpwtJ}:token:" + hashedToken:      `{"source":"sessiongate demo"}`,
		"demo:{rbAXPnMktTFbNpwtJ}:session:QoYYFw2t9oKks2niG": seedBody,
	}
	keys := d.redis.Keys()
	if len(keys) != len(want) {
		t.Errorf("embedded redis keys: got %q, want %d keys", keys, len(want))
	}
	for k, v := range want {
		got, err := d.redis.Get(k)
		if err != nil || got != v {
			t.Errorf("GET %s: got %q, %v; want %q", k, got, err, v)
		}
	}
}

func TestStartFailsOnBusyListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := config.Defaults()
	cfg.Listen = ln.Addr().String()
	if d, err := Start(cfg, zap.NewNop(), io.Discard); err == nil {
		d.Close()
		t.Fatal("Start on a busy address: got no error")
	} else if !strings.Contains(err.Error(), "listen") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("error %q does not name listen and %s", err, ln.Addr())
	}
}

func TestStandInUpstream(t *testing.T) {
	d, _, _ := startDemo(t, nil)
	tests := []struct {
		name       string
		path       string
		header     map[string]string
		wantStatus int
		wantBody   string
	}{
		{"info", "/api/info", nil, 200, `{"version":"` + UpstreamVersion + `","success":true}`},
		{"me without credentials", "/api/v1/me", nil, 401, `{"status":"error","message":"You must be logged in to do this."}`},
		{"me with a wrong token", "/api/v1/me", map[string]string{"X-User-Id": UserID, "X-Auth-Token": "x"}, 401, `{"status":"error","message":"You must be logged in to do this."}`},
		{"me", "/api/v1/me", map[string]string{"X-User-Id": UserID, "X-Auth-Token": Token}, 200, ""},
		{"anything else", "/api/v1/channels.list", nil, 404, `{"success":false,"error":"Not found (sessiongate demo stand-in upstream)"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", d.UpstreamURL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("body: got %s, want %s", body, tt.wantBody)
			}
			if !json.Valid(body) {
				t.Errorf("body is not JSON: %s", body)
			}
			if resp.Header.Get(UpstreamHeader) == "" || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("headers: got %v, want %s and Content-Type application/json", resp.Header, UpstreamHeader)
			}
		})
	}
}

func TestStandInWebSocketEcho(t *testing.T) {
	d, _, _ := startDemo(t, nil)
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(d.UpstreamURL, "http")+"/websocket", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: got %d, want 101", resp.StatusCode)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, m := range []struct {
		kind int
		data []byte
	}{
		{websocket.TextMessage, []byte(`["connect",{"msg":"connect","version":"1","support":["1"]}]`)},
		{websocket.BinaryMessage, bytes.Repeat([]byte{0, 1, 2, 0xff}, 64<<10)},
	} {
		if err := c.WriteMessage(m.kind, m.data); err != nil {
			t.Fatal(err)
		}
		kind, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if kind != m.kind || !bytes.Equal(got, m.data) {
			t.Errorf("echo: got type %d, %d bytes; want type %d, %d bytes", kind, len(got), m.kind, len(m.data))
		}
	}
}

// TestCloseEndsOpenWebSockets: Close must not wait on, or leak, a client
// that keeps its WebSocket open (goleak checks the goroutines).
func TestCloseEndsOpenWebSockets(t *testing.T) {
	cfg := config.Defaults()
	cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", ""
	d, err := Start(cfg, zap.NewNop(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(d.UpstreamURL, "http")+"/websocket", nil)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan struct{})
	go func() { d.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s with a WebSocket open")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Error("the WebSocket is still open after Close")
	}
}

// TestBannerWaitsForTheProxy: nothing is printed until something accepts on
// the listen address, then the banner shows the bound addresses.
func TestBannerWaitsForTheProxy(t *testing.T) {
	d, cfg, out := startDemo(t, nil)
	time.Sleep(100 * time.Millisecond)
	if out.String() != "" {
		t.Fatalf("banner printed before sessiongate listens:\n%s", out)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(5 * time.Second)
	for out.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	banner := out.String()
	for _, want := range []string{
		"DEMO",
		"not for production",
		"curl -i 'http://" + cfg.Listen + "/api/v1/sessions/info?sessionId=" + SessionID + "' -H 'X-User-Id: " + UserID + "' -H 'X-Auth-Token: " + Token + "'",
		"curl -i 'http://" + cfg.Listen + "/api/info'",
		"curl -i 'http://" + cfg.Admin.Listen + "/readyz'",
		d.UpstreamURL,
		strings.TrimPrefix(strings.TrimSuffix(d.RedisURL, "/0"), "redis://"),
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
}

func TestDialAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{":8080", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "127.0.0.1:8080"},
		{"[::]:8080", "[::1]:8080"},
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"[::1]:9", "[::1]:9"},
		{"localhost:8080", "localhost:8080"},
	}
	for _, tt := range tests {
		if got := dialAddr(tt.in); got != tt.want {
			t.Errorf("dialAddr(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
