//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The data set. Ids are derived from numbers so that wrk's Lua scripts can
// build the same ids without reading a file; lengths are Rocket.Chat's:
// Meteor ids are 17 characters, login tokens 43.
const (
	tokensPerUser   = 2
	sessionsPerUser = 3
	keyPrefix       = "rc:" // docs/data-contract.md default
	// missingSession is a session index no user has (the 404 requests).
	missingSession = 999999
)

// Id formats, shared with the Lua scripts (wrk.go): Lua's string.format
// reads them the same way.
const (
	userIDFormat    = "U%016d"      // 17 characters
	tokenFormat     = "T%010d%032d" // 43 characters
	sessionIDFormat = "S%010d%06d"  // 17 characters
)

func userID(u int) string        { return fmt.Sprintf(userIDFormat, u) }
func loginToken(u, k int) string { return fmt.Sprintf(tokenFormat, u, k) }
func sessionID(u, s int) string  { return fmt.Sprintf(sessionIDFormat, u, s) }

// badToken is a token user u does not have (the 401 requests).
func badToken(u, k int) string { return "X" + loginToken(u, k)[1:] }

// objectID is a 24-hex Mongo ObjectId for session s of user u.
func objectID(u, s int) string { return fmt.Sprintf("646ceae9%08x%08x", u, s) }

// tokenKey and sessionKey are docs/data-contract.md's keys, written out here rather than
// taken from redisstore so the harness does not share a bug with the code it
// measures.
func tokenKey(u, k int) string {
	return keyPrefix + "{" + userID(u) + "}:token:" + hashToken(loginToken(u, k))
}

func sessionKey(u, s int) string {
	return keyPrefix + "{" + userID(u) + "}:session:" + sessionID(u, s)
}

// hashToken is Meteor's Accounts._hashLoginToken (docs/route.md): standard base64
// of the SHA-256 of the token.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// sessionDoc is the stored session document for (u, s): the seed's example
// with its members in the seed's order (docs/data-contract.md), about 700 bytes of compact
// JSON. The route answers it with `,"success":true` before the final brace.
func sessionDoc(u, s int) string {
	return fmt.Sprintf(`{"_id":"%s","type":"session","sessionId":"%s","instanceId":"f0313fa9-ebe6-4a84-8580-3104f6a09988",`+
		`"loginToken":"%s","ip":"172.20.0.2","host":"localhost:3000","device":{"type":"browser","name":"Chrome",`+
		`"longVersion":"113.0.0.0","os":{"name":"Windows","version":"10"},"version":"113.0.0"},"userId":"%s",`+
		`"roles":["user","admin","livechat-agent","livechat-manager"],"mostImportantRole":"admin",`+
		`"loginAt":"2023-05-23T16:33:45.202Z","day":23,"month":5,"year":2023,`+
		`"searchTerm":"ChromebrowserWindows%s%s","createdAt":"2023-05-23T16:33:45.203Z",`+
		`"_updatedAt":"2023-05-23T17:56:31.599Z","closedAt":"2023-05-23T17:56:31.599Z",`+
		`"lastActivityAt":"2023-05-23T17:56:31.599Z"}`,
		objectID(u, s), sessionID(u, s), hashToken(loginToken(u, s%tokensPerUser)), userID(u), sessionID(u, s), userID(u))
}

// successBody is the route's 200 body for (u, s) (docs/route.md step 4).
func successBody(u, s int) string {
	d := sessionDoc(u, s)
	return d[:len(d)-1] + `,"success":true}`
}

// Bodies of the route's other answers (docs/route.md).
const (
	body401 = `{"status":"error","message":"You must be logged in to do this."}`
	body404 = `{"success":false,"error":"Session not found"}`
)

// redisBenchKey is the key redis-benchmark's GET reads when not given -r;
// it is filled with a session-sized value so the ceiling moves the same
// bytes as a route hit.
const redisBenchKey = "key:__rand_int__"

// seed writes users users with their tokens and sessions in pipelines of
// 1000 commands. Token keys expire in 90 days, as a writer would set them to
// the token's expiry (docs/data-contract.md).
func seed(ctx context.Context, rdb *redis.Client, users int) (keys int, err error) {
	pipe := rdb.Pipeline()
	flush := func() error {
		if pipe.Len() == 0 {
			return nil
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	for u := 0; u < users; u++ {
		for k := 0; k < tokensPerUser; k++ {
			pipe.Set(ctx, tokenKey(u, k), `{"when":"2023-05-23T16:33:45.202Z"}`, 90*24*time.Hour)
			keys++
		}
		for s := 0; s < sessionsPerUser; s++ {
			pipe.Set(ctx, sessionKey(u, s), sessionDoc(u, s), 0)
			keys++
		}
		if pipe.Len() >= 1000 {
			if err := flush(); err != nil {
				return keys, err
			}
		}
	}
	pipe.Set(ctx, redisBenchKey, sessionDoc(0, 0), 0)
	keys++
	return keys, flush()
}
