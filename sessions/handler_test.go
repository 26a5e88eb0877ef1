package sessions

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessiongate/sessiongate/auth"
)

// memStore is an in-memory Store for unit tests and fuzzing; the black-box
// tests in test/ use a real redis-server through redisstore.
type memStore struct {
	mu       sync.Mutex
	tokens   map[[2]string]bool   // (userID, hashedToken)
	sessions map[[2]string]string // (userID, sessionID) → document
	err      error                // returned by every call when set

	sessionCalls, authCalls atomic.Int64
	lastDeadline            atomic.Int64 // nanoseconds left on the last ctx
}

func newMemStore() *memStore {
	return &memStore{tokens: map[[2]string]bool{}, sessions: map[[2]string]string{}}
}

func (m *memStore) addToken(userID, token string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[[2]string{userID, auth.HashToken(token)}] = true
}

func (m *memStore) addSession(userID, sessionID, doc string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[[2]string{userID, sessionID}] = doc
}

func (m *memStore) noteDeadline(ctx context.Context) {
	if d, ok := ctx.Deadline(); ok {
		m.lastDeadline.Store(int64(time.Until(d)))
	} else {
		m.lastDeadline.Store(-1)
	}
}

func (m *memStore) Session(ctx context.Context, userID, hashedToken, sessionID []byte) (string, error) {
	m.sessionCalls.Add(1)
	m.noteDeadline(ctx)
	if m.err != nil {
		return "", m.err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.tokens[[2]string{string(userID), string(hashedToken)}] {
		return "", auth.ErrInvalidToken
	}
	doc, ok := m.sessions[[2]string{string(userID), string(sessionID)}]
	if !ok {
		return "", ErrNotFound
	}
	return doc, nil
}

func (m *memStore) Authenticate(ctx context.Context, userID, hashedToken []byte) error {
	m.authCalls.Add(1)
	m.noteDeadline(ctx)
	if m.err != nil {
		return m.err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.tokens[[2]string{string(userID), string(hashedToken)}] {
		return auth.ErrInvalidToken
	}
	return nil
}

// seedDoc is the success body of Rocket.Chat's API documentation example
// without "success":true (docs/data-contract.md), compact as stored.
const seedDoc = `{"_id":"646ceae9a8c3a3ba32d0e897","type":"session","sessionId":"QoYYFw2t9oKks2niG","instanceId":"f0313fa9-ebe6-4a84-8580-3104f6a09988","loginToken":"orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU=","ip":"172.20.0.2","host":"localhost:3000","device":{"type":"browser","name":"Chrome","longVersion":"113.0.0.0","os":{"name":"Windows","version":"10"},"version":"113.0.0"},"userId":"rbAXPnMktTFbNpwtJ","roles":["user","admin","livechat-agent","livechat-manager"],"mostImportantRole":"admin","loginAt":"2023-05-23T16:33:45.202Z","day":23,"month":5,"year":2023,"searchTerm":"ChromebrowserWindowsQoYYFw2t9oKks2niGrbAXPnMktTFbNpwtJ","createdAt":"2023-05-23T16:33:45.203Z","_updatedAt":"2023-05-23T17:56:31.599Z","closedAt":"2023-05-23T17:56:31.599Z","lastActivityAt":"2023-05-23T17:56:31.599Z"}`

const (
	seedUser    = "rbAXPnMktTFbNpwtJ"
	seedToken   = "4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6"
	seedSession = "QoYYFw2t9oKks2niG"
	otherUser   = "otherUserId12345"
	otherToken  = "otherToken"
)

func fixtureStore() *memStore {
	m := newMemStore()
	m.addToken(seedUser, seedToken)
	m.addSession(seedUser, seedSession, seedDoc)
	m.addSession(seedUser, "a b", `{"sessionId":"a b"}`)
	m.addSession(seedUser, "a+b", `{"sessionId":"a+b"}`)
	m.addToken(otherUser, otherToken)
	m.addSession(otherUser, "theirs", `{"sessionId":"theirs","secret":"other user's data"}`)
	return m
}

// request parses a raw HTTP request the way the proxy's server does
// (header names keep their case), so the handler sees what it would in
// production.
func request(t testing.TB, target string, headers ...string) *fasthttp.RequestCtx {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: chat.example\r\n", target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.DisableNormalizing()
	ctx.Response.Header.DisableNormalizing()
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(b.String()))); err != nil {
		t.Fatalf("parse request: %v", err)
	}
	return ctx
}

func creds(user, token string) []string {
	return []string{"X-User-Id: " + user, "X-Auth-Token: " + token}
}

const (
	want401      = `{"status":"error","message":"You must be logged in to do this."}`
	want401Ext   = `{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}`
	want404      = `{"success":false,"error":"Session not found"}`
	want503      = `{"success":false,"error":"Service unavailable"}`
	want400Req   = `{"success":false,"error":"must have required property 'sessionId' [invalid-params]","errorType":"invalid-params"}`
	want400Str   = `{"success":false,"error":"must be string [invalid-params]","errorType":"invalid-params"}`
	want400Extra = `{"success":false,"error":"must NOT have additional properties [invalid-params]","errorType":"invalid-params"}`
)

func newHandler(t testing.TB, store Store, opts Options) *Handler {
	t.Helper()
	opts.Store = store
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkAnswer asserts an answered response: status, body byte for byte and
// the route's three headers.
func checkAnswer(t *testing.T, ctx *fasthttp.RequestCtx, served bool, status int, body string) {
	t.Helper()
	if !served {
		t.Fatalf("Serve returned false (forward), want an answer %d", status)
	}
	if got := ctx.Response.StatusCode(); got != status {
		t.Errorf("status: got %d, want %d", got, status)
	}
	if got := string(ctx.Response.Body()); got != body {
		t.Errorf("body:\n got %s\nwant %s", got, body)
	}
	for _, h := range [][2]string{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}, {"Pragma", "no-cache"}} {
		if got := string(ctx.Response.Header.Peek(h[0])); got != h[1] {
			t.Errorf("%s: got %q, want %q", h[0], got, h[1])
		}
	}
}

func TestServe(t *testing.T) {
	seed := creds(seedUser, seedToken)
	tests := []struct {
		name    string
		target  string
		headers []string
		status  int
		body    string
		calls   int64 // Store calls expected
	}{
		{"no headers", "/api/v1/sessions/info?sessionId=" + seedSession, nil, 401, want401, 0},
		{"user id only", "/api/v1/sessions/info?sessionId=" + seedSession, []string{"X-User-Id: " + seedUser}, 401, want401, 0},
		{"token only", "/api/v1/sessions/info?sessionId=" + seedSession, []string{"X-Auth-Token: " + seedToken}, 401, want401, 0},
		{"empty headers", "/api/v1/sessions/info?sessionId=" + seedSession, []string{"X-User-Id:", "X-Auth-Token:"}, 401, want401, 0},
		{"empty token", "/api/v1/sessions/info?sessionId=" + seedSession, []string{"X-User-Id: " + seedUser, "X-Auth-Token: "}, 401, want401, 0},
		{"repeated user id", "/api/v1/sessions/info?sessionId=" + seedSession, append(creds(seedUser, seedToken), "x-user-id: "+seedUser), 401, want401, 0},
		{"repeated token", "/api/v1/sessions/info?sessionId=" + seedSession, append(creds(seedUser, seedToken), "X-AUTH-TOKEN: "+seedToken), 401, want401, 0},
		{"wrong token", "/api/v1/sessions/info?sessionId=" + seedSession, creds(seedUser, "nope"), 401, want401, 1},
		{"right token, other user id", "/api/v1/sessions/info?sessionId=" + seedSession, creds(otherUser, seedToken), 401, want401, 1},
		{"user id with brace", "/api/v1/sessions/info?sessionId=" + seedSession, creds("{"+seedUser+"}", seedToken), 401, want401, 0},
		{"user id too long", "/api/v1/sessions/info?sessionId=" + seedSession, creds(strings.Repeat("u", 257), seedToken), 401, want401, 0},
		{"user id with control", "/api/v1/sessions/info?sessionId=" + seedSession, creds("a\tb", seedToken), 401, want401, 0},
		{"wrong token, invalid query", "/api/v1/sessions/info?foo=1", creds(seedUser, "nope"), 401, want401, 1},
		{"wrong token, bad session id", "/api/v1/sessions/info?sessionId=%7B", creds(seedUser, "nope"), 401, want401, 1},

		{"own session", "/api/v1/sessions/info?sessionId=" + seedSession, seed, 200, seedDoc[:len(seedDoc)-1] + `,"success":true}`, 1},
		{"header names in any case", "/api/v1/sessions/info?sessionId=" + seedSession, []string{"x-user-id: " + seedUser, "X-AUTH-TOKEN: " + seedToken}, 200, seedDoc[:len(seedDoc)-1] + `,"success":true}`, 1},
		{"%20 in session id", "/api/v1/sessions/info?sessionId=a%20b", seed, 200, `{"sessionId":"a b","success":true}`, 1},
		{"+ in session id", "/api/v1/sessions/info?sessionId=a+b", seed, 200, `{"sessionId":"a b","success":true}`, 1},
		{"%2B in session id", "/api/v1/sessions/info?sessionId=a%2Bb", seed, 200, `{"sessionId":"a+b","success":true}`, 1},
		{"unknown session", "/api/v1/sessions/info?sessionId=nope", seed, 404, want404, 1},
		{"other user's session", "/api/v1/sessions/info?sessionId=theirs", seed, 404, want404, 1},
		{"empty session id", "/api/v1/sessions/info?sessionId=", seed, 404, want404, 1},
		{"blank session id", "/api/v1/sessions/info?sessionId=%20", seed, 404, want404, 1},
		{"session id with brace", "/api/v1/sessions/info?sessionId=%7Bx%7D", seed, 404, want404, 1},
		{"session id with CRLF", "/api/v1/sessions/info?sessionId=a%0D%0Ab", seed, 404, want404, 1},
		{"session id too long", "/api/v1/sessions/info?sessionId=" + strings.Repeat("s", 257), seed, 404, want404, 1},

		{"no query", "/api/v1/sessions/info", seed, 400, want400Req, 1},
		{"missing sessionId", "/api/v1/sessions/info?foo=1", seed, 400, want400Req, 1},
		{"repeated sessionId", "/api/v1/sessions/info?sessionId=a&sessionId=b", seed, 400, want400Str, 1},
		{"sessionId[]", "/api/v1/sessions/info?sessionId[]=" + seedSession, seed, 400, want400Str, 1},
		{"sessionId[x]", "/api/v1/sessions/info?sessionId[x]=" + seedSession, seed, 400, want400Str, 1},
		{"extra parameter", "/api/v1/sessions/info?sessionId=" + seedSession + "&x=1", seed, 400, want400Extra, 1},
		{"extra and bracketed", "/api/v1/sessions/info?sessionId[]=a&x=1", seed, 400, want400Extra, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := fixtureStore()
			h := newHandler(t, store, Options{})
			ctx := request(t, tt.target, tt.headers...)
			checkAnswer(t, ctx, h.Serve(ctx), tt.status, tt.body)
			if got := store.sessionCalls.Load() + store.authCalls.Load(); got != tt.calls {
				t.Errorf("store calls: got %d, want %d", got, tt.calls)
			}
			if tt.status == 400 && store.sessionCalls.Load() != 0 {
				t.Errorf("an invalid query fetched a session")
			}
		})
	}
}

// checkUntouched asserts the handler left the response as it found it, as
// proxy.Route requires before a forward.
func checkUntouched(t *testing.T, ctx *fasthttp.RequestCtx) {
	t.Helper()
	var fresh fasthttp.Response
	fresh.Header.DisableNormalizing()
	if got, want := ctx.Response.String(), fresh.String(); got != want {
		t.Errorf("response touched before a forward:\n got %q\nwant %q", got, want)
	}
}

func TestServeNeverLooksUpIDsThatCannotBeReal(t *testing.T) {
	store := fixtureStore()
	h := newHandler(t, store, Options{})
	for _, q := range []string{"sessionId=", "sessionId=%7B", "sessionId=a%7D", "sessionId=%00", "sessionId=" + strings.Repeat("x", 257)} {
		ctx := request(t, "/api/v1/sessions/info?"+q, creds(seedUser, seedToken)...)
		checkAnswer(t, ctx, h.Serve(ctx), 404, want404)
	}
	if n := store.sessionCalls.Load(); n != 0 {
		t.Errorf("Session called %d times, want 0 (only Authenticate)", n)
	}
}

func TestServeExtendedUnauthorizedBody(t *testing.T) {
	h := newHandler(t, fixtureStore(), Options{UnauthorizedBody: UnauthorizedExtended})
	ctx := request(t, "/api/v1/sessions/info?sessionId="+seedSession)
	checkAnswer(t, ctx, h.Serve(ctx), 401, want401Ext)
}

func TestServeStoreFailure(t *testing.T) {
	for _, target := range []string{"/api/v1/sessions/info?sessionId=" + seedSession, "/api/v1/sessions/info?x=1", "/api/v1/sessions/info?sessionId="} {
		t.Run(target, func(t *testing.T) {
			store := fixtureStore()
			store.err = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")

			h := newHandler(t, store, Options{OnError: OnErrorForward})
			ctx := request(t, target, creds(seedUser, seedToken)...)
			if h.Serve(ctx) {
				t.Fatalf("forward: Serve returned true (status %d), want false", ctx.Response.StatusCode())
			}
			checkUntouched(t, ctx)

			h = newHandler(t, store, Options{OnError: OnErrorUnavailable})
			ctx = request(t, target, creds(seedUser, seedToken)...)
			checkAnswer(t, ctx, h.Serve(ctx), 503, want503)
		})
	}
}

func TestServeStoredValueNotAnObject(t *testing.T) {
	tests := []struct {
		stored string
		body   string // "" means the store failure policy applies
	}{
		{`{}`, `{"success":true}`},
		{`{ }`, `{"success":true}`},
		{" {\"a\":1}\n", `{"a":1,"success":true}`},
		{`{"a":{"b":[1,2]}}`, `{"a":{"b":[1,2]},"success":true}`},
		{``, ""},
		{`hello`, ""},
		{`"str"`, ""},
		{`[1,2]`, ""},
		{`42`, ""},
		{`null`, ""},
		{`{"a":1`, ""},
		{`{"a":}`, ""},
		{`{"a":1}}`, ""},
		{`{"a":1} {"b":2}`, ""},
		{"{\"a\":\"\xff\"}", `{"a":"` + "\xff" + `","success":true}`}, // json.Valid accepts invalid UTF-8 in strings
	}
	for _, tt := range tests {
		store := fixtureStore()
		store.addSession(seedUser, "x", tt.stored)
		for _, onError := range []string{OnErrorForward, OnErrorUnavailable} {
			h := newHandler(t, store, Options{OnError: onError})
			ctx := request(t, "/api/v1/sessions/info?sessionId=x", creds(seedUser, seedToken)...)
			served := h.Serve(ctx)
			switch {
			case tt.body != "":
				checkAnswer(t, ctx, served, 200, tt.body)
			case onError == OnErrorForward && served:
				t.Errorf("stored %q: served %d %s, want forwarded", tt.stored, ctx.Response.StatusCode(), ctx.Response.Body())
			case onError == OnErrorForward:
				checkUntouched(t, ctx)
			case onError == OnErrorUnavailable:
				checkAnswer(t, ctx, served, 503, want503)
			}
			if served && ctx.Response.StatusCode() == 200 && !json.Valid(ctx.Response.Body()) {
				t.Errorf("stored %q: served invalid JSON %s", tt.stored, ctx.Response.Body())
			}
		}
	}
}

func TestServeFreshness(t *testing.T) {
	store := fixtureStore()
	var fresh atomic.Bool
	reg := prometheus.NewRegistry()
	h := newHandler(t, store, Options{Fresh: fresh.Load, Registerer: reg})

	ctx := request(t, "/api/v1/sessions/info?sessionId="+seedSession, creds(seedUser, seedToken)...)
	if h.Serve(ctx) {
		t.Fatalf("stale: Serve answered %d, want forwarded", ctx.Response.StatusCode())
	}
	checkUntouched(t, ctx)
	if n := store.sessionCalls.Load() + store.authCalls.Load(); n != 0 {
		t.Errorf("stale: %d store calls, want 0", n)
	}
	// Answers that need no data stay local even when stale.
	ctx = request(t, "/api/v1/sessions/info?sessionId="+seedSession)
	checkAnswer(t, ctx, h.Serve(ctx), 401, want401)

	fresh.Store(true)
	ctx = request(t, "/api/v1/sessions/info?sessionId="+seedSession, creds(seedUser, seedToken)...)
	checkAnswer(t, ctx, h.Serve(ctx), 200, seedDoc[:len(seedDoc)-1]+`,"success":true}`)

	if got := counterValue(t, reg, "stale_forwarded"); got != 1 {
		t.Errorf("stale_forwarded: got %v, want 1", got)
	}
}

func TestServeDeadline(t *testing.T) {
	store := fixtureStore()
	h := newHandler(t, store, Options{Timeout: 123 * time.Millisecond})
	ctx := request(t, "/api/v1/sessions/info?sessionId="+seedSession, creds(seedUser, seedToken)...)
	h.Serve(ctx)
	if left := time.Duration(store.lastDeadline.Load()); left <= 0 || left > 123*time.Millisecond {
		t.Errorf("store saw %v left before its deadline, want (0, 123ms]", left)
	}
}

func TestServeMetrics(t *testing.T) {
	store := fixtureStore()
	reg := prometheus.NewRegistry()
	h := newHandler(t, store, Options{Registerer: reg, OnError: OnErrorUnavailable})
	seed := creds(seedUser, seedToken)
	for _, r := range []struct {
		target  string
		headers []string
	}{
		{"/api/v1/sessions/info?sessionId=" + seedSession, seed},
		{"/api/v1/sessions/info?sessionId=" + seedSession, seed},
		{"/api/v1/sessions/info?sessionId=" + seedSession, nil},
		{"/api/v1/sessions/info?x=1", seed},
		{"/api/v1/sessions/info?sessionId=nope", seed},
	} {
		h.Serve(request(t, r.target, r.headers...))
	}
	store.err = errors.New("i/o timeout")
	h.Serve(request(t, "/api/v1/sessions/info?sessionId="+seedSession, seed...))

	for outcome, want := range map[string]float64{"ok": 2, "unauthorized": 1, "invalid": 1, "not_found": 1, "redis_error_unavailable": 1, "redis_error_forwarded": 0, "stale_forwarded": 0} {
		if got := counterValue(t, reg, outcome); got != want {
			t.Errorf("outcome %q: got %v, want %v", outcome, got, want)
		}
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "sessiongate_sessions_info_redis_duration_seconds" {
			if got := mf.GetMetric()[0].GetHistogram().GetSampleCount(); got != 5 {
				t.Errorf("redis round trips observed: got %d, want 5", got)
			}
			return
		}
	}
	t.Error("no sessiongate_sessions_info_redis_duration_seconds")
}

func counterValue(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sessiongate_sessions_info_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no sessiongate_sessions_info_total{outcome=%q}", outcome)
	return 0
}

func TestServeLogsNoSecrets(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	store := fixtureStore()
	store.err = errors.New("connection reset by peer")
	h := newHandler(t, store, Options{Log: zap.New(core)})
	h.Serve(request(t, "/api/v1/sessions/info?sessionId="+seedSession, creds(seedUser, seedToken)...))
	if logs.Len() == 0 {
		t.Fatal("a store failure was not logged")
	}
	var all bytes.Buffer
	for _, e := range logs.All() {
		fmt.Fprintf(&all, "%s %v\n", e.Message, e.ContextMap())
	}
	for _, secret := range []string{seedToken, auth.HashToken(seedToken)} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("logs contain %q:\n%s", secret, all.String())
		}
	}
	// Further failures within the interval are counted, not logged.
	h.Serve(request(t, "/api/v1/sessions/info?sessionId="+seedSession, creds(seedUser, seedToken)...))
	if logs.Len() != 1 {
		t.Errorf("got %d log lines after two failures, want 1", logs.Len())
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, opts := range []Options{
		{},
		{Store: newMemStore(), OnError: "ignore"},
		{Store: newMemStore(), UnauthorizedBody: "fancy"},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New(%+v): got nil error", opts)
		}
	}
}

func TestServeProgrammaticRequest(t *testing.T) {
	// A request built in-process has no raw header block.
	h := newHandler(t, fixtureStore(), Options{})
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI("/api/v1/sessions/info?sessionId=" + seedSession)
	ctx.Request.Header.Set("X-User-Id", seedUser)
	ctx.Request.Header.Set("X-Auth-Token", seedToken)
	checkAnswer(t, ctx, h.Serve(ctx), 200, seedDoc[:len(seedDoc)-1]+`,"success":true}`)
}
