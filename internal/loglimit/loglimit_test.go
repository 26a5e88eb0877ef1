package loglimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestAllowOnePerInterval(t *testing.T) {
	l := New(100 * time.Millisecond)
	if n, ok := l.Allow(); !ok || n != 0 {
		t.Fatalf("first event: got (%d, %v), want (0, true)", n, ok)
	}
	for i := range 5 {
		if _, ok := l.Allow(); ok {
			t.Fatalf("event %d within the interval: let through, want refused", i+2)
		}
	}
	if w := l.Wait(); w <= 0 || w > 100*time.Millisecond {
		t.Errorf("Wait within the interval: got %v, want in (0, 100ms]", w)
	}
	time.Sleep(l.Wait())
	if w := l.Wait(); w != 0 {
		t.Errorf("Wait after waiting it out: got %v, want 0", w)
	}
	if n, ok := l.Allow(); !ok || n != 5 {
		t.Fatalf("first event after the interval: got (%d, %v), want (5, true)", n, ok)
	}
	if _, ok := l.Allow(); ok {
		t.Error("event right after a line: let through, want refused")
	}
}

// Many goroutines at once: one line, and every other event counted.
func TestAllowConcurrent(t *testing.T) {
	l := New(time.Hour)
	const goroutines, each = 8, 1000
	var mu sync.Mutex
	lines := 0
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, ok := l.Allow(); ok {
					mu.Lock()
					lines++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if lines != 1 {
		t.Errorf("lines: got %d, want 1", lines)
	}
	if got := l.skipped.Load(); got != goroutines*each-1 {
		t.Errorf("refused events counted: got %d, want %d", got, goroutines*each-1)
	}
}

func ExampleLimiter() {
	l := New(time.Minute)
	for i := range 3 {
		if skipped, ok := l.Allow(); ok {
			fmt.Printf("event %d logged, %d not logged before it\n", i, skipped)
		}
	}
	// Output: event 0 logged, 0 not logged before it
}
