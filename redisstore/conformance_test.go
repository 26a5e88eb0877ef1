package redisstore_test

// The Store conformance suite: one set of behaviours, run against both
// implementations behind redisstore.Store (the direct RESP2 connections
// New uses on standalone and Sentinel, and go-redis, used on Cluster), on a
// real redis-server: two implementations of one interface stay alike only
// if the same tests hold both to it.

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/redisstore"
	"github.com/sessiongate/sessiongate/sessions"
)

// storeImpls are the implementations under test; each builds a Store on a
// client made by redisstore.NewClient.
var storeImpls = []struct {
	name   string
	direct bool
	build  func(redis.UniversalClient, string) *redisstore.Store
}{
	{"direct", true, redisstore.New},
	{"goredis", false, redisstore.NewViaGoRedis},
}

// deadlineOnly is a context with a deadline and a nil Done, like the one
// sessions.Handler passes: a Store must be bounded by the deadline alone.
type deadlineOnly struct{ d time.Time }

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.d, true }
func (deadlineOnly) Done() <-chan struct{}         { return nil }
func (deadlineOnly) Err() error                    { return nil }
func (deadlineOnly) Value(any) any                 { return nil }

func TestStoreConformance(t *testing.T) {
	for _, impl := range storeImpls {
		t.Run("impl="+impl.name, func(t *testing.T) {
			newStore := func(t *testing.T, rdb redis.UniversalClient) *redisstore.Store {
				t.Helper()
				s := impl.build(rdb, storeTestPrefix)
				if s.UsesDirect() != impl.direct {
					t.Fatalf("UsesDirect: got %v, want %v", s.UsesDirect(), impl.direct)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			t.Run("answers", func(t *testing.T) { conformAnswers(t, newStore) })
			t.Run("odd values", func(t *testing.T) { conformOddValues(t, newStore) })
			t.Run("marked tokens", func(t *testing.T) { conformMarked(t, newStore) })
			t.Run("concurrent", func(t *testing.T) { conformConcurrent(t, newStore) })
			t.Run("acl user and db", func(t *testing.T) { conformACL(t, newStore) })
			t.Run("outage and recovery", func(t *testing.T) { conformOutage(t, newStore) })
		})
	}
}

type storeMaker func(*testing.T, redis.UniversalClient) *redisstore.Store

// conformLookup runs Session and Authenticate for one case and checks both.
func conformLookup(t *testing.T, ctx context.Context, s *redisstore.Store, user, token, session, wantDoc string, wantErr error) {
	t.Helper()
	hash := []byte(auth.HashToken(token))
	doc, err := s.Session(ctx, []byte(user), hash, []byte(session))
	if doc != wantDoc || !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
		t.Errorf("Session(%q, %q, %q): got %.40q, %v; want %.40q, %v", user, token, session, doc, err, wantDoc, wantErr)
	}
	wantAuth := wantErr
	switch wantAuth {
	case sessions.ErrNotFound:
		wantAuth = nil
	case sessions.ErrUnverifiedNotFound:
		wantAuth = sessions.ErrUnverified
	}
	if err := s.Authenticate(ctx, []byte(user), hash); !errors.Is(err, wantAuth) || (wantAuth == nil) != (err == nil) {
		t.Errorf("Authenticate(%q, %q): got %v, want %v", user, token, err, wantAuth)
	}
}

func conformAnswers(t *testing.T, newStore storeMaker) {
	srv := startStoreTestServer(t)
	rdb := srv.client(t)
	storeSeed(t, rdb, "alice", "alice-token", map[string]string{"s1": `{"sessionId":"s1"}`, "a b:*?": `{"sessionId":"odd"}`})
	storeSeed(t, rdb, "bob", "bob-token", map[string]string{"s2": `{"sessionId":"s2"}`})
	storeSeed(t, rdb, "x:y", "t", map[string]string{"s": `{"user":"x:y"}`})
	s := newStore(t, rdb)
	tests := []struct {
		name                 string
		user, token, session string
		doc                  string
		err                  error
	}{
		{"own session", "alice", "alice-token", "s1", `{"sessionId":"s1"}`, nil},
		{"odd session id", "alice", "alice-token", "a b:*?", `{"sessionId":"odd"}`, nil},
		{"colon in user id", "x:y", "t", "s", `{"user":"x:y"}`, nil},
		{"unknown session", "alice", "alice-token", "nope", "", sessions.ErrNotFound},
		{"glob in session id", "alice", "alice-token", "s*", "", sessions.ErrNotFound},
		{"another user's session", "alice", "alice-token", "s2", "", sessions.ErrNotFound},
		{"wrong token", "alice", "bob-token", "s1", "", auth.ErrInvalidToken},
		{"unknown user", "carol", "alice-token", "s1", "", auth.ErrInvalidToken},
		{"empty session id", "alice", "alice-token", "", "", sessions.ErrNotFound},
	}
	// Twice: the second round runs on reused connections.
	for round := range 2 {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/round=%d", tt.name, round), func(t *testing.T) {
				ctx := deadlineOnly{time.Now().Add(5 * time.Second)}
				conformLookup(t, ctx, s, tt.user, tt.token, tt.session, tt.doc, tt.err)
			})
		}
	}
}

// conformOddValues: values the contract allows or forbids, each read in
// full so the connection stays usable for the next lookup.
func conformOddValues(t *testing.T, newStore storeMaker) {
	srv := startStoreTestServer(t)
	rdb := srv.client(t)
	ctx := context.Background()
	keys := redisstore.Keys{Prefix: storeTestPrefix}
	big := `{"pad":"` + strings.Repeat("x", 200_000) + `"}`
	set := func(key, val string) {
		t.Helper()
		if err := rdb.Set(ctx, key, val, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	set(keys.TokenKey("u", auth.HashToken("t")), strings.Repeat("m", 100_000)) // large token metadata
	set(keys.SessionKey("u", "big"), big)
	set(keys.SessionKey("u", "empty"), "")
	set(keys.SessionKey("u", "crlf"), "{\r\n}\r\n$-1\r\n")
	rdb.HSet(ctx, keys.SessionKey("u", "hash"), "f", "v")
	rdb.RPush(ctx, keys.TokenKey("listuser", auth.HashToken("t")), "v")
	rdb.HSet(ctx, keys.TokenKey("hashuser", auth.HashToken("t")), "f", "v")
	set(keys.SessionKey("listuser", "big"), big)
	set(keys.SessionKey("hashuser", "big"), big)
	s := newStore(t, rdb)
	tests := []struct {
		name                 string
		user, token, session string
		doc                  string
		err                  error
	}{
		{"large document", "u", "t", "big", big, nil},
		{"empty document", "u", "t", "empty", "", nil},
		{"document with CRLF", "u", "t", "crlf", "{\r\n}\r\n$-1\r\n", nil},
		{"session key of another type", "u", "t", "hash", "", sessions.ErrNotFound},
		// The contract allows only strings at a token key: a key of
		// another type is no valid token, to Session and Authenticate
		// alike, even with a session document beside it.
		{"token key is a list", "listuser", "t", "big", "", auth.ErrInvalidToken},
		{"token key is a hash", "hashuser", "t", "big", "", auth.ErrInvalidToken},
		{"after the others", "u", "t", "empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conformLookup(t, deadlineOnly{time.Now().Add(5 * time.Second)}, s, tt.user, tt.token, tt.session, tt.doc, tt.err)
		})
	}
}

// conformMarked: a token key whose value starts with the verify marker is
// reported as such, with the session document; lookalikes are not.
func conformMarked(t *testing.T, newStore storeMaker) {
	srv := startStoreTestServer(t)
	rdb := srv.client(t)
	ctx := context.Background()
	keys := redisstore.Keys{Prefix: storeTestPrefix}
	values := map[string]string{
		"bare":      `{"verify":true}`,
		"with when": `{"verify":true,"when":"2023-05-23T16:33:45.202Z"}`,
		"pat":       `{"verify":true,"type":"personalAccessToken"}`,
		"false":     `{"verify":false}`,
		"longer":    `{"verify":trueish}`,
		"short":     `{"verify":true`,
		"later":     `{"when":"x","verify":true}`,
		"plain":     `{}`,
		"large pad": `{"verify":true,"pad":"` + strings.Repeat("x", 100_000) + `"}`,
		"empty":     ``,
		"not json":  `verify`,
	}
	for user, v := range values {
		if err := rdb.Set(ctx, keys.TokenKey(user, auth.HashToken("t")), v, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Set(ctx, keys.SessionKey(user, "s"), `{"u":1}`, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t, rdb)
	for round := range 2 {
		for user, v := range values {
			t.Run(fmt.Sprintf("%s/round=%d", user, round), func(t *testing.T) {
				d := deadlineOnly{time.Now().Add(5 * time.Second)}
				if redisstore.Marked(v) {
					conformLookup(t, d, s, user, "t", "s", `{"u":1}`, sessions.ErrUnverified)
					conformLookup(t, d, s, user, "t", "none", "", sessions.ErrUnverifiedNotFound)
				} else {
					conformLookup(t, d, s, user, "t", "s", `{"u":1}`, nil)
					conformLookup(t, d, s, user, "t", "none", "", sessions.ErrNotFound)
				}
			})
		}
	}
	for v, want := range map[string]bool{`{"verify":true}`: true, `{"verify":true,"a":1}`: true, `{"verify":true`: false,
		`{"verify":trueish}`: false, `{}`: false, ``: false} {
		if got := redisstore.Marked(v); got != want {
			t.Errorf("Marked(%q): got %v, want %v", v, got, want)
		}
	}
}

// conformConcurrent: more lookups at once than connections, each getting
// its own answer (run with -race).
func conformConcurrent(t *testing.T, newStore storeMaker) {
	srv := startStoreTestServer(t)
	rdb, err := redisstore.NewClient(&config.Redis{URL: "redis://" + srv.addr + "/0", Timeout: 5 * time.Second, DialTimeout: 5 * time.Second, PoolSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	const users = 24
	for i := range users {
		u := "user" + strconv.Itoa(i)
		storeSeed(t, rdb, u, "token-"+u, map[string]string{"s": `{"u":"` + u + `"}`})
	}
	s := newStore(t, rdb)
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			u := "user" + strconv.Itoa(i)
			for range 20 {
				ctx := deadlineOnly{time.Now().Add(5 * time.Second)}
				conformLookup(t, ctx, s, u, "token-"+u, "s", `{"u":"`+u+`"}`, nil)
				conformLookup(t, ctx, s, u, "token-"+u, "other", "", sessions.ErrNotFound)
				conformLookup(t, ctx, s, u, "wrong", "s", "", auth.ErrInvalidToken)
			}
		})
	}
	wg.Wait()
}

// conformACL: a user with a password, limited to the route's commands and
// keys, on database 2, as a hardened deployment configures it; and a wrong
// password is a failure, never "invalid token".
func conformACL(t *testing.T, newStore storeMaker) {
	srv := startStoreTestServer(t)
	if srv.cmd == nil {
		t.Skip("ACL needs a real redis-server")
	}
	admin := srv.client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "gate", "on", ">gate-pw", "~rc:*", "+mget", "+exists", "+ping", "+select").Err(); err != nil {
		t.Fatal(err)
	}
	db2, err := redisstore.NewClient(&config.Redis{URL: "redis://" + srv.addr + "/2", Timeout: time.Second, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	storeSeed(t, db2, "alice", "alice-token", map[string]string{"s1": `{"db":2}`})
	storeSeed(t, admin, "alice", "alice-token", map[string]string{"s1": `{"db":0}`})

	client := func(url string) redis.UniversalClient {
		c, err := redisstore.NewClient(&config.Redis{URL: url, Timeout: time.Second, DialTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	s := newStore(t, client("redis://gate:gate-pw@"+srv.addr+"/2"))
	dl := func() context.Context { return deadlineOnly{time.Now().Add(5 * time.Second)} }
	conformLookup(t, dl(), s, "alice", "alice-token", "s1", `{"db":2}`, nil)
	conformLookup(t, dl(), s, "alice", "alice-token", "s2", "", sessions.ErrNotFound)

	bad := newStore(t, client("redis://gate:wrong@"+srv.addr+"/2"))
	hash := []byte(auth.HashToken("alice-token"))
	_, err = bad.Session(dl(), []byte("alice"), hash, []byte("s1"))
	errAuth := bad.Authenticate(dl(), []byte("alice"), hash)
	for _, err := range []error{err, errAuth} {
		if err == nil || errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("wrong password: got %v, want a Redis failure", err)
		} else if strings.Contains(err.Error(), "wrong") {
			t.Errorf("wrong password: error shows the password: %v", err)
		}
	}
}

// conformOutage: a frozen or stopped Redis is a failure within the
// deadline (never an answer, never a key in the text), and the same Store
// answers again once Redis is back on its port.
func conformOutage(t *testing.T, newStore storeMaker) {
	srv := startStoreTestServer(t)
	if srv.cmd == nil {
		t.Skip("stopping and freezing need a real redis-server")
	}
	rdb := srv.client(t)
	storeSeed(t, rdb, "alice", "alice-token", map[string]string{"s1": `{}`})
	s := newStore(t, rdb)
	hash := []byte(auth.HashToken("alice-token"))
	conformLookup(t, deadlineOnly{time.Now().Add(5 * time.Second)}, s, "alice", "alice-token", "s1", `{}`, nil)

	fails := func(t *testing.T, what string) {
		t.Helper()
		start := time.Now()
		ctx := deadlineOnly{start.Add(200 * time.Millisecond)}
		_, err := s.Session(ctx, []byte("alice"), hash, []byte("s1"))
		errAuth := s.Authenticate(ctx, []byte("alice"), hash)
		for _, err := range []error{err, errAuth} {
			if err == nil || errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("%s: got %v, want a Redis failure", what, err)
			} else if strings.Contains(err.Error(), string(hash)) || strings.Contains(err.Error(), "alice") {
				t.Errorf("%s: error names a key: %v", what, err)
			}
		}
		// A deadline, not a wait: a generous bound for a loaded machine.
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("%s: took %v with a 200ms deadline", what, elapsed)
		}
	}
	freeze(t, srv.cmd.Process)
	fails(t, "frozen")
	thaw(srv.cmd.Process)
	conformEventually(t, "after thawing", s, hash)

	srv.restart(t) // data lost: the lookup's answer is "invalid token"
	conformEventually(t, "after a restart", s, hash)
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	fails(t, "stopped")
}

// conformEventually waits until a lookup gives an answer again (invalid
// token or the session), bounded.
func conformEventually(t *testing.T, what string, s *redisstore.Store, hash []byte) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx := deadlineOnly{time.Now().Add(time.Second)}
		if _, err = s.Session(ctx, []byte("alice"), hash, []byte("s1")); err == nil || errors.Is(err, auth.ErrInvalidToken) {
			return
		}
	}
	t.Fatalf("%s: no answer in 5s, last error %v", what, err)
}

// restart kills the redis-server and starts a new one on the same port,
// empty.
func (s *storeTestServer) restart(t *testing.T) {
	t.Helper()
	thaw(s.cmd.Process)
	s.cmd.Process.Kill()
	s.cmd.Wait()
	_, port, _ := strings.Cut(s.addr, ":")
	s.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not restart")
		}
	}
}
