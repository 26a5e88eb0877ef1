package mirrortest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestTwoMirrorsConcurrently runs two mirrors on the same MongoDB and Redis
// while documents change under them, then checks that what they converge to
// is exactly what a third mirror's fresh sync (under another prefix) writes.
func TestTwoMirrorsConcurrently(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewPCG(7, 7))
	base := time.Now().Add(-time.Hour)
	const nUsers, nSessions = 20, 60
	tokens := make(map[string][]bson.D)
	for u := range nUsers {
		id := fmt.Sprintf("u%02d", u)
		tokens[id] = []bson.D{loginToken(id+"-a", base), loginToken(id+"-b", base)}
		e.insert(t, "users", userDoc(id, base, tokens[id]...))
	}
	var sessionIDs []bson.ObjectID
	newSession := func(updated time.Time) {
		id := bson.NewObjectID()
		// Few pairs, so duplicates (same sessionId and userId) are common.
		d := sessionDoc(id, fmt.Sprintf("u%02d", rng.IntN(nUsers)), fmt.Sprintf("s%02d", rng.IntN(nSessions/3)), "h", updated)
		d[5].Value = id.Hex() // ip: tells the duplicates apart
		e.insert(t, "rocketchat_sessions", d)
		sessionIDs = append(sessionIDs, id)
	}
	for range nSessions {
		newSession(base)
	}

	for i := range 2 {
		cfg := e.config("rc:")
		cfg.Mirror.PollInterval = 150 * time.Millisecond
		cfg.Mirror.ReconcileInterval = time.Duration(500+300*i) * time.Millisecond
		runMirror(t, cfg, nil)
	}
	e.waitHeartbeat(t, "rc:", time.Time{})

	deadline := time.Now().Add(3 * time.Second)
	for ops := 0; time.Now().Before(deadline); ops++ {
		now := time.Now()
		user := fmt.Sprintf("u%02d", rng.IntN(nUsers))
		switch op := rng.IntN(7); op {
		case 0: // login
			tokens[user] = append(tokens[user], loginToken(fmt.Sprintf("%s-%d", user, ops), now))
			e.set(t, "users", user, bson.D{{Key: "services.resume.loginTokens", Value: tokens[user]}, {Key: "_updatedAt", Value: bson.NewDateTimeFromTime(now)}})
		case 1: // logout
			if n := len(tokens[user]); n > 0 {
				tokens[user] = append(tokens[user][:0:0], tokens[user][:n-1]...)
			}
			e.set(t, "users", user, bson.D{{Key: "services.resume.loginTokens", Value: tokens[user]}, {Key: "_updatedAt", Value: bson.NewDateTimeFromTime(now)}})
		case 2, 3:
			newSession(now)
		case 4: // session closed: still served, document changes
			id := sessionIDs[rng.IntN(len(sessionIDs))]
			e.set(t, "rocketchat_sessions", id, bson.D{{Key: "closedAt", Value: bson.NewDateTimeFromTime(now)}, {Key: "_updatedAt", Value: bson.NewDateTimeFromTime(now)}})
		case 5: // loginToken cleared: no longer served
			id := sessionIDs[rng.IntN(len(sessionIDs))]
			e.set(t, "rocketchat_sessions", id, bson.D{{Key: "loginToken", Value: ""}, {Key: "_updatedAt", Value: bson.NewDateTimeFromTime(now)}})
		case 6: // deletion, seen only by reconciliation
			if rng.IntN(4) == 0 {
				e.remove(t, "users", user)
				tokens[user] = nil
			} else {
				e.remove(t, "rocketchat_sessions", sessionIDs[rng.IntN(len(sessionIDs))])
			}
		}
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
	}

	ref := e.config("ref:")
	runMirror(t, ref, nil)
	e.waitHeartbeat(t, "ref:", time.Time{})
	want := e.snapshot(t, "ref:")
	for began := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		got := e.snapshot(t, "rc:")
		if equalMaps(got, want) {
			break
		}
		if time.Since(began) > 20*time.Second {
			t.Fatalf("two mirrors did not converge to a fresh sync in 20s:\n%s", diff(got, want))
		}
	}
	if len(want) < nUsers {
		t.Errorf("reference snapshot: got %d keys, want at least %d", len(want), nUsers)
	}
}

// snapshot returns the token and session keys under prefix (prefix
// stripped) with their values and whether they expire.
func (e *env) snapshot(t testing.TB, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := make(map[string]string)
	iter := e.redis.Scan(ctx, 0, prefix+"{*}:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.HasSuffix(k, "}:mirror") {
			continue
		}
		v := e.get(t, k)
		if strings.Contains(k, ":token:") {
			v += fmt.Sprintf(" expires=%v", e.redis.PTTL(ctx, k).Val() > 0)
		}
		out[strings.TrimPrefix(k, prefix)] = v
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// diff lists the keys whose values differ, got against want.
func diff(got, want map[string]string) string {
	keys := make(map[string]bool)
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var lines []string
	for k := range keys {
		if got[k] != want[k] {
			lines = append(lines, fmt.Sprintf("%s: got %q, want %q", k, got[k], want[k]))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
