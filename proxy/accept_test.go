package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// failingListener fails Accept with errs in turn, then accepts on ln.
type failingListener struct {
	net.Listener
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

func newAcceptErrorsForTest(t *testing.T) (*acceptErrors, *observer.ObservedLogs, *prometheus.Registry) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	a, err := newAcceptErrors(zap.New(core), reg)
	if err != nil {
		t.Fatal(err)
	}
	return a, logs, reg
}

// acceptErrorCount reads sessiongate_accept_errors_total{reason} from reg.
func acceptErrorCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestRetryListenerWaitsOutResourceErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	aborted := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}
	errs, logs, reg := newAcceptErrorsForTest(t)
	rl := newRetryListener(&failingListener{Listener: ln, errs: []error{emfile, emfile, aborted, emfile}}, errs)
	defer rl.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := rl.Accept()
	if err != nil {
		t.Fatalf("Accept: got %v, want the connection after the failures", err)
	}
	c.Close()
	if got := acceptErrorCount(t, reg, "emfile"); got != 3 {
		t.Errorf(`accept_errors_total{reason="emfile"}: got %v, want 3`, got)
	}
	if got := acceptErrorCount(t, reg, "econnaborted"); got != 1 {
		t.Errorf(`accept_errors_total{reason="econnaborted"}: got %v, want 1`, got)
	}
	if got := logs.Len(); got != 1 {
		t.Errorf("log lines for 4 failures in a row: got %d, want 1", got)
	}
}

func TestRetryListenerCloseEndsTheWait(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emfile := os.NewSyscallError("accept4", syscall.EMFILE)
	fails := make([]error, 20) // waits adding up to more than 10 s
	for i := range fails {
		fails[i] = emfile
	}
	errs, _, _ := newAcceptErrorsForTest(t)
	rl := newRetryListener(&failingListener{Listener: ln, errs: fails}, errs)
	done := make(chan error, 1)
	go func() { _, err := rl.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	rl.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: got %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waiting 5 s after Close")
	}
}

func TestRetryListenerReturnsOtherErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errs, _, _ := newAcceptErrorsForTest(t)
	bad := os.NewSyscallError("accept4", syscall.EINVAL)
	rl := newRetryListener(&failingListener{Listener: ln, errs: []error{bad}}, errs)
	if _, err := rl.Accept(); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Accept: got %v, want EINVAL returned", err)
	}
}
