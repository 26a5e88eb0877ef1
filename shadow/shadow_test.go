package shadow

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sessiongate/sessiongate/internal/loglimit"
)

// fakeRoute answers every request like the route does for a found session.
func fakeRoute(ctx *fasthttp.RequestCtx) bool {
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("Pragma", "no-cache")
	ctx.Response.SetStatusCode(200)
	ctx.Response.SetBodyString(seedBody)
	return true
}

// newRequestCtx builds a parsed request from raw, as from peer.
func newRequestCtx(t testing.TB, raw string, peer string) *fasthttp.RequestCtx {
	t.Helper()
	var req fasthttp.Request
	if err := req.Read(bufioReader(raw)); err != nil {
		t.Fatal(err)
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(peer)), nil)
	return ctx
}

func newShadow(t testing.TB, upstreamURL string, mutate func(*Options)) (*Shadow, *prometheus.Registry, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	opts := Options{Rate: 1, UpstreamURL: upstreamURL, Log: zap.New(core), Registerer: reg}
	if mutate != nil {
		mutate(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, reg, logs
}

func count(t testing.TB, reg *prometheus.Registry, r result) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sessiongate_shadow_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == r.String() {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no sessiongate_shadow_total{result=%q}", r)
	return 0
}

// TestClientAddress: the shadow's request tells Rocket.Chat the client's
// address as a forwarded request would: the peer's, unless the peer is a
// trusted proxy, whose X-Real-IP is kept.
func TestClientAddress(t *testing.T) {
	got := make(chan string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Real-IP")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(seedBody))
	}))
	defer up.Close()
	s, _, _ := newShadow(t, up.URL, func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	wrapped := s.Wrap(fakeRoute)
	raw := "GET /api/v1/sessions/info?sessionId=s1 HTTP/1.1\r\nHost: chat.example\r\nX-Real-IP: 203.0.113.7\r\nX-User-Id: u1\r\nX-Auth-Token: t1\r\n\r\n"
	for _, tt := range []struct{ peer, want string }{
		{"192.0.2.1:4000", "192.0.2.1"},  // untrusted: its X-Real-IP is ignored
		{"10.1.2.3:4000", "203.0.113.7"}, // a trusted proxy's is kept
	} {
		if !wrapped(newRequestCtx(t, raw, tt.peer)) {
			t.Fatal("the route was not served")
		}
		select {
		case g := <-got:
			if g != tt.want {
				t.Errorf("peer %s: X-Real-IP %q, want %q", tt.peer, g, tt.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no shadow request")
		}
	}
}

// TestConcurrentComparisonsAreBounded runs many requests at once against a
// slow upstream: at most MaxInflight comparisons run, every sampled request
// is either compared or dropped, and the client's answer is always the
// route's. Run with -race.
func TestConcurrentComparisonsAreBounded(t *testing.T) {
	var running, peak atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		running.Add(-1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		w.Write([]byte(seedBody))
	}))
	defer up.Close()
	s, reg, _ := newShadow(t, up.URL, func(o *Options) { o.MaxInflight = 3 })
	wrapped := s.Wrap(fakeRoute)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := newRequestCtx(t, "GET /api/v1/sessions/info?sessionId=s1 HTTP/1.1\r\nHost: x\r\nX-User-Id: u\r\nX-Auth-Token: t\r\n\r\n", "127.0.0.1:"+itoa(1000+i))
			if !wrapped(ctx) || string(ctx.Response.Body()) != seedBody {
				t.Error("the client did not get the route's answer")
			}
		}()
	}
	wg.Wait()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 3 {
		t.Errorf("%d shadow requests at once, want at most 3", p)
	}
	match, dropped := count(t, reg, resultMatch), count(t, reg, resultDropped)
	if match+dropped != n || match == 0 {
		t.Errorf("match %v + dropped %v, want %d with some matches", match, dropped, n)
	}
	if v := gauge(t, reg, "sessiongate_shadow_inflight"); v != 0 {
		t.Errorf("inflight after Close: %v", v)
	}
}

// TestCloseStopsComparisons: after Close nothing new starts, the route is
// still served, and Close waited for the running comparison.
func TestCloseStopsComparisons(t *testing.T) {
	release := make(chan struct{})
	var seen atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		<-release
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(seedBody))
	}))
	defer up.Close()
	defer close(release)
	s, _, _ := newShadow(t, up.URL, nil)
	wrapped := s.Wrap(fakeRoute)
	raw := "GET /api/v1/sessions/info?sessionId=s1 HTTP/1.1\r\nHost: x\r\nX-User-Id: u\r\nX-Auth-Token: t\r\n\r\n"
	wrapped(newRequestCtx(t, raw, "127.0.0.1:1"))
	for deadline := time.Now().Add(5 * time.Second); seen.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no shadow request")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err == nil {
		t.Error("Close returned while a comparison was still running")
	}
	if !wrapped(newRequestCtx(t, raw, "127.0.0.1:2")) {
		t.Error("the route was not served after Close")
	}
	if n := s.inflight.Load(); n != 1 {
		t.Errorf("%d comparisons running after Close, want the 1 started before", n)
	}
}

// TestMismatchLogIsRateLimited: one warn line per interval, the rest
// counted in the next line's "suppressed"; no request header value in it.
func TestMismatchLogIsRateLimited(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		w.WriteHeader(404)
		w.Write([]byte(notFound))
	}))
	defer up.Close()
	s, reg, logs := newShadow(t, up.URL, nil)
	s.mismatches = loglimit.New(time.Hour)
	wrapped := s.Wrap(fakeRoute)
	raw := "GET /api/v1/sessions/info?sessionId=s%201 HTTP/1.1\r\nHost: chat.secret.example\r\nX-User-Id: SecretUser1\r\nX-Auth-Token: SecretToken1\r\nUser-Agent: SecretAgent1\r\n\r\n"
	for i := range 5 {
		wrapped(newRequestCtx(t, raw, "127.0.0.1:"+itoa(2000+i)))
	}
	s.Close(context.Background())
	if got := count(t, reg, resultMismatchStatus); got != 5 {
		t.Fatalf("mismatch_status: got %v, want 5", got)
	}
	lines := logs.FilterMessage("shadow answer differs from the upstream's").All()
	if len(lines) != 1 {
		t.Fatalf("got %d mismatch lines, want 1", len(lines))
	}
	fields := lines[0].ContextMap()
	if lines[0].Level != zapcore.WarnLevel || fields["session_id"] != "s 1" || fields["status"] != int64(200) || fields["upstream_status"] != int64(404) {
		t.Errorf("mismatch line: %v %v", lines[0].Level, fields)
	}
	var all bytes.Buffer
	for _, e := range logs.All() {
		all.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			io.WriteString(&all, k+"="+toString(v)+" ")
		}
	}
	for _, secret := range []string{"SecretUser1", "SecretToken1", "SecretAgent1", "chat.secret.example", "orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU", "172.20.0.2"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("the logs contain %q: %s", secret, all.String())
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Rate: 0, UpstreamURL: "http://127.0.0.1:3000"},
		{Rate: 1.5, UpstreamURL: "http://127.0.0.1:3000"},
		{Rate: 1, Mode: "mirror", UpstreamURL: "http://127.0.0.1:3000"},
		{Rate: 1, UpstreamURL: "ftp://127.0.0.1"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): got no error", o)
		}
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func itoa(i int) string { return strconv.Itoa(i) }

func toString(v any) string { return fmt.Sprint(v) }

func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// TestShadowRequestIsTheClients: the shadow's request has the client's
// method, raw request-target, Host and credential headers (every
// occurrence, in order, names as written), and nothing else of the
// client's.
func TestShadowRequestIsTheClients(t *testing.T) {
	type seen struct {
		uri, host string
		header    http.Header
	}
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.RequestURI, r.Host, r.Header.Clone()}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(seedBody))
	}))
	defer up.Close()
	s, _, _ := newShadow(t, up.URL, nil)
	target := "/api/v1/sessions/info?sessionId=a%2Fb+c%zz&x=%C3%A9"
	raw := "GET " + target + " HTTP/1.1\r\nHost: Chat.Example:8443\r\nx-user-id: u1\r\nX-AUTH-TOKEN: t1\r\nX-Auth-Token: t2\r\n" +
		"Cookie: rc_token=secret\r\nAuthorization: Bearer secret\r\nUser-Agent: client\r\nX-Other: 1\r\n\r\n"
	s.Wrap(fakeRoute)(newRequestCtx(t, raw, "192.0.2.1:1"))
	var g seen
	select {
	case g = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no shadow request")
	}
	if g.uri != target || g.host != "Chat.Example:8443" {
		t.Errorf("got target %q host %q, want %q %q", g.uri, g.host, target, "Chat.Example:8443")
	}
	if u, tok := g.header.Values("X-User-Id"), g.header.Values("X-Auth-Token"); len(u) != 1 || u[0] != "u1" || len(tok) != 2 || tok[0] != "t1" || tok[1] != "t2" {
		t.Errorf("got X-User-Id %q X-Auth-Token %q, want [u1] [t1 t2]", u, tok)
	}
	for name := range g.header {
		switch name {
		case "X-User-Id", "X-Auth-Token", "X-Real-Ip", "User-Agent":
		default:
			t.Errorf("the shadow's request carried %s", name)
		}
	}
	if ua := g.header.Get("User-Agent"); ua != "sessiongate-shadow" {
		t.Errorf("User-Agent %q, want sessiongate-shadow", ua)
	}
}
