package sessions

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// The typed route's 400 bodies (8.0+), the router's refused query (7.6+)
// and the 401 body of 8.0+.
const (
	want400TypedReq   = `{"success":false,"errorType":"error-invalid-params","error":"must have required property 'sessionId'"}`
	want400TypedStr   = `{"success":false,"errorType":"error-invalid-params","error":"must be string"}`
	want400TypedExtra = `{"success":false,"errorType":"error-invalid-params","error":"must NOT have additional properties"}`
	want400Limit      = `{"success":false,"error":"Invalid query parameters"}`
	want401Breaking   = `{"success":false,"error":"You must be logged in to do this."}`
)

// TestServeFollowsEra checks each row of docs/eras.md's table on the
// handler: the 401 body, the 400 bodies and the router's query limits
// follow the Rocket.Chat version; an explicit unauthorized body wins.
func TestServeFollowsEra(t *testing.T) {
	seed := creds(seedUser, seedToken)
	bad := creds(seedUser, "nope")
	tests := []struct {
		version, unauthorized string
		target                string
		headers               []string
		status                int
		body                  string
	}{
		{"5.4.0", "", "/api/v1/sessions/info?sessionId=x", bad, 401, want401},
		{"7.3.2", "", "/api/v1/sessions/info?sessionId=x", bad, 401, want401},
		{"7.4.0", "", "/api/v1/sessions/info?sessionId=x", bad, 401, want401Ext},
		{"7.6.0", "", "/api/v1/sessions/info?sessionId=x", bad, 401, want401Ext},
		{"7.13.1", "", "/api/v1/sessions/info?sessionId=x", bad, 401, want401Ext},
		{"8.0.0", "", "/api/v1/sessions/info?sessionId=x", bad, 401, want401Breaking},
		{"7.6.0", UnauthorizedClassic, "/api/v1/sessions/info?sessionId=x", bad, 401, want401},
		{"8.1.0", UnauthorizedExtended, "/api/v1/sessions/info?sessionId=x", bad, 401, want401Ext},
		{"6.12.0", UnauthorizedExtended, "/api/v1/sessions/info?sessionId=x", bad, 401, want401Ext},

		{"7.5.1", "", "/api/v1/sessions/info?x=1", seed, 400, want400Req},
		{"7.5.1", "", "/api/v1/sessions/info?sessionId[]=a", seed, 400, want400Str},
		{"7.6.0", "", "/api/v1/sessions/info?x=1", seed, 400, want400Req},
		{"7.6.0", "", "/api/v1/sessions/info?sessionId=a&x=1", seed, 400, want400Extra},
		{"8.0.0", "", "/api/v1/sessions/info?x=1", seed, 400, want400TypedReq},
		{"8.0.0", "", "/api/v1/sessions/info?sessionId[]=a", seed, 400, want400TypedStr},
		{"8.0.0", "", "/api/v1/sessions/info?sessionId=a&x=1", seed, 400, want400TypedExtra},

		// The router's qs: arrayLimit 500 with throwOnLimitExceeded.
		{"7.6.0", "", "/api/v1/sessions/info?sessionId=a&x[500]=1", seed, 400, want400Limit},
		{"8.0.0", "", "/api/v1/sessions/info?sessionId=a&x[500]=1", seed, 400, want400Limit},
		{"7.5.0", "", "/api/v1/sessions/info?sessionId=a&x[500]=1", seed, 400, want400Extra},
		{"7.6.0", "", "/api/v1/sessions/info?sessionId=a&x[499]=1", seed, 400, want400Extra},
		{"7.6.0", "", "/api/v1/sessions/info?" + strings.Repeat("&", 1000) + "sessionId=nope", seed, 400, want400Limit},
		{"7.5.0", "", "/api/v1/sessions/info?" + strings.Repeat("&", 999) + "sessionId=nope", seed, 404, want404},
		// qs 6.14 turns %5B and %5D into brackets before splitting.
		{"7.5.0", "", "/api/v1/sessions/info?sessionId=%5D=", seed, 404, want404},
		{"7.6.0", "", "/api/v1/sessions/info?sessionId=%5D=", seed, 400, want400Req},
		// url.parse ends the query at '#'; the router keeps the fragment in
		// it and ends it at a second '?' instead.
		{"7.5.0", "", "/api/v1/sessions/info?sessionId=a+b#x", seed, 200, `{"sessionId":"a b","success":true}`},
		{"7.6.0", "", "/api/v1/sessions/info?sessionId=a+b#x", seed, 404, want404},
		{"7.5.0", "", "/api/v1/sessions/info?sessionId=a+b?x", seed, 404, want404},
		{"7.6.0", "", "/api/v1/sessions/info?sessionId=a+b?x", seed, 200, `{"sessionId":"a b","success":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.version+" "+tt.unauthorized+" "+tt.target[min(len(tt.target), 60):], func(t *testing.T) {
			h := newHandler(t, fixtureStore(), Options{Version: tt.version, UnauthorizedBody: tt.unauthorized})
			ctx := request(t, tt.target, tt.headers...)
			checkAnswer(t, ctx, h.Serve(ctx), tt.status, tt.body)
		})
	}
}

func TestSetVersionSwitchesEra(t *testing.T) {
	h := newHandler(t, fixtureStore(), Options{})
	for _, step := range []struct {
		version, era string
		body         string
	}{
		{"", "5.0-7.3", want401}, // the default
		{"7.6.1", "7.6-7.x", want401Ext},
		{"8.0.0", "8.0+", want401Breaking},
		{"6.12.0", "5.0-7.3", want401},
		{"7.4.0-rc.1", "7.4-7.5", want401Ext},
	} {
		if step.version != "" {
			if got, err := h.SetVersion(step.version); err != nil || got != step.era {
				t.Fatalf("SetVersion(%q) = %q, %v; want %q", step.version, got, err, step.era)
			}
		}
		ctx := request(t, "/api/v1/sessions/info?sessionId=x", creds(seedUser, "nope")...)
		checkAnswer(t, ctx, h.Serve(ctx), 401, step.body)
	}
	for _, v := range []string{"", "7", "latest", "x.y.z", "7.x"} {
		if _, err := h.SetVersion(v); err == nil {
			t.Errorf("SetVersion(%q): no error", v)
		}
	}
}

// TestServeForwardsWhatNodeRefuses: Node answers a request line with a byte
// of 0x7F or above with 400 before Rocket.Chat runs, so the route leaves
// such a request to the upstream.
func TestServeForwardsWhatNodeRefuses(t *testing.T) {
	h := newHandler(t, fixtureStore(), Options{})
	for _, target := range []string{"/api/v1/sessions/info?sessionId=\xe9", "/api/v1/sessions/info?sessionId=a\x7f", "/api/v1/sessions/info?x\xff=1"} {
		raw := "GET " + target + " HTTP/1.1\r\nHost: x\r\nX-User-Id: " + seedUser + "\r\nX-Auth-Token: " + seedToken + "\r\n\r\n"
		ctx := new(fasthttp.RequestCtx)
		if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Logf("%q: fasthttp refuses it itself: %v", target, err)
			continue
		}
		if h.Serve(ctx) {
			t.Errorf("%q: answered %d %s, want forwarded", target, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// TestVersionWatcher runs the watcher against a stand-in upstream whose
// /api/info changes: the handler's era, the metric and the fallback follow.
func TestVersionWatcher(t *testing.T) {
	var info atomic.Value
	// What Rocket.Chat tells an anonymous caller: major.minor only
	// (getServerInfo's removePatchInfo).
	info.Store(`{"version":"7.6","minimumClientVersions":{},"success":true}`)
	var status atomic.Int32
	status.Store(200)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/info" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(info.Load().(string)))
	}))
	t.Cleanup(upstream.Close)

	h := newHandler(t, fixtureStore(), Options{})
	reg := prometheus.NewRegistry()
	w, err := NewVersionWatcher(h, VersionOptions{Version: VersionAuto, Fallback: "7.3.0", Upstream: upstream.URL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	check := func(wantEra, wantLabels, body401 string) {
		t.Helper()
		if got := h.era.Load().name; got != wantEra {
			t.Errorf("era: got %s, want %s", got, wantEra)
		}
		if got := upstreamInfo(t, reg); got != wantLabels {
			t.Errorf("sessiongate_upstream_info: got {%s}, want {%s} 1 alone", got, wantLabels)
		}
		ctx := request(t, "/api/v1/sessions/info?sessionId=x", creds(seedUser, "nope")...)
		checkAnswer(t, ctx, h.Serve(ctx), 401, body401)
	}
	check("5.0-7.3", `era="5.0-7.3",source="fallback",version="7.3.0"`, want401)

	w.Check(context.Background())
	check("7.6-7.x", `era="7.6-7.x",source="upstream",version="7.6"`, want401Ext)

	info.Store(`{"success":true}`) // a server that hides its version
	w.Check(context.Background())
	check("5.0-7.3", `era="5.0-7.3",source="fallback",version="7.3.0"`, want401)

	info.Store(`{"info":{"version":"7.4.2"},"success":true}`)
	w.Check(context.Background())
	check("7.4-7.5", `era="7.4-7.5",source="upstream",version="7.4.2"`, want401Ext)

	info.Store(`{"version":"7.4.2\"}<script>","success":true}`) // not a version: never a label
	w.Check(context.Background())
	check("5.0-7.3", `era="5.0-7.3",source="fallback",version="7.3.0"`, want401)

	status.Store(503)
	info.Store(`{"version":"7.6.0"}`)
	w.Check(context.Background())
	check("5.0-7.3", `era="5.0-7.3",source="fallback",version="7.3.0"`, want401)
}

func TestVersionWatcherFixed(t *testing.T) {
	h := newHandler(t, fixtureStore(), Options{})
	reg := prometheus.NewRegistry()
	w, err := NewVersionWatcher(h, VersionOptions{Version: "8.0.0", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	w.Run(context.Background()) // returns at once: nothing to ask
	if got := h.era.Load().name; got != "8.0+" {
		t.Errorf("era: got %s, want 8.0+", got)
	}
	if got, want := upstreamInfo(t, reg), `era="8.0+",source="configured",version="8.0.0"`; got != want {
		t.Errorf("sessiongate_upstream_info: got {%s}, want {%s} 1 alone", got, want)
	}
	if _, err := NewVersionWatcher(h, VersionOptions{Version: "seven"}); err == nil {
		t.Error("version \"seven\": no error")
	}
}

// upstreamInfo returns the labels of sessiongate_upstream_info's only
// series, in the exposition format's order, or a description of what is
// wrong with it.
func upstreamInfo(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "sessiongate_upstream_info" {
			continue
		}
		if len(f.GetMetric()) != 1 {
			return fmt.Sprintf("%d series", len(f.GetMetric()))
		}
		m := f.GetMetric()[0]
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		if v := m.GetGauge().GetValue(); v != 1 {
			labels = append(labels, fmt.Sprintf("value %v", v))
		}
		return strings.Join(labels, ",")
	}
	return "no series"
}
