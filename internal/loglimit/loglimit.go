// Package loglimit keeps a log readable through an outage: about events
// that may come by the thousand (failed accepts, upstream or Redis
// failures, a flapping mirror), one line per interval gets written and the
// events in between are counted, the count going into the next line. The
// metrics count every event; the log only has to say that it happens.
package loglimit

import (
	"sync/atomic"
	"time"
)

// Limiter lets one log line through per interval and counts the events it
// refuses. It is safe for concurrent use and does not allocate; it reads
// the monotonic clock, so a wall-clock step neither floods nor silences
// the log.
type Limiter struct {
	every time.Duration
	start time.Time
	// last is when the last line was let through, in nanoseconds since
	// start plus one; 0 until the first.
	last    atomic.Int64
	skipped atomic.Int64
}

// New returns a Limiter letting one line through per every.
func New(every time.Duration) *Limiter {
	return &Limiter{every: every, start: time.Now()}
}

// Allow reports whether to write a line now: yes for the first event and
// for the first one after every has passed since the last line let
// through. When it says yes, skipped is the number of events it refused
// since the previous line.
func (l *Limiter) Allow() (skipped int64, ok bool) {
	now := int64(time.Since(l.start)) + 1
	last := l.last.Load()
	if last != 0 && now-last < int64(l.every) || !l.last.CompareAndSwap(last, now) {
		l.skipped.Add(1)
		return 0, false
	}
	return l.skipped.Swap(0), true
}

// Wait returns how long until Allow will let a line through; 0 when it
// would now.
func (l *Limiter) Wait() time.Duration {
	last := l.last.Load()
	if last == 0 {
		return 0
	}
	return max(0, time.Duration(last-1)+l.every-time.Since(l.start))
}
