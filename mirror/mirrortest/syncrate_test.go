package mirrortest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestInitialSyncRate measures the initial sync of
// SESSIONGATE_MIRROR_BENCH_SESSIONS sessions and a tenth as many users (two
// login tokens each), and Redis memory per session. It is skipped unless the
// variable is set:
//
//	SESSIONGATE_MIRROR_BENCH_SESSIONS=100000 go test -run TestInitialSyncRate -v -timeout 10m
func TestInitialSyncRate(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SESSIONGATE_MIRROR_BENCH_SESSIONS"))
	if n <= 0 {
		t.Skip("set SESSIONGATE_MIRROR_BENCH_SESSIONS to run")
	}
	users := max(1, n/10)
	e := newEnv(t)
	ctx := context.Background()

	began := time.Now()
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Millisecond)
	const chunk = 5000
	insert := func(coll string, count int, doc func(i int) bson.D) {
		batch := make([]any, 0, chunk)
		for i := range count {
			batch = append(batch, doc(i))
			if len(batch) == chunk || i == count-1 {
				if _, err := e.db.Collection(coll).InsertMany(ctx, batch, options.InsertMany().SetOrdered(false)); err != nil {
					t.Fatalf("insert %s: %v", coll, err)
				}
				batch = batch[:0]
			}
		}
	}
	insert("users", users, func(i int) bson.D {
		id := fmt.Sprintf("user%07d", i)
		return userDoc(id, base, loginToken(id+"-a", base.Add(time.Duration(i)*time.Millisecond)), loginToken(id+"-b", base))
	})
	insert("rocketchat_sessions", n, func(i int) bson.D {
		return benchSession(fmt.Sprintf("user%07d", i%users), fmt.Sprintf("sess%09d", i), base.Add(time.Duration(i)*time.Microsecond))
	})
	t.Logf("inserted %d sessions and %d users into FerretDB in %v", n, users, time.Since(began).Round(time.Millisecond))

	before := usedMemory(t, e)
	core, logs := observer.New(zapcore.InfoLevel)
	began = time.Now()
	cfg := e.config("rc:")
	runMirror(t, cfg, zap.New(core))
	e.waitHeartbeatFor(t, "rc:", time.Time{}, 9*time.Minute)
	elapsed := time.Since(began)
	after := usedMemory(t, e)

	for _, entry := range logs.All() {
		t.Logf("%s %s %v", entry.Time.Format("15:04:05.000"), entry.Message, entry.ContextMap())
	}
	for _, entry := range logs.FilterMessage("sync collection done").AllUntimed() {
		f := entry.ContextMap()
		t.Logf("%-20v %8v docs in %v: %.0f docs/s", f["collection"], f["docs"], f["elapsed"], f["docs_per_second"])
	}
	t.Logf("initial sync: %d sessions + %d users in %v: %.0f docs/s",
		n, users, elapsed.Round(time.Millisecond), float64(n+users)/elapsed.Seconds())
	t.Logf("redis used_memory: %d -> %d bytes: %.0f bytes per session (token and index keys included)",
		before, after, float64(after-before)/float64(n))
	for _, k := range []string{"rc:{user0000000}:session:sess000000000", "rc:{user0000000}:token:" + hashToken("user0000000-a"), "rc:{user0000000}:mirror"} {
		t.Logf("MEMORY USAGE %s: %d bytes", k, e.redis.MemoryUsage(ctx, k).Val())
	}
	if got := e.redis.DBSize(ctx).Val(); got < int64(n+3*users) {
		t.Errorf("keys: got %d, want at least %d", got, n+3*users)
	}
}

func benchSession(userID, sessionID string, at time.Time) bson.D {
	return bson.D{
		{Key: "_id", Value: bson.NewObjectIDFromTimestamp(at)},
		{Key: "type", Value: "session"},
		{Key: "sessionId", Value: sessionID},
		{Key: "instanceId", Value: "f0313fa9-ebe6-4a84-8580-3104f6a09988"},
		{Key: "loginToken", Value: "orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU="},
		{Key: "ip", Value: "172.20.0.2"},
		{Key: "host", Value: "localhost:3000"},
		{Key: "device", Value: bson.D{
			{Key: "type", Value: "browser"}, {Key: "name", Value: "Chrome"}, {Key: "longVersion", Value: "113.0.0.0"},
			{Key: "os", Value: bson.D{{Key: "name", Value: "Windows"}, {Key: "version", Value: "10"}}},
			{Key: "version", Value: "113.0.0"},
		}},
		{Key: "userId", Value: userID},
		{Key: "roles", Value: bson.A{"user", "admin", "livechat-agent", "livechat-manager"}},
		{Key: "mostImportantRole", Value: "admin"},
		{Key: "loginAt", Value: bson.NewDateTimeFromTime(at)},
		{Key: "day", Value: int32(at.Day())},
		{Key: "month", Value: int32(at.Month())},
		{Key: "year", Value: int32(at.Year())},
		{Key: "searchTerm", Value: "ChromebrowserWindows" + sessionID + userID},
		{Key: "createdAt", Value: bson.NewDateTimeFromTime(at)},
		{Key: "_updatedAt", Value: bson.NewDateTimeFromTime(at)},
		{Key: "closedAt", Value: bson.NewDateTimeFromTime(at)},
		{Key: "lastActivityAt", Value: bson.NewDateTimeFromTime(at)},
	}
}

var usedMemoryLine = regexp.MustCompile(`(?m)^used_memory:(\d+)`)

func usedMemory(t testing.TB, e *env) int64 {
	t.Helper()
	info, err := e.redis.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := usedMemoryLine.FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("no used_memory in INFO memory")
	}
	v, _ := strconv.ParseInt(m[1], 10, 64)
	return v
}
