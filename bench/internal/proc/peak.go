//go:build linux

package proc

import "time"

// Peak samples a memory reading every 20 ms until stopped and keeps the
// maximum: a check on VmHWM, and the only peak there is for a process tree.
type Peak struct {
	stopc chan struct{}
	done  chan struct{}
	max   int64
}

// SamplePeak starts sampling read, once at once and then every 20 ms, in
// its own goroutine until Stop.
func SamplePeak(read func() int64) *Peak {
	s := &Peak{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := read(); v > s.max {
				s.max = v
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling, waits for the goroutine and returns the largest
// reading. Call it once.
func (s *Peak) Stop() int64 {
	close(s.stopc)
	<-s.done
	return s.max
}
