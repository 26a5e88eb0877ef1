package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// TestBodyFailuresCountAlike: an upstream that fails after its response
// started is counted under the same kind of
// sessiongate_upstream_errors_total on both request paths, and the client
// sees the body cut short: a malformed chunked body is "protocol", an
// upstream silent mid-body for upstream.response_header_timeout is
// "timeout".
func TestBodyFailuresCountAlike(t *testing.T) {
	cases := []struct {
		name  string
		steps []fwdStep
		kind  string
	}{
		{"malformed chunk", []fwdStep{
			{0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"},
			{3 * time.Second, ""},
		}, "protocol"},
		{"silent mid-body", []fwdStep{
			{0, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + strings.Repeat("x", 10)},
			{3 * time.Second, ""},
		}, "timeout"},
	}
	for _, loop := range []bool{true, false} {
		if loop && runtime.GOOS != "linux" {
			t.Log("SKIPPED the event loop's half: it runs on Linux only")
			continue
		}
		for _, tc := range cases {
			t.Run(tc.name+"/event_loop="+strconv.FormatBool(loop), func(t *testing.T) {
				up := fwdSlowUpstream(t, [][]fwdStep{tc.steps})
				addr, p := fwdStartProxy(t, "http://"+up, withResponseHeaderTimeout(time.Second),
					func(o *Options) { o.EventLoop = loop })
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "GET /api/v1/me HTTP/1.1\r\nHost: chat.example\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(c)
				if err != nil {
					t.Fatalf("the client connection was not closed: %v", err)
				}
				if !strings.HasPrefix(string(got), "HTTP/1.1 200 OK\r\n") || strings.Contains(string(got), "\r\n0\r\n\r\n") {
					t.Fatalf("want a 200 cut short, got %q", got)
				}
				counter := p.metrics.upstreamErrors.WithLabelValues(tc.kind)
				for wait := time.Now().Add(2 * time.Second); counterValue(t, counter) == 0 && time.Now().Before(wait); {
					time.Sleep(10 * time.Millisecond)
				}
				if n := counterValue(t, counter); n != 1 {
					t.Errorf("upstream_errors_total{kind=%q} = %v, want 1", tc.kind, n)
				}
				if served := counterValue(t, p.metrics.loopRequests); loop != (served > 0) {
					t.Errorf("event loop requests = %v with the loop %v", served, loop)
				}
			})
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestExchangeFailureKinds: the errors the engines meet map to the kinds
// (and so the answers and labels) docs/forwarding.md lists.
func TestExchangeFailureKinds(t *testing.T) {
	for _, tt := range []struct {
		name   string
		e      *upstreamError
		kind   string
		status int
	}{
		{"dial refused", connectFailure(errors.New("connection refused")), "connect", 502},
		{"dial timeout", connectFailure(os.ErrDeadlineExceeded), "timeout", 504},
		{"pool full until the deadline", connectFailure(errPoolTimeout), "timeout", 504},
		{"pool closed", connectFailure(errPoolClosed), "connect", 502},
		{"closed before answering", exchangeFailure(errors.Join(errNoResponse, io.EOF)), "reset", 502},
		{"head too large", exchangeFailure(h1.ErrHeadTooLarge), "protocol", 502},
		{"malformed head", exchangeFailure(fmt.Errorf("%w: x", h1.ErrBadResponse)), "protocol", 502},
		{"unasked 101", exchangeFailure(errUnaskedSwitch), "protocol", 502},
		{"waited too long", exchangeFailure(os.ErrDeadlineExceeded), "timeout", 504},
		{"body cut short", exchangeFailure(io.ErrUnexpectedEOF), "reset", 502},
		{"already classed", exchangeFailure(fmt.Errorf("wrapped: %w", upstreamFailure(failConnect, nil))), "connect", 502},
	} {
		status, _ := tt.e.kind.answer()
		if tt.e.kind.String() != tt.kind || status != tt.status {
			t.Errorf("%s: got %s %d, want %s %d", tt.name, tt.e.kind, status, tt.kind, tt.status)
		}
	}
}

// TestExchangeRules: framing, reuse and retry as docs/forwarding.md states
// them.
func TestExchangeRules(t *testing.T) {
	cl := h1.Framing{Length: 5}
	if m := responseBodyMode(200, true, cl); m != bodyNone {
		t.Errorf("HEAD: %v", m)
	}
	for _, st := range []int{204, 304} {
		if m := responseBodyMode(st, false, cl); m != bodyNone {
			t.Errorf("%d: %v", st, m)
		}
	}
	if m := responseBodyMode(200, false, h1.Framing{Length: -1}); m != bodyUntilClose || !chunkedForClient(m) {
		t.Errorf("no length: %v", m)
	}
	if m := responseBodyMode(200, false, h1.Framing{Length: -1, Chunked: true}); m != bodyChunked {
		t.Errorf("chunked: %v", m)
	}
	for st, want := range map[int]bool{100: true, 102: true, 103: true, 200: false} {
		if skip, err := interimResponse(st); skip != want || err != nil {
			t.Errorf("interim %d: %v %v", st, skip, err)
		}
	}
	if _, err := interimResponse(101); err == nil {
		t.Error("an unasked 101 passed")
	}
	if !bufferWhole(bodyFixed, maxBufferedBody) || bufferWhole(bodyFixed, maxBufferedBody+1) || bufferWhole(bodyChunked, 0) {
		t.Error("bufferWhole")
	}
	if !reusable(cl, bodyFixed, true, false) || reusable(cl, bodyFixed, false, false) ||
		reusable(cl, bodyFixed, true, true) || reusable(h1.Framing{Length: 5, Close: true}, bodyFixed, true, false) ||
		reusable(h1.Framing{Length: -1}, bodyUntilClose, true, false) {
		t.Error("reusable")
	}
	for _, tt := range []struct {
		a    attemptState
		want bool
	}{
		{attemptState{reused: true, sentNone: true, wholeInHand: true}, true},
		{attemptState{reused: true, sentNone: true}, false},
		{attemptState{sentNone: true, wholeInHand: true}, false},
		{attemptState{reused: true, sentAll: true, idempotent: true}, true},
		{attemptState{reused: true, sentAll: true}, false},
		{attemptState{reused: true, sentAll: true, idempotent: true, gotAny: true}, false},
		{attemptState{reused: true, idempotent: true}, false},
	} {
		if got := tt.a.retrySafe(); got != tt.want {
			t.Errorf("retrySafe(%+v) = %v", tt.a, got)
		}
	}
	if idempotentRequest([]byte("GET"), true) || !idempotentRequest([]byte("PUT"), false) || idempotentRequest([]byte("POST"), false) {
		t.Error("idempotentRequest")
	}
}
