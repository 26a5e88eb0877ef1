package test

// Black-box tests of the intercepted route GET /api/v1/sessions/info
// (docs/route.md): the built binary, a real redis-server, a stand-in upstream that
// records what reaches it, and raw HTTP/1.1 on a socket so that request
// targets and header names go out exactly as written.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The example session of Rocket.Chat's API documentation (docs/data-contract.md).
const (
	routeSeedUser    = "rbAXPnMktTFbNpwtJ"
	routeSeedToken   = "4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6"
	routeSeedSession = "QoYYFw2t9oKks2niG"
	routePath        = "/api/v1/sessions/info"
)

// The route's fixed bodies (docs/route.md).
const (
	route401      = `{"status":"error","message":"You must be logged in to do this."}`
	route401Ext   = `{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}`
	route404      = `{"success":false,"error":"Session not found"}`
	route503      = `{"success":false,"error":"Service unavailable"}`
	route400Req   = `{"success":false,"error":"must have required property 'sessionId' [invalid-params]","errorType":"invalid-params"}`
	route400Str   = `{"success":false,"error":"must be string [invalid-params]","errorType":"invalid-params"}`
	route400Extra = `{"success":false,"error":"must NOT have additional properties [invalid-params]","errorType":"invalid-params"}`
)

// routeSeedBodies returns the seed's documented success body, compacted (the
// route answers compact JSON), and the document stored in Redis: that body
// without its last member, "success":true.
func routeSeedBodies(t testing.TB) (answer, stored string) {
	t.Helper()
	pretty, err := os.ReadFile("testdata/sessions-info-seed-success.json")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, pretty); err != nil {
		t.Fatal(err)
	}
	answer = b.String()
	stored, ok := strings.CutSuffix(answer, `,"success":true}`)
	if !ok {
		t.Fatalf("seed body does not end with \"success\":true: %s", answer)
	}
	return answer, stored + "}"
}

// routeHash is Meteor's Accounts._hashLoginToken, written out again here so
// the test does not trust the code under test.
func routeHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func routeTokenKey(userID, token string) string {
	return "rc:{" + userID + "}:token:" + routeHash(token)
}

func routeSessionKey(userID, sessionID string) string {
	return "rc:{" + userID + "}:session:" + sessionID
}

// routeSeed stores a login token and sessions (id → document) of a user.
func routeSeed(t testing.TB, c redis.Cmdable, userID, token string, sessions map[string]string) {
	t.Helper()
	ctx := context.Background()
	if token != "" {
		if err := c.Set(ctx, routeTokenKey(userID, token), `{"when":"2023-05-23T16:33:45.202Z"}`, 0).Err(); err != nil {
			t.Fatalf("seed token: %v", err)
		}
	}
	for id, doc := range sessions {
		if err := c.Set(ctx, routeSessionKey(userID, id), doc, 0).Err(); err != nil {
			t.Fatalf("seed session: %v", err)
		}
	}
}

const routeUpstreamBody = `{"from":"upstream"}`

// startRouteUpstream starts a stand-in Rocket.Chat that answers every
// request with a marker (418, X-Stand-In), so a test can tell a forwarded
// answer from the route's own.
func startRouteUpstream(t *testing.T) *Upstream {
	t.Helper()
	return StartUpstream(t, func(*Req) Answer {
		return Answer{Status: http.StatusTeapot, Header: []string{"X-Stand-In: upstream", "Content-Type: application/json"}, Body: routeUpstreamBody}
	})
}

// routeResponse is one answer read off the wire.
type routeResponse struct {
	Status int
	Header http.Header
	Body   string
}

// routeDo sends one raw HTTP/1.1 request (target and header lines exactly
// as given) on a new connection and reads the answer.
func routeDo(t testing.TB, addr, method, target string, headers ...string) routeResponse {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: chat.example\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: read response: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return routeResponse{resp.StatusCode, resp.Header, string(body)}
}

// routeConn is one keep-alive client connection, for tests that send many
// requests.
type routeConn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
}

func newRouteConn(t testing.TB, addr string) *routeConn {
	t.Helper()
	rc := &routeConn{addr: addr}
	t.Cleanup(func() {
		if rc.c != nil {
			rc.c.Close()
		}
	})
	return rc
}

// Do sends one raw request like routeDo, on the kept connection (dialling
// again if the server closed it).
func (rc *routeConn) Do(t testing.TB, method, target string, headers ...string) routeResponse {
	t.Helper()
	if rc.c == nil {
		c, err := net.DialTimeout("tcp", rc.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", rc.addr, err)
		}
		rc.c, rc.br = c, bufio.NewReader(c)
	}
	rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: chat.example\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(rc.c, b.String()); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: read response: %v", method, target, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	if resp.Close {
		rc.c.Close()
		rc.c = nil
	}
	return routeResponse{resp.StatusCode, resp.Header, string(body)}
}

func routeCreds(userID, token string) []string {
	return []string{"X-User-Id: " + userID, "X-Auth-Token: " + token}
}

// routeCheck asserts one of the route's own answers: status, body byte for
// byte, and the three headers of docs/route.md.
func routeCheck(t testing.TB, what string, got routeResponse, status int, body string) {
	t.Helper()
	if got.Status != status || got.Body != body {
		t.Errorf("%s:\n got %d %s\nwant %d %s", what, got.Status, got.Body, status, body)
	}
	for _, h := range [][2]string{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}, {"Pragma", "no-cache"}} {
		if v := got.Header.Values(h[0]); len(v) != 1 || v[0] != h[1] {
			t.Errorf("%s: %s: got %q, want %q", what, h[0], v, h[1])
		}
	}
	if got.Header.Get("X-Stand-In") != "" {
		t.Errorf("%s: answered by the upstream, want the route", what)
	}
	if d, err := http.ParseTime(got.Header.Get("Date")); err != nil || time.Since(d).Abs() > time.Minute {
		t.Errorf("%s: Date: got %q, want the current HTTP date", what, got.Header.Get("Date"))
	}
}

// routeCheckForwarded asserts an answer relayed from the stand-in upstream.
func routeCheckForwarded(t testing.TB, what string, got routeResponse) {
	t.Helper()
	if got.Status != http.StatusTeapot || got.Body != routeUpstreamBody || got.Header.Get("X-Stand-In") != "upstream" {
		t.Errorf("%s: got %d %s, want the upstream's %d %s", what, got.Status, got.Body, http.StatusTeapot, routeUpstreamBody)
	}
}

// routeEnv is a minimal gate environment for route tests.
func routeEnv(upstreamURL, redisURL string, extra ...string) map[string]string {
	env := GateEnv(upstreamURL, redisURL)
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

func TestRouteSpecCases(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	rc := r.Client()
	up := startRouteUpstream(t)
	seedAnswer, seedStored := routeSeedBodies(t)
	routeSeed(t, rc, routeSeedUser, routeSeedToken, map[string]string{
		routeSeedSession: seedStored,
		"a b":            `{"sessionId":"a b"}`,
		"a+b":            `{"sessionId":"a+b"}`,
		"é":              `{"sessionId":"é"}`,
		"empty":          `{}`,
	})
	routeSeed(t, rc, "otherUser0000001", "other-token", map[string]string{
		"theirs": `{"sessionId":"theirs","userId":"otherUser0000001"}`,
	})
	g := StartGate(t, routeEnv(up.URL, r.URL()))

	seed := routeCreds(routeSeedUser, routeSeedToken)
	q := routePath + "?sessionId="
	tests := []struct {
		name    string
		target  string
		headers []string
		status  int
		body    string
	}{
		// 1. Authentication.
		{"no headers", q + routeSeedSession, nil, 401, route401},
		{"user id only", q + routeSeedSession, []string{"X-User-Id: " + routeSeedUser}, 401, route401},
		{"token only", q + routeSeedSession, []string{"X-Auth-Token: " + routeSeedToken}, 401, route401},
		{"empty headers", q + routeSeedSession, []string{"X-User-Id: ", "X-Auth-Token: "}, 401, route401},
		{"empty user id", q + routeSeedSession, []string{"X-User-Id:", "X-Auth-Token: " + routeSeedToken}, 401, route401},
		{"wrong token", q + routeSeedSession, routeCreds(routeSeedUser, "wrong"), 401, route401},
		{"right token, another user id", q + routeSeedSession, routeCreds("otherUser0000001", routeSeedToken), 401, route401},
		{"another user's token", q + routeSeedSession, routeCreds(routeSeedUser, "other-token"), 401, route401},
		{"user id in braces", q + routeSeedSession, routeCreds("{"+routeSeedUser+"}", routeSeedToken), 401, route401},
		{"user id over 256 bytes", q + routeSeedSession, routeCreds(strings.Repeat("u", 257), routeSeedToken), 401, route401},
		{"repeated user id header", q + routeSeedSession, append(seed, "x-user-id: "+routeSeedUser), 401, route401},
		{"unauthenticated, invalid query", routePath + "?x=1", nil, 401, route401},
		{"wrong token, invalid query", routePath + "?x=1", routeCreds(routeSeedUser, "wrong"), 401, route401},
		{"header names in other case", q + routeSeedSession, []string{"x-user-id: " + routeSeedUser, "X-AUTH-TOKEN: " + routeSeedToken}, 200, seedAnswer},

		// 2. Parameter validation.
		{"no query", routePath, seed, 400, route400Req},
		{"missing sessionId", routePath + "?foo=bar", seed, 400, route400Req},
		{"sessionId in other case", routePath + "?sessionid=" + routeSeedSession, seed, 400, route400Req},
		{"repeated sessionId", q + routeSeedSession + "&sessionId=" + routeSeedSession, seed, 400, route400Str},
		{"sessionId[]", routePath + "?sessionId[]=" + routeSeedSession, seed, 400, route400Str},
		{"sessionId[x]", routePath + "?sessionId[x]=" + routeSeedSession, seed, 400, route400Str},
		{"sessionId%5B%5D", routePath + "?sessionId%5B%5D=" + routeSeedSession, seed, 400, route400Str},
		{"extra parameter", q + routeSeedSession + "&extra=1", seed, 400, route400Extra},
		{"extra parameter and bracketed sessionId", routePath + "?sessionId[]=a&extra=1", seed, 400, route400Extra},
		{"empty sessionId", q, seed, 404, route404},

		// 3. Lookup and 4. success.
		{"own session (the seed's example)", q + routeSeedSession, seed, 200, seedAnswer},
		{"%20 in the session id", q + "a%20b", seed, 200, `{"sessionId":"a b","success":true}`},
		{"+ in the session id", q + "a+b", seed, 200, `{"sessionId":"a b","success":true}`},
		{"%2B in the session id", q + "a%2Bb", seed, 200, `{"sessionId":"a+b","success":true}`},
		{"UTF-8 session id", q + "%C3%A9", seed, 200, `{"sessionId":"é","success":true}`},
		{"empty stored document", q + "empty", seed, 200, `{"success":true}`},
		{"unknown session", q + "nope", seed, 404, route404},
		{"another user's session", q + "theirs", seed, 404, route404},
		{"session id in braces", q + "%7B" + routeSeedSession + "%7D", seed, 404, route404},
		{"session id with CRLF", q + "a%0D%0Ab", seed, 404, route404},
		{"session id over 256 bytes", q + strings.Repeat("s", 257), seed, 404, route404},
		{"blank session id", q + "%20%20", seed, 404, route404},
	}
	for _, tt := range tests {
		got := routeDo(t, g.Addr, "GET", tt.target, tt.headers...)
		routeCheck(t, tt.name, got, tt.status, tt.body)
	}
	if seen := up.Take(); len(seen) != 0 {
		t.Errorf("the upstream received %d intercepted requests, want none; first: %s %s", len(seen), seen[0].Method, seen[0].Target)
	}

	for outcome, want := range map[string]float64{"ok": 7, "unauthorized": 13, "invalid": 9, "not_found": 7, "redis_error_forwarded": 0} {
		if got := g.Metric(`sessiongate_sessions_info_total{outcome="` + outcome + `"} `); got != want {
			t.Errorf("sessiongate_sessions_info_total{outcome=%q}: got %v, want %v", outcome, got, want)
		}
	}
	if got := g.Metric("sessiongate_sessions_info_redis_duration_seconds_count "); got <= 0 {
		t.Errorf("redis latency histogram: count %v, want > 0", got)
	}
}

func TestRouteExtendedUnauthorizedBody(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_ROUTE_UNAUTHORIZED_BODY", "extended"))
	routeCheck(t, "no headers", routeDo(t, g.Addr, "GET", routePath+"?sessionId=x"), 401, route401Ext)
	routeCheck(t, "wrong token", routeDo(t, g.Addr, "GET", routePath+"?sessionId=x", routeCreds("u", "t")...), 401, route401Ext)
}

// TestRouteOnlyExactGETIsIntercepted: every other method and path variant
// reaches the upstream untouched, credentials and all (docs/route.md).
func TestRouteOnlyExactGETIsIntercepted(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: `{"x":1}`})
	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, r.URL()))
	creds := routeCreds(routeSeedUser, routeSeedToken)
	query := "?sessionId=" + routeSeedSession
	for _, tt := range []struct{ method, target string }{
		{"HEAD", routePath + query},
		{"POST", routePath + query},
		{"PUT", routePath + query},
		{"DELETE", routePath + query},
		{"OPTIONS", routePath + query},
		{"GET", routePath + "/" + query},
		{"GET", "/api/v1/Sessions/info" + query},
		{"GET", "/API/V1/SESSIONS/INFO" + query},
		{"GET", "/api/v1/sessions/info%2F" + query},
		{"GET", "/api/v1/sessions%2Finfo" + query},
		{"GET", "/api/v1/sessions/%69nfo" + query},
		{"GET", "/api/v1//sessions/info" + query},
		{"GET", "/api/v1/sessions/./info" + query},
		{"GET", "/api/v1/sessions/info;x" + query},
		{"GET", "/api/v1/sessions/infox" + query},
		{"GET", "/api/v1/sessions/list" + query},
	} {
		what := tt.method + " " + tt.target
		got := routeDo(t, g.Addr, tt.method, tt.target, creds...)
		if tt.method == "HEAD" {
			if got.Status != http.StatusTeapot || got.Header.Get("X-Stand-In") != "upstream" {
				t.Errorf("%s: got %d, want the upstream's %d", what, got.Status, http.StatusTeapot)
			}
		} else {
			routeCheckForwarded(t, what, got)
		}
		seen := up.Take()
		if len(seen) != 1 {
			t.Errorf("%s: the upstream received %d requests, want 1", what, len(seen))
			continue
		}
		s := seen[0]
		if s.Method != tt.method || s.Target != tt.target ||
			s.Get("X-User-Id") != routeSeedUser || s.Get("X-Auth-Token") != routeSeedToken {
			t.Errorf("%s: the upstream received %s %s with X-User-Id %q and X-Auth-Token %q, want it unchanged",
				what, s.Method, s.Target, s.Get("X-User-Id"), s.Get("X-Auth-Token"))
		}
	}
}

// TestRouteOneRedisRoundTripPerRequest counts commands on the server with
// INFO commandstats: each request that reaches Redis costs exactly one
// command (MGET of token and session, or MGET of the token alone when the
// query is invalid), and requests that cannot authenticate cost none.
func TestRouteOneRedisRoundTripPerRequest(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	if !r.Real() {
		t.Skip("INFO commandstats needs a real redis-server")
	}
	rc := r.Client()
	routeSeed(t, rc, routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: `{"x":1}`})
	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, r.URL()))
	seed := routeCreds(routeSeedUser, routeSeedToken)

	for _, tt := range []struct {
		name     string
		target   string
		headers  []string
		status   int
		commands int
	}{
		{"200", routePath + "?sessionId=" + routeSeedSession, seed, 200, 1},
		{"401 wrong token", routePath + "?sessionId=" + routeSeedSession, routeCreds(routeSeedUser, "no"), 401, 1},
		{"404", routePath + "?sessionId=nope", seed, 404, 1},
		{"400", routePath + "?x=1", seed, 400, 1},
		{"404 id that cannot be real", routePath + "?sessionId=%7B", seed, 404, 1},
		{"401 no headers", routePath + "?sessionId=" + routeSeedSession, nil, 401, 0},
		{"401 user id that cannot be real", routePath + "?sessionId=x", routeCreds("{x}", "t"), 401, 0},
	} {
		const n = 5
		before := routeCommandStats(t, rc)
		for range n {
			if got := routeDo(t, g.Addr, "GET", tt.target, tt.headers...); got.Status != tt.status {
				t.Fatalf("%s: status %d, want %d", tt.name, got.Status, tt.status)
			}
		}
		after := routeCommandStats(t, rc)
		delta := map[string]int{}
		total := 0
		for cmd, calls := range after {
			// INFO is this test's own; ZADD is the activity reporter's
			// batched write for the mirror, off the request path on a
			// 100 ms timer, so whether one lands in this window is a
			// matter of timing, not of the requests.
			if d := calls - before[cmd]; d > 0 && cmd != "info" && cmd != "zadd" {
				delta[cmd] = d
				total += d
			}
		}
		if total != n*tt.commands {
			t.Errorf("%s: %d requests cost %d commands %v, want %d", tt.name, n, total, delta, n*tt.commands)
		}
	}
}

func routeCommandStats(t *testing.T, c *redis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
		if ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest+",", ',')])
			calls[name] = n
		}
	}
	return calls
}
