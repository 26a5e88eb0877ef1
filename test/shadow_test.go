package test

// Black-box tests of shadow mode (sessions.shadow.*, docs/shadow.md): the
// built binary, a real redis-server and a stand-in upstream that answers
// the route the same as, or differently from, sessiongate; each outcome
// must be counted in sessiongate_shadow_total as documented, and the
// client's answer must never depend on the upstream in compare mode.

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	shadowUser      = "shadowUser00000001"
	shadowToken     = "ShadowTokenAaaa1111bbbb2222cccc3333dddd4444"
	shadowAgent     = "ShadowLeakUserAgent9999"
	shadowAgentName = "sessiongate-shadow" // the shadow client's User-Agent
)

// shadowResults are the documented values of sessiongate_shadow_total's
// result label.
var shadowResults = []string{"match", "json_equal_bytes_differ", "mismatch_status", "mismatch_body",
	"mismatch_header", "upstream_error", "dropped", "upstream_lacks_route"}

// shadowUpstream is a stand-in Rocket.Chat whose answer to the route is
// chosen per request by its script; the shadow's requests are told apart
// from forwarded ones by the shadow's own User-Agent.
type shadowUpstream struct{ *Upstream }

func startShadowUpstream(t *testing.T, answer func(r *Req) Answer) shadowUpstream {
	t.Helper()
	return shadowUpstream{StartUpstream(t, answer)}
}

// shadowRequests are the shadow's requests so far; forwarded, the others.
func (u shadowUpstream) shadowRequests() []*Req {
	var out []*Req
	for _, r := range u.Reqs() {
		if r.Get("User-Agent") == shadowAgentName {
			out = append(out, r)
		}
	}
	return out
}

func (u shadowUpstream) forwarded() int { return len(u.Reqs()) - len(u.shadowRequests()) }

// routeAnswer is an answer with the route's three headers.
func routeAnswer(status int, body string) Answer {
	return Answer{Status: status, Header: []string{"Content-Type: application/json", "Cache-Control: no-store", "Pragma: no-cache"}, Body: body}
}

// shadowCounts reads every result's count.
func shadowCounts(g *Gate) map[string]float64 {
	got := map[string]float64{}
	for _, r := range shadowResults {
		got[r] = g.Metric(`sessiongate_shadow_total{result="` + r + `"} `)
	}
	return got
}

// waitShadowCounts waits until every result's count is as in want (results
// not in want at 0), and fails with the last counts after 10 s.
func waitShadowCounts(t *testing.T, g *Gate, what string, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := shadowCounts(g)
		same := true
		for _, r := range shadowResults {
			if got[r] != want[r] {
				same = false
			}
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: sessiongate_shadow_total:\n got %v\nwant %v", what, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func shadowEnv(upstreamURL, redisURL string, extra ...string) map[string]string {
	return routeEnv(upstreamURL, redisURL, append([]string{"SESSIONGATE_SESSIONS_SHADOW_RATE", "1"}, extra...)...)
}

// TestShadowCompareCountsEachOutcome runs one request per kind of upstream
// answer through a gate comparing every request, checks the client always
// gets sessiongate's own answer, and that each comparison is counted under
// its documented result.
func TestShadowCompareCountsEachOutcome(t *testing.T) {
	t.Parallel()
	answer, stored := routeSeedBodies(t)
	// The same document with "success" first: the same JSON value, other
	// bytes.
	successFirst := `{"success":true,` + strings.TrimPrefix(stored, "{")
	// Another value of a member ("ip"), the rest as is.
	otherIP := strings.Replace(answer, `"ip":"172.20.0.2"`, `"ip":"172.20.0.99"`, 1)
	if otherIP == answer {
		t.Fatal("the seed body has no ip 172.20.0.2")
	}

	r := StartRedis(t)
	cases := []string{"same", "body", "order", "status", "header", "fail", "broken"}
	sessions := map[string]string{}
	for _, id := range cases {
		sessions[id] = stored
	}
	routeSeed(t, r.Client(), shadowUser, shadowToken, sessions)

	up := startShadowUpstream(t, func(r *Req) Answer {
		if r.Get("X-Auth-Token") != shadowToken {
			return routeAnswer(http.StatusUnauthorized, route401)
		}
		switch id := r.Query("sessionId"); id {
		case "same":
			return routeAnswer(http.StatusOK, answer)
		case "body":
			return routeAnswer(http.StatusOK, otherIP)
		case "order":
			return routeAnswer(http.StatusOK, successFirst)
		case "status":
			return routeAnswer(http.StatusNotFound, route404)
		case "header":
			return Answer{Header: []string{"Content-Type: application/json", "Cache-Control: no-cache"}, Body: answer}
		case "fail":
			return routeAnswer(http.StatusInternalServerError, `{"success":false,"error":"Internal server error"}`)
		case "broken":
			// The connection closes before any answer.
			return Answer{Take: func(net.Conn, *bufio.Reader) {}}
		default:
			return routeAnswer(http.StatusNotFound, route404)
		}
	})
	g := StartGate(t, shadowEnv(up.URL, r.URL()))
	creds := append(routeCreds(shadowUser, shadowToken), "User-Agent: "+shadowAgent, "Cookie: rc_token="+shadowToken)

	want := map[string]float64{}
	waitShadowCounts(t, g, "before any request", want)
	steps := []struct {
		session string
		creds   []string
		status  int
		body    string
		result  string
	}{
		{"same", creds, 200, answer, "match"},
		{"body", creds, 200, answer, "mismatch_body"},
		{"order", creds, 200, answer, "json_equal_bytes_differ"},
		{"status", creds, 200, answer, "mismatch_status"},
		{"header", creds, 200, answer, "mismatch_header"},
		{"fail", creds, 200, answer, "upstream_error"},
		{"broken", creds, 200, answer, "upstream_error"},
		{"unknown", creds, 404, route404, "match"},
		{"same", routeCreds(shadowUser, "WrongShadowToken0000"), 401, route401, "match"},
	}
	for _, s := range steps {
		got := routeDo(t, g.Addr, "GET", routePath+"?sessionId="+s.session, s.creds...)
		routeCheck(t, "session "+s.session, got, s.status, s.body)
		want[s.result]++
		waitShadowCounts(t, g, "after session "+s.session, want)
	}

	// The shadow's request carried the client's target, Host and
	// credentials, and nothing else of the client's.
	reqs := up.shadowRequests()
	if len(reqs) != len(steps) {
		t.Fatalf("upstream got %d shadow requests, want %d", len(reqs), len(steps))
	}
	first := reqs[0]
	if first.Method != "GET" || first.Target != routePath+"?sessionId=same" || first.Get("Host") != "chat.example" ||
		first.Get("X-User-Id") != shadowUser || first.Get("X-Auth-Token") != shadowToken {
		t.Errorf("shadow request: got %s %s Host %q X-User-Id %q X-Auth-Token %q, want the client's",
			first.Method, first.Target, first.Get("Host"), first.Get("X-User-Id"), first.Get("X-Auth-Token"))
	}
	if first.Get("Cookie") != "" {
		t.Errorf("shadow request carried the client's Cookie")
	}
	// Rocket.Chat's API rate limiter counts per X-Real-IP: the client's
	// address, as on a forwarded request, not sessiongate's.
	if got := first.Get("X-Real-IP"); got != "127.0.0.1" {
		t.Errorf("shadow request X-Real-IP: got %q, want the client's 127.0.0.1", got)
	}

	// The first mismatch (mismatch_body) is logged at warn with the session
	// id, both statuses and a diff naming the member; the next ones fall
	// within the rate limit.
	logs := g.Logs()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"shadow answer differs from the upstream's"`) {
			if line != "" {
				t.Errorf("a second mismatch line within the rate limit: %s", l)
			}
			line = l
		}
	}
	for _, part := range []string{`"level":"warn"`, `"result":"mismatch_body"`, `"session_id":"body"`, `"status":200`, `"upstream_status":200`, `ip: string(10) vs string(11)`} {
		if !strings.Contains(line, part) {
			t.Errorf("mismatch log line lacks %s: %q", part, line)
		}
	}
	if !strings.Contains(logs, `"shadow request to the upstream failed"`) {
		t.Errorf("no log line for the failing upstream")
	}
	// Never the token, its hash, or a header value of the request (the
	// user id, the User-Agent, the cookie); the session document's values
	// (its loginToken is a token hash) stay out of diffs too.
	h := routeHash(shadowToken)
	for _, secret := range []string{shadowToken, h, url.QueryEscape(h), strings.TrimRight(h, "="), shadowUser, shadowAgent,
		"orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU", "172.20.0"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain %q", secret)
		}
	}
}

// TestShadowSlowUpstreamNeverDelaysClients: the upstream holds the shadow's
// request until the test lets it go. The client's answer comes while it is
// held (a gate that waited would run into the client's 10 s deadline, the
// shadow's timeout being longer), and with max_inflight 1 the requests in
// the meantime are dropped and counted.
func TestShadowSlowUpstreamNeverDelaysClients(t *testing.T) {
	t.Parallel()
	answer, stored := routeSeedBodies(t)
	r := StartRedis(t)
	routeSeed(t, r.Client(), shadowUser, shadowToken, map[string]string{"s1": stored})
	release := make(chan struct{})
	held := make(chan struct{}, 10)
	up := startShadowUpstream(t, func(*Req) Answer {
		held <- struct{}{}
		<-release
		return routeAnswer(http.StatusOK, answer)
	})
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	t.Cleanup(letGo) // before the upstream's Close, which waits for handlers
	g := StartGate(t, shadowEnv(up.URL, r.URL(),
		"SESSIONGATE_SESSIONS_SHADOW_MAX_INFLIGHT", "1",
		"SESSIONGATE_SESSIONS_SHADOW_TIMEOUT", "30s"))
	creds := routeCreds(shadowUser, shadowToken)
	target := routePath + "?sessionId=s1"

	routeCheck(t, "first request", routeDo(t, g.Addr, "GET", target, creds...), 200, answer)
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the shadow request did not reach the upstream")
	}
	if n := g.Metric("sessiongate_shadow_inflight "); n != 1 {
		t.Errorf("sessiongate_shadow_inflight: got %v, want 1", n)
	}
	for i := 0; i < 2; i++ {
		routeCheck(t, "request while the slot is taken", routeDo(t, g.Addr, "GET", target, creds...), 200, answer)
	}
	waitShadowCounts(t, g, "while the upstream holds the first", map[string]float64{"dropped": 2})
	letGo()
	waitShadowCounts(t, g, "after the upstream answered", map[string]float64{"dropped": 2, "match": 1})
	if n := len(up.shadowRequests()); n != 1 {
		t.Errorf("upstream got %d shadow requests, want 1 (the others dropped)", n)
	}
}

// TestShadowUpstreamLacksRoute: a server without the route (Community, or
// older than 5.0) answers with its own error; the shadow counts
// upstream_lacks_route once, logs it once, and stops comparing.
func TestShadowUpstreamLacksRoute(t *testing.T) {
	t.Parallel()
	answer, stored := routeSeedBodies(t)
	for _, tc := range []struct {
		name   string
		answer Answer
	}{
		{"unknown endpoint 404", routeAnswer(http.StatusNotFound, `{"success":false,"error":"Resource not found"}`)},
		{"web app page", Answer{Header: []string{"Content-Type: text/html; charset=utf-8"}, Body: "<!DOCTYPE html><html><body>Rocket.Chat</body></html>"}},
		{"no licence, 5.x", routeAnswer(http.StatusForbidden, `{"success":false,"error":"unauthorized"}`)},
		{"no licence, newer", routeAnswer(http.StatusBadRequest, `{"success":false,"error":"This is an enterprise feature [error-action-not-allowed]","errorType":"error-action-not-allowed"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := StartRedis(t)
			routeSeed(t, r.Client(), shadowUser, shadowToken, map[string]string{"s1": stored})
			up := startShadowUpstream(t, func(*Req) Answer { return tc.answer })
			g := StartGate(t, shadowEnv(up.URL, r.URL()))
			creds := routeCreds(shadowUser, shadowToken)
			routeCheck(t, "first request", routeDo(t, g.Addr, "GET", routePath+"?sessionId=s1", creds...), 200, answer)
			waitShadowCounts(t, g, "after the first request", map[string]float64{"upstream_lacks_route": 1})
			for i := 0; i < 3; i++ {
				routeCheck(t, "later request", routeDo(t, g.Addr, "GET", routePath+"?sessionId=s1", creds...), 200, answer)
			}
			waitShadowCounts(t, g, "after later requests", map[string]float64{"upstream_lacks_route": 1})
			if n := len(up.shadowRequests()); n != 1 {
				t.Errorf("upstream got %d shadow requests, want 1 (comparisons stop)", n)
			}
			if n := strings.Count(g.Logs(), `"upstream lacks the route; shadow comparisons stop until restart"`); n != 1 {
				t.Errorf("got %d log lines about the missing route, want 1", n)
			}
		})
	}
}

// TestShadowOriginMode: clients get the upstream's answer, forwarded as
// usual, and sessiongate's own answer is compared in the background. An
// upstream failure reaches the client as it would without sessiongate.
func TestShadowOriginMode(t *testing.T) {
	t.Parallel()
	answer, stored := routeSeedBodies(t)
	otherIP := strings.Replace(answer, `"ip":"172.20.0.2"`, `"ip":"172.20.0.99"`, 1)
	r := StartRedis(t)
	routeSeed(t, r.Client(), shadowUser, shadowToken, map[string]string{"same": stored, "body": stored, "fail": stored})
	up := startShadowUpstream(t, func(r *Req) Answer {
		var a Answer
		switch r.Query("sessionId") {
		case "same":
			a = routeAnswer(http.StatusOK, answer)
		case "body":
			a = routeAnswer(http.StatusOK, otherIP)
		default:
			a = routeAnswer(http.StatusInternalServerError, `{"success":false,"error":"Internal server error"}`)
		}
		a.Header = append([]string{"X-Stand-In: upstream"}, a.Header...)
		return a
	})
	g := StartGate(t, shadowEnv(up.URL, r.URL(), "SESSIONGATE_SESSIONS_SHADOW_MODE", "origin"))
	creds := routeCreds(shadowUser, shadowToken)
	want := map[string]float64{}
	for _, s := range []struct {
		session, body, result string
		status                int
	}{
		{"same", answer, "match", 200},
		{"body", otherIP, "mismatch_body", 200},
		{"fail", `{"success":false,"error":"Internal server error"}`, "upstream_error", 500},
	} {
		got := routeDo(t, g.Addr, "GET", routePath+"?sessionId="+s.session, creds...)
		if got.Status != s.status || got.Body != s.body || got.Header.Get("X-Stand-In") != "upstream" {
			t.Errorf("session %s: got %d %s (X-Stand-In %q), want the upstream's %d %s",
				s.session, got.Status, got.Body, got.Header.Get("X-Stand-In"), s.status, s.body)
		}
		want[s.result]++
		waitShadowCounts(t, g, "after session "+s.session, want)
	}
	forwarded := up.forwarded()
	if forwarded != 3 || len(up.shadowRequests()) != 3 {
		t.Errorf("upstream got %d forwarded and %d shadow requests, want 3 and 3", forwarded, len(up.shadowRequests()))
	}
}

// TestShadowOffByDefault: without sessions.shadow.rate nothing is sent to
// the upstream for the route, and no shadow metric exists.
func TestShadowOffByDefault(t *testing.T) {
	t.Parallel()
	answer, stored := routeSeedBodies(t)
	r := StartRedis(t)
	routeSeed(t, r.Client(), shadowUser, shadowToken, map[string]string{"s1": stored})
	up := startShadowUpstream(t, func(*Req) Answer { return routeAnswer(200, answer) })
	g := StartGate(t, routeEnv(up.URL, r.URL()))
	routeCheck(t, "request", routeDo(t, g.Addr, "GET", routePath+"?sessionId=s1", routeCreds(shadowUser, shadowToken)...), 200, answer)
	time.Sleep(200 * time.Millisecond) // a comparison, if one had started, would have reached the upstream
	if n := len(up.shadowRequests()); n != 0 {
		t.Errorf("upstream got %d shadow requests with shadow mode off", n)
	}
	if v := g.Metric(`sessiongate_shadow_total{result="match"} `); v != -1 {
		t.Errorf("sessiongate_shadow_total exists with shadow mode off")
	}
}

// TestShadowShutdownIsBounded: a comparison held by an upstream that never
// answers ends at sessions.shadow.timeout, so SIGTERM still ends in a clean
// exit within shutdown.timeout.
func TestShadowShutdownIsBounded(t *testing.T) {
	t.Parallel()
	answer, stored := routeSeedBodies(t)
	r := StartRedis(t)
	routeSeed(t, r.Client(), shadowUser, shadowToken, map[string]string{"s1": stored})
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	up := startShadowUpstream(t, func(*Req) Answer {
		held <- struct{}{}
		<-release
		return Answer{Close: true}
	})
	t.Cleanup(func() { close(release) })
	g := StartGate(t, shadowEnv(up.URL, r.URL(), "SESSIONGATE_SESSIONS_SHADOW_TIMEOUT", "1s"))
	routeCheck(t, "request", routeDo(t, g.Addr, "GET", routePath+"?sessionId=s1", routeCreds(shadowUser, shadowToken)...), 200, answer)
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the shadow request did not reach the upstream")
	}
	g.Signal(syscall.SIGTERM)
	if code := g.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if logs := g.Logs(); strings.Contains(logs, "shutdown deadline passed") || !strings.Contains(logs, `"shadow request to the upstream failed"`) {
		t.Errorf("want the comparison to time out before the shutdown deadline:\n%s", logs)
	}
}
