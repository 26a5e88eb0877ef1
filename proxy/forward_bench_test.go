package proxy

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// Benchmarks of the forward path over loopback TCP, each beside its
// baselines, for benchstat:
//
//	via=direct      client → upstream (the floor: no proxy at all)
//	via=hostclient  client → fasthttp server whose handler is a bare
//	                fasthttp.HostClient.Do to the upstream (the design this
//	                package's own client replaces, configured for proxying)
//	via=sessiongate client → Proxy (event loop, the default) → upstream
//	via=goroutines  client → Proxy with proxy.event_loop=false → upstream
//
// allocs/op counts the client and the upstream too (all in one process);
// the proxy's own share is the difference to via=direct.
//
//	go test -run '^$' -bench BenchmarkForward -benchmem ./proxy/

// fwdBenchBody is the upstream's ~1 KB JSON answer.
var fwdBenchBody = []byte(`{"success":true,"data":"` + strings.Repeat("x", 1000) + `"}`)

// fwdBenchUpstream serves the 1 KB answer to GET and echoes POST bodies.
func fwdBenchUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		if ctx.IsPost() {
			ctx.SetBody(ctx.PostBody())
			return
		}
		ctx.SetBody(fwdBenchBody)
	}}
	go s.Serve(ln)
	tb.Cleanup(func() { s.Shutdown() })
	return ln.Addr().String()
}

// fwdBenchHostClientProxy is the baseline proxy: fasthttp.Server plus
// HostClient.Do, header names kept, as a careful user would set them up.
func fwdBenchHostClientProxy(tb testing.TB, upstream string) string {
	tb.Helper()
	hc := &fasthttp.HostClient{
		Addr:                          upstream,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		MaxConns:                      1024,
		ReadTimeout:                   90 * time.Second,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &fasthttp.Server{
		DisableHeaderNamesNormalizing: true,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			}
		},
	}
	go s.Serve(ln)
	tb.Cleanup(func() { s.Shutdown() })
	return ln.Addr().String()
}

func BenchmarkForward(b *testing.B) {
	upstream := fwdBenchUpstream(b)
	proxyAddr, _ := fwdStartProxy(b, "http://"+upstream)
	goroutinesAddr, _ := fwdStartProxy(b, "http://"+upstream, withoutEventLoop)
	targets := []struct{ name, addr string }{
		{"direct", upstream},
		{"hostclient", fwdBenchHostClientProxy(b, upstream)},
		{"sessiongate", proxyAddr},
		{"goroutines", goroutinesAddr},
	}
	post := bytes.Repeat([]byte("p"), 16<<10)
	reqs := []struct {
		name   string
		method string
		body   []byte
	}{
		{"get1k", "GET", nil},
		{"post16k", "POST", post},
	}
	for _, rq := range reqs {
		for _, tg := range targets {
			b.Run("req="+rq.name+"/via="+tg.name, func(b *testing.B) {
				c := &fasthttp.HostClient{Addr: tg.addr, MaxConns: 1024}
				b.ReportAllocs()
				b.SetParallelism(32) // 64 connections on 2 CPUs, like the load harness
				b.SetBytes(int64(len(rq.body) + len(fwdBenchBody)))
				cpu0, cpuOK := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					req := fasthttp.AcquireRequest()
					resp := fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					req.SetRequestURI("http://chat.example/api/v1/me?x=1")
					req.Header.SetMethod(rq.method)
					req.Header.Set("X-User-Id", "u1")
					req.Header.Set("X-Auth-Token", "tok")
					for pb.Next() {
						if rq.body != nil {
							req.SetBodyRaw(rq.body)
						}
						if err := c.Do(req, resp); err != nil {
							b.Fatal(err)
						}
						if resp.StatusCode() != 200 {
							b.Fatalf("status %d", resp.StatusCode())
						}
					}
				})
				// CPU time (user+system, whole process) per request: on a
				// shared 2-core machine it varies far less than ns/op.
				if cpu1, _ := processCPU(); cpuOK {
					b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
				}
			})
		}
	}
}
