package proxy

import (
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
