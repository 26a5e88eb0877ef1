package mirror

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/redisstore"
)

// reconcileStats counts one reconciliation's work for its log line.
type reconcileStats struct {
	keys, sessionsRemoved, sessionsReplaced, usersRewritten, usersRemoved, keysRemoved int
}

// reconcile walks every user key in Redis and fixes those MongoDB no longer
// backs: session keys whose documents are gone (or whose winner changed),
// token keys of tokens or users that are gone. Polling cannot see a deleted
// document; this can.
//
// It never undoes a fresher write: a key's value is read before MongoDB is
// asked, and the key is changed only if it still holds that value; token
// sets are rewritten under the user's version.
func (m *mirror) reconcile(ctx context.Context) error {
	began := time.Now()
	exp, err := loginExpiration(ctx, m.db)
	if err != nil {
		return err
	}
	var st reconcileStats
	err = m.w.ScanKeys(ctx, func(refs []redisstore.KeyRef) error {
		st.keys += len(refs)
		var sessions []redisstore.KeyRef
		users := make(map[string][]redisstore.KeyRef)
		for _, r := range refs {
			if r.Kind == redisstore.KindSession {
				sessions = append(sessions, r)
			} else {
				users[r.UserID] = append(users[r.UserID], r)
			}
		}
		if err := m.reconcileSessions(ctx, sessions, &st); err != nil {
			return err
		}
		return m.reconcileUsers(ctx, users, exp, &st)
	})
	if err != nil {
		return err
	}
	m.log.Info("reconciliation done", zap.Int("keys", st.keys),
		zap.Int("sessions_removed", st.sessionsRemoved), zap.Int("sessions_replaced", st.sessionsReplaced),
		zap.Int("users_rewritten", st.usersRewritten), zap.Int("users_removed", st.usersRemoved),
		zap.Int("token_keys_removed", st.keysRemoved), zap.Duration("elapsed", time.Since(began)))
	return nil
}

func (m *mirror) reconcileSessions(ctx context.Context, refs []redisstore.KeyRef, st *reconcileStats) error {
	if len(refs) == 0 {
		return nil
	}
	olds, err := m.w.Values(ctx, refs)
	if err != nil {
		return err
	}
	pairs := make([]sessionPair, len(refs))
	for i, r := range refs {
		pairs[i] = sessionPair{userID: r.UserID, sessionID: r.ID}
	}
	win, err := winners(ctx, m.db.Collection("rocketchat_sessions"), pairs)
	if err != nil {
		return err
	}
	var removals, replacements []redisstore.Swap
	for i, r := range refs {
		v, ok := win[pairs[i]]
		switch {
		case olds[i] == nil:
		case !ok:
			removals = append(removals, redisstore.Swap{Ref: r, Old: olds[i]})
		case !bytes.Equal(v, olds[i]):
			replacements = append(replacements, redisstore.Swap{Ref: r, Old: olds[i], New: v})
		}
	}
	n, err := m.w.ReplaceIfEqual(ctx, removals)
	st.sessionsRemoved += n
	if err != nil {
		return err
	}
	n, err = m.w.ReplaceIfEqual(ctx, replacements)
	st.sessionsReplaced += n
	return err
}

func (m *mirror) reconcileUsers(ctx context.Context, byUser map[string][]redisstore.KeyRef, exp time.Duration, st *reconcileStats) error {
	if len(byUser) == 0 {
		return nil
	}
	ids := make([]string, 0, len(byUser))
	for id := range byUser {
		ids = append(ids, id)
	}
	present, err := m.findUsers(ctx, ids, exp)
	if err != nil {
		return err
	}
	var rewrite []redisstore.UserTokens
	var gone []redisstore.KeyRef
	for id, refs := range byUser {
		u, ok := present[id]
		if !ok {
			gone = append(gone, refs...)
			continue
		}
		for _, r := range refs {
			if r.Kind == redisstore.KindToken {
				u.Stale = append(u.Stale, r.ID)
			}
		}
		rewrite = append(rewrite, u)
	}
	n, err := m.w.WriteUserTokens(ctx, rewrite)
	st.usersRewritten += n
	if err != nil || len(gone) == 0 {
		return err
	}

	// Users that are gone: read the keys' values, confirm with MongoDB,
	// then delete only what still holds those values.
	olds, err := m.w.Values(ctx, gone)
	if err != nil {
		return err
	}
	var goneIDs []string
	for _, r := range gone {
		// gone holds each user's refs together.
		if len(goneIDs) == 0 || goneIDs[len(goneIDs)-1] != r.UserID {
			goneIDs = append(goneIDs, r.UserID)
		}
	}
	back, err := m.findUsers(ctx, goneIDs, exp)
	if err != nil {
		return err
	}
	var swaps []redisstore.Swap
	removedUsers := make(map[string]bool)
	for i, r := range gone {
		if _, ok := back[r.UserID]; ok {
			continue
		}
		removedUsers[r.UserID] = true
		swaps = append(swaps, redisstore.Swap{Ref: r, Old: olds[i]})
	}
	n, err = m.w.ReplaceIfEqual(ctx, swaps)
	st.keysRemoved += n
	st.usersRemoved += len(removedUsers)
	return err
}

// findUsers returns the current token sets of those of ids that exist.
func (m *mirror) findUsers(ctx context.Context, ids []string, exp time.Duration) (map[string]redisstore.UserTokens, error) {
	cur, err := m.db.Collection("users").Find(ctx, userIDFilter(ids), options.Find().SetProjection(userProjection()))
	if err != nil {
		return nil, fmt.Errorf("find users: %w", err)
	}
	defer cur.Close(ctx)
	out := make(map[string]redisstore.UserTokens, len(ids))
	now := time.Now()
	for cur.Next(ctx) {
		if u, ok := userTokens(cur.Current, exp, now); ok {
			out[u.UserID] = u
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("find users: %w", err)
	}
	return out, nil
}
