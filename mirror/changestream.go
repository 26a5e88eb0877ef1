package mirror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/redisstore"
)

// Values of mirror.follow.
const (
	FollowAuto         = "auto"
	FollowChangeStream = "change_stream"
	FollowPoll         = "poll"
)

// Server error codes that mean a stored resume token cannot be used: the
// oplog no longer holds its position (ChangeStreamHistoryLost, and
// CappedPositionLost / ChangeStreamFatalError on older servers), or the
// token is not one (InvalidResumeToken, FailedToParse).
var historyLostCodes = []int{286, 136, 280, 260, 9}

func historyLost(err error) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range historyLostCodes {
		if se.HasErrorCode(c) {
			return true
		}
	}
	return false
}

// followedCollections are the collections a change stream delivers.
var followedCollections = bson.A{"users", "rocketchat_sessions"}

// openStream opens a change stream on the database for the followed
// collections, after resume (a resume token) or, when nil, at the current
// position.
func (m *mirror) openStream(ctx context.Context, resume bson.Raw) (*mongo.ChangeStream, error) {
	pipeline := mongo.Pipeline{{{Key: "$match", Value: bson.D{
		{Key: "ns.coll", Value: bson.D{{Key: "$in", Value: followedCollections}}},
	}}}}
	opts := options.ChangeStream().
		SetMaxAwaitTime(time.Second).
		SetBatchSize(int32(m.cfg.BatchSize)).
		// A deleted session's pair, where the collection keeps pre-images.
		SetFullDocumentBeforeChange(options.WhenAvailable)
	if resume != nil {
		opts.SetResumeAfter(resume)
	}
	return m.db.Watch(ctx, pipeline, opts)
}

// source is what the event handler reads from MongoDB: the driver glue,
// replaced by a fake in unit tests.
type source interface {
	// users returns the current token sets of those of ids that exist.
	users(ctx context.Context, ids []string) (map[string]redisstore.UserTokens, error)
	// sessionPairs returns the (sessionId, userId) of the session
	// documents with these _ids that still exist.
	sessionPairs(ctx context.Context, ids []bson.RawValue) ([]sessionPair, error)
	// winners is winners() on rocketchat_sessions.
	winners(ctx context.Context, pairs []sessionPair) (map[sessionPair][]byte, error)
}

// mongoSource is source on the real database.
type mongoSource struct{ m *mirror }

func (s mongoSource) users(ctx context.Context, ids []string) (map[string]redisstore.UserTokens, error) {
	return s.m.findUsers(ctx, ids, time.Duration(s.m.exp.Load()))
}

func (s mongoSource) sessionPairs(ctx context.Context, ids []bson.RawValue) ([]sessionPair, error) {
	in := make(bson.A, len(ids))
	for i, id := range ids {
		in[i] = id
	}
	cur, err := s.m.db.Collection("rocketchat_sessions").Find(ctx,
		bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: in}}}},
		options.Find().SetProjection(bson.D{{Key: "sessionId", Value: 1}, {Key: "userId", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find sessions: %w", err)
	}
	defer cur.Close(ctx)
	var out []sessionPair
	for cur.Next(ctx) {
		if p, ok := pairOf(cur.Current); ok {
			out = append(out, p)
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("find sessions: %w", err)
	}
	return out, nil
}

func (s mongoSource) winners(ctx context.Context, pairs []sessionPair) (map[sessionPair][]byte, error) {
	return winners(ctx, s.m.db.Collection("rocketchat_sessions"), pairs)
}

// errResync means the stream cannot go on (an invalidate event, a dropped
// or renamed collection): the mirror syncs everything again from a new
// stream.
var errResync = errors.New("change stream invalidated")

// eventStats is what one batch of events did.
type eventStats struct {
	events, usersWritten, usersDeleted, sessionsWritten, sessionDeletesUnknown int
}

// applyEvents brings Redis in step with MongoDB for every document the
// events name, re-reading the current state (so the order of events in the
// batch does not matter, and an event never needs to be applied twice to be
// right). Events follow MongoDB's change event format
// (https://www.mongodb.com/docs/manual/reference/change-events/). It
// returns errResync for events after which the stream is gone.
func applyEvents(ctx context.Context, src source, w *redisstore.Writer, events []bson.Raw) (eventStats, error) {
	st := eventStats{events: len(events)}
	var userIDs []string
	seenUser := make(map[string]bool)
	var sessionIDs []bson.RawValue
	seenSession := make(map[string]bool)
	var pairs []sessionPair
	seenPair := make(map[sessionPair]bool)
	addPair := func(p sessionPair) {
		if !seenPair[p] {
			seenPair[p] = true
			pairs = append(pairs, p)
		}
	}
	for _, ev := range events {
		op, _ := ev.Lookup("operationType").StringValueOK()
		coll, _ := ev.Lookup("ns", "coll").StringValueOK()
		switch op {
		case "invalidate", "dropDatabase":
			return st, errResync
		case "drop", "rename":
			if coll == "users" || coll == "rocketchat_sessions" {
				return st, errResync
			}
			continue
		case "insert", "update", "replace", "delete":
		default:
			continue // DDL events and others carry no token or session
		}
		id := ev.Lookup("documentKey", "_id")
		switch coll {
		case "users":
			uid, ok := idString(id)
			if ok && !seenUser[uid] {
				seenUser[uid] = true
				userIDs = append(userIDs, uid)
			}
		case "rocketchat_sessions":
			// The pair is in the document (insert, replace, and updates
			// with a post-image) or its pre-image (deletes where the
			// collection keeps them); otherwise read by _id.
			doc, ok := ev.Lookup("fullDocument").DocumentOK()
			if !ok {
				doc, ok = ev.Lookup("fullDocumentBeforeChange").DocumentOK()
			}
			if ok {
				if p, ok := pairOf(doc); ok {
					addPair(p)
				}
				continue
			}
			if op == "delete" {
				// Without a pre-image a deleted session's pair is unknown:
				// reconciliation removes its key.
				st.sessionDeletesUnknown++
				continue
			}
			if k := string(id.Value); id.Type != 0 && !seenSession[k] {
				seenSession[k] = true
				sessionIDs = append(sessionIDs, id)
			}
		}
	}

	if len(userIDs) > 0 {
		current, err := src.users(ctx, userIDs)
		if err != nil {
			return st, err
		}
		var writes []redisstore.UserTokens
		for _, id := range userIDs {
			u, ok := current[id]
			if !ok {
				if _, err := w.DeleteUser(ctx, id); err != nil {
					return st, err
				}
				st.usersDeleted++
				continue
			}
			// The state just read is newer than every event of the batch:
			// it replaces whatever Redis holds, whatever its _updatedAt.
			u.Force = true
			writes = append(writes, u)
		}
		n, err := w.WriteUserTokens(ctx, writes)
		st.usersWritten += n
		if err != nil {
			return st, err
		}
	}

	if len(sessionIDs) > 0 {
		more, err := src.sessionPairs(ctx, sessionIDs)
		if err != nil {
			return st, err
		}
		for _, p := range more {
			addPair(p)
		}
	}
	if len(pairs) > 0 {
		win, err := src.winners(ctx, pairs)
		if err != nil {
			return st, err
		}
		writes := make([]redisstore.SessionWrite, len(pairs))
		for i, p := range pairs {
			writes[i] = redisstore.SessionWrite{UserID: p.userID, SessionID: p.sessionID, Value: win[p]}
		}
		if err := w.WriteSessions(ctx, writes); err != nil {
			return st, err
		}
		st.sessionsWritten += len(pairs)
	}
	return st, nil
}

// follow applies the stream's events until ctx ends or the stream fails.
// It returns nil when ctx ended, errResync when everything must be synced
// again, and the stream's error otherwise (the caller reopens it from the
// saved resume token).
func (m *mirror) follow(ctx context.Context, cs *mongo.ChangeStream) error {
	src := mongoSource{m: m}
	var batch []bson.Raw
	lastSave := time.Time{}
	expCheck := time.Now()
	for {
		if ctx.Err() != nil {
			return nil
		}
		// TryNext waits at most maxAwaitTime for the next batch; drain
		// what has arrived so one re-read covers it.
		batch = batch[:0]
		for len(batch) < m.cfg.BatchSize && cs.TryNext(ctx) {
			batch = append(batch, append(bson.Raw(nil), cs.Current...))
			if cs.RemainingBatchLength() == 0 {
				break
			}
		}
		if err := cs.Err(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := time.Now()
		if len(batch) > 0 {
			st, err := applyEvents(ctx, src, m.w, batch)
			m.metrics.events.Add(float64(st.events))
			if err != nil {
				return err
			}
			if st.sessionDeletesUnknown > 0 {
				m.log.Debug("session deletes without pre-image left to reconciliation",
					zap.Int("count", st.sessionDeletesUnknown))
			}
		}
		if now.Sub(expCheck) >= m.cfg.PollInterval {
			// Accounts_LoginExpiration lives in rocketchat_settings, which
			// the stream does not follow.
			expCheck = now
			if _, err := m.refreshExpiration(ctx); err != nil {
				return err
			}
		}
		// The resume token covers every event applied: save it with the
		// checkpoint, and the heartbeat, about once a second.
		if len(batch) > 0 || now.Sub(lastSave) >= time.Second {
			if tok := cs.ResumeToken(); tok != nil {
				m.cp.ResumeToken = append(m.cp.ResumeToken[:0], tok...)
			}
			// Everything up to now is applied: poll mode, if it ever takes
			// over, starts from here.
			m.cp.Users, m.cp.Sessions, m.cp.Trash = now, now, now
			if now.Sub(lastSave) >= time.Second {
				lastSave = now
				if err := m.w.SaveCheckpoint(ctx, m.cp); err != nil {
					return err
				}
				// The proxy reports the tokens it uses whatever the
				// mirror's mode; only poll mode reads them.
				if err := m.w.ClearActive(ctx); err != nil {
					return err
				}
			}
			if err := m.w.SetHeartbeat(ctx, now); err != nil {
				return err
			}
			m.metrics.heartbeat.Store(now.UnixNano())
		}
	}
}

// whatPollLoses is the warning when auto falls back to poll mode.
const whatPollLoses = "deleted sessions wait for reconciliation (mirror.reconcile_interval); " +
	"a token not used within mirror.active_window costs one more round trip to this mirror at its next use, " +
	"and while the mirror is down such a token is treated as a Redis failure (redis.on_error)"

// chooseMode decides between change streams and polling (mirror.follow);
// false when ctx ended first. With auto it opens a change stream: a server
// that refuses ($changeStream needs a replica set) means poll mode; a
// server that cannot be reached is retried.
func (m *mirror) chooseMode(ctx context.Context) (string, bool) {
	if m.cfg.Follow != FollowAuto {
		m.log.Info("following MongoDB", zap.String("mode", m.cfg.Follow))
		return m.cfg.Follow, true
	}
	wait := minBackoff
	for {
		cs, err := m.openStream(ctx, nil)
		if err == nil {
			_ = cs.Close(ctx)
			m.log.Info("following MongoDB", zap.String("mode", FollowChangeStream))
			return FollowChangeStream, true
		}
		if ctx.Err() != nil {
			return "", false
		}
		var se mongo.ServerError
		if errors.As(err, &se) {
			m.log.Warn("MongoDB offers no change streams (they need a replica set): polling instead",
				zap.Error(err), zap.String("lost", whatPollLoses))
			return FollowPoll, true
		}
		m.metrics.errors.WithLabelValues("start").Inc()
		m.log.Error("MongoDB unreachable, retrying", zap.Error(err),
			zap.Duration("backoff", wait), zap.String("retry", retrySchedule))
		if !sleep(ctx, wait) {
			return "", false
		}
		wait = min(2*wait, maxBackoff)
	}
}

// runStream follows the change stream until ctx ends, reopening it after
// failures (from the saved resume token) and syncing everything again when
// the stream's history is lost or it is invalidated.
func (m *mirror) runStream(ctx context.Context) error {
	wait := minBackoff
	for {
		err := m.streamOnce(ctx)
		if ctx.Err() != nil {
			m.log.Info("mirror stopped")
			return nil
		}
		if errors.Is(err, errResync) {
			m.metrics.resyncs.Inc()
			m.log.Warn("change stream invalidated: full resync")
			wait = minBackoff
			continue
		}
		m.metrics.errors.WithLabelValues("stream").Inc()
		m.log.Error("change stream failed, retrying", zap.Error(err),
			zap.Duration("backoff", wait), zap.String("retry", retrySchedule))
		if !sleep(ctx, wait) {
			return nil
		}
		wait = min(2*wait, maxBackoff)
	}
}

// streamOnce resumes from the checkpoint's resume token, or takes the
// stream's position and then runs the initial sync (so nothing written
// during the sync is missed), and follows until an error.
func (m *mirror) streamOnce(ctx context.Context) error {
	exp, err := loginExpiration(ctx, m.db)
	if err != nil {
		return err
	}
	m.exp.Store(int64(exp))
	var cs *mongo.ChangeStream
	cp, err := m.w.LoadCheckpoint(ctx)
	switch {
	case err == nil && cp.Database == m.db.Name() && cp.ResumeToken != nil:
		cs, err = m.openStream(ctx, bson.Raw(cp.ResumeToken))
		switch {
		case err == nil:
			m.cp = cp
			m.log.Info("resuming change stream from checkpoint")
			if cp.LoginExpiration != exp {
				if err := m.resyncTokens(ctx, exp); err != nil {
					_ = cs.Close(ctx)
					return err
				}
			}
		case historyLost(err):
			m.metrics.resyncs.Inc()
			m.log.Warn("change stream history lost (the oplog no longer holds the checkpoint): full resync", zap.Error(err))
			cs = nil
		default:
			return err
		}
	case err != nil && !errors.Is(err, redisstore.ErrNoCheckpoint):
		return err
	}
	if cs == nil {
		if cs, err = m.openStream(ctx, nil); err != nil {
			return err
		}
		start := append(bson.Raw(nil), cs.ResumeToken()...)
		if err := m.initialSync(ctx, exp); err != nil {
			_ = cs.Close(ctx)
			return err
		}
		m.cp.ResumeToken = start
		if err := m.w.SaveCheckpoint(ctx, m.cp); err != nil {
			_ = cs.Close(ctx)
			return err
		}
	}
	m.metrics.synced.Store(true)
	defer cs.Close(context.Background())
	err = m.follow(ctx, cs)
	if errors.Is(err, errResync) {
		m.cp.ResumeToken = nil
		if serr := m.w.SaveCheckpoint(ctx, m.cp); serr != nil {
			return serr
		}
	}
	return err
}
