package mirrortest

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/redisstore"
	"github.com/sessiongate/sessiongate/sessions"
)

// idleWindow is the mirror.active_window of these tests: short, so a token
// goes idle (its key marked again) within seconds instead of 15 minutes.
const idleWindow = 1500 * time.Millisecond

// waitMarked waits until the token key's value carries the verify marker:
// the mirror no longer re-checks it.
func (e *env) waitMarked(t testing.TB, key string) {
	t.Helper()
	eventually(t, 15*time.Second, key+" marked", func() bool {
		return redisstore.Marked(e.get(t, key))
	})
}

// TestEveryRemovalPathOfAnIdleTokenAnswers401AtFirstUse is
// TestEveryRemovalPathAnswers401Within2s for tokens nobody has used within
// mirror.active_window: the mirror does not re-check them, so only their
// first use can find them removed, and it must be a 401, never one 200.
func TestEveryRemovalPathOfAnIdleTokenAnswers401AtFirstUse(t *testing.T) {
	var all []time.Duration
	for _, p := range removalPaths {
		t.Run(p.name, func(t *testing.T) {
			e := newEnv(t)
			e.seedAndMirror(t, idleWindow)
			r := e.route(t, "rc:")
			for _, tok := range []string{tokCurrent, tokOther, tokPAT} {
				if got := r.status(t, "u1", tok, "s1"); got != fasthttp.StatusOK {
					t.Fatalf("%s before the write: got %d, want 200", tok, got)
				}
			}
			// Then nobody uses them: they leave the window and go cold.
			for _, tok := range []string{tokCurrent, tokOther, tokPAT} {
				e.waitMarked(t, "rc:{u1}:token:"+hashToken(tok))
			}
			time.Sleep(time.Duration(rand.Int64N(int64(time.Second))))

			p.write(t, e, time.Now())
			for _, tok := range p.revoked {
				began := time.Now()
				got := r.status(t, "u1", tok, "s1")
				took := time.Since(began)
				all = append(all, took)
				t.Logf("%s: first use after the write answered %d in %v", tok, got, took.Round(time.Millisecond))
				if got != fasthttp.StatusUnauthorized {
					t.Errorf("%s: first use after the write: got %d, want 401", tok, got)
				}
			}
			for _, tok := range p.kept {
				if got := r.status(t, "u1", tok, "s1"); got != fasthttp.StatusOK {
					t.Errorf("%s kept by the path: got %d, want 200", tok, got)
				}
			}
		})
	}
	logLatencies(t, "idle tokens, write → 401 (the first request)", all)
}

// TestIdleValidTokenServedAtFirstUse: a cold (marked) token MongoDB still
// has is answered 200 at its first use, after one round trip to the
// mirror, and then stays 200 without asking again while it is in use.
func TestIdleValidTokenServedAtFirstUse(t *testing.T) {
	e := newEnv(t)
	e.seedAndMirror(t, idleWindow)
	key := "rc:{u1}:token:" + hashToken(tokCurrent)
	if !redisstore.Marked(e.get(t, key)) {
		t.Fatalf("token key after the initial sync in poll mode: %q, want it marked", e.get(t, key))
	}
	r := e.route(t, "rc:")
	var firsts []time.Duration
	for range 5 {
		e.waitMarked(t, key)
		began := time.Now()
		got := r.status(t, "u1", tokCurrent, "s1")
		took := time.Since(began)
		firsts = append(firsts, took)
		if got != fasthttp.StatusOK {
			t.Fatalf("first use of a cold valid token: got %d, want 200", got)
		}
		// Verified: warm, served by its presence alone from now on.
		if v := e.get(t, key); redisstore.Marked(v) {
			t.Fatalf("token key after its verification: %q, want it unmarked", v)
		}
		for range 3 {
			if got := r.status(t, "u1", tokCurrent, "s1"); got != fasthttp.StatusOK {
				t.Fatalf("later use: got %d, want 200", got)
			}
		}
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	t.Logf("cold valid token, first use (one verification) over %d uses: median %v, max %v", len(firsts),
		firsts[len(firsts)/2].Round(time.Millisecond), firsts[len(firsts)-1].Round(time.Millisecond))
}

// TestMarkedTokenWithMirrorStoppedFollowsOnError: with no mirror to answer,
// a marked token is a Redis failure: forwarded, or 503 with
// redis.on_error unavailable; never served, never 401.
func TestMarkedTokenWithMirrorStoppedFollowsOnError(t *testing.T) {
	e := newEnv(t)
	e.insert(t, "users", revocationUser(seededAt))
	e.insert(t, "rocketchat_sessions", sessionDoc(revocationSessionID, "u1", "s1", hashToken(tokCurrent), seededAt))
	stop := runMirror(t, e.config("rc:"), nil)
	e.waitHeartbeat(t, "rc:", time.Time{})
	stop()
	if v := e.get(t, "rc:{u1}:token:"+hashToken(tokCurrent)); !redisstore.Marked(v) {
		t.Fatalf("token key: %q, want it marked", v)
	}
	for _, onError := range []string{sessions.OnErrorForward, sessions.OnErrorUnavailable} {
		r := e.routeWith(t, "rc:", sessions.Options{OnError: onError, VerifyTimeout: 300 * time.Millisecond})
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/api/v1/sessions/info?sessionId=s1")
		ctx.Request.Header.Set("X-User-Id", "u1")
		ctx.Request.Header.Set("X-Auth-Token", tokCurrent)
		began := time.Now()
		answered := r.h.Serve(&ctx)
		took := time.Since(began)
		switch {
		case onError == sessions.OnErrorForward && answered:
			t.Errorf("on_error forward: answered %d, want the request forwarded", ctx.Response.StatusCode())
		case onError == sessions.OnErrorUnavailable && (!answered || ctx.Response.StatusCode() != fasthttp.StatusServiceUnavailable):
			t.Errorf("on_error unavailable: answered=%v status %d, want 503", answered, ctx.Response.StatusCode())
		}
		if took < 200*time.Millisecond || took > 2*time.Second {
			t.Errorf("%s: took %v, want about route.verify_timeout (300ms)", onError, took)
		}
		// The question left in the queue is nobody's: drop it, so the
		// next run's mirror does not answer a dead request.
		_ = e.redis.Del(context.Background(), "rc:mirror:verify").Err()
	}
}

// TestPollStartRewritesUnmarkedKeys: keys written without marks (by a
// change-stream run, or an older version) are not all re-checked, so a
// poll-mode start on such a checkpoint rewrites every token key marked.
func TestPollStartRewritesUnmarkedKeys(t *testing.T) {
	e := newEnv(t)
	e.insert(t, "users", revocationUser(seededAt))
	stop := runMirror(t, e.config("rc:"), nil)
	e.waitHeartbeat(t, "rc:", time.Time{})
	stop()
	ctx := context.Background()
	key := "rc:{u1}:token:" + hashToken(tokOther)
	// What a change-stream run leaves: unmarked keys, a checkpoint
	// without the flag.
	if err := e.redis.Set(ctx, key, `{}`, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.redis.HSet(ctx, "rc:mirror:checkpoint", "marked", "0").Err(); err != nil {
		t.Fatal(err)
	}
	runMirror(t, e.config("rc:"), nil)
	e.waitMarked(t, key)
	if v, _ := e.redis.HGet(ctx, "rc:mirror:checkpoint", "marked").Result(); v != "1" {
		t.Errorf("checkpoint's marked flag after the rewrite: got %q, want 1", v)
	}
}
