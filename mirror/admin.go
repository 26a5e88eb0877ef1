package mirror

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves the mirror's admin listener:
//
//	GET /healthz  200 while the process runs
//	GET /readyz   200 once the initial sync is done and the mirror follows
//	              MongoDB (its last heartbeat is at most mirror.max_lag, or
//	              10s, old); 503 with the reason otherwise
//	GET /metrics  Prometheus text format from gatherer
func (mr *Mirror) AdminHandler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := struct {
			Status string `json:"status"`
			Mode   string `json:"mode,omitempty"`
			Reason string `json:"reason,omitempty"`
		}{Status: "ready"}
		body.Mode, _ = mr.m.metrics.mode.Load().(string)
		code := http.StatusOK
		if err := mr.Ready(r.Context()); err != nil {
			code, body.Status, body.Reason = http.StatusServiceUnavailable, "not ready", err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}
