package shadow

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkWrap measures what shadow mode adds to the route on the client's
// path: the sampling decision for a request not sampled, and for a sampled
// one the copies and the goroutine start (the comparison itself runs off
// the path; with one slot most are dropped). wrapper=none is the route
// alone.
func BenchmarkWrap(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(seedBody))
	}))
	defer up.Close()
	raw := "GET /api/v1/sessions/info?sessionId=s1 HTTP/1.1\r\nHost: x\r\nX-User-Id: u\r\nX-Auth-Token: t\r\n\r\n"
	for _, bc := range []struct {
		name string
		rate float64
	}{{"wrapper=none", 0}, {"sampled=none", 1e-9}, {"sampled=all", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			serve := fakeRoute
			if bc.rate > 0 {
				s, _, _ := newShadow(b, up.URL, func(o *Options) { o.Rate = bc.rate; o.MaxInflight = 1 })
				serve = s.Wrap(fakeRoute)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := newRequestCtx(b, raw, "127.0.0.1:1")
				for pb.Next() {
					ctx.Response.Reset()
					serve(ctx)
				}
			})
		})
	}
}
