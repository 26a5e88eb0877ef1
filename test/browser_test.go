package test

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The browser rig: headless Chromium as the client, the real-client rig's
// sockjs upstream (test/clients/upstream.js) behind the built binary.
// test/clients/browser.js drives Chromium over the DevTools protocol; the
// page it opens through sessiongate (test/clients/browser/) loads
// sockjs-client's browser bundle and speaks DDP over each transport the
// browser offers.
//
// Chromium is needed (Debian: apt-get install chromium; or name a binary
// in SESSIONGATE_TEST_CHROMIUM): without it the test skips with a notice,
// and fails when SESSIONGATE_TEST_REQUIRE_BROWSER=1 (CI sets it).

const requireBrowserEnv = "SESSIONGATE_TEST_REQUIRE_BROWSER"

// needBrowser returns the Chromium binary, or skips (fails, with
// SESSIONGATE_TEST_REQUIRE_BROWSER=1) t when there is none.
func needBrowser(t *testing.T) string {
	t.Helper()
	require := os.Getenv(requireBrowserEnv) == "1"
	// The browser is driven from Node: requiring it requires Node too.
	if why := nodeMissing(); why != "" {
		if require || os.Getenv(requireNodeEnv) == "1" {
			t.Fatalf("%s (and %s or %s=1)", why, requireBrowserEnv, requireNodeEnv)
		}
		notice("NOTE: skipping the browser test: " + why)
		t.Skip(why)
	}
	if p := os.Getenv("SESSIONGATE_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	why := "no chromium on PATH (apt-get install chromium, or set SESSIONGATE_TEST_CHROMIUM)"
	if require {
		t.Fatalf("%s (and %s=1)", why, requireBrowserEnv)
	}
	notice("NOTE: skipping the browser test: " + why)
	t.Skip(why)
	return ""
}

// browserPage is one tab's report (test/clients/browser/page.js, or the
// driver's own for the drop check).
type browserPage struct {
	OK         bool    `json:"ok"`
	Error      string  `json:"error"`
	Transport  string  `json:"transport"`
	Info       int     `json:"info"`
	Session    string  `json:"session"`
	Pong       bool    `json:"pong"`
	Burst      int     `json:"burst"`
	AfterIdle  bool    `json:"afterIdle"`
	Heartbeats int     `json:"heartbeats"`
	LongestMs  float64 `json:"longestRequestMs"`

	PageStatus      int           `json:"pageStatus"`
	PageText        string        `json:"pageText"`
	PageContentType string        `json:"pageContentType"`
	Valid           browserAnswer `json:"valid"`
	WrongToken      browserAnswer `json:"wrongToken"`
	NoHeaders       browserAnswer `json:"noHeaders"`

	UpstreamClosedAfterMs float64 `json:"upstreamClosedAfterMs"`
}

type browserAnswer struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

type browserReport struct {
	OK      bool                   `json:"ok"`
	Error   string                 `json:"error"`
	Browser string                 `json:"browser"`
	Pages   map[string]browserPage `json:"pages"`
	Seconds float64                `json:"seconds"`
}

// TestBrowserClients: sockjs-client in headless Chromium through
// sessiongate, on both request paths. Each transport's tab sits 16 s with
// nothing to say after a burst of DDP calls, while the upstream holds an
// idle poll 13 s before its heartbeat, more than twice the gate's 5 s
// proxy.read_header_timeout (which once cut such polls): the held poll,
// the silent streams and the heartbeats must come through, and a call must
// still be answered afterwards. (Rocket.Chat's full 25–30 s holds are
// TestLongPollHeld30s and TestRealClients; here they would only make the
// suite longer.) Beside them, a REST answer loaded as a page, sessions/info
// from the browser's fetch, and a tab closed in the middle of an
// xhr-streaming response, whose upstream connection must close within
// about a second (sessiongate gives a client's end of input that long to
// be a half-close).
func TestBrowserClients(t *testing.T) {
	chromium := needBrowser(t)
	const heartbeat = 13 * time.Second
	up := startNodeUpstream(t, heartbeat)
	r := StartRedis(t)
	const user, token, session = "browserUser1", "browser-login-token", "browserSession1"
	const doc = `{"_id":"65f0c0ffee0000000000beef","sessionId":"browserSession1","userId":"browserUser1","type":"session","loginAt":"2023-05-23T16:33:45.202Z"}`
	routeSeed(t, r.Client(), user, token, map[string]string{session: doc})
	// Both browsers start here and the test is parallel only then, as in
	// TestRealClients: their half-minute runs do not wait for a free slot.
	runs := map[string]*nodeRun{}
	for _, loop := range realClientPaths() {
		env := GateEnv(up, r.URL())
		env["SESSIONGATE_PROXY_EVENT_LOOP"] = loop
		env["SESSIONGATE_LOG_ACCESS"] = "false"
		env["SESSIONGATE_LOG_LEVEL"] = "info"
		env["SESSIONGATE_PROXY_READ_HEADER_TIMEOUT"] = "5s"
		g := StartGate(t, env)
		_, port, err := net.SplitHostPort(g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		runs[loop] = startBrowser(t, chromium, port, up, user, token, session, "16000")
	}
	t.Parallel()
	for _, loop := range realClientPaths() {
		t.Run("event_loop="+loop, func(t *testing.T) {
			rep := browserResult(t, runs[loop])
			t.Logf("%s, %.1f s", rep.Browser, rep.Seconds)
			for _, transport := range []string{"websocket", "xhr-streaming", "eventsource", "iframe-eventsource",
				"iframe-htmlfile", "xhr-polling", "iframe-xhr-polling", "jsonp-polling"} {
				t.Run("sockjs-client/"+transport, func(t *testing.T) {
					p, ok := rep.Pages[transport]
					if !ok || !p.OK {
						t.Fatalf("tab failed: %+v", p)
					}
					t.Logf("%d heartbeats while silent, longest request %.0f ms", p.Heartbeats, p.LongestMs)
					if p.Transport != transport || p.Session != "x" || !p.Pong || p.Burst != 18 || !p.AfterIdle {
						t.Errorf("report: got %+v, want transport %s, DDP connected, pong, 18 burst calls and a call after the idle time", p, transport)
					}
					if p.Info != 200 {
						t.Errorf("sessions/info before connecting: got %d, want 200", p.Info)
					}
					// On a WebSocket the heartbeat is a ping frame,
					// which sockjs-client does not report.
					if transport != "websocket" && p.Heartbeats < 1 {
						t.Errorf("heartbeats while silent: got %d, want the upstream's %v heartbeat to reach the page", p.Heartbeats, heartbeat)
					}
					// The page's own requests (not an iframe's): a poll
					// the upstream held for its heartbeat.
					if (transport == "xhr-polling" || transport == "jsonp-polling") && p.LongestMs < float64((heartbeat-time.Second).Milliseconds()) {
						t.Errorf("longest poll: %.0f ms, want one held ≥ %v to have come back", p.LongestMs, heartbeat-time.Second)
					}
				})
			}
			t.Run("rest", func(t *testing.T) {
				p := rep.Pages["rest"]
				if !p.OK {
					t.Fatalf("tab failed: %+v", p)
				}
				var info struct{ Version string }
				if p.PageStatus != 200 || p.PageContentType != "application/json" || json.Unmarshal([]byte(p.PageText), &info) != nil || info.Version != "6.0.0" {
					t.Errorf("GET /api/info as a page: got %d %s %q", p.PageStatus, p.PageContentType, p.PageText)
				}
				want := strings.TrimSuffix(doc, "}") + `,"success":true}`
				if p.Valid.Status != 200 || p.Valid.Body != want {
					t.Errorf("sessions/info, valid token: got %d %s, want 200 %s", p.Valid.Status, p.Valid.Body, want)
				}
				const unauthorized = `{"status":"error","message":"You must be logged in to do this."}`
				for what, a := range map[string]browserAnswer{"wrong token": p.WrongToken, "no credentials": p.NoHeaders} {
					if a.Status != 401 || a.Body != unauthorized {
						t.Errorf("sessions/info, %s: got %d %s, want 401 %s", what, a.Status, a.Body, unauthorized)
					}
				}
			})
			t.Run("tab closed mid-xhr-streaming", func(t *testing.T) {
				p := rep.Pages["drop"]
				if !p.OK {
					t.Fatalf("tab failed: %+v", p)
				}
				t.Logf("upstream stream connection closed %.0f ms after the tab", p.UpstreamClosedAfterMs)
				if p.UpstreamClosedAfterMs < 0 || p.UpstreamClosedAfterMs > 3000 {
					t.Errorf("upstream stream connection closed %.0f ms after the tab (-1: not in 20 s), want within ~1 s", p.UpstreamClosedAfterMs)
				}
			})
		})
	}
}

// startBrowser starts test/clients/browser.js; browserResult waits for it.
func startBrowser(t *testing.T, chromium, port, upstream, user, token, session, idle string) *nodeRun {
	return startNode(t, 150*time.Second, "browser.js", chromium, port, upstream, user, token, session, idle)
}

func (r *browserReport) passed() (bool, string) { return r.OK, r.Error }

// browserResult waits for browser.js and returns its report.
func browserResult(t *testing.T, r *nodeRun) browserReport {
	t.Helper()
	var rep browserReport
	r.wait(t, &rep)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser.js stderr:\n%s", r.stderr.String())
		}
	})
	return rep
}
