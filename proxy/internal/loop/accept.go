package loop

import (
	"errors"
	"syscall"
	"time"
)

// What the process does when accept fails, on both request paths.
//
// When the process runs out of file descriptors (EMFILE, ENFILE) or the
// kernel out of memory for a socket (ENOBUFS, ENOMEM), the waiting
// connection stays in the listen queue and the listening socket stays
// readable: retrying at once spins a core and, logged each time, fills the
// disk. The rule is net/http's (Server.Serve): wait 5 ms, doubling to 1 s,
// back to 5 ms after an accept succeeds. Open connections are served
// meanwhile, and the queue is taken up again once descriptors are free.
// ECONNABORTED (the client gave up while queued) concerns one connection
// only and is retried at once. Every failure is counted in
// sessiongate_accept_errors_total by the caller, whose log says so at a
// limited rate.

const (
	acceptDelayMin = 5 * time.Millisecond
	acceptDelayMax = time.Second
)

// AcceptErrorReason names a failed accept for the metric, and says whether
// it is worth waiting for: the resource errors are, an aborted connection
// is retried at once. Any other error ("other") is not temporary: the
// fasthttp path's listener returns it (it ends Serve, as a closed listener
// does).
func AcceptErrorReason(err error) (reason string, wait bool) {
	switch {
	case errors.Is(err, syscall.EMFILE):
		return "emfile", true
	case errors.Is(err, syscall.ENFILE):
		return "enfile", true
	case errors.Is(err, syscall.ENOBUFS):
		return "enobufs", true
	case errors.Is(err, syscall.ENOMEM):
		return "enomem", true
	case errors.Is(err, syscall.ECONNABORTED):
		return "econnaborted", false
	}
	return "other", true
}

// AcceptPace is the wait between failed accepts. Its zero value is ready;
// it is not safe for concurrent use (each accepting goroutine or event
// loop has its own).
type AcceptPace struct{ delay time.Duration }

// Next returns how long to wait after another failure.
func (a *AcceptPace) Next() time.Duration {
	if a.delay == 0 {
		a.delay = acceptDelayMin
	} else if a.delay *= 2; a.delay > acceptDelayMax {
		a.delay = acceptDelayMax
	}
	return a.delay
}

// Reset is called after an accept succeeded.
func (a *AcceptPace) Reset() { a.delay = 0 }
