package proxy

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
)

// metrics holds the proxy's Prometheus collectors. Children are looked up
// once and cached so the hot path does not allocate label strings.
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	tunnelsOpen    prometheus.Gauge
	tunnelsTotal   prometheus.Counter
	handoffs       *prometheus.CounterVec
	loopRequests   prometheus.Counter

	byClass map[string]*classMetrics

	// upstreamLog, when set, turns upstream failures into rate-limited
	// warnings: the counter alone is invisible to someone reading the log.
	upstreamLog *rateLog
}

type classMetrics struct {
	class    string
	requests *prometheus.CounterVec
	duration prometheus.Observer
	mu       sync.Mutex
	byStatus [600]atomic.Pointer[prometheus.Counter]
}

func newMetrics(reg prometheus.Registerer, classes []string) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessiongate", Name: "requests_total",
			Help: "Requests answered, by class (forward, websocket, or an intercepted route) and status code.",
		}, []string{"class", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sessiongate", Name: "request_duration_seconds",
			Help:    "Time from request headers read to response headers ready, by class.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"class"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessiongate", Name: "upstream_errors_total",
			Help: "Upstream failures by kind (connect, timeout, reset, protocol: a malformed upstream response).",
		}, []string{"kind"}),
		tunnelsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sessiongate", Name: "websocket_tunnels_open",
			Help: "WebSocket tunnels open now.",
		}),
		tunnelsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessiongate", Name: "websocket_tunnels_total",
			Help: "WebSocket tunnels opened since start.",
		}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessiongate", Name: "event_loop_handoffs_total",
			Help: "Client connections the event loop handed to the fasthttp path, by the reason of the request that did not fit it (route, websocket, http10, connect, chunked_body, large_body, expect_continue, partial, unparsed, pool_full, retry).",
		}, []string{"reason"}),
		loopRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessiongate", Name: "event_loop_requests_total",
			Help: "Requests the event loop answered itself; the rest of sessiongate_requests_total was answered by the fasthttp path.",
		}),
		byClass: make(map[string]*classMetrics, len(classes)),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.upstreamErrors, m.tunnelsOpen, m.tunnelsTotal, m.handoffs, m.loopRequests} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, c := range classes {
		m.byClass[c] = &classMetrics{class: c, requests: m.requests, duration: m.duration.WithLabelValues(c)}
	}
	return m, nil
}

// observe counts one answered request. Unknown classes are dropped, and
// statuses outside 100–599 are counted as "0" (no answer was written).
func (m *metrics) observe(class string, status int, elapsed time.Duration) {
	cm := m.byClass[class]
	if cm == nil {
		return
	}
	cm.duration.Observe(elapsed.Seconds())
	cm.counter(status).Inc()
}

// observeLoop counts one forwarded request answered by the event loop.
func (m *metrics) observeLoop(status int, elapsed time.Duration) {
	m.loopRequests.Inc()
	m.observe(ClassForward, status, elapsed)
}

func (cm *classMetrics) counter(status int) prometheus.Counter {
	if status < 100 || status >= len(cm.byStatus) {
		status = 0
	}
	if c := cm.byStatus[status].Load(); c != nil {
		return *c
	}
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if c := cm.byStatus[status].Load(); c != nil {
		return *c
	}
	c := cm.requests.WithLabelValues(cm.class, strconv.Itoa(status))
	cm.byStatus[status].Store(&c)
	return c
}

// upstreamFailure counts an upstream failure under its kind's label.
func (m *metrics) upstreamFailure(kind exchange.FailureKind) {
	m.upstreamErrors.WithLabelValues(kind.String()).Inc()
	m.upstreamLog.event(kind.String())
}
