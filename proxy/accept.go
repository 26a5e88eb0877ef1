package proxy

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/internal/loglimit"
	"github.com/sessiongate/sessiongate/proxy/internal/loop"
)

// What the process does when accept fails, on both request paths: the
// rule (which errors wait, and how long) is proxy/internal/loop's
// AcceptErrorReason and AcceptPace; every failure is counted in
// sessiongate_accept_errors_total, and the log says so at most once per
// acceptLogEvery, with the number of failures it did not log.

const acceptLogEvery = 5 * time.Second

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
	var pace loop.AcceptPace
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		reason, wait := loop.AcceptErrorReason(err)
		if reason == "other" {
			return nil, err
		}
		if !wait {
			l.errs.report(reason, err, 0)
			continue
		}
		d := pace.Next()
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
