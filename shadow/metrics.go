package shadow

import "github.com/prometheus/client_golang/prometheus"

// metrics holds the shadow's collectors, with one counter child per result
// resolved up front: every result shows from the start, at 0, so alerts on
// a rate of mismatches work before the first one.
type metrics struct {
	results [numResults]prometheus.Counter
}

// newMetrics creates the collectors and registers them on reg, if not nil;
// inflight reports the comparisons running.
func newMetrics(reg prometheus.Registerer, inflight func() int64) (*metrics, error) {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "sessiongate", Subsystem: "shadow", Name: "total",
		Help: "Shadow comparisons of the route's answer with the upstream's, by result (match, json_equal_bytes_differ, mismatch_status, mismatch_body, mismatch_header, upstream_error, dropped, upstream_lacks_route).",
	}, []string{"result"})
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "sessiongate", Subsystem: "shadow", Name: "inflight",
		Help: "Shadow comparisons running now (at most sessions.shadow.max_inflight).",
	}, func() float64 { return float64(inflight()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{total, running} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m := &metrics{}
	for r := range numResults {
		m.results[r] = total.WithLabelValues(r.String())
	}
	return m, nil
}

func (m *metrics) count(r result) { m.results[r].Inc() }
