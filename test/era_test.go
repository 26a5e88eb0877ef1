package test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// startVersionedUpstream is a stand-in Rocket.Chat whose GET /api/info
// reports version (or nothing when version is empty); every other request
// gets 418 from it.
func startVersionedUpstream(t *testing.T, version string) (url string, infoRequests *atomic.Int64) {
	t.Helper()
	infoRequests = new(atomic.Int64)
	up := StartUpstream(t, func(r *Req) Answer {
		if path, _, _ := strings.Cut(r.Target, "?"); r.Method == http.MethodGet && path == "/api/info" {
			infoRequests.Add(1)
			body := `{"success":true}`
			if version != "" {
				body = `{"version":"` + version + `","success":true}`
			}
			return Answer{Header: []string{"Content-Type: application/json"}, Body: body}
		}
		return Answer{Status: http.StatusTeapot, Header: []string{"Content-Type: application/json", "X-Stand-In: upstream"}, Body: `{"from":"upstream"}`}
	})
	return up.URL, infoRequests
}

// TestRouteFollowsUpstreamVersion: with rocketchat.version auto the gate
// asks the upstream's /api/info, shows the version in its metrics and log,
// and answers as that era does (docs/eras.md).
func TestRouteFollowsUpstreamVersion(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: `{"x":1}`})
	upURL, infoRequests := startVersionedUpstream(t, "8.1.2")
	g := StartGate(t, routeEnv(upURL, r.URL(), "SESSIONGATE_ROCKETCHAT_VERSION", "auto"))
	waitMetric(t, g, `sessiongate_upstream_info{era="8.0+",source="upstream",version="8.1.2"} `, 1)
	if infoRequests.Load() == 0 {
		t.Error("the upstream was never asked /api/info")
	}
	creds := routeCreds(routeSeedUser, routeSeedToken)
	routeCheck(t, "wrong token", routeDo(t, g.Addr, "GET", routePath+"?sessionId=x", routeCreds(routeSeedUser, "nope")...), 401,
		`{"success":false,"error":"You must be logged in to do this."}`)
	routeCheck(t, "no sessionId", routeDo(t, g.Addr, "GET", routePath+"?x=1", creds...), 400,
		`{"success":false,"errorType":"error-invalid-params","error":"must have required property 'sessionId'"}`)
	routeCheck(t, "index past the router's arrayLimit", routeDo(t, g.Addr, "GET", routePath+"?sessionId=a&x[500]=1", creds...), 400,
		`{"success":false,"error":"Invalid query parameters"}`)
	routeCheck(t, "own session", routeDo(t, g.Addr, "GET", routePath+"?sessionId="+routeSeedSession, creds...), 200, `{"x":1,"success":true}`)
	if !strings.Contains(g.Logs(), `"version":"8.1.2"`) || !strings.Contains(g.Logs(), `"era":"8.0+"`) {
		t.Errorf("the log does not name the version and era:\n%s", g.Logs())
	}
}

// TestRouteFallbackVersion: an upstream that hides its version gets the
// fallback's era, and the log says so.
func TestRouteFallbackVersion(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	upURL, _ := startVersionedUpstream(t, "")
	g := StartGate(t, routeEnv(upURL, r.URL(), "SESSIONGATE_ROCKETCHAT_VERSION", "auto", "SESSIONGATE_ROCKETCHAT_FALLBACK_VERSION", "7.4.0"))
	waitMetric(t, g, `sessiongate_upstream_info{era="7.4-7.5",source="fallback",version="7.4.0"} `, 1)
	routeCheck(t, "no headers", routeDo(t, g.Addr, "GET", routePath+"?sessionId=x"), 401, route401Ext)
	if !strings.Contains(g.Logs(), "does not report its version") {
		t.Errorf("the log does not say the fallback is used:\n%s", g.Logs())
	}
}

// TestCheckConfigShowsUpstreamVersion: check-config asks the upstream too.
func TestCheckConfigShowsUpstreamVersion(t *testing.T) {
	t.Parallel()
	upURL, _ := startVersionedUpstream(t, "6.12.1")
	code, out := RunGate(t, map[string]string{"SESSIONGATE_UPSTREAM_URL": upURL}, "check-config")
	if code != 0 || !strings.Contains(out, "# rocketchat: version 6.12.1 (upstream), era 5.0-7.3\n") {
		t.Errorf("check-config: exit %d, output without the upstream's version and era:\n%s", code, out)
	}
	code, out = RunGate(t, map[string]string{"SESSIONGATE_UPSTREAM_URL": upURL, "SESSIONGATE_ROCKETCHAT_VERSION": "7.6.0"}, "check-config")
	if code != 0 || !strings.Contains(out, "# rocketchat: version 7.6.0 (configured), era 7.6-7.x\n") {
		t.Errorf("check-config: exit %d, output without the configured version and era:\n%s", code, out)
	}
}

// TestRouteForwardsWhatNodeRefuses: a request line with a byte of 0x80 or
// above is Node's to refuse (400 before Rocket.Chat runs), so the gate
// forwards it unchanged instead of answering.
func TestRouteForwardsWhatNodeRefuses(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{"\xe9": `{"x":1}`})
	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, r.URL()))
	target := routePath + "?sessionId=\xe9"
	routeCheckForwarded(t, "raw 0xE9 in the query", routeDo(t, g.Addr, "GET", target, routeCreds(routeSeedUser, routeSeedToken)...))
	if seen := up.Take(); len(seen) != 1 || seen[0].Target != target {
		t.Errorf("the upstream received %+v, want the request unchanged", seen)
	}
}
