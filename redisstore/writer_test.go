package redisstore_test

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/redisstore"
)

// newTestWriter returns a Writer on a miniredis of its own (Lua included),
// with a batch size of 2 so pipelines split.
func newTestWriter(t *testing.T, prefix string) (*redisstore.Writer, *miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return redisstore.NewWriter(c, prefix, 2), mr, c
}

func TestWriteSessions(t *testing.T) {
	w, mr, _ := newTestWriter(t, "rc:")
	ctx := context.Background()
	err := w.WriteSessions(ctx, []redisstore.SessionWrite{
		{UserID: "u1", SessionID: "s1", Value: []byte(`{"a":1}`)},
		{UserID: "u1", SessionID: "s2", Value: []byte(`{"b":2}`)},
		{UserID: "u2", SessionID: "s3", Value: []byte(`{}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSessions(ctx, []redisstore.SessionWrite{{UserID: "u1", SessionID: "s2"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, want string
	}{
		{"rc:{u1}:session:s1", `{"a":1}`},
		{"rc:{u1}:session:s2", ""},
		{"rc:{u2}:session:s3", `{}`},
	}
	for _, tt := range tests {
		got, _ := mr.Get(tt.key)
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.key, got, tt.want)
		}
		if ttl := mr.TTL(tt.key); ttl != 0 {
			t.Errorf("%s TTL: got %v, want none", tt.key, ttl)
		}
	}
}

func tokenKeys(t *testing.T, mr *miniredis.Miniredis, prefix string) []string {
	t.Helper()
	var keys []string
	for _, k := range mr.Keys() {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func TestWriteUserTokens(t *testing.T) {
	w, mr, _ := newTestWriter(t, "rc:")
	ctx := context.Background()
	write := func(u redisstore.UserTokens) int {
		t.Helper()
		n, err := w.WriteUserTokens(ctx, []redisstore.UserTokens{u})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tok := func(h string, ttl time.Duration) redisstore.Token {
		return redisstore.Token{Hash: h, Value: []byte(`{}`), TTL: ttl}
	}

	steps := []struct {
		name        string
		orphan      string // a token key outside the index, made first
		in          redisstore.UserTokens
		wantApplied int
		wantKeys    []string
	}{
		{"empty user writes nothing", "", redisstore.UserTokens{UserID: "u1", Version: 1},
			1, nil},
		{"first set", "", redisstore.UserTokens{UserID: "u1", Version: 10, Tokens: []redisstore.Token{tok("a", time.Hour), tok("b", 0)}},
			1, []string{"rc:{u1}:mirror", "rc:{u1}:token:a", "rc:{u1}:token:b"}},
		{"older version refused", "", redisstore.UserTokens{UserID: "u1", Version: 9},
			0, []string{"rc:{u1}:mirror", "rc:{u1}:token:a", "rc:{u1}:token:b"}},
		{"logout removes a", "", redisstore.UserTokens{UserID: "u1", Version: 11, Tokens: []redisstore.Token{tok("b", 0)}},
			1, []string{"rc:{u1}:mirror", "rc:{u1}:token:b"}},
		{"equal version applies, stale key outside the index goes", "rc:{u1}:token:orphan", redisstore.UserTokens{UserID: "u1", Version: 11,
			Tokens: []redisstore.Token{tok("b", 0), tok("c", time.Minute)}, Stale: []string{"orphan", "b"}},
			1, []string{"rc:{u1}:mirror", "rc:{u1}:token:b", "rc:{u1}:token:c"}},
		{"all tokens gone, index kept for its version", "", redisstore.UserTokens{UserID: "u1", Version: 12},
			1, []string{"rc:{u1}:mirror"}},
	}
	for _, s := range steps {
		if s.orphan != "" {
			mr.Set(s.orphan, "x")
		}
		if got := write(s.in); got != s.wantApplied {
			t.Errorf("%s: applied got %d, want %d", s.name, got, s.wantApplied)
		}
		if got := tokenKeys(t, mr, "rc:{u1}:"); !equal(got, s.wantKeys) {
			t.Errorf("%s: keys got %v, want %v", s.name, got, s.wantKeys)
		}
	}
}

func TestWriteUserTokensExpiry(t *testing.T) {
	w, mr, _ := newTestWriter(t, "rc:")
	_, err := w.WriteUserTokens(context.Background(), []redisstore.UserTokens{{UserID: "u1", Version: 1, Tokens: []redisstore.Token{
		{Hash: "a", Value: []byte(`{"when":"x"}`), TTL: 90 * time.Minute},
		{Hash: "b", Value: []byte(`{}`)},
		{Hash: "c", Value: []byte(`{}`), TTL: time.Microsecond},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want time.Duration
	}{
		{"rc:{u1}:token:a", 90 * time.Minute},
		{"rc:{u1}:token:b", 0},
		{"rc:{u1}:token:c", time.Millisecond}, // never "no expiry"
	}
	for _, tt := range tests {
		if got := mr.TTL(tt.key); got != tt.want {
			t.Errorf("%s TTL: got %v, want %v", tt.key, got, tt.want)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestScanKeys(t *testing.T) {
	w, mr, _ := newTestWriter(t, "r*c:")
	for _, k := range []string{
		"r*c:{u1}:token:h1", "r*c:{u1}:session:s1", "r*c:{u1}:mirror",
		"r*c:mirror:heartbeat", "r*c:{u2}:other", "rxc:{u3}:token:h", "other",
	} {
		mr.Set(k, "v")
	}
	var got []string
	err := w.ScanKeys(context.Background(), func(refs []redisstore.KeyRef) error {
		if len(refs) > 2 {
			t.Errorf("batch: got %d refs, want at most 2", len(refs))
		}
		for _, r := range refs {
			got = append(got, r.Key+"|"+r.UserID+"|"+r.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	want := []string{"r*c:{u1}:mirror|u1|", "r*c:{u1}:session:s1|u1|s1", "r*c:{u1}:token:h1|u1|h1"}
	if !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestReplaceIfEqual(t *testing.T) {
	w, mr, c := newTestWriter(t, "rc:")
	ctx := context.Background()
	mr.Set("rc:{u1}:session:same", "old")
	mr.Set("rc:{u1}:session:fresh", "newer")
	mr.Set("rc:{u1}:session:swap", "old")
	mr.HSet("rc:{u1}:mirror", "v", "5")
	mr.HSet("rc:{u2}:mirror", "v", "6")
	ref := func(kind redisstore.KeyKind, key string) redisstore.KeyRef {
		return redisstore.KeyRef{Kind: kind, Key: key}
	}
	n, err := w.ReplaceIfEqual(ctx, []redisstore.Swap{
		{Ref: ref(redisstore.KindSession, "rc:{u1}:session:same"), Old: []byte("old")},
		{Ref: ref(redisstore.KindSession, "rc:{u1}:session:fresh"), Old: []byte("old")},
		{Ref: ref(redisstore.KindSession, "rc:{u1}:session:swap"), Old: []byte("old"), New: []byte("new")},
		{Ref: ref(redisstore.KindSession, "rc:{u1}:session:missing")},
		{Ref: ref(redisstore.KindTokenIndex, "rc:{u1}:mirror"), Old: []byte("5")},
		{Ref: ref(redisstore.KindTokenIndex, "rc:{u2}:mirror"), Old: []byte("5")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("applied: got %d, want 3", n)
	}
	tests := []struct {
		key, want string
	}{
		{"rc:{u1}:session:same", ""},
		{"rc:{u1}:session:fresh", "newer"},
		{"rc:{u1}:session:swap", "new"},
	}
	for _, tt := range tests {
		if got, _ := mr.Get(tt.key); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.key, got, tt.want)
		}
	}
	if got := c.Exists(ctx, "rc:{u1}:mirror", "rc:{u2}:mirror").Val(); got != 1 {
		t.Errorf("indexes left: got %d, want 1 (u2, whose version moved)", got)
	}
}

func TestValues(t *testing.T) {
	w, mr, _ := newTestWriter(t, "rc:")
	mr.Set("rc:{u1}:session:a", "A")
	mr.HSet("rc:{u1}:mirror", "v", "7")
	got, err := w.Values(context.Background(), []redisstore.KeyRef{
		{Kind: redisstore.KindSession, Key: "rc:{u1}:session:a"},
		{Kind: redisstore.KindSession, Key: "rc:{u1}:session:missing"},
		{Kind: redisstore.KindTokenIndex, Key: "rc:{u1}:mirror"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0]) != "A" || got[1] != nil || string(got[2]) != "7" {
		t.Errorf("got %q, want [A <nil> 7]", got)
	}
}

func TestCheckpointAndHeartbeat(t *testing.T) {
	w, _, c := newTestWriter(t, "rc:")
	ctx := context.Background()
	if _, err := w.LoadCheckpoint(ctx); !errors.Is(err, redisstore.ErrNoCheckpoint) {
		t.Errorf("LoadCheckpoint on empty Redis: got %v, want ErrNoCheckpoint", err)
	}
	if _, err := redisstore.MirrorHeartbeat(ctx, c, "rc:"); !errors.Is(err, redisstore.ErrNoHeartbeat) {
		t.Errorf("MirrorHeartbeat on empty Redis: got %v, want ErrNoHeartbeat", err)
	}
	cp := redisstore.Checkpoint{
		Database:        "rocketchat",
		Users:           time.UnixMilli(1_700_000_000_123),
		Sessions:        time.UnixMilli(1_700_000_000_456),
		LoginExpiration: 90 * 24 * time.Hour,
	}
	if err := w.SaveCheckpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
	got, err := w.LoadCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Database != cp.Database || !got.Users.Equal(cp.Users) || !got.Sessions.Equal(cp.Sessions) || got.LoginExpiration != cp.LoginExpiration {
		t.Errorf("checkpoint: got %+v, want %+v", got, cp)
	}

	t1 := time.UnixMilli(1_700_000_001_000)
	for _, at := range []time.Time{t1, t1.Add(-time.Minute)} {
		if err := w.SetHeartbeat(ctx, at); err != nil {
			t.Fatal(err)
		}
	}
	hb, err := redisstore.MirrorHeartbeat(ctx, c, "rc:")
	if err != nil || !hb.Equal(t1) {
		t.Errorf("heartbeat: got %v %v, want %v (never backwards)", hb, err, t1)
	}
	if n := c.Exists(ctx, "rc:mirror:heartbeat", "rc:mirror:checkpoint").Val(); n != 2 {
		t.Errorf("mirror keys under the prefix, no hash tag: got %d, want 2", n)
	}
}

func TestMirrorHeartbeatRedisDown(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	mr.Close()
	_, err := redisstore.MirrorHeartbeat(context.Background(), c, "rc:")
	if err == nil || errors.Is(err, redisstore.ErrNoHeartbeat) {
		t.Errorf("Redis down: got %v, want an error that is not ErrNoHeartbeat", err)
	}
}
