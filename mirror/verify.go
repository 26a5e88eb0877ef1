package mirror

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/redisstore"
)

// In poll mode the mirror writes token keys marked "verify before serving"
// (redisstore.VerifyMarker) unless it re-checks them every poll: a token
// the proxy has used within mirror.active_window is in the activity set and
// unmarked (warm); when it leaves the window its key is marked again
// (redisstore.Writer.ActiveTokens). The proxy asks about a marked token
// before serving it, and verifyLoop answers: one indexed query for every
// question waiting, the same rule as the re-check's (recheckBatch), then
//   - valid: the token joins the activity set and its key is unmarked, so
//     the re-check covers it from now on; answer "1";
//   - not valid: the user's token set is rewritten from MongoDB (deleting
//     the key), or the user's keys deleted; answer "0".
// So a token removed while nobody used it is refused at its first use.

// verifyWait is how long one wait for questions lasts; it bounds how long
// the loop takes to notice ctx ending.
const verifyWait = time.Second

// verifyLoop answers the proxies' questions until ctx ends.
func (m *mirror) verifyLoop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		err := m.verifyOnce(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			m.metrics.errors.WithLabelValues("verify").Inc()
			failures++
			if failures == 1 || failures%10 == 0 {
				m.log.Error("token verification failed", zap.Error(err), zap.Int("consecutive_failures", failures))
			}
			sleep(ctx, minBackoff)
		case failures > 0:
			m.log.Info("token verification recovered", zap.Int("failures", failures))
			failures = 0
		}
	}
}

// verifyOnce waits for questions and answers at most mirror.batch_size of
// them.
func (m *mirror) verifyOnce(ctx context.Context) error {
	reqs, err := m.w.NextVerifications(ctx, verifyWait, m.cfg.BatchSize)
	if err != nil || len(reqs) == 0 {
		return err
	}
	began := time.Now()
	vctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	act := make([]redisstore.ActiveToken, len(reqs))
	for i, r := range reqs {
		// Seen now: a removed token's user is rewritten, and the entry is
		// not one of the activity set's to remove.
		act[i] = redisstore.ActiveToken{Kind: redisstore.ActivityHit, Hash: r.Hash, UserID: r.UserID, Seen: began}
	}
	var st recheckStats
	valid, err := m.recheckBatch(vctx, act, time.Duration(m.exp.Load()), &st)
	if err != nil {
		return err
	}
	var warm []redisstore.VerifyRequest
	for i, r := range reqs {
		if valid[i] {
			warm = append(warm, r)
		}
	}
	// Warm before answering: the key the proxy serves next is unmarked
	// only once the re-check covers it.
	if err := m.w.Warm(vctx, warm); err != nil {
		return err
	}
	if err := m.w.AnswerVerifications(vctx, reqs, valid); err != nil {
		return err
	}
	took := time.Since(began).Seconds()
	for _, v := range valid {
		result := "invalid"
		if v {
			result = "valid"
		}
		m.metrics.verifications.WithLabelValues(result).Inc()
		m.metrics.verifySeconds.Observe(took)
	}
	return nil
}
