package mirrortest

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/sessiongate/redisstore"
	"github.com/sessiongate/sessiongate/sessions"
)

// route is the proxy's sessions/info handler over the test's Redis, with
// the activity reporter the proxy runs.
type route struct {
	h *sessions.Handler
}

func (e *env) route(t testing.TB, prefix string) *route {
	t.Helper()
	// A verification takes milliseconds, but under the race detector on a
	// loaded machine the in-process FerretDB can take longer than the
	// default second; these tests are about answers, not that deadline.
	return e.routeWith(t, prefix, sessions.Options{VerifyTimeout: 5 * time.Second})
}

// routeWith is route with opts (Store, Activity and Verifier are set
// here, as the proxy sets them).
func (e *env) routeWith(t testing.TB, prefix string, opts sessions.Options) *route {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	store := redisstore.New(rdb, prefix)
	t.Cleanup(func() { _ = store.Close() })
	rep := redisstore.NewActivityReporter(rdb, prefix, 0, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rep.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cfg := e.config(prefix)
	vrdb, err := redisstore.NewVerifyClient(&cfg.Redis, max(opts.VerifyTimeout, cfg.Route.VerifyTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vrdb.Close() })
	opts.Store, opts.Activity, opts.Verifier = store, rep.Report, redisstore.NewVerifier(vrdb, prefix)
	h, err := sessions.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &route{h: h}
}

// status answers GET /api/v1/sessions/info?sessionId=<sessionID> for
// userID and the plain token.
func (r *route) status(t testing.TB, userID, token, sessionID string) int {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/api/v1/sessions/info?sessionId=" + sessionID)
	ctx.Request.Header.Set("X-User-Id", userID)
	ctx.Request.Header.Set("X-Auth-Token", token)
	if !r.h.Serve(&ctx) {
		t.Fatalf("route forwarded the request: want an answer")
	}
	return ctx.Response.StatusCode()
}

// waitStatus asks the route every 20ms until it answers want, and returns
// how long that took.
func (r *route) waitStatus(t testing.TB, want int, timeout time.Duration, userID, token, sessionID string) time.Duration {
	t.Helper()
	return eventually(t, timeout, "route answers "+statusName(want)+" for "+token, func() bool {
		return r.status(t, userID, token, sessionID) == want
	})
}

func statusName(code int) string {
	return fasthttp.StatusMessage(code)
}

// tokenWritePath is one code path of docs/mirror.md's "Every code path that
// changes login tokens": a write on users (and maybe more) exactly as that
// code path makes it.
type tokenWritePath struct {
	name string
	// revoked and kept are the plain tokens (of current, other, pat) the
	// path removes and leaves.
	revoked, kept []string
	// write makes the path's writes; now is the time it runs.
	write func(t *testing.T, e *env, now time.Time)
}

// The user of every row: u1 with a current login, another login on a
// second device, and a personal access token.
const (
	tokCurrent = "current-login-token"
	tokOther   = "other-device-token"
	tokPAT     = "personal-access-token-abcdef"
)

func revocationUser(seeded time.Time) bson.D {
	return userDoc("u1", seeded,
		loginToken(tokCurrent, seeded),
		loginToken(tokOther, seeded),
		patToken(tokPAT, seeded),
	)
}

// tokensExcept is the token array after removing some of the seeded ones,
// as the path's $pull would leave it. FerretDB v1.24.2 ignores $pull with
// a condition on array elements, so the tests $set the resulting array
// instead: the same document, and like $pull it leaves _updatedAt alone.
func tokensExcept(seeded time.Time, remove ...string) bson.A {
	all := []struct {
		tok string
		doc bson.D
	}{
		{tokCurrent, loginToken(tokCurrent, seeded)},
		{tokOther, loginToken(tokOther, seeded)},
		{tokPAT, patToken(tokPAT, seeded)},
	}
	out := bson.A{}
	for _, x := range all {
		if !contains(remove, x.tok) {
			out = append(out, x.doc)
		}
	}
	return out
}

func (e *env) update(t *testing.T, collection string, id any, update bson.D) {
	t.Helper()
	if _, err := e.db.Collection(collection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}}, update); err != nil {
		t.Fatalf("update %s %v: %v", collection, id, err)
	}
}

func setTokens(arr bson.A, extra ...bson.E) bson.D {
	set := bson.D{{Key: "services.resume.loginTokens", Value: arr}}
	return bson.D{{Key: "$set", Value: append(set, extra...)}}
}

func bump(now time.Time) bson.E {
	return bson.E{Key: "_updatedAt", Value: bson.NewDateTimeFromTime(now)}
}

var seededAt = time.Now().Add(-time.Hour)

var removalPaths = []tokenWritePath{
	{
		name:    "DDP logout (Accounts.destroyToken): $pull one token, no _updatedAt",
		revoked: []string{tokCurrent}, kept: []string{tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(tokensExcept(seededAt, tokCurrent)))
		},
	},
	{
		name:    "token expiry job (_expireTokens): multi $pull by when, no _updatedAt",
		revoked: []string{tokCurrent, tokOther}, kept: []string{tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			// The job ran with a shorter Accounts_LoginExpiration than the
			// mirror read, or on a clock ahead of it: the key has TTL left.
			_, err := e.db.Collection("users").UpdateMany(context.Background(), bson.D{},
				setTokens(tokensExcept(seededAt, tokCurrent, tokOther)))
			if err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name:    "resetPassword (_clearAllLoginTokens): $set [], no _updatedAt",
		revoked: []string{tokCurrent, tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(bson.A{}))
		},
	},
	{
		name:    "changePassword (Meteor): $pull all other tokens, no _updatedAt",
		revoked: []string{tokOther, tokPAT}, kept: []string{tokCurrent},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(tokensExcept(seededAt, tokOther, tokPAT)))
		},
	},
	{
		name:    "setPasswordAsync (admin sets password): $unset loginTokens, no _updatedAt",
		revoked: []string{tokCurrent, tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", bson.D{{Key: "$unset", Value: bson.D{{Key: "services.resume.loginTokens", Value: ""}}}})
		},
	},
	{
		name:    "REST POST /api/v1/logout: $pull one token and _updatedAt",
		revoked: []string{tokCurrent}, kept: []string{tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(tokensExcept(seededAt, tokCurrent), bump(now)))
		},
	},
	{
		name:    "users.logout, LDAP sync, users.resetTOTP (unsetLoginTokens): raw $set [], no _updatedAt",
		revoked: []string{tokCurrent, tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(bson.A{}))
		},
	},
	{
		name:    "E2E key reset: bump first, then raw $set []",
		revoked: []string{tokCurrent, tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", bson.D{{Key: "$set", Value: bson.D{{Key: "e2e", Value: bson.D{}}, bump(now)}}})
			time.Sleep(1500 * time.Millisecond) // a poll reads the bumped user in between
			e.update(t, "users", "u1", setTokens(bson.A{}))
		},
	},
	{
		name:    "deactivation (setUserActiveStatus): setUserActive bumps, then unsetLoginTokens does not",
		revoked: []string{tokCurrent, tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", bson.D{{Key: "$set", Value: bson.D{{Key: "active", Value: false}, bump(now)}}})
			time.Sleep(1500 * time.Millisecond)
			e.update(t, "users", "u1", setTokens(bson.A{}))
		},
	},
	{
		name:    "users.deactivateIdle: updateMany $set active false and [] with _updatedAt",
		revoked: []string{tokCurrent, tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			_, err := e.db.Collection("users").UpdateMany(context.Background(), bson.D{},
				setTokens(bson.A{}, bson.E{Key: "active", Value: false}, bump(now)))
			if err != nil {
				t.Fatal(err)
			}
		},
	},
	{
		name:    "2FA enable, users.logoutOtherClients (removeNonPATLoginTokensExcept): raw $pull, no _updatedAt",
		revoked: []string{tokOther}, kept: []string{tokCurrent, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(tokensExcept(seededAt, tokOther)))
		},
	},
	{
		name:    "own password change (saveUserProfile): raw $pull of others (PATs too), then a bump",
		revoked: []string{tokOther, tokPAT}, kept: []string{tokCurrent},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(tokensExcept(seededAt, tokOther, tokPAT)))
			e.update(t, "users", "u1", bson.D{{Key: "$set", Value: bson.D{bump(now)}}})
		},
	},
	{
		name:    "SAML logout: unsetLoginTokens, then a bumping write",
		revoked: []string{tokCurrent, tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(bson.A{}))
			e.update(t, "users", "u1", bson.D{{Key: "$set", Value: bson.D{{Key: "services.saml.inResponseTo", Value: "x"}, bump(now)}}})
		},
	},
	{
		name:    "personal access token removed: $pull {type,name} with _updatedAt",
		revoked: []string{tokPAT}, kept: []string{tokCurrent, tokOther},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(tokensExcept(seededAt, tokPAT), bump(now)))
		},
	},
	{
		name:    "token cap (ensureLoginTokensLimit): $pull by when with _updatedAt",
		revoked: []string{tokOther}, kept: []string{tokCurrent, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(tokensExcept(seededAt, tokOther), bump(now)))
		},
	},
	{
		name:    "EE device logout (sessions/logout): raw $pull on users, logoutAt on the session",
		revoked: []string{tokOther}, kept: []string{tokCurrent, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			e.update(t, "users", "u1", setTokens(tokensExcept(seededAt, tokOther)))
			e.update(t, "rocketchat_sessions", revocationSessionID, bson.D{{Key: "$set", Value: bson.D{
				{Key: "logoutAt", Value: bson.NewDateTimeFromTime(now)},
				{Key: "logoutBy", Value: "u1"},
				bump(now),
			}}})
		},
	},
	{
		name:    "user deleted: document removed, a copy in rocketchat__trash",
		revoked: []string{tokCurrent, tokOther, tokPAT},
		write: func(t *testing.T, e *env, now time.Time) {
			trash := append(revocationUser(seededAt),
				bson.E{Key: "__collection__", Value: "users"},
				bson.E{Key: "_deletedAt", Value: bson.NewDateTimeFromTime(now)})
			e.insert(t, "rocketchat__trash", trash)
			e.remove(t, "users", "u1")
		},
	},
}

var revocationSessionID = bson.NewObjectID()

// TestEveryRemovalPathAnswers401Within2s writes each removal path of the
// token-write table exactly as Rocket.Chat does, with the mirror at its
// default settings (poll mode: FerretDB has no change streams), and
// measures from the MongoDB write returning to the route answering 401.
// The tokens were in use before the write, as a logged-in client's are.
func TestEveryRemovalPathAnswers401Within2s(t *testing.T) {
	var all []time.Duration
	for _, p := range removalPaths {
		t.Run(p.name, func(t *testing.T) {
			e := newEnv(t)
			// Default settings; reconciliation (an hour here, 10 minutes by
			// default) never runs within the bound.
			e.seedAndMirror(t, 0)
			r := e.route(t, "rc:")
			for _, tok := range []string{tokCurrent, tokOther, tokPAT} {
				if got := r.status(t, "u1", tok, "s1"); got != fasthttp.StatusOK {
					t.Fatalf("%s before the write: got %d, want 200", tok, got)
				}
			}
			// The clients keep using their tokens: the reports reach Redis.
			eventually(t, 5*time.Second, "activity reported", func() bool {
				n, _ := e.redis.ZCard(context.Background(), "rc:mirror:active").Result()
				return n >= 3
			})
			// At least one re-check of the unchanged tokens, then a write at
			// a random phase of the mirror's one-second cycle.
			time.Sleep(1100*time.Millisecond + time.Duration(rand.Int64N(int64(time.Second))))

			p.write(t, e, time.Now())
			wrote := time.Now()
			for _, tok := range p.revoked {
				eventually(t, 10*time.Second, tok+" answers 401", func() bool {
					return r.status(t, "u1", tok, "s1") == fasthttp.StatusUnauthorized
				})
				took := time.Since(wrote)
				all = append(all, took)
				t.Logf("%s: 401 after %v", tok, took.Round(time.Millisecond))
				if took > 2*time.Second {
					t.Errorf("%s: 401 after %v, want <= 2s", tok, took)
				}
			}
			for _, tok := range p.kept {
				if got := r.status(t, "u1", tok, "s1"); got != fasthttp.StatusOK {
					t.Errorf("%s kept by the path: got %d, want 200", tok, got)
				}
			}
		})
	}
	logLatencies(t, "write → 401", all)
}

// TestNewLoginAnswers200Within2s adds a token the way _insertLoginToken
// does ($addToSet, _updatedAt untouched) and measures until the route
// answers 200 for it.
func TestNewLoginAnswers200Within2s(t *testing.T) {
	e := newEnv(t)
	e.seedAndMirror(t, 0)
	r := e.route(t, "rc:")

	const fresh = "fresh-login-token"
	e.update(t, "users", "u1", bson.D{{Key: "$addToSet", Value: bson.D{
		{Key: "services.resume.loginTokens", Value: loginToken(fresh, time.Now())},
	}}})
	took := r.waitStatus(t, fasthttp.StatusOK, 10*time.Second, "u1", fresh, "s1")
	t.Logf("new login: 200 after %v", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("new login: 200 after %v, want <= 2s", took)
	}
}

// TestSessionChangeShowsWithin2s sets logoutAt on a session the way the
// logout paths do (bumping _updatedAt) and waits for the route's answer to
// carry it.
func TestSessionChangeShowsWithin2s(t *testing.T) {
	e := newEnv(t)
	e.seedAndMirror(t, 0)
	now := time.Now()
	e.update(t, "rocketchat_sessions", revocationSessionID, bson.D{{Key: "$set", Value: bson.D{
		{Key: "logoutAt", Value: bson.NewDateTimeFromTime(now)}, {Key: "logoutBy", Value: "u1"}, bump(now),
	}}})
	wrote := time.Now()
	eventually(t, 10*time.Second, "logoutAt in the session", func() bool {
		return strings.Contains(e.get(t, "rc:{u1}:session:s1"), `"logoutAt"`)
	})
	took := time.Since(wrote)
	t.Logf("session change: shown after %v", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("session change shown after %v, want <= 2s", took)
	}
}

// TestDeletedUnusedUserKeysGoWithin2s deletes a user whose tokens nobody
// has used recently: the re-check has nothing to go on, rocketchat__trash
// does.
func TestDeletedUnusedUserKeysGoWithin2s(t *testing.T) {
	e := newEnv(t)
	e.insert(t, "users", revocationUser(seededAt))
	runMirror(t, e.config("rc:"), nil)
	e.waitHeartbeat(t, "rc:", time.Time{})
	key := "rc:{u1}:token:" + hashToken(tokOther)
	if !e.exists(t, key) {
		t.Fatalf("token not mirrored")
	}
	removalPaths[len(removalPaths)-1].write(t, e, time.Now())
	// Never used, so marked: the first use asks the mirror, which finds
	// the user gone.
	r := e.route(t, "rc:")
	if got := r.status(t, "u1", tokOther, "s1"); got != fasthttp.StatusUnauthorized {
		t.Errorf("first use after the user was deleted: got %d, want 401", got)
	}
	took := eventually(t, 10*time.Second, "deleted user's keys removed", func() bool {
		return !e.exists(t, key) && !e.exists(t, "rc:{u1}:mirror")
	})
	t.Logf("deleted user (tokens unused): keys gone after %v", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("deleted user's keys gone after %v, want <= 2s", took)
	}
}

// logLatencies logs the median, p95 and max of measured latencies.
func logLatencies(t *testing.T, what string, all []time.Duration) {
	if len(all) == 0 {
		return
	}
	all = slices.Clone(all)
	slices.Sort(all)
	t.Logf("%s over %d tokens: median %v, p95 %v, max %v", what, len(all),
		all[len(all)/2].Round(time.Millisecond), all[len(all)*95/100].Round(time.Millisecond), all[len(all)-1].Round(time.Millisecond))
}

// seedAndMirror inserts the revocation user and their session, runs the
// mirror on prefix "rc:" (with mirror.active_window set to window when it
// is positive, else the default) and waits for its first heartbeat.
func (e *env) seedAndMirror(t *testing.T, window time.Duration) {
	e.insert(t, "users", revocationUser(seededAt))
	e.insert(t, "rocketchat_sessions", sessionDoc(revocationSessionID, "u1", "s1", hashToken(tokCurrent), seededAt))
	cfg := e.config("rc:")
	if window > 0 {
		cfg.Mirror.ActiveWindow = window
	}
	runMirror(t, cfg, nil)
	e.waitHeartbeat(t, "rc:", time.Time{})
}
