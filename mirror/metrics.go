package mirror

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the mirror's own, served by its admin listener.
type metrics struct {
	events, resyncs, rechecked, revoked prometheus.Counter
	errors                              *prometheus.CounterVec
	verifications                       *prometheus.CounterVec
	verifySeconds                       prometheus.Histogram
	// heartbeat is the last heartbeat written, Unix nanoseconds; 0 before.
	heartbeat atomic.Int64
	// synced: the initial sync (or a resume) is done.
	synced atomic.Bool
	mode   atomic.Value // string
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sessiongate", Subsystem: "mirror",
			Name: "change_events_total", Help: "Change stream events applied (rate(): events/s)."}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sessiongate", Subsystem: "mirror",
			Name: "resyncs_total", Help: "Full syncs after the change stream's history was lost or it was invalidated."}),
		rechecked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sessiongate", Subsystem: "mirror",
			Name: "tokens_rechecked_total", Help: "Recently used tokens re-checked against MongoDB (poll mode)."}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sessiongate", Subsystem: "mirror",
			Name: "tokens_revoked_total", Help: "Recently used tokens found removed from MongoDB by a re-check (poll mode)."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sessiongate", Subsystem: "mirror",
			Name: "errors_total", Help: "Failed mirror cycles, by stage (start, poll, recheck, verify, reconcile, stream)."}, []string{"stage"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sessiongate", Subsystem: "mirror",
			Name: "verifications_total", Help: "Marked tokens the proxies asked about, by result (valid, invalid) (poll mode)."}, []string{"result"}),
		verifySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "sessiongate", Subsystem: "mirror",
			Name: "verify_duration_seconds", Help: "Time from reading a verification to answering it (poll mode).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}}),
	}
	m.mode.Store("")
	if reg == nil {
		return m, nil
	}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "sessiongate", Subsystem: "mirror",
		Name: "lag_seconds", Help: "Age of the last heartbeat this mirror wrote (+Inf: none yet)."},
		func() float64 { return m.lag().Seconds() })
	mode := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "sessiongate", Subsystem: "mirror",
		Name: "change_stream", Help: "1 while following a change stream, 0 in poll mode or before deciding."},
		func() float64 {
			if m.mode.Load() == FollowChangeStream {
				return 1
			}
			return 0
		})
	for _, c := range []prometheus.Collector{m.events, m.resyncs, m.rechecked, m.revoked, m.errors, m.verifications, m.verifySeconds, lag, mode} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) lag() time.Duration {
	hb := m.heartbeat.Load()
	if hb == 0 {
		return time.Duration(math.MaxInt64)
	}
	return time.Since(time.Unix(0, hb))
}

// readyLag is how old the last heartbeat may be for /readyz when
// mirror.max_lag is not set.
const readyLag = 10 * time.Second

// ready is /readyz: the initial sync is done and the mirror is following
// (its heartbeat is recent).
func (m *metrics) ready(maxLag time.Duration) error {
	if !m.synced.Load() {
		return errors.New("initial sync not done")
	}
	if maxLag <= 0 {
		maxLag = readyLag
	}
	if lag := m.lag(); lag > maxLag {
		return fmt.Errorf("not following: last heartbeat %v ago", lag.Round(time.Millisecond))
	}
	return nil
}

// Ready reports nil once the initial sync is done and the mirror is
// following MongoDB; for the admin listener's /readyz.
func (mr *Mirror) Ready(context.Context) error { return mr.m.metrics.ready(mr.m.cfg.MaxLag) }
