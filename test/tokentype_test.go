package test

import (
	"context"
	"testing"
)

// TestRouteTokenKeyOfAnotherType: the data contract allows only strings at
// a token key. A hash or a list there is no valid token, whatever the
// query: the same credentials get the same 401 with a valid query, with no
// sessionId and with bad parameters (one rule for the lookup with a session
// and the check without one).
func TestRouteTokenKeyOfAnotherType(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	rc := r.Client()
	ctx := context.Background()
	const hashUser, listUser = "hashUser00000001", "listUser00000001"
	if err := rc.HSet(ctx, routeTokenKey(hashUser, routeSeedToken), "when", "2023-05-23T16:33:45.202Z").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.RPush(ctx, routeTokenKey(listUser, routeSeedToken), "x").Err(); err != nil {
		t.Fatal(err)
	}
	// A session document beside each, so a 401 cannot come from a
	// missing session.
	routeSeed(t, rc, hashUser, "", map[string]string{routeSeedSession: `{"x":1}`})
	routeSeed(t, rc, listUser, "", map[string]string{routeSeedSession: `{"x":1}`})
	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, r.URL()))

	for _, user := range []string{hashUser, listUser} {
		for _, q := range []struct{ name, target string }{
			{"valid query", routePath + "?sessionId=" + routeSeedSession},
			{"no query", routePath},
			{"missing sessionId", routePath + "?foo=bar"},
			{"repeated sessionId", routePath + "?sessionId=a&sessionId=b"},
			{"extra parameter", routePath + "?sessionId=" + routeSeedSession + "&extra=1"},
			{"session id that cannot be real", routePath + "?sessionId=%7Bx%7D"},
		} {
			got := routeDo(t, g.Addr, "GET", q.target, routeCreds(user, routeSeedToken)...)
			routeCheck(t, user+", "+q.name, got, 401, route401)
		}
	}
	if seen := up.Take(); len(seen) != 0 {
		t.Errorf("the upstream received %d requests, want none", len(seen))
	}
}
