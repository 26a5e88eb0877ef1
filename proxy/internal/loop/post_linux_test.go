package loop

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestPostWakesAParkedLoop: work posted to a loop runs, whether the loop
// is busy or parked with nothing to watch (no deadline: only the post can
// wake it), from several goroutines at once, and Shutdown of an idle loop
// returns.
func TestPostWakesAParkedLoop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Start(ln, Options{Loops: 1, MaxHeaderBytes: 4096, Log: zap.NewNop()})
	if err != nil || e == nil {
		t.Fatalf("start: %v, %v", e, err)
	}
	l := e.loops[0]
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			ran := make(chan struct{})
			for i := range 500 {
				if !l.post(func() { ran <- struct{}{} }) {
					t.Errorf("goroutine %d, post %d: the loop has ended", g, i)
					return
				}
				select {
				case <-ran:
				case <-time.After(10 * time.Second):
					t.Errorf("goroutine %d, post %d: not run in 10 s", g, i)
					return
				}
				if i%50 == 0 {
					time.Sleep(time.Millisecond) // let the loop park
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- e.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("shutdown of an idle loop: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown of an idle loop: still waiting after 20 s")
	}
	if l.post(func() {}) {
		t.Error("post after the loop ended: got true, want false")
	}
}
