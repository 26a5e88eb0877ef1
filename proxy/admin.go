package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Admin serves probes and metrics on their own listener, with net/http: it
// is off the hot path and promhttp speaks net/http.
//
//	GET /healthz  200 while the process runs
//	GET /readyz   200 while serving, 503 once shutdown began; a failing
//	              dependency check is reported in the body but does not fail
//	              readiness (everything but one route still works without Redis)
//	GET /metrics  Prometheus text format
type Admin struct {
	ready    atomic.Bool
	checks   map[string]func(context.Context) error
	server   *http.Server
	log      *zap.Logger
	gatherer prometheus.Gatherer
}

// NewAdmin builds the admin server. checks are named dependency probes
// (e.g. "redis") run by /readyz with a short deadline each.
// With pprof, net/http/pprof is served under /debug/pprof/.
func NewAdmin(log *zap.Logger, gatherer prometheus.Gatherer, pprof bool, checks map[string]func(context.Context) error) *Admin {
	a := &Admin{checks: checks, log: log.Named("admin"), gatherer: gatherer}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	a.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	return a
}

// SetReady marks the process ready (or, at shutdown, not ready).
func (a *Admin) SetReady(ready bool) { a.ready.Store(ready) }

// Serve serves on ln until Shutdown; it returns nil after Shutdown.
func (a *Admin) Serve(ln net.Listener) error {
	if err := a.server.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// Shutdown stops the admin server within ctx.
func (a *Admin) Shutdown(ctx context.Context) error { return a.server.Shutdown(ctx) }

func (a *Admin) readyz(w http.ResponseWriter, r *http.Request) {
	body := struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks,omitempty"`
	}{Status: "ready", Checks: map[string]string{}}
	for name, check := range a.checks {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		if err := check(ctx); err != nil {
			body.Checks[name] = "error: " + err.Error()
		} else {
			body.Checks[name] = "ok"
		}
		cancel()
	}
	code := http.StatusOK
	if !a.ready.Load() {
		code = http.StatusServiceUnavailable
		body.Status = "shutting down"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}

// Probe asks the admin listener at listen (an admin.listen value; an empty
// or unspecified host means this machine) whether the process is ready, for
// `sessiongate healthcheck` in images without a shell or curl. It returns nil
// on 200 from /readyz.
func Probe(ctx context.Context, listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}
