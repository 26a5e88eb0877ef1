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

// Results of a verification, labelling
// sessiongate_sessions_info_verify_total.
const (
	verifyValid = iota
	verifyInvalid
	verifyError
	numVerifyResults
)

var verifyResultNames = [numVerifyResults]string{verifyValid: "valid", verifyInvalid: "invalid", verifyError: "error"}

// metrics holds the route's collectors, with one counter child per outcome
// resolved up front so counting allocates nothing.
type metrics struct {
	outcomes     [numOutcomes]prometheus.Counter
	redisSeconds prometheus.Observer

	verifications [numVerifyResults]prometheus.Counter
	verifySeconds prometheus.Observer
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
	verifications := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessiongate", Subsystem: "sessions_info", Name: "verify_total",
		Help: "Marked tokens the route asked the mirror about, by result (valid, invalid, error: no answer in route.verify_timeout or Redis failed).",
	}, []string{"result"})
	verifySeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "sessiongate", Subsystem: "sessions_info", Name: "verify_duration_seconds",
		Help:    "Duration of the route's verification round trip to the mirror, failures included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{total, redisSeconds, verifications, verifySeconds} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m := &metrics{redisSeconds: redisSeconds, verifySeconds: verifySeconds}
	for r := range numVerifyResults {
		m.verifications[r] = verifications.WithLabelValues(verifyResultNames[r])
	}
	for o := range numOutcomes {
		m.outcomes[o] = total.WithLabelValues(o.String())
	}
	return m, nil
}

func (m *metrics) count(o outcome) { m.outcomes[o].Inc() }
