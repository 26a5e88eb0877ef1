package test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The demo's documented user, token and session (Rocket.Chat's example).
const (
	demoUserID    = "rbAXPnMktTFbNpwtJ"
	demoToken     = "4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6"
	demoSessionOK = `{"_id":"646ceae9a8c3a3ba32d0e897","type":"session","sessionId":"QoYYFw2t9oKks2niG",` +
		`"instanceId":"f0313fa9-ebe6-4a84-8580-3104f6a09988","loginToken":"orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU=",` +
		`"ip":"172.20.0.2","host":"localhost:3000","device":{"type":"browser","name":"Chrome","longVersion":"113.0.0.0",` +
		`"os":{"name":"Windows","version":"10"},"version":"113.0.0"},"userId":"rbAXPnMktTFbNpwtJ",` +
		`"roles":["user","admin","livechat-agent","livechat-manager"],"mostImportantRole":"admin",` +
		`"loginAt":"2023-05-23T16:33:45.202Z","day":23,"month":5,"year":2023,` +
		`"searchTerm":"ChromebrowserWindowsQoYYFw2t9oKks2niGrbAXPnMktTFbNpwtJ","createdAt":"2023-05-23T16:33:45.203Z",` +
		`"_updatedAt":"2023-05-23T17:56:31.599Z","closedAt":"2023-05-23T17:56:31.599Z","lastActivityAt":"2023-05-23T17:56:31.599Z",` +
		`"success":true}`
	demoUpstreamHeader = "X-Sessiongate-Demo"
)

// bannerCommand is one command of the demo's banner with the comment above it.
type bannerCommand struct {
	comment string
	args    []string
}

// demoBanner waits for the banner in the gate's output and returns its
// commands.
func demoBanner(t *testing.T, g *Gate) []bannerCommand {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.Logs(), "Stop with Ctrl-C.") {
		if time.Now().After(deadline) {
			t.Fatalf("no demo banner in 10s:\n%s", g.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var cmds []bannerCommand
	comment := ""
	for _, line := range strings.Split(g.Logs(), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "# "):
			comment = strings.TrimPrefix(line, "# ")
		case strings.HasPrefix(line, "curl ") || strings.HasPrefix(line, "websocat ") || strings.HasPrefix(line, "redis-cli "):
			cmds = append(cmds, bannerCommand{comment: comment, args: shellWords(t, line)})
		}
	}
	return cmds
}

// shellWords splits a command line the way sh does for the only quoting the
// banner uses (single quotes), stopping at a pipe.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '|') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			if r == '|' {
				return words
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// curl runs a banner's curl command (-i, -s, -H, one URL) with net/http.
func curl(t *testing.T, args []string) (*http.Response, []byte) {
	t.Helper()
	var url string
	header := http.Header{}
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "-i", "-s":
		case "-H":
			i++
			name, value, _ := strings.Cut(args[i], ":")
			header.Add(name, strings.TrimSpace(value))
		default:
			if url != "" {
				t.Fatalf("two URLs in %q", args)
			}
			url = args[i]
		}
	}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body
}

// TestDemo runs `sessiongate demo` as the README's first command does, then
// every command its banner prints: the route's 200, 401 and 404 (answered
// by sessiongate, so without the stand-in's header), the forwarded calls
// (with it), the WebSocket echo and the admin URLs.
func TestDemo(t *testing.T) {
	t.Parallel()
	g := StartGate(t, map[string]string{
		"SESSIONGATE_LISTEN":       "127.0.0.1:0",
		"SESSIONGATE_ADMIN_LISTEN": "127.0.0.1:0",
		"SESSIONGATE_LOG_FORMAT":   "json", // StartGate reads the JSON "serving" line
	}, "demo")
	cmds := demoBanner(t, g)

	wantStatus := regexp.MustCompile(`^(\d{3})\b`)
	routeBodies := map[string]string{
		"200": demoSessionOK,
		"401": `{"status":"error","message":"You must be logged in to do this."}`,
		"404": `{"success":false,"error":"Session not found"}`,
	}
	seen := map[string]bool{}
	for _, c := range cmds {
		name := c.comment
		if last := c.args[len(c.args)-1]; strings.HasPrefix(name, "probes") {
			name += " " + last[strings.LastIndexByte(last, '/'):]
		}
		t.Run(name, func(t *testing.T) {
			for _, a := range c.args {
				if strings.Contains(a, "://") && !strings.Contains(a, g.Addr) && !strings.Contains(a, strings.TrimPrefix(g.AdminURL, "http://")) {
					t.Errorf("%q points at neither the gate (%s) nor its admin (%s)", a, g.Addr, g.AdminURL)
				}
			}
			switch c.args[0] {
			case "websocat":
				seen["websocket"] = true
				demoWebSocketEcho(t, c.args[1])
				return
			case "redis-cli":
				seen["redis-cli"] = true
				return
			}
			resp, body := curl(t, c.args)
			fromUpstream := resp.Header.Get(demoUpstreamHeader) != ""
			m := wantStatus.FindStringSubmatch(c.comment)
			switch {
			case m != nil && strings.Contains(c.comment, "stand-in"):
				seen["forwarded "+m[1]] = true
				if got := strconv.Itoa(resp.StatusCode); got != m[1] || !fromUpstream {
					t.Errorf("got %s (from upstream: %v) %s, want %s from the stand-in upstream", got, fromUpstream, body, m[1])
				}
			case m != nil:
				seen["route "+m[1]] = true
				if got := strconv.Itoa(resp.StatusCode); got != m[1] || string(body) != routeBodies[m[1]] || fromUpstream {
					t.Errorf("got %s %s (from upstream: %v)\nwant %s %s from sessiongate's route (it forwards the route until sessions/ lands)",
						got, body, fromUpstream, m[1], routeBodies[m[1]])
				}
				for name, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"} {
					if got := resp.Header.Get(name); got != want {
						t.Errorf("%s: got %q, want %q", name, got, want)
					}
				}
			case strings.HasSuffix(c.args[len(c.args)-1], "/healthz"):
				seen["healthz"] = true
				if resp.StatusCode != 200 {
					t.Errorf("/healthz: got %d, want 200", resp.StatusCode)
				}
			case strings.HasSuffix(c.args[len(c.args)-1], "/readyz"):
				seen["readyz"] = true
				if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"redis":"ok"`)) {
					t.Errorf("/readyz: got %d %s, want 200 with redis ok", resp.StatusCode, body)
				}
			case strings.HasSuffix(c.args[len(c.args)-1], "/metrics"):
				seen["metrics"] = true
				if resp.StatusCode != 200 || !bytes.Contains(body, []byte("\nsessiongate_requests_total{")) {
					t.Errorf("/metrics: got %d, want 200 with sessiongate_requests_total samples:\n%.2000s", resp.StatusCode, body)
				}
			default:
				t.Errorf("banner command without a known expectation: %q", c.args)
			}
		})
	}
	for _, want := range []string{"route 200", "route 401", "route 404", "forwarded 200", "forwarded 401",
		"websocket", "healthz", "readyz", "metrics", "redis-cli"} {
		if !seen[want] {
			t.Errorf("the banner has no command for %s", want)
		}
	}

	// The banner shows the demo token on purpose (stdout); the logs must not.
	for _, line := range strings.Split(g.Logs(), "\n") {
		if strings.HasPrefix(line, "{") && strings.Contains(line, demoToken) {
			t.Errorf("a log line shows the login token: %s", line)
		}
	}

	g.Signal(syscall.SIGTERM)
	if code := g.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
}

func demoWebSocketEcho(t *testing.T, url string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket %s: %v (status %d)", url, err, status)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	msg := `{"msg":"connect","version":"1","support":["1"]}`
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.ReadMessage()
	if err != nil || string(got) != msg {
		t.Errorf("echo: got %q, %v; want %q", got, err, msg)
	}
}

// TestDemoRefusesABusyPort: the demo's fixed default ports may be taken; it
// must say so and exit 2, not print a banner for someone else's server.
func TestDemoRefusesABusyPort(t *testing.T) {
	t.Parallel()
	up := &http.Server{Handler: http.NotFoundHandler()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })

	code, out := RunGate(t, map[string]string{
		"SESSIONGATE_LISTEN":       ln.Addr().String(),
		"SESSIONGATE_ADMIN_LISTEN": "127.0.0.1:0",
	}, "demo")
	if code != 2 {
		t.Fatalf("got exit %d, want 2; output:\n%s", code, out)
	}
	if !strings.Contains(out, "listen") || !strings.Contains(out, ln.Addr().String()) || strings.Contains(out, "curl") {
		t.Errorf("output should name listen and %s, and print no banner:\n%s", ln.Addr(), out)
	}
}
