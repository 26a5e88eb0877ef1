package test

// Redis failures on the route (docs/route.md): a stopped or frozen redis-server
// never turns into 401, 404 or 500; redis.on_error decides between
// forwarding and 503; and the route recovers without a restart.

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// routeOutageRequests are requests that need Redis, with valid
// credentials: each would be a 200, 400 or 404 with Redis up.
var routeOutageRequests = []struct{ name, target string }{
	{"own session", routePath + "?sessionId=" + routeSeedSession},
	{"unknown session", routePath + "?sessionId=nope"},
	{"invalid query", routePath + "?extra=1"},
	{"session id that cannot be real", routePath + "?sessionId=%7B"},
}

// routeExpectOutage checks every request during an outage under policy.
func routeExpectOutage(t *testing.T, g *Gate, up *Upstream, policy string) {
	t.Helper()
	creds := routeCreds(routeSeedUser, routeSeedToken)
	up.Take()
	for _, rq := range routeOutageRequests {
		got := routeDo(t, g.Addr, "GET", rq.target, creds...)
		switch policy {
		case "forward":
			routeCheckForwarded(t, "outage, "+rq.name, got)
			seen := up.Take()
			if len(seen) != 1 || seen[0].Target != rq.target || seen[0].Get("X-Auth-Token") != routeSeedToken {
				t.Errorf("outage, %s: upstream received %+v, want the request unchanged", rq.name, seen)
			}
		case "unavailable":
			routeCheck(t, "outage, "+rq.name, got, http.StatusServiceUnavailable, route503)
		}
	}
	if seen := up.Take(); policy == "unavailable" && len(seen) != 0 {
		t.Errorf("unavailable: the upstream received %d requests, want none", len(seen))
	}
	// Without credentials nothing needs Redis: still the route's own 401.
	routeCheck(t, "outage, no credentials", routeDo(t, g.Addr, "GET", routePath+"?sessionId=x"), 401, route401)
}

// routeWaitRecovered polls until the seed's session is served again.
func routeWaitRecovered(t *testing.T, g *Gate) {
	t.Helper()
	answer, _ := routeSeedBodies(t)
	creds := routeCreds(routeSeedUser, routeSeedToken)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := routeDo(t, g.Addr, "GET", routePath+"?sessionId="+routeSeedSession, creds...)
		if got.Status == 200 {
			routeCheck(t, "recovered", got, 200, answer)
			return
		}
		if got.Status == 401 || got.Status == 404 || got.Status >= 500 && got.Status != 503 {
			t.Fatalf("while recovering: %d %s", got.Status, got.Body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 15s after Redis came back: last %d %s", got.Status, got.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRouteRedisStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"forward", "unavailable"} {
		t.Run("on_error="+policy, func(t *testing.T) {
			t.Parallel()
			r := StartRedis(t)
			_, stored := routeSeedBodies(t)
			seed := func() {
				routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
			}
			seed()
			up := startRouteUpstream(t)
			g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_REDIS_ON_ERROR", policy, "SESSIONGATE_REDIS_TIMEOUT", "200ms"))
			routeWaitRecovered(t, g)

			r.Stop()
			routeExpectOutage(t, g, up, policy)
			outcome := "redis_error_forwarded"
			if policy == "unavailable" {
				outcome = "redis_error_unavailable"
			}
			if got := g.Metric(`sessiongate_sessions_info_total{outcome="` + outcome + `"} `); got != float64(len(routeOutageRequests)) {
				t.Errorf("%s: got %v, want %d", outcome, got, len(routeOutageRequests))
			}

			r.Start() // a restarted server has lost its data
			seed()
			routeWaitRecovered(t, g)
		})
	}
}

// TestRouteRedisFrozen: a server that accepts but never answers (SIGSTOP)
// is the timeout path: each request ends within redis.timeout of its own.
func TestRouteRedisFrozen(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"forward", "unavailable"} {
		t.Run("on_error="+policy, func(t *testing.T) {
			t.Parallel()
			r := StartRedis(t)
			_, stored := routeSeedBodies(t)
			routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
			up := startRouteUpstream(t)
			g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_REDIS_ON_ERROR", policy, "SESSIONGATE_REDIS_TIMEOUT", "150ms"))
			routeWaitRecovered(t, g)

			r.Pause()
			t.Cleanup(r.Resume)
			routeExpectOutage(t, g, up, policy)
			r.Resume()
			routeWaitRecovered(t, g)
		})
	}
}

// TestRouteDeclinedThenPoolFullRunsOnce: with Redis down and
// redis.on_error=forward, a sessions/info request the route declined on
// the event loop meets a full upstream pool, so the loop hands its
// connection to the fasthttp path, which waits for a free upstream
// connection. The route must not run a second time there: the request is
// counted once and forwarded once, with the upstream's answer.
func TestRouteDeclinedThenPoolFullRunsOnce(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	_, stored := routeSeedBodies(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
	up := StartUpstream(t, func(q *Req) Answer {
		if strings.HasPrefix(q.Target, "/slow") {
			return Answer{Delay: 1500 * time.Millisecond, Body: "slow"}
		}
		return Answer{Body: "from upstream"}
	})
	g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_REDIS_ON_ERROR", "forward",
		"SESSIONGATE_REDIS_TIMEOUT", "200ms", "SESSIONGATE_UPSTREAM_MAX_CONNS", "1"))
	routeWaitRecovered(t, g)
	r.Stop()

	// The one upstream connection is busy for 1.5 s.
	slow := make(chan routeResponse, 1)
	go func() { slow <- routeDo(t, g.Addr, "GET", "/slow") }()
	if !WaitFor(5*time.Second, func() bool { return up.Heads() > 0 }) {
		t.Fatal("the slow request did not reach the upstream in 5s")
	}
	got := routeDo(t, g.Addr, "GET", routePath+"?sessionId="+routeSeedSession, routeCreds(routeSeedUser, routeSeedToken)...)
	if got.Status != 200 || got.Body != "from upstream" {
		t.Errorf("declined route request: %d %q, want the upstream's 200 %q", got.Status, got.Body, "from upstream")
	}
	if s := <-slow; s.Status != 200 || s.Body != "slow" {
		t.Errorf("slow request: %d %q", s.Status, s.Body)
	}
	if n := g.Metric(`sessiongate_sessions_info_total{outcome="redis_error_forwarded"} `); n != 1 {
		t.Errorf(`sessions_info_total{outcome="redis_error_forwarded"} = %v, want 1: the route ran %v times for one request`, n, n)
	}
	if loopServes() {
		if n := g.Metric(`sessiongate_event_loop_handoffs_total{reason="pool_full"} `); n != 1 {
			t.Errorf(`event_loop_handoffs_total{reason="pool_full"} = %v, want 1 (the case under test did not happen)`, n)
		}
	}
}
