package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/redisstore"
)

// TestWriteUserTokensMarking: off, keys are written unmarked; on, a new key
// is marked, an existing key keeps its state (warm stays warm), and MarkAll
// marks every key.
func TestWriteUserTokensMarking(t *testing.T) {
	rdb := startStoreTestServer(t).client(t)
	ctx := context.Background()
	w := redisstore.NewWriter(rdb, "rc:", 10)
	keys := redisstore.Keys{Prefix: "rc:"}
	ha, hb, hp := auth.HashToken("a"), auth.HashToken("b"), auth.HashToken("pat")
	user := func(markAll bool, hashes ...string) redisstore.UserTokens {
		u := redisstore.UserTokens{UserID: "u1", Version: 1, MarkAll: markAll}
		for _, h := range hashes {
			v := `{"when":{"$date":1}}`
			if h == hp {
				v = `{}`
			}
			u.Tokens = append(u.Tokens, redisstore.Token{Hash: h, Value: []byte(v), TTL: time.Hour})
		}
		return u
	}
	write := func(u redisstore.UserTokens) {
		t.Helper()
		if _, err := w.WriteUserTokens(ctx, []redisstore.UserTokens{u}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(h string) string {
		t.Helper()
		v, err := rdb.Get(ctx, keys.TokenKey("u1", h)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	write(user(false, ha))
	if v := get(ha); v != `{"when":{"$date":1}}` {
		t.Fatalf("marking off: got %q, want the value as given", v)
	}
	w.SetMarking(true)
	write(user(false, ha, hb, hp))
	if v := get(ha); v != `{"when":{"$date":1}}` {
		t.Errorf("existing unmarked key, MarkNew: got %q, want it kept unmarked", v)
	}
	if v := get(hb); v != `{"verify":true,"when":{"$date":1}}` {
		t.Errorf("new key, MarkNew: got %q, want it marked", v)
	}
	if v := get(hp); v != `{"verify":true}` {
		t.Errorf("new key {}, MarkNew: got %q, want {\"verify\":true}", v)
	}
	write(user(false, ha, hb, hp))
	if v := get(hb); v != `{"verify":true,"when":{"$date":1}}` {
		t.Errorf("existing marked key, MarkNew: got %q, want it kept marked", v)
	}
	if ttl := rdb.PTTL(ctx, keys.TokenKey("u1", hb)).Val(); ttl <= 0 {
		t.Errorf("TTL: got %v, want the token's", ttl)
	}
	write(user(true, ha, hb))
	if v := get(ha); v != `{"verify":true,"when":{"$date":1}}` {
		t.Errorf("MarkAll: got %q, want it marked", v)
	}
	if n := rdb.Exists(ctx, keys.TokenKey("u1", hp)).Val(); n != 0 {
		t.Errorf("token left out of the set: still there")
	}
	w.SetMarking(false)
	write(user(false, ha))
	if v := get(ha); v != `{"when":{"$date":1}}` {
		t.Errorf("marking off again: got %q, want unmarked", v)
	}
}

// TestActiveTokensCoolsIdleEntries: an entry older than the window has its
// key marked again before it leaves the set; a fresh entry stays, its key
// untouched; a missing key stays missing.
func TestActiveTokensCoolsIdleEntries(t *testing.T) {
	rdb := startStoreTestServer(t).client(t)
	ctx := context.Background()
	w := redisstore.NewWriter(rdb, "rc:", 2) // batches of 2: several rounds
	keys := redisstore.Keys{Prefix: "rc:"}
	now := time.Now()
	type entry struct {
		user, token string
		seen        time.Time
		value       string // "" : no key
	}
	entries := []entry{
		{"old1", "t", now.Add(-time.Hour), `{"when":1}`},
		{"old2", "t", now.Add(-time.Minute), `{}`},
		{"old3", "t", now.Add(-2 * time.Minute), `{"verify":true}`},
		{"gone", "t", now.Add(-time.Hour), ""},
		{"fresh", "t", now, `{"when":2}`},
	}
	for _, e := range entries {
		h := auth.HashToken(e.token)
		rdb.ZAdd(ctx, "rc:mirror:active", redis.Z{Score: float64(e.seen.UnixMilli()), Member: "h" + h + e.user})
		if e.value != "" {
			rdb.Set(ctx, keys.TokenKey(e.user, h), e.value, time.Hour)
		}
	}
	act, err := w.ActiveTokens(ctx, now.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(act) != 1 || act[0].UserID != "fresh" {
		t.Fatalf("active tokens: got %+v, want only fresh", act)
	}
	want := map[string]string{"old1": `{"verify":true,"when":1}`, "old2": `{"verify":true}`, "old3": `{"verify":true}`, "fresh": `{"when":2}`}
	for user, v := range want {
		if got := rdb.Get(ctx, keys.TokenKey(user, auth.HashToken("t"))).Val(); got != v {
			t.Errorf("%s: got %q, want %q", user, got, v)
		}
		if ttl := rdb.PTTL(ctx, keys.TokenKey(user, auth.HashToken("t"))).Val(); ttl <= 0 {
			t.Errorf("%s: TTL %v, want kept", user, ttl)
		}
	}
	if n := rdb.Exists(ctx, keys.TokenKey("gone", auth.HashToken("t"))).Val(); n != 0 {
		t.Errorf("missing key created by cooling")
	}
	if n := rdb.ZCard(ctx, "rc:mirror:active").Val(); n != 1 {
		t.Errorf("active set: %d entries, want 1", n)
	}
}

// TestVerifyRoundTrip: the proxy's question reaches the mirror's side, the
// answer comes back to the one who asked, Warm unmarks the key and puts it
// in the active set, and no answer is ErrNoVerification by the deadline.
func TestVerifyRoundTrip(t *testing.T) {
	srv := startStoreTestServer(t)
	rdb := srv.client(t)
	ctx := context.Background()
	vrdb, err := redisstore.NewVerifyClient(&config.Redis{URL: "redis://" + srv.addr + "/0", Timeout: 50 * time.Millisecond, DialTimeout: time.Second}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vrdb.Close() })
	v := redisstore.NewVerifier(vrdb, "rc:")
	w := redisstore.NewWriter(rdb, "rc:", 10)
	keys := redisstore.Keys{Prefix: "rc:"}
	good, bad := auth.HashToken("good"), auth.HashToken("bad")
	rdb.Set(ctx, keys.TokenKey("u 1", good), `{"verify":true,"when":1}`, time.Hour)

	type answer struct {
		ok  bool
		err error
	}
	ask := func(user, hash string) chan answer {
		c := make(chan answer, 1)
		go func() {
			ok, err := v.Verify(deadlineOnly{time.Now().Add(time.Second)}, []byte(user), []byte(hash))
			c <- answer{ok, err}
		}()
		return c
	}
	ca, cb := ask("u 1", good), ask("u2", bad)
	var reqs []redisstore.VerifyRequest
	for len(reqs) < 2 {
		more, err := w.NextVerifications(ctx, time.Second, 10)
		if err != nil || len(more) == 0 {
			t.Fatalf("questions: got %v, %v; want 2 questions", more, err)
		}
		reqs = append(reqs, more...)
	}
	valid := make([]bool, len(reqs))
	var warm []redisstore.VerifyRequest
	for i, r := range reqs {
		valid[i] = r.Hash == good && r.UserID == "u 1"
		if valid[i] {
			warm = append(warm, r)
		}
	}
	if err := w.Warm(ctx, warm); err != nil {
		t.Fatal(err)
	}
	if err := w.AnswerVerifications(ctx, reqs, valid); err != nil {
		t.Fatal(err)
	}
	if a := <-ca; !a.ok || a.err != nil {
		t.Errorf("valid token: got %v, %v; want true", a.ok, a.err)
	}
	if a := <-cb; a.ok || a.err != nil {
		t.Errorf("invalid token: got %v, %v; want false", a.ok, a.err)
	}
	if got := rdb.Get(ctx, keys.TokenKey("u 1", good)).Val(); got != `{"when":1}` {
		t.Errorf("after Warm: got %q, want unmarked", got)
	}
	if _, err := rdb.ZScore(ctx, "rc:mirror:active", "h"+good+"u 1").Result(); err != nil {
		t.Errorf("after Warm: not in the active set: %v", err)
	}

	// Nobody answers.
	began := time.Now()
	a := <-ask("u 1", good)
	if took := time.Since(began); !errors.Is(a.err, redisstore.ErrNoVerification) || took > 1500*time.Millisecond {
		t.Errorf("no answer: got %v, %v after %v; want ErrNoVerification within the deadline", a.ok, a.err, took)
	}
}
