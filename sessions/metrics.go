package sessions

import "github.com/prometheus/client_golang/prometheus"

// outcome is how one request on the route ended; it labels
// sessiongate_sessions_info_total.
type outcome uint8

const (
	outcomeOK outcome = iota
	outcomeUnauthorized
	outcomeInvalid
	outcomeNotFound
	outcomeErrorForwarded
	outcomeErrorUnavailable
	outcomeStaleForwarded
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	outcomeOK:               "ok",
	outcomeUnauthorized:     "unauthorized",
	outcomeInvalid:          "invalid",
	outcomeNotFound:         "not_found",
	outcomeErrorForwarded:   "redis_error_forwarded",
	outcomeErrorUnavailable: "redis_error_unavailable",
	outcomeStaleForwarded:   "stale_forwarded",
}

func (o outcome) String() string { return outcomeNames[o] }

// metrics holds the route's collectors, with one counter child per outcome
// resolved up front so counting allocates nothing.
type metrics struct {
	outcomes     [numOutcomes]prometheus.Counter
	redisSeconds prometheus.Observer
}

// newMetrics creates the collectors and registers them on reg, if not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessiongate", Subsystem: "sessions_info", Name: "total",
		Help: "Requests on GET /api/v1/sessions/info by outcome (ok, unauthorized, invalid, not_found, redis_error_forwarded, redis_error_unavailable, stale_forwarded).",
	}, []string{"outcome"})
	redisSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "sessiongate", Subsystem: "sessions_info", Name: "redis_duration_seconds",
		Help:    "Duration of the route's one Redis round trip per request, failures included.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{total, redisSeconds} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m := &metrics{redisSeconds: redisSeconds}
	for o := range numOutcomes {
		m.outcomes[o] = total.WithLabelValues(o.String())
	}
	return m, nil
}

func (m *metrics) count(o outcome) { m.outcomes[o].Inc() }
