//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// login is one Rocket.Chat user with a login token and two sessions.
type login struct {
	userID   string
	token    string // plain, as the client sends it
	sessions [2]string
}

// dataset is the users the load generator plays. The stand-in upstream
// knows them too, so a request forwarded during a Redis fault gets the same
// answer the gate would have given (the server authenticates for itself).
type dataset struct {
	logins []login
	byUser map[string]*login
}

func newDataset(n int) *dataset {
	d := &dataset{byUser: make(map[string]*login, n)}
	for i := range n {
		d.logins = append(d.logins, login{
			userID:   fmt.Sprintf("faultsUser%04d", i),
			token:    fmt.Sprintf("faults-token-%04d-0123456789abcdefghijklmnopq", i),
			sessions: [2]string{fmt.Sprintf("faultsSess%04da", i), fmt.Sprintf("faultsSess%04db", i)},
		})
	}
	for i := range d.logins {
		d.byUser[d.logins[i].userID] = &d.logins[i]
	}
	return d
}

// hashToken is Meteor's Accounts._hashLoginToken: SHA-256, standard base64
// (docs/route.md).
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// doc is the stored session document (docs/data-contract.md), shaped like Rocket.Chat's.
func (l *login) doc(sessionID string) string {
	return `{"_id":"646ceae9a8c3a3ba32d0e897","type":"session","sessionId":"` + sessionID +
		`","instanceId":"f0313fa9-ebe6-4a84-8580-3104f6a09988","loginToken":"` + hashToken(l.token) +
		`","ip":"127.0.0.1","host":"localhost:3000","userId":"` + l.userID +
		`","roles":["user"],"mostImportantRole":"user","loginAt":"2023-05-23T16:33:45.202Z","day":23,"month":5,"year":2023,` +
		`"createdAt":"2023-05-23T16:33:45.203Z","_updatedAt":"2023-05-23T17:56:31.599Z"}`
}

// successBody is the route's 200 body for one of l's sessions.
func (l *login) successBody(sessionID string) string {
	d := l.doc(sessionID)
	return d[:len(d)-1] + `,"success":true}`
}

// The route's other answers (docs/route.md, §2).
const (
	bodyUnauthorized = `{"status":"error","message":"You must be logged in to do this."}`
	bodyNotFound     = `{"success":false,"error":"Session not found"}`
	bodyUnavailable  = `{"success":false,"error":"Service unavailable"}`
	bodyBadGateway   = `{"success":false,"error":"Bad gateway"}`
	bodyGWTimeout    = `{"success":false,"error":"Gateway timeout"}`
)

// seed writes every token and session key (docs/data-contract.md, default prefix).
func (d *dataset) seed(ctx context.Context, c *redis.Client) error {
	pipe := c.Pipeline()
	for i := range d.logins {
		l := &d.logins[i]
		pipe.Set(ctx, "rc:{"+l.userID+"}:token:"+hashToken(l.token), `{"when":"2023-05-23T16:33:45.202Z"}`, 0)
		for _, s := range l.sessions {
			pipe.Set(ctx, "rc:{"+l.userID+"}:session:"+s, l.doc(s), 0)
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

// answer is what Rocket.Chat itself answers on sessions/info: the stand-in
// upstream uses it for requests the gate forwards.
func (d *dataset) answer(userID, token, sessionID string) (int, string) {
	l := d.byUser[userID]
	if l == nil || token != l.token {
		return 401, bodyUnauthorized
	}
	for _, s := range l.sessions {
		if s == sessionID {
			return 200, l.successBody(s)
		}
	}
	return 404, bodyNotFound
}
