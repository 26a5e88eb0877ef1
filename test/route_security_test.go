package test

// Security properties of the route: with user A's credentials a client gets
// A's own session, a 404, a 400 or a 401 — never a byte of another user's
// data — whatever the ids look like; and neither tokens nor their hashes
// reach the logs.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// routeHostileID returns an id drawn from shapes that try to break out of
// the key layout rc:{<userID>}:session:<sessionID>, or plain ones.
func routeHostileID(rng *rand.Rand, i int) string {
	shapes := []func() string{
		func() string { return fmt.Sprintf("plain%03d", i) },
		func() string { return fmt.Sprintf("u%d}:session:x", i) },
		func() string { return fmt.Sprintf("{u%d}", i) },
		func() string { return fmt.Sprintf("a:b:%d", i) },
		func() string { return fmt.Sprintf("*%d*", i) },
		func() string { return fmt.Sprintf("?[%d]", i) },
		func() string { return fmt.Sprintf("line%d\r\nX-Injected: 1", i) },
		func() string { return fmt.Sprintf("%d", i) + strings.Repeat("L", 250+rng.IntN(20)) },
		func() string { return fmt.Sprintf("\xff\xfe%d\x80", i) },
		func() string { return fmt.Sprintf("é%d ü", i) },
		func() string { return fmt.Sprintf("pct%%41%%7B%d", i) },
		func() string { return fmt.Sprintf(" sp%d ", i) },
		func() string { return fmt.Sprintf("tab\t%d", i) },
	}
	return shapes[rng.IntN(len(shapes))]()
}

// routeHeaderSafe reports whether s can be sent as a header value at all
// (no CR, LF or NUL): others are refused by any HTTP parser before a
// handler runs, which is not what this test is about.
func routeHeaderSafe(s string) bool { return !strings.ContainsAny(s, "\r\n\x00") }

func TestRouteNeverServesAnotherUsersData(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	rc := r.Client()
	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_LOG_ACCESS", "false"))

	seedN := uint64(20260527)
	rng := rand.New(rand.NewPCG(seedN, seedN))
	t.Logf("random seed %d", seedN)

	type user struct {
		id, token string
		sessions  map[string]string // id → document
	}
	var users []user
	owner := map[string]int{} // document marker → user index
	const nUsers, nSessions = 24, 3
	for i := range nUsers {
		u := user{id: routeHostileID(rng, i), token: fmt.Sprintf("tok-%d-%x", i, rng.Uint64()), sessions: map[string]string{}}
		if i == 1 {
			// A victim whose id the attacker's session ids try to reach.
			u.id = "victim"
		}
		for j := range nSessions {
			sid := routeHostileID(rng, 100*i+j)
			if j == 0 {
				sid = "shared" // the same session id for every user
			}
			marker := fmt.Sprintf("owner-%02d-%d", i, j)
			owner[marker] = i
			doc, _ := json.Marshal(map[string]string{"marker": marker})
			u.sessions[sid] = string(doc)
		}
		routeSeed(t, rc, u.id, u.token, u.sessions)
		users = append(users, u)
	}

	// Session ids an attacker tries: everyone's, plus ones aimed at the
	// victim's keys through the layout.
	var probes []string
	for _, u := range users {
		for sid := range u.sessions {
			probes = append(probes, sid)
		}
	}
	victim := users[1]
	for sid := range victim.sessions {
		probes = append(probes,
			"x}:session:"+sid, "{victim}:session:"+sid, "../{victim}:session:"+sid,
			"*", "*"+sid, sid+"*", ":session:"+sid, "rc:{victim}:session:"+sid)
	}
	probes = append(probes, "", " ", "\x00", strings.Repeat("{", 300), "token:"+routeHash(victim.token))

	conn := newRouteConn(t, g.Addr)
	requests := 0
	statuses := map[int]int{}
	for i, a := range users {
		if !routeHeaderSafe(a.id) || !routeHeaderSafe(a.token) {
			continue
		}
		for _, token := range []string{a.token, victim.token} {
			for _, sid := range probes {
				for _, query := range []string{"sessionId=" + url.QueryEscape(sid), "sessionId=" + url.PathEscape(sid)} {
					got := conn.Do(t, "GET", routePath+"?"+query, routeCreds(a.id, token)...)
					requests++
					statuses[got.Status]++
					what := fmt.Sprintf("user %d (%q) token of %s, sessionId %q", i, a.id, map[bool]string{true: "self", false: "victim"}[token == a.token], sid)
					for marker, o := range owner {
						if o != i && strings.Contains(got.Body, marker) {
							t.Fatalf("%s: got user %d's data: %d %s", what, o, got.Status, got.Body)
						}
					}
					switch got.Status {
					case 200:
						doc, own := a.sessions[sid]
						if !own || token != a.token || got.Body != doc[:len(doc)-1]+`,"success":true}` {
							t.Fatalf("%s: got 200 %s", what, got.Body)
						}
					case 401:
						routeCheck(t, what, got, 401, route401)
					case 404:
						routeCheck(t, what, got, 404, route404)
						// Percent-escapes that are not UTF-8 make qs keep the raw
						// text, so such an id cannot be asked for (as with Rocket.Chat).
						if _, own := a.sessions[sid]; own && token == a.token && validRouteID(sid) && validRouteID(a.id) && utf8.ValidString(sid) {
							t.Errorf("%s: 404 for the user's own session", what)
						}
					default:
						t.Fatalf("%s: got %d %s", what, got.Status, got.Body)
					}
					if token != a.token && got.Status != 401 && a.id != victim.id {
						t.Fatalf("%s: another user's token was accepted: %d", what, got.Status)
					}
				}
			}
		}
	}
	t.Logf("%d users, %d session ids probed, %d requests, statuses %v", len(users), len(probes), requests, statuses)
	if requests < 1000 || statuses[200] < 20 || statuses[401] < 100 || statuses[404] < 100 {
		t.Errorf("%d requests, statuses %v: the generator lost its variety", requests, statuses)
	}
	if seen := up.Take(); len(seen) != 0 {
		t.Errorf("%d requests were forwarded with Redis up", len(seen))
	}
}

// validRouteID mirrors docs/route.md's "ids that cannot be real" for the test's
// expectations.
func validRouteID(id string) bool {
	return len(id) <= 256 && strings.TrimSpace(id) != "" && !strings.ContainsAny(id, "{}") &&
		!strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) })
}

// TestRouteLogsNoSecrets runs every kind of request with debug logs and
// access lines on, Redis up and down, and greps the whole log for the tokens
// and their hashes.
func TestRouteLogsNoSecrets(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: `{"x":1}`})
	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_REDIS_TIMEOUT", "100ms"))
	tokens := []string{routeSeedToken, "wrong-token-value-1234"}
	run := func() {
		for _, tok := range tokens {
			for _, q := range []string{"?sessionId=" + routeSeedSession, "?sessionId=nope", "?x=1", "?sessionId=%7B", "?rc_token=" + tok} {
				routeDo(t, g.Addr, "GET", routePath+q, routeCreds(routeSeedUser, tok)...)
			}
		}
	}
	run()
	r.Stop()
	run()
	logs := g.Logs()
	for _, tok := range tokens {
		for _, secret := range []string{tok, routeHash(tok), routeTokenKey(routeSeedUser, tok), url.QueryEscape(routeHash(tok))} {
			if strings.Contains(logs, secret) {
				t.Errorf("logs contain %q", secret)
			}
		}
	}
	if !strings.Contains(logs, "session lookup failed") {
		t.Errorf("the Redis outage was not logged")
	}
}
