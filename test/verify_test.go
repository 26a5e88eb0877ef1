package test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A token key whose value starts with {"verify":true is served only once
// the mirror confirms it (docs/data-contract.md): the binary asks over
// <prefix>mirror:verify and waits on <prefix>mirror:verified:<nonce> for
// route.verify_timeout; no answer is a Redis failure (redis.on_error).
// Here the test answers in the mirror's place, so what is checked is the
// proxy's side of the protocol and its wiring.
func TestMarkedTokenAskedBeforeServing(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	rc := r.Client()
	up := startRouteUpstream(t)
	ctx := context.Background()
	routeSeed(t, rc, "markUser00000001", "", map[string]string{"s1": `{"sessionId":"s1"}`})
	if err := rc.Set(ctx, routeTokenKey("markUser00000001", "mark-token"), `{"verify":true,"when":"2023-05-23T16:33:45.202Z"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Long enough for the test's answers to come in time on a loaded
	// machine (the race detector, the suite beside it).
	const verifyTimeout = 1500 * time.Millisecond
	g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_ROUTE_VERIFY_TIMEOUT", verifyTimeout.String()))
	target := routePath + "?sessionId=s1"
	creds := routeCreds("markUser00000001", "mark-token")

	// Nobody answers: forwarded (redis.on_error forward), after the wait.
	began := time.Now()
	routeCheckForwarded(t, "no mirror", routeDo(t, g.Addr, "GET", target, creds...))
	// The BLPOP ends up to 200 ms before the deadline, so that Redis
	// answers before the socket times out.
	if took := time.Since(began); took < verifyTimeout*3/4 || took > verifyTimeout+3*time.Second {
		t.Errorf("no mirror: forwarded after %v, want about route.verify_timeout (%v)", took, verifyTimeout)
	}
	rc.Del(ctx, "rc:mirror:verify")

	// The mirror's answer decides.
	for _, tc := range []struct {
		answer string
		status int
		body   string
	}{
		{"1", 200, `{"sessionId":"s1","success":true}`},
		{"0", 401, `{"status":"error","message":"You must be logged in to do this."}`},
	} {
		done := make(chan string, 1)
		go func() {
			q, err := rc.BLPop(ctx, 5*time.Second, "rc:mirror:verify").Result()
			if err != nil {
				done <- "no question: " + err.Error()
				return
			}
			f := strings.SplitN(q[1], " ", 3)
			rc.RPush(ctx, "rc:mirror:verified:"+f[0], tc.answer)
			done <- strings.Join(f[1:], " ")
		}()
		got := routeDo(t, g.Addr, "GET", target, creds...)
		routeCheck(t, "answer "+tc.answer, got, tc.status, tc.body)
		if q, want := <-done, routeHash("mark-token")+" markUser00000001"; q != want {
			t.Errorf("question: got %q, want %q", q, want)
		}
	}
	if n := g.Metric(`sessiongate_sessions_info_verify_total{result="valid"}`); n != 1 {
		t.Errorf(`verify_total{result="valid"}: got %v, want 1`, n)
	}
	if n := g.Metric(`sessiongate_sessions_info_verify_total{result="error"}`); n != 1 {
		t.Errorf(`verify_total{result="error"}: got %v, want 1`, n)
	}
}
