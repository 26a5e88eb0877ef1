package proxy

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/internal/loglimit"
)

// upstreamErrorLogInterval is how often, at most, a failing upstream is
// logged: an outage at thousands of requests a second is a few lines a
// minute, each with the counts since the previous one.
const upstreamErrorLogInterval = 10 * time.Second

// rateLog writes one warning per interval about events that may come by the
// thousand (upstream failures): the first event of a quiet period is logged
// at once, the ones after it are counted by kind and summed up in one line
// when the interval has passed, without waiting for another event. Safe for concurrent use; the zero value is
// not usable, a nil *rateLog drops events.
type rateLog struct {
	log   *zap.Logger
	msg   string
	limit *loglimit.Limiter

	mu      sync.Mutex
	last    time.Time         // when the last line was written
	pending map[string]uint64 // events since then, by kind
	timer   *time.Timer       // writes the pending line; nil when none is due
}

func newRateLog(log *zap.Logger, msg string, interval time.Duration) *rateLog {
	return &rateLog{log: log, msg: msg, limit: loglimit.New(interval), pending: map[string]uint64{}}
}

// event records one event of kind.
func (r *rateLog) event(kind string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending[kind]++
	if r.timer != nil {
		return // a line is already due
	}
	// The events the limiter refuses are counted in pending, by kind.
	if _, ok := r.limit.Allow(); !ok {
		r.timer = time.AfterFunc(r.limit.Wait(), r.flush)
		return
	}
	r.writeLocked()
}

func (r *rateLog) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	if _, ok := r.limit.Allow(); !ok {
		r.timer = time.AfterFunc(r.limit.Wait(), r.flush)
		return
	}
	r.writeLocked()
}

func (r *rateLog) writeLocked() {
	var total uint64
	kinds := make(map[string]uint64, len(r.pending))
	for k, n := range r.pending {
		total += n
		kinds[k] = n
		delete(r.pending, k)
	}
	if total == 0 {
		return
	}
	fields := []zap.Field{zap.Uint64("count", total), zap.Any("kinds", kinds)}
	if !r.last.IsZero() {
		fields = append(fields, zap.Duration("since_last_line", time.Since(r.last).Round(time.Millisecond)))
	}
	r.last = time.Now()
	r.log.Warn(r.msg, fields...)
}

// flushNow writes the pending line, if any, without waiting for the
// interval: at shutdown, so the last counts are not lost.
func (r *rateLog) flushNow() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	r.writeLocked()
}
