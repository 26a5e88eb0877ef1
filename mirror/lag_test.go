package mirror

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestLagWatcherFreshness(t *testing.T) {
	var heartbeat atomic.Int64 // unix nanos; 0 = none written
	var failing atomic.Bool
	read := func(context.Context) (time.Time, error) {
		if failing.Load() {
			return time.Time{}, errors.New("connection refused")
		}
		if n := heartbeat.Load(); n != 0 {
			return time.Unix(0, n), nil
		}
		return time.Time{}, errors.New("no heartbeat")
	}
	reg := prometheus.NewRegistry()
	w, err := NewLagWatcher(read, 200*time.Millisecond, 10*time.Millisecond, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually := func(want bool, what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for w.Fresh() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: Fresh() = %v, want %v", what, !want, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if w.Fresh() {
		t.Fatal("Fresh() = true before any heartbeat, want false")
	}
	heartbeat.Store(time.Now().UnixNano())
	eventually(true, "after a new heartbeat")

	// The mirror stops: the last heartbeat ages past max_lag.
	eventually(false, "after the heartbeat aged past max_lag")

	heartbeat.Store(time.Now().UnixNano())
	eventually(true, "after the mirror resumed")

	// Redis unreadable: no newer heartbeat is seen, so the data turns stale.
	failing.Store(true)
	eventually(false, "while the heartbeat cannot be read")
}

func TestLagWatcherLogsGuardStartAndStop(t *testing.T) {
	var heartbeat atomic.Int64
	read := func(context.Context) (time.Time, error) {
		if n := heartbeat.Load(); n != 0 {
			return time.Unix(0, n), nil
		}
		return time.Time{}, errors.New("no heartbeat")
	}
	core, logs := observer.New(zapcore.InfoLevel)
	every := guardLogEvery
	guardLogEvery = time.Second
	t.Cleanup(func() { guardLogEvery = every })
	w, err := NewLagWatcher(read, 100*time.Millisecond, 10*time.Millisecond, zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w.poll(ctx) // no heartbeat: forwarding
	heartbeat.Store(time.Now().UnixNano())
	w.poll(ctx) // fresh, but within the rate limit: not logged
	if got := logs.Len(); got != 1 {
		t.Fatalf("logs after stale then fresh within %v: got %d, want 1", guardLogEvery, got)
	}
	time.Sleep(w.guardLog.Wait()) // the limit has passed
	heartbeat.Store(time.Now().UnixNano())
	w.poll(ctx)
	time.Sleep(150 * time.Millisecond)
	w.poll(ctx) // stale again but rate-limited
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("logs: got %d, want 2", len(all))
	}
	for i, want := range []string{"mirror data stale: forwarding sessions/info upstream", "mirror data fresh again: answering sessions/info from Redis"} {
		if all[i].Message != want || all[i].Level != zapcore.WarnLevel {
			t.Errorf("log %d: got %s %q, want warn %q", i, all[i].Level, all[i].Message, want)
		}
	}
	if n := all[1].ContextMap()["changes_not_logged"]; n != int64(1) {
		t.Errorf("changes_not_logged: got %v, want 1", n)
	}
}
