package test

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// With mirror.max_lag set, the route is served from Redis only while the
// mirror's heartbeat (<prefix>mirror:heartbeat, Unix milliseconds) is recent;
// otherwise it is forwarded so stale data is never served.
func TestRouteForwardedWhileMirrorLags(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	rc := r.Client()
	up := startRouteUpstream(t)
	routeSeed(t, rc, "lagUser000000001", "lag-token", map[string]string{"s1": `{"sessionId":"s1"}`})
	g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_MIRROR_MAX_LAG", "2s"))
	target := routePath + "?sessionId=s1"
	creds := routeCreds("lagUser000000001", "lag-token")
	ctx := context.Background()

	// No heartbeat at all: forwarded.
	routeCheckForwarded(t, "no heartbeat", routeDo(t, g.Addr, "GET", target, creds...))

	// A fresh heartbeat: served from Redis once the watcher (1 s tick) saw it.
	beat := func(at time.Time) {
		t.Helper()
		if err := rc.Set(ctx, "rc:mirror:heartbeat", strconv.FormatInt(at.UnixMilli(), 10), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	beat(time.Now())
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := routeDo(t, g.Addr, "GET", target, creds...)
		if got.Status == 200 {
			routeCheck(t, "fresh heartbeat", got, 200, `{"sessionId":"s1","success":true}`)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fresh heartbeat: still got %d %s after 5s, want 200 from Redis", got.Status, got.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lag := g.Metric("sessiongate_mirror_lag_seconds "); lag < 0 || lag > 3 {
		t.Errorf("sessiongate_mirror_lag_seconds: got %v, want 0..3", lag)
	}

	// The mirror stops: once the heartbeat is older than 2 s, forwarded again.
	deadline = time.Now().Add(6 * time.Second)
	for {
		got := routeDo(t, g.Addr, "GET", target, creds...)
		if got.Status == 418 {
			routeCheckForwarded(t, "stale heartbeat", got)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale heartbeat: still got %d after 6s, want it forwarded", got.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := g.Metric(`sessiongate_sessions_info_total{outcome="stale_forwarded"}`); n < 2 {
		t.Errorf("stale_forwarded count: got %v, want at least 2", n)
	}
}
