package proxy

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/internal/loglimit"
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
// sessiongate_accept_errors_total; the log says so at most once per
// acceptLogEvery, with the number of failures it did not log.

const (
	acceptDelayMin = 5 * time.Millisecond
	acceptDelayMax = time.Second
	acceptLogEvery = 5 * time.Second
)

// acceptErrorReason names a failed accept for the metric, and says whether
// it is worth waiting for: the resource errors are, an aborted connection
// is retried at once. Any other error ("other") is not temporary: the
// fasthttp path's listener returns it (it ends Serve, as a closed listener
// does).
func acceptErrorReason(err error) (reason string, wait bool) {
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

// acceptPace is the wait between failed accepts. Its zero value is ready;
// it is not safe for concurrent use (each accepting goroutine or event
// loop has its own).
type acceptPace struct{ delay time.Duration }

// next returns how long to wait after another failure.
func (a *acceptPace) next() time.Duration {
	if a.delay == 0 {
		a.delay = acceptDelayMin
	} else if a.delay *= 2; a.delay > acceptDelayMax {
		a.delay = acceptDelayMax
	}
	return a.delay
}

// reset is called after an accept succeeded.
func (a *acceptPace) reset() { a.delay = 0 }

// acceptErrors counts and logs failed accepts; it is safe for concurrent
// use by the event loops and the fasthttp path's listener.
type acceptErrors struct {
	log     *zap.Logger
	counter *prometheus.CounterVec
	limit   *loglimit.Limiter
}

func newAcceptErrors(log *zap.Logger, reg prometheus.Registerer) (*acceptErrors, error) {
	a := &acceptErrors{
		log:   log,
		limit: loglimit.New(acceptLogEvery),
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessiongate", Name: "accept_errors_total",
			Help: "Failed accepts of client connections, by reason (emfile, enfile: out of file descriptors; enobufs, enomem: out of socket memory; econnaborted; other). Accepting pauses 5 ms to 1 s after each.",
		}, []string{"reason"}),
	}
	if err := reg.Register(a.counter); err != nil {
		return nil, err
	}
	return a, nil
}

// report counts one failed accept and logs it unless a line was written
// less than acceptLogEvery ago; the next line carries the number skipped.
func (a *acceptErrors) report(reason string, err error, retryIn time.Duration) {
	a.counter.WithLabelValues(reason).Inc()
	skipped, ok := a.limit.Allow()
	if !ok {
		return
	}
	a.log.Warn("accept failing, serving the open connections",
		zap.String("reason", reason), zap.Error(err),
		zap.Duration("retry_in", retryIn), zap.Int64("not_logged", skipped))
}

// retryListener is the fasthttp path's listener: fasthttp's Server.Serve
// returns on any accept error it does not take for a timeout, which would
// end the process on EMFILE. Accept waits out temporary failures instead.
type retryListener struct {
	net.Listener
	errs *acceptErrors
	once sync.Once
	done chan struct{}
}

func newRetryListener(ln net.Listener, errs *acceptErrors) *retryListener {
	return &retryListener{Listener: ln, errs: errs, done: make(chan struct{})}
}

// Accept returns the next connection, waiting out resource errors; it
// returns the listener's error once it is closed, or on an error that is
// not temporary.
func (l *retryListener) Accept() (net.Conn, error) {
	var pace acceptPace
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		reason, wait := acceptErrorReason(err)
		if reason == "other" {
			return nil, err
		}
		if !wait {
			l.errs.report(reason, err, 0)
			continue
		}
		d := pace.next()
		l.errs.report(reason, err, d)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener and ends a wait in Accept.
func (l *retryListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}
