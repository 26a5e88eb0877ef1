// Package admin is the admin listener both commands run on admin.listen:
// liveness, readiness and Prometheus metrics (and, when asked, pprof), with
// net/http, off the client-facing hot path (promhttp speaks net/http).
// What "ready" means comes in through Options: the proxy is ready while it
// serves, the mirror once it follows MongoDB.
package admin

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
)

// checkTimeout bounds each dependency check /readyz runs.
const checkTimeout = time.Second

// Report is the answer of /readyz: 200 when Ready, else 503, with the
// other fields as its JSON body.
type Report struct {
	// Ready picks the status code; it is not in the body.
	Ready bool `json:"-"`
	// Status is a word for people: "ready" when empty and Ready, "not
	// ready" when empty and not, "shutting down" once SetReady(false).
	Status string `json:"status"`
	// Mode is the mirror's way of following MongoDB; empty is left out.
	Mode string `json:"mode,omitempty"`
	// Reason says why the process is not ready; empty is left out.
	Reason string `json:"reason,omitempty"`
	// Checks holds each Options.Checks probe's result, "ok" or
	// "error: ..."; empty is left out.
	Checks map[string]string `json:"checks,omitempty"`
}

// Options configures a Server.
type Options struct {
	// Gatherer is what /metrics serves. Required.
	Gatherer prometheus.Gatherer
	// Pprof serves net/http/pprof under /debug/pprof/. Default false.
	Pprof bool
	// Ready says whether the process is ready, for /readyz; it is called
	// once per request and must be safe for concurrent use. Default:
	// ready.
	Ready func(context.Context) Report
	// Checks are named dependency probes (e.g. "redis") /readyz runs with
	// a one-second deadline each and reports in its body. A failing one
	// does not fail readiness: the proxy serves everything but one route
	// without Redis. Default none.
	Checks map[string]func(context.Context) error
}

// Server serves the admin endpoints on its own listener:
//
//	GET /healthz  200 while the process runs
//	GET /readyz   200 while Options.Ready says so and until SetReady(false),
//	              503 otherwise (see Report)
//	GET /metrics  Prometheus text format from Options.Gatherer
//
// A Server starts ready (SetReady(false) when shutdown begins). Its
// methods are safe for concurrent use.
type Server struct {
	opts     Options
	stopping atomic.Bool
	server   *http.Server
}

// New builds the admin server.
func New(opts Options) *Server {
	s := &Server{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	s.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	return s
}

// Handler returns the server's handler, for in-process tests.
func (s *Server) Handler() http.Handler { return s.server.Handler }

// SetReady(false) makes /readyz answer 503 "shutting down" whatever
// Options.Ready says, so load balancers stop sending traffic while the
// process drains; SetReady(true) undoes it.
func (s *Server) SetReady(ready bool) { s.stopping.Store(!ready) }

// Serve serves on ln until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.server.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// Shutdown stops the admin server within ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.server.Shutdown(ctx) }

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rep := Report{Ready: true}
	if s.opts.Ready != nil {
		rep = s.opts.Ready(r.Context())
	}
	if len(s.opts.Checks) > 0 {
		rep.Checks = make(map[string]string, len(s.opts.Checks))
	}
	for name, check := range s.opts.Checks {
		ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
		if err := check(ctx); err != nil {
			rep.Checks[name] = "error: " + err.Error()
		} else {
			rep.Checks[name] = "ok"
		}
		cancel()
	}
	if s.stopping.Load() {
		rep.Ready, rep.Status = false, "shutting down"
	}
	code := http.StatusOK
	switch {
	case !rep.Ready:
		code = http.StatusServiceUnavailable
		if rep.Status == "" {
			rep.Status = "not ready"
		}
	case rep.Status == "":
		rep.Status = "ready"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(rep)
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
