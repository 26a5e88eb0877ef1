package mirror

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/internal/loglimit"
)

// LagWatcher is the proxy's view of the mirror's freshness: it reads the
// mirror's heartbeat on a timer (never per request) and says whether the
// data in Redis is recent enough to serve. Fresh is safe for concurrent use
// and does not allocate.
type LagWatcher struct {
	read     func(context.Context) (time.Time, error)
	maxLag   time.Duration
	interval time.Duration
	log      *zap.Logger
	// last is the newest heartbeat seen, as Unix nanoseconds; 0 until one
	// has been read.
	last atomic.Int64

	// Run's goroutine only: the guard's state as last logged.
	forwarding bool
	// guardLog paces the guard's warnings.
	guardLog *loglimit.Limiter
}

// guardLogEvery rate-limits the guard's start/stop warnings.
var guardLogEvery = 10 * time.Second

// NewLagWatcher returns a watcher that calls read (e.g. a closure over
// redisstore.MirrorHeartbeat) every interval and calls data stale once the
// newest heartbeat it has seen is older than maxLag. It registers
// sessiongate_mirror_lag_seconds on reg (+Inf until a heartbeat was seen).
func NewLagWatcher(read func(context.Context) (time.Time, error), maxLag, interval time.Duration, log *zap.Logger, reg prometheus.Registerer) (*LagWatcher, error) {
	w := &LagWatcher{read: read, maxLag: maxLag, interval: interval, log: log.Named("mirror"), guardLog: loglimit.New(guardLogEvery)}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "sessiongate", Name: "mirror_lag_seconds",
		Help: "Age of the mirror's newest heartbeat seen in Redis (+Inf: none seen).",
	}, func() float64 {
		last := w.last.Load()
		if last == 0 {
			return math.Inf(1)
		}
		return time.Since(time.Unix(0, last)).Seconds()
	})
	if err := reg.Register(lag); err != nil {
		return nil, err
	}
	return w, nil
}

// Fresh reports whether the newest heartbeat seen is at most maxLag old.
// A Redis outage stops heartbeats from being seen, so the data turns stale
// after maxLag then too: conservative, since the route cannot vouch for it.
func (w *LagWatcher) Fresh() bool {
	last := w.last.Load()
	return last != 0 && time.Since(time.Unix(0, last)) <= w.maxLag
}

// Run polls the heartbeat until ctx ends. It reads once before the first
// tick so a proxy started next to a healthy mirror serves at once.
func (w *LagWatcher) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *LagWatcher) poll(ctx context.Context) {
	defer w.logGuard()
	rctx, cancel := context.WithTimeout(ctx, w.interval)
	defer cancel()
	hb, err := w.read(rctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Debug("mirror heartbeat unreadable", zap.Error(err))
		}
		return
	}
	if n := hb.UnixNano(); n > w.last.Load() {
		w.last.Store(n)
	}
}

// logGuard warns when the stale-data guard starts or stops forwarding the
// route, at most once per guardLogEvery (a flapping mirror is counted, not
// logged each time). The first poll only logs when already forwarding.
func (w *LagWatcher) logGuard() {
	forwarding := !w.Fresh()
	if forwarding == w.forwarding {
		return
	}
	// A change not logged leaves w.forwarding as it was, so the next poll
	// tries again.
	skipped, ok := w.guardLog.Allow()
	if !ok {
		return
	}
	w.forwarding = forwarding
	var age zap.Field
	if last := w.last.Load(); last != 0 {
		age = zap.Duration("heartbeat_age", time.Since(time.Unix(0, last)).Round(time.Millisecond))
	} else {
		age = zap.String("heartbeat_age", "none seen")
	}
	fields := []zap.Field{age, zap.Duration("max_lag", w.maxLag), zap.Int64("changes_not_logged", skipped)}
	if forwarding {
		w.log.Warn("mirror data stale: forwarding sessions/info upstream", fields...)
	} else {
		w.log.Warn("mirror data fresh again: answering sessions/info from Redis", fields...)
	}
}
