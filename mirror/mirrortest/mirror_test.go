package mirrortest

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestGoldenSession(t *testing.T) {
	e := newEnv(t)
	want, err := os.ReadFile("testdata/seed_session.json")
	if err != nil {
		t.Fatal(err)
	}
	e.insert(t, "rocketchat_sessions", bsonFromREST(t, want))
	runMirror(t, e.config("rc:"), nil)
	e.waitHeartbeat(t, "rc:", time.Time{})

	got := e.get(t, "rc:{rbAXPnMktTFbNpwtJ}:session:QoYYFw2t9oKks2niG")
	if got != string(want) {
		t.Errorf("session value:\ngot  %s\nwant %s", got, want)
	}
}

func TestWhichSessionsAreServed(t *testing.T) {
	e := newEnv(t)
	now := time.Now().Add(-time.Minute)
	tests := []struct {
		name       string
		loginToken any // nil: member absent
		omit       bool
		want       bool
	}{
		{name: "loginToken set", loginToken: "h1", want: true},
		{name: "loginToken empty", loginToken: "", want: false},
		{name: "loginToken missing", omit: true, want: false},
		// {$exists: true, $ne: ''} matches null: Rocket.Chat serves it.
		{name: "loginToken null", loginToken: bson.Null{}, want: true},
	}
	for i, tt := range tests {
		d := sessionDoc(bson.NewObjectID(), "u1", "s"+strconv.Itoa(i), "", now)
		for j := range d {
			if d[j].Key == "loginToken" {
				d[j].Value = tt.loginToken
				if tt.omit {
					d = append(d[:j], d[j+1:]...)
				}
				break
			}
		}
		e.insert(t, "rocketchat_sessions", d)
	}
	runMirror(t, e.config("rc:"), nil)
	e.waitHeartbeat(t, "rc:", time.Time{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.exists(t, "rc:{u1}:session:s"+strconv.Itoa(i)); got != tt.want {
				t.Errorf("session key exists: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	day := 24 * time.Hour
	tests := []struct {
		name    string
		setting any // nil: no setting document
		want    time.Duration
	}{
		{name: "no setting: 90 days", want: 90 * day},
		{name: "int 30", setting: int32(30), want: 30 * day},
		{name: "int64 7", setting: int64(7), want: 7 * day},
		{name: "double 1.5", setting: 1.5, want: 36 * time.Hour},
		{name: "zero: default", setting: int32(0), want: 90 * day},
		{name: "negative: default", setting: int32(-3), want: 90 * day},
		{name: "string: default", setting: "30", want: 90 * day},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.config("exp" + strconv.Itoa(i) + ":")
			cfg.Mirror.Database = "rc" + strconv.Itoa(i)
			db := e.db.Client().Database(cfg.Mirror.Database)
			ctx := context.Background()
			if tt.setting != nil {
				_, err := db.Collection("rocketchat_settings").InsertOne(ctx,
					bson.D{{Key: "_id", Value: "Accounts_LoginExpiration"}, {Key: "value", Value: tt.setting}})
				if err != nil {
					t.Fatal(err)
				}
			}
			recent := now.Add(-time.Hour)
			expired := now.Add(-tt.want - time.Minute)
			user := userDoc("u1", now,
				loginToken("recent", recent),
				loginToken("expired", expired),
				patToken("personal-token-abcdef", now.Add(-365*day)),
				bson.D{{Key: "hashedToken", Value: hashToken("no-when")}},
				bson.D{{Key: "token", Value: "plain-legacy"}, {Key: "when", Value: bson.NewDateTimeFromTime(recent)}},
			)
			if _, err := db.Collection("users").InsertOne(ctx, user); err != nil {
				t.Fatal(err)
			}
			runMirror(t, cfg, nil)
			e.waitHeartbeat(t, cfg.Redis.KeyPrefix, time.Time{})
			key := func(token string) string { return cfg.Redis.KeyPrefix + "{u1}:token:" + hashToken(token) }

			gotTTL := e.redis.PTTL(ctx, key("recent")).Val()
			wantTTL := time.Until(recent.Add(tt.want))
			if d := gotTTL - wantTTL; d < -time.Minute || d > time.Minute {
				t.Errorf("recent token TTL: got %v, want %v", gotTTL, wantTTL)
			}
			if got := e.exists(t, key("expired")); got {
				t.Errorf("expired token key exists: got %v, want false", got)
			}
			for _, tok := range []string{"personal-token-abcdef", "no-when"} {
				if got := e.redis.PTTL(ctx, key(tok)).Val(); got != -1 {
					t.Errorf("%s TTL: got %v, want -1 (no expiry)", tok, got)
				}
			}
			// Poll mode (FerretDB has no change streams), and nobody has
			// used it yet: marked, to be verified at its first use.
			if got, want := e.get(t, key("personal-token-abcdef")), `{"verify":true,"type":"personalAccessToken"}`; got != want {
				t.Errorf("personal access token value: got %s, want %s", got, want)
			}
			keys, _ := e.redis.Keys(ctx, cfg.Redis.KeyPrefix+"{u1}:token:*").Result()
			if len(keys) != 3 {
				t.Errorf("token keys: got %d %v, want 3 (recent, personal, no-when)", len(keys), keys)
			}
			for _, k := range keys {
				if v := e.get(t, k); strings.Contains(v, "recent") || strings.Contains(v, "plain") {
					t.Errorf("token value %s holds a plain token", v)
				}
			}
		})
	}
}

func TestLoginExpirationChangeMovesExpiries(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	when := now.Add(-time.Hour)
	e.insert(t, "users", userDoc("u1", now, loginToken("t1", when)))
	runMirror(t, e.config("rc:"), nil)
	e.waitHeartbeat(t, "rc:", time.Time{})
	e.insert(t, "rocketchat_settings", bson.D{{Key: "_id", Value: "Accounts_LoginExpiration"}, {Key: "value", Value: int32(2)}})

	key := "rc:{u1}:token:" + hashToken("t1")
	want := time.Until(when.Add(48 * time.Hour))
	eventually(t, 5*time.Second, "TTL follows the new setting", func() bool {
		d := e.redis.PTTL(context.Background(), key).Val() - want
		return d > -time.Minute && d < time.Minute
	})
}

func TestRemovedTokenGoneWithin2s(t *testing.T) {
	tests := []struct {
		name string
		keep []string
	}{
		{name: "logout of one session", keep: []string{"t1", "pat-000000"}},
		{name: "password change keeps the current token", keep: []string{"t1"}},
		{name: "admin logout or deactivation", keep: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			now := time.Now().Add(-time.Minute)
			all := map[string]bson.D{
				"t1":         loginToken("t1", now),
				"t2":         loginToken("t2", now),
				"pat-000000": patToken("pat-000000", now),
			}
			e.insert(t, "users", userDoc("u1", now, all["t1"], all["t2"], all["pat-000000"]))
			cfg := e.config("rc:")
			if cfg.Mirror.PollInterval != time.Second {
				t.Fatalf("default poll interval: got %v, want 1s", cfg.Mirror.PollInterval)
			}
			runMirror(t, cfg, nil)
			e.waitHeartbeat(t, "rc:", time.Time{})
			for tok := range all {
				if !e.exists(t, "rc:{u1}:token:"+hashToken(tok)) {
					t.Fatalf("token %s not mirrored", tok)
				}
			}

			kept := bson.A{}
			for _, tok := range tt.keep {
				kept = append(kept, all[tok])
			}
			e.set(t, "users", "u1", bson.D{
				{Key: "services.resume.loginTokens", Value: kept},
				{Key: "_updatedAt", Value: bson.NewDateTimeFromTime(time.Now())},
			})
			took := eventually(t, 5*time.Second, "t2 removed", func() bool {
				return !e.exists(t, "rc:{u1}:token:"+hashToken("t2"))
			})
			if took > 2*time.Second {
				t.Errorf("removal took %v, want <= 2s", took)
			}
			for tok := range all {
				want := tok != "t2" && contains(tt.keep, tok)
				if got := e.exists(t, "rc:{u1}:token:"+hashToken(tok)); got != want {
					t.Errorf("token %s exists: got %v, want %v", tok, got, want)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestOverlapNeverSkipsEqualTimestamps(t *testing.T) {
	tests := []struct {
		name    string
		overlap time.Duration
		// late is the _updatedAt of a document committed after the mirror
		// read one stamped T, relative to T.
		late time.Duration
		want bool
	}{
		{name: "equal timestamp, no overlap", overlap: 0, late: 0, want: true},
		{name: "equal timestamp, default overlap", overlap: 5 * time.Second, late: 0, want: true},
		{name: "2s late, 3s overlap", overlap: 3 * time.Second, late: -2 * time.Second, want: true},
		// The control: without overlap a late stamp is (rightly) missed
		// by polling; reconciliation is off here.
		{name: "2s late, no overlap", overlap: 0, late: -2 * time.Second, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config("rc:")
			cfg.Mirror.Overlap = tt.overlap
			cfg.Mirror.PollInterval = 100 * time.Millisecond
			runMirror(t, cfg, nil)
			e.waitHeartbeat(t, "rc:", time.Time{})

			ts := time.Now().Truncate(time.Millisecond)
			e.insert(t, "rocketchat_sessions", sessionDoc(bson.NewObjectID(), "u1", "first", "h", ts))
			eventually(t, 5*time.Second, "checkpoint reaches T", func() bool {
				ms, _ := e.redis.HGet(context.Background(), "rc:mirror:checkpoint", "sessions").Int64()
				return ms == ts.UnixMilli()
			})
			e.insert(t, "rocketchat_sessions", sessionDoc(bson.NewObjectID(), "u1", "late", "h", ts.Add(tt.late)))
			if tt.want {
				eventually(t, 5*time.Second, "late document mirrored", func() bool {
					return e.exists(t, "rc:{u1}:session:late")
				})
				return
			}
			time.Sleep(10 * cfg.Mirror.PollInterval)
			if e.exists(t, "rc:{u1}:session:late") {
				t.Errorf("late document mirrored without overlap: got true, want false")
			}
		})
	}
}

func TestRestartResumesFromCheckpoint(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.insert(t, "rocketchat_sessions", sessionDoc(bson.NewObjectID(), "u1", "before", "h", now.Add(-time.Hour)))
	cfg := e.config("rc:")
	stop := runMirror(t, cfg, nil)
	e.waitHeartbeat(t, "rc:", time.Time{})
	if !e.exists(t, "rc:{u1}:session:before") {
		t.Fatalf("initial sync missed a session")
	}
	stop()

	// While stopped: one change a poll can see, and one stamped long before
	// the checkpoint that only a full resync would pick up.
	e.insert(t, "rocketchat_sessions",
		sessionDoc(bson.NewObjectID(), "u1", "while-down", "h", time.Now()),
		sessionDoc(bson.NewObjectID(), "u1", "backdated", "h", now.Add(-2*time.Hour)),
	)
	core, logs := observer.New(zapcore.InfoLevel)
	restarted := time.Now()
	runMirror(t, cfg, zap.New(core))
	e.waitHeartbeat(t, "rc:", restarted)
	eventually(t, 5*time.Second, "change made while down", func() bool {
		return e.exists(t, "rc:{u1}:session:while-down")
	})
	time.Sleep(2 * cfg.Mirror.PollInterval)
	if e.exists(t, "rc:{u1}:session:backdated") {
		t.Errorf("backdated session mirrored: got a full resync, want resume from checkpoint")
	}
	if got := logs.FilterMessage("resuming from checkpoint").Len(); got != 1 {
		t.Errorf(`"resuming from checkpoint" logs: got %d, want 1`, got)
	}
	if got := logs.FilterMessage("initial sync started").Len(); got != 0 {
		t.Errorf(`"initial sync started" logs after restart: got %d, want 0`, got)
	}
}

func TestReconciliationRemovesKeysOfGoneDocuments(t *testing.T) {
	e := newEnv(t)
	now := time.Now().Add(-time.Minute)
	idA, idB := bson.NewObjectID(), bson.NewObjectID() // idA < idB
	gone := bson.NewObjectID()
	e.insert(t, "users",
		userDoc("u1", now, loginToken("keep", now), loginToken("raw-removed", now)),
		userDoc("u2", now, loginToken("deleted-user", now)),
	)
	a := sessionDoc(idA, "u1", "dup", "h", now)
	b := sessionDoc(idB, "u1", "dup", "h", now)
	b[5].Value = "10.0.0.2" // ip
	e.insert(t, "rocketchat_sessions", a, b, sessionDoc(gone, "u1", "gone", "h", now))
	cfg := e.config("rc:")
	cfg.Mirror.ReconcileInterval = 300 * time.Millisecond
	runMirror(t, cfg, nil)
	e.waitHeartbeat(t, "rc:", time.Time{})
	if v := e.get(t, "rc:{u1}:session:dup"); !strings.Contains(v, idA.Hex()) {
		t.Fatalf("dup session: got %s, want the one with _id %s", v, idA.Hex())
	}

	// Deletions, and an update that bypasses _updatedAt (as Meteor's own
	// collection writes do): polling cannot see any of them.
	e.remove(t, "users", "u2")
	e.remove(t, "rocketchat_sessions", gone)
	e.remove(t, "rocketchat_sessions", idA)
	e.set(t, "users", "u1", bson.D{{Key: "services.resume.loginTokens", Value: bson.A{loginToken("keep", now)}}})

	tests := []struct {
		name string
		cond func() bool
	}{
		{"deleted user's token", func() bool { return !e.exists(t, "rc:{u2}:token:"+hashToken("deleted-user")) }},
		{"deleted user's index", func() bool { return !e.exists(t, "rc:{u2}:mirror") }},
		{"deleted session", func() bool { return !e.exists(t, "rc:{u1}:session:gone") }},
		{"token removed without _updatedAt", func() bool { return !e.exists(t, "rc:{u1}:token:"+hashToken("raw-removed")) }},
		{"next duplicate wins", func() bool { return strings.Contains(e.get(t, "rc:{u1}:session:dup"), idB.Hex()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eventually(t, 10*time.Second, tt.name, tt.cond)
		})
	}
	if !e.exists(t, "rc:{u1}:token:"+hashToken("keep")) {
		t.Errorf("valid token removed by reconciliation")
	}
}

func TestSmallestIDWins(t *testing.T) {
	now := time.Now().Add(-time.Minute)
	small := bson.NewObjectIDFromTimestamp(now.Add(-time.Hour))
	large := bson.NewObjectIDFromTimestamp(now)
	tests := []struct {
		name string
		// docs are inserted in order; each is (id, ip, loginToken or nil to omit it).
		docs   []bson.D
		afterS bool // insert the first doc only after the initial sync
		wantIP string
	}{
		{
			name:   "larger inserted first",
			docs:   []bson.D{withIP(large, "large", "h"), withIP(small, "small", "h")},
			wantIP: "small",
		},
		{
			name:   "smaller not servable",
			docs:   []bson.D{withIP(large, "large", "h"), withIP(small, "small", "")},
			wantIP: "large",
		},
		{
			name:   "string ids",
			docs:   []bson.D{withIP("b", "large", "h"), withIP("a", "small", "h")},
			wantIP: "small",
		},
		{
			name:   "smaller arrives while polling",
			docs:   []bson.D{withIP(large, "large", "h"), withIP(small, "small", "h")},
			afterS: true,
			wantIP: "small",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.insert(t, "rocketchat_sessions", tt.docs[0])
			if !tt.afterS {
				e.insert(t, "rocketchat_sessions", tt.docs[1:]...)
			}
			runMirror(t, e.config("rc:"), nil)
			e.waitHeartbeat(t, "rc:", time.Time{})
			if tt.afterS {
				d := tt.docs[1]
				d[len(d)-1].Value = bson.NewDateTimeFromTime(time.Now()) // _updatedAt
				e.insert(t, "rocketchat_sessions", d)
			}
			eventually(t, 5*time.Second, "winner "+tt.wantIP, func() bool {
				var got struct{ IP string }
				_ = json.Unmarshal([]byte(e.get(t, "rc:{u1}:session:s1")), &got)
				return got.IP == tt.wantIP
			})
		})
	}
}

func withIP(id any, ip, loginTokenHash string) bson.D {
	d := sessionDoc(bson.NilObjectID, "u1", "s1", loginTokenHash, time.Now().Add(-time.Minute))
	d[0].Value = id
	d[5].Value = ip
	return d
}
