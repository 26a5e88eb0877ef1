package mirror

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sessiongate/sessiongate/redisstore"
)

// No MongoDB server can run here and FerretDB has no change streams, so
// these tests feed applyEvents change events in MongoDB's documented format
// (https://www.mongodb.com/docs/manual/reference/change-events/) and check
// what a real redis-server holds afterwards. fakeSource stands for the
// re-reads the driver glue does.

// startRedis runs a redis-server of its own on a free loopback port.
func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	t.Cleanup(func() { _ = rdb.Close() })
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
	}
	return rdb
}

// fakeSource is MongoDB's current state as the re-reads see it.
type fakeSource struct {
	docs     map[string]bson.D // users by _id
	sessions []bson.D
	exp      time.Duration
}

func (f *fakeSource) users_(ids []string) map[string]redisstore.UserTokens {
	out := map[string]redisstore.UserTokens{}
	for _, id := range ids {
		d, ok := f.docs[id]
		if !ok {
			continue
		}
		b, _ := bson.Marshal(d)
		if u, ok := userTokens(bson.Raw(b), f.exp, time.Now()); ok {
			out[u.UserID] = u
		}
	}
	return out
}

func (f *fakeSource) users(_ context.Context, ids []string) (map[string]redisstore.UserTokens, error) {
	return f.users_(ids), nil
}

func (f *fakeSource) sessionPairs(_ context.Context, ids []bson.RawValue) ([]sessionPair, error) {
	var out []sessionPair
	for _, d := range f.sessions {
		b, _ := bson.Marshal(d)
		raw := bson.Raw(b)
		for _, id := range ids {
			if raw.Lookup("_id").Equal(id) {
				if p, ok := pairOf(raw); ok {
					out = append(out, p)
				}
			}
		}
	}
	return out, nil
}

func (f *fakeSource) winners(_ context.Context, pairs []sessionPair) (map[sessionPair][]byte, error) {
	want := map[sessionPair]bool{}
	for _, p := range pairs {
		want[p] = true
	}
	best := map[sessionPair]bson.Raw{}
	for _, d := range f.sessions {
		b, _ := bson.Marshal(d)
		raw := bson.Raw(b)
		p, ok := pairOf(raw)
		if lt, _ := raw.Lookup("loginToken").StringValueOK(); !ok || !want[p] || lt == "" {
			continue
		}
		if b, ok := best[p]; ok && compareIDs(raw.Lookup("_id"), b.Lookup("_id")) >= 0 {
			continue
		}
		best[p] = raw
	}
	out := map[sessionPair][]byte{}
	for p, raw := range best {
		v, err := renderSession(raw)
		if err != nil {
			return nil, err
		}
		out[p] = v
	}
	return out, nil
}

func tokenEntry(hash string, when time.Time) bson.D {
	return bson.D{{Key: "when", Value: bson.NewDateTimeFromTime(when)}, {Key: "hashedToken", Value: hash}}
}

// hash returns a valid-looking 44-character hashed token.
func hash(name string) string {
	h := name + "0000000000000000000000000000000000000000000000000"
	return h[:43] + "="
}

func user(id string, updated time.Time, hashes ...string) bson.D {
	arr := bson.A{}
	for _, h := range hashes {
		arr = append(arr, tokenEntry(h, updated.Add(-time.Hour)))
	}
	return bson.D{
		{Key: "_id", Value: id},
		{Key: "services", Value: bson.D{{Key: "resume", Value: bson.D{{Key: "loginTokens", Value: arr}}}}},
		{Key: "_updatedAt", Value: bson.NewDateTimeFromTime(updated)},
	}
}

func session(id any, userID, sessionID, ip string) bson.D {
	return bson.D{
		{Key: "_id", Value: id}, {Key: "sessionId", Value: sessionID}, {Key: "userId", Value: userID},
		{Key: "loginToken", Value: "h"}, {Key: "ip", Value: ip},
	}
}

var resumeN int

// event builds a change event as MongoDB documents it: _id (the resume
// token), operationType, clusterTime, wallTime, ns, documentKey, plus the
// operation's own members.
func event(op, coll string, id any, extra ...bson.E) bson.Raw {
	resumeN++
	d := bson.D{
		{Key: "_id", Value: bson.D{{Key: "_data", Value: "8264" + strconv.Itoa(resumeN)}}},
		{Key: "operationType", Value: op},
		{Key: "clusterTime", Value: bson.Timestamp{T: uint32(time.Now().Unix()), I: uint32(resumeN)}},
		{Key: "wallTime", Value: bson.NewDateTimeFromTime(time.Now())},
	}
	if coll != "" {
		d = append(d, bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "rocketchat"}, {Key: "coll", Value: coll}}})
	}
	if id != nil {
		d = append(d, bson.E{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}})
	}
	d = append(d, extra...)
	raw, err := bson.Marshal(d)
	if err != nil {
		panic(err)
	}
	return raw
}

func updateDescription(updated bson.D, removed ...string) bson.E {
	rm := bson.A{}
	for _, r := range removed {
		rm = append(rm, r)
	}
	return bson.E{Key: "updateDescription", Value: bson.D{
		{Key: "updatedFields", Value: updated}, {Key: "removedFields", Value: rm}, {Key: "truncatedArrays", Value: bson.A{}},
	}}
}

func tokenKeysOf(t *testing.T, rdb *redis.Client, userID string) []string {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), "rc:{"+userID+"}:token:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		keys[i] = k[len("rc:{"+userID+"}:token:"):]
	}
	sort.Strings(keys)
	return keys
}

func sorted(s ...string) []string {
	sort.Strings(s)
	if s == nil {
		return []string{}
	}
	return s
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

func TestApplyEventsTokens(t *testing.T) {
	rdb := startRedis(t)
	w := redisstore.NewWriter(rdb, "rc:", 100)
	ctx := context.Background()
	now := time.Now()
	src := &fakeSource{docs: map[string]bson.D{}, exp: 90 * 24 * time.Hour}
	a, b, c := hash("a"), hash("b"), hash("c")

	steps := []struct {
		name   string
		mongo  func()              // MongoDB's state after the operation
		events []bson.Raw          // what the stream delivers
		want   map[string][]string // token hashes in Redis per user
	}{
		{
			name:   "insert",
			mongo:  func() { src.docs["u1"] = user("u1", now, a, b) },
			events: []bson.Raw{event("insert", "users", "u1", bson.E{Key: "fullDocument", Value: user("u1", now, a, b)})},
			want:   map[string][]string{"u1": sorted(a, b)},
		},
		{
			// Meteor's logout: $pull, _updatedAt untouched. The event's
			// updateDescription lists the new array.
			name:  "update without _updatedAt ($pull)",
			mongo: func() { src.docs["u1"] = user("u1", now, a) },
			events: []bson.Raw{event("update", "users", "u1", updateDescription(bson.D{
				{Key: "services.resume.loginTokens", Value: bson.A{tokenEntry(a, now)}},
			}))},
			want: map[string][]string{"u1": sorted(a)},
		},
		{
			// A clock behind the one that wrote before: the state read
			// after the event wins whatever _updatedAt says.
			name:  "update with an older _updatedAt ($addToSet)",
			mongo: func() { src.docs["u1"] = user("u1", now.Add(-time.Hour), a, c) },
			events: []bson.Raw{event("update", "users", "u1", updateDescription(bson.D{
				{Key: "services.resume.loginTokens.1", Value: tokenEntry(c, now)},
			}))},
			want: map[string][]string{"u1": sorted(a, c)},
		},
		{
			name:  "update removing the field ($unset)",
			mongo: func() { src.docs["u1"] = bson.D{{Key: "_id", Value: "u1"}} },
			events: []bson.Raw{event("update", "users", "u1",
				updateDescription(bson.D{}, "services.resume.loginTokens"))},
			want: map[string][]string{"u1": sorted()},
		},
		{
			name:   "replace",
			mongo:  func() { src.docs["u1"] = user("u1", now, b) },
			events: []bson.Raw{event("replace", "users", "u1", bson.E{Key: "fullDocument", Value: user("u1", now, b)})},
			want:   map[string][]string{"u1": sorted(b)},
		},
		{
			// Events are applied by re-reading: two updates then a delete
			// of another user, in one batch.
			name: "batch: two users, one deleted",
			mongo: func() {
				src.docs["u2"] = user("u2", now, c)
				src.docs["u1"] = user("u1", now, a, b)
			},
			events: []bson.Raw{
				event("insert", "users", "u2", bson.E{Key: "fullDocument", Value: user("u2", now, c)}),
				event("update", "users", "u1", updateDescription(bson.D{{Key: "services.resume.loginTokens", Value: bson.A{}}})),
				event("update", "users", "u1", updateDescription(bson.D{{Key: "services.resume.loginTokens", Value: bson.A{tokenEntry(a, now), tokenEntry(b, now)}}})),
			},
			want: map[string][]string{"u1": sorted(a, b), "u2": sorted(c)},
		},
		{
			name:   "delete",
			mongo:  func() { delete(src.docs, "u2") },
			events: []bson.Raw{event("delete", "users", "u2")},
			want:   map[string][]string{"u1": sorted(a, b), "u2": sorted()},
		},
		{
			// The event says insert, but by the time it is read the user is
			// gone again: the current state wins.
			name:   "insert of a user deleted since",
			mongo:  func() { delete(src.docs, "u1") },
			events: []bson.Raw{event("insert", "users", "u1", bson.E{Key: "fullDocument", Value: user("u1", now, a, b)})},
			want:   map[string][]string{"u1": sorted()},
		},
	}
	for _, s := range steps {
		s.mongo()
		if _, err := applyEvents(ctx, src, w, s.events); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for uid, want := range s.want {
			if got := tokenKeysOf(t, rdb, uid); !equal(got, want) {
				t.Errorf("%s: %s's token keys: got %v, want %v", s.name, uid, got, want)
			}
		}
	}
	if n, _ := rdb.Exists(ctx, "rc:{u1}:mirror", "rc:{u2}:mirror").Result(); n != 0 {
		t.Errorf("deleted users' index keys: got %d, want 0", n)
	}
}

func TestApplyEventsSessions(t *testing.T) {
	rdb := startRedis(t)
	w := redisstore.NewWriter(rdb, "rc:", 100)
	ctx := context.Background()
	small, large := bson.NewObjectIDFromTimestamp(time.Now().Add(-time.Hour)), bson.NewObjectID()
	src := &fakeSource{docs: map[string]bson.D{}}
	get := func() string {
		v, _ := rdb.Get(ctx, "rc:{u1}:session:s1").Result()
		return v
	}

	src.sessions = []bson.D{session(large, "u1", "s1", "large")}
	mustApply(t, src, w, event("insert", "rocketchat_sessions", large, bson.E{Key: "fullDocument", Value: session(large, "u1", "s1", "large")}))
	if !bytes.Contains([]byte(get()), []byte(`"ip":"large"`)) {
		t.Fatalf("after insert: got %s, want the document", get())
	}

	// A duplicate with a smaller _id wins.
	src.sessions = append(src.sessions, session(small, "u1", "s1", "small"))
	mustApply(t, src, w, event("insert", "rocketchat_sessions", small, bson.E{Key: "fullDocument", Value: session(small, "u1", "s1", "small")}))
	if !bytes.Contains([]byte(get()), []byte(`"ip":"small"`)) {
		t.Fatalf("after smaller insert: got %s, want the smaller _id's", get())
	}

	// An update event carries no document: the pair is read by _id.
	src.sessions[1] = append(session(small, "u1", "s1", "small"), bson.E{Key: "logoutAt", Value: bson.NewDateTimeFromTime(time.Now())})
	mustApply(t, src, w, event("update", "rocketchat_sessions", small, updateDescription(bson.D{{Key: "logoutAt", Value: bson.NewDateTimeFromTime(time.Now())}})))
	if !bytes.Contains([]byte(get()), []byte(`"logoutAt"`)) {
		t.Fatalf("after update: got %s, want logoutAt", get())
	}

	// A delete with a pre-image: the next duplicate wins.
	src.sessions = src.sessions[:1]
	mustApply(t, src, w, event("delete", "rocketchat_sessions", small, bson.E{Key: "fullDocumentBeforeChange", Value: session(small, "u1", "s1", "small")}))
	if !bytes.Contains([]byte(get()), []byte(`"ip":"large"`)) {
		t.Fatalf("after delete: got %s, want the remaining document", get())
	}

	// loginToken emptied: nothing to serve, the key goes.
	src.sessions[0][3].Value = ""
	mustApply(t, src, w, event("update", "rocketchat_sessions", large, updateDescription(bson.D{{Key: "loginToken", Value: ""}})))
	if v := get(); v != "" {
		t.Fatalf("after loginToken emptied: got %s, want no key", v)
	}

	// A delete without a pre-image is counted, left to reconciliation.
	st, err := applyEvents(ctx, src, w, []bson.Raw{event("delete", "rocketchat_sessions", large)})
	if err != nil || st.sessionDeletesUnknown != 1 {
		t.Fatalf("delete without pre-image: got %+v, %v; want 1 unknown delete", st, err)
	}
}

func mustApply(t *testing.T, src source, w *redisstore.Writer, events ...bson.Raw) {
	t.Helper()
	if _, err := applyEvents(context.Background(), src, w, events); err != nil {
		t.Fatal(err)
	}
}

func TestApplyEventsInvalidate(t *testing.T) {
	rdb := startRedis(t)
	w := redisstore.NewWriter(rdb, "rc:", 100)
	src := &fakeSource{docs: map[string]bson.D{}}
	tests := []struct {
		name string
		ev   bson.Raw
		want error
	}{
		{"invalidate", event("invalidate", "", nil), errResync},
		{"dropDatabase", event("dropDatabase", "", nil, bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "rocketchat"}}}), errResync},
		{"drop users", event("drop", "users", nil), errResync},
		{"rename sessions", event("rename", "rocketchat_sessions", nil), errResync},
		{"drop of another collection", event("drop", "rocketchat_message", nil), nil},
		{"unknown operation", event("createIndexes", "users", nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := applyEvents(context.Background(), src, w, []bson.Raw{tt.ev})
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHistoryLost(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"ChangeStreamHistoryLost", mongo.CommandError{Code: 286, Name: "ChangeStreamHistoryLost", Message: "Resume of change stream was not possible, as the resume point may no longer be in the oplog."}, true},
		{"CappedPositionLost", mongo.CommandError{Code: 136, Name: "CappedPositionLost"}, true},
		{"ChangeStreamFatalError", mongo.CommandError{Code: 280, Name: "ChangeStreamFatalError"}, true},
		{"InvalidResumeToken", mongo.CommandError{Code: 260, Name: "InvalidResumeToken"}, true},
		{"not a replica set", mongo.CommandError{Code: 40573, Name: "Location40573", Message: "The $changeStream stage is only supported on replica sets"}, false},
		{"network", errors.New("connection refused"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := historyLost(tt.err); got != tt.want {
				t.Errorf("historyLost: got %v, want %v", got, tt.want)
			}
		})
	}
}
