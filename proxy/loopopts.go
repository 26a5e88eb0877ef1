package proxy

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
	"github.com/sessiongate/sessiongate/proxy/internal/h1"
	"github.com/sessiongate/sessiongate/proxy/internal/loop"
)

// loopOptions is what the event loops get of p: its limits and timeouts,
// and hooks into its routes, client-address rule, upstream connections,
// metrics and logs. Connections they hand over go to handoff.
func (p *Proxy) loopOptions(handoff *handoffListener) loop.Options {
	o := loop.Options{
		Loops:                 p.opts.EventLoops,
		MaxConns:              p.opts.MaxConns,
		MaxHeaderBytes:        p.opts.MaxHeaderBytes,
		ReadHeaderTimeout:     p.opts.ReadHeaderTimeout,
		IdleTimeout:           p.opts.IdleTimeout,
		ClientBodyTimeout:     p.fwd.clientBodyTimeout,
		WriteTimeout:          p.fwd.writeTimeout,
		ResponseHeaderTimeout: p.fwd.responseHeaderTimeout,
		UpstreamIdleTimeout:   p.fwd.pool.idleTimeout,
		Handoff:               handoff.push,
		OtherConns:            func() int64 { return int64(p.server.GetOpenConnectionsCount()) },
		Routed:                func(method, target []byte) bool { return p.route(method, target) != nil },
		Route:                 p.loopRoute,
		HeadOptions:           func(peer netip.Addr) h1.RequestOptions { return p.headOptions(peer, false, false) },
		Dial:                  p.fwd.pool.dialer.dialTCP,
		Pool:                  loopPool{p.fwd.pool},
		Metrics:               loopMetrics{p.metrics},
		AcceptError:           p.acceptErrs.report,
		Log:                   p.log,
	}
	if p.access != nil {
		o.Access = func(method, path []byte, status int, elapsed time.Duration, client string) {
			p.logAccessLine(method, path, ClassForward, status, elapsed, client)
		}
	}
	return o
}

// routeCall is a route's request taken off an event loop: a RequestCtx as
// the fasthttp server would build it for the same bytes and peer.
type routeCall struct {
	p    *Proxy
	r    *Route
	ctx  fasthttp.RequestCtx
	addr net.TCPAddr
	ip   [16]byte
	bw   *bufio.Writer
	out  appendWriter
}

// noRequest is the empty request RequestCtx.Init copies before the loop's
// head is copied in.
var noRequest fasthttp.Request

var routeCallPool = sync.Pool{New: func() any {
	rc := &routeCall{}
	rc.bw = bufio.NewWriterSize(&rc.out, 4096)
	return rc
}}

// loopRoute copies the loop's parsed head for the route's call, which runs
// on a goroutine of its own.
func (p *Proxy) loopRoute(h *fasthttp.RequestHeader, peer netip.Addr) loop.RouteFunc {
	rc := routeCallPool.Get().(*routeCall)
	rc.p, rc.r = p, p.route(h.Method(), h.RequestURI())
	if peer.Is4() {
		a := peer.As4()
		rc.addr.IP = append(rc.ip[:0], a[:]...)
	} else {
		a := peer.As16()
		rc.addr.IP = append(rc.ip[:0], a[:]...)
	}
	rc.ctx.Init(&noRequest, &rc.addr, zapPrintf{p.log})
	h.CopyTo(&rc.ctx.Request.Header)
	return rc.run
}

// run serves the request as handle does on the fasthttp path, and writes
// its response the way the fasthttp server does (Response.Write, with
// "Connection: close" when the connection ends after it). A route that
// declines leaves the request to the loop to forward, where it is counted
// as a forwarded request as on the fasthttp path.
func (rc *routeCall) run(dst []byte, closeConn bool) loop.RouteAnswer {
	p, r, ctx := rc.p, rc.r, &rc.ctx
	defer func() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		rc.out.b = nil
		rc.p, rc.r = nil, nil
		routeCallPool.Put(rc)
	}()
	start := time.Now()
	if !r.Serve(ctx) {
		return loop.RouteAnswer{Resp: dst, Forward: true}
	}
	if closeConn {
		ctx.Response.SetConnectionClose()
	}
	p.metrics.loopRequests.Inc()
	p.observe(ctx, r.Class, start)
	// Writes to rc.out cannot fail.
	rc.out.b = dst
	ctx.Response.Write(rc.bw)
	rc.bw.Flush()
	return loop.RouteAnswer{Resp: rc.out.b, Close: ctx.Response.ConnectionClose()}
}

// appendWriter collects what is written to it.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// loopPool lets the loops count their upstream connections in the pool's
// limit.
type loopPool struct{ p *upstreamPool }

func (l loopPool) Reserve() bool { return l.p.reserve() }
func (l loopPool) Release()      { l.p.release() }
func (l loopPool) Wanted() bool  { return l.p.wanted() }

// loopMetrics counts what the loops do in the proxy's metrics.
type loopMetrics struct{ m *metrics }

func (l loopMetrics) Answered(status int, elapsed time.Duration) { l.m.observeLoop(status, elapsed) }
func (l loopMetrics) HandedOff(reason string)                    { l.m.handoffs.WithLabelValues(reason).Inc() }
func (l loopMetrics) UpstreamFailed(kind exchange.FailureKind)   { l.m.upstreamFailure(kind) }
