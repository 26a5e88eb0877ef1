package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// start serves s on a loopback port and returns its base URL and address.
func start(t *testing.T, s *Server) (string, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve after Shutdown: got %v, want nil", err)
		}
	})
	return "http://" + ln.Addr().String(), ln.Addr().String()
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "admin_test_total", Help: "A test counter."}))
	var redisDown atomic.Bool
	s := New(Options{
		Gatherer: reg,
		Checks: map[string]func(context.Context) error{"redis": func(context.Context) error {
			if redisDown.Load() {
				return errors.New("connection refused")
			}
			return nil
		}},
	})
	base, _ := start(t, s)

	if code, h, body := get(t, base+"/healthz"); code != 200 || body != `{"status":"ok"}` || h.Get("Content-Type") != "application/json" {
		t.Errorf("/healthz: got %d %q %q, want 200 {\"status\":\"ok\"} application/json", code, body, h.Get("Content-Type"))
	}

	tests := []struct {
		name      string
		redisDown bool
		stopping  bool
		wantCode  int
		wantBody  string
	}{
		{"ready", false, false, 200, `{"status":"ready","checks":{"redis":"ok"}}`},
		// A failing dependency is reported but does not fail readiness.
		{"redis down", true, false, 200, `{"status":"ready","checks":{"redis":"error: connection refused"}}`},
		{"shutting down", false, true, 503, `{"status":"shutting down","checks":{"redis":"ok"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redisDown.Store(tt.redisDown)
			s.SetReady(!tt.stopping)
			code, h, body := get(t, base+"/readyz")
			if code != tt.wantCode || strings.TrimSpace(body) != tt.wantBody {
				t.Errorf("/readyz: got %d %s, want %d %s", code, body, tt.wantCode, tt.wantBody)
			}
			if h.Get("Cache-Control") != "no-store" || h.Get("Content-Type") != "application/json" {
				t.Errorf("/readyz headers: got %v, want no-store JSON", h)
			}
		})
	}

	if code, _, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "admin_test_total 0") {
		t.Errorf("/metrics: got %d %q, want 200 with admin_test_total", code, body)
	}
	if code, _, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without Pprof: got %d, want 404", code)
	}
}

// The mirror's readiness: a Ready function with a mode and a reason.
func TestReadyFunction(t *testing.T) {
	var ready atomic.Bool
	s := New(Options{
		Gatherer: prometheus.NewRegistry(),
		Pprof:    true,
		Ready: func(context.Context) Report {
			if ready.Load() {
				return Report{Ready: true, Mode: "poll"}
			}
			return Report{Mode: "poll", Reason: "initial sync running"}
		},
	})
	base, _ := start(t, s)
	if code, _, body := get(t, base+"/readyz"); code != 503 || strings.TrimSpace(body) != `{"status":"not ready","mode":"poll","reason":"initial sync running"}` {
		t.Errorf("/readyz not ready: got %d %s", code, body)
	}
	ready.Store(true)
	if code, _, body := get(t, base+"/readyz"); code != 200 || strings.TrimSpace(body) != `{"status":"ready","mode":"poll"}` {
		t.Errorf("/readyz ready: got %d %s", code, body)
	}
	if code, _, _ := get(t, base+"/debug/pprof/cmdline"); code != 200 {
		t.Errorf("/debug/pprof/cmdline with Pprof: got %d, want 200", code)
	}
}

func TestProbe(t *testing.T) {
	s := New(Options{Gatherer: prometheus.NewRegistry()})
	_, addr := start(t, s)
	_, port, _ := net.SplitHostPort(addr)
	ctx := context.Background()
	// An unspecified host means this machine, as in admin.listen ":9090".
	for _, listen := range []string{addr, ":" + port, "0.0.0.0:" + port} {
		if err := Probe(ctx, listen); err != nil {
			t.Errorf("Probe(%q) while ready: %v", listen, err)
		}
	}
	s.SetReady(false)
	if err := Probe(ctx, addr); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("Probe while shutting down: got %v, want a 503 error", err)
	}
	if err := Probe(ctx, "no-port"); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Errorf("Probe(no-port): got %v, want an admin.listen error", err)
	}
}
