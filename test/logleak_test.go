package test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
)

// TestLogsCarryNoCredentials runs traffic full of credentials through a gate
// logging at debug level with access lines on, and then looks for every
// credential, and every token's hash, in everything the process wrote.
// docs/operations.md: never a token, a cookie or an Authorization header.
// The hashes count too: the hashed token is what Rocket.Chat stores and what a Redis key
// holds, so it is as good as the token to anyone reading the database, and
// a key name in an error message would carry it.
//
// The traffic covers each path a request can take: forwarded (with the
// credentials in headers, cookies, the query and the body), intercepted
// (valid, wrong token, unknown session), a WebSocket handshake and frames,
// a malformed request (the HTTP parser's error path), Redis down (the
// route's error path) and the upstream down (the forwarder's error path).
func TestLogsCarryNoCredentials(t *testing.T) {
	t.Parallel()
	const (
		validToken   = "LeakValidTokenAaaa1111bbbb2222cccc3333dddd44"
		wrongToken   = "LeakWrongTokenEeee5555ffff6666gggg7777hhhh88"
		bearer       = "LeakBearerIiii9999jjjj0000"
		cookieToken  = "LeakCookieTokenKkkk1111llll2222"
		queryToken   = "LeakQueryTokenMmmm3333nnnn4444"
		password     = "LeakPasswordOooo5555"
		respToken    = "LeakResponseTokenPppp6666qqqq7777"
		setCookie    = "LeakSetCookieRrrr8888"
		wsToken      = "LeakWebSocketTokenSsss9999tttt0000"
		wsResume     = "LeakResumeTokenUuuu1111vvvv2222"
		badReqToken  = "LeakBadRequestTokenWwww3333xxxx4444"
		redisPass    = "LeakRedisPasswordYyyy5555"
		redisErrTok  = "LeakRedisDownTokenZzzz6666"
		upErrBearer  = "LeakUpstreamDownBearerAbab7777"
		upErrCookie  = "LeakUpstreamDownCookieCdcd8888"
		sessionIDArg = "leakSession1"
	)
	secrets := []string{validToken, wrongToken, bearer, cookieToken, queryToken, password, respToken,
		setCookie, wsToken, wsResume, badReqToken, redisPass, redisErrTok, upErrBearer, upErrCookie}
	for _, tok := range []string{validToken, wrongToken, cookieToken, queryToken, wsToken, wsResume, badReqToken, redisErrTok} {
		h := hostileHash(tok)
		secrets = append(secrets, h, url.QueryEscape(h), strings.TrimRight(h, "="))
	}

	upgrader := websocket.Upgrader{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch {
		case r.URL.Path == "/websocket":
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				c.WriteMessage(mt, msg)
			}
		case r.URL.Path == "/api/v1/login":
			http.SetCookie(w, &http.Cookie{Name: "rc_token", Value: setCookie, Path: "/"})
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"status":"success","data":{"userId":"leakUser1","authToken":"`+respToken+`"}}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"success":true}`)
		}
	}))
	t.Cleanup(up.Close)

	rds := StartRedis(t, "--requirepass", redisPass)
	if !rds.Real() {
		rds.mini.RequireAuth(redisPass)
	}
	seeder := redis.NewClient(&redis.Options{Addr: rds.Addr, Password: redisPass, DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { seeder.Close() })
	login := hostileLogin{UserID: "leakUser1", Token: validToken, SessionID: sessionIDArg}
	hostileSeed(t, seeder, login)
	redisURL := "redis://:" + redisPass + "@" + rds.Addr + "/0"
	g := StartGate(t, GateEnv(up.URL, redisURL))

	client := faultsClient()
	requests := 0
	do := func(method, path string, header http.Header, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, g.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, vs := range header {
			req.Header[k] = vs
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		requests++
		return resp
	}
	auth := func(userID, token string) http.Header {
		return http.Header{"X-User-Id": {userID}, "X-Auth-Token": {token}}
	}

	// Forwarded, with credentials in every place a Rocket.Chat client puts them.
	h := auth(login.UserID, validToken)
	h.Set("Authorization", "Bearer "+bearer)
	h.Set("Cookie", "rc_uid="+login.UserID+"; rc_token="+cookieToken)
	do("GET", "/api/v1/me", h, "")
	do("GET", "/file-upload/abc/photo.png?rc_uid="+login.UserID+"&rc_token="+queryToken, nil, "")
	do("POST", "/api/v1/login", http.Header{"Content-Type": {"application/json"}}, `{"user":"leak","password":"`+password+`"}`)

	// Intercepted: success (its body holds the token hash), wrong token,
	// unknown session.
	do("GET", "/api/v1/sessions/info?sessionId="+sessionIDArg, auth(login.UserID, validToken), "")
	do("GET", "/api/v1/sessions/info?sessionId="+sessionIDArg, auth(login.UserID, wrongToken), "")
	do("GET", "/api/v1/sessions/info?sessionId=nope", auth(login.UserID, validToken), "")

	// A WebSocket handshake with credentials, and a DDP resume login inside.
	wsURL := "ws://" + g.Addr + "/websocket"
	wh := auth(login.UserID, wsToken)
	wh.Set("Cookie", "rc_token="+wsToken)
	wh.Set("Authorization", "Bearer "+wsToken)
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if ws, resp, err := dialer.Dial(wsURL, wh); err == nil {
		ws.WriteMessage(websocket.TextMessage, []byte(`{"msg":"method","method":"login","id":"1","params":[{"resume":"`+wsResume+`"}]}`))
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		ws.ReadMessage()
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		ws.Close()
	} else {
		t.Logf("WebSocket handshake failed (%v, %v); its headers were still sent", err, resp)
	}
	requests++

	// A malformed request: the HTTP parser's error path must not echo the
	// request head it could not parse.
	resp, _, err := hostileRoundTrip(g.Addr, "GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+badReqToken+
		"\r\nX-Auth-Token: "+badReqToken+"\r\nCookie: rc_token="+badReqToken+"\r\nthis line has no colon\r\n\r\n")
	if err == nil && resp.StatusCode != 400 {
		t.Errorf("malformed request: got status %d, want 400", resp.StatusCode)
	}

	// Redis down: the route's error path.
	rds.Stop()
	do("GET", "/api/v1/sessions/info?sessionId="+sessionIDArg, auth(login.UserID, redisErrTok), "")

	// Upstream down: the forwarder's error path.
	up.Close()
	h = auth(login.UserID, validToken)
	h.Set("Authorization", "Bearer "+upErrBearer)
	h.Set("Cookie", "rc_token="+upErrCookie)
	do("GET", "/api/v1/me", h, "")

	// Stop the gate so every line is flushed, then read it all.
	g.Signal(syscall.SIGTERM)
	if code := g.Wait(15 * time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
	var logs string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if logs = g.Logs(); strings.Contains(logs, `"msg":"stopped"`) {
			break
		}
	}

	// The test is only worth something if the traffic was logged.
	if got := strings.Count(logs, `"logger":"access"`); got < requests {
		t.Errorf("got %d access lines, want at least %d (one per request): is the access log on?", got, requests)
	}
	for _, s := range secrets {
		if i := strings.Index(logs, s); i >= 0 {
			line := logs[strings.LastIndexByte(logs[:i], '\n')+1:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			t.Errorf("log output holds secret %q in:\n%s", s, line)
		}
	}
}
