// Package mirror keeps Redis in step with Rocket.Chat's MongoDB, writing the
// data contract of docs/data-contract.md that the proxy's sessions/info route serves:
// `sessiongate mirror`.
//
// It reads MongoDB only (the "read" role suffices): users for login tokens,
// rocketchat_sessions for session documents, rocketchat_settings for
// Accounts_LoginExpiration. After an initial sync it follows changes with a
// change stream where the server offers one (changestream.go), or else by
// polling both collections by _updatedAt (re-reading an overlap window so
// equal or late timestamps are never skipped), re-checking the tokens the
// proxy reports as recently used (active.go) and reading deleted users from
// rocketchat__trash. A periodic reconciliation removes keys whose documents
// are gone. See docs/mirror.md.
//
// Several mirrors may run at once: every write is idempotent, the winner
// among duplicate sessions is deterministic, token sets are versioned by the
// user's _updatedAt so an older read never overwrites a newer one, and the
// reconciler deletes or replaces a key only if it still holds the value it
// read before asking MongoDB.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/redisstore"
)

// Run mirrors cfg.Mirror.MongoURL into the Redis of cfg.Redis until ctx
// ends, then returns nil; see New and Mirror.Run.
func Run(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	mr, err := New(cfg, log, nil)
	if err != nil {
		return err
	}
	return mr.Run(ctx)
}

// Mirror is `sessiongate mirror`, built by New.
type Mirror struct {
	m      *mirror
	client *mongo.Client
	rc     interface{ Close() error }
}

// New checks the configuration and prepares a mirror without any I/O;
// metrics go to reg (none when nil). Errors name the key at fault.
func New(cfg *config.Config, log *zap.Logger, reg prometheus.Registerer) (*Mirror, error) {
	log = log.Named("mirror")
	mc := cfg.Mirror
	if mc.MongoURL == "" {
		return nil, errors.New("mirror.mongo_url: required")
	}
	if !strings.HasPrefix(mc.MongoURL, "mongodb://") && !strings.HasPrefix(mc.MongoURL, "mongodb+srv://") {
		return nil, errors.New("mirror.mongo_url: must be a mongodb:// or mongodb+srv:// URL")
	}
	if mc.Database == "" {
		return nil, errors.New("mirror.database: required")
	}
	switch mc.Follow {
	case "":
		mc.Follow = FollowAuto
	case FollowAuto, FollowChangeStream, FollowPoll:
	default:
		return nil, fmt.Errorf("mirror.follow: %q: must be %s, %s or %s", mc.Follow, FollowAuto, FollowChangeStream, FollowPoll)
	}
	if mc.BatchSize <= 0 {
		mc.BatchSize = 1000
	}
	if mc.PollInterval <= 0 {
		mc.PollInterval = time.Second
	}
	if mc.ActiveWindow <= 0 {
		mc.ActiveWindow = 15 * time.Minute
	}
	mc.Overlap = max(mc.Overlap, 0)
	client, err := mongo.Connect(options.Client().ApplyURI(mc.MongoURL).SetAppName("sessiongate-mirror").
		// A server that cannot be reached fails the first operation
		// within seconds, so the log says so at once.
		SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		// The driver's message may quote the URL: name the key only.
		return nil, fmt.Errorf("mirror.mongo_url: %s", redactErr(err, mc.MongoURL))
	}
	rc, err := redisstore.NewMirrorClient(&cfg.Redis)
	if err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	met, err := newMetrics(reg)
	if err != nil {
		_ = client.Disconnect(context.Background())
		_ = rc.Close()
		return nil, err
	}
	m := &mirror{
		db:      client.Database(mc.Database),
		w:       redisstore.NewWriter(rc, cfg.Redis.KeyPrefix, mc.BatchSize),
		cfg:     mc,
		log:     log,
		metrics: met,
	}
	// A progress bar only for a person watching: stderr is a terminal.
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		m.bar = os.Stderr
	}
	return &Mirror{m: m, client: client, rc: rc}, nil
}

// Run mirrors until ctx ends, then returns nil and releases the
// connections. It starts with a full sync unless a checkpoint of an earlier
// run for the same database is found, in which case it resumes from there.
// MongoDB or Redis failures are logged and retried with backoff.
func (mr *Mirror) Run(ctx context.Context) error {
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mr.client.Disconnect(dctx)
		_ = mr.rc.Close()
	}()
	return mr.m.run(ctx)
}

// redactErr is err's text with the URL's password removed.
func redactErr(err error, url string) string {
	msg := err.Error()
	if red := config.RedactURL(url); red != url {
		msg = strings.ReplaceAll(msg, url, red)
	}
	return msg
}

// mirror is one running mirror. Polling (and cp) belongs to Run's
// goroutine; reconcile runs on a second one and shares only the
// concurrency-safe db and w.
type mirror struct {
	db  *mongo.Database
	w   *redisstore.Writer
	cfg config.Mirror
	log *zap.Logger
	bar io.Writer // nil: no progress bar

	metrics *metrics

	cp redisstore.Checkpoint
	// marking: poll mode, whose token keys are marked unless re-checked
	// every poll; set before any write.
	marking bool
	// exp is the Accounts_LoginExpiration last read, for the re-check
	// goroutine; 0 until start has read it.
	exp atomic.Int64
}

// backoff bounds retries after failures.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// retrySchedule is logged with every retried failure.
const retrySchedule = "backoff doubles from 500ms up to 30s"

func (m *mirror) run(ctx context.Context) error {
	mode, ok := m.chooseMode(ctx)
	if !ok {
		return nil
	}
	m.metrics.mode.Store(mode)
	// Poll mode marks the token keys it does not re-check every poll, so
	// the proxy asks before serving them (verify.go); a change stream sees
	// every removal, and its keys are valid by their presence alone.
	m.marking = mode != FollowChangeStream
	m.w.SetMarking(m.marking)
	if mode == FollowChangeStream {
		// Reconciliation catches deleted sessions whose collection keeps
		// no pre-images, and anything else a bug might leave behind.
		defer m.goReconcile(ctx)()
		return m.runStream(ctx)
	}

	wait := minBackoff
	for {
		err := m.start(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		m.metrics.errors.WithLabelValues("start").Inc()
		m.log.Error("start failed, retrying", zap.Error(err), zap.Duration("backoff", wait), zap.String("retry", retrySchedule))
		if !sleep(ctx, wait) {
			return nil
		}
		wait = min(2*wait, maxBackoff)
	}
	m.metrics.synced.Store(true)

	// Reconciliation runs beside polling, so a long one never delays a
	// token's removal past the next poll.
	defer m.goReconcile(ctx)()

	// Re-checking active tokens runs beside polling too: a poll that reads
	// a large backlog must not delay a revocation.
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		m.recheckLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		m.verifyLoop(ctx)
	}()

	poll := time.NewTicker(m.cfg.PollInterval)
	defer poll.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			m.log.Info("mirror stopped")
			return nil
		case <-poll.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pollTimeout)
		err := m.poll(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
		case err != nil:
			failures++
			// The first failure and then every tenth, not one a second.
			m.metrics.errors.WithLabelValues("poll").Inc()
			if failures == 1 || failures%10 == 0 {
				m.log.Error("poll failed", zap.Error(err), zap.Int("consecutive_failures", failures))
			}
		case failures > 0:
			m.log.Info("poll recovered", zap.Int("failures", failures))
			failures = 0
		}
	}
}

// pollTimeout bounds one poll, so a hung connection cannot stop the mirror
// for good; it is generous because a poll after a long outage reads the
// whole backlog.
const pollTimeout = 5 * time.Minute

// goReconcile starts reconcileLoop beside the caller's work, when
// reconciliation is on, and returns the wait for it to end (after ctx).
func (m *mirror) goReconcile(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	if m.cfg.ReconcileInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.reconcileLoop(ctx)
		}()
	}
	return wg.Wait
}

// reconcileLoop reconciles every ReconcileInterval until ctx ends.
func (m *mirror) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.reconcile(ctx); err != nil && ctx.Err() == nil {
			m.metrics.errors.WithLabelValues("reconcile").Inc()
			m.log.Error("reconciliation failed", zap.Error(err))
		}
	}
}

// recheckLoop re-checks the active tokens every PollInterval until ctx
// ends.
func (m *mirror) recheckLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, pollTimeout)
		st, err := m.recheckActive(rctx, time.Duration(m.exp.Load()))
		cancel()
		m.metrics.rechecked.Add(float64(st.checked))
		m.metrics.revoked.Add(float64(st.revoked))
		switch {
		case ctx.Err() != nil:
		case err != nil:
			m.metrics.errors.WithLabelValues("recheck").Inc()
			failures++
			if failures == 1 || failures%10 == 0 {
				m.log.Error("active token re-check failed", zap.Error(err), zap.Int("consecutive_failures", failures))
			}
		case failures > 0:
			m.log.Info("active token re-check recovered", zap.Int("failures", failures))
			failures = 0
		}
	}
}

// start resumes from the checkpoint, or runs the initial sync.
func (m *mirror) start(ctx context.Context) error {
	exp, err := loginExpiration(ctx, m.db)
	if err != nil {
		return err
	}
	m.exp.Store(int64(exp))
	cp, err := m.w.LoadCheckpoint(ctx)
	switch {
	case err == nil && cp.Database == m.db.Name():
		m.cp = cp
		// Poll mode keeps no stream position: a later change stream run
		// must not resume from one older than this run's changes.
		m.cp.ResumeToken = nil
		m.log.Info("resuming from checkpoint",
			zap.Time("users", cp.Users), zap.Time("sessions", cp.Sessions))
		if cp.LoginExpiration != exp || !cp.Marked {
			// Without marks (a change-stream run, or an older version
			// wrote the keys), an unmarked key may be one nobody
			// re-checks: every key is rewritten marked.
			return m.resyncTokens(ctx, exp)
		}
		return nil
	case err != nil && !errors.Is(err, redisstore.ErrNoCheckpoint):
		return err
	}
	return m.initialSync(ctx, exp)
}

// initialSync writes every token and session. Changes made during the sync
// are picked up by the first poll: the checkpoint is the time the sync
// started, and polls re-read an overlap window before it.
func (m *mirror) initialSync(ctx context.Context, exp time.Duration) error {
	began := time.Now()
	m.log.Info("initial sync started", zap.String("database", m.db.Name()))
	users, tokens, err := m.syncUsers(ctx, exp)
	if err != nil {
		return err
	}
	sessions, err := m.syncSessions(ctx)
	if err != nil {
		return err
	}
	elapsed := time.Since(began)
	m.log.Info("initial sync done",
		zap.Int("users", users), zap.Int("tokens", tokens), zap.Int("sessions", sessions),
		zap.Duration("elapsed", elapsed),
		zap.Float64("docs_per_second", float64(users+sessions)/max(elapsed.Seconds(), 1e-3)))
	m.cp = redisstore.Checkpoint{Database: m.db.Name(), Users: began, Sessions: began, Trash: began, LoginExpiration: exp,
		Marked: m.marking}
	if err := m.w.SaveCheckpoint(ctx, m.cp); err != nil {
		return err
	}
	if err := m.w.SetHeartbeat(ctx, began); err != nil {
		return err
	}
	m.metrics.heartbeat.Store(began.UnixNano())
	return nil
}

// resyncTokens rewrites every token key after Accounts_LoginExpiration
// changed, since every expiry moved, or when poll mode finds keys written
// without marks.
func (m *mirror) resyncTokens(ctx context.Context, exp time.Duration) error {
	if m.cp.LoginExpiration != exp {
		m.log.Info("login expiration changed, rewriting tokens",
			zap.Duration("was", m.cp.LoginExpiration), zap.Duration("now", exp))
	} else {
		m.log.Info("token keys not marked for poll mode, rewriting tokens")
	}
	if _, _, err := m.syncUsers(ctx, exp); err != nil {
		return err
	}
	m.cp.LoginExpiration = exp
	m.cp.Marked = m.marking
	return m.w.SaveCheckpoint(ctx, m.cp)
}

// syncUsers writes the token set of every user.
func (m *mirror) syncUsers(ctx context.Context, exp time.Duration) (users, tokens int, err error) {
	coll := m.db.Collection("users")
	prog := m.newProgress(ctx, coll)
	cur, err := coll.Find(ctx, bson.D{}, options.Find().
		SetProjection(userProjection()).
		SetBatchSize(int32(m.cfg.BatchSize)))
	if err != nil {
		return 0, 0, fmt.Errorf("find users: %w", err)
	}
	defer cur.Close(ctx)
	batch := make([]redisstore.UserTokens, 0, m.cfg.BatchSize)
	flush := func() error {
		if _, err := m.w.WriteUserTokens(ctx, batch); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	now := time.Now()
	for cur.Next(ctx) {
		prog.add(1)
		u, ok := userTokens(cur.Current, exp, now)
		if !ok {
			continue
		}
		users++
		tokens += len(u.Tokens)
		// A full sync re-checks nothing: in poll mode every key is
		// marked, warm or not.
		u.MarkAll = true
		batch = append(batch, u)
		if len(batch) == m.cfg.BatchSize {
			if err := flush(); err != nil {
				return users, tokens, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return users, tokens, fmt.Errorf("find users: %w", err)
	}
	if err := flush(); err != nil {
		return users, tokens, err
	}
	prog.done()
	return users, tokens, nil
}

// refreshExpiration reads Accounts_LoginExpiration, which lives in
// rocketchat_settings (neither polled nor followed), and rewrites every token
// key's expiry when it changed since the checkpoint.
func (m *mirror) refreshExpiration(ctx context.Context) (time.Duration, error) {
	exp, err := loginExpiration(ctx, m.db)
	if err != nil {
		return 0, err
	}
	m.exp.Store(int64(exp))
	if exp != m.cp.LoginExpiration {
		if err := m.resyncTokens(ctx, exp); err != nil {
			return 0, err
		}
	}
	return exp, nil
}

// poll applies the changes since the checkpoint, then advances the
// checkpoint and the heartbeat to the time the poll began.
func (m *mirror) poll(ctx context.Context) error {
	began := time.Now()
	exp, err := m.refreshExpiration(ctx)
	if err != nil {
		return err
	}
	usersHigh, users, err := m.pollUsers(ctx, m.cp.Users, exp)
	if err != nil {
		return err
	}
	sessionsHigh, sessions, err := m.pollSessions(ctx, m.cp.Sessions)
	if err != nil {
		return err
	}
	if m.cp.Trash.IsZero() { // a checkpoint of an older version
		m.cp.Trash = m.cp.Users
	}
	trashHigh, deleted, err := m.pollTrash(ctx, m.cp.Trash, exp)
	if err != nil {
		return err
	}
	users += deleted
	// The high-water mark never passes the poll's own start: a document
	// stamped in the future by a fast clock must not hide the ones stamped
	// by correct clocks.
	m.cp.Users = maxTime(m.cp.Users, minTime(usersHigh, began))
	m.cp.Sessions = maxTime(m.cp.Sessions, minTime(sessionsHigh, began))
	m.cp.Trash = maxTime(m.cp.Trash, minTime(trashHigh, began))
	if err := m.w.SaveCheckpoint(ctx, m.cp); err != nil {
		return err
	}
	if err := m.w.SetHeartbeat(ctx, began); err != nil {
		return err
	}
	m.metrics.heartbeat.Store(began.UnixNano())
	if users+sessions > 0 {
		m.log.Debug("poll applied", zap.Int("users", users), zap.Int("sessions", sessions),
			zap.Duration("elapsed", time.Since(began)))
	}
	return nil
}

// pollUsers rewrites the token sets of the users changed since from minus
// the overlap, and returns the largest _updatedAt seen (from when none).
func (m *mirror) pollUsers(ctx context.Context, from time.Time, exp time.Duration) (time.Time, int, error) {
	cur, err := m.db.Collection("users").Find(ctx, changedSince(from.Add(-m.cfg.Overlap)), options.Find().
		SetProjection(userProjection()).
		SetBatchSize(int32(m.cfg.BatchSize)))
	if err != nil {
		return from, 0, fmt.Errorf("poll users: %w", err)
	}
	defer cur.Close(ctx)
	high, n := from, 0
	now := time.Now()
	var batch []redisstore.UserTokens
	for cur.Next(ctx) {
		if v := time.UnixMilli(version(cur.Current)); v.After(high) {
			high = v
		}
		if u, ok := userTokens(cur.Current, exp, now); ok {
			batch = append(batch, u)
		}
		if len(batch) == m.cfg.BatchSize {
			if _, err := m.w.WriteUserTokens(ctx, batch); err != nil {
				return from, n, err
			}
			n += len(batch)
			batch = batch[:0]
		}
	}
	if err := cur.Err(); err != nil {
		return from, n, fmt.Errorf("poll users: %w", err)
	}
	if _, err := m.w.WriteUserTokens(ctx, batch); err != nil {
		return from, n, err
	}
	return high, n + len(batch), nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
