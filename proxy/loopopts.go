package proxy

import (
	"net/netip"
	"time"

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
