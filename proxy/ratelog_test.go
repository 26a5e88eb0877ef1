package proxy

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRateLogSummarises: the first event is logged at once; the events
// within the interval after it come as one line with their count by kind;
// none is lost.
func TestRateLogSummarises(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	r := newRateLog(zap.New(core), "upstream errors", 200*time.Millisecond)
	r.event("connect")
	for range 50 {
		r.event("connect")
	}
	for range 7 {
		r.event("timeout")
	}
	if got := logs.Len(); got != 1 {
		t.Fatalf("got %d lines right after 58 events, want 1 (the first)", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	entries := logs.AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("got %d lines, want 2", len(entries))
	}
	first, second := entries[0].ContextMap(), entries[1].ContextMap()
	if entries[0].Level != zapcore.WarnLevel || first["count"] != uint64(1) {
		t.Errorf("first line: got %v %v, want warn with count 1", entries[0].Level, first)
	}
	kinds, _ := second["kinds"].(map[string]uint64)
	if second["count"] != uint64(57) || kinds["connect"] != 50 || kinds["timeout"] != 7 {
		t.Errorf("second line: got %v, want count 57 (connect 50, timeout 7)", second)
	}
	r.event("reset")
	r.flushNow()
	if logs.Len() != 3 {
		t.Errorf("flushNow: got %d lines, want 3", logs.Len())
	}
	var nilLog *rateLog
	nilLog.event("connect") // a nil rateLog drops events
}
