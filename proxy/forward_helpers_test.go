package proxy

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// testOptions are the proxy's options with the configuration's defaults
// (docs/configuration.md), forwarding to upstreamURL.
func testOptions(upstreamURL string) Options {
	return Options{
		Upstream: Upstream{
			URL:                   upstreamURL,
			DialTimeout:           5 * time.Second,
			ResponseHeaderTimeout: 90 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxConns:              1024,
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		WriteTimeout:      60 * time.Second,
		MaxHeaderBytes:    16384,
		EventLoop:         true,
		Log:               zap.NewNop(),
		Registerer:        prometheus.NewRegistry(),
	}
}

// fwdStartProxy runs a Proxy forwarding to upstreamURL on a loopback listener
// and returns its address; each set changes the default options.
func fwdStartProxy(tb testing.TB, upstreamURL string, set ...func(*Options)) (string, *Proxy) {
	tb.Helper()
	opts := testOptions(upstreamURL)
	for _, f := range set {
		f(&opts)
	}
	p, err := New(opts)
	if err != nil {
		tb.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Serve(ln)
	}()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String(), p
}

// withoutEventLoop serves every connection from the fasthttp path.
func withoutEventLoop(o *Options) { o.EventLoop = false }

// withResponseHeaderTimeout sets Upstream.ResponseHeaderTimeout.
func withResponseHeaderTimeout(d time.Duration) func(*Options) {
	return func(o *Options) { o.Upstream.ResponseHeaderTimeout = d }
}

// fwdParseRequest parses raw like the server does (header names as sent,
// body streamed) into a RequestCtx from peer.
func fwdParseRequest(tb testing.TB, raw, peer string) *fasthttp.RequestCtx {
	tb.Helper()
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.DisableNormalizing()
	if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatalf("parse %q: %v", raw, err)
	}
	addr, err := net.ResolveTCPAddr("tcp", peer)
	if err != nil {
		tb.Fatal(err)
	}
	ctx.SetRemoteAddr(addr)
	return ctx
}

// fwdTestProxy is a Proxy with just what appendRequestHead needs.
func fwdTestProxy(trusted ...string) *Proxy {
	p := &Proxy{fwd: &forwarder{hostHeader: []byte("upstream:3000")}}
	for _, s := range trusted {
		p.trusted = append(p.trusted, netip.MustParsePrefix(s))
	}
	return p
}
