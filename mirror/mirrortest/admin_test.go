package mirrortest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessiongate/sessiongate/admin"
	"github.com/sessiongate/sessiongate/mirror"
)

// startMirror runs mirror.New + Run with the admin listener main gives it
// on an httptest server.
func startMirror(t *testing.T, e *env, follow string) (*httptest.Server, *observer.ObservedLogs) {
	t.Helper()
	cfg := e.config("rc:")
	cfg.Mirror.Follow = follow
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	mr, err := mirror.New(cfg, zap.New(core), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = mr.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(admin.New(admin.Options{Gatherer: reg, Ready: mr.Readiness}).Handler())
	t.Cleanup(srv.Close)
	return srv, logs
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// FerretDB has no change streams: auto polls, says so and what is lost,
// and turns ready once the initial sync is done.
func TestAutoFallsBackToPollWithWarning(t *testing.T) {
	e := newEnv(t)
	srv, logs := startMirror(t, e, mirror.FollowAuto)
	eventually(t, 30*time.Second, "/readyz 200", func() bool {
		code, _ := httpGet(t, srv.URL+"/readyz")
		return code == http.StatusOK
	})
	warn := logs.FilterMessageSnippet("polling instead").All()
	if len(warn) != 1 || warn[0].Level != zapcore.WarnLevel {
		t.Fatalf("fallback warnings: got %v, want one warning", warn)
	}
	if lost, _ := warn[0].ContextMap()["lost"].(string); !strings.Contains(lost, "reconciliation") {
		t.Errorf("fallback warning's lost: got %q, want what waits for reconciliation", lost)
	}
	if code, _ := httpGet(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: got %d, want 200", code)
	}
	_, metrics := httpGet(t, srv.URL+"/metrics")
	for _, name := range []string{"sessiongate_mirror_lag_seconds", "sessiongate_mirror_change_events_total",
		"sessiongate_mirror_resyncs_total", "sessiongate_mirror_tokens_rechecked_total",
		"sessiongate_mirror_tokens_revoked_total", "sessiongate_mirror_change_stream 0"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

// change_stream on a server without them never turns ready, and says why
// with the retry schedule.
func TestChangeStreamModeWithoutChangeStreamsIsNotReady(t *testing.T) {
	e := newEnv(t)
	srv, logs := startMirror(t, e, mirror.FollowChangeStream)
	eventually(t, 30*time.Second, "failure logged", func() bool {
		return logs.FilterMessage("change stream failed, retrying").Len() > 0
	})
	entry := logs.FilterMessage("change stream failed, retrying").All()[0]
	if _, ok := entry.ContextMap()["retry"]; !ok {
		t.Errorf("failure log has no retry schedule: %v", entry.ContextMap())
	}
	if code, body := httpGet(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz: got %d %s, want 503", code, body)
	}
}

// An unreachable MongoDB is logged within seconds, with the schedule.
func TestUnreachableMongoLoggedAtOnce(t *testing.T) {
	e := &env{redisAddr: startRedis(t), mongoURL: "mongodb://127.0.0.1:1/?connectTimeoutMS=500"}
	began := time.Now()
	_, logs := startMirror(t, e, mirror.FollowAuto)
	eventually(t, 15*time.Second, "unreachable logged", func() bool {
		return logs.FilterMessage("MongoDB unreachable, retrying").Len() > 0
	})
	took := time.Since(began)
	t.Logf("unreachable MongoDB logged after %v", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("logged after %v, want within 10s", took)
	}
}
