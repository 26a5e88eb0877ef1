package mirror

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
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
