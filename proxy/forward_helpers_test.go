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

	"github.com/sessiongate/sessiongate/config"
)

// fwdStartProxy runs a Proxy forwarding to upstreamURL on a loopback listener
// and returns its address; flags override configuration keys
// (e.g. "--upstream.response_header_timeout=1s").
func fwdStartProxy(tb testing.TB, upstreamURL string, flags ...string) (string, *Proxy) {
	tb.Helper()
	args := append([]string{"--upstream.url=" + upstreamURL, "--listen=127.0.0.1:0"}, flags...)
	cfg, err := config.Load(args, nil)
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	p, err := New(cfg, zap.NewNop(), prometheus.NewRegistry())
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
