package mirror

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/redisstore"
)

// Re-checking the tokens the proxy reports as recently used is how poll
// mode sees token removals that leave _updatedAt alone (Meteor's logout,
// the expiry job, Rocket.Chat's raw $set/$pull of loginTokens): about once
// a second the tokens used within mirror.active_window are looked up in
// MongoDB with one query on the indexed
// services.resume.loginTokens.hashedToken, and
//   - a token reported valid that MongoDB no longer has makes the mirror
//     rewrite that user's token set from MongoDB (or delete the user's keys
//     when the user is gone);
//   - a token reported invalid (a 401) that MongoDB has makes the mirror
//     write that user's token set: a new login is served within a second
//     even when nothing bumped _updatedAt.

// revokedRecheck is how long after its last use a token found removed
// keeps being re-checked (and its user rewritten).
const revokedRecheck = 10 * time.Second

// recheckStats is one re-check's work.
type recheckStats struct {
	checked, revoked, added, usersDeleted int
	rewrites                              int // removed tokens seen (again) this time
}

// recheckActive re-checks the tokens seen since now − ActiveWindow.
func (m *mirror) recheckActive(ctx context.Context, exp time.Duration) (recheckStats, error) {
	var st recheckStats
	now := time.Now()
	act, err := m.w.ActiveTokens(ctx, now.Add(-m.cfg.ActiveWindow))
	if err != nil || len(act) == 0 {
		return st, err
	}
	for start := 0; start < len(act); start += m.cfg.BatchSize {
		part := act[start:min(len(act), start+m.cfg.BatchSize)]
		if _, err := m.recheckBatch(ctx, part, exp, &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

// recheckBatch looks the tokens of act up in MongoDB with one query, and
// rewrites (or deletes) the token sets of the users where Redis and MongoDB
// disagree; valid[i] tells whether act[i] is a valid token of its user.
func (m *mirror) recheckBatch(ctx context.Context, act []redisstore.ActiveToken, exp time.Duration, st *recheckStats) (valid []bool, err error) {
	st.checked += len(act)
	hashes := make(bson.A, 0, len(act))
	seen := make(map[string]bool, len(act))
	for _, a := range act {
		if !seen[a.Hash] {
			seen[a.Hash] = true
			hashes = append(hashes, a.Hash)
		}
	}
	cur, err := m.db.Collection("users").Find(ctx,
		bson.D{{Key: "services.resume.loginTokens.hashedToken", Value: bson.D{{Key: "$in", Value: hashes}}}},
		options.Find().SetProjection(userProjection()))
	if err != nil {
		return nil, fmt.Errorf("re-check tokens: %w", err)
	}
	// owner maps each valid hash to the user whose token set holds it.
	found := make(map[string]redisstore.UserTokens)
	owner := make(map[string]string)
	now := time.Now()
	for cur.Next(ctx) {
		u, ok := userTokens(cur.Current, exp, now)
		if !ok {
			continue
		}
		found[u.UserID] = u
		for _, t := range u.Tokens {
			owner[t.Hash] = u.UserID
		}
	}
	err = cur.Err()
	cur.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("re-check tokens: %w", err)
	}

	valid = make([]bool, len(act))
	var done []string                // entries dealt with for good
	rewrite := make(map[string]bool) // users whose token set changed
	var lookup []string              // of those, users not read above
	for i, a := range act {
		valid[i] = owner[a.Hash] == a.UserID
		switch {
		case a.Kind == redisstore.ActivityHit && valid[i]:
			continue // still valid: check again next time
		case a.Kind == redisstore.ActivityHit:
			st.rewrites++
		case valid[i]:
			st.added++
		}
		switch {
		case a.Kind == redisstore.ActivityMiss:
			// Written now, or a wrong token MongoDB does not know either:
			// done.
			done = append(done, a.Member)
			if !valid[i] {
				continue
			}
		case now.Sub(a.Seen) >= revokedRecheck:
			// Removed, and rewritten on every re-check since: a poll
			// that read the user before the removal and wrote after
			// the first rewrite has been undone by now. Counted once.
			done = append(done, a.Member)
			st.revoked++
		}
		if !rewrite[a.UserID] {
			rewrite[a.UserID] = true
			if _, ok := found[a.UserID]; !ok {
				lookup = append(lookup, a.UserID)
			}
		}
	}
	if len(rewrite) == 0 {
		return valid, m.w.RemoveActive(ctx, done)
	}
	if len(lookup) > 0 {
		more, err := m.findUsers(ctx, lookup, exp)
		if err != nil {
			return nil, err
		}
		for id, u := range more {
			found[id] = u
		}
	}
	var writes []redisstore.UserTokens
	for id := range rewrite {
		u, ok := found[id]
		if !ok {
			// The user is gone: every key of it goes, including the
			// reported ones the index may not list.
			var extra []string
			for _, a := range act {
				if a.UserID == id {
					extra = append(extra, a.Hash)
				}
			}
			if _, err := m.w.DeleteUser(ctx, id, extra...); err != nil {
				return nil, err
			}
			st.usersDeleted++
			continue
		}
		for _, a := range act {
			if a.UserID == id && a.Kind == redisstore.ActivityHit {
				u.Stale = append(u.Stale, a.Hash)
			}
		}
		// Read after the reports, so newer than what Redis holds even when
		// _updatedAt is not (the removal may not have bumped it, and
		// instances' clocks differ).
		u.Force = true
		writes = append(writes, u)
	}
	if _, err := m.w.WriteUserTokens(ctx, writes); err != nil {
		return nil, err
	}
	if st.rewrites+st.added > 0 {
		m.log.Debug("active tokens re-checked", zap.Int("checked", st.checked),
			zap.Int("removed_tokens", st.rewrites), zap.Int("added", st.added), zap.Int("users_deleted", st.usersDeleted))
	}
	return valid, m.w.RemoveActive(ctx, done)
}

// pollTrash deletes the keys of users moved to rocketchat__trash (deleted
// users) since from minus the overlap, confirming each is gone from
// users. It returns the largest _deletedAt seen, or from.
func (m *mirror) pollTrash(ctx context.Context, from time.Time, exp time.Duration) (time.Time, int, error) {
	cur, err := m.db.Collection("rocketchat__trash").Find(ctx, bson.D{
		{Key: "__collection__", Value: "users"},
		{Key: "_deletedAt", Value: bson.D{{Key: "$gte", Value: bson.NewDateTimeFromTime(from.Add(-m.cfg.Overlap))}}},
	}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "_deletedAt", Value: 1}}))
	if err != nil {
		return from, 0, fmt.Errorf("poll trash: %w", err)
	}
	defer cur.Close(ctx)
	high := from
	var ids []string
	for cur.Next(ctx) {
		if ms, ok := cur.Current.Lookup("_deletedAt").DateTimeOK(); ok {
			if v := time.UnixMilli(ms); v.After(high) {
				high = v
			}
		}
		if id, ok := idString(cur.Current.Lookup("_id")); ok {
			ids = append(ids, id)
		}
	}
	if err := cur.Err(); err != nil {
		return from, 0, fmt.Errorf("poll trash: %w", err)
	}
	if len(ids) == 0 {
		return high, 0, nil
	}
	back, err := m.findUsers(ctx, ids, exp)
	if err != nil {
		return from, 0, err
	}
	n := 0
	for _, id := range ids {
		if _, ok := back[id]; ok {
			continue // restored, or an id reused: the user exists
		}
		if _, err := m.w.DeleteUser(ctx, id); err != nil {
			return from, n, err
		}
		n++
	}
	return high, n, nil
}
